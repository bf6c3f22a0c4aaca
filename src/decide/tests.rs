use expect_test::{expect, Expect};

use crate::git::{ChangeEntry, Changelog};
use crate::model::{ClusterName, CommitId, LockTask, TaskGid};
use crate::plan::{Candidate, Facts, LockFacts};

fn commit(c: char) -> CommitId {
    CommitId::parse(&c.to_string().repeat(40)).unwrap()
}

/// Beta, with `b…` deployed and `c…` (one commit later) the candidate.
fn facts(locks: LockFacts) -> Facts {
    Facts {
        cluster: ClusterName::parse("beta").unwrap(),
        running: None,
        locks,
        candidate: Some(Candidate {
            commit: commit('c'),
            via: "branch main".into(),
            from_cluster: None,
        }),
        deployed: Some(commit('b')),
        changelog: Changelog {
            entries: vec![ChangeEntry {
                commit: commit('c'),
                subject: "Fix the login page".into(),
                author: "Ada".into(),
            }],
            more: 0,
        },
        artifact_cached: false,
        hosts: 3,
        source: None,
        now: chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .to_utc(),
        freeze: None,
        soak: None,
    }
}

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
    check_facts(facts(locks), expect);
}

fn check_facts(facts: Facts, expect: Expect) {
    expect.assert_eq(&super::plan(&facts).to_string());
}

#[test]
fn a_new_commit_with_no_lock_is_pushed_in_five_steps() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.changelog.more = 60;
    check_facts(
        f,
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              61 new commits:
                ccccccc Fix the login page (Ada)
                and 60 more
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release"#]],
    );
}

#[test]
fn the_first_push_reuses_a_cached_artifact() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.deployed = None;
    f.artifact_cached = true;
    check_facts(
        f,
        expect![[r#"
            beta: may push ccccccc (branch main) over nothing deployed: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, reuse the cached artifact, stage on 3 hosts, switch `current` and prune, complete the push task and record the release"#]],
    );
}

#[test]
fn nothing_new_wins_over_locks_and_unknown_lock_state() {
    for locks in [
        LockFacts::Unreadable("down".into()),
        LockFacts::Read(vec![task("1", "stop", None, false, None)]),
    ] {
        let mut f = facts(locks);
        f.deployed = Some(commit('c'));
        check_facts(f, expect!["beta: nothing new: ccccccc is already deployed"]);
    }
}

#[test]
fn prod_ships_what_beta_runs_and_nothing_before_beta_has_pushed() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.cluster = ClusterName::parse("prod").unwrap();
    f.candidate = Some(Candidate {
        commit: commit('c'),
        via: "what beta runs".into(),
        from_cluster: ClusterName::parse("beta"),
    });
    f.hosts = 1;
    f.source = ClusterName::parse("beta");
    check_facts(
        f.clone(),
        expect![[r#"
            prod: may push ccccccc (what beta runs) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, ship beta's artifact, stage on 1 host, switch `current` and prune, complete the push task and record the release"#]],
    );
    f.candidate = None;
    check_facts(
        f,
        expect!["prod: nothing new: beta has deployed nothing yet"],
    );
}

#[test]
fn a_running_push_holds_before_anything_else() {
    check_facts(
        Facts::running(
            ClusterName::parse("beta").unwrap(),
            "pid 42 since 2026-11-22 10:15:00 UTC".into(),
            chrono::Utc::now(),
        ),
        expect!["beta: another push of beta is running (pid 42 since 2026-11-22 10:15:00 UTC)"],
    );
}

#[test]
fn pushes_when_the_lock_project_is_empty() {
    check(
        LockFacts::Read(vec![]),
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release"#]],
    );
}

#[test]
fn completed_tasks_never_hold() {
    let tasks = (0..150)
        .map(|i| task(&format!("{}", 1000 + i), "old lock", None, true, None))
        .collect();
    check(
        LockFacts::Read(tasks),
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release"#]],
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
