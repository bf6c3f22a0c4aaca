//! Crash tasks end to end: recording fixes, closing on beta, holding prod
//! until it ships the fix, bad fix values, and `shipped`.

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;
use serde_json::{json, Value};

use crate::support::{self, seed, Bin, Raw};

fn task(sb: &Sandbox, gid: &str) -> TaskRec {
    sb.with_data(|d| d.tasks[gid].clone()).unwrap()
}

use crate::support::comments;

async fn create(sb: &Sandbox, data: Value) -> String {
    let (s, t) = Raw::new(sb).post("/tasks", json!({ "data": data })).await;
    assert_eq!(s, 201, "{t}");
    t["data"]["gid"].as_str().unwrap().to_owned()
}

/// A crash task in the crash project with its fix in the custom field.
async fn crash_task(sb: &Sandbox, name: &str, fix: Option<&str>, also_in: &[&str]) -> String {
    let mut projects = vec![seed::CRASH];
    projects.extend_from_slice(also_in);
    let mut data = json!({ "name": name, "projects": projects });
    if let Some(f) = fix {
        data["custom_fields"] = json!({ seed::FIX_COMMIT_FIELD: f });
    }
    create(sb, data).await
}

/// A branch commit: a commit of the repository that main does not contain.
fn side_commit(bin: &Bin) -> String {
    let repo = git2::Repository::open(&bin.repo.path).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let sig = git2::Signature::now("Side", "side@example.com").unwrap();
    let tree = head.tree().unwrap();
    let id = repo
        .commit(
            Some("refs/heads/feature"),
            &sig,
            &sig,
            "on a branch",
            &tree,
            &[&head],
        )
        .unwrap();
    id.to_string()
}

fn with_prod_from_beta(bin: &Bin) {
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "[clusters.prod]\n",
            "[clusters.prod]\nsource = \"cluster:beta\"\n",
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn crash_fixed_writes_the_field_or_a_notes_line_and_refuses_non_commits() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let with_field = crash_task(&sb, "crash in checkout", None, &[]).await;
    let without = create(
        &sb,
        json!({ "name": "crash elsewhere", "notes": "seen twice", "workspace": seed::WORKSPACE }),
    )
    .await;

    let run = bin
        .run(&["crash", "fixed", &with_field, &bin.first[..10]])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let t = task(&sb, &with_field);
    assert_eq!(
        t.values
            .get(seed::FIX_COMMIT_FIELD)
            .cloned()
            .flatten()
            .as_deref(),
        Some(bin.first.as_str())
    );
    assert!(
        comments(&t).iter().any(|c| c.contains(&bin.first)),
        "{:?}",
        comments(&t)
    );

    let run = bin.run(&["crash", "fixed", &without, &bin.first]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        task(&sb, &without).notes,
        format!("seen twice\nFixed-in: {}", bin.first)
    );

    for bad in ["0000000", "$(reboot)", "main", "abc"] {
        let before = task(&sb, &without);
        let run = bin.run(&["crash", "fixed", &without, bad]).await;
        assert_eq!(run.code, 2, "{bad}: {run:?}");
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        let after = task(&sb, &without);
        assert_eq!(
            (after.notes, after.stories.len()),
            (before.notes, before.stories.len())
        );
    }
}

