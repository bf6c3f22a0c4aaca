//! Execute: walks a push `Plan`'s steps and makes the adapter calls each
//! step needs — Asana for the push task (through the outbox), `build` for
//! the artifact, the hosts' fleet, the state directory for the record. It
//! has no policy of its own: the plan names the release, the hosts, the
//! waves and checks, and what happens when hosts fail, and after each host
//! operation execute asks `decide::hosts` (and, wave by wave,
//! `decide::waves`) what the results mean and does that: go on, prune,
//! undo, roll back automatically (the commit marked bad and the cluster
//! locked, as `rollback` does: `lockdown.rs`) or halt.
//!
//! Asana writes after the gate never fail the push (SPEC §2): they go
//! through the cluster's outbox (`outbox.rs`), which queues what Asana does
//! not take now for the next run. Every step is written to the cluster's
//! journal before its effects, so an interrupted run can be recovered
//! (`recover.rs`).

use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tracing::Instrument;

use crate::adapters::build;
use crate::adapters::hosts::{self, Fleet, HostErrorKind, HostResult};
use crate::adapters::process;
use crate::adapters::state::ClusterState;
use crate::domain::decide::hosts::{
    after_stage, removable_after, stop_before, switch_failures, AfterStage, Staged, Switched,
};
use crate::domain::decide::waves::{
    self, AfterWave, Back, CheckFailed, Health, Lockdown, WaveCheck, WaveResults,
};
use crate::domain::model::{ClusterName, CommitId, Host, ReleaseId, RunKind, RunOutcome, TaskGid};
use crate::domain::plan::{Plan, Step, Verdict, WaveProgress};
use crate::domain::report::{CheckStop, HostLine, PushReport, TaskRef};
use crate::domain::text::{count, printable, Rich};
use crate::run::clock::RunClock;
use crate::run::journal::Journal;
use crate::run::lockdown;
use crate::run::outbox::{self, Op, Outbox};
use crate::run::record::{Failed, RunRecord};
use crate::run::summary;
use crate::run::Context;

struct Failure {
    step: &'static str,
    message: String,
    tail: Option<String>,
}

/// How every host stands in the switch, across its waves.
struct Switching {
    staged: Vec<Staged>,
    switched: Vec<Switched>,
    health: Vec<Health>,
    /// Per host: what went wrong (a failed switch or `after_switch`, an
    /// unhealthy check with its output's last lines), if anything.
    errors: Vec<Option<String>>,
    /// Per host: why its health check failed, on one line.
    unhealthy: Vec<Option<String>>,
}

/// How the switch ended, for the hosts' lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Done,
    /// Too many failures, or told to stop: switched back.
    Undone,
    /// A check failed: switched back, locked, marked.
    RolledBack,
    /// A check failed, `auto_rollback = false`: stopped where it was.
    Halted,
}

/// Untrusted output's last lines, each printable, indented.
fn tail_lines(tail: &str) -> String {
    tail.lines()
        .map(|l| format!("    {}", printable(l, 200)))
        .collect::<Vec<_>>()
        .join("\n")
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

pub use crate::run::record::task_name;

/// Where a push of the cluster stands in its waves, from its journal:
/// for `status` while the push runs (the cluster's lock is held). `None`
/// when no run is journaled or it has not reached its switch in waves.
pub fn wave_progress(state: &ClusterState) -> Option<WaveProgress> {
    let entries = state.unfinished().ok()?;
    let first = entries.first()?;
    let release = entries
        .iter()
        .find(|e| e.step == "start")
        .and_then(|e| e.detail.get("release")?.as_str().and_then(ReleaseId::parse));
    let hosts = entries
        .iter()
        .find(|e| e.step == "switch")
        .and_then(|e| e.detail.get("before")?.as_array().map(Vec::len))?;
    let waves: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e.step == "wave")
        .map(|e| &e.detail)
        .collect();
    let last = waves.last()?;
    let number = |k: &str| last.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
    let switched = waves
        .iter()
        .filter_map(|w| w.get("hosts")?.as_array().map(Vec::len))
        .sum();
    let doing = match entries.last().map(|e| e.step.as_str()) {
        Some("health") => "health check",
        Some("wave_check") => "soak and wave check",
        Some("rollback") => "rolling back",
        Some("revert") => "switching back",
        Some("halt") => "stopping",
        _ => "switch",
    };
    Some(WaveProgress {
        run_id: first.run_id.clone(),
        release,
        wave: number("wave"),
        of: number("of"),
        doing: doing.to_owned(),
        switched,
        hosts,
    })
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
    outbox: &'c Outbox,
    artifact: Option<PathBuf>,
    staged: Vec<HostResult<hosts::Staged>>,
    hosts: Vec<HostLine>,
    /// A failed check stopped the push.
    stopped: Option<CheckStop>,
    /// Posted (durable) once every host switched, the switch's comment is
    /// not sent before the close has posted its own comment and the
    /// completion: they go as one comment beside the completion, one wave
    /// of Asana requests. A failure before the close lets it go first.
    held: Option<outbox::Hold<'c>>,
}

