//! Execute a rollback plan (`decide::rollback`): the emergency exit. It
//! switches every host the plan names back to the target release, and so
//! that automation does not push the bad release straight back it marks
//! the rolled-back commit bad and creates a lock task assigned to the
//! token's user; the rollback itself is recorded as a push task and in the
//! history. It never builds or stages: the release is on every host.
//!
//! Every step is journaled first, like a push, so a killed rollback is
//! finished by the next run (`recover.rs`).

use serde_json::json;

use crate::adapters::hosts::Fleet;
use crate::domain::decide::rollback::{RollbackPlan, RollbackVerdict};
use crate::domain::model::{CommitId, ReleaseId, RunKind, RunOutcome};
use crate::run::journal::Journal;
use crate::run::lockdown;
use crate::run::outbox::{Delivery, Op, Outbox, TaskRef};
use crate::run::record::task_name;
use crate::run::record::{Failed, RunRecord};
use crate::run::Context;

/// How a rollback ended.
#[derive(Debug)]
pub struct RolledBack {
    pub run_id: String,
    pub release: ReleaseId,
    pub commit: CommitId,
    /// Marked bad: not pushed again by the schedule.
    pub from_commit: Option<CommitId>,
    pub hosts: usize,
    /// Every host that did not end on the release, with why.
    pub failed: Vec<String>,
    /// The host lines of the rollback's comment.
    pub text: String,
    pub push_task: Option<String>,
    pub lock_task: Option<String>,
}

