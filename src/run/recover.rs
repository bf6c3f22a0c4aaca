//! Recovery of a run that never finished (kill -9, power loss), from the
//! cluster's journal: the first thing every push and rollback does once it
//! holds the cluster's lock (SPEC §2: "the next run notices the unfinished
//! run, comments on its push task, and converges all hosts onto one
//! release before anything else").
//!
//! 1. Bookkeeping, once (a `recovered` journal entry marks it done): the
//!    run goes into the history (failed, or success if it had recorded its
//!    release as deployed, or rolled back if a failed check had begun its
//!    automatic rollback), and its push task gets a comment — through the
//!    outbox, so a task the run may or may not have created is found or
//!    created, never duplicated. A run that a failed check stopped
//!    (journaled `rollback` or `halt`) had its commit marked bad and its
//!    lock task made here too, if it died before it could.
//! 2. Convergence: every host is probed and moved to the one release
//!    `decide::recover` names; a partial release directory is removed.
//!    If more hosts than `max_failed_hosts` cannot be converged, the
//!    journal stays and the run fails: the next run tries again.
//!
//! It decides nothing itself; `decide::recover` does.

use serde_json::{json, Value};

use crate::adapters::hosts::{Fleet, HostErrorKind};
use crate::adapters::state::{ClusterState, JournalEntry};
use crate::config::ClusterSettings;
use crate::domain::decide::recover::{converge, host_action, Converge, Interrupted};
use crate::domain::model::{CommitId, Host, ReleaseId, RunKind, RunOutcome, TaskGid};
use crate::run::clock::RunClock;
use crate::run::journal::Journal;
use crate::run::lockdown;
use crate::run::outbox::{Op, Outbox, TaskRef};
use crate::run::record::{Failed, RunRecord};
use crate::run::Ctx;

/// What recovery needs.
pub struct Cx<'a> {
    pub run: Ctx<'a>,
    pub state: &'a ClusterState,
    pub cluster: &'a ClusterSettings,
    pub hosts: &'a [Host],
    /// The run doing the recovery (named in the comment).
    pub by_run: &'a str,
    /// Its clock.
    pub clock: &'a RunClock,
}

/// What recovery did.
#[derive(Debug)]
pub struct Recovered {
    pub run_id: String,
    pub rollback: bool,
    /// The step the run stopped in.
    pub stopped_in: String,
    /// Whether it had recorded its release as deployed.
    pub finished: bool,
    /// The release every host now runs (`None`: none, first push undone).
    pub converged_to: Option<ReleaseId>,
    /// Hosts that could not be converged, with why.
    pub host_errors: Vec<String>,
    /// A failed check had stopped it: `rolled back` (every host goes
    /// back) or `halted` (hosts stay); the cluster is locked either way.
    pub stopped_by_check: Option<&'static str>,
}

impl Recovered {
    /// One line for people.
    pub fn summary(&self, cluster: &str) -> String {
        let what = if self.rollback { "rollback" } else { "push" };
        let end = match (&self.converged_to, self.host_errors.is_empty()) {
            (Some(r), true) => format!("every host runs {r}"),
            (None, true) => "no host has a current release (the first push was undone)".into(),
            (Some(r), false) => format!("hosts run {r} except {}", self.host_errors.join("; ")),
            (None, false) => format!("failed on {}", self.host_errors.join("; ")),
        };
        format!(
            "{cluster}: {what} {} did not finish (it stopped during step {}); {}; {end}",
            self.run_id,
            self.stopped_in,
            if self.finished {
                "it had switched every host, so it is recorded as a success"
            } else if self.rollback {
                "its rollback was finished"
            } else if self.stopped_by_check == Some("rolled back") {
                "a check had failed: its automatic rollback was finished, the cluster locked and the commit marked bad"
            } else if self.stopped_by_check.is_some() {
                "a check had failed and it had stopped there (auto_rollback = false): the hosts stay as they were, the cluster locked and the commit marked bad"
            } else {
                "recorded as failed and undone"
            }
        )
    }
}

fn find<'e>(entries: &'e [JournalEntry], step: &str) -> Option<&'e Value> {
    entries.iter().find(|e| e.step == step).map(|e| &e.detail)
}

