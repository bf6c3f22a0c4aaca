//! The daemon's loop (`daemon::run_with`, the code `pushgate run` runs)
//! through both 2026 DST changes in Los Angeles, on a clock the test drives:
//! real pushes against the sandbox and `local:` hosts, no wall-clock waits.
//! What a user would see is read back: the push tasks' names (their UTC
//! time is the push's clock) and the fire times the daemon waited for.
//!
//! The test clock moves only when every cluster's loop is waiting, to the
//! earliest time one waits for, so a push always ends before time moves on
//! (unless a test moves it during a push on purpose).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pushgate::cmd::daemon::{run_with, Clock};
use pushgate::cmd::{Env, Outcome};
use pushgate::config::Config;
use pushgate::domain::model::ClusterName;
use tokio::sync::{oneshot, Notify};

use pushgate::sandbox::Sandbox;

use crate::support::{self, seed, Bin, Setup};

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub struct TestClock {
    state: Mutex<State>,
    changed: Notify,
    /// How much earlier than asked a wait ends (tokio-cron-scheduler's
    /// one-shot job can be up to a second off).
    early: chrono::Duration,
}

struct State {
    now: DateTime<Utc>,
    waiting: Vec<(DateTime<Utc>, oneshot::Sender<()>)>,
    /// Every (cluster, time) the daemon waited for, in order.
    asked: Vec<(String, DateTime<Utc>)>,
}

impl TestClock {
    pub fn new(now: DateTime<Utc>) -> TestClock {
        TestClock {
            state: Mutex::new(State {
                now,
                waiting: Vec::new(),
                asked: Vec::new(),
            }),
            changed: Notify::new(),
            early: chrono::Duration::zero(),
        }
    }

    /// Once `n` waits are pending (no push runs), the earliest time waited for.
    pub async fn next_wake(&self, n: usize) -> DateTime<Utc> {
        loop {
            let changed = self.changed.notified();
            {
                let s = self.state.lock().unwrap();
                if s.waiting.len() >= n {
                    return s.waiting.iter().map(|(t, _)| *t).min().unwrap();
                }
            }
            changed.await;
        }
    }

