//! Execute: walks a `Plan`'s steps for one push and makes the adapter calls
//! each step needs — Asana for the push task, `build` for the artifact,
//! `sync` for the hosts, `state` for the record. It holds no policy: whether
//! to push was decided before; what counts as too many failed hosts is the
//! config's `max_failed_hosts`, applied the same way at stage and switch.
//!
//! Asana writes after the gate never fail the push (SPEC §2): they go
//! through the cluster's outbox (`outbox.rs`), which queues what Asana does
//! not take now for the next run. Every step is written to the cluster's
//! journal before its effects, so an interrupted run can be recovered
//! (`recover.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use crate::adapters::asana::Client;
use crate::adapters::build;
use crate::adapters::hosts::{self, Fleet, HostResult, SshOptions, Staged};
use crate::adapters::process::ChildEnv;
use crate::adapters::state::{Deployed, HistoryRecord, JournalEntry, StateDir};
use crate::config::{ClusterSettings, Config};
use crate::domain::model::{CommitId, Host, ReleaseId, TaskGid};
use crate::domain::plan::{Plan, Step};
use crate::domain::report::{HostLine, PushReport, TaskRef};
use crate::domain::text::printable;
use crate::run::outbox::{self, Delivery, Op, Outbox};

/// What a push needs from its surroundings.
pub struct Context<'a> {
    pub config: &'a Config,
    pub client: &'a Client,
    pub state: &'a StateDir,
    pub child_env: &'a ChildEnv,
    pub cluster: &'a ClusterSettings,
    pub hosts: Vec<Host>,
    /// The run's start: read once by the caller.
    pub now: DateTime<Utc>,
    /// The run's id (`run_id`), made by the caller.
    pub run_id: String,
    /// What watches the run (progress bars, stage metrics).
    pub progress: &'a dyn crate::run::Progress,
    /// Who runs it (`user@host`), for the push task's notes.
    pub operator: &'a str,
    /// Print a line per step on stdout.
    pub verbose: bool,
    /// Set when pushgate is shutting down: stop before the next stage or switch.
    pub stop: Option<&'a AtomicBool>,
}

struct Failure {
    step: &'static str,
    message: String,
    tail: Option<String>,
}

impl Failure {
    fn new(step: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            step,
            message: message.into(),
            tail: None,
        }
    }
}

