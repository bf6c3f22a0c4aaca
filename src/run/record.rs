//! The one place a run's records are made: its line in `history.jsonl`,
//! its push task's name and, when hosts switched, the `deployed.json` it
//! leaves. A push, a
//! rollback and the recovery of a killed run each describe themselves once
//! as a [`RunRecord`] and ask it for both.

use chrono::{DateTime, Utc};

use crate::adapters::state::{Deployed, HistoryRecord};
use crate::domain::model::{CommitId, ReleaseId, RunKind, RunOutcome};
use crate::run::clock::RunClock;

/// The push task's name: `beta push 3f2a9c1 · 2026-11-22 10:15 UTC`
/// (`web/beta push …` in a config of several apps: `cluster` is the label).
pub fn task_name(cluster: &str, kind: RunKind, commit: &CommitId, clock: &RunClock) -> String {
    format!(
        "{cluster} {kind} {} · {}",
        commit.short(),
        clock.start().format("%Y-%m-%d %H:%M UTC")
    )
}

/// Who a run is: what every record of it repeats.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub run_id: String,
    pub kind: RunKind,
    /// The commit it pushed (or rolled back to).
    pub commit: String,
    /// The commit deployed before it.
    pub previous: Option<String>,
    pub release: Option<ReleaseId>,
    pub started: DateTime<Utc>,
}

/// Why a run failed, for its history line.
#[derive(Clone, Debug)]
pub struct Failed<'a> {
    pub step: &'a str,
    pub error: &'a str,
}

impl RunRecord {
    /// The run's history line.
    pub fn history(
        &self,
        outcome: RunOutcome,
        finished: DateTime<Utc>,
        push_task_link: Option<String>,
        failed: Option<Failed<'_>>,
    ) -> HistoryRecord {
        HistoryRecord {
            run_id: self.run_id.clone(),
            kind: self.kind,
            outcome,
            commit: self.commit.clone(),
            previous: self.previous.clone(),
            release: self.release.as_ref().map(ToString::to_string),
            started: self.started,
            finished,
            push_task_link,
            failed_step: failed.as_ref().map(|f| f.step.to_owned()),
            error: failed.map(|f| f.error.to_owned()),
        }
    }

    /// What the hosts run after it, since `since` (on the run's clock, so
    /// that soak times follow the same clock as decisions).
    pub fn deployed(
        &self,
        release: &ReleaseId,
        since: DateTime<Utc>,
        push_task: Option<(String, String)>,
    ) -> Deployed {
        let (gid, link) = push_task.unzip();
        Deployed {
            commit: self.commit.clone(),
            release: release.to_string(),
            since,
            run_id: self.run_id.clone(),
            push_task: gid,
            push_task_link: link,
        }
    }
}
