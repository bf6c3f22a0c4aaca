//! `pushgate history CLUSTER [--limit N] [--since WHEN]`: past pushes and
//! rollbacks from the state directory — outcome, commit, duration, push
//! task — and statistics over the same window: success rate, median and
//! p90 duration, pushes a day, held runs by reason (from the holds log).
//! No network, no token. The on-call page's cluster view and
//! `/api/history.json` are made of the same reads, statistics and JSON
//! ([`read`], [`stats`], [`json`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use super::{Outcome, UsageError};
use crate::adapters::state::HistoryRecord;
use crate::adapters::state::StateDir;
use crate::config::{Config, ConfigFile};
use crate::domain::model::{RunKind, RunOutcome};
use crate::domain::text::{count, printable};
use crate::watch::holds::HoldRecord;

/// What the runs and holds of a window say.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// The window's start: `--since`, else the first record.
    pub from: Option<DateTime<Utc>>,
    /// The window's length in days, at least one (per-day rates divide by it).
    pub days: f64,
    /// The window's real length in days.
    pub span: f64,
    pub pushes: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub rollbacks: usize,
    /// Succeeded pushes over pushes (rollbacks apart).
    pub success_rate: Option<f64>,
    /// Of the successful pushes.
    pub median: Option<Duration>,
    pub p90: Option<Duration>,
    pub pushes_per_day: f64,
    /// Held runs by reason.
    pub holds: BTreeMap<String, usize>,
}

/// How long a run took.
pub fn duration(r: &HistoryRecord) -> Duration {
    (r.finished - r.started).to_std().unwrap_or_default()
}

/// The nearest-rank percentile `p` (0..=100) of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn median(sorted: &[Duration]) -> Option<Duration> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// Pure: the statistics of the runs and holds since `since` (all of them
/// when `None`) as of `now`. Runs count by their start.
pub fn stats(
    runs: &[HistoryRecord],
    holds: &[HoldRecord],
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Stats {
    let in_window = |t: DateTime<Utc>| since.is_none_or(|s| t >= s);
    let runs: Vec<&HistoryRecord> = runs.iter().filter(|r| in_window(r.started)).collect();
    let holds: Vec<&HoldRecord> = holds.iter().filter(|h| in_window(h.at)).collect();
    let pushes: Vec<&&HistoryRecord> = runs.iter().filter(|r| r.kind == RunKind::Push).collect();
    let ok: Vec<&&&HistoryRecord> = pushes
        .iter()
        .filter(|r| r.outcome == RunOutcome::Success)
        .collect();
    let mut d: Vec<Duration> = ok.iter().map(|r| duration(r)).collect();
    d.sort();
    let from = since.or_else(|| {
        let first_run = runs.iter().map(|r| r.started).min();
        let first_hold = holds.iter().map(|h| h.at).min();
        first_run.into_iter().chain(first_hold).min()
    });
    let span = from
        .map(|f| (now - f).num_seconds() as f64 / 86_400.0)
        .unwrap_or(0.0);
    let days = span.max(1.0);
    let mut by_reason = BTreeMap::new();
    for h in &holds {
        *by_reason.entry(h.reason.clone()).or_insert(0) += 1;
    }
    Stats {
        from,
        days,
        span,
        pushes: pushes.len(),
        succeeded: ok.len(),
        failed: pushes.len() - ok.len(),
        rollbacks: runs.len() - pushes.len(),
        success_rate: (!pushes.is_empty()).then(|| ok.len() as f64 / pushes.len() as f64),
        median: median(&d),
        p90: percentile(&d, 90),
        pushes_per_day: pushes.len() as f64 / days,
        holds: by_reason,
    }
}

/// `--since`: a duration back from `now` ("7d", "24h 30m"), a date
/// ("2026-11-20", midnight UTC) or an RFC 3339 time.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, UsageError> {
    if let Ok(d) = humantime::parse_duration(s) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| UsageError(format!("--since: `{}` is too long ago", printable(s, 40))));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    Err(UsageError(format!(
        "--since: `{}` is neither a duration (7d, 24h) nor a date (2026-11-20)",
        printable(s, 40)
    )))
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// `pushgate history CLUSTER`: `--app`'s, or that of every app that has
/// the cluster, one after the other (`--json`: one object, or with several
/// apps an array of them, each naming its app). Reads only the state
/// directory: no token, no network.
pub fn run(
    file: &ConfigFile,
    app: Option<&str>,
    cluster: &str,
    limit: usize,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    if json {
        super::print_json(&self::json(file, app, cluster, limit, since, now)?);
        return Ok(Outcome::Success);
    }
    let apps = apps_of(file, app, cluster)?;
    let since = since.map(|s| parse_since(s, now)).transpose()?;
    if apps.len() == 1 && !file.has_apps {
        return one(apps[0], cluster, limit, since, now, false, false);
    }
    for (i, a) in apps.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{} {cluster}:", a.app);
        one(a, cluster, limit, since, now, false, true)?;
    }
    Ok(Outcome::Success)
}

