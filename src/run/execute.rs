//! Execute: walks a push `Plan`'s steps and makes the adapter calls each
//! step needs — Asana for the push task (through the outbox), `build` for
//! the artifact, the hosts' fleet, the state directory for the record. It
//! has no policy of its own: the plan names the release, the hosts and
//! what happens when hosts fail, and after each host operation execute
//! asks `decide::hosts` what the results mean and does that.
//!
//! Asana writes after the gate never fail the push (SPEC §2): they go
//! through the cluster's outbox (`outbox.rs`), which queues what Asana does
//! not take now for the next run. Every step is written to the cluster's
//! journal before its effects, so an interrupted run can be recovered
//! (`recover.rs`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tracing::Instrument;

use crate::adapters::build;
use crate::adapters::hosts::{self, Fleet, HostErrorKind, HostResult};
use crate::domain::decide::hosts::{
    after_stage, after_switch, removable_after_undo, stop_before, AfterStage, AfterSwitch, Staged,
    Switched,
};
use crate::domain::model::{ClusterName, CommitId, ReleaseId, RunKind, RunOutcome, TaskGid};
use crate::domain::plan::{Plan, Step, Verdict};
use crate::domain::report::{HostLine, PushReport, TaskRef};
use crate::domain::text::{bytes, count, printable, Rich};
use crate::run::clock::RunClock;
use crate::run::journal::Journal;
use crate::run::outbox::{self, Delivery, Op, Outbox};
use crate::run::record::{Failed, RunRecord};
use crate::run::Context;

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
pub fn run_id(cluster: &ClusterName, clock: &RunClock) -> String {
    format!(
        "{cluster}-{}-{:04x}",
        clock.start().format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}

/// The push task's name: `beta push 3f2a9c1 · 2026-11-22 10:15 UTC`
/// (`web/beta push …` in a config of several apps: `cluster` is the label).
pub fn task_name(cluster: &str, kind: RunKind, commit: &CommitId, clock: &RunClock) -> String {
    format!(
        "{cluster} {kind} {} · {}",
        commit.short(),
        clock.start().format("%Y-%m-%d %H:%M UTC")
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

struct Run<'c, 'a> {
    cx: &'c Context<'a>,
    plan: &'c Plan,
    journal: Journal<'c>,
    record: RunRecord,
    release: ReleaseId,
    from: Option<CommitId>,
    to: CommitId,
    task: Option<TaskRef>,
    /// What later writes name the push task by (also before it exists).
    task_ref: Option<outbox::TaskRef>,
    outbox: &'c mut Outbox,
    artifact: Option<PathBuf>,
    staged: Vec<HostResult<hosts::Staged>>,
    hosts: Vec<HostLine>,
}

/// Runs the plan's steps; `None` when the plan does not push (its verdict
/// is not `Push`). The caller holds the cluster's lock and has recovered
/// any interrupted run; Asana writes go through `outbox`.
pub async fn push(cx: &Context<'_>, plan: &Plan, outbox: &mut Outbox) -> Option<PushReport> {
    let (Verdict::Push { from, to }, Some(release)) = (&plan.verdict, &plan.release) else {
        return None;
    };
    let before = outbox.tally.clone();
    let mut run = Run {
        cx,
        plan,
        journal: Journal::new(cx.state, cx.run_id, cx.clock),
        record: RunRecord {
            run_id: cx.run_id.to_owned(),
            kind: RunKind::Push,
            commit: to.to_string(),
            previous: from.as_ref().map(ToString::to_string),
            release: Some(release.clone()),
            started: cx.clock.start(),
        },
        release: release.clone(),
        from: from.clone(),
        to: to.clone(),
        task: None,
        task_ref: None,
        outbox,
        artifact: None,
        staged: Vec::new(),
        hosts: Vec::new(),
    };
    let span = tracing::info_span!("push", app = %cx.run.config.app, cluster = %cx.cluster.name, run = %cx.run_id);
    let failure = run.steps().instrument(span).await;
    let queued = run.outbox.pending();
    Some(PushReport {
        run_id: cx.run_id.to_owned(),
        release: run.release,
        commit: run.to,
        previous: run.from,
        task: run.task,
        failure,
        hosts: run.hosts,
        asana_failures: run.outbox.tally.dropped - before.dropped,
        asana_queued: queued,
        duration: cx.clock.elapsed(),
    })
}

impl Run<'_, '_> {
    /// Walks the plan's steps; the failed step and why, if one failed.
    async fn steps(&mut self) -> Option<(String, String)> {
        let plan = self.plan;
        let cx = self.cx;
        let (name, notes, html) = self.task_text();
        self.journal.write(
            "start",
            json!({
                "kind": RunKind::Push.as_str(),
                "from": self.from.as_ref().map(ToString::to_string),
                "to": self.to.as_str(),
                "release": self.release.as_str(),
                "before": plan.before.as_ref().map(ToString::to_string),
                "task": { "name": name, "notes": notes, "project": cx.cluster.push_project.as_str() },
            }),
        );
        for step in &plan.steps {
            if let Some(stop) = stop_before(step).filter(|_| self.stopping()) {
                if stop.remove_release {
                    let reached: Vec<bool> = self
                        .staged_outcomes()
                        .iter()
                        .map(|s| !matches!(s, Staged::Failed { reached: false }))
                        .collect();
                    self.remove_release_on(&reached).await;
                }
                let f = Failure::new(
                    stop.step,
                    "pushgate is shutting down: stopped before this step; no host was switched",
                );
                self.fail(&f).await;
                return Some((f.step.to_owned(), f.message));
            }
            let result = match step {
                Step::Record => {
                    self.create_task(name.clone(), notes.clone(), html.clone())
                        .await;
                    Ok(())
                }
                Step::Build { cached } => self.build(*cached).await,
                Step::Ship { from } => self.ship(from).await,
                Step::Stage { .. } => self.stage().await,
                Step::Switch => self.switch().await,
                Step::Close => {
                    self.close().await;
                    Ok(())
                }
            };
            if let Err(f) = result {
                self.fail(&f).await;
                return Some((f.step.to_owned(), f.message));
            }
        }
        None
    }

    /// The push task's name and its notes: cluster, commits, what was
    /// ignored by hand, changelog, run id, bastion; with `repo.web`, also
    /// as rich text whose commits link to the code.
    fn task_text(&self) -> (String, String, Option<String>) {
        let cx = self.cx;
        let web = cx.run.config.web.as_ref();
        let changelog = &self.plan.changelog;
        let mut n = Rich::default();
        let commit = |n: &mut Rich, c: &CommitId, text: &str| {
            match web {
                Some(w) => n.link(text, &w.commit_url(c.as_str())),
                None => n.text(text),
            };
        };
        if let Some(a) = cx.run.config.named_app() {
            n.text(&format!("app: {a}\n"));
        }
        n.text(&format!("cluster: {}\nprevious: ", cx.cluster.name));
        match &self.from {
            Some(f) => commit(&mut n, f, f.as_str()),
            None => {
                n.text("(nothing deployed)");
            }
        }
        n.text("\nnew: ");
        commit(&mut n, &self.to, self.to.as_str());
        n.text("\n");
        if let (Some(w), Some(f)) = (web, &self.from) {
            if let Some(url) = w.compare_url(f.as_str(), self.to.as_str()) {
                n.text("compare: ")
                    .link(&format!("{}...{}", f.short(), self.to.short()), &url)
                    .text("\n");
            }
        }
        n.text(&format!(
            "release: {}\nhosts: {}\nrun: {}\nbastion: {}\n",
            self.release,
            self.plan.hosts.len(),
            cx.run_id,
            cx.operator,
        ));
        if let Some(ig) = &self.plan.ignored {
            n.text(&format!("\n{ig}\n"));
        }
        n.text(&format!(
            "\nchangelog ({}):\n",
            count(changelog.len(), "commit")
        ));
        for e in &changelog.entries {
            n.text("- ");
            commit(&mut n, &e.commit, e.commit.short());
            n.text(&format!(
                " {} ({})\n",
                printable(&e.subject, 200),
                printable(&e.author, 60)
            ));
        }
        if changelog.more > 0 {
            n.text(&format!("and {} more\n", changelog.more));
        }
        let (plain, html) = n.finish();
        (
            task_name(
                &cx.run.config.label(&cx.cluster.name),
                RunKind::Push,
                &self.to,
                cx.clock,
            ),
            plain,
            html,
        )
    }

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

    fn fleet(&self) -> Fleet<'_> {
        Fleet::new(
            &self.plan.hosts,
            self.cx.cluster,
            &self.cx.run.config.sync,
            self.cx.run.child_env,
        )
    }

    /// Comments on the push task, through the outbox.
    async fn comment(&mut self, text: String) {
        let Some(task) = self.task_ref.clone() else {
            return;
        };
        self.outbox
            .submit(self.cx.run_id, Op::Comment { task, text })
            .await;
    }

    /// Creates the push task (or queues its creation: the push goes on).
    async fn create_task(&mut self, name: String, notes: String, html_notes: Option<String>) {
        let cx = self.cx;
        let op = Op::CreateTask {
            key: cx.run_id.to_owned(),
            name,
            notes,
            html_notes,
            project: cx.cluster.push_project.to_string(),
            workspace: None,
            assignee: None,
        };
        match self.outbox.submit(cx.run_id, op).await {
            Delivery::Applied(Some(t)) => match TaskGid::parse(&t.gid) {
                Some(gid) => {
                    self.say(format!("push task: {}", t.link));
                    self.journal
                        .write("record", json!({ "task": gid.as_str(), "link": t.link }));
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
                self.journal.write("record", json!({ "queued": true }));
                self.task_ref = Some(outbox::TaskRef::Created(cx.run_id.to_owned()));
            }
            Delivery::Dropped(why) => {
                tracing::warn!(error = %why, "Asana refused the push task; pushing without it");
            }
        }
    }

    async fn build(&mut self, cached: bool) -> Result<(), Failure> {
        self.journal.write("build", json!({}));
        if !cached {
            self.cx.progress.build_started(&self.to);
        }
        let built = build::artifact(
            self.cx.run.state,
            &self.to,
            self.from.as_ref(),
            &self.cx.run.config.build,
            self.cx.run.child_env,
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

    /// `source = "cluster:…"`: the bytes that cluster ran, from the cache
    /// (the plan held the push if they were not there when it was made).
    async fn ship(&mut self, from: &ClusterName) -> Result<(), Failure> {
        self.journal
            .write("build", json!({ "ship_from": from.as_str() }));
        let artifact = self.cx.run.state.artifact(&self.to);
        if !artifact.is_dir() {
            return Err(Failure::new(
                "build",
                format!(
                    "the artifact of {} that {from} runs vanished from {} during the push; it ships only {from}'s bytes and never rebuilds",
                    self.to.short(),
                    self.cx.run.state.artifacts().display(),
                ),
            ));
        }
        let line = format!("build: shipping {from}'s artifact of {}", self.to.short());
        self.say(line.clone());
        self.comment(line).await;
        self.artifact = Some(artifact);
        Ok(())
    }

    /// The stage's results as the rules read them.
    fn staged_outcomes(&self) -> Vec<Staged> {
        self.staged
            .iter()
            .map(|r| match &r.outcome {
                Ok(s) => Staged::Done {
                    current: s.before.current.clone(),
                    releases: s.before.releases.clone(),
                },
                Err(e) => Staged::Failed {
                    reached: !e.is(HostErrorKind::Unreachable),
                },
            })
            .collect()
    }

    async fn stage(&mut self) -> Result<(), Failure> {
        let Some(artifact) = self.artifact.clone() else {
            return Err(Failure::new("stage", "no artifact to stage"));
        };
        if self.plan.hosts.is_empty() {
            return Err(Failure::new(
                "stage",
                format!("{} has no hosts", self.cx.cluster.name),
            ));
        }
        self.journal
            .write("stage", json!({ "release": self.release.as_str() }));
        let clock = RunClock::starting_at(self.cx.clock.now());
        let progress = self.cx.progress;
        progress.stage_started(self.plan.hosts.len());
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
            secs(clock.elapsed())
        )];
        for r in &results {
            lines.push(match &r.outcome {
                Ok(s) => format!(
                    "- {}: ok, {} sent, {}",
                    r.host,
                    s.bytes_sent.map_or("? bytes".into(), bytes),
                    secs(r.duration)
                ),
                Err(e) => format!(
                    "- {}: FAILED after {}: {e}",
                    r.host,
                    count(r.attempts, "attempt")
                ),
            });
        }
        let text = lines.join("\n");
        self.say(text.clone());
        self.comment(text).await;
        self.staged = results;
        match after_stage(&self.plan.policy, &self.staged_outcomes()) {
            AfterStage::Switch(_) => Ok(()),
            AfterStage::Abort { failed, remove } => {
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
                // Not where a host could not be reached at all: nothing was
                // written there, and asking again would cost another timeout.
                self.remove_release_on(&remove).await;
                Err(Failure::new(
                    "stage",
                    format!(
                        "{failed} of {} hosts failed to stage (max_failed_hosts = {}); no host was switched",
                        self.staged.len(),
                        self.plan.policy.max_failed
                    ),
                ))
            }
        }
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
        let staged = self.staged_outcomes();
        let AfterStage::Switch(which) = after_stage(&self.plan.policy, &staged) else {
            return Err(Failure::new("switch", "too many hosts failed to stage"));
        };
        let before: Vec<Option<ReleaseId>> = staged
            .iter()
            .map(|s| match s {
                Staged::Done { current, .. } => current.clone(),
                Staged::Failed { .. } => None,
            })
            .collect();
        self.journal.write("switch", json!({
            "release": self.release.as_str(),
            "before": before.iter().map(|b| b.as_ref().map(ToString::to_string)).collect::<Vec<_>>(),
        }));
        let clock = RunClock::starting_at(self.cx.clock.now());
        let results = self.fleet().switch(&self.release, &which).await;
        let switched: Vec<Switched> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(None) => Switched::Done,
                Ok(Some(_)) => Switched::AfterSwitchFailed,
                Err(e) if e.is(HostErrorKind::Skipped) => Switched::Skipped,
                Err(_) => Switched::Failed,
            })
            .collect();
        let decided = after_switch(&self.plan.policy, &self.release, &staged, &switched);
        let undone = matches!(decided, AfterSwitch::Undo { .. });
        if let AfterSwitch::Undo { back, .. } = &decided {
            self.journal.write("revert", json!({}));
            let reverted = self.fleet().switch_each(back).await;
            let back_ok: Vec<bool> = reverted.iter().map(|r| r.outcome.is_ok()).collect();
            for (r, asked) in reverted.iter().zip(back) {
                if let (Err(e), Some(_)) = (&r.outcome, asked) {
                    tracing::error!(host = %r.host, error = %e, "cannot switch back; the new release stays on this host");
                }
            }
            self.remove_release_on(&removable_after_undo(back, &back_ok))
                .await;
        }
        let failed = match &decided {
            AfterSwitch::Done { failed, .. } | AfterSwitch::Undo { failed, .. } => *failed,
        };
        let mut lines = vec![format!(
            "switch: {}/{} hosts now run {} ({})",
            if undone { 0 } else { results.len() - failed },
            results.len(),
            self.release,
            secs(clock.elapsed())
        )];
        self.hosts.clear();
        for (r, st) in results.iter().zip(&self.staged) {
            let line = match (&st.outcome, &r.outcome) {
                (Err(e), _) => format!("failed to stage: {e}"),
                (Ok(_), Ok(None)) if undone => "switched, then switched back".to_owned(),
                (Ok(_), Ok(None)) => format!("runs {}", self.release),
                (Ok(_), Ok(Some(e))) => format!("switched, but after_switch failed: {e}"),
                (Ok(_), Err(e)) => format!("failed to switch: {e}"),
            };
            lines.push(format!("- {}: {line}", r.host));
            self.hosts.push(HostLine {
                host: r.host.clone(),
                result: line,
                bytes_sent: st.outcome.as_ref().ok().and_then(|s| s.bytes_sent),
            });
        }
        let text = lines.join("\n");
        self.say(text.clone());
        self.comment(text).await;
        match decided {
            AfterSwitch::Undo { failed, .. } => Err(Failure::new(
                "switch",
                format!(
                    "{failed} of {} hosts failed (max_failed_hosts = {}); switched hosts were switched back",
                    results.len(),
                    self.plan.policy.max_failed
                ),
            )),
            AfterSwitch::Done { prune, .. } => {
                // Keeping `keep_releases` per host is housekeeping: a
                // failure is a warning.
                for r in self.fleet().remove(&prune).await {
                    if let Err(e) = r.outcome {
                        tracing::warn!(host = %r.host, error = %e, "cannot prune old releases");
                    }
                }
                Ok(())
            }
        }
    }

    async fn close(&mut self) {
        let cx = self.cx;
        let deployed = self.record.deployed(
            &self.release,
            cx.clock.now(),
            self.task
                .as_ref()
                .map(|t| (t.gid.to_string(), t.link.clone())),
        );
        if let Err(e) = cx.state.set_deployed(&deployed) {
            tracing::error!(error = %e, "the hosts switched but the deployed release could not be recorded");
        }
        crate::adapters::failpoint::hit("deployed");
        self.clear_bad_mark();
        self.history(RunOutcome::Success, None);
        let duration = cx.clock.elapsed();
        let n = self.plan.hosts.len();
        self.say(format!(
            "{}: pushed {} to {} as {} in {}",
            cx.run.config.label(&cx.cluster.name),
            self.to.short(),
            count(n, "host"),
            self.release,
            secs(duration)
        ));
        self.comment(format!(
            "pushed {} to {n} hosts in {}",
            self.to.short(),
            secs(duration)
        ))
        .await;
        if let Some(task) = self.task_ref.clone() {
            self.outbox.submit(cx.run_id, Op::Complete { task }).await;
        }
        self.journal.close();
    }

    /// A commit pushed again by hand after a rollback is good again.
    fn clear_bad_mark(&self) {
        let state = self.cx.state;
        let mut marks = state.bad_commits().unwrap_or_default();
        if marks.remove(self.to.as_str()).is_some() {
            if let Err(e) = state.set_bad_commits(&marks) {
                tracing::warn!(error = %e, "cannot clear the commit's rollback mark");
            }
        }
    }

    async fn fail(&mut self, f: &Failure) {
        self.journal.write("failed", json!({ "step": f.step }));
        let mut text = format!(
            "push failed at step {}: {}\nafter {}; this task stays open.",
            f.step,
            f.message,
            secs(self.cx.clock.elapsed())
        );
        if let Some(tail) = f.tail.as_deref().filter(|t| !t.is_empty()) {
            text.push_str("\n\nlast lines of output:\n");
            text.push_str(tail);
        }
        tracing::error!(step = f.step, error = %f.message, "push failed");
        if self.cx.verbose {
            eprintln!(
                "{}: {text}",
                self.cx.run.config.label(&self.cx.cluster.name)
            );
        }
        self.comment(text).await;
        self.history(
            RunOutcome::Failed,
            Some(Failed {
                step: f.step,
                error: &f.message,
            }),
        );
        self.journal.close();
    }

    fn history(&self, outcome: RunOutcome, failed: Option<Failed<'_>>) {
        let r = self.record.history(
            outcome,
            self.cx.clock.now(),
            self.task.as_ref().map(|t| t.link.clone()),
            failed,
        );
        if let Err(e) = self.cx.state.append_history(&r) {
            tracing::error!(error = %e, "cannot append to the history");
        }
    }
}
