//! `pushgate push CLUSTER [--commit REV] [--dry-run]`: take the cluster's
//! lock, gather → decide → print the plan, then (unless it is a dry run or
//! the verdict is not to push) execute it.

use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use super::{Env, Outcome, UsageError};
use crate::adapters::state::StateError;
use crate::domain::decide;
use crate::domain::model::CommitId;
use crate::domain::plan::{Facts, HoldReason, LockFacts, Overrides, Plan, Verdict};
use crate::domain::report::PushReport;
use crate::run::execute;
use crate::run::outbox::Outbox;
use crate::run::{crash, gather, recover};

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
    /// An interrupted earlier run this one recovered first.
    pub recovered: Option<recover::Recovered>,
    /// Queued Asana writes of earlier runs applied at the start.
    pub replayed: usize,
    /// Asana writes left queued for the next run.
    pub queued: usize,
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
    overrides: Overrides,
) -> anyhow::Result<Outcome> {
    if overrides.ignore_locks || overrides.ignore_freeze {
        let reason = overrides.reason.as_deref().unwrap_or("").trim();
        if reason.is_empty() {
            return Err(UsageError(
                "--ignore-locks and --ignore-freeze need --reason TEXT saying why".into(),
            )
            .into());
        }
    }
    let output = if json { Output::Json } else { Output::Text };
    let pushed = push_at(
        env,
        cluster,
        commit,
        dry_run,
        output,
        chrono::Utc::now(),
        None,
        overrides,
    )
    .await?;
    if json {
        let mut v = plan_json(&pushed.plan);
        if let Some(r) = &pushed.report {
            v["result"] = report_json(r);
            // Whole-process wall time with at least one child (build, rsync, ssh) running.
            v["result"]["children_ms"] =
                json!(crate::adapters::process::children_wall().as_millis() as u64);
        }
        if let Some(r) = &pushed.recovered {
            v["recovered"] = json!({
                "run_id": r.run_id,
                "stopped_in": r.stopped_in,
                "finished": r.finished,
                "release": r.converged_to.as_ref().map(|x| x.as_str()),
                "host_errors": r.host_errors,
                "message": r.summary(cluster),
            });
        }
        v["asana_replayed"] = json!(pushed.replayed);
        v["asana_queued"] = json!(pushed.queued);
        super::print_json(&v);
    }
    Ok(pushed.outcome())
}

