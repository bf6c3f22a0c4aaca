//! `pushgate run`: every cluster's schedule in one process, and a graceful
//! stop. With `decide::next_fire` this is the only code that waits on the
//! clock.
//!
//! Each cluster has one loop: wait for the next time its cron fires in its
//! own time zone, push, repeat. A tick that falls while that cluster's push
//! still runs is skipped and logged, never queued. The next fire time is
//! computed afresh after every push from croner and chrono-tz, so a daemon
//! that runs through a DST change keeps firing at the configured wall-clock
//! times. (tokio-cron-scheduler 0.15, which SPEC §3 names, turns the time
//! zone into the UTC offset of the moment the job is created, so it fires an
//! hour off after a DST change; pushgate keeps the same cron dialect, parsed
//! the same way, without that scheduler. See docs/operations.md.)
//!
//! With `--metrics ADDR` it also serves Prometheus metrics (`metrics.rs`),
//! joined with the schedules: the endpoint answers until the last push has
//! stopped, then closes.
//!
//! On SIGINT/SIGTERM: no new push starts; a running push stops at its next
//! safe point (before stage or switch; a stage in flight finishes its host
//! operations) within `grace`; past `grace` the push is dropped, which kills
//! its children — `current` is only ever replaced by an atomic rename, so no
//! host points at a partial release, and the next run records the
//! interrupted one from its journal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::cmd::push::{push_at, PushRequest};
use crate::cmd::{Env, Outcome};
use crate::config::ClusterSettings;
use crate::domain::decide::next_fire;
use crate::domain::plan::Verdict;
use crate::watch::metrics::Metrics;

/// Every fire time of every cluster in `[from, to)`, in order (pure: for
/// tests and for `status`).
pub fn ticks(
    clusters: &[&ClusterSettings],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, crate::domain::model::ClusterName)> {
    let mut out = Vec::new();
    for c in clusters {
        let mut t = from - chrono::Duration::seconds(1);
        while let Some(next) = next_fire(&c.schedule.cron, c.timezone, t) {
            if next >= to {
                break;
            }
            out.push((next, c.name.clone()));
            t = next;
        }
    }
    out.sort();
    out
}

/// Runs every cluster's schedule until a signal, then stops gracefully.
/// With `metrics`, serves Prometheus metrics there until the last push
/// has stopped.
pub async fn run(
    env: &Env,
    grace: Duration,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<Outcome> {
    let server = match metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
            let bound = listener.local_addr()?;
            let m = Arc::new(Metrics::new(&env.config, &env.client));
            env.observer.set_metrics(m.clone());
            if !bound.ip().is_loopback() {
                tracing::info!(%bound, "the metrics endpoint is reachable from the network (no authentication; it holds no secrets)");
            }
            tracing::info!(url = %format!("http://{bound}/metrics"), "serving metrics");
            Some((listener, m))
        }
        None => None,
    };
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let serve = async move {
        let Some((listener, m)) = server else {
            return;
        };
        let mut done = done_rx;
        let stopped = async move {
            let _ = done.wait_for(|d| *d).await;
        };
        if let Err(e) = crate::watch::metrics::serve(listener, m, stopped).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    };
    let schedules = async move {
        let r = schedules(env, grace).await;
        let _ = done_tx.send(true);
        r
    };
    let (outcome, ()) = tokio::join!(schedules, serve);
    outcome
}

async fn schedules(env: &Env, grace: Duration) -> anyhow::Result<Outcome> {
    let stop = AtomicBool::new(false);
    let stopped = tokio::sync::Notify::new();
    let clusters: Vec<&ClusterSettings> = env.config.clusters.values().collect();
    for c in &clusters {
        if let Some(next) = next_fire(&c.schedule.cron, c.timezone, Utc::now()) {
            tracing::info!(
                cluster = %c.name,
                schedule = %c.schedule.expr,
                timezone = %c.timezone.name(),
                next = %next.with_timezone(&c.timezone).format("%Y-%m-%d %H:%M:%S %Z"),
                "scheduled"
            );
        }
    }
    let loops = join_all(
        clusters
            .iter()
            .map(|c| cluster_loop(env, c, &stop, &stopped)),
    );
    tokio::pin!(loops);
    tokio::select! {
        _ = &mut loops => return Ok(Outcome::Success),
        _ = crate::cmd::shutdown_signal() => {}
    }
    tracing::info!(grace = %humantime::format_duration(grace), "stopping: no new push starts; a running push stops at its next safe point");
    stop.store(true, Ordering::SeqCst);
    stopped.notify_waiters();
    match tokio::time::timeout(grace, &mut loops).await {
        Ok(_) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            "a push did not reach a safe point within the grace period; stopping it (no host's current changes; the next run records it)"
        ),
    }
    Ok(Outcome::Success)
}

async fn cluster_loop(
    env: &Env,
    c: &ClusterSettings,
    stop: &AtomicBool,
    stopped: &tokio::sync::Notify,
) {
    loop {
        let now = Utc::now();
        let Some(next) = next_fire(&c.schedule.cron, c.timezone, now) else {
            tracing::warn!(cluster = %c.name, "the schedule never fires again");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        let notified = stopped.notified();
        tokio::pin!(notified);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut notified => return,
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let started = Utc::now();
        let result = push_at(
            env,
            PushRequest {
                stop: Some(stop),
                ..PushRequest::scheduled(c.name.as_str(), started)
            },
        )
        .await;
        match &result {
            Ok(p) => match (&p.plan.verdict, p.outcome()) {
                (_, Outcome::Failure) => {
                    tracing::error!(cluster = %c.name, "push failed; the schedule goes on")
                }
                (Verdict::Push { to, .. }, _) => {
                    tracing::info!(cluster = %c.name, commit = %to.short(), "pushed")
                }
                _ => {}
            },
            Err(e) => {
                tracing::error!(cluster = %c.name, error = %format!("{e:#}"), "push failed; the schedule goes on")
            }
        }
        let skipped = ticks(&[c], next + chrono::Duration::seconds(1), Utc::now()).len();
        if skipped > 0 {
            tracing::warn!(cluster = %c.name, skipped, "ticks fell while the push ran; skipped, not queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
