//! Notifications, as a Slack channel sees them: the real binary, one
//! process per tick as cron runs it, posting to a webhook on loopback.
//! One message when a push starts and one when it ends; one per streak of
//! held runs, however many ticks it lasts; none of them can hold up or
//! fail a push; the webhook's URL appears nowhere.

use std::time::Duration;

use crate::support::{self, seed, Bin, Setup, Webhook};

const VAR: &str = "PUSHGATE_IT_WEBHOOK";

fn with_notify(bin: &Bin, extra: &str) {
    bin.append_config(&format!(
        "[notify]\nslack_webhook_env = \"{VAR}\"\n{extra}\n"
    ));
}

async fn push(bin: &Bin, hook: &Webhook, args: &[&str]) -> support::Run {
    let run = bin
        .run_env(args, &bin.token.clone(), &[(VAR, hook.url.as_str())])
        .await;
    for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(&hook.secret),
            "the webhook URL is in {what}: {text}"
        );
        assert!(!text.contains(&bin.token), "the token is in {what}");
    }
    run
}

#[tokio::test]
async fn a_quick_push_posts_once_and_a_held_streak_posts_once() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    with_notify(&bin, "");
    let hook = Webhook::start(200).await;

    // A quick push is one message: its end.
    let run = push(&bin, &hook, &["push", "beta", "-vv"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let m = hook.messages();
    assert_eq!(m.len(), 1, "{m:#?}");
    let short = &bin.first[..7];
    assert!(
        m[0].contains(&format!("*beta*: pushed `{short}` to 3 hosts"))
            && m[0].contains("|push task>"),
        "{}",
        m[0]
    );

    // Locked for three ticks: one message, naming the lock, its assignee, its link.
    let lock = support::add_lock(&sb, seed::LOCK_BETA, "DB migration <!channel>").await;
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    for _ in 0..3 {
        assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 3);
    }
    let m = hook.messages();
    assert_eq!(m.len(), 2, "{m:#?}");
    assert!(
        m[1].contains("*beta* is held by 1 lock")
            && m[1].contains("DB migration &lt;!channel&gt;")
            && m[1].contains("assignee: Sandbox User")
            && m[1].contains(&lock),
        "{}",
        m[1]
    );
    // Every held run is in the holds log, though no push task was made.
    let holds = std::fs::read_to_string(bin.path("state/clusters/beta/holds.jsonl")).unwrap();
    assert_eq!(holds.lines().count(), 3, "{holds}");
    assert!(holds
        .lines()
        .all(|l| l.contains("\"locked\"") && l.contains(&lock)));

    // A dry run is not a run: no message, no record.
    assert_eq!(
        push(&bin, &hook, &["push", "beta", "--dry-run"]).await.code,
        3
    );
    assert_eq!(hook.messages().len(), 2);

    // The lock goes, beta pushes (one message), the streak is over: a new
    // lock is a new streak and is announced again.
    support::complete(&sb, &lock).await;
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 0);
    assert_eq!(
        push(&bin, &hook, &["push", "beta"]).await.code,
        0,
        "nothing new"
    );
    support::add_lock(&sb, seed::LOCK_BETA, "incident 4411").await;
    bin.repo.commit(&[("app/index.html", b"v3\n")], "Third");
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 3);
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 3);
    let m = hook.messages();
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(m[2].contains("*beta*: pushed `"), "{m:#?}");
    assert!(m[3].contains("incident 4411"), "{}", m[3]);
}

