use expect_test::{expect, Expect};

use crate::model::{ClusterName, LockTask, TaskGid};
use crate::plan::{Facts, LockFacts};

fn task(
    gid: &str,
    name: &str,
    assignee: Option<&str>,
    completed: bool,
    fix: Option<&str>,
) -> LockTask {
    LockTask {
        gid: TaskGid::parse(gid).unwrap(),
        name: name.into(),
        assignee: assignee.map(Into::into),
        link: format!("https://app.asana.com/0/2/{gid}"),
        completed,
        fix_commit: fix.map(Into::into),
    }
}

fn check(locks: LockFacts, expect: Expect) {
    let facts = Facts {
        cluster: ClusterName::parse("beta").unwrap(),
        locks,
    };
    expect.assert_eq(&super::plan(&facts).to_string());
}

#[test]
fn pushes_when_the_lock_project_is_empty() {
    check(
        LockFacts::Read(vec![]),
        expect!["beta: may push: no open lock in the lock project"],
    );
}

#[test]
fn completed_tasks_never_hold() {
    let tasks = (0..150)
        .map(|i| task(&format!("{}", 1000 + i), "old lock", None, true, None))
        .collect();
    check(
        LockFacts::Read(tasks),
        expect!["beta: may push: no open lock in the lock project"],
    );
}

#[test]
fn one_open_task_among_completed_ones_holds_and_is_named() {
    let mut tasks: Vec<LockTask> = (0..150)
        .map(|i| task(&format!("{}", 1000 + i), "old lock", None, true, None))
        .collect();
    tasks.insert(
        70,
        task(
            "42",
            "DB migration in progress",
            Some("Ada Lovelace"),
            false,
            None,
        ),
    );
    check(
        LockFacts::Read(tasks),
        expect![[r#"
            beta: held by 1 lock:
              - "DB migration in progress" (assignee: Ada Lovelace) https://app.asana.com/0/2/42"#]],
    );
}

#[test]
fn every_open_task_is_listed_in_project_order() {
    check(
        LockFacts::Read(vec![
            task("1", "incident 4411", None, false, None),
            task("2", "done", Some("Bo"), true, None),
            task("3", "", Some("Cy"), false, None),
        ]),
        expect![[r#"
            beta: held by 2 locks:
              - "incident 4411" (unassigned) https://app.asana.com/0/2/1
              - "(unnamed task)" (assignee: Cy) https://app.asana.com/0/2/3"#]],
    );
}

#[test]
fn a_task_carrying_a_fix_commit_still_holds_until_crash_tasks_land() {
    check(
        LockFacts::Read(vec![task("7", "crash 99", None, false, Some("3f2a9c1"))]),
        expect![[r#"
            beta: held by 1 lock:
              - "crash 99" (unassigned) https://app.asana.com/0/2/7"#]],
    );
}

#[test]
fn unreadable_lock_state_fails_closed() {
    check(
        LockFacts::Unreadable("GET /projects/2/tasks: HTTP 500: Server Error".into()),
        expect!["beta: lock state unknown, not pushing (fail closed): GET /projects/2/tasks: HTTP 500: Server Error"],
    );
}

#[test]
fn hostile_task_text_is_printed_inert() {
    check(
        LockFacts::Read(vec![task(
            "9",
            "x\u{1b}[2J$(reboot)\nrm -rf /",
            Some("\u{7}bell"),
            false,
            None,
        )]),
        expect![[r#"
            beta: held by 1 lock:
              - "x\u{1b}[2J$(reboot)\nrm -rf /" (assignee: \u{7}bell) https://app.asana.com/0/2/9"#]],
    );
}