/// Runs the plan's steps; `None` when the plan does not push (its verdict
/// is not `Push`). The caller holds the cluster's lock and has recovered
/// any interrupted run; Asana writes go through `outbox`, posted without
/// waiting: the caller runs [`Outbox::background`] beside this (joined,
/// never spawned) so that they go out while the work goes on. The run
/// waits on Asana only at its end, for the history to carry the task's
/// link: once its last comment and completion are sent (one wave), or
/// once its failure's comment is.
pub async fn push(cx: &Context<'_>, plan: &Plan, outbox: &Outbox) -> Option<PushReport> {
    let (Verdict::Push { from, to }, Some(release)) = (&plan.verdict, &plan.release) else {
        return None;
    };
    let before = outbox.tally();
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
        stopped: None,
        held: None,
    };
    let span = tracing::info_span!("push", app = %cx.run.config.app, cluster = %cx.cluster.name, run = %cx.run_id);
    let failure = run.steps().instrument(span).await;
    run.keep_host_record();
    let queued = run.outbox.pending();
    Some(PushReport {
        run_id: cx.run_id.to_owned(),
        release: run.release,
        commit: run.to,
        previous: run.from,
        task: run.task,
        failure,
        stopped: run.stopped,
        hosts: run.hosts,
        asana_failures: run.outbox.tally().dropped - before.dropped,
        asana_queued: queued,
        duration: cx.clock.elapsed(),
    })
}

