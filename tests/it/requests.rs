//! Requests from Asana (`docs/requests.md`) against the spec-strict
//! sandbox: people write tasks in the requests project with their own
//! tokens, the daemon's poll (`cmd::requests::poll`, what `pushgate run`
//! calls) acts on them, and what a user sees is asserted: hosts'
//! `current`, lock tasks, the requests' comments and completion.

use serde_json::json;

use crate::support::{self, seed, Bin, Raw};
use pushgate::cmd::Env;
use pushgate::sandbox::Sandbox;

struct World {
    sb: Sandbox,
    bin: Bin,
    env: Env,
    project: String,
}

async fn world() -> World {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let project = crate::approvals::approval_project(&sb, "Release requests").await;
    bin.append_config(&format!(
        "[requests]\nproject = \"{project}\"\nallowed = [\"{}\", \"{}\"]\n",
        seed::APPROVER_EMAIL,
        seed::ME
    ));
    let config = pushgate::config::Config::load(&bin.config).unwrap();
    let (client, _) = support::client(&sb);
    let env = Env::from_parts(config, client);
    World {
        sb,
        bin,
        env,
        project,
    }
}

impl World {
    /// A person writes a request task; its gid.
    async fn ask(&self, email: &str, name: &str) -> String {
        let mut raw = Raw::new(&self.sb);
        raw.token = self.sb.token_of(email).unwrap();
        let (s, v) = raw
            .post(
                "/tasks",
                json!({"data": {"name": name, "projects": [self.project]}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["data"]["gid"].as_str().unwrap().to_owned()
    }

    async fn comment(&self, email: &str, gid: &str, text: &str) {
        let mut raw = Raw::new(&self.sb);
        raw.token = self.sb.token_of(email).unwrap();
        let (s, v) = raw
            .post(
                &format!("/tasks/{gid}/stories"),
                json!({"data": {"text": text}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }

    async fn poll(&self) {
        pushgate::cmd::requests::poll(&[&self.env], chrono::Utc::now(), false)
            .await
            .unwrap();
    }

    fn comments(&self, gid: &str) -> Vec<String> {
        support::comments(&support::task(&self.sb, gid))
    }

    fn completed(&self, gid: &str) -> bool {
        support::task(&self.sb, gid).completed
    }
}

#[tokio::test]
async fn each_verb_runs_once_as_the_shell_command_would_and_is_commented() {
    let w = world().await;
    // push beta
    let push = w.ask(seed::APPROVER_EMAIL, "push beta").await;
    w.poll().await;
    assert!(w.bin.current(1).is_some(), "beta pushed");
    assert!(w.completed(&push));
    let c = w.comments(&push);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("Done: pushed ") && c[0].contains("push task: http"),
        "{c:?}"
    );
    let first = w.bin.current(1).unwrap();
    // Polled again: nothing runs twice.
    w.poll().await;
    assert_eq!(support::tasks(&w.sb, seed::PUSH_BETA).len(), 1);

    // lock beta, then unlock beta
    let lock = w.ask(seed::APPROVER_EMAIL, "lock beta").await;
    w.poll().await;
    assert!(w.completed(&lock));
    let locks: Vec<_> = support::tasks(&w.sb, seed::LOCK_BETA)
        .into_iter()
        .filter(|t| !t.completed)
        .collect();
    assert_eq!(locks.len(), 1);
    assert!(
        locks[0].notes.contains(&format!("/{lock}")),
        "{}",
        locks[0].notes
    );
    let unlock = w.ask(seed::APPROVER_EMAIL, "unlock beta").await;
    w.poll().await;
    assert!(w.completed(&unlock), "{:?}", w.comments(&unlock));
    assert!(support::task(&w.sb, &locks[0].gid).completed);

    // push beta REV, then rollback beta
    let v2 = w.bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let rev = w
        .ask(seed::APPROVER_EMAIL, &format!("push beta {}", &v2[..10]))
        .await;
    w.poll().await;
    assert!(w.completed(&rev), "{:?}", w.comments(&rev));
    assert_ne!(w.bin.current(1).unwrap(), first);
    let rb = w.ask(seed::APPROVER_EMAIL, "rollback beta").await;
    w.poll().await;
    assert!(w.completed(&rb), "{:?}", w.comments(&rb));
    assert_eq!(w.bin.current(1).unwrap(), first);
    assert!(w.comments(&rb)[0].starts_with("Done: rolled back beta to "));

    let listed = w.bin.run(&["requests", "--json"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert_eq!(listed.json()["requests"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_grammar_and_hostile_names_get_one_comment_and_run_nothing() {
    let w = world().await;
    let names = [
        "deploy everything",
        "push beta; rm -rf /",
        "push beta $(touch /tmp/pwned)",
        "push beta --ignore-locks",
        "push beta ../../etc/passwd",
        "rollback beta `reboot`",
        "push beta\u{202e}",
    ];
    let mut gids = Vec::new();
    for n in names {
        gids.push(w.ask(seed::APPROVER_EMAIL, n).await);
    }
    w.poll().await;
    w.poll().await;
    for (g, n) in gids.iter().zip(names) {
        let c = w.comments(g);
        assert_eq!(c.len(), 1, "{n:?}: {c:?}");
        assert!(
            c[0].starts_with("Not run: ") && c[0].contains("I understand only"),
            "{c:?}"
        );
        assert!(!w.completed(g), "left alone");
    }
    assert!(w.bin.current(1).is_none(), "nothing pushed");
    assert!(support::tasks(&w.sb, seed::PUSH_BETA).is_empty());
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[tokio::test]
async fn a_request_from_someone_not_allowed_is_told_once_and_never_runs() {
    let w = world().await;
    let gid = w.ask(seed::ENGINEER_EMAIL, "push beta").await;
    w.poll().await;
    w.poll().await;
    let c = w.comments(&gid);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains("Eli Engineer is not allowed"), "{c:?}");
    assert!(w.bin.current(1).is_none());
    // Even if an allowed person says retry.
    w.comment(seed::APPROVER_EMAIL, &gid, "retry").await;
    w.poll().await;
    assert!(w.bin.current(1).is_none());
    assert_eq!(w.comments(&gid).len(), 2);
}

#[tokio::test]
async fn a_held_request_is_tried_on_each_poll_and_runs_once_the_lock_is_gone() {
    let w = world().await;
    let lock = support::add_lock(&w.sb, seed::LOCK_BETA, "DB migration").await;
    let gid = w.ask(seed::APPROVER_EMAIL, "push beta").await;
    w.poll().await;
    w.poll().await;
    let c = w.comments(&gid);
    assert_eq!(c.len(), 1, "one comment per hold, not per poll: {c:?}");
    assert!(c[0].starts_with("Held: held by 1 lock"), "{c:?}");
    assert!(!w.completed(&gid));
    assert!(w.bin.current(1).is_none());
    support::complete(&w.sb, &lock).await;
    w.poll().await;
    assert!(w.bin.current(1).is_some());
    assert!(w.completed(&gid));
}

#[tokio::test]
async fn a_failed_request_is_not_retried_until_someone_comments_retry() {
    let w = world().await;
    let gid = w.ask(seed::APPROVER_EMAIL, "push beta deadbeef12").await;
    w.poll().await;
    w.poll().await;
    let c = w.comments(&gid);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("Failed: ") && c[0].contains("deadbeef12"),
        "{c:?}"
    );
    w.comment(seed::APPROVER_EMAIL, &gid, "retry").await;
    w.poll().await;
    let c = w.comments(&gid);
    assert_eq!(c.len(), 3, "ran again once: {c:?}");
    assert!(c[2].starts_with("Failed: "));
    w.poll().await;
    assert_eq!(w.comments(&gid).len(), 3);
}

#[tokio::test]
async fn a_rollback_requested_while_prod_is_locked_runs_once() {
    let w = world().await;
    assert_eq!(w.bin.run(&["push", "prod"]).await.code, 0);
    let prod = |w: &World| std::fs::read_link(w.bin.path("hosts/prod-1/current")).unwrap();
    let first = prod(&w);
    w.bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(w.bin.run(&["push", "prod"]).await.code, 0);
    assert_ne!(prod(&w), first);
    support::add_lock(&w.sb, seed::LOCK_PROD, "incident").await;
    let gid = w.ask(seed::APPROVER_EMAIL, "rollback prod").await;
    w.poll().await;
    w.poll().await;
    assert_eq!(prod(&w), first, "rolled back despite the lock");
    assert!(w.completed(&gid));
    assert_eq!(w.comments(&gid).len(), 1, "{:?}", w.comments(&gid));
    let rollbacks = support::tasks(&w.sb, seed::PUSH_PROD)
        .into_iter()
        .filter(|t| t.name.contains(" rollback "))
        .count();
    assert_eq!(rollbacks, 1, "ran once");
}

#[tokio::test]
async fn requests_are_seen_through_events_and_after_the_sync_token_expires() {
    let w = world().await;
    // The first poll reads in full and keeps a sync token.
    w.poll().await;
    assert!(w.bin.path("state/requests/sync.json").exists());
    let a = w.ask(seed::APPROVER_EMAIL, "lock beta").await;
    w.sb.clear_requests();
    w.poll().await;
    assert!(w.completed(&a), "seen through the events");
    assert!(
        !w.sb
            .requests()
            .iter()
            .any(|r| r.path.ends_with(&format!("/projects/{}/tasks", w.project))),
        "no full read while the events flow"
    );
    // The token dies: 412, a fresh one, a full read finds the new request.
    w.sb.expire_sync_tokens();
    let b = w.ask(seed::APPROVER_EMAIL, "unlock beta").await;
    w.poll().await;
    assert!(w.completed(&b), "{:?}", w.comments(&b));
}
