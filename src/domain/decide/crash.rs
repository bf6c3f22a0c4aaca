//! Crash tasks after a run (SPEC §2 step 9, §5): which crash tasks close,
//! which tasks leave a lock project, which fix values to report. Fixes are
//! already checked against the deployed (or pushed) commit.

use std::collections::BTreeMap;

use crate::domain::model::{CommitId, Fix, LockTask, TaskGid};

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

/// What `reported-fixes.json` keeps of a fix value: the value itself when
/// short, else its start, length and a hash — untrusted text of any size
/// never fills the state directory.
pub fn reported_key(value: &str) -> String {
    if value.len() <= 100 {
        return value.to_owned();
    }
    // FNV-1a: stable across builds and versions, unlike std's hasher.
    let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start: String = value.chars().take(40).collect();
    format!("{start}… ({} bytes, fnv1a {hash:016x})", value.len())
}

/// Invalid fix values on incomplete tasks not yet reported with this value
/// (`reported`: task gid → [`reported_key`] of the value commented on).
pub fn bad_fixes(tasks: &[LockTask], reported: &BTreeMap<String, String>) -> Vec<CrashAction> {
    tasks
        .iter()
        .filter(|t| !t.completed)
        .filter_map(|t| match &t.fix {
            Fix::Invalid { value, why }
                if reported.get(t.gid.as_str()) != Some(&reported_key(value)) =>
            {
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

    #[test]
    fn a_long_bad_value_is_kept_short_and_still_reported_once() {
        let long = "x".repeat(100_000);
        let key = reported_key(&long);
        assert!(key.len() < 120, "{key}");
        assert_eq!(key, reported_key(&long));
        assert_ne!(key, reported_key(&format!("{long}y")));
        let t = task(
            "7",
            false,
            Fix::Invalid {
                value: long.clone(),
                why: "not hex".into(),
            },
        );
        let told: BTreeMap<String, String> = [("7".to_owned(), key)].into();
        assert!(bad_fixes(std::slice::from_ref(&t), &told).is_empty());
        assert_eq!(reported_key("abc"), "abc");
    }
}
