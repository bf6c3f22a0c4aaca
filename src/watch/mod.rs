//! Who watches a run, and what they are told: the holds log (always), the
//! notifications (`[notify]`), the metrics (`pushgate run --metrics`) and
//! the progress bars (a person at a terminal).
//!
//! The push core calls three hooks and knows nothing else about watching:
//! [`Observer::decided`] after decide, [`Observer::push`] around execute,
//! [`Observer::rolled_back`] after a rollback. Inside a push, the hosts'
//! stage and the build report progress through [`stage`] and [`build`],
//! which find the push being watched in a task-local set by
//! [`Observer::push`] (and do nothing outside one).
//!
//! Nothing here can fail a run: every failure is a warning in the log,
//! and a notification waits at most `notify.timeout`.

pub mod holds;
pub mod metrics;
pub mod notify;
pub mod progress;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use self::notify::Webhook;
use crate::adapters::state::StateDir;
use crate::config::{Config, NotifySettings};
use crate::domain::model::{ClusterName, CommitId, ReleaseId};
use crate::domain::plan::{HoldReason, Plan, Verdict};
use crate::run::execute::PushReport;
use crate::watch::metrics::Metrics;

/// The watchers of one process's runs; cheap to clone.
#[derive(Clone)]
pub struct Observer {
    inner: Arc<Inner>,
}

struct Inner {
    state: StateDir,
    notify: Option<NotifySettings>,
    /// Read from the environment at the first message.
    webhook: OnceLock<Option<Webhook>>,
    metrics: OnceLock<Arc<Metrics>>,
    progress: AtomicBool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("notify", &self.inner.notify.is_some())
            .field("metrics", &self.inner.metrics.get().is_some())
            .finish()
    }
}

/// The push being watched, for the hosts' stage and the build.
struct Watch {
    cluster: ClusterName,
    metrics: Option<Arc<Metrics>>,
    progress: bool,
}

tokio::task_local! {
    static WATCH: Arc<Watch>;
}

impl Observer {
    pub fn new(config: &Config) -> Observer {
        Observer {
            inner: Arc::new(Inner {
                state: StateDir::new(&config.state_dir),
                notify: config.notify.clone(),
                webhook: OnceLock::new(),
                metrics: OnceLock::new(),
                progress: AtomicBool::new(false),
            }),
        }
    }

    /// The daemon's metrics: from now on, pushes report their stages there.
    pub fn set_metrics(&self, m: Arc<Metrics>) {
        let _ = self.inner.metrics.set(m);
    }

    /// Show progress bars (the caller checked that a person watches).
    pub fn show_progress(&self, on: bool) {
        self.inner.progress.store(on, Ordering::Relaxed);
    }

    fn wants(&self, event: &str) -> bool {
        self.inner
            .notify
            .as_ref()
            .is_some_and(|n| n.on.iter().any(|e| e == event))
    }

    fn webhook(&self) -> Option<&Webhook> {
        let settings = self.inner.notify.as_ref()?;
        self.inner
            .webhook
            .get_or_init(|| match Webhook::from_env(settings) {
                Ok(Some(w)) => Some(w),
                Ok(None) => {
                    tracing::warn!(
                        variable = %settings.slack_webhook_env,
                        "[notify] is configured but the variable is not set: no notifications are sent"
                    );
                    None
                }
                Err(why) => {
                    tracing::warn!("no notifications are sent: {why}");
                    None
                }
            })
            .as_ref()
    }

