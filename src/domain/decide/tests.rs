use expect_test::{expect, Expect};

use crate::domain::model::{
    ChangeEntry, Changelog, ClusterName, CommitId, Fix, Host, LockTask, RunKind, RunOutcome,
    TaskGid,
};
use crate::domain::plan::{Candidate, Facts, LastRun, LockFacts, Overrides, RolledBack};
use crate::domain::plan::{HostPolicy, Rollout};

fn commit(c: char) -> CommitId {
    CommitId::parse(&c.to_string().repeat(40)).unwrap()
}

/// Beta, with `b…` deployed and `c…` (one commit later) the candidate.
fn facts(locks: LockFacts) -> Facts {
    Facts {
        app: None,
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
        hosts: hosts(3),
        source: None,
        now: chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .to_utc(),
        manual: false,
        freeze: None,
        soak: None,
        downstream_running: None,
        deployed_release: None,
        last_run: None,
        rolled_back: Vec::new(),
        latest_release: None,
        policy: HostPolicy::default(),
        rollout: Rollout::default(),
        overrides: Overrides::default(),
        approval: None,
    }
}

fn hosts(n: usize) -> Vec<Host> {
    (1..=n)
        .map(|i| Host::parse(&format!("local:/srv/beta-{i}")).unwrap())
        .collect()
}

/// The last run failed at its build, on `c`.
fn build_failed(c: CommitId, run: &str) -> LastRun {
    LastRun {
        kind: RunKind::Push,
        outcome: RunOutcome::Failed,
        failed_step: Some("build".into()),
        commit: Some(c),
        run_id: run.into(),
        link: Some("https://app.asana.com/0/3/9".into()),
    }
}

fn task(gid: &str, name: &str, assignee: Option<&str>, completed: bool, fix: Fix) -> LockTask {
    LockTask {
        gid: TaskGid::parse(gid).unwrap(),
        name: name.into(),
        assignee: assignee.map(Into::into),
        link: format!("https://app.asana.com/0/2/{gid}"),
        completed,
        fix,
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
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3
              if hosts fail: up to 0 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
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
              steps: create the push task, reuse the cached artifact, stage on 3 hosts, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3
              if hosts fail: up to 0 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
    );
}