/// Runs the plan; `None` when it refuses (nothing to go back to). The
/// caller holds the cluster's lock and ran the preamble.
pub async fn rollback(
    cx: &Context<'_>,
    plan: &RollbackPlan,
    deployed_commit: Option<String>,
    outbox: &mut Outbox,
) -> Option<RolledBack> {
    let RollbackVerdict::Rollback {
        to,
        commit,
        from,
        from_commit,
    } = &plan.verdict
    else {
        return None;
    };
    let c = &cx.cluster.name;
    let config = &cx.run.config;
    let label = config.label(c);
    let rid = cx.run_id;
    let journal = Journal::new(cx.state, rid, cx.clock);
    let record = RunRecord {
        run_id: rid.to_owned(),
        kind: RunKind::Rollback,
        commit: commit.to_string(),
        previous: deployed_commit.clone(),
        release: Some(to.clone()),
        started: cx.clock.start(),
    };
    let name = task_name(&cx.run.config.label(c), RunKind::Rollback, commit, cx.clock);
    let notes = format!(
        "cluster: {c}\nrollback from: {}\nrollback to: {to}\ncommit: {commit}\nrun: {rid}\nbastion: {}\n\nLocks were not consulted: rollback is the emergency exit.",
        from.as_ref().map_or("(unknown)".to_owned(), ToString::to_string),
        cx.operator,
    );
    journal.write(
        "start",
        json!({
            "kind": RunKind::Rollback.as_str(),
            "from": deployed_commit,
            "to": commit.as_str(),
            "release": to.as_str(),
            "before": from.as_ref().map(ToString::to_string),
            "task": { "name": name, "notes": notes, "project": cx.cluster.push_project.as_str() },
        }),
    );
    // Automation stops: the rolled-back commit is never a candidate again
    // without --commit, and a lock task holds the cluster until a person
    // completes it.
    if let (Some(bad), Some(cur)) = (from_commit, from) {
        lockdown::mark_bad(cx.state, bad, cur, cx.clock.start(), rid);
    }
    let from_name = from
        .as_ref()
        .map_or("the current release".to_owned(), ToString::to_string);
    let lock_task = lockdown::lock(
        outbox,
        cx.cluster,
        &cx.run.config.asana.workspace,
        rid,
        rid,
        plan.lock_task_name().unwrap_or_default(),
        format!(
            "`{}` switched {label} from {from_name}{} back to {to} ({}) at {} (run {rid}, by {}).\n\nAutomatic pushes of {label} stop while this task is open: complete it once the cause is understood.{}",
            config.cli(&format!("rollback {c}")),
            from_commit.as_ref().map(|x| format!(" ({})", x.short())).unwrap_or_default(),
            commit.short(),
            cx.clock.start().format("%Y-%m-%d %H:%M:%S UTC"),
            cx.operator,
            from_commit.as_ref().map(|x| format!(" The rolled-back commit {} is not pushed again unless someone runs `{}`.", x.short(), config.cli(&format!("push {c} --commit {}", x.short())))).unwrap_or_default(),
        ),
    )
    .await;
    let task = match outbox
        .submit(
            rid,
            Op::CreateTask {
                key: rid.to_owned(),
                name,
                notes,
                html_notes: None,
                project: cx.cluster.push_project.to_string(),
                workspace: None,
                assignee: None,
            },
        )
        .await
    {
        Delivery::Applied(Some(t)) => {
            journal.write("record", json!({ "task": t.gid, "link": t.link }));
            Some((TaskRef::Gid(t.gid.clone()), Some((t.gid, t.link))))
        }
        Delivery::Queued => Some((TaskRef::Created(rid.to_owned()), None)),
        _ => None,
    };

    journal.write("switch", json!({ "release": to.as_str() }));
    let hosts: Vec<_> = plan.hosts.iter().map(|(h, _)| h.clone()).collect();
    let fleet = Fleet::new(&hosts, cx.cluster, &cx.run.config.sync, cx.run.child_env);
    let asked = plan.switching();
    let results = fleet.switch(to, &asked).await;
    let mut failed: Vec<String> = results
        .iter()
        .zip(&asked)
        .filter(|(_, ok)| **ok)
        .filter_map(|(r, _)| match &r.outcome {
            Ok(None) => None,
            Ok(Some(e)) => Some(format!(
                "{}: switched, but after_switch failed: {e}",
                r.host
            )),
            Err(e) => Some(format!("{}: {e}", r.host)),
        })
        .collect();
    failed.extend(plan.hosts.iter().filter_map(|(h, s)| match s {
        crate::domain::decide::rollback::HostStep::Skip(why) => Some(format!("{h}: {why}")),
        crate::domain::decide::rollback::HostStep::Switch => None,
    }));
    let mut text = format!(
        "rollback: {}/{} hosts now run {to}",
        hosts.len() - failed.len(),
        hosts.len()
    );
    for f in &failed {
        text.push_str(&format!("\n- FAILED {f}"));
    }
    if let Some(l) = &lock_task {
        text.push_str(&format!(
            "\nlock task (pushes stop until it is completed): {l}"
        ));
    }
    if let Some((t, _)) = &task {
        outbox
            .submit(
                rid,
                Op::Comment {
                    task: t.clone(),
                    text: text.clone(),
                },
            )
            .await;
        if failed.is_empty() {
            outbox.submit(rid, Op::Complete { task: t.clone() }).await;
        }
    }
    let push_task = task.and_then(|(_, created)| created);
    if results.iter().any(|r| r.outcome.is_ok()) {
        let d = record.deployed(to, cx.clock.now(), push_task.clone());
        if let Err(e) = cx.state.set_deployed(&d) {
            tracing::error!(error = %e, "the hosts switched back but the deployed release could not be recorded");
        }
        crate::adapters::failpoint::hit("deployed");
    }
    let error = failed.join("; ");
    let h = record.history(
        if failed.is_empty() {
            RunOutcome::Success
        } else {
            RunOutcome::Failed
        },
        cx.clock.now(),
        push_task.as_ref().map(|(_, l)| l.clone()),
        (!failed.is_empty()).then_some(Failed {
            step: "switch",
            error: &error,
        }),
    );
    if let Err(e) = cx.state.append_history(&h) {
        tracing::error!(error = %e, "cannot append to the history");
    }
    journal.close();
    Some(RolledBack {
        run_id: rid.to_owned(),
        release: to.clone(),
        commit: commit.clone(),
        from_commit: from_commit.clone(),
        hosts: hosts.len(),
        failed,
        text,
        push_task: push_task.map(|(_, l)| l),
        lock_task,
    })
}
