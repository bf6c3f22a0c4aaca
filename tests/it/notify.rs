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
async fn each_push_posts_start_and_end_and_a_held_streak_posts_once() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    with_notify(&bin, "");
    let hook = Webhook::start(200).await;

    let run = push(&bin, &hook, &["push", "beta", "-vv"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let m = hook.messages();
    assert_eq!(m.len(), 2, "{m:#?}");
    let short = &bin.first[..7];
    assert!(
        m[0].contains(&format!(
            "*beta*: pushing `{short}` over (nothing deployed)"
        )) && m[0].contains("Initial app"),
        "{}",
        m[0]
    );
    assert!(
        m[1].contains(&format!("*beta*: pushed `{short}` to 3 hosts"))
            && m[1].contains("|push task>"),
        "{}",
        m[1]
    );

    // Locked for three ticks: one message, naming the lock, its assignee, its link.
    let lock = support::add_lock(&sb, seed::LOCK_BETA, "DB migration <!channel>").await;
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    for _ in 0..3 {
        assert_eq!(push(&bin, &hook, &["push", "beta"]).await.code, 3);
    }
    let m = hook.messages();
    assert_eq!(m.len(), 3, "{m:#?}");
    assert!(
        m[2].contains("*beta* is held by 1 lock")
            && m[2].contains("DB migration &lt;!channel&gt;")
            && m[2].contains("assignee: Sandbox User")
            && m[2].contains(&lock),
        "{}",
        m[2]
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
    assert_eq!(hook.messages().len(), 3);

    // The lock goes, beta pushes (two messages), the streak is over: a new
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
    assert_eq!(m.len(), 6, "{m:#?}");
    assert!(
        m[3].contains("pushing") && m[4].contains("pushed"),
        "{m:#?}"
    );
    assert!(m[5].contains("incident 4411"), "{}", m[5]);
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
    with_notify(&bin, "timeout = \"300ms\"");
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
