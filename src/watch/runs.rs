//! What each finished run leaves for people to read: its report,
//! `runs/<run_id>.json` beside its kept journal (`docs/state.md`), written
//! by [`Observer`](super::Observer) after a push or a rollback from what
//! the run returned — the hosts' results and bytes, the changelog, what a
//! person told it to ignore, and its Asana writes as the outbox holds them.
//! The on-call page's run view reads it (`cmd::page`).
//!
//! Only data the run already returned is written here; nothing is decided.
//! Writing the report can fail (a warning in the log): the run has ended
//! by then and its history line is written.

use serde_json::Value;

use crate::adapters::state::{
    read_lines, AsanaWrite, ClusterState, RunChange, RunHost, RunIgnored, RunReport,
};
use crate::domain::decide::rollback::{HostStep, RollbackPlan};
use crate::domain::model::RunKind;
use crate::domain::plan::Plan;
use crate::domain::report::PushReport;
use crate::run::rollback::RolledBack;

/// The report of a push, from its plan and how it ended.
pub fn of_push(plan: &Plan, r: &PushReport, state: &ClusterState, by: String) -> RunReport {
    let outcome = match (&r.failure, &r.stopped) {
        (_, Some(s)) if s.rolled_back => "rolled-back",
        (Some(_), _) => "failed",
        (None, _) => "pushed",
    };
    RunReport {
        run_id: r.run_id.clone(),
        kind: RunKind::Push,
        outcome: outcome.into(),
        commit: r.commit.to_string(),
        previous: r.previous.as_ref().map(ToString::to_string),
        release: Some(r.release.to_string()),
        push_task: r.task.as_ref().map(|t| t.gid.to_string()),
        push_task_link: r.task.as_ref().map(|t| t.link.clone()),
        failed_step: r.failure.as_ref().map(|f| f.0.clone()),
        error: r.failure.as_ref().map(|f| f.1.clone()),
        stopped: r.stopped.as_ref().map(|s| {
            format!(
                "wave {} of {}: {}{}",
                s.wave,
                s.of,
                s.what,
                if s.rolled_back {
                    "; every switched host went back"
                } else {
                    "; the push stopped there"
                }
            )
        }),
        lock_task: r.stopped.as_ref().and_then(|s| s.lock_task.clone()),
        hosts: r
            .hosts
            .iter()
            .map(|h| RunHost {
                host: h.host.to_string(),
                result: h.result.clone(),
                bytes_sent: h.bytes_sent,
            })
            .collect(),
        changelog: plan
            .changelog
            .entries
            .iter()
            .map(|e| RunChange {
                commit: e.commit.to_string(),
                subject: e.subject.clone(),
                author: e.author.clone(),
            })
            .collect(),
        changelog_more: plan.changelog.more,
        ignored: plan.ignored.as_ref().map(|ig| RunIgnored {
            reason: ig.reason.clone(),
            what: ig
                .locks
                .iter()
                .map(|t| format!("lock {t}"))
                .chain(
                    ig.unknown
                        .iter()
                        .map(|u| format!("the lock state could not be read ({u})")),
                )
                .chain(ig.holds.iter().map(ToString::to_string))
                .collect(),
        }),
        by,
        duration_ms: r.duration.as_millis() as u64,
        asana_queued: r.asana_queued,
        asana_failures: r.asana_failures,
        asana_writes: asana_writes(state, &r.run_id),
    }
}

/// The report of a rollback, from its plan and how it ended.
pub fn of_rollback(
    plan: &RollbackPlan,
    done: &RolledBack,
    previous: Option<String>,
    queued: usize,
    duration: std::time::Duration,
    state: &ClusterState,
    by: String,
) -> RunReport {
    let hosts = plan
        .hosts
        .iter()
        .map(|(h, step)| {
            let name = h.to_string();
            let failed = done
                .failed
                .iter()
                .find_map(|f| f.strip_prefix(&format!("{name}: ")));
            RunHost {
                result: match (failed, step) {
                    (Some(why), _) => why.to_owned(),
                    (None, HostStep::Skip(why)) => format!("left alone: {why}"),
                    (None, HostStep::Switch) => format!("runs {}", done.release),
                },
                host: name,
                bytes_sent: None,
            }
        })
        .collect();
    RunReport {
        run_id: done.run_id.clone(),
        kind: RunKind::Rollback,
        outcome: if done.failed.is_empty() {
            "rolled-back"
        } else {
            "failed"
        }
        .into(),
        commit: done.commit.to_string(),
        previous,
        release: Some(done.release.to_string()),
        push_task: None,
        push_task_link: done.push_task.clone(),
        failed_step: (!done.failed.is_empty()).then(|| "switch".to_owned()),
        error: (!done.failed.is_empty()).then(|| done.failed.join("; ")),
        stopped: None,
        lock_task: done.lock_task.clone(),
        hosts,
        changelog: Vec::new(),
        changelog_more: 0,
        ignored: None,
        by,
        duration_ms: duration.as_millis() as u64,
        asana_queued: queued,
        asana_failures: 0,
        asana_writes: asana_writes(state, &done.run_id),
    }
}

