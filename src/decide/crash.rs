//! Crash tasks after a run (SPEC §2 step 9, §5): which crash tasks close,
//! which tasks leave a lock project, which fix values to report. Fixes are
//! already checked against the deployed (or pushed) commit.

use std::collections::BTreeMap;

use crate::model::{CommitId, Fix, LockTask, TaskGid};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashAction {
    /// Complete a crash task whose fix the deployed commit contains.
    Close { task: TaskGid, fix: CommitId },
    /// Take a task whose fix the cluster now runs out of its lock project.
    Release { task: TaskGid, fix: CommitId },
    /// Tell a task, once, that its fix value is unusable.
    BadFix {
        task: TaskGid,
        value: String,
        why: String,
    },
}

/// Incomplete crash tasks whose fix shipped close.
pub fn closures(crash_tasks: &[LockTask]) -> Vec<CrashAction> {
    crash_tasks
        .iter()
        .filter(|t| !t.completed)
        .filter_map(|t| match &t.fix {
            Fix::Valid {
                commit,
                shipped: true,
            } => Some(CrashAction::Close {
                task: t.gid.clone(),
                fix: commit.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Lock-project tasks whose fix the pushed commit contains leave the project.
pub fn releases(lock_tasks: &[LockTask]) -> Vec<CrashAction> {
    lock_tasks
        .iter()
        .filter_map(|t| match &t.fix {
            Fix::Valid {
                commit,
                shipped: true,
            } => Some(CrashAction::Release {
                task: t.gid.clone(),
                fix: commit.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Invalid fix values on incomplete tasks not yet reported with this value
/// (`reported`: task gid → the value already commented on).
pub fn bad_fixes(tasks: &[LockTask], reported: &BTreeMap<String, String>) -> Vec<CrashAction> {
    tasks
        .iter()
        .filter(|t| !t.completed)
        .filter_map(|t| match &t.fix {
            Fix::Invalid { value, why } if reported.get(t.gid.as_str()) != Some(value) => {
                Some(CrashAction::BadFix {
                    task: t.gid.clone(),
                    value: value.clone(),
                    why: why.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(gid: &str, completed: bool, fix: Fix) -> LockTask {
        LockTask {
            gid: TaskGid::parse(gid).unwrap(),
            name: format!("crash {gid}"),
            assignee: None,
            link: String::new(),
            completed,
            fix,
        }
    }

    fn valid(c: char, shipped: bool) -> Fix {
        Fix::Valid {
            commit: CommitId::parse(&c.to_string().repeat(40)).unwrap(),
            shipped,
        }
    }

    #[test]
    fn shipped_fixes_close_open_crash_tasks_and_release_lock_tasks() {
        let tasks = vec![
            task("1", false, valid('a', true)),
            task("2", false, valid('b', false)),
            task("3", true, valid('c', true)),
            task("4", false, Fix::None),
            task(
                "5",
                false,
                Fix::Invalid {
                    value: "zz".into(),
                    why: "not hex".into(),
                },
            ),
        ];
        let closed: Vec<String> = closures(&tasks)
            .iter()
            .map(|a| match a {
                CrashAction::Close { task, .. } => task.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(closed, ["1"]);
        let released: Vec<String> = releases(&tasks)
            .iter()
            .map(|a| match a {
                CrashAction::Release { task, .. } => task.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            released,
            ["1", "3"],
            "complete or not, a shipped fix leaves the lock project"
        );
    }

    #[test]
    fn a_bad_fix_value_is_reported_once_per_value() {
        let tasks = vec![task(
            "5",
            false,
            Fix::Invalid {
                value: "zz".into(),
                why: "not hex".into(),
            },
        )];
        assert_eq!(bad_fixes(&tasks, &BTreeMap::new()).len(), 1);
        let mut seen = BTreeMap::new();
        seen.insert("5".to_owned(), "zz".to_owned());
        assert!(bad_fixes(&tasks, &seen).is_empty());
        seen.insert("5".to_owned(), "older value".to_owned());
        assert_eq!(
            bad_fixes(&tasks, &seen).len(),
            1,
            "a new bad value is reported again"
        );
    }
}
