//! Who watches a run, and what they are told: the holds log (always), the
//! run reports (always, `runs.rs`), the notifications (`[notify]`), the
//! metrics and the on-call page's live board (`pushgate run --http`) and
//! the progress bars (a person at a terminal).
//!
//! The commands call three hooks around a run: [`Observer::decided`] after
//! decide, [`Observer::push`] around execute, [`Observer::rolled_back`]
//! after a rollback. Inside a run, the build and the hosts' stage report to
//! a [`RunWatch`] (from [`Observer::watch_run`]) that the command hands to
//! the run as its [`Progress`]: the run never reaches for a watcher.
//!
//! Nothing here can fail a run: every failure is a warning in the log,
//! and a notification waits at most `notify.timeout`.

pub mod holds;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod runs;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use self::notify::Webhook;
use crate::adapters::state::StateDir;
use crate::config::{Config, NotifySettings};
use crate::domain::decide::rollback::RollbackPlan;
use crate::domain::model::{AppName, ClusterName, CommitId, Host};
use crate::domain::plan::{HoldReason, Plan, Verdict};
use crate::domain::report::PushReport;
use crate::run::rollback::RolledBack;
use crate::run::Progress;
use crate::watch::live::Board;
use crate::watch::metrics::Metrics;

/// The watchers of one process's runs; cheap to clone.
#[derive(Clone)]
pub struct Observer {
    inner: Arc<Inner>,
}

struct Inner {
    app: AppName,
    /// The config has several apps: messages name this one.
    named: bool,
    /// `repo.web`: messages link to the code.
    web: Option<crate::config::WebLinks>,
    state: StateDir,
    notify: Option<NotifySettings>,
    /// Read from the environment at the first message.
    webhook: OnceLock<Option<Webhook>>,
    metrics: OnceLock<Arc<Metrics>>,
    live: OnceLock<Arc<Board>>,
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

impl Observer {
    pub fn new(config: &Config) -> Observer {
        Observer {
            inner: Arc::new(Inner {
                app: config.app.clone(),
                named: config.many_apps,
                web: config.web.clone(),
                state: StateDir::new(&config.state_dir),
                notify: config.notify.clone(),
                webhook: OnceLock::new(),
                metrics: OnceLock::new(),
                live: OnceLock::new(),
                progress: AtomicBool::new(false),
            }),
        }
    }

    /// What watches one run of `cluster` while it runs, for the run to tell.
    pub fn watch_run(&self, cluster: &ClusterName) -> RunWatch {
        RunWatch {
            app: self.inner.app.clone(),
            cluster: cluster.clone(),
            metrics: self.inner.metrics.get().cloned(),
            live: self.inner.live.get().cloned(),
            told: AtomicBool::new(false),
            progress: self.inner.progress.load(Ordering::Relaxed),
            stage: Mutex::new(None),
            spinner: Mutex::new(None),
        }
    }

    /// The daemon's metrics: from now on, pushes report their stages there.
    pub fn set_metrics(&self, m: Arc<Metrics>) {
        let _ = self.inner.metrics.set(m);
    }

