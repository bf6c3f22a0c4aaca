//! `pushgate run`: every cluster's schedule in one process, and a graceful
//! stop. With `decide::schedule` this is the only code that waits on the
//! clock.
//!
//! Fire times come from `decide::next_fire` (croner and chrono-tz, the time
//! zone applied afresh at every fire); tokio-cron-scheduler, which SPEC §3
//! names, only *runs* them: each cluster has one one-shot job at a time, at
//! its next fire time, added again after each push. The crate's own cron
//! jobs are not used because 0.15 turns a job's time zone into the UTC
//! offset in force when the job is created (upstream issues #87 and #107):
//! a daemon running through a DST change would fire an hour off.
//!
//! After each push the next target comes from the previous target
//! (`decide::after_fire`), never from `now` alone, so a job that fires a
//! little early cannot fire twice for one occurrence. A tick that falls
//! while that cluster's push still runs is skipped and logged, never
//! queued.
//!
//! Time is a seam, [`Clock`]: `pushgate run` uses the system clock and
//! tokio-cron-scheduler ([`Jobs`]); tests drive a clock of their own through
//! DST changes (`tests/it/daemon_dst.rs`) with [`run_with`].
//!
//! With `--http ADDR` (alias `--metrics ADDR`) it also serves, on one
//! listener, the on-call page (`cmd::page`: the overview, clusters, runs,
//! their JSON and feeds) and Prometheus metrics at `/metrics`
//! (`watch::metrics`), joined with the schedules: the listener answers
//! until the last push has stopped, then closes; the job scheduler is
//! shut down after both. Off loopback the page needs `[http] token_file`
//! (checked before anything starts: exit 2).
//!
//! On SIGINT/SIGTERM: no new push starts; a running push stops at its next
//! safe point (before stage or switch; a stage in flight finishes its host
//! operations) within `grace`; past `grace` the push is dropped, which kills
//! its children — `current` is only ever replaced by an atomic rename, so no
//! host points at a partial release, and the next run records the
//! interrupted one from its journal.
//!
//! Not here: what a push does (`cmd::push`), when a schedule fires
//! (`decide::schedule`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio_cron_scheduler::job::JobId;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::cmd::page::{Page, Site};
use crate::cmd::push::{push_at, PushRequest};
use crate::cmd::{Env, Envs, Outcome};
use crate::config::ClusterSettings;
use crate::domain::decide::{after_fire, fires, next_fire, next_turn};
use crate::domain::model::{AppName, ClusterName};
use crate::domain::plan::Verdict;
use crate::watch::live::Board;
use crate::watch::metrics::Metrics;

