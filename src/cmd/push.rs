//! `pushgate push CLUSTER [--commit REV] [--dry-run]`: take the cluster's
//! lock, gather → decide → print the plan, then (unless it is a dry run or
//! the verdict is not to push) execute it.

use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use super::{Env, Outcome, UsageError};
use crate::crash;
use crate::execute::{self, PushReport};
use crate::model::CommitId;
use crate::plan::{Facts, HoldReason, LockFacts, Plan, Verdict};
use crate::state::StateError;
use crate::{decide, gather};

/// Where a push's words go: a person's terminal, a script, or the log (the daemon).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Log,
}

/// What one push decided and, if it pushed, how that went.
#[derive(Debug)]
pub struct Pushed {
    pub plan: Plan,
    pub report: Option<PushReport>,
}

impl Pushed {
    pub fn outcome(&self) -> Outcome {
        match &self.report {
            Some(r) if r.failure.is_some() => Outcome::Failure,
            _ => Outcome::Decided(self.plan.verdict.clone()),
        }
    }
}

/// `pushgate push`: prints the plan and the outcome.
pub async fn run(
    env: &Env,
    cluster: &str,
    commit: Option<&str>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let output = if json { Output::Json } else { Output::Text };
    let pushed = push_at(
        env,
        cluster,
        commit,
        dry_run,
        output,
        chrono::Utc::now(),
        None,
    )
    .await?;
    if json {
        let mut v = plan_json(&pushed.plan);
        if let Some(r) = &pushed.report {
            v["result"] = report_json(r);
            // Whole-process wall time with at least one child (build, rsync, ssh) running.
            v["result"]["children_ms"] = json!(crate::process::children_wall().as_millis() as u64);
        }
        super::print_json(&v);
    }
    Ok(pushed.outcome())
}

