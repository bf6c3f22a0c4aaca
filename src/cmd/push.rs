//! `pushgate push CLUSTER --dry-run`: gather → decide → print the plan.

use serde_json::json;

use super::{Env, Outcome};
use crate::plan::{HoldReason, Plan, Verdict};
use crate::{decide, gather};

pub async fn run(env: &Env, cluster: &str, dry_run: bool, json: bool) -> anyhow::Result<Outcome> {
    let settings = env.cluster(cluster)?;
    if !dry_run {
        anyhow::bail!(
            "a real push needs the push pipeline (candidate, build, stage, switch), which this build does not have yet; \
             `pushgate push {cluster} --dry-run` decides without pushing"
        );
    }
    let facts = gather::facts(&env.client, settings, env.fix_field()).await;
    let plan = decide::plan(&facts);
    match &plan.verdict {
        Verdict::Push => tracing::info!(cluster = %plan.cluster, "gate open"),
        Verdict::Hold(_) => tracing::info!(cluster = %plan.cluster, "held"),
        Verdict::Unknown { reason } => {
            tracing::warn!(cluster = %plan.cluster, %reason, "lock state unknown")
        }
    }
    if json {
        super::print_json(&plan_json(&plan));
    } else {
        println!("{plan}");
    }
    Ok(Outcome::Decided(plan.verdict))
}

/// The plan for scripts: `verdict` is `push`, `held` or `unknown`.
pub fn plan_json(plan: &Plan) -> serde_json::Value {
    match &plan.verdict {
        Verdict::Push => {
            json!({ "cluster": plan.cluster.as_str(), "verdict": "push", "locks": [] })
        }
        Verdict::Hold(HoldReason::Locked { tasks }) => json!({
            "cluster": plan.cluster.as_str(),
            "verdict": "held",
            "reason": "locked",
            "locks": tasks.iter().map(super::status::lock_json).collect::<Vec<_>>(),
        }),
        Verdict::Unknown { reason } => json!({
            "cluster": plan.cluster.as_str(),
            "verdict": "unknown",
            "reason": reason,
            "locks": null,
        }),
    }
}
