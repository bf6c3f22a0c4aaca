//! The gate: may this cluster push, given its lock project?

use crate::domain::model::{Fix, LockTask};
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