/// A new run id: cluster, start time and a random suffix.
pub fn run_id(cluster: &ClusterSettings, now: DateTime<Utc>) -> String {
    format!(
        "{}-{}-{:04x}",
        cluster.name,
        now.format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}

/// The push task's name: `beta push 3f2a9c1 · 2026-11-22 10:15 UTC`.
pub fn task_name(
    cluster: &ClusterSettings,
    kind: &str,
    commit: &CommitId,
    now: DateTime<Utc>,
) -> String {
    format!(
        "{} {kind} {} · {}",
        cluster.name,
        commit.short(),
        now.format("%Y-%m-%d %H:%M UTC")
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

struct Run<'c, 'a> {
    cx: &'c Context<'a>,
    plan: &'c Plan,
    run_id: String,
    release: ReleaseId,
    from: Option<CommitId>,
    to: CommitId,
    task: Option<TaskRef>,
    /// What later writes name the push task by (also before it exists).
    task_ref: Option<outbox::TaskRef>,
    outbox: &'c mut Outbox,
    artifact: Option<PathBuf>,
    staged: Vec<HostResult<Staged>>,
    hosts: Vec<HostLine>,
}

/// Runs the plan's steps, pushing `to` over `from` (the plan's `Push`
/// verdict). The caller holds the cluster's lock and has recovered any
/// interrupted run; Asana writes go through `outbox`.
pub async fn push(
    cx: &Context<'_>,
    plan: &Plan,
    from: Option<&CommitId>,
    to: &CommitId,
    outbox: &mut Outbox,
) -> PushReport {
    let started = Instant::now();
    let latest = cx
        .state
        .history(&cx.cluster.name)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.release.as_deref().and_then(ReleaseId::parse))
        .max();
    let before = outbox.tally.clone();
    let mut run = Run {
        cx,
        plan,
        run_id: cx.run_id.clone(),
        release: ReleaseId::after(cx.now, to, latest.as_ref()),
        from: from.cloned(),
        to: to.clone(),
        task: None,
        task_ref: None,
        outbox,
        artifact: None,
        staged: Vec::new(),
        hosts: Vec::new(),
    };
    let span = tracing::info_span!("push", cluster = %cx.cluster.name, run = %run.run_id);
    let failure = run.steps(started).instrument(span).await;
    let queued = run.outbox.pending();
    PushReport {
        run_id: run.run_id,
        release: run.release,
        commit: run.to,
        previous: run.from,
        task: run.task,
        failure,
        hosts: run.hosts,
        asana_failures: run.outbox.tally.dropped - before.dropped,
        asana_queued: queued,
        duration: started.elapsed(),
    }
}

impl Run<'_, '_> {
    /// Walks the plan's steps; the failed step and why, if one failed.
    async fn steps(&mut self, started: Instant) -> Option<(String, String)> {
        let run = self;
        let plan = run.plan;
        let cx = run.cx;
        let deployed_release = cx
            .state
            .deployed(&cx.cluster.name)
            .ok()
            .flatten()
            .and_then(|d| ReleaseId::parse(&d.release));
        let (name, notes) = run.task_text();
        run.journal(
            "start",
            json!({
                "kind": "push",
                "from": run.from.as_ref().map(ToString::to_string),
                "to": run.to.as_str(),
                "release": run.release.as_str(),
                "before": deployed_release.as_ref().map(ToString::to_string),
                "task": { "name": name, "notes": notes, "project": cx.cluster.push_project.as_str() },
            }),
        );
        let mut failure = None;
        for step in &plan.steps {
            if matches!(step, Step::Stage { .. } | Step::Switch) && run.stopping() {
                if matches!(step, Step::Switch) {
                    run.remove_release().await;
                }
                let f = Failure::new(
                    if matches!(step, Step::Switch) {
                        "switch"
                    } else {
                        "stage"
                    },
                    "pushgate is shutting down: stopped before this step; no host was switched",
                );
                run.fail(&f, started.elapsed()).await;
                failure = Some((f.step.to_owned(), f.message));
                break;
            }
            let result = match step {
                Step::Record => {
                    run.record(name.clone(), notes.clone()).await;
                    Ok(())
                }
                Step::Build { cached } => run.build(*cached).await,
                Step::Ship { from } => run.ship(from).await,
                Step::Stage { .. } => run.stage().await,
                Step::Switch => run.switch().await,
                Step::Close => {
                    run.close(started.elapsed()).await;
                    Ok(())
                }
            };
            if let Err(f) = result {
                run.fail(&f, started.elapsed()).await;
                failure = Some((f.step.to_owned(), f.message));
                break;
            }
        }
        failure
    }

    /// The push task's name and its notes: cluster, commits, what was
    /// ignored by hand, changelog, run id, bastion.
    fn task_text(&self) -> (String, String) {
        let cx = self.cx;
        let changelog = &self.plan.changelog;
        let mut n = format!(
            "cluster: {}\nprevious: {}\nnew: {}\nrelease: {}\nhosts: {}\nrun: {}\nbastion: {}\n",
            cx.cluster.name,
            self.from
                .as_ref()
                .map_or("(nothing deployed)".to_owned(), ToString::to_string),
            self.to,
            self.release,
            cx.hosts.len(),
            self.run_id,
            cx.operator,
        );
        if let Some(ig) = &self.plan.ignored {
            n.push_str(&format!("\n{ig}\n"));
        }
        let count = changelog.len();
        n.push_str(&format!(
            "\nchangelog ({count} commit{}):\n",
            if count == 1 { "" } else { "s" }
        ));
        for e in &changelog.entries {
            n.push_str(&format!(
                "- {} {} ({})\n",
                e.commit.short(),
                printable(&e.subject, 200),
                printable(&e.author, 60)
            ));
        }
        if changelog.more > 0 {
            n.push_str(&format!("and {} more\n", changelog.more));
        }
        (task_name(cx.cluster, "push", &self.to, cx.now), n)
    }
}

impl Run<'_, '_> {
    fn stopping(&self) -> bool {
        self.cx.stop.is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// A step's result: on stdout for a person, else in the log.
    fn say(&self, line: String) {
        if self.cx.verbose {
            println!("{line}");
        } else {
            tracing::info!("{line}");
        }
    }

    fn journal(&self, step: &str, detail: serde_json::Value) {
        let e = JournalEntry {
            at: Utc::now(),
            run_id: self.run_id.clone(),
            step: step.to_owned(),
            detail,
        };
        if let Err(err) = self.cx.state.journal(&self.cx.cluster.name, &e) {
            tracing::warn!(error = %err, "cannot write the run journal");
        }
        crate::adapters::failpoint::hit(&format!("journal:{step}"));
    }

    fn fleet(&self) -> Fleet<'_> {
        Fleet {
            hosts: &self.cx.hosts,
            target: self.cx.cluster.target.as_deref(),
            settings: &self.cx.config.sync,
            ssh: SshOptions::from_settings(&self.cx.config.sync),
            env: self.cx.child_env,
        }
    }

    /// Comments on the push task, through the outbox.
    async fn comment(&mut self, text: String) {
        let Some(task) = self.task_ref.clone() else {
            return;
        };
        self.outbox
            .submit(&self.run_id, Op::Comment { task, text })
            .await;
    }

    /// Creates the push task (or queues its creation: the push goes on).
    async fn record(&mut self, name: String, notes: String) {
        let cx = self.cx;
        let op = Op::CreateTask {
            key: self.run_id.clone(),
            name,
            notes,
            project: cx.cluster.push_project.to_string(),
            workspace: None,
            assignee: None,
        };
        match self.outbox.submit(&self.run_id, op).await {
            Delivery::Applied(Some(t)) => match TaskGid::parse(&t.gid) {
                Some(gid) => {
                    self.say(format!("push task: {}", t.link));
                    self.journal("record", json!({ "task": gid.as_str(), "link": t.link }));
                    self.task_ref = Some(outbox::TaskRef::gid(&gid));
                    self.task = Some(TaskRef { gid, link: t.link });
                }
                None => tracing::warn!("Asana gave the push task a malformed gid"),
            },
            Delivery::Applied(None) => {}
            Delivery::Queued => {
                self.say(
                    "push task: queued (Asana is not answering); it is created when Asana is back"
                        .into(),
                );
                self.journal("record", json!({ "queued": true }));
                self.task_ref = Some(outbox::TaskRef::Created(self.run_id.clone()));
            }
            Delivery::Dropped(why) => {
                tracing::warn!(error = %why, "Asana refused the push task; pushing without it");
            }
        }
    }

    async fn build(&mut self, cached: bool) -> Result<(), Failure> {
        self.journal("build", json!({}));
        if !cached {
            self.cx.progress.build_started(&self.to);
        }
        let built = build::artifact(
            self.cx.state,
            &self.to,
            self.from.as_ref(),
            &self.cx.config.build,
            self.cx.child_env,
        )
        .await;
        self.cx.progress.build_finished();
        let built = built.map_err(|e| Failure {
            step: "build",
            tail: e.tail().map(str::to_owned),
            message: crate::domain::text::describe(&e),
        })?;
        let line = if built.cached {
            format!("build: reused the cached artifact of {}", self.to.short())
        } else {
            format!(
                "build: built {} in {}",
                self.to.short(),
                secs(built.duration)
            )
        };
        self.say(line.clone());
        self.comment(line).await;
        self.artifact = Some(built.artifact);
        Ok(())
    }

    /// `source = "cluster:…"`: the bytes that cluster ran, from the cache.
    async fn ship(&mut self, from: &crate::domain::model::ClusterName) -> Result<(), Failure> {
        self.journal("build", json!({ "ship_from": from.as_str() }));
        let artifact = self.cx.state.artifact(&self.to);
        if !artifact.is_dir() {
            return Err(Failure::new(
                "build",
                format!(
                    "the artifact of {} that {from} runs is not in {}; {} ships only {from}'s bytes and never rebuilds (push {from} again to rebuild it, or push {} with --commit)",
                    self.to.short(),
                    self.cx.state.artifacts().display(),
                    self.cx.cluster.name,
                    self.cx.cluster.name,
                ),
            ));
        }
        let line = format!("build: shipping {from}'s artifact of {}", self.to.short());
        self.say(line.clone());
        self.comment(line).await;
        self.artifact = Some(artifact);
        Ok(())
    }

    async fn stage(&mut self) -> Result<(), Failure> {
        let Some(artifact) = self.artifact.clone() else {
            return Err(Failure::new("stage", "no artifact to stage"));
        };
        if self.cx.hosts.is_empty() {
            return Err(Failure::new(
                "stage",
                format!("{} has no hosts", self.cx.cluster.name),
            ));
        }
        self.journal("stage", json!({ "release": self.release.as_str() }));
        let started = Instant::now();
        let progress = self.cx.progress;
        progress.stage_started(self.cx.hosts.len());
        let results = self
            .fleet()
            .stage(&artifact, &self.release, &|r| {
                let bytes = r.outcome.as_ref().ok().and_then(|s| s.bytes_sent);
                progress.host_staged(&r.host, r.outcome.is_ok(), bytes);
            })
            .await;
        progress.stage_finished();
        let failed = results.iter().filter(|r| r.outcome.is_err()).count();
        let mut lines = vec![format!(
            "stage: {}/{} hosts staged {} in {}",
            results.len() - failed,
            results.len(),
            self.release,
            secs(started.elapsed())
        )];
        for r in &results {
            lines.push(match &r.outcome {
                Ok(s) => format!(
                    "- {}: ok, {} sent, {}",
                    r.host,
                    s.bytes_sent
                        .map_or("? bytes".into(), crate::domain::text::bytes),
                    secs(r.duration)
                ),
                Err(e) => format!(
                    "- {}: FAILED after {} attempt{}: {e}",
                    r.host,
                    r.attempts,
                    if r.attempts == 1 { "" } else { "s" }
                ),
            });
        }
        let text = lines.join("\n");
        self.say(text.clone());
        self.comment(text).await;
        self.staged = results;
        let max = self.cx.config.sync.max_failed_hosts;
        // No host with the release is a failed push whatever the tolerance.
        if failed > max || failed == self.staged.len() {
            self.hosts = self
                .staged
                .iter()
                .map(|r| HostLine {
                    host: r.host.clone(),
                    result: match &r.outcome {
                        Ok(_) => "staged, then removed: too many hosts failed".to_owned(),
                        Err(e) => format!("failed to stage: {e}"),
                    },
                    bytes_sent: r.outcome.as_ref().ok().and_then(|s| s.bytes_sent),
                })
                .collect();
            self.remove_release().await;
            return Err(Failure::new(
                "stage",
                format!(
                    "{failed} of {} hosts failed to stage (max_failed_hosts = {max}); no host was switched",
                    self.staged.len()
                ),
            ));
        }
        Ok(())
    }

    /// Removes the new release from every host (after a failed stage or
    /// switch) but those that could not be reached at all: nothing was
    /// written there, and asking again would cost another timeout.
    async fn remove_release(&mut self) {
        let reached: Vec<bool> = (0..self.cx.hosts.len())
            .map(|i| {
                !matches!(self.staged.get(i).map(|r| &r.outcome),
                    Some(Err(e)) if e.starts_with("unreachable"))
            })
            .collect();
        self.remove_release_on(&reached).await;
    }

    /// Removes the new release from the hosts marked `true`.
    async fn remove_release_on(&mut self, hosts: &[bool]) {
        let which: Vec<Vec<ReleaseId>> = hosts
            .iter()
            .map(|h| {
                if *h {
                    vec![self.release.clone()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        for r in self.fleet().remove(&which).await {
            if let Err(e) = r.outcome {
                tracing::warn!(host = %r.host, error = %e, "cannot remove the staged release");
            }
        }
    }

    async fn switch(&mut self) -> Result<(), Failure> {
        let which: Vec<bool> = self.staged.iter().map(|r| r.outcome.is_ok()).collect();
        let before: Vec<Option<ReleaseId>> = self
            .staged
            .iter()
            .map(|r| {
                r.outcome
                    .as_ref()
                    .ok()
                    .and_then(|s| s.before.current.clone())
            })
            .collect();
        self.journal("switch", json!({
            "release": self.release.as_str(),
            "before": before.iter().map(|b| b.as_ref().map(ToString::to_string)).collect::<Vec<_>>(),
        }));
        let started = Instant::now();
        let results = self.fleet().switch(&self.release, &which).await;
        let stage_failed = which.iter().filter(|ok| !**ok).count();
        let switch_failed = results
            .iter()
            .zip(&which)
            .filter(|(r, staged)| **staged && !matches!(r.outcome, Ok(None)))
            .count();
        let max = self.cx.config.sync.max_failed_hosts;
        let too_many =
            stage_failed + switch_failed > max || stage_failed + switch_failed == results.len();
        if too_many {
            // Undo: every host asked to switch goes back to what it ran
            // (a host that failed or timed out may have swapped already;
            // switching is idempotent), and runs after_switch again.
            let back: Vec<Option<ReleaseId>> = which
                .iter()
                .zip(&before)
                .map(|(asked, b)| if *asked { b.clone() } else { None })
                .collect();
            self.journal("revert", json!({}));
            let reverted = self.fleet().switch_each(&back).await;
            // Remove the new release only where `current` surely does not
            // point at it: hosts never asked, or switched back. A host with
            // no earlier release keeps it rather than a dangling `current`.
            let removable: Vec<bool> = reverted
                .iter()
                .zip(&which)
                .map(|(r, asked)| !asked || r.outcome.is_ok())
                .collect();
            for (r, asked) in reverted.iter().zip(&which) {
                if let (Err(e), true) = (&r.outcome, asked) {
                    tracing::error!(host = %r.host, error = %e, "cannot switch back; the new release stays on this host");
                }
            }
            self.remove_release_on(&removable).await;
        }
        let mut lines = vec![format!(
            "switch: {}/{} hosts now run {} ({})",
            if too_many {
                0
            } else {
                results.len() - stage_failed - switch_failed
            },
            results.len(),
            self.release,
            secs(started.elapsed())
        )];
        self.hosts.clear();
        for (r, staged) in results.iter().zip(&self.staged) {
            let line = match (&staged.outcome, &r.outcome) {
                (Err(e), _) => format!("failed to stage: {e}"),
                (Ok(_), Ok(None)) if too_many => "switched, then switched back".to_owned(),
                (Ok(_), Ok(None)) => format!("runs {}", self.release),
                (Ok(_), Ok(Some(e))) => format!("switched, but after_switch failed: {e}"),
                (Ok(_), Err(e)) => format!("failed to switch: {e}"),
            };
            lines.push(format!("- {}: {line}", r.host));
            self.hosts.push(HostLine {
                host: r.host.clone(),
                result: line,
                bytes_sent: staged.outcome.as_ref().ok().and_then(|s| s.bytes_sent),
            });
        }
        let text = lines.join("\n");
        self.say(text.clone());
        self.comment(text).await;
        if too_many {
            return Err(Failure::new(
                "switch",
                format!(
                    "{} of {} hosts failed (max_failed_hosts = {max}); switched hosts were switched back",
                    stage_failed + switch_failed,
                    results.len()
                ),
            ));
        }
        self.prune(&results).await;
        Ok(())
    }

    /// Keeps `keep_releases` releases per switched host, never its current
    /// or previous one. A failure is a warning.
    async fn prune(&mut self, switched: &[HostResult<Option<String>>]) {
        let keep = self.cx.config.sync.keep_releases;
        let which: Vec<Vec<ReleaseId>> = self
            .staged
            .iter()
            .zip(switched)
            .map(|(s, r)| match (&s.outcome, &r.outcome) {
                (Ok(st), Ok(_)) => {
                    let mut all = st.before.releases.clone();
                    all.push(self.release.clone());
                    hosts::prune_list(&all, keep, Some(&self.release), st.before.current.as_ref())
                }
                _ => Vec::new(),
            })
            .collect();
        for r in self.fleet().remove(&which).await {
            if let Err(e) = r.outcome {
                tracing::warn!(host = %r.host, error = %e, "cannot prune old releases");
            }
        }
    }

    async fn close(&mut self, duration: Duration) {
        let cx = self.cx;
        let deployed = Deployed {
            commit: self.to.to_string(),
            release: self.release.to_string(),
            // On the run's clock (read once at its start), so that soak
            // times follow the same clock as decisions.
            since: cx.now + chrono::Duration::from_std(duration).unwrap_or_default(),
            run_id: self.run_id.clone(),
            push_task: self.task.as_ref().map(|t| t.gid.to_string()),
            push_task_link: self.task.as_ref().map(|t| t.link.clone()),
        };
        if let Err(e) = cx.state.set_deployed(&cx.cluster.name, &deployed) {
            tracing::error!(error = %e, "the hosts switched but the deployed release could not be recorded");
        }
        crate::adapters::failpoint::hit("deployed");
        self.clear_bad_mark();
        self.history("success", None, None);
        self.say(format!(
            "{}: pushed {} to {} host{} as {} in {}",
            cx.cluster.name,
            self.to.short(),
            cx.hosts.len(),
            if cx.hosts.len() == 1 { "" } else { "s" },
            self.release,
            secs(duration)
        ));
        self.comment(format!(
            "pushed {} to {} hosts in {}",
            self.to.short(),
            cx.hosts.len(),
            secs(duration)
        ))
        .await;
        if let Some(task) = self.task_ref.clone() {
            self.outbox
                .submit(&self.run_id, Op::Complete { task })
                .await;
        }
        let _ = cx.state.close_journal(&cx.cluster.name);
    }

    /// A commit pushed again by hand after a rollback is good again.
    fn clear_bad_mark(&self) {
        let c = &self.cx.cluster.name;
        let mut marks = self.cx.state.bad_commits(c).unwrap_or_default();
        if marks.remove(self.to.as_str()).is_some() {
            if let Err(e) = self.cx.state.set_bad_commits(c, &marks) {
                tracing::warn!(error = %e, "cannot clear the commit's rollback mark");
            }
        }
    }

    async fn fail(&mut self, f: &Failure, duration: Duration) {
        self.journal("failed", json!({ "step": f.step }));
        let mut text = format!(
            "push failed at step {}: {}\nafter {}; this task stays open.",
            f.step,
            f.message,
            secs(duration)
        );
        if let Some(tail) = f.tail.as_deref().filter(|t| !t.is_empty()) {
            text.push_str("\n\nlast lines of output:\n");
            text.push_str(tail);
        }
        tracing::error!(step = f.step, error = %f.message, "push failed");
        if self.cx.verbose {
            eprintln!("{}: {text}", self.cx.cluster.name);
        }
        self.comment(text).await;
        self.history("failed", Some(f.step), Some(&f.message));
        let _ = self.cx.state.close_journal(&self.cx.cluster.name);
    }

    fn history(&self, outcome: &str, step: Option<&str>, error: Option<&str>) {
        let r = HistoryRecord {
            run_id: self.run_id.clone(),
            kind: "push".into(),
            outcome: outcome.into(),
            commit: self.to.to_string(),
            previous: self.from.as_ref().map(ToString::to_string),
            release: Some(self.release.to_string()),
            started: self.cx.now,
            finished: Utc::now(),
            push_task_link: self.task.as_ref().map(|t| t.link.clone()),
            failed_step: step.map(str::to_owned),
            error: error.map(str::to_owned),
        };
        if let Err(e) = self.cx.state.append_history(&self.cx.cluster.name, &r) {
            tracing::error!(error = %e, "cannot append to the history");
        }
    }
}
