//! Prometheus metrics at `/metrics` of `pushgate run --http ADDR`
//! (`--metrics ADDR` is its alias): prometheus-client, mounted with axum
//! on the one listener the daemon serves the on-call page on, in the
//! daemon's own task tree (no background task outlives it).
//!
//! What every process records in the state directory — finished pushes and
//! rollbacks (`history.jsonl`), held runs (`holds.jsonl`), the deployed
//! release, the cluster lock — is read at scrape time, incrementally (each
//! log from where the last scrape stopped), so pushes by cron or by hand
//! count as much as the daemon's own, and a restart loses nothing. What
//! only a process can see — stage timings and bytes, Asana requests — is
//! this daemon's own. The metric names and labels are in
//! `docs/operations.md`; the Grafana dashboard in `docs/grafana-dashboard.json`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::adapters::asana::Client;
use crate::adapters::state::{HistoryRecord, StateDir};
use crate::config::Config;
use crate::domain::model::{AppName, ClusterName, RunKind, RunOutcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    app: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    app: String,
    cluster: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    app: String,
    cluster: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployedLabels {
    app: String,
    cluster: String,
    commit: String,
    release: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn push_buckets() -> Histogram {
    // 1 s … 2.3 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn stage_buckets() -> Histogram {
    // 0.25 s … 68 min.
    Histogram::new(exponential_buckets(0.25, 2.0, 15))
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    pushes: Family<OutcomeLabels, Counter>,
    rollbacks: Family<OutcomeLabels, Counter>,
    push_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    stage_duration: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    stage_bytes: Family<ClusterLabels, Counter>,
    stage_host_failures: Family<ClusterLabels, Counter>,
    waves: Family<OutcomeLabels, Counter>,
    health_check_failures: Family<ClusterLabels, Counter>,
    wave_check_failures: Family<ClusterLabels, Counter>,
    auto_rollbacks: Family<ClusterLabels, Counter>,
    holds: Family<ReasonLabels, Counter>,
    last_success: Family<ClusterLabels, FloatGauge>,
    last_decision: Family<ClusterLabels, FloatGauge>,
    in_progress: Family<ClusterLabels, Gauge>,
    deployed: Family<DeployedLabels, Gauge>,
    /// Every app's clusters and the app's state directory.
    clusters: Vec<(AppName, ClusterName, StateDir)>,
    /// What earlier scrapes read; its lock also serializes scrapes.
    scraped: Mutex<Scraped>,
}

#[derive(Default)]
struct Scraped {
    /// Where each log was read up to: path → byte offset.
    read_up_to: HashMap<PathBuf, u64>,
    /// The deployed series last set, per cluster.
    deployed: HashMap<String, DeployedLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("clusters", &self.clusters)
            .finish()
    }
}

/// Asana request counters, read from the client at scrape time.
struct AsanaCollector(Client);

impl std::fmt::Debug for AsanaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsanaCollector")
    }
}