/// The apps `history CLUSTER [--app NAME]` covers.
fn apps_of<'a>(
    file: &'a ConfigFile,
    app: Option<&str>,
    cluster: &str,
) -> Result<Vec<&'a Config>, UsageError> {
    let apps: Vec<&Config> = match app {
        Some(_) => vec![file.app(app).map_err(UsageError)?],
        None if !file.has_apps => file.apps.values().collect(),
        None => file
            .apps
            .values()
            .filter(|a| a.cluster(cluster).is_some())
            .collect(),
    };
    if apps.is_empty() {
        return Err(UsageError(format!(
            "no app has a cluster `{}`",
            printable(cluster, 40)
        )));
    }
    Ok(apps)
}

/// What `history CLUSTER [--app NAME] [--limit N] [--since WHEN] --json`
/// prints, as of `now`: one object for a config without apps, else an
/// array of them, each naming its app.
pub fn json(
    file: &ConfigFile,
    app: Option<&str>,
    cluster: &str,
    limit: usize,
    since: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<Value> {
    let apps = apps_of(file, app, cluster)?;
    let since = since.map(|s| parse_since(s, now)).transpose()?;
    if apps.len() == 1 && !file.has_apps {
        let (all, holds) = read(apps[0], cluster, since)?;
        return Ok(report_json(cluster, &all, &holds, limit, since, now));
    }
    let mut docs = Vec::new();
    for a in apps {
        docs.push(report(a, cluster, limit, since, now)?);
    }
    Ok(Value::Array(docs))
}

/// One app's history of `cluster` as `--json` shows it.
fn report(
    config: &Config,
    cluster: &str,
    limit: usize,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> anyhow::Result<Value> {
    let (all, holds) = read(config, cluster, since)?;
    let mut v = report_json(cluster, &all, &holds, limit, since, now);
    v["app"] = json!(config.app.as_str());
    Ok(v)
}

/// The cluster's runs and holds, since `since`.
pub fn read(
    config: &Config,
    cluster: &str,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<(Vec<HistoryRecord>, Vec<HoldRecord>)> {
    let settings = config
        .cluster(cluster)
        .ok_or_else(|| UsageError(format!("unknown cluster `{}`", printable(cluster, 40))))?;
    let state = StateDir::new(&config.state_dir);
    let all: Vec<HistoryRecord> = state
        .cluster(&settings.name)
        .history()?
        .into_iter()
        .filter(|r| since.is_none_or(|s| r.started >= s))
        .collect();
    let holds = crate::watch::holds::read(&state, &settings.name).unwrap_or_default();
    Ok((all, holds))
}

fn report_json(
    cluster: &str,
    all: &[HistoryRecord],
    holds: &[HoldRecord],
    limit: usize,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let shown = &all[all.len().saturating_sub(limit)..];
    let st = stats(all, holds, since, now);
    json!({
            "cluster": cluster,
            "since": since,
            "runs": shown.iter().map(|r| json!({
                "run_id": r.run_id,
                "kind": r.kind.as_str(),
                "outcome": r.outcome.as_str(),
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
            "success_rate": st.success_rate,
            "median_duration_ms": st.median.map(|d| d.as_millis() as u64),
            "stats": {
                "from": st.from,
                "days": st.days,
                "pushes": st.pushes,
                "succeeded": st.succeeded,
                "failed": st.failed,
                "rollbacks": st.rollbacks,
                "success_rate": st.success_rate,
                "median_duration_ms": st.median.map(|d| d.as_millis() as u64),
                "p90_duration_ms": st.p90.map(|d| d.as_millis() as u64),
                "pushes_per_day": st.pushes_per_day,
                "holds": st.holds,
            },
    })
}

/// One app's history of `cluster`, printed.
#[allow(clippy::too_many_arguments)]
fn one(
    config: &Config,
    cluster: &str,
    limit: usize,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    json: bool,
    _named: bool,
) -> anyhow::Result<Outcome> {
    let (all, holds) = read(config, cluster, since)?;
    let shown = &all[all.len().saturating_sub(limit)..];
    let st = stats(&all, &holds, since, now);
    if json {
        super::print_json(&report_json(cluster, &all, &holds, limit, since, now));
        return Ok(Outcome::Success);
    }
    if all.is_empty() && st.holds.is_empty() {
        match since {
            Some(s) => println!(
                "{cluster}: no pushes or holds recorded since {}",
                s.format("%Y-%m-%d %H:%M UTC")
            ),
            None => println!("{cluster}: no pushes recorded yet"),
        }
        return Ok(Outcome::Success);
    }
    if !shown.is_empty() {
        println!("{}", table_head());
    }
    for r in shown {
        println!("{}", table_row(r));
    }
    if !shown.is_empty() {
        println!();
    }
    print!("{}", summary_text(&st));
    Ok(Outcome::Success)
}

/// The run table's head line; [`table_row`] lines up under it (the
/// outcome column holds `rolled-back`, the widest word).
fn table_head() -> String {
    format!(
        "{:<20} {:<8} {:<11} {:<8} {:>8}  push task / error",
        "started (UTC)", "kind", "outcome", "commit", "duration"
    )
}

fn table_row(r: &HistoryRecord) -> String {
    let short: String = r.commit.chars().take(7).collect();
    let tail = match (&r.failed_step, &r.error) {
        (Some(step), Some(e)) => format!("failed at {step}: {}", printable(e, 120)),
        _ => r.push_task_link.clone().unwrap_or_default(),
    };
    format!(
        "{:<20} {:<8} {:<11} {:<8} {:>7.1}s  {tail}",
        r.started.format("%Y-%m-%d %H:%M:%S"),
        r.kind,
        r.outcome,
        short,
        duration(r).as_secs_f64(),
    )
}

/// The statistics as `history` prints them.
pub fn summary_text(st: &Stats) -> String {
    let mut out = String::new();
    let window = match st.from {
        Some(f) => format!(
            "since {} ({:.1} day{})",
            f.format("%Y-%m-%d %H:%M UTC"),
            st.days,
            if (st.days - 1.0).abs() < 0.05 {
                ""
            } else {
                "s"
            }
        ),
        None => "so far".to_owned(),
    };
    let rate = st
        .success_rate
        .map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
    out.push_str(&format!(
        "{window}: {}, {} succeeded ({rate}), {} failed; {}\n",
        count(st.pushes, "push"),
        st.succeeded,
        st.failed,
        count(st.rollbacks, "rollback"),
    ));
    out.push_str(&format!(
        "successful push duration: median {}, p90 {}\n",
        secs(st.median),
        secs(st.p90)
    ));
    let held: usize = st.holds.values().sum();
    let reasons: Vec<String> = st.holds.iter().map(|(r, n)| format!("{r} {n}")).collect();
    out.push_str(&format!(
        "{:.1} pushes a day; {}{}\n",
        st.pushes_per_day,
        count(held, "held run"),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-16T10:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(h)
    }

    fn run(kind: &str, outcome: &str, start_h: i64, secs: i64) -> HistoryRecord {
        HistoryRecord {
            run_id: format!("beta-{start_h}"),
            kind: RunKind::parse(kind).unwrap(),
            outcome: RunOutcome::parse(outcome).unwrap(),
            commit: "a".repeat(40),
            previous: None,
            release: None,
            started: at(start_h),
            finished: at(start_h) + chrono::Duration::seconds(secs),
            push_task_link: None,
            failed_step: None,
            error: None,
        }
    }

    fn hold(h: i64, reason: &str) -> HoldRecord {
        HoldRecord {
            at: at(h),
            reason: reason.into(),
            locks: Vec::new(),
            until: None,
        }
    }

    #[test]
    fn every_outcome_lines_up_under_the_table_head() {
        let head = table_head();
        let at = head.find("commit").unwrap();
        for outcome in ["success", "failed", "rolled-back"] {
            let row = table_row(&run("push", outcome, 0, 61));
            assert_eq!(&row[at..at + 8], "aaaaaaa ", "{outcome}:\n{head}\n{row}");
            assert!(row.contains(outcome), "{row}");
        }
    }

    #[test]
    fn a_week_of_pushes_and_holds_gives_rates_percentiles_and_reasons() {
        let mut runs: Vec<HistoryRecord> = (0..10)
            .map(|i| run("push", "success", i * 12, 30 + i * 10))
            .collect();
        runs.push(run("push", "failed", 130, 5));
        runs.push(run("rollback", "success", 131, 2));
        runs.push(run("push", "success", -48, 1000)); // before the window
        let holds = vec![
            hold(-1, "locked"),
            hold(20, "locked"),
            hold(21, "locked"),
            hold(40, "frozen"),
            hold(41, "unknown"),
        ];
        let st = stats(&runs, &holds, Some(at(0)), at(24 * 7));
        expect![[r#"
            since 2026-11-16 10:00 UTC (7.0 days): 11 pushes, 10 succeeded (91%), 1 failed; 1 rollback
            successful push duration: median 75.0s, p90 110.0s
            1.6 pushes a day; 4 held runs: frozen 1, locked 2, unknown 1
        "#]]
        .assert_eq(&summary_text(&st));
    }

    #[test]
    fn without_a_window_it_starts_at_the_first_record_and_counts_at_least_a_day() {
        let runs = vec![run("push", "success", 0, 40), run("push", "success", 1, 60)];
        let st = stats(&runs, &[hold(2, "locked")], None, at(3));
        assert_eq!(st.from, Some(at(0)));
        assert_eq!(st.days, 1.0);
        assert_eq!(st.pushes_per_day, 2.0);
        assert_eq!(st.median, Some(Duration::from_secs(50)));
        assert_eq!(st.p90, Some(Duration::from_secs(60)));
        let empty = stats(&[], &[], None, at(0));
        assert_eq!(
            (empty.success_rate, empty.median, empty.from),
            (None, None, None)
        );
    }

    #[test]
    fn since_takes_a_duration_a_date_or_a_time() {
        let now = at(0);
        assert_eq!(parse_since("7d", now).unwrap(), at(-24 * 7));
        assert_eq!(parse_since("36h", now).unwrap(), at(-36));
        assert_eq!(parse_since("2026-11-16", now).unwrap(), at(-10));
        assert_eq!(parse_since("2026-11-16T10:00:00Z", now).unwrap(), now);
        assert!(parse_since("last tuesday", now).is_err());
    }
}
