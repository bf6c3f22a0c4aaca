//! Every view shows what `decide` returned on the same facts: `status` and
//! `push --dry-run` agree in every situation that can hold a push, on the
//! built binary against the spec-strict sandbox; `rollback --dry-run`
//! prints its plan and changes nothing; `min_soak = "0s"` ships at once.

use serde_json::Value;

use crate::support::{self, seed, Bin, Run, Setup};

/// `push CLUSTER --dry-run --json` and `status CLUSTER --json`, side by
/// side: the verdict, the reason and the commit must be the same.
async fn both(bin: &Bin, cluster: &str) -> (Run, Value, Value) {
    let dry = bin.run(&["push", cluster, "--dry-run", "--json"]).await;
    let plan = dry.json();
    let status = bin.run(&["status", cluster, "--json"]).await;
    let next = status.json()["clusters"][0]["next"].clone();
    (dry, plan, next)
}

async fn agree(bin: &Bin, cluster: &str, world: &str, verdict: &str, reason: Option<&str>) {
    let (dry, plan, next) = both(bin, cluster).await;
    for key in ["cluster", "verdict", "reason", "commit"] {
        assert_eq!(
            plan[key], next[key],
            "{world}: `{key}` differs between push --dry-run and status:\n{plan:#}\n{next:#}"
        );
    }
    assert_eq!(plan["verdict"], verdict, "{world}: {plan:#}");
    if verdict == "held" {
        assert_eq!(
            plan["reason"].as_str(),
            reason,
            "{world}: {plan:#}\n{}",
            dry.stderr
        );
    }
    // What the table says agrees too.
    let text = bin.run(&["status", cluster]).await;
    let first = plan_first_line(bin, cluster).await;
    assert!(
        text.stdout.contains(&format!("next push: {first}")),
        "{world}: status does not show the dry run's verdict `{first}`:\n{}",
        text.stdout
    );
}

/// The first line of the dry run's plan, without the cluster's name.
async fn plan_first_line(bin: &Bin, cluster: &str) -> String {
    let run = bin.run(&["push", cluster, "--dry-run"]).await;
    let first = run.stdout.lines().next().unwrap_or_default().to_owned();
    first
        .strip_prefix(&format!("{cluster}: "))
        .unwrap_or(&first)
        .to_owned()
}

#[tokio::test]
async fn status_and_push_dry_run_agree_in_every_situation() {
    let sb = support::sandbox().await;

    // Clear: a first push would run.
    let bin = Bin::new(&sb);
    agree(&bin, "beta", "clear", "push", None).await;

    // Nothing new: the candidate is deployed.
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    agree(&bin, "beta", "nothing new", "nothing-new", None).await;

    // An open lock.
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let lock = support::add_lock(&sb, seed::LOCK_BETA, "DB migration").await;
    agree(&bin, "beta", "open lock", "held", Some("locked")).await;
    support::complete(&sb, &lock).await;

    // The lock project cannot be read: fail closed.
    support::faults(&sb, |f| f.forbidden_projects = vec![seed::LOCK_BETA.into()]);
    agree(&bin, "beta", "unreadable lock project", "unknown", None).await;
    sb.set_faults(Default::default());

    // A rolled-back commit is not pushed again on schedule.
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["rollback", "beta"]).await.code, 0);
    for t in support::tasks(&sb, seed::LOCK_BETA) {
        if !t.completed {
            support::complete(&sb, &t.gid).await;
        }
    }
    agree(&bin, "beta", "rolled back", "held", Some("rolled-back")).await;

    // A build that failed is not retried on schedule.
    let sb2 = support::sandbox().await;
    let failing = Bin::with(
        &sb2,
        Setup {
            build_command: Some(
                r#"["sh", "-c", "test ! -f app/broken && mkdir -p dist && cp -R app/. dist/"]"#
                    .into(),
            ),
            ..Setup::default()
        },
    );
    failing
        .repo
        .commit(&[("app/broken", b"yes\n")], "breaks the build");
    assert_eq!(failing.run(&["push", "beta"]).await.code, 1);
    agree(
        &failing,
        "beta",
        "failed build",
        "held",
        Some("build-failed"),
    )
    .await;

    // beta frozen before every prod push (prod fires every minute).
    let sb3 = support::sandbox().await;
    let frozen = Bin::with(
        &sb3,
        Setup {
            beta: r#"freeze_before = { cluster = "prod", duration = "90m" }"#.into(),
            ..Setup::default()
        },
    );
    frozen.set_config_line("schedule", "schedule = \"0 * * * * *\"");
    agree(&frozen, "beta", "freeze", "held", Some("frozen")).await;

    // prod ships what beta runs: soaking, then a crash fix it lacks.
    let sb4 = support::sandbox().await;
    let soak = Bin::new(&sb4);
    soak.append_config("source = \"cluster:beta\"\nmin_soak = \"90m\"\n");
    assert_eq!(soak.run(&["push", "beta"]).await.code, 0);
    agree(&soak, "prod", "soak", "held", Some("soaking")).await;
    soak.set_config_line("min_soak", "min_soak = \"0s\"");
    let fix = soak
        .repo
        .commit(&[("app/fix.js", b"fixed\n")], "Fix crash 42");
    let (s, _) = support::Raw::new(&sb4)
        .post(
            "/tasks",
            serde_json::json!({"data": {
                "name": "crash 42",
                "notes": format!("Fixed-in: {fix}"),
                "projects": [seed::LOCK_PROD],
            }}),
        )
        .await;
    assert_eq!(s, 201);
    agree(
        &soak,
        "prod",
        "crash fix not yet in the candidate",
        "held",
        Some("locked"),
    )
    .await;

    // prod gated by an approval: not asked yet, asked, rejected, approved.
    let sb5 = support::sandbox().await;
    let (gated, project) = crate::approvals::gated(&sb5, "").await;
    assert_eq!(gated.run(&["push", "beta"]).await.code, 0);
    agree(
        &gated,
        "prod",
        "approval not asked yet",
        "held",
        Some("approval"),
    )
    .await;
    assert_eq!(gated.run(&["push", "prod"]).await.code, 3);
    agree(
        &gated,
        "prod",
        "awaiting approval",
        "held",
        Some("approval"),
    )
    .await;
    let gid = support::tasks(&sb5, &project)[0].gid.clone();
    crate::approvals::decide(&sb5, seed::APPROVER_EMAIL, &gid, "rejected", None).await;
    agree(
        &gated,
        "prod",
        "approval rejected",
        "held",
        Some("approval"),
    )
    .await;
    crate::approvals::decide(&sb5, seed::APPROVER_EMAIL, &gid, "approved", None).await;
    agree(&gated, "prod", "approved", "push", None).await;
}