/// One push of `cluster` as of `now` (the clock, read once by the caller):
/// exclusion, gather, decide, and execute unless `dry_run`. `stop`, when
/// set during the push, stops it at the next safe point (before stage or
/// switch).
pub async fn push_at(
    env: &Env,
    cluster: &str,
    commit: Option<&str>,
    dry_run: bool,
    output: Output,
    now: chrono::DateTime<chrono::Utc>,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<Pushed> {
    let settings = env.cluster(cluster)?;
    // Exclusion first (SPEC §2 step 1); a dry run only looks.
    let (lock, running) = match env.state.lock(&settings.name) {
        Ok(l) => (Some(l), None),
        Err(StateError::Busy { holder, .. }) => (None, Some(holder)),
        Err(e) => return Err(e.into()),
    };
    let lock = if dry_run { None } else { lock };
    let facts = match running {
        Some(holder) => Facts::running(settings.name.clone(), holder, now),
        None => {
            let hosts = if dry_run {
                settings.read_hosts().map(|h| h.len()).unwrap_or(0)
            } else {
                settings.read_hosts().map_err(UsageError)?.len()
            };
            gather::facts(&env.config, &env.client, settings, commit, hosts, now).await?
        }
    };
    let plan = decide::plan(&facts);
    match &plan.verdict {
        Verdict::Push { .. } => tracing::info!(cluster = %plan.cluster, "gate open"),
        Verdict::NothingNew { .. } => tracing::info!(cluster = %plan.cluster, "{plan}"),
        Verdict::Hold(_) => tracing::info!(cluster = %plan.cluster, "{plan}"),
        Verdict::Unknown { reason } => {
            tracing::warn!(cluster = %plan.cluster, %reason, "lock state unknown")
        }
    }
    if output == Output::Text {
        println!("{plan}");
    }
    let lock_tasks = match &facts.locks {
        LockFacts::Read(t) => t.clone(),
        LockFacts::Unreadable(_) => Vec::new(),
    };
    if !dry_run {
        let told = crash::report_bad_fixes(&env.config, &env.client, &env.state, &lock_tasks).await;
        report_aftercare(&told, output);
    }
    if let (Verdict::NothingNew { commit: Some(c) }, false) = (&plan.verdict, dry_run) {
        // SPEC §2 step 9: a run that found nothing new still closes crash
        // tasks (a fix recorded after it shipped).
        let link = env
            .state
            .deployed(&settings.name)?
            .and_then(|d| d.push_task_link);
        let care = crash::after_run(
            &env.config,
            &env.client,
            &env.state,
            settings,
            crash::RunEnd {
                deployed: c,
                push_link: link.as_deref(),
                lock_tasks: &lock_tasks,
                pushed: false,
            },
        )
        .await;
        report_aftercare(&care, output);
    }
    let (Verdict::Push { from, to }, false) = (&plan.verdict, dry_run) else {
        return Ok(Pushed { plan, report: None });
    };
    let cx = execute::Context {
        config: &env.config,
        client: &env.client,
        state: &env.state,
        child_env: &env.child_env,
        cluster: settings,
        hosts: settings.read_hosts().map_err(UsageError)?,
        now,
        verbose: output == Output::Text,
        stop,
    };
    let mut report = execute::push(&cx, &plan, from.as_ref(), to).await;
    if report.failure.is_none() {
        let link = report.task.as_ref().map(|t| t.link.clone());
        let care = crash::after_run(
            &env.config,
            &env.client,
            &env.state,
            settings,
            crash::RunEnd {
                deployed: to,
                push_link: link.as_deref(),
                lock_tasks: &lock_tasks,
                pushed: true,
            },
        )
        .await;
        report_aftercare(&care, output);
        report.asana_failures += care.asana_failures;
    }
    drop(lock);
    if report.asana_failures > 0 {
        let line = format!(
            "{} Asana write{} failed (see the log); the push itself {}",
            report.asana_failures,
            if report.asana_failures == 1 { "" } else { "s" },
            if report.failure.is_some() {
                "failed"
            } else {
                "succeeded"
            }
        );
        match output {
            Output::Log => tracing::warn!(cluster = %plan.cluster, "{line}"),
            _ => eprintln!("pushgate: warning: {line}"),
        }
    }
    Ok(Pushed {
        plan,
        report: Some(report),
    })
}

fn report_aftercare(care: &crash::Aftercare, output: Output) {
    if output == Output::Text && care.closed + care.released + care.reported > 0 {
        println!(
            "crash tasks: {} completed, {} taken out of the lock project, {} told their fix value is unusable",
            care.closed, care.released, care.reported
        );
    }
}

pub fn report_json(r: &PushReport) -> Value {
    json!({
        "outcome": if r.failure.is_some() { "failed" } else { "pushed" },
        "failed_step": r.failure.as_ref().map(|f| &f.0),
        "error": r.failure.as_ref().map(|f| &f.1),
        "run_id": r.run_id,
        "release": r.release.as_str(),
        "commit": r.commit.as_str(),
        "previous": r.previous.as_ref().map(|c| c.as_str()),
        "push_task": r.task.as_ref().map(|t| json!({ "gid": t.gid.as_str(), "link": t.link })),
        "hosts": r.hosts.iter().map(|h| json!({
            "host": h.host.to_string(),
            "result": h.result,
            "bytes_sent": h.bytes_sent,
        })).collect::<Vec<_>>(),
        "asana_failures": r.asana_failures,
        "duration_ms": r.duration.as_millis() as u64,
    })
}

/// The plan for scripts: `verdict` is `push`, `nothing-new`, `held` or `unknown`.
pub fn plan_json(plan: &Plan) -> Value {
    let c = plan.cluster.as_str();
    let changelog: Vec<Value> = plan
        .changelog
        .entries
        .iter()
        .map(|e| json!({ "commit": e.commit.as_str(), "subject": e.subject, "author": e.author }))
        .collect();
    match &plan.verdict {
        Verdict::Push { from, to } => json!({
            "cluster": c,
            "verdict": "push",
            "commit": to.as_str(),
            "previous": from.as_ref().map(|f| f.as_str()),
            "via": plan.via,
            "changelog": changelog,
            "changelog_more": plan.changelog.more,
            "steps": plan.steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "locks": [],
        }),
        Verdict::NothingNew { commit } => json!({
            "cluster": c,
            "verdict": "nothing-new",
            "commit": commit.as_ref().map(CommitId::as_str),
            "locks": [],
        }),
        Verdict::Hold(HoldReason::Locked { tasks }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "locked",
            "locks": tasks.iter().map(super::status::lock_json).collect::<Vec<_>>(),
        }),
        Verdict::Hold(HoldReason::Running { holder }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "running",
            "holder": holder,
            "locks": null,
        }),
        Verdict::Hold(HoldReason::Frozen { other, until }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "frozen",
            "other": other.as_str(),
            "until": until.with_timezone(&chrono::Utc),
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::OtherRunning { other }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "frozen",
            "other": other.as_str(),
            "until": null,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::BuildFailed { commit, last_run }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "build-failed",
            "commit": commit.as_str(),
            "last_run": last_run,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::Soaking { from, since, until }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "soaking",
            "other": from.as_str(),
            "since": since,
            "until": until,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Unknown { reason } => json!({
            "cluster": c,
            "verdict": "unknown",
            "reason": reason,
            "locks": null,
        }),
    }
}