/// The longest a push's stage comment waits for a plain switch to end
/// (see [`Outbox::hold_at_most`]).
const STAGE_COMMENT_WAITS: Duration = Duration::from_secs(2);

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
            self.learn_task();
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
                Step::Switch => self.switch(true).await,
                Step::Waves { .. } => self.switch(false).await,
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

    /// Comments on the push task, through the outbox, without waiting.
    async fn comment(&mut self, text: String) {
        let Some(task) = self.task_ref.clone() else {
            return;
        };
        if self.outbox.never_created(self.cx.run_id) {
            return;
        }
        self.outbox
            .post(self.cx.run_id, Op::Comment { task, text })
            .await;
    }

    /// Queues the push task's creation; the push goes on while it is sent
    /// (the build does not wait for it), and later writes name it by the
    /// run id until it exists.
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
        self.outbox.post(cx.run_id, op).await;
        self.task_ref = Some(outbox::TaskRef::Created(cx.run_id.to_owned()));
        self.learn_task();
    }

    /// Once the outbox has created the push task: says its link, journals
    /// it (for a recovery) and keeps it for the report. Asked between
    /// steps and wherever the run waited on Asana.
    fn learn_task(&mut self) {
        if self.task.is_some() || self.task_ref.is_none() {
            return;
        }
        let Some(t) = self.outbox.created(self.cx.run_id) else {
            return;
        };
        match TaskGid::parse(&t.gid) {
            Some(gid) => {
                self.say(format!("push task: {}", t.link));
                self.journal
                    .write("record", json!({ "task": gid.as_str(), "link": t.link }));
                self.task = Some(TaskRef { gid, link: t.link });
            }
            None => tracing::warn!("Asana gave the push task a malformed gid"),
        }
    }

    /// Waits until what the run posted is applied (or Asana failed and it
    /// is queued), and learns the push task.
    async fn settle(&mut self) {
        self.outbox.settle().await;
        self.learn_task();
        if self.task.is_none() {
            let id = self.cx.run_id;
            if self.outbox.creating(id) {
                self.say(
                    "push task: queued (Asana is not answering); it is created when Asana is back"
                        .into(),
                );
            } else if self.outbox.never_created(id) {
                tracing::warn!("Asana refused the push task; pushing without it");
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
        let mut pending = self.cx.state.pending_prune().unwrap_or_default();
        let prune: Vec<Vec<ReleaseId>> = self
            .plan
            .hosts
            .iter()
            .map(|h| {
                pending
                    .get(&h.to_string())
                    .map(|v| v.iter().filter_map(|r| ReleaseId::parse(r)).collect())
                    .unwrap_or_default()
            })
            .collect();
        // What the hosts run now, whose unchanged files they keep (the
        // bittorrent transport lays its torrent out by it).
        let base_artifact = self.from.as_ref().map(|c| self.cx.run.state.artifact(c));
        let base = self
            .plan
            .before
            .as_ref()
            .zip(base_artifact.as_deref())
            .map(|(release, artifact)| hosts::Base { release, artifact });
        let scratch = self.cx.state.dir().join("bt");
        let results = self
            .fleet()
            .stage(&artifact, &self.release, &prune, base, &scratch, &|r| {
                let bytes = r.outcome.as_ref().ok().and_then(|s| s.bytes_sent);
                progress.host_staged(&r.host, r.outcome.is_ok(), bytes);
            })
            .await;
        progress.stage_finished();
        // A host that staged has deleted what it had left to prune.
        let before = pending.len();
        for r in results.iter().filter(|r| r.outcome.is_ok()) {
            pending.remove(&r.host.to_string());
        }
        if pending.len() != before {
            if let Err(e) = self.cx.state.set_pending_prune(&pending) {
                tracing::warn!(error = %e, "cannot record what the hosts pruned");
            }
        }
        let failed = results.iter().filter(|r| r.outcome.is_err()).count();
        let head = format!(
            "stage: {}/{} hosts staged {} in {}",
            results.len() - failed,
            results.len(),
            self.release,
            secs(clock.elapsed())
        );
        let lines: Vec<summary::StageLine> = results
            .iter()
            .map(|r| summary::StageLine {
                host: r.host.to_string(),
                outcome: r
                    .outcome
                    .as_ref()
                    .map(|s| s.bytes_sent)
                    .map_err(ToString::to_string),
                attempts: r.attempts,
                seconds: r.duration.as_secs_f64(),
            })
            .collect();
        let text = summary::stage(&head, &lines);
        self.staged = results;
        let decided = after_stage(&self.plan.policy, &self.staged_outcomes());
        // Before a plain switch (one session per host, no checks), the
        // stage comment waits for the switch's and the close's, to go as
        // one comment with the completion beside it: bounded, so that a
        // slow switch does not keep it from the task.
        if matches!(decided, AfterStage::Switch(_))
            && self.plan.steps.iter().any(|s| matches!(s, Step::Switch))
        {
            self.held = Some(self.outbox.hold_at_most(STAGE_COMMENT_WAITS));
        }
        self.say(text.clone());
        self.comment(text).await;
        match decided {
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
                let why: Vec<(String, String)> = self
                    .staged
                    .iter()
                    .filter_map(|r| {
                        Some((r.host.to_string(), r.outcome.as_ref().err()?.to_string()))
                    })
                    .collect();
                Err(Failure::new(
                    "stage",
                    format!(
                        "{failed} of {} hosts failed to stage (max_failed_hosts = {}); no host was switched ({})",
                        self.staged.len(),
                        self.plan.policy.max_failed,
                        summary::failed_hosts(&why, 5)
                    ),
                ))
            }
        }
    }

    /// Every host's stage and switch, whole, in the state directory
    /// (comments summarise them past a few hosts).
    fn keep_host_record(&self) {
        if self.staged.is_empty() {
            return;
        }
        let hosts: Vec<serde_json::Value> = self
            .staged
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "host": r.host.to_string(),
                    "stage": match &r.outcome {
                        Ok(s) => json!({ "ok": true, "bytes_sent": s.bytes_sent }),
                        Err(e) => json!({ "ok": false, "error": e.to_string() }),
                    },
                    "attempts": r.attempts,
                    "stage_ms": r.duration.as_millis() as u64,
                    "result": self.hosts.get(i).map(|h| h.result.clone()),
                })
            })
            .collect();
        let record = json!({
            "run_id": self.cx.run_id,
            "release": self.release.as_str(),
            "commit": self.to.as_str(),
            "hosts": hosts,
        });
        if let Err(e) = self.cx.state.set_run_hosts(self.cx.run_id, &record) {
            tracing::warn!(error = %e, "cannot keep the hosts' record of this run");
        }
    }

    /// Records what each ssh host deletes at its next stage.
    fn defer_prune(&self, later: &[Vec<ReleaseId>]) {
        let state = self.cx.state;
        let mut pending = state.pending_prune().unwrap_or_default();
        let before = pending.clone();
        // A host that staged has no older entry left (`stage`); one that
        // did not keeps its own.
        for (h, names) in self.plan.hosts.iter().zip(later) {
            if !names.is_empty() {
                pending.insert(
                    h.to_string(),
                    names.iter().map(ToString::to_string).collect(),
                );
            }
        }
        if pending != before {
            if let Err(e) = state.set_pending_prune(&pending) {
                tracing::warn!(error = %e, "cannot record the releases left to prune");
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

    /// The switch, wave by wave (a plain switch is one wave without
    /// checks): each wave's hosts switch and run `after_switch`, are
    /// health-checked, soak and pass the wave check, as the plan says;
    /// after each, `decide::waves::after_wave` says what the results mean.
    async fn switch(&mut self, plain: bool) -> Result<(), Failure> {
        let staged = self.staged_outcomes();
        let AfterStage::Switch(eligible) = after_stage(&self.plan.policy, &staged) else {
            return Err(Failure::new("switch", "too many hosts failed to stage"));
        };
        // Counted over the hosts that staged: a canary that could not
        // stage (within max_failed_hosts) is replaced by the next host.
        let waves = waves::assign(&self.plan.rollout.waves, &eligible);
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
            "waves": waves.len(),
        }));
        let n = staged.len();
        let mut sw = Switching {
            switched: eligible
                .iter()
                .map(|e| {
                    if *e {
                        Switched::Pending
                    } else {
                        Switched::Skipped
                    }
                })
                .collect(),
            health: vec![Health::NotChecked; n],
            errors: vec![None; n],
            unhealthy: vec![None; n],
            staged,
        };
        let clock = RunClock::starting_at(self.cx.clock.now());
        let of = waves.len();
        for (k, wave) in waves.iter().enumerate() {
            if k > 0 && self.stopping() {
                return Err(self.stop_between(&sw, k, of).await);
            }
            let which: Vec<bool> = (0..n).map(|i| wave.hosts.contains(&i)).collect();
            if !plain {
                self.journal.write(
                    "wave",
                    json!({
                        "wave": k + 1,
                        "of": of,
                        "hosts": wave.hosts.iter().map(|i| self.plan.hosts[*i].to_string()).collect::<Vec<_>>(),
                    }),
                );
            }
            self.cx.progress.wave_started(k + 1, of, wave.hosts.len());
            let wave_clock = RunClock::starting_at(self.cx.clock.now());
            for (i, r) in self
                .fleet()
                .switch(&self.release, &which)
                .await
                .into_iter()
                .enumerate()
            {
                if !which[i] {
                    continue;
                }
                let (w, e) = match r.outcome {
                    Ok(None) => (Switched::Done, None),
                    Ok(Some(e)) => (
                        Switched::AfterSwitchFailed,
                        Some(format!("switched, but after_switch failed: {e}")),
                    ),
                    Err(e) => (Switched::Failed, Some(format!("failed to switch: {e}"))),
                };
                sw.switched[i] = w;
                sw.errors[i] = e;
            }
            let unhealthy = self.health_check(&mut sw, &which).await;
            let mut decided = self.after_wave(&sw, WaveCheck::NotRun, &wave.hosts, k, of);
            let mut check_why = None;
            if matches!(decided, AfterWave::Next | AfterWave::Done { .. }) {
                if let Some(argv) = self.plan.rollout.wave_check.clone() {
                    self.journal
                        .write("wave_check", json!({ "wave": k + 1, "of": of }));
                    if self.soak(self.plan.rollout.wave_soak).await {
                        return Err(self.stop_between(&sw, k + 1, of).await);
                    }
                    let (check, why) = self.wave_check(&argv, &sw, &wave.hosts, k, of).await;
                    check_why = why;
                    decided = self.after_wave(&sw, check, &wave.hosts, k, of);
                }
            }
            let passed = matches!(decided, AfterWave::Next | AfterWave::Done { .. });
            self.cx.progress.wave_finished(k + 1, of, passed);
            if unhealthy > 0 || check_why.is_some() {
                self.cx
                    .progress
                    .checks_failed(unhealthy, check_why.is_some());
            }
            if !plain {
                let text = self.wave_comment(&sw, &wave.hosts, k, of, &wave_clock, &check_why);
                self.say(text.clone());
                self.comment(text).await;
            }
            match decided {
                AfterWave::Next => {}
                AfterWave::Done { prune } => {
                    self.switch_comment(&sw, plain, of, &clock, Ended::Done)
                        .await;
                    // Keeping `keep_releases` per host is housekeeping: a
                    // failure is a warning. Decided now that every wave
                    // passed; an ssh host deletes its share at the start
                    // of its next stage session rather than in a round
                    // trip of its own.
                    let later = self.fleet().prune(&prune).await;
                    self.defer_prune(&later);
                    return Ok(());
                }
                AfterWave::Undo {
                    failed,
                    none_took,
                    back,
                } => {
                    self.undo(&back).await;
                    self.switch_comment(&sw, plain, of, &clock, Ended::Undone)
                        .await;
                    let why = if none_took {
                        format!(
                            "no host of wave {}/{of} could switch ({failed} of {n} hosts failed in all, max_failed_hosts = {})",
                            k + 1,
                            self.plan.policy.max_failed
                        )
                    } else {
                        format!(
                            "{failed} of {n} hosts failed (max_failed_hosts = {})",
                            self.plan.policy.max_failed
                        )
                    };
                    return Err(Failure::new(
                        "switch",
                        format!("{why}; switched hosts were switched back"),
                    ));
                }
                AfterWave::RollBack { failed, back } => {
                    let f = self.roll_back(&sw, &failed, &back, k, of, check_why).await;
                    self.switch_comment(&sw, plain, of, &clock, Ended::RolledBack)
                        .await;
                    return Err(f);
                }
                AfterWave::Halt { failed, remove } => {
                    let f = self.halt(&sw, &failed, &remove, k, of, check_why).await;
                    self.switch_comment(&sw, plain, of, &clock, Ended::Halted)
                        .await;
                    return Err(f);
                }
            }
        }
        Err(Failure::new("switch", "no host to switch"))
    }

    fn after_wave(
        &self,
        sw: &Switching,
        check: WaveCheck,
        hosts: &[usize],
        k: usize,
        of: usize,
    ) -> AfterWave {
        waves::after_wave(
            &self.plan.policy,
            &self.plan.rollout,
            &self.release,
            &WaveResults {
                staged: &sw.staged,
                switched: &sw.switched,
                health: &sw.health,
                check,
                hosts,
                wave: k,
                of,
            },
        )
    }

    /// Runs the health check on the hosts of this wave that switched;
    /// how many failed it.
    async fn health_check(&mut self, sw: &mut Switching, which: &[bool]) -> usize {
        let Some(argv) = self.plan.rollout.health_check.clone() else {
            return 0;
        };
        let ask: Vec<bool> = which
            .iter()
            .zip(&sw.switched)
            .map(|(w, s)| *w && *s == Switched::Done)
            .collect();
        if !ask.contains(&true) {
            return 0;
        }
        self.journal.write("health", json!({}));
        let r = &self.plan.rollout;
        let results = self
            .fleet()
            .health(&argv, r.health_timeout, r.health_retries, &ask)
            .await;
        let mut unhealthy = 0;
        for (i, res) in results.into_iter().enumerate() {
            if !ask[i] {
                continue;
            }
            match res.outcome {
                Ok(()) => sw.health[i] = Health::Healthy,
                Err(e) => {
                    unhealthy += 1;
                    sw.health[i] = Health::Unhealthy;
                    sw.unhealthy[i] = Some(e.to_string());
                    sw.errors[i] = Some(format!(
                        "unhealthy after {}: {e}{}",
                        match res.attempts {
                            1 => "1 try".to_owned(),
                            t => format!("{t} tries"),
                        },
                        e.tail
                            .as_deref()
                            .map(|t| format!("\n{}", tail_lines(t)))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        unhealthy
    }

    /// Waits `soak` (the wave soaks before its check); true if pushgate
    /// was told to stop meanwhile.
    async fn soak(&self, soak: Duration) -> bool {
        if soak.is_zero() {
            return false;
        }
        let end = tokio::time::Instant::now() + soak;
        loop {
            if self.stopping() {
                return true;
            }
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
    }

    /// The wave check, on the bastion; its result and, if it failed, why
    /// with its output's last lines.
    async fn wave_check(
        &mut self,
        argv: &[String],
        sw: &Switching,
        wave: &[usize],
        k: usize,
        of: usize,
    ) -> (WaveCheck, Option<String>) {
        let hosts = &self.plan.hosts;
        let wave_hosts: Vec<&Host> = wave.iter().map(|i| &hosts[*i]).collect();
        let switched: Vec<&Host> = sw
            .switched
            .iter()
            .enumerate()
            .filter(|(_, w)| !matches!(w, Switched::Pending | Switched::Skipped))
            .map(|(i, _)| &hosts[i])
            .collect();
        let env = self.cx.run.child_env.with_vars(hosts::argv::wave_check_env(
            self.cx.cluster.name.as_str(),
            &self.release,
            self.to.as_str(),
            self.plan.before.as_ref(),
            k + 1,
            of,
            &wave_hosts,
            &switched,
        ));
        let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
        match process::run(&argv, None, self.plan.rollout.health_timeout, &env).await {
            Ok(out) if out.success() => (WaveCheck::Passed, None),
            Ok(out) => {
                let tail = out.tail(5);
                let mut why = out.failure();
                if !tail.trim().is_empty() {
                    why.push('\n');
                    why.push_str(&tail_lines(&tail));
                }
                (WaveCheck::Failed, Some(why))
            }
            Err(e) => (WaveCheck::Failed, Some(crate::domain::text::describe(&e))),
        }
    }

    /// Sends the hosts back as `back` says, runs `after_switch` again, and
    /// removes the new release where nothing points at it any more.
    async fn undo(&mut self, back: &Back) {
        self.journal.write("revert", json!({}));
        let reverted = self.fleet().switch_each(&back.to).await;
        let mut ok: Vec<bool> = reverted.iter().map(|r| r.outcome.is_ok()).collect();
        for (r, asked) in reverted.iter().zip(&back.to) {
            if let (Err(e), Some(_)) = (&r.outcome, asked) {
                tracing::error!(host = %r.host, error = %e, "cannot switch back; the new release stays on this host");
            }
        }
        if back.unset.iter().any(Option::is_some) {
            for (i, r) in self
                .fleet()
                .unset(&back.unset)
                .await
                .into_iter()
                .enumerate()
            {
                if back.unset[i].is_some() {
                    ok[i] = r.outcome.is_ok();
                    if let Err(e) = r.outcome {
                        tracing::error!(host = %r.host, error = %e, "cannot remove `current`; the new release stays on this host");
                    }
                }
            }
        }
        self.remove_release_on(&removable_after(&back.to, &back.unset, &ok))
            .await;
    }

    /// Told to stop between waves (or during a soak), after `done` waves
    /// switched: every switched host goes back; nothing is locked.
    async fn stop_between(&mut self, sw: &Switching, done: usize, of: usize) -> Failure {
        let back = waves::stopped_between_waves(&self.release, &sw.staged, &sw.switched);
        self.undo(&back).await;
        self.host_lines(sw, Ended::Undone);
        Failure::new(
            "switch",
            format!(
                "pushgate is shutting down: stopped after wave {done}/{of}; the {} switched so far went back",
                count(back.hosts(), "host")
            ),
        )
    }

    /// What a failed check says: the check, the hosts and why.
    fn what_failed(
        &self,
        sw: &Switching,
        failed: &CheckFailed,
        check_why: &Option<String>,
    ) -> String {
        let why: Vec<(usize, String)> = match failed {
            CheckFailed::Unhealthy { hosts, .. } => hosts
                .iter()
                .filter_map(|i| Some((*i, sw.unhealthy[*i].clone()?)))
                .collect(),
            CheckFailed::WaveCheck => check_why
                .iter()
                .map(|w| (0, w.lines().next().unwrap_or(w).to_owned()))
                .collect(),
        };
        waves::what_failed(failed, &self.plan.hosts, &why)
    }

    /// The output's last lines of what failed the check, for the task.
    fn failed_tail(
        sw: &Switching,
        failed: &CheckFailed,
        check_why: &Option<String>,
    ) -> Option<String> {
        let text = match failed {
            CheckFailed::Unhealthy { hosts, .. } => {
                hosts.iter().find_map(|i| sw.errors[*i].clone())
            }
            CheckFailed::WaveCheck => check_why.clone(),
        }?;
        let rest: Vec<&str> = text.lines().skip(1).collect();
        (!rest.is_empty()).then(|| rest.join("\n"))
    }

    /// What a failed check at `wave` of `of` leaves: `decide::waves::lockdown`
    /// on this push's facts.
    fn check_lockdown(
        &self,
        rolled_back: bool,
        wave: usize,
        of: usize,
        what: &str,
    ) -> waves::Lockdown {
        waves::lockdown(
            self.cx.run.config.named_app().as_ref(),
            &self.cx.cluster.name,
            &self.release,
            &self.to,
            self.plan.before.as_ref(),
            rolled_back,
            wave,
            of,
            what,
            self.task.as_ref().map(|t| t.link.as_str()),
        )
    }

    /// A check failed with `auto_rollback`: the commit is marked bad,
    /// every switched host goes back, the cluster is locked.
    async fn roll_back(
        &mut self,
        sw: &Switching,
        failed: &CheckFailed,
        back: &Back,
        k: usize,
        of: usize,
        check_why: Option<String>,
    ) -> Failure {
        let what = self.what_failed(sw, failed, &check_why);
        let before = self.plan.before.clone();
        let lock = self.check_lockdown(true, k + 1, of, &what);
        self.stop_automation("rollback", failed, k, of, &what, &lock);
        self.undo(back).await;
        let lock_task = self.lock(lock).await;
        self.host_lines(sw, Ended::RolledBack);
        let c = &self.cx.cluster.name;
        self.stopped = Some(CheckStop {
            rolled_back: true,
            wave: k + 1,
            of,
            what: what.clone(),
            back_to: before.clone(),
            lock_task: lock_task.clone(),
        });
        Failure {
            step: failed.step(),
            message: format!(
                "wave {}/{of}: {what}; rolled back automatically: the {} switched went back to {}; a lock task holds {c}{} and {} is marked bad",
                k + 1,
                count(back.hosts(), "host"),
                before.as_ref().map_or("no release".to_owned(), ToString::to_string),
                lock_task.map(|l| format!(" ({l})")).unwrap_or_default(),
                self.to.short()
            ),
            tail: Self::failed_tail(sw, failed, &check_why),
        }
    }

    /// A check failed without `auto_rollback`: no further wave, the
    /// switched hosts keep the release, the cluster is locked.
    async fn halt(
        &mut self,
        sw: &Switching,
        failed: &CheckFailed,
        remove: &[bool],
        k: usize,
        of: usize,
        check_why: Option<String>,
    ) -> Failure {
        let what = self.what_failed(sw, failed, &check_why);
        let before = self.plan.before.clone();
        let lock = self.check_lockdown(false, k + 1, of, &what);
        self.stop_automation("halt", failed, k, of, &what, &lock);
        self.remove_release_on(remove).await;
        let lock_task = self.lock(lock).await;
        self.host_lines(sw, Ended::Halted);
        let c = &self.cx.cluster.name;
        let kept = waves::asked(&sw.switched);
        self.stopped = Some(CheckStop {
            rolled_back: false,
            wave: k + 1,
            of,
            what: what.clone(),
            back_to: before,
            lock_task: lock_task.clone(),
        });
        Failure {
            step: failed.step(),
            message: format!(
                "wave {}/{of}: {what}; auto_rollback is off, so the push stopped there: {} switched so far {} {}; a lock task holds {c}{} and {} is marked bad",
                k + 1,
                count(kept, "host"),
                if kept == 1 { "keeps" } else { "keep" },
                self.release,
                lock_task.map(|l| format!(" ({l})")).unwrap_or_default(),
                self.to.short()
            ),
            tail: Self::failed_tail(sw, failed, &check_why),
        }
    }

    /// Journals the stop (so that a recovery finishes it), then marks the
    /// commit bad.
    fn stop_automation(
        &mut self,
        step: &str,
        failed: &CheckFailed,
        k: usize,
        of: usize,
        what: &str,
        lock: &Lockdown,
    ) {
        self.journal.write(
            step,
            json!({
                "wave": k + 1,
                "of": of,
                "step": failed.step(),
                "what": what,
                "commit": self.to.as_str(),
                "release": self.release.as_str(),
                "lock": { "name": lock.lock_name, "notes": lock.lock_notes },
            }),
        );
        lockdown::mark_bad(
            self.cx.state,
            &self.to,
            &self.release,
            self.cx.clock.now(),
            self.cx.run_id,
        );
    }

    /// The cluster's lock task for this run; its link.
    async fn lock(&mut self, lock: Lockdown) -> Option<String> {
        let cx = self.cx;
        lockdown::lock(
            self.outbox,
            cx.cluster,
            &cx.run.config.asana.workspace,
            cx.run_id,
            cx.run_id,
            lock.lock_name,
            lock.lock_notes,
        )
        .await
    }

    /// One wave's comment: counts, and only the hosts that are not fine.
    fn wave_comment(
        &self,
        sw: &Switching,
        wave: &[usize],
        k: usize,
        of: usize,
        clock: &RunClock,
        check_why: &Option<String>,
    ) -> String {
        let switched = wave
            .iter()
            .filter(|i| {
                matches!(
                    sw.switched[**i],
                    Switched::Done | Switched::AfterSwitchFailed
                )
            })
            .count();
        let mut head = format!(
            "wave {}/{of}: {}/{} switched to {}",
            k + 1,
            switched,
            count(wave.len(), "host"),
            self.release
        );
        if self.plan.rollout.health_check.is_some() {
            let healthy = wave
                .iter()
                .filter(|i| sw.health[**i] == Health::Healthy)
                .count();
            head.push_str(&format!(", {healthy} healthy"));
        }
        if self.plan.rollout.wave_check.is_some() {
            head.push_str(match check_why {
                Some(_) => ", wave check FAILED",
                None => ", wave check passed",
            });
        }
        head.push_str(&format!(" ({})", secs(clock.elapsed())));
        let mut lines = vec![head];
        let bad: Vec<usize> = wave
            .iter()
            .copied()
            .filter(|i| sw.errors[*i].is_some())
            .collect();
        for i in bad.iter().take(10) {
            let e = sw.errors[*i].as_deref().unwrap_or_default();
            lines.push(format!("- {}: {e}", self.plan.hosts[*i]));
        }
        if bad.len() > 10 {
            lines.push(format!("- and {} more", count(bad.len() - 10, "host")));
        }
        if let Some(w) = check_why {
            lines.push(format!("- wave check: {w}"));
        }
        lines.join("\n")
    }

    /// The switch's closing comment (a plain switch: a line per host, as
    /// always; waves: the count, and the hosts that are not fine), and
    /// every host's line in the report.
    async fn switch_comment(
        &mut self,
        sw: &Switching,
        plain: bool,
        of: usize,
        clock: &RunClock,
        ended: Ended,
    ) {
        self.host_lines(sw, ended);
        if !plain && ended != Ended::Done {
            // The failure's comment says it all.
            return;
        }
        let n = sw.staged.len();
        let failed = switch_failures(&sw.staged, &sw.switched);
        let running = if ended == Ended::Done { n - failed } else { 0 };
        let text = if plain {
            let mut lines = vec![format!(
                "switch: {running}/{n} hosts now run {} ({})",
                self.release,
                secs(clock.elapsed())
            )];
            let each: Vec<(String, String)> = self
                .hosts
                .iter()
                .map(|h| (h.host.to_string(), h.result.clone()))
                .collect();
            lines.extend(summary::hosts_not_fine(
                &each,
                &format!("runs {}", self.release),
            ));
            lines.join("\n")
        } else {
            let mut lines = vec![format!(
                "switch: {running}/{n} hosts now run {} after {} ({})",
                self.release,
                count(of, "wave"),
                secs(clock.elapsed())
            )];
            let fine = format!("runs {}", self.release);
            let odd: Vec<&HostLine> = self.hosts.iter().filter(|h| h.result != fine).collect();
            if ended == Ended::Done {
                for h in odd.iter().take(20) {
                    lines.push(format!("- {}: {}", h.host, h.result));
                }
                if odd.len() > 20 {
                    lines.push(format!("- and {} more", count(odd.len() - 20, "host")));
                }
            }
            lines.join("\n")
        };
        self.say(text.clone());
        if ended == Ended::Done {
            self.held = Some(self.outbox.hold());
        }
        self.comment(text).await;
    }

    /// Every host's line in the report, as the switch ended.
    fn host_lines(&mut self, sw: &Switching, ended: Ended) {
        self.hosts = self
            .staged
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let first = |e: &str| e.lines().next().unwrap_or(e).to_owned();
                let back = matches!(ended, Ended::Undone | Ended::RolledBack);
                let result = match (&st.outcome, sw.switched[i], &sw.errors[i]) {
                    (Err(e), _, _) => format!("failed to stage: {e}"),
                    (Ok(_), Switched::Pending | Switched::Skipped, _) => {
                        "staged, never switched: the push stopped before its wave".to_owned()
                    }
                    (Ok(_), Switched::Failed | Switched::AfterSwitchFailed, Some(e)) => first(e),
                    (Ok(_), _, None) if back => "switched, then switched back".to_owned(),
                    (Ok(_), _, None) => format!("runs {}", self.release),
                    (Ok(_), _, Some(e)) if back => format!("{}; then switched back", first(e)),
                    (Ok(_), _, Some(e)) => format!("runs {}, but {}", self.release, first(e)),
                };
                HostLine {
                    host: self.plan.hosts[i].clone(),
                    result,
                    bytes_sent: st.outcome.as_ref().ok().and_then(|s| s.bytes_sent),
                }
            })
            .collect();
    }

    async fn close(&mut self) {
        let cx = self.cx;
        self.journal.write("close", json!({}));
        // Recorded as deployed at once, with the task if Asana created it
        // by now; the "pushed" comment and the completion only after (a
        // run killed in between is found finished, and its task says so).
        self.learn_task();
        let known = self.task.is_some();
        let since = cx.clock.now();
        self.set_deployed(since);
        crate::adapters::failpoint::hit("deployed");
        self.clear_bad_mark();
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
            if !self.outbox.never_created(cx.run_id) {
                self.outbox.post(cx.run_id, Op::Complete { task }).await;
            }
        }
        self.held = None;
        // The journal goes once the task says how the push ended (a run
        // killed before that is finished by the next one), and the
        // history, which links the task, once it is known.
        self.settle().await;
        if !known && self.task.is_some() {
            self.set_deployed(since);
        }
        self.history(RunOutcome::Success, None);
        self.journal.close();
    }

    /// Records the release as deployed, with the push task if known.
    fn set_deployed(&self, since: DateTime<Utc>) {
        let deployed = self.record.deployed(
            &self.release,
            since,
            self.task
                .as_ref()
                .map(|t| (t.gid.to_string(), t.link.clone())),
        );
        if let Err(e) = self.cx.state.set_deployed(&deployed) {
            tracing::error!(error = %e, "the hosts switched but the deployed release could not be recorded");
        }
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
        self.held = None;
        self.journal.write(
            "failed",
            json!({ "step": f.step, "error": f.message, "tail": f.tail }),
        );
        let rolled_back = self.stopped.as_ref().is_some_and(|s| s.rolled_back);
        let mut text = format!(
            "push {} at step {}: {}\nafter {}; this task stays open.",
            if rolled_back {
                "rolled back automatically"
            } else {
                "failed"
            },
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
        // The task's link belongs in the history: wait for it (a failure
        // is not the path to save time on).
        self.settle().await;
        self.history(
            if rolled_back {
                RunOutcome::RolledBack
            } else {
                RunOutcome::Failed
            },
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