/// Keeps a report; a failure is a warning (the run has ended).
pub fn keep(state: &ClusterState, r: &RunReport) {
    if let Err(e) = state.set_run_report(r) {
        tracing::warn!(error = %e, run = %r.run_id, "cannot keep the run's report");
    }
}

/// Run `run`'s Asana writes, as the cluster's outbox holds them now: each
/// queued line of that run, with what became of it. The lines are read as
/// `run::outbox` writes them (`{line: queued, seq, run, op: {op, …}}`, then
/// `{line: done, seq, outcome}`); a line of another shape is skipped. A
/// compacted outbox has forgotten applied writes: the report keeps them.
pub fn asana_writes(state: &ClusterState, run: &str) -> Vec<AsanaWrite> {
    let lines: Vec<Value> = read_lines(&state.outbox_path()).unwrap_or_default();
    let mut out: Vec<AsanaWrite> = Vec::new();
    for l in &lines {
        let seq = l.get("seq").and_then(Value::as_u64);
        match (l.get("line").and_then(Value::as_str), seq) {
            (Some("queued"), Some(seq)) if l.get("run").and_then(Value::as_str) == Some(run) => {
                let op = l.get("op").cloned().unwrap_or(Value::Null);
                out.push(AsanaWrite {
                    seq,
                    what: describe(&op),
                    text: op.get("text").and_then(Value::as_str).map(str::to_owned),
                    state: "queued".into(),
                });
            }
            (Some("done"), Some(seq)) => {
                if let Some(w) = out.iter_mut().find(|w| w.seq == seq) {
                    w.state = l
                        .get("outcome")
                        .and_then(Value::as_str)
                        .unwrap_or("applied")
                        .to_owned();
                }
            }
            _ => {}
        }
    }
    out
}

/// An outbox op in words, without its (untrusted) text.
fn describe(op: &Value) -> String {
    let s = |k: &str| op.get(k).and_then(Value::as_str).unwrap_or_default();
    match s("op") {
        "create_task" => "create the push task".to_owned(),
        "create_approval" => "ask for an approval".to_owned(),
        "comment" => "comment".to_owned(),
        "complete" => "complete the task".to_owned(),
        "remove_project" => format!("take a task out of project {}", digits(s("project"))),
        "rename" => "rename a task".to_owned(),
        other => format!("{} write", digits_or_word(other)),
    }
}

/// A gid as stored, if it is one.
fn digits(s: &str) -> &str {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s
    } else {
        "?"
    }
}

fn digits_or_word(s: &str) -> &str {
    if s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        s
    } else {
        "an Asana"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::ClusterName;

    #[test]
    fn a_runs_writes_are_its_queued_lines_with_what_became_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::adapters::state::StateDir::new(dir.path())
            .cluster(&ClusterName::parse("beta").unwrap());
        state.prepare().unwrap();
        let lines = [
            r#"{"line":"queued","seq":1,"at":"2026-11-22T10:15:00Z","run":"beta-1","op":{"op":"create_task","key":"beta-1","name":"n","notes":"","project":"5"}}"#,
            r#"{"line":"done","seq":1,"outcome":"applied","key":"beta-1","task":{"gid":"9","link":"l"}}"#,
            r#"{"line":"queued","seq":2,"at":"2026-11-22T10:15:01Z","run":"beta-0","op":{"op":"complete","task":{"gid":"8"}}}"#,
            r#"{"line":"queued","seq":3,"at":"2026-11-22T10:15:02Z","run":"beta-1","op":{"op":"comment","task":{"created":"beta-1"},"text":"<b>stage</b>"}}"#,
            "not json",
        ];
        std::fs::write(state.outbox_path(), lines.join("\n") + "\n").unwrap();
        let w = asana_writes(&state, "beta-1");
        let seen: Vec<(u64, &str, Option<&str>, &str)> = w
            .iter()
            .map(|w| (w.seq, w.what.as_str(), w.text.as_deref(), w.state.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "create the push task", None, "applied"),
                (3, "comment", Some("<b>stage</b>"), "queued")
            ]
        );
    }
}