    /// The on-call page's live board: from now on, pushes tell it where
    /// they stand.
    pub fn set_live(&self, board: Arc<Board>) {
        let _ = self.inner.live.set(board);
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
            m.decided(&self.inner.app, cluster, now);
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
    pub async fn push<F>(&self, plan: &Plan, run: F) -> Option<PushReport>
    where
        F: std::future::Future<Output = Option<PushReport>>,
    {
        let started =
            notify::started(plan, self.inner.web.as_ref()).filter(|_| self.wants("started"));
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
        let r = report.as_ref()?;
        let state = self.inner.state.cluster(&plan.cluster);
        runs::keep(
            &state,
            &runs::of_push(plan, r, &state, crate::run::gather::operator()),
        );
        // One message: an automatic rollback is a `rollback` where that is
        // wanted, else a `failed`.
        let event = match (&r.stopped, &r.failure) {
            (Some(s), _) if s.rolled_back && self.wants("rollback") => "rollback",
            (Some(_), _) | (_, Some(_)) => "failed",
            (None, None) => "succeeded",
        };
        self.send(event, &notify::finished(&plan.label(), r)).await;
        report
    }

    /// After a rollback switched (some) hosts: its report is kept, and
    /// announced. `previous` is the commit deployed before it; `queued`
    /// the Asana writes it left in the outbox.
    pub async fn rolled_back(
        &self,
        plan: &RollbackPlan,
        done: &RolledBack,
        previous: Option<String>,
        queued: usize,
        duration: std::time::Duration,
    ) {
        let cluster = &plan.cluster;
        let state = self.inner.state.cluster(cluster);
        runs::keep(
            &state,
            &runs::of_rollback(
                plan,
                done,
                previous,
                queued,
                duration,
                &state,
                crate::run::gather::operator(),
            ),
        );
        let label = match &self.inner.named {
            true => format!("{}/{cluster}", self.inner.app),
            false => cluster.to_string(),
        };
        let text = notify::rolled_back(
            &label,
            &done.release,
            &done.commit,
            done.hosts,
            &done.failed,
            done.push_task.as_deref(),
        );
        self.send("rollback", &text).await;
    }
}

/// One run as its watchers see it: the progress bars a person at a
/// terminal sees, and the stage numbers of the daemon's metrics. Handed to
/// the run as its [`Progress`].
pub struct RunWatch {
    app: AppName,
    cluster: ClusterName,
    metrics: Option<Arc<Metrics>>,
    /// The page's live board, and whether this run is on it.
    live: Option<Arc<Board>>,
    told: AtomicBool,
    progress: bool,
    stage: Mutex<Option<Stage>>,
    spinner: Mutex<Option<ProgressBar>>,
}

/// The stage in progress.
struct Stage {
    bar: Option<ProgressBar>,
    started: Instant,
    bytes: u64,
    failed: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunWatch {
    /// Tells the live board, if the page runs.
    fn tell(&self, f: impl FnOnce(&mut live::Live)) {
        if let Some(b) = &self.live {
            self.told.store(true, Ordering::Relaxed);
            b.tell(&self.app, &self.cluster, f);
        }
    }
}

impl Drop for RunWatch {
    /// The run is over: off the board.
    fn drop(&mut self) {
        if let (Some(b), true) = (&self.live, self.told.load(Ordering::Relaxed)) {
            b.end(&self.app, &self.cluster);
        }
    }
}

impl Progress for RunWatch {
    fn build_started(&self, commit: &CommitId) {
        self.tell(|l| l.doing = "build".into());
        if self.progress {
            *lock(&self.spinner) = Some(progress::build_spinner(&format!(
                "building {}",
                commit.short()
            )));
        }
    }

    fn build_finished(&self) {
        if let Some(bar) = lock(&self.spinner).take() {
            bar.finish_and_clear();
        }
    }

    fn stage_started(&self, hosts: usize) {
        self.tell(|l| {
            l.doing = "stage".into();
            l.hosts = hosts;
            l.staged = 0;
            l.failed = 0;
            l.bytes = 0;
        });
        *lock(&self.stage) = Some(Stage {
            bar: self.progress.then(|| progress::stage_bar(hosts)),
            started: Instant::now(),
            bytes: 0,
            failed: 0,
        });
    }

    fn host_staged(&self, _host: &Host, ok: bool, bytes_sent: Option<u64>) {
        self.tell(|l| {
            l.staged += 1;
            l.failed += usize::from(!ok);
            l.bytes += bytes_sent.unwrap_or(0);
        });
        let mut guard = lock(&self.stage);
        let Some(st) = guard.as_mut() else { return };
        st.bytes += bytes_sent.unwrap_or(0);
        if !ok {
            st.failed += 1;
        }
        if let Some(bar) = &st.bar {
            bar.inc(1);
            let mut msg = format!("{} sent", crate::domain::text::bytes(st.bytes));
            if st.failed > 0 {
                msg.push_str(&format!(" · {} failed", st.failed));
            }
            bar.set_message(msg);
        }
    }

    fn wave_started(&self, wave: usize, of: usize, hosts: usize) {
        self.tell(|l| {
            l.doing = "switch".into();
            l.wave = wave;
            l.of = of;
            l.wave_hosts = hosts;
        });
    }

    fn wave_finished(&self, _wave: usize, _of: usize, passed: bool) {
        self.tell(|l| l.waves_passed += usize::from(passed));
        if let Some(m) = &self.metrics {
            m.wave(&self.app, &self.cluster, passed);
        }
    }

    fn checks_failed(&self, unhealthy: usize, wave_check: bool) {
        if let Some(m) = &self.metrics {
            m.checks_failed(&self.app, &self.cluster, unhealthy, wave_check);
        }
    }

    fn stage_finished(&self) {
        let Some(st) = lock(&self.stage).take() else {
            return;
        };
        if let Some(bar) = &st.bar {
            bar.finish_and_clear();
        }
        if let Some(m) = &self.metrics {
            m.staged(
                &self.app,
                &self.cluster,
                st.started.elapsed(),
                st.bytes,
                st.failed,
            );
        }
    }
}
