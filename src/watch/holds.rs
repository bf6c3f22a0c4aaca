//! The holds log: a held run creates no push task (SPEC §2: a cluster locked
//! for a day must not make 96 tasks), so each one appends a small line to
//! `clusters/<name>/holds.jsonl` instead. `history` counts them by reason,
//! the metrics endpoint exposes them, every process (daemon, cron, a person)
//! writes them the same way.
//!
//! It does not decide anything, and it records no untrusted text: a lock is
//! named by its task gid only. The log is trimmed to the last
//! [`KEEP_DAYS`] days when it grows past [`TRIM_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::adapters::state::StateDir;
use crate::domain::model::ClusterName;
use crate::domain::plan::{HoldReason, Verdict};

/// Past this size the log is rewritten with only its last [`KEEP_DAYS`] days.
pub const TRIM_BYTES: u64 = 2 * 1024 * 1024;
pub const KEEP_DAYS: i64 = 90;

/// One held run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// The run's clock (read once when it started).
    pub at: DateTime<Utc>,
    /// `locked`, `frozen`, `soaking`, `build-failed`, `running` or `unknown`.
    pub reason: String,
    /// The gids of the lock tasks that held it (`locked` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// When the hold ends by itself (`frozen`, `soaking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The record of a held run, `None` if the verdict is not a hold.
pub fn record_of(verdict: &Verdict, at: DateTime<Utc>) -> Option<HoldRecord> {
    let reason = verdict.hold_reason()?.to_owned();
    let (locks, until) = match verdict {
        Verdict::Hold(HoldReason::Locked { tasks }) => (
            tasks.iter().map(|t| t.gid.as_str().to_owned()).collect(),
            None,
        ),
        Verdict::Hold(HoldReason::Frozen { until, .. }) => {
            (Vec::new(), Some(until.with_timezone(&Utc)))
        }
        Verdict::Hold(HoldReason::Soaking { until, .. }) => (Vec::new(), Some(*until)),
        _ => (Vec::new(), None),
    };
    Some(HoldRecord {
        at,
        reason,
        locks,
        until,
    })
}

pub fn path(state: &StateDir, cluster: &ClusterName) -> PathBuf {
    state.cluster(cluster).holds_path()
}

/// Appends one line (fsynced), trimming the log first if it is too big.
pub fn append(state: &StateDir, cluster: &ClusterName, r: &HoldRecord) -> std::io::Result<()> {
    let p = path(state, cluster);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(&p).is_ok_and(|m| m.len() > TRIM_BYTES) {
        trim(&p, r.at)?;
    }
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(&p)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Rewrites the log (atomically) with only the records of the last
/// [`KEEP_DAYS`] days before `now`, and at most half of [`TRIM_BYTES`] of
/// them (the newest), so that a trim always makes room.
fn trim(p: &Path, now: DateTime<Utc>) -> std::io::Result<()> {
    let keep_from = now - chrono::Duration::days(KEEP_DAYS);
    let mut lines = Vec::new();
    for r in read_path(p)?.into_iter().filter(|r| r.at >= keep_from) {
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        lines.push(line);
    }
    let mut size: usize = lines.iter().map(Vec::len).sum();
    let mut first = 0;
    while size > (TRIM_BYTES / 2) as usize && first < lines.len() {
        size -= lines[first].len();
        first += 1;
    }
    crate::adapters::state::write_atomic(p, &lines[first..].concat()).map_err(std::io::Error::other)
}

/// Every held run of the cluster still in the log, oldest first. A line
/// that does not parse (a torn write) is skipped.
pub fn read(state: &StateDir, cluster: &ClusterName) -> std::io::Result<Vec<HoldRecord>> {
    read_path(&path(state, cluster))
}

fn read_path(p: &Path) -> std::io::Result<Vec<HoldRecord>> {
    let f = match File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        if let Ok(r) = serde_json::from_slice(&line?) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn held_runs_are_appended_and_read_back_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let beta = ClusterName::parse("beta").unwrap();
        let r = HoldRecord {
            at: at("2026-11-23T10:00:00Z"),
            reason: "locked".into(),
            locks: vec!["1200000000001001".into()],
            until: None,
        };
        append(&state, &beta, &r).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(path(&state, &beta))
            .unwrap();
        f.write_all(b"{\"at\": \"2026-").unwrap();
        assert_eq!(read(&state, &beta).unwrap(), vec![r]);
    }

    #[test]
    fn a_big_log_keeps_only_its_last_90_days() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let beta = ClusterName::parse("beta").unwrap();
        let old = HoldRecord {
            at: at("2026-01-01T00:00:00Z"),
            reason: "frozen".into(),
            locks: Vec::new(),
            until: Some(at("2026-01-01T01:30:00Z")),
        };
        let p = path(&state, &beta);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let line = serde_json::to_string(&old).unwrap() + "\n";
        let n = (TRIM_BYTES as usize / line.len()) + 1;
        std::fs::write(&p, line.repeat(n)).unwrap();
        let new = HoldRecord {
            at: at("2026-11-23T10:00:00Z"),
            ..old.clone()
        };
        append(&state, &beta, &new).unwrap();
        assert_eq!(read(&state, &beta).unwrap(), vec![new.clone()]);

        // Recent records only, too many of them: the newest half is kept.
        let line = serde_json::to_string(&new).unwrap() + "\n";
        std::fs::write(&p, line.repeat(n)).unwrap();
        append(&state, &beta, &new).unwrap();
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= TRIM_BYTES / 2 + line.len() as u64, "{size}");
        assert!(read(&state, &beta).unwrap().len() > 1000);
    }
}