impl Collector for AsanaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (name, help, value) in [
            (
                "pushgate_asana_requests",
                "HTTP requests sent to Asana (every attempt, retries included)",
                stats.requests.load(Ordering::Relaxed),
            ),
            (
                "pushgate_asana_errors",
                "Asana requests that failed (any status >= 400 or a transport error)",
                stats.errors.load(Ordering::Relaxed),
            ),
            (
                "pushgate_asana_rate_limited",
                "Asana requests answered 429 Too Many Requests",
                stats.rate_limited.load(Ordering::Relaxed),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(m)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Every family registered, with a zero series per cluster (and per
    /// outcome or reason), so dashboards and `increase()` see them before
    /// the first event.
    pub fn new(apps: &[&Config], client: &Client) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            pushes: Family::default(),
            rollbacks: Family::default(),
            push_duration: Family::new_with_constructor(push_buckets),
            stage_duration: Family::new_with_constructor(stage_buckets),
            stage_bytes: Family::default(),
            stage_host_failures: Family::default(),
            waves: Family::default(),
            health_check_failures: Family::default(),
            wave_check_failures: Family::default(),
            auto_rollbacks: Family::default(),
            holds: Family::default(),
            last_success: Family::default(),
            last_decision: Family::default(),
            in_progress: Family::default(),
            deployed: Family::default(),
            clusters: apps
                .iter()
                .flat_map(|a| {
                    a.clusters
                        .keys()
                        .map(|c| (a.app.clone(), c.clone(), StateDir::new(&a.state_dir)))
                })
                .collect(),
            scraped: Mutex::new(Scraped::default()),
            registry: Registry::default(),
        };
        registry.register(
            "pushgate_pushes",
            "Finished pushes, by app, cluster and outcome (success, failed, rolled-back)",
            m.pushes.clone(),
        );
        registry.register(
            "pushgate_push_duration_seconds",
            "Duration of finished pushes, from the push's start to its end",
            m.push_duration.clone(),
        );
        registry.register(
            "pushgate_rollbacks",
            "Finished rollbacks, by cluster and outcome",
            m.rollbacks.clone(),
        );
        registry.register(
            "pushgate_holds",
            "Held runs, by cluster and reason (locked, frozen, soaking, build-failed, running, unknown)",
            m.holds.clone(),
        );
        registry.register(
            "pushgate_stage_duration_seconds",
            "Duration of the stage step (rsync to every host) of this daemon's pushes",
            m.stage_duration.clone(),
        );
        registry.register(
            "pushgate_stage_bytes_sent",
            "Bytes rsync sent to hosts in this daemon's pushes",
            m.stage_bytes.clone(),
        );
        registry.register(
            "pushgate_stage_host_failures",
            "Hosts that failed to stage in this daemon's pushes (after retries)",
            m.stage_host_failures.clone(),
        );
        registry.register(
            "pushgate_waves",
            "Waves of this daemon's pushes that ended, by cluster and outcome (passed, failed)",
            m.waves.clone(),
        );
        registry.register(
            "pushgate_health_check_failures",
            "Hosts that failed their health check after a switch, in this daemon's pushes",
            m.health_check_failures.clone(),
        );
        registry.register(
            "pushgate_wave_check_failures",
            "Wave checks that failed, in this daemon's pushes",
            m.wave_check_failures.clone(),
        );
        registry.register(
            "pushgate_auto_rollbacks",
            "Pushes rolled back automatically after a failed check (any process)",
            m.auto_rollbacks.clone(),
        );
        registry.register(
            "pushgate_last_success_timestamp_seconds",
            "When the cluster's last successful push finished (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "pushgate_last_decision_timestamp_seconds",
            "When this daemon last decided a run of the cluster (pushed, held or nothing new)",
            m.last_decision.clone(),
        );
        registry.register(
            "pushgate_push_in_progress",
            "1 while a push or rollback of the cluster runs (any process), else 0",
            m.in_progress.clone(),
        );
        registry.register(
            "pushgate_deployed_info",
            "The commit and release each cluster runs, as labels (value 1)",
            m.deployed.clone(),
        );
        registry.register_collector(Box::new(AsanaCollector(client.clone())));
        for (a, c, _) in &m.clusters {
            let (app, cluster) = (a.to_string(), c.to_string());
            for outcome in RunOutcome::ALL.map(RunOutcome::as_str) {
                let l = OutcomeLabels {
                    app: app.clone(),
                    cluster: cluster.clone(),
                    outcome: outcome.into(),
                };
                let _ = m.pushes.get_or_create(&l);
                let _ = m.push_duration.get_or_create(&l);
                let _ = m.rollbacks.get_or_create(&l);
            }
            for reason in crate::domain::plan::HOLD_REASONS {
                let _ = m.holds.get_or_create(&ReasonLabels {
                    app: app.clone(),
                    cluster: cluster.clone(),
                    reason: (*reason).into(),
                });
            }
            for outcome in ["passed", "failed"] {
                let _ = m.waves.get_or_create(&OutcomeLabels {
                    app: app.clone(),
                    cluster: cluster.clone(),
                    outcome: outcome.into(),
                });
            }
            let l = ClusterLabels { app, cluster };
            let _ = m.health_check_failures.get_or_create(&l);
            let _ = m.wave_check_failures.get_or_create(&l);
            let _ = m.auto_rollbacks.get_or_create(&l);
            let _ = m.stage_bytes.get_or_create(&l);
            let _ = m.stage_duration.get_or_create(&l);
            let _ = m.stage_host_failures.get_or_create(&l);
            let _ = m.in_progress.get_or_create(&l);
        }
        Metrics { registry, ..m }
    }

    /// A stage of `cluster` ended: its duration, bytes sent, failed hosts.
    pub fn staged(
        &self,
        app: &AppName,
        cluster: &ClusterName,
        took: Duration,
        bytes: u64,
        failed: u64,
    ) {
        let l = ClusterLabels {
            app: app.to_string(),
            cluster: cluster.to_string(),
        };
        self.stage_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        self.stage_bytes.get_or_create(&l).inc_by(bytes);
        self.stage_host_failures.get_or_create(&l).inc_by(failed);
    }

    /// A wave of a push of `cluster` ended.
    pub fn wave(&self, app: &AppName, cluster: &ClusterName, passed: bool) {
        self.waves
            .get_or_create(&OutcomeLabels {
                app: app.to_string(),
                cluster: cluster.to_string(),
                outcome: if passed { "passed" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Checks of a wave of `cluster` failed.
    pub fn checks_failed(
        &self,
        app: &AppName,
        cluster: &ClusterName,
        unhealthy: usize,
        wave_check: bool,
    ) {
        let l = ClusterLabels {
            app: app.to_string(),
            cluster: cluster.to_string(),
        };
        self.health_check_failures
            .get_or_create(&l)
            .inc_by(unhealthy as u64);
        if wave_check {
            self.wave_check_failures.get_or_create(&l).inc();
        }
    }

    /// The daemon decided a run of `cluster` at `now`.
    pub fn decided(
        &self,
        app: &AppName,
        cluster: &ClusterName,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        self.last_decision
            .get_or_create(&ClusterLabels {
                app: app.to_string(),
                cluster: cluster.to_string(),
            })
            .set(now.timestamp_millis() as f64 / 1000.0);
    }

    /// The exposition (Prometheus text format 0.0.4), after reading what
    /// the state directory gained since the last scrape.
    pub fn render(&self) -> String {
        let mut scraped = self.scraped.lock().unwrap_or_else(|e| e.into_inner());
        for (a, c, state) in &self.clusters {
            self.sync_cluster(a, c, state, &mut scraped);
        }
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }

    fn sync_cluster(&self, a: &AppName, c: &ClusterName, state: &StateDir, scraped: &mut Scraped) {
        let read_up_to = &mut scraped.read_up_to;
        let (app, cluster) = (a.to_string(), c.to_string());
        let files = state.cluster(c);
        for r in new_lines::<HistoryRecord>(&files.history_path(), read_up_to) {
            let l = OutcomeLabels {
                app: app.clone(),
                cluster: cluster.clone(),
                outcome: r.outcome.as_str().to_owned(),
            };
            match r.kind {
                RunKind::Rollback => {
                    self.rollbacks.get_or_create(&l).inc();
                }
                RunKind::Push => {
                    self.pushes.get_or_create(&l).inc();
                    if r.outcome == RunOutcome::RolledBack {
                        self.auto_rollbacks
                            .get_or_create(&ClusterLabels {
                                app: app.clone(),
                                cluster: cluster.clone(),
                            })
                            .inc();
                    }
                    let took = (r.finished - r.started).to_std().unwrap_or_default();
                    self.push_duration
                        .get_or_create(&l)
                        .observe(took.as_secs_f64());
                    if r.outcome == RunOutcome::Success {
                        let g = self.last_success.get_or_create(&ClusterLabels {
                            app: app.clone(),
                            cluster: cluster.clone(),
                        });
                        let t = r.finished.timestamp_millis() as f64 / 1000.0;
                        if t > g.get() {
                            g.set(t);
                        }
                    }
                }
            }
        }
        for h in new_lines::<crate::watch::holds::HoldRecord>(&files.holds_path(), read_up_to) {
            self.holds
                .get_or_create(&ReasonLabels {
                    app: app.clone(),
                    cluster: cluster.clone(),
                    reason: h.reason,
                })
                .inc();
        }
        let running = files.running().is_some();
        self.in_progress
            .get_or_create(&ClusterLabels {
                app: app.clone(),
                cluster: cluster.clone(),
            })
            .set(running as i64);
        // One series per cluster: the old one goes when the release changes.
        let current = files.deployed().ok().flatten().map(|d| DeployedLabels {
            app: app.clone(),
            cluster: cluster.clone(),
            commit: d.commit,
            release: d.release,
        });
        let key = format!("{app}/{cluster}");
        let previous = match &current {
            Some(l) => scraped.deployed.insert(key, l.clone()),
            None => scraped.deployed.remove(&key),
        };
        if let Some(p) = previous.filter(|p| Some(p) != current.as_ref()) {
            self.deployed.remove(&p);
        }
        if let Some(l) = current {
            self.deployed.get_or_create(&l).set(1);
        }
    }
}

/// Complete lines appended to `path` since the last call, parsed; a line
/// that does not parse is skipped. A file that shrank (trimmed) is read on
/// from its new end.
fn new_lines<T: for<'de> serde::Deserialize<'de>>(
    path: &std::path::Path,
    read_up_to: &mut HashMap<PathBuf, u64>,
) -> Vec<T> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = read_up_to.entry(path.to_owned()).or_insert(0);
    if len < *from {
        *from = len;
        return Vec::new();
    }
    if len == *from || f.seek(SeekFrom::Start(*from)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if f.take(len - *from).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    // Only whole lines: a line being written is read next time.
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    *from += end as u64 + 1;
    bytes[..end]
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// `GET /metrics`, as a router the daemon's one listener serves beside
/// the on-call page.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                // File reads: off the async threads, and awaited.
                let body = tokio::task::spawn_blocking(move || m.render())
                    .await
                    .unwrap_or_default();
                (
                    [(
                        CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    body,
                )
            }
        }),
    )
}
