//! The gate: may this cluster push, given its lock project?

use crate::model::LockTask;
use crate::plan::{HoldReason, LockFacts, Verdict};

/// Whether one task read from a lock project holds the push.
///
/// This is the one place the rule lives. For now every incomplete task is a
/// lock — including one that carries a fix commit: what a fix commit
/// unlocks (SPEC §2 step 4, §5) is decided here once crash tasks are
/// understood; until then such a task still holds, which is the safe side.
pub fn holds(task: &LockTask) -> bool {
    !task.completed
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