/// Where the daemon's time comes from, and how it waits for a fire time.
pub trait Clock: Sync {
    /// The time now: read once per push, handed to the push.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `at` has come (at once if it has already), for
    /// `cluster`'s next push. Dropping the future abandons the wait.
    fn wait_until(
        &self,
        cluster: &ClusterName,
        at: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// At most `max_concurrent_pushes` pushes at once, over every app, handed
/// out in turn (`decide::next_turn`): when a push ends, the next app after
/// the one served last that has a push waiting starts its push, so a slow
/// app cannot starve the others and the bastion is never oversubscribed.
pub struct Turns {
    state: Mutex<TurnState>,
}

struct TurnState {
    free: usize,
    waiting: BTreeMap<AppName, VecDeque<tokio::sync::oneshot::Sender<()>>>,
    last: Option<AppName>,
}

/// A push's place among the running ones; the next waiting push gets it
/// when this is dropped.
pub struct Turn<'a> {
    turns: &'a Turns,
}

impl Turns {
    pub fn new(max: usize) -> Turns {
        Turns {
            state: Mutex::new(TurnState {
                free: max.max(1),
                waiting: BTreeMap::new(),
                last: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place for one push of `app`.
    pub async fn take(&self, app: &AppName) -> Turn<'_> {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.waiting.values().all(VecDeque::is_empty) {
                st.free -= 1;
                st.last = Some(app.clone());
                return Turn { turns: self };
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            st.waiting.entry(app.clone()).or_default().push_back(tx);
            rx
        };
        // A sender dropped unsent is a place given back at shutdown.
        let _ = rx.await;
        Turn { turns: self }
    }

    /// Places free now (for the tests).
    pub fn free(&self) -> usize {
        self.lock().free
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = self.turns.lock();
        loop {
            let apps: Vec<AppName> = st
                .waiting
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(a, _)| a.clone())
                .collect();
            let Some(next) = next_turn(&apps, st.last.as_ref()).cloned() else {
                st.free += 1;
                return;
            };
            let tx = st.waiting.get_mut(&next).and_then(VecDeque::pop_front);
            st.last = Some(next);
            // A waiter that gave up (its daemon is stopping) passes it on.
            if tx.is_some_and(|tx| tx.send(()).is_ok()) {
                return;
            }
        }
    }
}

/// The system clock, with tokio-cron-scheduler running one one-shot job
/// per wait.
pub struct Jobs {
    scheduler: JobScheduler,
    /// Jobs added and not yet fired (a wait abandoned at shutdown).
    pending: Mutex<Vec<JobId>>,
}

impl Jobs {
    /// Starts the job scheduler.
    pub async fn start() -> anyhow::Result<Jobs> {
        let scheduler = JobScheduler::new()
            .await
            .context("cannot create the job scheduler")?;
        scheduler
            .start()
            .await
            .context("cannot start the job scheduler")?;
        Ok(Jobs {
            scheduler,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Removes the jobs that have not fired and shuts the scheduler down:
    /// its ticker stops within half a second.
    pub async fn shutdown(mut self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for id in pending {
            if let Err(e) = self.scheduler.remove(&id).await {
                tracing::debug!(error = ?e, "a pending job was already gone");
            }
        }
        if let Err(e) = self.scheduler.shutdown().await {
            tracing::warn!(error = ?e, "the job scheduler did not shut down cleanly");
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<JobId>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for Jobs {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn wait_until(
        &self,
        cluster: &ClusterName,
        at: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let cluster = cluster.clone();
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let tx = Mutex::new(Some(tx));
            // 0.15's one-shot job is due once the wall clock reaches the
            // whole second `floor(now) + whole seconds of the duration`.
            // Counted from the floor of now, that is `at` (a whole second)
            // or a second later, never before.
            let secs = u64::try_from(at.timestamp() - Utc::now().timestamp()).unwrap_or(0);
            let job = Job::new_one_shot_async(Duration::from_secs(secs), move |_, _| {
                // Once: a second run finds the sender taken.
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(());
                }
                Box::pin(async {})
            })
            .with_context(|| format!("cannot make {cluster}'s job"))?;
            let id = self
                .scheduler
                .add(job)
                .await
                .with_context(|| format!("cannot add {cluster}'s job to the job scheduler"))?;
            self.pending().push(id);
            let fired = rx.await;
            self.pending().retain(|p| *p != id);
            fired.map_err(|_| {
                anyhow::anyhow!("the job scheduler dropped {cluster}'s job before it fired")
            })
        }
    }
}

/// Every fire time of every cluster in `[from, to)`, in order (pure: for
/// tests and for `status`).
pub fn ticks(
    clusters: &[&ClusterSettings],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, ClusterName)> {
    let mut out = Vec::new();
    for c in clusters {
        let after = from - chrono::Duration::seconds(1);
        out.extend(
            fires(&c.schedule.cron, c.timezone, after)
                .take_while(|t| *t < to)
                .map(|t| (t, c.name.clone())),
        );
    }
    out.sort();
    out
}

/// Runs every cluster's schedule until SIGINT/SIGTERM, then stops
/// gracefully. With `http`, serves the on-call page and the metrics there
/// until the last push has stopped.
pub async fn run(
    envs: &Envs,
    app: Option<&str>,
    grace: Duration,
    http: Option<SocketAddr>,
) -> anyhow::Result<Outcome> {
    let apps = envs.apps(app)?;
    // Before anything starts: a page off loopback without its token is
    // refused (exit 2), as is a token file others can read.
    let site = http.map(|addr| Site::open(envs, &apps, addr)).transpose()?;
    let max = envs.file.max_concurrent_pushes.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    tracing::info!(
        apps = apps.len(),
        max_concurrent_pushes = max,
        "one daemon for every app"
    );
    let jobs = Jobs::start().await?;
    let outcome = run_with(
        &apps,
        &jobs,
        max,
        grace,
        site,
        crate::cmd::shutdown_signal(),
    )
    .await;
    jobs.shutdown().await;
    outcome
}

/// [`run`] with its clock and its stop signal given: the daemon's whole
/// loop, for tests that drive time.
pub async fn run_with<C: Clock>(
    apps: &[&Env],
    clock: &C,
    max_concurrent_pushes: usize,
    grace: Duration,
    http: Option<Site>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let server = match http {
        Some(site) => {
            let addr = site.addr;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--http {addr}: cannot listen there"))?;
            let bound = listener.local_addr()?;
            let Some(client) = apps.first().map(|e| &e.client) else {
                anyhow::bail!("no app to run");
            };
            let configs: Vec<&crate::config::Config> = apps.iter().map(|e| &e.config).collect();
            let m = Arc::new(Metrics::new(&configs, client));
            let board = Arc::new(Board::new());
            for env in apps {
                env.observer.set_metrics(m.clone());
                env.observer.set_live(board.clone());
            }
            let guarded = site.token.is_some();
            let page = Arc::new(Page::new(apps, site, board));
            let router = crate::cmd::page::router(page, crate::watch::metrics::router(m));
            if guarded {
                tracing::info!(%bound, "every request to the page and the metrics needs the token of [http] token_file");
            }
            tracing::info!(url = %format!("http://{bound}/"), "serving the on-call page");
            tracing::info!(url = %format!("http://{bound}/metrics"), "serving metrics");
            Some((listener, router))
        }
        None => None,
    };
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let serve = async move {
        let Some((listener, router)) = server else {
            return;
        };
        let mut done = done_rx;
        let stopped = async move {
            let _ = done.wait_for(|d| *d).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the on-call page and metrics stopped");
        }
    };
    let schedules = async move {
        let r = schedules(apps, clock, max_concurrent_pushes, grace, shutdown).await;
        let _ = done_tx.send(true);
        r
    };
    let (outcome, ()) = tokio::join!(schedules, serve);
    outcome
}

/// What the cluster loops share: the stop flag the pushes see, and who is
/// told when to stop or that a loop failed.
struct Stop {
    flag: AtomicBool,
    stopped: Notify,
    failed: Notify,
}

async fn schedules<C: Clock>(
    apps: &[&Env],
    clock: &C,
    max_concurrent_pushes: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let stop = Stop {
        flag: AtomicBool::new(false),
        stopped: Notify::new(),
        failed: Notify::new(),
    };
    let turns = Turns::new(max_concurrent_pushes);
    let clusters: Vec<(&Env, &ClusterSettings)> = apps
        .iter()
        .flat_map(|e| e.config.clusters.values().map(move |c| (*e, c)))
        .collect();
    let start = clock.now();
    // Per app: the scheduled pushes held only by their approval.
    let awaiting: Vec<Awaiting> = apps.iter().map(|_| Awaiting::default()).collect();
    let awaiting_of = |env: &Env| {
        let i = apps
            .iter()
            .position(|e| e.config.app == env.config.app)
            .unwrap_or(0);
        &awaiting[i]
    };
    let loops = join_all(
        clusters
            .iter()
            .map(|(env, c)| cluster_loop(env, clock, c, start, &stop, &turns, awaiting_of(env))),
    );
    let approvals = join_all(
        apps.iter()
            .zip(&awaiting)
            .map(|(env, a)| approval_loop(env, clock, &stop, a)),
    );
    let loops = async {
        let (mut results, approvals, requests) =
            tokio::join!(loops, approvals, requests_loop(apps, clock, &stop));
        results.extend(approvals);
        results.push(requests);
        results
    };
    tokio::pin!(loops);
    tokio::pin!(shutdown);
    tokio::select! {
        results = &mut loops => return first_error(results),
        _ = &mut shutdown => {
            tracing::info!(grace = %humantime::format_duration(grace), "stopping: no new push starts; a running push stops at its next safe point");
        }
        _ = stop.failed.notified() => {
            tracing::error!(grace = %humantime::format_duration(grace), "stopping: a schedule cannot go on; a running push stops at its next safe point");
        }
    }
    stop.flag.store(true, Ordering::SeqCst);
    stop.stopped.notify_waiters();
    match tokio::time::timeout(grace, &mut loops).await {
        Ok(results) => {
            tracing::info!("stopped");
            first_error(results)
        }
        Err(_) => {
            tracing::warn!(
                "a push did not reach a safe point within the grace period; stopping it (no host's current changes; the next run records it)"
            );
            Ok(Outcome::Success)
        }
    }
}

fn first_error(results: Vec<anyhow::Result<()>>) -> anyhow::Result<Outcome> {
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(Outcome::Success)
}

async fn cluster_loop<C: Clock>(
    env: &Env,
    clock: &C,
    c: &ClusterSettings,
    start: DateTime<Utc>,
    stop: &Stop,
    turns: &Turns,
    awaiting: &Awaiting,
) -> anyhow::Result<()> {
    let app = &env.config.app;
    let (cron, tz) = (&c.schedule.cron, c.timezone);
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    let mut target = next_fire(cron, tz, start);
    if let Some(next) = target {
        tracing::info!(
            app = %app, cluster = %c.name,
            schedule = %c.schedule.expr,
            timezone = %tz.name(),
            next = %local(next),
            "scheduled"
        );
    }
    loop {
        let Some(at) = target else {
            tracing::warn!(app = %app, cluster = %c.name, "the schedule never fires again");
            return Ok(());
        };
        // Created before the flag is read, so a stop between the two still
        // wakes it.
        let stopped = stop.stopped.notified();
        tokio::pin!(stopped);
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        tokio::select! {
            waited = clock.wait_until(&c.name, at) => {
                if let Err(e) = waited {
                    tracing::error!(app = %app, cluster = %c.name, error = %format!("{e:#}"), "cannot wait for the next push");
                    stop.failed.notify_one();
                    return Err(e);
                }
            }
            _ = &mut stopped => return Ok(()),
        }
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Its turn among every app's pushes (`max_concurrent_pushes`).
        let mut taking = Box::pin(turns.take(app));
        let turn = match futures_util::FutureExt::now_or_never(taking.as_mut()) {
            Some(t) => t,
            None => {
                tracing::info!(
                    app = %app, cluster = %c.name, scheduled = %local(at),
                    "waiting for a turn: max_concurrent_pushes pushes are running"
                );
                tokio::select! {
                    t = taking => t,
                    _ = &mut stopped => return Ok(()),
                }
            }
        };
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        let started = clock.now();
        let result = push_at(
            env,
            PushRequest {
                stop: Some(&stop.flag),
                ..PushRequest::scheduled(c.name.as_str(), started)
            },
        )
        .await;
        awaiting.note(c, at, result.as_ref().ok().map(|p| &p.plan.verdict));
        match &result {
            Ok(p) => match (&p.plan.verdict, p.outcome()) {
                (_, Outcome::Failure) => {
                    tracing::error!(app = %app, cluster = %c.name, scheduled = %local(at), "push failed; the schedule goes on")
                }
                (Verdict::Push { to, .. }, _) => {
                    tracing::info!(app = %app, cluster = %c.name, scheduled = %local(at), commit = %to.short(), "pushed")
                }
                _ => {}
            },
            Err(e) => {
                tracing::error!(app = %app, cluster = %c.name, scheduled = %local(at), error = %format!("{e:#}"), "push failed; the schedule goes on")
            }
        }
        drop(turn);
        let after = after_fire(cron, tz, at, clock.now());
        if after.skipped > 0 {
            tracing::warn!(app = %app, cluster = %c.name, skipped = after.skipped, "ticks fell while the push ran; skipped, not queued");
        }
        if let Some(next) = after.next {
            tracing::debug!(app = %app, cluster = %c.name, next = %local(next), "next push");
        }
        target = after.next;
    }
}

/// How often the daemon looks again at the approval gates: to ask when
/// it is time, and to run a scheduled push held only by its approval once
/// the approval comes (`docs/approvals.md`).
pub const APPROVAL_POLL: Duration = Duration::from_secs(30);

/// Scheduled pushes held by their approval: cluster → the scheduled time.
#[derive(Default)]
struct Awaiting(Mutex<std::collections::BTreeMap<ClusterName, DateTime<Utc>>>);

impl Awaiting {
    /// After the scheduled push of `c` due `at` decided `verdict`.
    fn note(&self, c: &ClusterSettings, at: DateTime<Utc>, verdict: Option<&Verdict>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match verdict {
            Some(v) if c.approval.is_some() && crate::cmd::approvals::is_approval_hold(v) => {
                m.insert(c.name.clone(), at);
            }
            _ => {
                m.remove(&c.name);
            }
        }
    }

    fn get(&self, c: &ClusterName) -> Option<DateTime<Utc>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(c)
            .copied()
    }

    fn done(&self, c: &ClusterName, at: DateTime<Utc>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(c) == Some(&at) {
            m.remove(c);
        }
    }
}

/// The approval gates' loop (only when a cluster has one): every
/// [`APPROVAL_POLL`], for each gated cluster, ask for the next push's
/// approval when it is time, and run a scheduled push held only by its
/// approval once the approval has come, within its window.
async fn approval_loop<C: Clock>(
    env: &Env,
    clock: &C,
    stop: &Stop,
    awaiting: &Awaiting,
) -> anyhow::Result<()> {
    let gated: Vec<&ClusterSettings> = env
        .config
        .clusters
        .values()
        .filter(|c| c.approval.is_some())
        .collect();
    let Some(name) = ClusterName::parse("approvals").filter(|_| !gated.is_empty()) else {
        return Ok(());
    };
    loop {
        let stopped = stop.stopped.notified();
        tokio::pin!(stopped);
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        let at = clock.now() + chrono::Duration::from_std(APPROVAL_POLL).unwrap_or_default();
        tokio::select! {
            waited = clock.wait_until(&name, at) => waited?,
            _ = &mut stopped => return Ok(()),
        }
        for c in &gated {
            if stop.flag.load(Ordering::SeqCst) {
                return Ok(());
            }
            let now = clock.now();
            if let Some(scheduled) = awaiting.get(&c.name) {
                if let Some(why) =
                    crate::cmd::approvals::retry_held(env, c, scheduled, now, Some(&stop.flag))
                        .await
                {
                    tracing::info!(app = %env.config.app, cluster = %c.name, "{why}");
                    awaiting.done(&c.name, scheduled);
                }
            }
            if let Err(e) = crate::cmd::approvals::ask_if_due(env, c, clock.now()).await {
                tracing::warn!(app = %env.config.app, cluster = %c.name, error = %format!("{e:#}"), "cannot ask for the approval; trying again on the next poll");
            }
        }
    }
}

/// The requests' loop (only with `[requests]`): every `poll`, the
/// requests project's events (every tenth poll, and the first, in full),
/// each request as `decide::request` says (`cmd::requests`).
async fn requests_loop<C: Clock>(apps: &[&Env], clock: &C, stop: &Stop) -> anyhow::Result<()> {
    let Some(settings) = apps.first().and_then(|e| e.config.requests.as_ref()) else {
        return Ok(());
    };
    let Some(name) = ClusterName::parse("requests") else {
        return Ok(());
    };
    let poll = chrono::Duration::from_std(settings.poll).unwrap_or(chrono::Duration::seconds(60));
    let mut n: u32 = 0;
    loop {
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        let full = n % crate::cmd::requests::FULL_EVERY == 0;
        n = n.wrapping_add(1);
        if let Err(e) = crate::cmd::requests::poll(apps, clock.now(), full).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the requests project; trying again on the next poll");
        }
        let stopped = stop.stopped.notified();
        tokio::pin!(stopped);
        if stop.flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        let at = clock.now() + poll;
        tokio::select! {
            waited = clock.wait_until(&name, at) => waited?,
            _ = &mut stopped => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> AppName {
        AppName::parse(s).unwrap()
    }

    /// `Some` if the future is ready now, without waiting.
    fn now<F: Future>(f: F) -> Option<F::Output> {
        futures_util::FutureExt::now_or_never(f)
    }

    #[test]
    fn at_most_max_pushes_run_and_a_freed_place_goes_to_the_next_app_in_turn() {
        let turns = Turns::new(2);
        let (web, api, db) = (app("web"), app("api"), app("db"));
        let a = now(turns.take(&web)).expect("a place is free");
        let b = now(turns.take(&web)).expect("a second place");
        assert_eq!(turns.free(), 0);
        // Full: web's third push and api's and db's wait.
        let mut w3 = Box::pin(turns.take(&web));
        assert!(now(w3.as_mut()).is_none());
        let mut a1 = Box::pin(turns.take(&api));
        assert!(now(a1.as_mut()).is_none());
        let mut d1 = Box::pin(turns.take(&db));
        assert!(now(d1.as_mut()).is_none());
        // web was served last: api's turn, then db's, then web's again.
        drop(a);
        let a1 = now(a1).expect("api's turn");
        assert!(now(w3.as_mut()).is_none() && now(d1.as_mut()).is_none());
        drop(b);
        let d1 = now(d1).expect("db's turn");
        assert!(now(w3.as_mut()).is_none());
        drop(a1);
        let w3 = now(w3).expect("web's turn");
        drop((d1, w3));
        assert_eq!(turns.free(), 2, "every place comes back");
    }

    #[test]
    fn a_waiter_that_gave_up_passes_its_place_on() {
        let turns = Turns::new(1);
        let (web, api) = (app("web"), app("api"));
        let held = now(turns.take(&web)).unwrap();
        let mut gone = Box::pin(turns.take(&api));
        assert!(now(gone.as_mut()).is_none());
        let mut next = Box::pin(turns.take(&web));
        assert!(now(next.as_mut()).is_none());
        drop(gone); // the daemon stopping: this wait is abandoned
        drop(held);
        let next = now(next).expect("the place went on to the next waiter");
        drop(next);
        assert_eq!(turns.free(), 1);
    }
    use crate::config::Config;

    #[test]
    fn a_week_has_672_beta_ticks_and_10_prod_ticks_in_order() {
        let text = include_str!("../../config/pushgate.toml");
        let config = Config::parse(text, std::path::Path::new("/etc/pushgate")).unwrap();
        let clusters: Vec<&ClusterSettings> = config.clusters.values().collect();
        // Monday 2026-11-23 00:00 PST.
        let from = DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
            .unwrap()
            .to_utc();
        let t = ticks(&clusters, from, from + chrono::Duration::days(7));
        let count = |n: &str| t.iter().filter(|(_, c)| c.as_str() == n).count();
        assert_eq!(count("beta"), 672);
        assert_eq!(count("prod"), 10);
        assert!(t.windows(2).all(|w| w[0].0 <= w[1].0));
        let first_prod = t.iter().find(|(_, c)| c.as_str() == "prod").unwrap().0;
        assert_eq!(first_prod.to_rfc3339(), "2026-11-23T18:00:00+00:00");
    }

    #[test]
    fn a_tick_at_the_start_of_the_range_counts() {
        let text = include_str!("../../config/pushgate.toml");
        let config = Config::parse(text, std::path::Path::new("/etc/pushgate")).unwrap();
        let clusters: Vec<&ClusterSettings> = config.clusters.values().collect();
        let from = DateTime::parse_from_rfc3339("2026-11-23T18:00:00Z")
            .unwrap()
            .to_utc();
        let t = ticks(&clusters, from, from + chrono::Duration::minutes(15));
        let names: Vec<String> = t
            .iter()
            .map(|(t, c)| format!("{} {c}", t.format("%H:%M")))
            .collect();
        assert_eq!(names, ["18:00 beta", "18:00 prod"]);
    }
}