    /// Sends one message if `event` is wanted; true if it was delivered.
    async fn send(&self, event: &str, text: &str) -> bool {
        if !self.wants(event) {
            return false;
        }
        let Some(w) = self.webhook() else {
            return false;
        };
        match w.send(text).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(event, error = %e, "notification not sent");
                false
            }
        }
    }

    /// After decide, for every run that is not a dry run: a held run is
    /// appended to the holds log, the daemon's metrics note the decision,
    /// and the first hold of a streak (per cause) is announced.
    pub async fn decided(&self, plan: &Plan, now: DateTime<Utc>, dry_run: bool) {
        if dry_run {
            return;
        }
        let cluster = &plan.cluster;
        if let Some(m) = self.inner.metrics.get() {
            m.decided(cluster, now);
        }
        if let Some(r) = holds::record_of(&plan.verdict, now) {
            if let Err(e) = holds::append(&self.inner.state, cluster, &r) {
                tracing::warn!(error = %e, "cannot append to the holds log");
            }
        }
        if self.inner.notify.is_none()
            || matches!(plan.verdict, Verdict::Hold(HoldReason::Running { .. }))
        {
            return;
        }
        let mut st = notify::load(&self.inner.state, cluster);
        let step = notify::streak_step(st.streak.as_ref(), &plan.verdict, now);
        let mut next = step.next;
        if let (true, Some(streak)) = (step.announce, next.as_mut()) {
            let event = match plan.verdict {
                Verdict::Hold(HoldReason::Frozen { .. } | HoldReason::OtherRunning { .. }) => {
                    "frozen"
                }
                _ => "held",
            };
            if let Some(text) = notify::held(plan) {
                if self.send(event, &text).await {
                    streak.notified.push(streak.key.clone());
                }
            }
        }
        if next != st.streak {
            st.streak = next;
            if let Err(e) = notify::save(&self.inner.state, cluster, &st) {
                tracing::warn!(error = format!("{e:#}"), "cannot record the hold streak");
            }
        }
    }

    /// Around a push's execution: lets the stage and the build report to
    /// this observer, announces the start of a push still running after
    /// `notify.started_after` (beside it, joined), then how it ended.
    pub async fn push<F>(&self, plan: &Plan, run: F) -> PushReport
    where
        F: std::future::Future<Output = PushReport>,
    {
        let watch = Arc::new(Watch {
            cluster: plan.cluster.clone(),
            metrics: self.inner.metrics.get().cloned(),
            progress: self.inner.progress.load(Ordering::Relaxed),
        });
        let run = WATCH.scope(watch, run);
        let started = notify::started(plan).filter(|_| self.wants("started"));
        let report = match (started, self.inner.notify.as_ref()) {
            (Some(text), Some(n)) => {
                // `started` only for a push still running after
                // `started_after`; posted beside the push (same task,
                // joined), so it never holds the push up.
                let after = n.started_after;
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let push = async move {
                    let r = run.await;
                    let _ = done_tx.send(());
                    r
                };
                let announce = async {
                    if !after.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(after) => {}
                            _ = done_rx => return,
                        }
                    }
                    self.send("started", &text).await;
                };
                let (report, ()) = tokio::join!(push, announce);
                report
            }
            _ => run.await,
        };
        let event = if report.failure.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        self.send(event, &notify::finished(&plan.cluster, &report))
            .await;
        report
    }

    /// After a rollback switched (some) hosts.
    pub async fn rolled_back(
        &self,
        cluster: &ClusterName,
        release: &ReleaseId,
        commit: &CommitId,
        hosts: usize,
        failed: &[String],
        task_link: Option<&str>,
    ) {
        let text = notify::rolled_back(cluster, release, commit, hosts, failed, task_link);
        self.send("rollback", &text).await;
    }
}

/// The stage of the push being watched: a bar of hosts, and its timing for
/// the metrics. Outside a watched push it does nothing.
pub struct StageWatch {
    watch: Option<Arc<Watch>>,
    bar: Option<ProgressBar>,
    started: Instant,
    bytes: AtomicU64,
    failed: AtomicU64,
}

/// A stage of `hosts` hosts begins.
pub fn stage(hosts: usize) -> StageWatch {
    let watch = WATCH.try_with(Arc::clone).ok();
    let bar = watch
        .as_ref()
        .filter(|w| w.progress)
        .map(|_| progress::stage_bar(hosts));
    StageWatch {
        watch,
        bar,
        started: Instant::now(),
        bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    }
}

impl StageWatch {
    /// One host is done (after its retries).
    pub fn host_done(&self, ok: bool, bytes_sent: Option<u64>) {
        let total = self
            .bytes
            .fetch_add(bytes_sent.unwrap_or(0), Ordering::Relaxed)
            + bytes_sent.unwrap_or(0);
        let failed = if ok {
            self.failed.load(Ordering::Relaxed)
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
            let mut msg = format!("{} sent", crate::run::execute::bytes(total));
            if failed > 0 {
                msg.push_str(&format!(" · {failed} failed"));
            }
            bar.set_message(msg);
        }
    }

    /// The stage ended: the bar goes, the metrics get its numbers.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some((w, m)) = self
            .watch
            .as_ref()
            .and_then(|w| w.metrics.as_ref().map(|m| (w, m)))
        {
            m.staged(
                &w.cluster,
                self.started.elapsed(),
                self.bytes.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            );
        }
    }
}

/// A build in progress: a spinner while it lives, in a watched push.
pub struct BuildWatch(Option<ProgressBar>);

/// The build of `commit` begins.
pub fn build(commit: &CommitId) -> BuildWatch {
    let shown = WATCH.try_with(|w| w.progress).unwrap_or(false);
    BuildWatch(shown.then(|| progress::build_spinner(&format!("building {}", commit.short()))))
}

impl Drop for BuildWatch {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