fn text(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The release a journal entry names under `key`.
fn release(v: Option<&Value>, key: &str) -> Option<ReleaseId> {
    text(v, key).as_deref().and_then(ReleaseId::parse)
}

/// Recovers the cluster's interrupted run, if there is one. An error means
/// the hosts could not be converged (the journal stays for the next run).
pub async fn interrupted(cx: &Cx<'_>, outbox: &mut Outbox) -> anyhow::Result<Option<Recovered>> {
    let c = &cx.cluster.name;
    let entries = cx.state.unfinished()?;
    let Some(first) = entries.first() else {
        return Ok(None);
    };
    let old_run = first.run_id.clone();
    let start = find(&entries, "start");
    let rollback =
        text(start, "kind").as_deref().and_then(RunKind::parse) == Some(RunKind::Rollback);
    let stopped_in = entries
        .iter()
        .rev()
        .map(|e| e.step.as_str())
        .find(|s| *s != "recovered")
        .unwrap_or("start")
        .to_owned();
    let deployed = cx.state.deployed()?;
    let finished = deployed.as_ref().is_some_and(|d| d.run_id == old_run);
    let stop = check_stop(&entries);
    let run = Interrupted {
        rollback,
        release: release(start, "release"),
        before: release(start, "before"),
        finished,
        halted: stop.as_ref().is_some_and(|s| !s.rolled_back),
    };
    tracing::warn!(app = %cx.run.config.app, cluster = %c, run = %old_run, step = %stopped_in, "an earlier run did not finish; recovering");
    if find(&entries, "recovered").is_none() {
        bookkeeping(cx, outbox, &entries, &run, &stopped_in, stop.as_ref()).await;
        Journal::new(cx.state, &old_run, cx.clock).write("recovered", json!({ "by": cx.by_run }));
    }
    let target = converge(&run);
    let host_errors = converge_hosts(cx, &run, &target).await;
    let converged_to = match &target {
        Converge::To(r) => Some(r.clone()),
        Converge::Unset(_) => None,
        Converge::Nothing => deployed.as_ref().and_then(|d| ReleaseId::parse(&d.release)),
    };
    // A rollback finished here: the hosts run its target now.
    if rollback && !finished && host_errors.len() < cx.hosts.len() {
        if let (Some(r), Some(_)) = (&converged_to, text(start, "to")) {
            let record = find(&entries, "record");
            let task = text(record, "task").zip(text(record, "link"));
            let d = record_of(&entries, &run).deployed(r, cx.clock.now(), task);
            cx.state.set_deployed(&d)?;
        }
    }
    let out = Recovered {
        run_id: old_run,
        rollback,
        stopped_in,
        finished,
        converged_to,
        host_errors,
        stopped_by_check: stop.map(|s| {
            if s.rolled_back {
                "rolled back"
            } else {
                "halted"
            }
        }),
    };
    let policy = cx.run.config.sync.policy();
    if crate::domain::decide::hosts::too_many(&policy, out.host_errors.len(), cx.hosts.len()) {
        anyhow::bail!(
            "{}; more hosts than max_failed_hosts = {} could not be converged, so nothing else runs until they are (the next run tries again)",
            out.summary(&cx.run.config.label(c)),
            policy.max_failed
        );
    }
    cx.state.close_journal()?;
    Ok(Some(out))
}

/// A push that a failed check stopped, as its journal says.
struct CheckStopped {
    rolled_back: bool,
    /// `health check` or `wave check`.
    step: String,
    what: String,
    commit: Option<CommitId>,
    release: Option<ReleaseId>,
    lock_name: String,
    lock_notes: String,
}

fn check_stop(entries: &[JournalEntry]) -> Option<CheckStopped> {
    let e = entries
        .iter()
        .find(|e| e.step == "rollback" || e.step == "halt")?;
    let d = Some(&e.detail);
    let lock = e.detail.get("lock");
    Some(CheckStopped {
        rolled_back: e.step == "rollback",
        step: text(d, "step").unwrap_or_else(|| "wave".into()),
        what: text(d, "what").unwrap_or_default(),
        commit: text(d, "commit").as_deref().and_then(CommitId::parse),
        release: release(d, "release"),
        lock_name: text(lock, "name").unwrap_or_default(),
        lock_notes: text(lock, "notes").unwrap_or_default(),
    })
}

/// The killed run as its records name it, from its journal.
fn record_of(entries: &[JournalEntry], run: &Interrupted) -> RunRecord {
    let start = find(entries, "start");
    RunRecord {
        run_id: entries[0].run_id.clone(),
        kind: if run.rollback {
            RunKind::Rollback
        } else {
            RunKind::Push
        },
        commit: text(start, "to").unwrap_or_default(),
        previous: text(start, "from"),
        release: run.release.clone(),
        started: entries[0].at,
    }
}

/// The history record and the push task's comment, once.
async fn bookkeeping(
    cx: &Cx<'_>,
    outbox: &mut Outbox,
    entries: &[JournalEntry],
    run: &Interrupted,
    stopped_in: &str,
    stop: Option<&CheckStopped>,
) {
    let old_run = &entries[0].run_id;
    let start = find(entries, "start");
    let record = find(entries, "record");
    // The push task: known from the journal, created by the outbox, or
    // (the run died around its create) found or created from its text.
    let task = match text(record, "task").as_deref().and_then(TaskGid::parse) {
        Some(g) => Some(TaskRef::gid(&g)),
        None if outbox.created(old_run).is_some() || outbox.creating(old_run) => {
            Some(TaskRef::Created(old_run.clone()))
        }
        None => {
            let t = start.and_then(|s| s.get("task"));
            match (text(t, "name"), text(t, "notes"), text(t, "project")) {
                (Some(name), Some(notes), Some(project)) => {
                    outbox
                        .submit(
                            cx.by_run,
                            Op::CreateTask {
                                key: old_run.clone(),
                                name,
                                notes,
                                html_notes: None,
                                project,
                                workspace: None,
                                assignee: None,
                            },
                        )
                        .await;
                    Some(TaskRef::Created(old_run.clone()))
                }
                _ => None,
            }
        }
    };
    let link = text(record, "link").or_else(|| outbox.created(old_run).map(|t| t.link.clone()));
    // A failed check stopped it: what it would have done once it had
    // switched its hosts back (or halted), unless it did.
    let mut lock_link = None;
    if let (Some(s), false) = (stop, run.finished) {
        if let (Some(c), Some(r)) = (&s.commit, &s.release) {
            lockdown::mark_bad(cx.state, c, r, cx.clock.now(), old_run);
        }
        lock_link = lockdown::lock(
            outbox,
            cx.cluster,
            &cx.run.config.asana.workspace,
            cx.by_run,
            old_run,
            s.lock_name.clone(),
            s.lock_notes.clone(),
        )
        .await;
    }
    let history = cx.state.history().unwrap_or_default();
    if !history.iter().any(|r| &r.run_id == old_run) {
        let (step, error) = match stop {
            Some(s) if !run.finished => (
                s.step.clone(),
                format!(
                    "{}; the process stopped {} and {} finished it",
                    s.what,
                    if s.rolled_back {
                        "during the automatic rollback"
                    } else {
                        "while it halted"
                    },
                    cx.by_run
                ),
            ),
            _ => (
                format!("interrupted during {stopped_in}"),
                format!(
                    "the process stopped before the run finished; {} recovered it",
                    cx.by_run
                ),
            ),
        };
        let r = record_of(entries, run).history(
            if run.finished {
                RunOutcome::Success
            } else if stop.is_some_and(|s| s.rolled_back) {
                RunOutcome::RolledBack
            } else {
                RunOutcome::Failed
            },
            cx.clock.now(),
            link,
            (!run.finished).then_some(Failed {
                step: &step,
                error: &error,
            }),
        );
        if let Err(e) = cx.state.append_history(&r) {
            tracing::error!(error = %e, "cannot record the interrupted run");
        }
    }
    let Some(task) = task else { return };
    let what = if run.rollback { "rollback" } else { "push" };
    let text = if let (Some(s), false) = (stop, run.finished) {
        format!(
            "this push stopped during step {stopped_in} (the process was killed or the machine went down) after its {}. Run {} {}; a lock task holds the cluster{} and the commit is marked bad.",
            s.what,
            cx.by_run,
            if s.rolled_back {
                match converge(run) {
                    Converge::To(r) => format!("finishes its automatic rollback: every host goes back to {r}, and the new release is removed"),
                    _ => "finishes its automatic rollback: the new release is removed from every host".to_owned(),
                }
            } else {
                "leaves the hosts as the halted push left them".to_owned()
            },
            lock_link.map(|l| format!(" ({l})")).unwrap_or_default(),
        )
    } else if run.finished {
        format!(
            "this {what} switched every host and recorded release {}, but the process stopped (step {stopped_in}) before it completed this task. Run {} completed it.",
            run.release.as_ref().map_or("?".into(), ToString::to_string),
            cx.by_run
        )
    } else {
        let end = match converge(run) {
            Converge::To(r) if run.rollback => format!("finishes the rollback: every host goes to {r}"),
            Converge::To(r) => format!("moves every host back to {r}, the release deployed before this push, and removes the new release"),
            Converge::Unset(_) => "removes the new release from every host (nothing was deployed before)".into(),
            Converge::Nothing => "found nothing to undo on the hosts".into(),
        };
        format!(
            "this {what} stopped during step {stopped_in} and did not finish (the process was killed or the machine went down). Run {} records it as {} and {end}.",
            cx.by_run,
            if run.rollback { "interrupted" } else { "failed" },
        )
    };
    outbox
        .submit(
            cx.by_run,
            Op::Comment {
                task: task.clone(),
                text,
            },
        )
        .await;
    if run.finished || run.rollback {
        outbox.submit(cx.by_run, Op::Complete { task }).await;
    }
}

/// Moves every host to `target`; the hosts that could not be, with why.
async fn converge_hosts(cx: &Cx<'_>, run: &Interrupted, target: &Converge) -> Vec<String> {
    if *target == Converge::Nothing || cx.hosts.is_empty() {
        return Vec::new();
    }
    let fleet = Fleet::new(cx.hosts, cx.cluster, &cx.run.config.sync, cx.run.child_env);
    let mut errors = Vec::new();
    let mut actions = Vec::new();
    for p in fleet.releases().await {
        match p.outcome {
            Ok(h) => {
                let a = host_action(target, run, &h);
                if let Some(e) = &a.error {
                    errors.push(format!("{}: {e}", p.host));
                }
                actions.push(a);
            }
            Err(e) => {
                errors.push(format!("{}: cannot read its releases: {e}", p.host));
                actions.push(Default::default());
            }
        }
    }
    let switch: Vec<Option<ReleaseId>> = actions.iter().map(|a| a.switch.clone()).collect();
    for (i, r) in fleet.switch_each(&switch).await.into_iter().enumerate() {
        let failed = r
            .outcome
            .as_ref()
            .err()
            .filter(|e| !e.is(HostErrorKind::Skipped));
        if let Some(e) = failed {
            errors.push(format!("{}: cannot switch: {e}", r.host));
            // `current` may still point at the release to remove.
            actions[i].remove.clear();
        }
    }
    let unset: Vec<Option<ReleaseId>> = actions.iter().map(|a| a.unset.clone()).collect();
    if unset.iter().any(Option::is_some) {
        for (i, r) in fleet.unset(&unset).await.into_iter().enumerate() {
            if let Err(e) = r.outcome {
                errors.push(format!("{}: cannot remove current: {e}", r.host));
                actions[i].remove.clear();
            }
        }
    }
    let remove: Vec<Vec<ReleaseId>> = actions.iter().map(|a| a.remove.clone()).collect();
    for r in fleet.remove(&remove).await {
        if let Err(e) = r.outcome {
            tracing::warn!(host = %r.host, error = %e, "cannot remove the interrupted run's release");
        }
    }
    for a in &actions {
        if a.switch.is_some() || a.unset.is_some() || !a.remove.is_empty() {
            tracing::info!(switch = ?a.switch, unset = ?a.unset, remove = ?a.remove, "converged a host");
        }
    }
    errors
}