#[test]
fn nothing_new_wins_over_locks_and_unknown_lock_state() {
    for locks in [
        LockFacts::Unreadable("down".into()),
        LockFacts::Read(vec![task("1", "stop", None, false, Fix::None)]),
    ] {
        let mut f = facts(locks);
        f.deployed = Some(commit('c'));
        let p = super::plan(&f);
        assert!(
            matches!(p.verdict, crate::domain::plan::Verdict::NothingNew { .. })
                && p.to_string()
                    .starts_with("beta: nothing new: ccccccc is already deployed"),
            "{p}"
        );
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
    f.hosts = hosts(1);
    f.source = ClusterName::parse("beta");
    f.artifact_cached = true;
    check_facts(
        f.clone(),
        expect![[r#"
            prod: may push ccccccc (what beta runs) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, ship beta's artifact, stage on 1 host, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              1 host: local:/srv/beta-1
              if hosts fail: up to 0 of 1 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
    );
    f.candidate = None;
    check_facts(
        f,
        expect!["prod: nothing new: beta has deployed nothing yet"],
    );
}

#[test]
fn beta_never_pushes_while_a_cluster_shipping_its_builds_runs() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.downstream_running = ClusterName::parse("prod");
    check_facts(f, expect!["beta: frozen while prod's push runs"]);
}

#[test]
fn a_commit_whose_build_failed_is_not_retried_on_schedule() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.last_run = Some(build_failed(commit('c'), "beta-20261124T1200Z-0001"));
    check_facts(
        f.clone(),
        expect!["beta: not retrying ccccccc: its build failed in the last run (beta-20261124T1200Z-0001 https://app.asana.com/0/3/9); a new commit, or `--commit ccccccc`, retries"],
    );
    f.last_run = Some(build_failed(commit('b'), "older"));
    assert!(matches!(
        super::plan(&f).verdict,
        crate::domain::plan::Verdict::Push { .. }
    ));
}

#[test]
fn a_running_push_holds_before_anything_else() {
    check_facts(
        Facts::running(
            ClusterName::parse("beta").unwrap(),
            "pid 42 since 2026-11-22 10:15:00 UTC".into(),
            chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:00Z")
                .unwrap()
                .to_utc(),
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
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3
              if hosts fail: up to 0 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
    );
}

#[test]
fn completed_tasks_never_hold() {
    let tasks = (0..150)
        .map(|i| task(&format!("{}", 1000 + i), "old lock", None, true, Fix::None))
        .collect();
    check(
        LockFacts::Read(tasks),
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3
              if hosts fail: up to 0 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
    );
}

#[test]
fn one_open_task_among_completed_ones_holds_and_is_named() {
    let mut tasks: Vec<LockTask> = (0..150)
        .map(|i| task(&format!("{}", 1000 + i), "old lock", None, true, Fix::None))
        .collect();
    tasks.insert(
        70,
        task(
            "42",
            "DB migration in progress",
            Some("Ada Lovelace"),
            false,
            Fix::None,
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
            task("1", "incident 4411", None, false, Fix::None),
            task("2", "done", Some("Bo"), true, Fix::None),
            task("3", "", Some("Cy"), false, Fix::None),
        ]),
        expect![[r#"
            beta: held by 2 locks:
              - "incident 4411" (unassigned) https://app.asana.com/0/2/1
              - "(unnamed task)" (assignee: Cy) https://app.asana.com/0/2/3"#]],
    );
}

fn valid(shipped: bool) -> Fix {
    Fix::Valid {
        commit: commit('a'),
        shipped,
    }
}

fn invalid() -> Fix {
    Fix::Invalid {
        value: "$(reboot)".into(),
        why: "not 7 to 40 hex digits".into(),
    }
}

#[test]
fn a_fix_commit_holds_exactly_while_the_candidate_lacks_it_complete_or_not() {
    check(
        LockFacts::Read(vec![
            task(
                "1",
                "crash 1, open, fix not in candidate",
                None,
                false,
                valid(false),
            ),
            task(
                "2",
                "crash 2, closed by beta, fix not in candidate",
                None,
                true,
                valid(false),
            ),
            task("3", "crash 3, open, fix shipped", None, false, valid(true)),
            task("4", "crash 4, closed, fix shipped", None, true, valid(true)),
        ]),
        expect![[r#"
            beta: held by 2 locks:
              - "crash 1, open, fix not in candidate" (unassigned) https://app.asana.com/0/2/1 — waiting for fix aaaaaaa
              - "crash 2, closed by beta, fix not in candidate" (unassigned) https://app.asana.com/0/2/2 — waiting for fix aaaaaaa"#]],
    );
}

#[test]
fn an_invalid_fix_value_never_unlocks_and_a_completed_one_is_no_lock() {
    check(
        LockFacts::Read(vec![
            task("5", "crash 5", None, false, invalid()),
            task("6", "crash 6", None, true, invalid()),
            task("7", "crash 7", None, true, Fix::Unchecked("abcdef0".into())),
        ]),
        expect![[r#"
            beta: held by 2 locks:
              - "crash 5" (unassigned) https://app.asana.com/0/2/5 — fix value `$(reboot)` is not usable: not 7 to 40 hex digits
              - "crash 7" (unassigned) https://app.asana.com/0/2/7 — fix abcdef0 not checked yet"#]],
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
            "x\u{1b}[2J$(reboot)\nrm -rf /\u{202e}fdp.exe\u{200b}",
            Some("\u{7}bell\u{feff}"),
            false,
            Fix::None,
        )]),
        expect![[r#"
            beta: held by 1 lock:
              - "x\u{1b}[2J$(reboot)\nrm -rf /\u{202e}fdp.exe\u{200b}" (assignee: \u{7}bell\u{feff}) https://app.asana.com/0/2/9"#]],
    );
}

fn overrides(locks: bool, freeze: bool) -> Overrides {
    Overrides {
        ignore_locks: locks,
        ignore_freeze: freeze,
        ignore_approval: false,
        reason: Some("hotfix for the outage".into()),
    }
}

#[test]
fn ignore_locks_pushes_past_open_locks_and_unknown_state_and_says_so() {
    let mut f = facts(LockFacts::Read(vec![task(
        "5",
        "DB migration",
        Some("Grace"),
        false,
        Fix::None,
    )]));
    f.overrides = overrides(true, false);
    check_facts(
        f.clone(),
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: told to ignore what holds it
              1 new commit:
                ccccccc Fix the login page (Ada)
              pushed despite what held it, by hand: hotfix for the outage
              - ignored lock "DB migration" (assignee: Grace) https://app.asana.com/0/2/5
              steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3
              if hosts fail: up to 0 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host"#]],
    );
    f.locks = LockFacts::Unreadable("HTTP 503".into());
    let plan = super::plan(&f);
    assert!(matches!(
        plan.verdict,
        crate::domain::plan::Verdict::Push { .. }
    ));
    assert_eq!(plan.ignored.unwrap().unknown.as_deref(), Some("HTTP 503"));
}

#[test]
fn ignore_locks_never_passes_a_running_push_or_a_freeze() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.overrides = overrides(true, false);
    f.downstream_running = ClusterName::parse("prod");
    check_facts(f.clone(), expect!["beta: frozen while prod's push runs"]);
    f.downstream_running = None;
    f.soak = Some(crate::domain::plan::SoakFacts {
        from: ClusterName::parse("prod").unwrap(),
        since: f.now - chrono::Duration::minutes(10),
        min: chrono::Duration::minutes(90),
    });
    assert!(matches!(
        super::plan(&f).verdict,
        crate::domain::plan::Verdict::Hold(crate::domain::plan::HoldReason::Soaking { .. })
    ));
    // --ignore-freeze passes the soak too, and says so; it never passes a
    // push of the cluster shipping this one's builds.
    f.overrides = overrides(false, true);
    let plan = super::plan(&f);
    assert!(matches!(
        plan.verdict,
        crate::domain::plan::Verdict::Push { .. }
    ));
    assert_eq!(plan.ignored.unwrap().holds.len(), 1);
    f.downstream_running = ClusterName::parse("prod");
    check_facts(f, expect!["beta: frozen while prod's push runs"]);
}

#[test]
fn a_rolled_back_commit_is_held_whatever_the_overrides() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.rolled_back = vec![RolledBack {
        commit: commit('c'),
        release: "20261124T110000Z-cccccccccccc".into(),
        at: f.now - chrono::Duration::minutes(30),
    }];
    f.overrides = overrides(true, true);
    check_facts(
        f.clone(),
        expect!["beta: not pushing ccccccc: release 20261124T110000Z-cccccccccccc was rolled back at 2026-11-24 11:30 UTC; push a new commit, or `--commit ccccccc` to push it anyway"],
    );
    // Nothing new still wins: the cluster runs it again already.
    f.deployed = Some(commit('c'));
    check_facts(f, expect!["beta: nothing new: ccccccc is already deployed"]);
}

#[test]
fn what_a_person_names_is_pushed_though_rolled_back_failed_or_not_soaked() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.rolled_back = vec![RolledBack {
        commit: commit('c'),
        release: "20261124T110000Z-cccccccccccc".into(),
        at: f.now - chrono::Duration::minutes(30),
    }];
    f.last_run = Some(build_failed(commit('c'), "beta-1"));
    f.soak = Some(crate::domain::plan::SoakFacts {
        from: ClusterName::parse("alpha").unwrap(),
        since: f.now,
        min: chrono::Duration::minutes(90),
    });
    assert!(matches!(
        super::plan(&f).verdict,
        crate::domain::plan::Verdict::Hold(crate::domain::plan::HoldReason::RolledBack { .. })
    ));
    f.manual = true;
    f.candidate.as_mut().unwrap().via = "--commit ccccccc".into();
    let p = super::plan(&f);
    assert!(
        matches!(p.verdict, crate::domain::plan::Verdict::Push { .. }),
        "{p}"
    );
    // Locks still hold a manual push.
    f.locks = LockFacts::Read(vec![task("7", "stop", None, false, Fix::None)]);
    assert!(matches!(
        super::plan(&f).verdict,
        crate::domain::plan::Verdict::Hold(crate::domain::plan::HoldReason::Locked { .. })
    ));
}

#[test]
fn a_source_clusters_artifact_missing_holds_with_a_reason_instead_of_failing_the_run() {
    let mut f = facts(LockFacts::Read(vec![]));
    f.cluster = ClusterName::parse("prod").unwrap();
    f.candidate = Some(Candidate {
        commit: commit('c'),
        via: "what beta runs".into(),
        from_cluster: ClusterName::parse("beta"),
    });
    f.source = ClusterName::parse("beta");
    check_facts(
        f.clone(),
        expect!["prod: not shipping ccccccc: beta's artifact of it is not in the artifact cache, and a cluster that ships beta's bytes never rebuilds them; push beta again to rebuild it, or push with `--commit ccccccc`"],
    );
    // A lock is what a person said: it is the reason shown first.
    f.locks = LockFacts::Read(vec![task("7", "stop", None, false, Fix::None)]);
    assert!(super::plan(&f).to_string().contains("held by 1 lock"));
}

#[test]
fn a_push_plan_names_its_release_after_the_newest_and_its_hosts_and_tolerance() {
    let mut f = facts(LockFacts::Read(vec![]));
    // A release already made in this second: the new one sorts after it.
    f.latest_release = crate::domain::model::ReleaseId::parse("20261124T120000Z-bbbbbbbbbbbb");
    f.policy = HostPolicy {
        max_failed: 1,
        keep_releases: 3,
    };
    let p = super::plan(&f);
    assert_eq!(
        p.release.as_ref().map(|r| r.as_str()),
        Some("20261124T120001Z-cccccccccccc")
    );
    assert_eq!(p.hosts.len(), 3);
    let text = p.to_string();
    assert!(
        text.ends_with("release: 20261124T120001Z-cccccccccccc\n  3 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3\n  if hosts fail: up to 1 of 3 may and the push goes on; past that no host is switched, or every switched host goes back; 3 releases kept per host"),
        "{text}"
    );
}

#[test]
fn nothing_new_still_names_the_locks_that_would_hold_the_next_commit() {
    let mut f = facts(LockFacts::Read(vec![task(
        "9",
        "release freeze",
        Some("Ada"),
        false,
        Fix::None,
    )]));
    f.deployed = Some(commit('c'));
    check_facts(
        f,
        expect![[r#"
            beta: nothing new: ccccccc is already deployed; 1 open lock would hold a new commit:
              - "release freeze" (assignee: Ada) https://app.asana.com/0/2/9"#]],
    );
}

/// `waves = ["1", "50%", "100%"]` with a health check and a wave check.
fn in_waves(f: &mut Facts) {
    f.hosts = hosts(4);
    f.rollout = Rollout {
        waves: vec![
            crate::domain::plan::WaveSize::Hosts(1),
            crate::domain::plan::WaveSize::Share(5000),
            crate::domain::plan::WaveSize::Share(10_000),
        ],
        health_check: Some(vec![
            "curl".into(),
            "-fsS".into(),
            "http://127.0.0.1:8080/healthz".into(),
        ]),
        wave_check: Some(vec!["/etc/pushgate/canary check".into()]),
        wave_soak: std::time::Duration::from_secs(300),
        ..Rollout::default()
    };
}

#[test]
fn a_push_in_waves_names_each_waves_hosts_and_what_a_failed_check_does() {
    let mut f = facts(LockFacts::Read(vec![]));
    in_waves(&mut f);
    check_facts(
        f.clone(),
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, build, stage on 4 hosts, switch `current` in 3 waves, health-check each host, run the wave check after each and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              4 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3, local:/srv/beta-4
              if hosts fail: up to 0 of 4 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host
              wave 1/3 ("1", 1 host): local:/srv/beta-1
              wave 2/3 ("50%", 1 host): local:/srv/beta-2
              wave 3/3 ("100%", 2 hosts): local:/srv/beta-3, local:/srv/beta-4
              health check on each host after its switch: `curl -fsS http://127.0.0.1:8080/healthz` (30s a try, 3 tries); up to 0 hosts may fail
              wave check on the bastion after each wave and a soak of 5m: `"/etc/pushgate/canary check"` (30s at most)
              if a check fails: every host switched in this push goes back, a lock task holds beta and ccccccc is marked bad"#]],
    );
    f.rollout.auto_rollback = false;
    f.rollout.wave_check = None;
    f.rollout.waves.clear();
    check_facts(
        f,
        expect![[r#"
            beta: may push ccccccc (branch main) over bbbbbbb: no open lock
              1 new commit:
                ccccccc Fix the login page (Ada)
              steps: create the push task, build, stage on 4 hosts, switch `current`, health-check each host and prune, complete the push task and record the release
              release: 20261124T120000Z-cccccccccccc
              4 hosts: local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3, local:/srv/beta-4
              if hosts fail: up to 0 of 4 may and the push goes on; past that no host is switched, or every switched host goes back; 5 releases kept per host
              wave 1/1 (every host, 4 hosts): local:/srv/beta-1, local:/srv/beta-2, local:/srv/beta-3, local:/srv/beta-4
              health check on each host after its switch: `curl -fsS http://127.0.0.1:8080/healthz` (30s a try, 3 tries); up to 0 hosts may fail
              if a check fails (auto_rollback = false): no further wave, switched hosts keep the release, a lock task holds beta and ccccccc is marked bad"#]],
    );
}

#[test]
fn waves_are_planned_only_for_a_push_and_one_wave_without_checks_is_a_plain_switch() {
    let mut f = facts(LockFacts::Read(vec![task(
        "1",
        "stop",
        None,
        false,
        Fix::None,
    )]));
    in_waves(&mut f);
    let p = super::plan(&f);
    assert!(p.waves.is_empty() && p.steps.is_empty(), "{p}");
    let mut f = facts(LockFacts::Read(vec![]));
    f.rollout.waves = vec![crate::domain::plan::WaveSize::Share(10_000)];
    let p = super::plan(&f);
    assert_eq!(p.waves.len(), 1);
    assert!(p.steps.contains(&crate::domain::plan::Step::Switch), "{p}");
    assert!(!p.to_string().contains("wave 1/1"), "{p}");
}
