//! The gate: may this cluster push, given its lock project?

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::model::{ClusterName, CommitId, Fix, LockTask, TaskGid};
use crate::domain::plan::{HoldReason, LockFacts, Verdict};

/// Whether one task read from a lock project holds the push (SPEC §2 step
/// 4). This is the one place the rule lives:
///
/// - a task with a valid fix commit, complete or not, holds exactly while
///   the candidate does not contain the fix;
/// - any other task holds while it is incomplete (an invalid fix value
///   never unlocks anything);
/// - a value not checked against the repository holds (the safe side).
pub fn holds(task: &LockTask) -> bool {
    match &task.fix {
        Fix::Valid { shipped, .. } => !shipped,
        Fix::Unchecked(_) => true,
        Fix::None | Fix::Invalid { .. } => !task.completed,
    }
}

/// What the cluster's lock project says: `None` when nothing holds the
/// push, else the hold (or fail closed when it was unreadable).
pub fn gate(locks: &LockFacts) -> Option<Verdict> {
    match locks {
        LockFacts::Unreadable(reason) => Some(Verdict::Unknown {
            reason: reason.clone(),
        }),
        LockFacts::Read(tasks) => {
            let holding: Vec<LockTask> = tasks.iter().filter(|t| holds(t)).cloned().collect();
            if holding.is_empty() {
                None
            } else {
                Some(Verdict::Hold(HoldReason::Locked { tasks: holding }))
            }
        }
    }
}

/// Where a lock task's valid fix commit already runs, as gathered for
/// `status`: in what this cluster runs, and in what its source runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixPlace {
    pub deployed: bool,
    /// The source cluster runs it, since then.
    pub on_source: Option<(ClusterName, DateTime<Utc>)>,
}

/// A fix the cluster waits for: it no longer holds the next push (the
/// candidate carries it), but the cluster does not run it yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub task: LockTask,
    pub fix: CommitId,
    pub on_source: Option<(ClusterName, DateTime<Utc>)>,
}

/// The lock tasks that wait for their fix to ship (not holding, not yet
/// deployed), by the same rule as the gate.
pub fn waiting(tasks: &[LockTask], places: &BTreeMap<TaskGid, FixPlace>) -> Vec<Waiting> {
    tasks
        .iter()
        .filter(|t| !holds(t))
        .filter_map(|t| {
            let Fix::Valid { commit, .. } = &t.fix else {
                return None;
            };
            let place = places.get(&t.gid)?;
            (!place.deployed).then(|| Waiting {
                task: t.clone(),
                fix: commit.clone(),
                on_source: place.on_source.clone(),
            })
        })
        .collect()
}
