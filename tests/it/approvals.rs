//! The approval gate end to end (`docs/approvals.md`), with the built
//! binary against the spec-strict sandbox, a real repository and `local:`
//! hosts: prod waits for its approval task, people decide through the
//! Asana API with their own tokens, and what a user sees is asserted —
//! exit codes, what prod's host runs, which approval tasks exist, their
//! status and who decided (never pushgate).

use serde_json::{json, Value};

use crate::support::{self, seed, Bin, Raw};
use pushgate::sandbox::Sandbox;

/// A project for approval tasks; its gid.
pub async fn approval_project(sb: &Sandbox, name: &str) -> String {
    let (s, p) = Raw::new(sb)
        .post(
            "/projects",
            json!({"data": {"name": name, "workspace": seed::WORKSPACE}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    p["data"]["gid"].as_str().unwrap().to_owned()
}

/// The usual test setup with prod shipping what beta runs (no soak) and
/// gated by an approval in a new project; `extra` goes into the
/// `[clusters.prod.approval]` table.
pub async fn gated(sb: &Sandbox, extra: &str) -> (Bin, String) {
    let bin = Bin::new(sb);
    let project = approval_project(sb, "Prod approvals").await;
    bin.append_config(&format!(
        "source = \"cluster:beta\"\nmin_soak = \"0s\"\n\n[clusters.prod.approval]\nproject = \"{project}\"\n{extra}\n"
    ));
    (bin, project)
}

/// The tasks of the approval project as a client reads them.
async fn requests(sb: &Sandbox, project: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for t in support::tasks(sb, project) {
        out.push(read(sb, &t.gid).await);
    }
    out
}

async fn read(sb: &Sandbox, gid: &str) -> Value {
    let (s, v) = Raw::new(sb)
        .get(&format!(
            "/tasks/{gid}?opt_fields=name,notes,completed,approval_status,resource_subtype,completed_by"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

/// A person decides an approval task, as Asana's API lets them.
pub async fn decide(sb: &Sandbox, email: &str, gid: &str, status: &str, comment: Option<&str>) {
    let mut raw = Raw::new(sb);
    raw.token = sb.token_of(email).expect("a person of the sandbox");
    if let Some(c) = comment {
        let (s, v) = raw
            .post(
                &format!("/tasks/{gid}/stories"),
                json!({"data": {"text": c}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = raw
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": status}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn prod_current(bin: &Bin) -> Option<String> {
    std::fs::read_link(bin.path("hosts/prod-1/current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// No approval task was ever decided by pushgate's own user.
async fn pushgate_decided_nothing(sb: &Sandbox, project: &str) {
    for t in requests(sb, project).await {
        assert_ne!(
            t["completed_by"]["gid"],
            seed::ME,
            "pushgate decided an approval itself: {t:#}"
        );
    }
}

#[tokio::test]
async fn prod_waits_for_its_approval_task_and_ships_exactly_the_approved_artifact() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(&sb, &format!("approvers = [\"{}\"]", seed::APPROVER_EMAIL)).await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);

    // A dry run asks nothing.
    let dry = bin.run(&["push", "prod", "--dry-run", "--json"]).await;
    assert_eq!(dry.code, 3, "{dry:?}");
    let v = dry.json();
    assert_eq!(v["reason"], "approval", "{v:#}");
    assert_eq!(v["approval"]["state"], "not-requested", "{v:#}");
    assert!(support::tasks(&sb, &project).is_empty());

    // A push asks once, and is held.
    let held = bin.run(&["push", "prod"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    let tasks = requests(&sb, &project).await;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    let t = &tasks[0];
    let gid = support::tasks(&sb, &project)[0].gid.clone();
    assert_eq!(t["resource_subtype"], "approval");
    assert_eq!(t["approval_status"], "pending");
    let beta = std::fs::read_to_string(bin.path("state/clusters/beta/deployed.json")).unwrap();
    let beta: Value = serde_json::from_str(&beta).unwrap();
    let commit = beta["commit"].as_str().unwrap();
    assert!(
        t["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("approve prod push {}", &commit[..7])),
        "{t:#}"
    );
    let notes = t["notes"].as_str().unwrap();
    for want in [
        format!("commit: {commit}"),
        "artifact: sha256:".into(),
        format!(
            "beta push task: {}",
            beta["push_task_link"].as_str().unwrap()
        ),
        "next scheduled push: ".into(),
        "Initial app".into(),
    ] {
        assert!(notes.contains(&want), "{want:?} not in:\n{notes}");
    }
    assert!(
        held.stdout.contains("prod: awaiting approval http"),
        "{}",
        held.stdout
    );
    assert_eq!(prod_current(&bin), None);

    // Asked again: still one request, still held; status says so.
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    let status = bin.run(&["status", "prod", "--json"]).await;
    let s = status.json();
    assert_eq!(s["clusters"][0]["approval"]["state"], "pending", "{s:#}");
    let text = bin.run(&["status", "prod"]).await;
    assert!(
        text.stdout.contains("approval: awaiting approval http"),
        "{}",
        text.stdout
    );

    // The approver approves through Asana; the next push ships.
    decide(&sb, seed::APPROVER_EMAIL, &gid, "approved", None).await;
    let status = bin.run(&["status", "prod"]).await;
    assert!(
        status
            .stdout
            .contains("approval: approved by Avery Approver"),
        "{}",
        status.stdout
    );
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let current = prod_current(&bin).expect("prod switched");
    assert_eq!(
        support::tree(&bin.path("hosts/prod-1").join(&current)),
        support::tree(&bin.path(&format!("state/artifacts/{commit}"))),
        "prod runs the approved artifact"
    );
    let t = read(&sb, &gid).await;
    assert_eq!(t["approval_status"], "approved");
    assert_eq!(t["completed_by"]["gid"], seed::APPROVER);
    let comments = support::comments(&support::task(&sb, &gid));
    assert!(
        comments.iter().any(|c| c.starts_with("shipped ")),
        "{comments:?}"
    );
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    pushgate_decided_nothing(&sb, &project).await;
}

#[tokio::test]
async fn a_rejection_or_changes_requested_holds_with_who_and_why_and_is_not_asked_again() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(&sb, "").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    let gid = support::tasks(&sb, &project)[0].gid.clone();
    decide(
        &sb,
        seed::APPROVER_EMAIL,
        &gid,
        "rejected",
        Some("not during the sale"),
    )
    .await;
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains("prod: rejected by Avery Approver: \"not during the sale\""),
        "{}",
        run.stdout
    );
    let json = bin
        .run(&["push", "prod", "--dry-run", "--json"])
        .await
        .json();
    assert_eq!(json["approval"]["state"], "rejected");
    assert_eq!(json["approval"]["comment"], "not during the sale");
    // Changes requested: the same hold, and still no second request.
    decide(&sb, seed::APPROVER_EMAIL, &gid, "changes_requested", None).await;
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3);
    assert!(
        run.stdout
            .contains("prod: changes requested by Avery Approver"),
        "{}",
        run.stdout
    );
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    assert_eq!(prod_current(&bin), None);
    pushgate_decided_nothing(&sb, &project).await;
}

#[tokio::test]
async fn an_approval_older_than_max_age_or_by_someone_not_allowed_does_not_ship() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(
        &sb,
        &format!("approvers = [\"{}\"]\nmax_age = \"1h\"", seed::APPROVER),
    )
    .await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    let gid = support::tasks(&sb, &project)[0].gid.clone();

    // Someone the list does not name.
    decide(&sb, seed::ENGINEER_EMAIL, &gid, "approved", None).await;
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains("approved by Eli Engineer, who is not an allowed approver"),
        "{}",
        run.stdout
    );

    // The right person, but two hours ago.
    decide(&sb, seed::ENGINEER_EMAIL, &gid, "pending", None).await;
    sb.set_now(Some(chrono::Utc::now() - chrono::Duration::hours(2)));
    decide(&sb, seed::APPROVER_EMAIL, &gid, "approved", None).await;
    sb.set_now(None);
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains("prod: approval expired: approved by Avery Approver at"),
        "{}",
        run.stdout
    );
    assert_eq!(
        bin.run(&["push", "prod", "--dry-run", "--json"])
            .await
            .json()["approval"]["state"],
        "expired"
    );
    assert_eq!(prod_current(&bin), None);
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    pushgate_decided_nothing(&sb, &project).await;
}

#[tokio::test]
async fn the_author_of_a_commit_being_shipped_cannot_approve_it() {
    let sb = support::sandbox().await;
    // Every test commit is by test@example.com.
    let author = sb.add_user("Test Author", "Test@Example.com").unwrap();
    let (bin, project) = gated(&sb, "").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    let gid = support::tasks(&sb, &project)[0].gid.clone();
    decide(&sb, &author.email, &gid, "approved", None).await;
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let short = &bin.first[..7];
    assert!(
        run.stdout
            .contains(&format!("prod: approver authored {short}")),
        "{}",
        run.stdout
    );
    assert_eq!(prod_current(&bin), None);

    // allow_self_approval lets them.
    bin.append_config("allow_self_approval = true\n");
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(prod_current(&bin).is_some());
}

#[tokio::test]
async fn a_newer_candidate_supersedes_the_old_request_which_no_longer_counts() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(&sb, "").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    let old = support::tasks(&sb, &project)[0].gid.clone();

    // beta moves on before anyone decided.
    let v2 = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let tasks = support::tasks(&sb, &project);
    assert_eq!(tasks.len(), 2, "one request per candidate");
    let old_now = read(&sb, &old).await;
    assert!(
        old_now["name"]
            .as_str()
            .unwrap()
            .starts_with("[superseded] approve prod push"),
        "{old_now:#}"
    );
    assert_eq!(old_now["approval_status"], "pending", "never completed");
    assert!(support::comments(&support::task(&sb, &old))
        .iter()
        .any(|c| c.starts_with("superseded: prod now has a newer candidate")));

    // Approving the superseded request ships nothing.
    decide(&sb, seed::APPROVER_EMAIL, &old, "approved", None).await;
    assert_eq!(bin.run(&["push", "prod"]).await.code, 3);
    assert_eq!(prod_current(&bin), None);
    // The new one does: it ships v2.
    let new = tasks.iter().find(|t| t.gid != old).unwrap().gid.clone();
    assert!(support::task(&sb, &new).notes.contains(&v2));
    decide(&sb, seed::APPROVER_EMAIL, &new, "approved", None).await;
    assert_eq!(bin.run(&["push", "prod"]).await.code, 0);
    assert!(prod_current(&bin).unwrap().ends_with(&v2[..12]));
    assert_eq!(support::tasks(&sb, &project).len(), 2);
    pushgate_decided_nothing(&sb, &project).await;
}

#[tokio::test]
async fn killed_or_with_asana_down_while_asking_exactly_one_request_is_made() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(&sb, "").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);

    // Killed right after Asana created the request, before it was marked done.
    let killed = bin
        .run_env(
            &["push", "prod"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, "outbox:applied")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.contains("prod: awaiting approval http"),
        "{}",
        run.stdout
    );
    assert_eq!(support::tasks(&sb, &project).len(), 1, "not asked twice");

    // Asana down while asking for the next candidate: queued, sent once later.
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    support::faults(&sb, |f| {
        f.fail_next = 50;
        f.fail_status = 503;
        f.only = Some("POST /tasks".into());
    });
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.contains("the request for") && run.stdout.contains("is queued"),
        "{}",
        run.stdout
    );
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    sb.set_faults(Default::default());
    for _ in 0..2 {
        let run = bin.run(&["push", "prod"]).await;
        assert_eq!(run.code, 3, "{run:?}");
    }
    let tasks = support::tasks(&sb, &project);
    assert_eq!(
        tasks.len(),
        2,
        "{:#?}",
        tasks.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    pushgate_decided_nothing(&sb, &project).await;
}

#[tokio::test]
async fn ignore_approval_is_the_recorded_valve_and_rollback_needs_no_approval() {
    let sb = support::sandbox().await;
    let (bin, project) = gated(&sb, "").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let refused = bin.run(&["push", "prod", "--ignore-approval"]).await;
    assert_eq!(refused.code, 2, "needs --reason: {refused:?}");
    let run = bin
        .run(&[
            "push",
            "prod",
            "--ignore-approval",
            "--reason",
            "outage fix, approver asleep",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let first = prod_current(&bin).unwrap();
    let push_task = support::tasks(&sb, seed::PUSH_PROD)
        .into_iter()
        .last()
        .unwrap();
    assert!(
        push_task
            .notes
            .contains("pushed despite what held it, by hand: outage fix, approver asleep"),
        "{}",
        push_task.notes
    );
    assert!(push_task.notes.contains("ignored: awaiting approval"));
    let req = support::tasks(&sb, &project);
    assert_eq!(req.len(), 1);
    assert!(support::comments(&support::task(&sb, &req[0].gid))
        .iter()
        .any(|c| c.contains("without this approval, by hand")));

    // A second release, then a rollback: no approval asked or needed.
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(
        bin.run(&["push", "prod", "--ignore-approval", "--reason", "again"])
            .await
            .code,
        0
    );
    assert_ne!(prod_current(&bin).unwrap(), first);
    let rb = bin.run(&["rollback", "prod"]).await;
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(prod_current(&bin).unwrap(), first);
    assert_eq!(support::tasks(&sb, &project).len(), 2);
    pushgate_decided_nothing(&sb, &project).await;
}

/// The daemon (`daemon::run_with` on a test clock): prod's approval is
/// asked when beta's freeze towards prod begins, prod's scheduled push is
/// held by it, and runs when the approval comes within its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_asks_when_the_freeze_begins_and_pushes_when_the_approval_comes() {
    use crate::daemon_dst::{at, TestClock};
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        support::Setup {
            beta: "freeze_before = { cluster = \"prod\", duration = \"30m\" }".into(),
            ..Default::default()
        },
    );
    let project = approval_project(&sb, "Prod approvals").await;
    bin.set_config_line("schedule", "schedule = \"0 0 * * * *\"");
    bin.append_config(&format!(
        "source = \"cluster:beta\"\nmin_soak = \"0s\"\n\n[clusters.prod.approval]\nproject = \"{project}\"\n"
    ));
    // prod at 10:00 Los Angeles (18:00 UTC), beta hourly.
    let text = std::fs::read_to_string(&bin.config).unwrap();
    let text = text.replacen(
        "schedule = \"0 0 * * * *\"\ntimezone = \"America/Los_Angeles\"",
        "schedule = \"0 0 10 * * *\"\ntimezone = \"America/Los_Angeles\"",
        1,
    );
    std::fs::write(&bin.config, text).unwrap();
    let config = pushgate::config::Config::load(&bin.config).unwrap();
    let (client, _) = support::client(&sb);
    let env = pushgate::cmd::Env::from_parts(config, client);

    let clock = TestClock::new(at("2026-11-24T16:50:00Z"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let apps = [&env];
    let daemon = pushgate::cmd::daemon::run_with(
        &apps,
        &clock,
        4,
        std::time::Duration::from_secs(60),
        None,
        async {
            let _ = stop_rx.await;
        },
    );
    let mut asked_at = None;
    let mut approved = false;
    let driver = async {
        loop {
            // beta's loop, prod's loop and the approvals' poll.
            let t = clock.next_wake(3).await;
            if t >= at("2026-11-24T18:40:00Z") {
                break;
            }
            let n = support::tasks(&sb, &project).len();
            if n > 0 && asked_at.is_none() {
                asked_at = Some(t);
            }
            if t >= at("2026-11-24T18:20:00Z") && !approved {
                assert!(
                    support::tasks(&sb, seed::PUSH_PROD).is_empty(),
                    "prod waited for its approval"
                );
                let gid = support::tasks(&sb, &project)[0].gid.clone();
                sb.set_now(Some(t));
                decide(&sb, seed::APPROVER_EMAIL, &gid, "approved", None).await;
                sb.set_now(None);
                approved = true;
            }
            clock.wake(t);
        }
        stop_tx.send(()).unwrap();
    };
    let (outcome, ()) = tokio::join!(daemon, driver);
    assert!(outcome.is_ok(), "{outcome:?}");
    // Asked once, on the first poll after the freeze began at 17:30.
    let asked_at = asked_at.expect("the daemon asked");
    assert!(
        asked_at > at("2026-11-24T17:30:00Z") && asked_at <= at("2026-11-24T17:31:00Z"),
        "asked at {asked_at}"
    );
    assert_eq!(support::tasks(&sb, &project).len(), 1);
    // prod pushed on the first poll after the approval, within its window.
    let pushes = support::tasks(&sb, seed::PUSH_PROD);
    assert_eq!(
        pushes.len(),
        1,
        "{:?}",
        pushes.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    assert!(
        pushes[0].name.ends_with("2026-11-24 18:20 UTC") && pushes[0].completed,
        "{}",
        pushes[0].name
    );
    assert!(prod_current(&bin).is_some());
}

#[tokio::test]
async fn the_demo_gates_prod_and_prints_the_command_that_approves_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["demo", "--ticks", "1", "--every", "1s", "--dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let run = support::Run::from(out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("web/prod: awaiting approval http"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("-d '{\"data\":{\"approval_status\":\"approved\"}}'"),
        "{}",
        run.stdout
    );
    assert!(!dir.path().join("hosts/prod-1/current").exists());
    assert!(
        run.stdout.contains("\"name\":\"web rollback beta\""),
        "{}",
        run.stdout
    );
}