#[tokio::test]
async fn prod_ships_what_beta_runs_at_once_with_a_min_soak_of_zero() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.append_config("source = \"cluster:beta\"\nmin_soak = \"90m\"\n");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let held = bin.run(&["push", "prod"]).await;
    assert_eq!(held.code, 4, "a 90m soak holds: {held:?}");
    bin.set_config_line("min_soak", "min_soak = \"0s\"");
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let prod = std::fs::read_link(bin.path("hosts/prod-1/current")).unwrap();
    let beta = std::fs::read_to_string(bin.path("hosts/beta-1/current/index.html")).unwrap();
    assert_eq!(
        std::fs::read_to_string(bin.path("hosts/prod-1").join(&prod).join("index.html")).unwrap(),
        beta,
        "prod runs beta's bytes"
    );
}

#[tokio::test]
async fn rollback_dry_run_prints_where_each_host_goes_and_changes_nothing() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = bin.current(1).unwrap();
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r2 = bin.current(1).unwrap();
    let before = sb.with_data(|d| serde_json::to_string(d).unwrap()).unwrap();
    let history = std::fs::read(bin.path("state/clusters/beta/history.jsonl")).unwrap();
    sb.clear_requests();

    let run = bin.run(&["rollback", "beta", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (r1, r2) = (
        r1.trim_start_matches("releases/"),
        r2.trim_start_matches("releases/"),
    );
    assert!(
        run.stdout
            .starts_with(&format!("beta: may roll back from {r2}"))
            && run.stdout.contains(&format!(" to {r1} ")),
        "{}",
        run.stdout
    );
    let d = bin.dir.path().display();
    for i in 1..=3 {
        assert!(
            run.stdout
                .contains(&format!("local:{d}/hosts/beta-{i}: switch to {r1}")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains(&format!(
            "a lock task \"rolled back from {r2}: investigate\""
        )),
        "{}",
        run.stdout
    );
    // Nothing changed: hosts, Asana, the state directory.
    for i in 1..=3 {
        assert_eq!(
            bin.current(i).as_deref(),
            Some(format!("releases/{r2}").as_str())
        );
    }
    assert!(sb.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(
        sb.with_data(|d| serde_json::to_string(d).unwrap()).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(bin.path("state/clusters/beta/history.jsonl")).unwrap(),
        history
    );
    assert!(!bin.path("state/clusters/beta/bad.json").exists());

    let json = bin.run(&["rollback", "beta", "--dry-run", "--json"]).await;
    let v = json.json();
    assert_eq!(v["verdict"], "rollback");
    assert_eq!(v["release"], r1);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 3);

    // Refused: a release no successful push deployed.
    let run = bin
        .run(&[
            "rollback",
            "beta",
            "--dry-run",
            "--to",
            "20200101T000000Z-000000000000",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("was never deployed successfully"),
        "{}",
        run.stderr
    );
}