#[tokio::test]
async fn beta_closes_the_crash_tasks_it_ships_including_fixes_recorded_later() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let side = side_commit(&bin);
    let shipped = crash_task(&sb, "fixed in the first commit", Some(&bin.first[..7]), &[]).await;
    let pending = crash_task(&sb, "fixed on a branch", Some(&side), &[]).await;
    // An approval task in the crash project, fix and all: completing it
    // would approve it, so it is not taken for a crash task.
    let approval = create(
        &sb,
        json!({
            "name": "approve the fix",
            "resource_subtype": "approval",
            "projects": [seed::CRASH],
            "custom_fields": { seed::FIX_COMMIT_FIELD: &bin.first[..7] },
        }),
    )
    .await;
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let t = task(&sb, &shipped);
    assert!(t.completed, "a crash task whose fix beta runs is completed");
    let a = task(&sb, &approval);
    assert!(!a.completed && comments(&a).is_empty(), "{a:?}");
    let push_task = sb
        .with_data(|d| d.projects[seed::PUSH_BETA].tasks[0].clone())
        .unwrap();
    assert!(
        comments(&t)
            .iter()
            .any(|c| c.contains("Fixed:") && c.contains(&push_task)),
        "{:?}",
        comments(&t)
    );
    assert!(!task(&sb, &pending).completed);

    // A fix recorded after it shipped: the next run (nothing new) closes it.
    let late = crash_task(&sb, "recorded late", None, &[]).await;
    assert_eq!(
        bin.run(&["crash", "fixed", &late, &bin.first]).await.code,
        0
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("nothing new"), "{}", run.stdout);
    assert!(task(&sb, &late).completed);
    assert!(!task(&sb, &pending).completed);
    assert_eq!(
        sb.with_data(|d| d.projects[seed::PUSH_BETA].tasks.len())
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_crash_task_in_prods_lock_project_holds_prod_until_prod_ships_the_fix() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    with_prod_from_beta(&bin);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let fix = bin
        .repo
        .commit(&[("app/index.html", b"fixed\n")], "Fix the crash");
    let crash = crash_task(&sb, "crash 42", Some(&fix), &[seed::LOCK_PROD]).await;

    // beta runs the first commit: prod's candidate lacks the fix.
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("waiting for fix {}", &fix[..7])),
        "{}",
        run.stdout
    );

    // beta ships the fix and completes the crash task; prod still lacks it.
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert!(task(&sb, &crash).completed);
    let status = bin.run(&["status", "prod"]).await;
    assert!(
        status
            .stdout
            .contains(&format!("waiting for fix {} (on beta since", &fix[..7]))
            && status.stdout.contains("crash 42"),
        "{}",
        status.stdout
    );

    // prod's candidate is now beta's commit: it contains the fix, prod ships,
    // and the task leaves the prod lock project.
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let t = task(&sb, &crash);
    assert!(
        !t.projects.contains(&seed::LOCK_PROD.to_owned()),
        "{:?}",
        t.projects
    );
    assert!(
        comments(&t)
            .iter()
            .any(|c| c.contains("took this task out of prod's lock project")),
        "{:?}",
        comments(&t)
    );
}

#[tokio::test]
async fn a_bad_fix_value_holds_is_reported_once_and_shown_in_status() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let bad = create(
        &sb,
        json!({ "name": "crash 7", "notes": "Fixed-in: 0000000abc", "projects": [seed::LOCK_BETA] }),
    )
    .await;
    for _ in 0..2 {
        let run = bin.run(&["push", "beta"]).await;
        assert_eq!(run.code, 3, "an invalid fix value never unlocks: {run:?}");
        assert!(
            run.stdout
                .contains("fix value `0000000abc` is not usable: not a commit of the repository"),
            "{}",
            run.stdout
        );
    }
    let said: Vec<String> = comments(&task(&sb, &bad))
        .into_iter()
        .filter(|c| c.contains("cannot use the fix commit value"))
        .collect();
    assert_eq!(said.len(), 1, "said once, not on every tick: {said:?}");
    let s = bin.run(&["status", "beta"]).await;
    assert!(s.stdout.contains("is not usable"), "{}", s.stdout);

    // Completing it removes the lock: a completed task with a bad value is no lock.
    let (st, _) = Raw::new(&sb)
        .put(
            &format!("/tasks/{bad}"),
            json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
}

#[tokio::test]
async fn shipped_answers_0_1_or_2_from_the_state_dir_alone() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["shipped", &bin.first, "--cluster", "beta"]).await;
    assert_eq!(run.code, 2, "nothing deployed yet: {run:?}");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let later = bin.repo.commit(&[("app/x", b"x")], "later");
    let side = side_commit(&bin);
    // Fetch them into the mirror (a dry run may fetch).
    assert_eq!(bin.run(&["push", "beta", "--dry-run"]).await.code, 0);

    // No network: with the sandbox stopped, shipped still answers.
    sb.stop().await;
    let run = bin
        .run(&["shipped", &bin.first[..7], "--cluster", "beta", "--json"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["shipped"], true);
    assert_eq!(v["deployed"]["commit"], bin.first.as_str());
    assert!(v["deployed"]["since"].is_string());
    assert_eq!(
        bin.run(&["shipped", &later, "--cluster", "beta"])
            .await
            .code,
        1
    );
    assert_eq!(
        bin.run(&["shipped", &side, "--cluster", "beta"]).await.code,
        1
    );
    for bad in ["0000000", "zzz", "--help"] {
        let run = bin.run(&["shipped", "--cluster", "beta", "--", bad]).await;
        assert_eq!(run.code, 2, "{bad}: {run:?}");
    }
    assert_eq!(
        bin.run(&["shipped", &bin.first, "--cluster", "nope"])
            .await
            .code,
        2
    );
}
