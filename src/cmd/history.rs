//! `pushgate history CLUSTER [--limit N]`: past pushes and rollbacks from
//! the state directory — outcome, commit, duration, push task — with the
//! success rate and median duration. No network.

use std::time::Duration;

use serde_json::json;

use super::{Outcome, UsageError};
use crate::config::Config;
use crate::plan::printable;
use crate::state::HistoryRecord;
use crate::state::StateDir;

/// Success rate (0..=1) and median duration of the successful runs.
pub fn summary(records: &[HistoryRecord]) -> (Option<f64>, Option<Duration>) {
    if records.is_empty() {
        return (None, None);
    }
    let ok: Vec<&HistoryRecord> = records.iter().filter(|r| r.outcome == "success").collect();
    let rate = ok.len() as f64 / records.len() as f64;
    let mut d: Vec<Duration> = ok.iter().map(|r| duration(r)).collect();
    d.sort();
    let median = match d.len() {
        0 => None,
        n if n % 2 == 1 => Some(d[n / 2]),
        n => Some((d[n / 2 - 1] + d[n / 2]) / 2),
    };
    (Some(rate), median)
}

fn duration(r: &HistoryRecord) -> Duration {
    (r.finished - r.started).to_std().unwrap_or_default()
}

/// Reads only the state directory: no token, no network.
pub fn run(config: &Config, cluster: &str, limit: usize, json: bool) -> anyhow::Result<Outcome> {
    let settings = config
        .cluster(cluster)
        .ok_or_else(|| UsageError(format!("unknown cluster `{}`", printable(cluster, 40))))?;
    let all = StateDir::new(&config.state_dir).history(&settings.name)?;
    let shown = &all[all.len().saturating_sub(limit)..];
    let (rate, median) = summary(&all);
    if json {
        super::print_json(&json!({
            "cluster": cluster,
            "runs": shown.iter().map(|r| json!({
                "run_id": r.run_id,
                "kind": r.kind,
                "outcome": r.outcome,
                "commit": r.commit,
                "previous": r.previous,
                "release": r.release,
                "started": r.started,
                "finished": r.finished,
                "duration_ms": duration(r).as_millis() as u64,
                "push_task": r.push_task_link,
                "failed_step": r.failed_step,
                "error": r.error,
            })).collect::<Vec<_>>(),
            "total": all.len(),
            "success_rate": rate,
            "median_duration_ms": median.map(|d| d.as_millis() as u64),
        }));
        return Ok(Outcome::Success);
    }
    if all.is_empty() {
        println!("{cluster}: no pushes recorded yet");
        return Ok(Outcome::Success);
    }
    println!(
        "{:<20} {:<8} {:<7} {:<8} {:>8}  push task / error",
        "started (UTC)", "kind", "outcome", "commit", "duration"
    );
    for r in shown {
        let short: String = r.commit.chars().take(7).collect();
        let tail = match (&r.failed_step, &r.error) {
            (Some(step), Some(e)) => format!("failed at {step}: {}", printable(e, 120)),
            _ => r.push_task_link.clone().unwrap_or_default(),
        };
        println!(
            "{:<20} {:<8} {:<7} {:<8} {:>7.1}s  {tail}",
            r.started.format("%Y-%m-%d %H:%M:%S"),
            r.kind,
            r.outcome,
            short,
            duration(r).as_secs_f64(),
        );
    }
    println!(
        "{} run{}: {:.0}% succeeded, median duration {}",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        rate.unwrap_or(0.0) * 100.0,
        median.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
    );
    Ok(Outcome::Success)
}