/// One push of `cluster` as of `now` (the clock, read once by the caller):
/// exclusion, then (unless `dry_run`) the outbox's queued writes and the
/// recovery of an interrupted run, then gather, decide, and execute unless
/// `dry_run`. `stop`, when set during the push, stops it at the next safe
/// point (before stage or switch).
#[allow(clippy::too_many_arguments)]
pub async fn push_at(
    env: &Env,
    cluster: &str,
    commit: Option<&str>,
    dry_run: bool,
    output: Output,
    now: chrono::DateTime<chrono::Utc>,
    stop: Option<&AtomicBool>,
    overrides: Overrides,
) -> anyhow::Result<Pushed> {
    let result = push_inner(env, cluster, commit, dry_run, output, now, stop, overrides).await;
    // Whatever happened, no ssh connection of this run stays open.
    if let Ok(settings) = env.cluster(cluster) {
        super::close_connections(env, settings).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn push_inner(
    env: &Env,
    cluster: &str,
    commit: Option<&str>,
    dry_run: bool,
    output: Output,
    now: chrono::DateTime<chrono::Utc>,
    stop: Option<&AtomicBool>,
    overrides: Overrides,
) -> anyhow::Result<Pushed> {
    let settings = env.cluster(cluster)?;
    // Exclusion first (SPEC §2 step 1); a dry run only looks.
    let (lock, running) = match env.state.lock(&settings.name) {
        Ok(l) => (Some(l), None),
        Err(StateError::Busy { holder, .. }) => (None, Some(holder)),
        Err(e) => return Err(e.into()),
    };
    let lock = if dry_run { None } else { lock };
    let say = |line: String| match output {
        Output::Text => println!("{line}"),
        Output::Json => eprintln!("pushgate: {line}"),
        Output::Log => tracing::info!(cluster = %settings.name, "{line}"),
    };
    // Only the lock's holder touches the outbox and the journal.
    let mut outbox = match &lock {
        Some(_) => Some(Outbox::open(&env.state, &settings.name, &env.client)?),
        None => None,
    };
    let run_name = execute::run_id(settings, now);
    // Children register their process groups, so that what a killed run
    // left running can be stopped by the next.
    let child_env = env.child_env.registered(env.state.children(&settings.name));
    let mut replayed = 0;
    let mut recovered = None;
    if let Some(ob) = outbox.as_mut() {
        let waiting = ob.pending();
        if waiting > 0 {
            let left = ob.flush().await;
            replayed = waiting - left;
            say(format!(
                "replayed {replayed} of {waiting} queued Asana write{} from earlier runs",
                if waiting == 1 { "" } else { "s" }
            ));
        }
        let hosts = settings.read_hosts().map_err(UsageError)?;
        crate::adapters::process::reap_orphans(&env.state.children(&settings.name));
        let cx = recover::Cx {
            config: &env.config,
            state: &env.state,
            child_env: &child_env,
            cluster: settings,
            hosts: &hosts,
            by_run: &run_name,
        };
        recovered = recover::interrupted(&cx, ob).await?;
        if let Some(r) = &recovered {
            say(r.summary(settings.name.as_str()));
        }
    }
    let facts = match running {
        Some(holder) => Facts::running(settings.name.clone(), holder, now),
        None => {
            // A dry run says what the push would do: a broken hosts file
            // is the same usage error (exit 2) for both.
            let hosts = settings.read_hosts().map_err(UsageError)?.len();
            gather::facts(
                &env.config,
                &env.client,
                settings,
                commit,
                hosts,
                now,
                overrides,
            )
            .await?
        }
    };
    let plan = decide::plan(&facts);
    env.observer.decided(&plan, facts.now, dry_run).await;
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
    let mut pushed = Pushed {
        plan,
        report: None,
        recovered,
        replayed,
        queued: 0,
    };
    let Some(ob) = outbox.as_mut() else {
        return Ok(pushed);
    };
    let told = crash::report_bad_fixes(&env.config, ob, &env.state, &run_name, &lock_tasks).await;
    report_aftercare(&told, output);
    if let Verdict::NothingNew { commit: Some(c) } = &pushed.plan.verdict {
        // SPEC §2 step 9: a run that found nothing new still closes crash
        // tasks (a fix recorded after it shipped).
        let link = env
            .state
            .deployed(&settings.name)?
            .and_then(|d| d.push_task_link);
        let care = crash::after_run(
            &env.config,
            &env.client,
            ob,
            &env.state,
            settings,
            &run_name,
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
    if let Verdict::Push { from, to } = &pushed.plan.verdict {
        let cx = execute::Context {
            config: &env.config,
            client: &env.client,
            state: &env.state,
            child_env: &child_env,
            cluster: settings,
            hosts: settings.read_hosts().map_err(UsageError)?,
            now,
            run_id: run_name.clone(),
            progress: &env.observer.watch_run(&settings.name),
            operator: &crate::run::gather::operator(),
            verbose: output == Output::Text,
            stop,
        };
        let mut report = env
            .observer
            .push(
                &pushed.plan,
                execute::push(&cx, &pushed.plan, from.as_ref(), to, ob),
            )
            .await;
        if report.failure.is_none() {
            let link = report.task.as_ref().map(|t| t.link.clone());
            let care = crash::after_run(
                &env.config,
                &env.client,
                ob,
                &env.state,
                settings,
                &report.run_id,
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
        pushed.report = Some(report);
    }
    // One last try for what this run queued: Asana may be back.
    if ob.pending() > 0 {
        ob.flush().await;
    }
    pushed.queued = ob.pending();
    if let Some(r) = pushed.report.as_mut() {
        r.asana_queued = pushed.queued;
    }
    drop(lock);
    let failures = pushed.report.as_ref().map_or(0, |r| r.asana_failures);
    if failures + pushed.queued > 0 {
        let mut parts = Vec::new();
        if pushed.queued > 0 {
            parts.push(format!(
                "{} Asana write{} queued in the outbox ({}); the next run replays {}",
                pushed.queued,
                if pushed.queued == 1 { "" } else { "s" },
                ob.deferred().map_or("Asana did not take them".into(), |w| {
                    crate::domain::text::printable(w, 200)
                }),
                if pushed.queued == 1 { "it" } else { "them" },
            ));
        }
        if failures > 0 {
            parts.push(format!(
                "{failures} other Asana call{} failed (see the log)",
                if failures == 1 { "" } else { "s" }
            ));
        }
        let line = format!(
            "{}; the push itself {}",
            parts.join("; "),
            match &pushed.report {
                Some(r) if r.failure.is_some() => "failed",
                Some(_) => "succeeded",
                None => "did not run",
            }
        );
        match output {
            Output::Log => tracing::warn!(cluster = %pushed.plan.cluster, "{line}"),
            _ => eprintln!("pushgate: warning: {line}"),
        }
    }
    Ok(pushed)
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
        "asana_queued": r.asana_queued,
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
            "ignored": plan.ignored.as_ref().map(|ig| json!({
                "reason": ig.reason,
                "locks": ig.locks.iter().map(super::status::lock_json).collect::<Vec<_>>(),
                "lock_state_unknown": ig.unknown,
                "holds": ig.holds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
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
        Verdict::Hold(HoldReason::RolledBack {
            commit,
            release,
            at,
        }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "rolled-back",
            "commit": commit.as_str(),
            "release": release,
            "rolled_back_at": at,
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