#[tokio::test]
async fn a_push_still_running_after_started_after_is_announced_while_it_runs() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let go = probe.path().join("go");
    assert!(std::process::Command::new("mkfifo")
        .arg(&go)
        .status()
        .unwrap()
        .success());
    let bin = Bin::with(
        &sb,
        Setup {
            // The build waits for the test's go.
            build_command: Some(format!(
                r#"["sh", "-c", "read go < '{}'; mkdir -p dist && cp -R app/. dist/"]"#,
                go.display()
            )),
            ..Setup::default()
        },
    );
    with_notify(&bin, "started_after = \"1s\"");
    let hook = Webhook::start(200).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["push", "beta"])
        .env(support::TOKEN_ENV, &bin.token)
        .env(VAR, &hook.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The build is still waiting: the start is announced meanwhile.
    tokio::time::timeout(Duration::from_secs(60), hook.wait_for(1))
        .await
        .expect("the start is posted while the build waits");
    let m = hook.messages();
    assert!(m[0].contains("*beta*: pushing `"), "{}", m[0]);
    tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let m = hook.messages();
    assert_eq!(m.len(), 2, "{m:#?}");
    assert!(m[1].contains("*beta*: pushed `"), "{}", m[1]);
}

#[tokio::test]
async fn a_failed_push_and_a_rollback_are_posted() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    with_notify(&bin, "on = [\"failed\", \"rollback\"]");
    let hook = Webhook::start(200).await;
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 0);
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 0);
    assert_eq!(hook.messages().len(), 0, "only failures and rollbacks");

    let run = push(&bin, &hook, &["rollback", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let m = hook.messages();
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(
        m[0].contains(&format!("*beta*: rolled back to `{}`", &bin.first[..7]))
            && m[0].contains("on 3/3 hosts")
            && m[0].contains("|rollback task>"),
        "{}",
        m[0]
    );

    // The rollback's lock task holds beta until a person completes it.
    let lock = support::tasks(&sb, support::seed::LOCK_BETA).pop().unwrap();
    let (st, _) = support::Raw::new(&sb)
        .put(
            &format!("/tasks/{}", lock.gid),
            serde_json::json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(st, 200);

    // A build that fails: the message says where and why.
    let text = std::fs::read_to_string(&bin.config).unwrap().replace(
        "command = [\"sh\", \"-c\", \"mkdir",
        "command = [\"sh\", \"-c\", \"echo no compiler >&2; exit 7; mkdir",
    );
    std::fs::write(&bin.config, text).unwrap();
    bin.repo.commit(&[("app/index.html", b"v3\n")], "Third");
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 1);
    let m = hook.messages();
    assert_eq!(m.len(), 2, "{m:#?}");
    assert!(
        m[1].contains("failed at step build") && m[1].contains("status 7"),
        "{}",
        m[1]
    );
}

#[tokio::test]
async fn a_webhook_that_fails_or_never_answers_does_not_hold_up_the_push() {
    let sb = support::sandbox().await;
    let bin = Bin::with(&sb, Setup::default());
    with_notify(&bin, "timeout = \"300ms\"\nstarted_after = \"0s\"");
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/services/T0SECRET/B0SECRET/silent",
        silent.local_addr().unwrap()
    );
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        bin.run_env(&["push", "beta"], &bin.token.clone(), &[(VAR, &url)]),
    )
    .await
    .expect("the push ends although the webhook never answers");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(bin.current(1).is_some() && bin.current(3).is_some());
    assert!(
        run.stderr.contains("notification not sent")
            && run.stderr.contains("did not answer within 300ms"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("B0SECRET"), "{}", run.stderr);
    drop(silent);

    // A webhook that refuses the message (Slack's 404 "no_service").
    let hook = Webhook::start(404).await;
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    let run = push(&bin, &hook, &["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(hook.messages().len(), 2);
    assert!(
        run.stderr.contains("the webhook answered 404: no_service"),
        "{}",
        run.stderr
    );

    // An http URL off loopback is refused, without repeating it.
    bin.repo.commit(&[("app/index.html", b"v3\n")], "Third");
    let run = bin
        .run_env(
            &["push", "beta"],
            &bin.token.clone(),
            &[(VAR, "http://hooks.example.com/services/T0SECRET/B0SECRET/x")],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("https is required") && !run.stderr.contains("B0SECRET"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_build_never_sees_the_webhook_url() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    with_notify(&bin, "");
    let hook = Webhook::start(200).await;
    assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 0);
    let env = std::fs::read_to_string(bin.path("build-env.txt")).unwrap();
    assert!(!env.contains(VAR) && !env.contains(&hook.secret), "{env}");
}
