//! `pushgate status [CLUSTER]`: per cluster, the open locks and what they mean.

use serde_json::{json, Value};

use super::{Env, Outcome};
use crate::config::ClusterSettings;
use crate::gather;
use crate::model::LockTask;
use crate::plan::LockFacts;

pub fn lock_json(t: &LockTask) -> Value {
    json!({
        "gid": t.gid.as_str(),
        "name": t.name,
        "assignee": t.assignee,
        "link": t.link,
        "fix_commit": t.fix_commit,
    })
}

pub async fn run(env: &Env, only: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let clusters: Vec<&ClusterSettings> = match only {
        Some(name) => vec![env.cluster(name)?],
        None => env.config.clusters.values().collect(),
    };
    // One read per cluster, concurrently: status is what on-call runs first.
    let reads = clusters
        .iter()
        .map(|c| gather::lock_facts(&env.client, c, env.fix_field()));
    let facts = futures_util::future::join_all(reads).await;
    let mut all_read = true;
    let mut out = Vec::new();
    for (c, locks) in clusters.iter().zip(facts) {
        if json {
            out.push(match &locks {
                LockFacts::Read(tasks) => json!({
                    "cluster": c.name.as_str(),
                    "schedule": c.schedule.expr,
                    "timezone": c.timezone.name(),
                    "lock_state": if tasks.is_empty() { "open" } else { "held" },
                    "locks": tasks.iter().map(lock_json).collect::<Vec<_>>(),
                }),
                LockFacts::Unreadable(reason) => json!({
                    "cluster": c.name.as_str(),
                    "schedule": c.schedule.expr,
                    "timezone": c.timezone.name(),
                    "lock_state": "unknown",
                    "error": reason,
                    "locks": null,
                }),
            });
        } else {
            println!(
                "{}  (schedule \"{}\", {})",
                c.name,
                c.schedule.expr,
                c.timezone.name()
            );
            match &locks {
                LockFacts::Read(tasks) if tasks.is_empty() => println!("  locks: none"),
                LockFacts::Read(tasks) => {
                    println!("  locks: {} open — pushes are held", tasks.len());
                    for t in tasks {
                        println!("    - {t}");
                    }
                }
                LockFacts::Unreadable(reason) => {
                    println!(
                        "  locks: unknown — pushes fail closed: {}",
                        crate::plan::printable(reason, 500)
                    )
                }
            }
        }
        all_read &= matches!(locks, LockFacts::Read(_));
    }
    if json {
        super::print_json(&json!({ "clusters": out }));
    }
    Ok(if all_read {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