    /// Moves the clock to `t` (less `early`) and ends every wait due by `t`.
    pub fn wake(&self, t: DateTime<Utc>) {
        let mut s = self.state.lock().unwrap();
        s.now = t - self.early;
        let (due, rest): (Vec<_>, Vec<_>) = s.waiting.drain(..).partition(|(w, _)| *w <= t);
        s.waiting = rest;
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// Moves the clock without ending any wait (time passing during a push).
    fn set(&self, t: DateTime<Utc>) {
        self.state.lock().unwrap().now = t;
    }

    pub fn asked(&self, cluster: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.asked
            .iter()
            .filter(|(c, _)| c == cluster)
            .map(|(_, t)| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .collect()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().unwrap().now
    }

    fn wait_until(
        &self,
        cluster: &ClusterName,
        at: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let rx = {
            let mut s = self.state.lock().unwrap();
            s.asked.push((cluster.to_string(), at));
            (at > s.now).then(|| {
                let (tx, rx) = oneshot::channel();
                s.waiting.push((at, tx));
                rx
            })
        };
        self.changed.notify_waiters();
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            Ok(())
        }
    }
}

/// A test config: beta and prod in Los Angeles on the given schedules.
fn bin(sb: &Sandbox, beta: &str, prod: &str, setup: Setup) -> (Bin, Env) {
    let bin = Bin::with(
        sb,
        Setup {
            beta: "timezone = \"America/Los_Angeles\"".into(),
            ..setup
        },
    );
    let text = std::fs::read_to_string(&bin.config).unwrap();
    let text = text
        .replace(
            "schedule = \"0 */15 * * * *\"",
            &format!("schedule = {beta:?}"),
        )
        .replace(
            "schedule = \"0 0 10,17 * * Mon-Fri\"",
            &format!("schedule = {prod:?}"),
        );
    std::fs::write(&bin.config, text).unwrap();
    let config = Config::load(&bin.config).unwrap();
    let (client, _) = support::client(sb);
    let env = Env::from_parts(config, client);
    (bin, env)
}

/// Runs the daemon from `start` until the next fire time would be at or
/// after `end`, a new commit landing before every fire, then stops it as
/// SIGTERM would.
async fn run_until(env: &Env, bin: &Bin, clock: &TestClock, end: DateTime<Utc>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let apps = [env];
    let daemon = run_with(&apps, clock, 4, Duration::from_secs(60), None, async {
        let _ = stop_rx.await;
    });
    let driver = async {
        let mut i = 0;
        loop {
            let t = clock.next_wake(env.config.clusters.len()).await;
            if t >= end {
                break;
            }
            i += 1;
            // A daemon that fires twice per occurrence could go on forever.
            assert!(
                i <= 20,
                "too many fires: {:?}",
                clock.state.lock().unwrap().asked
            );
            bin.repo.commit(
                &[("app/index.html", format!("build {i}\n").as_bytes())],
                &format!("change {i}"),
            );
            clock.wake(t);
        }
        stop_tx.send(()).unwrap();
    };
    let (outcome, ()) = tokio::join!(daemon, driver);
    assert!(matches!(outcome.unwrap(), Outcome::Success));
}

/// The UTC times in the names of a push project's tasks, oldest first,
/// each with whether it was completed (the push succeeded).
fn pushed(sb: &Sandbox, project: &str) -> Vec<String> {
    sb.with_data(|d| {
        d.projects[project]
            .tasks
            .iter()
            .map(|gid| {
                let t = &d.tasks[gid];
                let when = t.name.rsplit(" · ").next().unwrap().to_owned();
                if t.completed {
                    when
                } else {
                    format!("{when} (not completed: {})", t.name)
                }
            })
            .collect()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_spring_forward_ten_oclock_stays_ten_oclock_and_0230_fires_at_0300() {
    let sb = support::sandbox().await;
    let (bin, env) = bin(&sb, "0 0 10 * * *", "0 30 2 * * *", Setup::default());
    // Friday 2026-03-06 12:00 PST; clocks go forward on Sunday at 02:00.
    let clock = TestClock::new(at("2026-03-06T20:00:00Z"));
    run_until(&env, &bin, &clock, at("2026-03-10T20:00:00Z")).await;

    // 10:00 PST is 18:00 UTC, 10:00 PDT is 17:00 UTC.
    assert_eq!(
        pushed(&sb, seed::PUSH_BETA),
        [
            "2026-03-07 18:00 UTC",
            "2026-03-08 17:00 UTC",
            "2026-03-09 17:00 UTC",
            "2026-03-10 17:00 UTC",
        ]
    );
    // 02:30 does not exist on Sunday: croner's rule fires it once, at the
    // first instant after the gap (03:00 PDT, 10:00 UTC).
    assert_eq!(
        pushed(&sb, seed::PUSH_PROD),
        [
            "2026-03-07 10:30 UTC",
            "2026-03-08 10:00 UTC",
            "2026-03-09 09:30 UTC",
            "2026-03-10 09:30 UTC",
        ]
    );
    // What it waited for: each occurrence once, and the next one when
    // stopped.
    assert_eq!(
        clock.asked("beta"),
        [
            "2026-03-07 18:00 UTC",
            "2026-03-08 17:00 UTC",
            "2026-03-09 17:00 UTC",
            "2026-03-10 17:00 UTC",
            "2026-03-11 17:00 UTC",
        ]
    );
    assert_eq!(clock.asked("prod").len(), 5, "{:?}", clock.asked("prod"));
    assert!(bin
        .current(1)
        .unwrap()
        .starts_with("releases/20260310T170000Z-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_fall_back_ten_oclock_stays_ten_oclock_and_0130_fires_once() {
    let sb = support::sandbox().await;
    let (bin, env) = bin(&sb, "0 0 10 * * *", "0 30 1 * * *", Setup::default());
    // Friday 2026-10-30 12:00 PDT; clocks go back on Sunday at 02:00, so
    // 01:00-02:00 happens twice that night.
    let clock = TestClock::new(at("2026-10-30T19:00:00Z"));
    run_until(&env, &bin, &clock, at("2026-11-03T20:00:00Z")).await;

    assert_eq!(
        pushed(&sb, seed::PUSH_BETA),
        [
            "2026-10-31 17:00 UTC",
            "2026-11-01 18:00 UTC",
            "2026-11-02 18:00 UTC",
            "2026-11-03 18:00 UTC",
        ]
    );
    // Sunday's 01:30 once, at 01:30 PDT (08:30 UTC); not again at 01:30 PST.
    assert_eq!(
        pushed(&sb, seed::PUSH_PROD),
        [
            "2026-10-31 08:30 UTC",
            "2026-11-01 08:30 UTC",
            "2026-11-02 09:30 UTC",
            "2026-11-03 09:30 UTC",
        ]
    );
    assert_eq!(
        clock.asked("prod"),
        [
            "2026-10-31 08:30 UTC",
            "2026-11-01 08:30 UTC",
            "2026-11-02 09:30 UTC",
            "2026-11-03 09:30 UTC",
            "2026-11-04 09:30 UTC",
        ]
    );
    assert_eq!(clock.asked("beta").len(), 5, "{:?}", clock.asked("beta"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fires_early_does_not_fire_twice_for_one_occurrence() {
    let sb = support::sandbox().await;
    let (bin, env) = bin(&sb, "0 0 10 * * *", "0 0 0 1 1 *", Setup::default());
    let mut clock = TestClock::new(at("2026-11-20T12:00:00Z"));
    // tokio-cron-scheduler 0.15 counts a one-shot job's delay in whole
    // seconds from a truncated now: a job can end up a second early.
    clock.early = chrono::Duration::seconds(1);
    run_until(&env, &bin, &clock, at("2026-11-23T12:00:00Z")).await;

    assert_eq!(
        clock.asked("beta"),
        [
            "2026-11-20 18:00 UTC",
            "2026-11-21 18:00 UTC",
            "2026-11-22 18:00 UTC",
            "2026-11-23 18:00 UTC",
        ]
    );
    // Each push's clock was 17:59:59.
    assert_eq!(
        pushed(&sb, seed::PUSH_BETA),
        [
            "2026-11-20 17:59 UTC",
            "2026-11-21 17:59 UTC",
            "2026-11-22 17:59 UTC",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_that_fall_while_a_push_runs_are_skipped_not_queued() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let p = probe.path().display().to_string();
    for f in ["started", "go"] {
        assert!(std::process::Command::new("mkfifo")
            .arg(probe.path().join(f))
            .status()
            .unwrap()
            .success());
    }
    let (bin, env) = bin(
        &sb,
        "0 0 10 * * *",
        "0 0 0 1 1 *",
        Setup {
            // The build says it started, then waits for the test's go.
            build_command: Some(format!(
                r#"["sh", "-c", "echo started > '{p}/started'; read go < '{p}/go'; mkdir -p dist && cp -R app/. dist/"]"#
            )),
            ..Setup::default()
        },
    );
    let clock = TestClock::new(at("2026-11-20T12:00:00Z"));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let apps = [&env];
    let daemon = run_with(&apps, &clock, 4, Duration::from_secs(60), None, async {
        let _ = stop_rx.await;
    });
    let driver = async {
        let first = clock.next_wake(2).await;
        assert_eq!(first, at("2026-11-20T18:00:00Z"));
        bin.repo.commit(&[("app/index.html", b"new\n")], "change");
        clock.wake(first);
        let started = probe.path().join("started");
        let said = tokio::task::spawn_blocking(move || std::fs::read_to_string(started).unwrap())
            .await
            .unwrap();
        assert_eq!(said, "started\n");
        // The build takes three days and a half hour: the 10:00 ticks of
        // Saturday, Sunday and Monday fall while it runs.
        clock.set(at("2026-11-23T18:30:00Z"));
        let go = probe.path().join("go");
        tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
            .await
            .unwrap();
        let next = clock.next_wake(2).await;
        stop_tx.send(()).unwrap();
        next
    };
    let (outcome, next) = tokio::join!(daemon, driver);
    assert!(matches!(outcome.unwrap(), Outcome::Success));
    assert_eq!(next, at("2026-11-24T18:00:00Z"), "Tuesday's tick is next");
    assert_eq!(
        clock.asked("beta"),
        ["2026-11-20 18:00 UTC", "2026-11-24 18:00 UTC"],
        "the skipped ticks were not waited for"
    );
    assert_eq!(pushed(&sb, seed::PUSH_BETA), ["2026-11-20 18:00 UTC"]);
}
