//! The real binary against the sandbox: exit codes, `--json`, and the token
//! kept out of every output.

use serde_json::json;

use crate::support::{self, seed, Bin, Raw};

async fn add_lock(sb: &pushgate::sandbox::Sandbox, project: &str, name: &str) -> String {
    let (s, t) = Raw::new(sb)
        .post(
            "/tasks",
            json!({"data": {"name": name, "assignee": "me", "projects": [project]}}),
        )
        .await;
    assert_eq!(s, 201);
    t["data"]["gid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn dry_run_exits_0_when_open_3_when_locked_and_changes_nothing() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["push", "beta", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let short = &bin.first[..7];
    let lines: Vec<&str> = run.stdout.trim().lines().collect();
    assert_eq!(
        lines[..4].join("\n"),
        format!(
            "beta: may push {short} (branch main) over nothing deployed: no open lock\n  1 new commit:\n    {short} Initial app (Test Author)\n  steps: create the push task, build, stage on 3 hosts, switch `current` and prune, complete the push task and record the release"
        )
    );
    // The plan names the release it would make, the hosts and what happens
    // when they fail.
    assert!(
        lines[4].starts_with("  release: ")
            && lines[4].ends_with(&format!("-{}", &bin.first[..12])),
        "{}",
        run.stdout
    );
    let d = bin.dir.path().display();
    assert_eq!(
        lines[5],
        format!(
            "  3 hosts: local:{d}/hosts/beta-1, local:{d}/hosts/beta-2, local:{d}/hosts/beta-3"
        )
    );
    assert!(
        lines[6].starts_with("  if hosts fail: up to 0 of 3 may"),
        "{}",
        run.stdout
    );
    assert!(
        bin.current(1).is_none()
            && !bin.path("hosts").exists()
            && !bin
                .path("state/artifacts")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some()),
        "a dry run builds nothing and touches no host"
    );

    support::seed_tasks(&sb, seed::LOCK_BETA, 150, true, "old lock");
    let gid = add_lock(&sb, seed::LOCK_BETA, "DB migration in progress").await;
    let before = sb.with_data(|d| serde_json::to_string(d).unwrap()).unwrap();
    sb.clear_requests();
    let run = bin.run(&["push", "beta", "--dry-run"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.contains("held by 1 lock") && run.stdout.contains("DB migration in progress"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(assignee: Sandbox User)") && run.stdout.contains(&gid));
    assert!(
        sb.requests().iter().all(|r| r.method == "GET"),
        "a dry run only reads"
    );
    assert_eq!(
        sb.with_data(|d| serde_json::to_string(d).unwrap()).unwrap(),
        before
    );

    let run = bin.run(&["push", "prod", "--dry-run"]).await;
    assert_eq!(run.code, 0, "beta's lock does not hold prod: {run:?}");
}

#[tokio::test]
async fn dry_run_fails_closed_with_5_when_asana_keeps_failing() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    support::faults(&sb, |f| f.fail_next = 1000);
    let run = bin.run(&["push", "beta", "--dry-run"]).await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stdout.contains("lock state unknown, not pushing"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("gave up after 5 attempts") && run.stdout.contains("HTTP 500"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn dry_run_decides_correctly_through_a_429_storm() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    support::seed_tasks(&sb, seed::LOCK_BETA, 150, true, "old");
    add_lock(&sb, seed::LOCK_BETA, "still open").await;
    support::faults(&sb, |f| {
        f.rate_limit_every = Some(2);
        f.retry_after_secs = 0;
    });
    let run = bin.run(&["push", "beta", "--dry-run", "--json"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let plan = run.json();
    assert_eq!(plan["verdict"], "held");
    assert_eq!(plan["locks"][0]["name"], "still open");
}

#[tokio::test]
async fn a_refused_token_is_exit_5_naming_the_variable_not_the_token() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin
        .run_with_token(&["push", "beta", "--dry-run", "-vv"], "bogus-token-4242")
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stdout.contains(support::TOKEN_ENV) && run.stdout.contains("401"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("bogus-token-4242") && !run.stderr.contains("bogus-token-4242"));
    let run = bin.run_with_token(&["check"], "bogus-token-4242").await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("FAIL  token"), "{}", run.stdout);
}

#[tokio::test]
async fn the_token_appears_nowhere_even_at_trace() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let gid = add_lock(&sb, seed::LOCK_BETA, "leak check").await;
    for args in [
        vec!["push", "beta", "--dry-run", "-vv"],
        vec!["push", "beta", "--dry-run", "-vv", "--log-format", "json"],
        vec!["status", "-vv"],
        vec!["status", "--json", "-vv"],
        vec!["check", "-vv"],
        vec!["lock", "prod", "--reason", "leak check", "-vv"],
        vec!["unlock", &gid, "-vv"],
    ] {
        let run = bin.run(&args).await;
        assert!(
            run.stderr.contains("DEBUG") || run.stderr.contains("\"level\""),
            "{args:?} logged at -vv: {}",
            run.stderr
        );
        for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(
                !text.contains(&bin.token),
                "{args:?}: the token is in {what}"
            );
        }
    }
}

#[tokio::test]
async fn status_lists_open_locks_with_assignee_and_link() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let gid = add_lock(&sb, seed::LOCK_PROD, "release freeze").await;
    let run = bin.run(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    let clusters = v["clusters"].as_array().unwrap();
    assert_eq!(clusters[0]["cluster"], "beta");
    assert_eq!(clusters[0]["lock_state"], "open");
    assert_eq!(clusters[1]["lock_state"], "held");
    let lock = &clusters[1]["locks"][0];
    assert_eq!(
        (
            lock["gid"].as_str(),
            lock["name"].as_str(),
            lock["assignee"].as_str()
        ),
        (
            Some(gid.as_str()),
            Some("release freeze"),
            Some("Sandbox User")
        )
    );
    assert!(lock["link"].as_str().unwrap().ends_with(&gid));

    let run = bin.run(&["status", "prod"]).await;
    assert!(
        run.stdout.contains("locks: 1 open")
            && run.stdout.contains("release freeze")
            && !run.stdout.contains("beta"),
        "{}",
        run.stdout
    );

    support::faults(&sb, |f| f.fail_next = 1000);
    let run = bin.run(&["status", "beta"]).await;
    assert_eq!(
        run.code, 1,
        "an unreadable lock project is a failed status: {run:?}"
    );
    assert!(run.stdout.contains("locks: unknown"), "{}", run.stdout);
}

#[tokio::test]
async fn lock_then_unlock_from_the_shell() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin
        .run(&[
            "lock",
            "beta",
            "--reason",
            "incident 4411\nsee #ops",
            "--json",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let gid = run.json()["gid"].as_str().unwrap().to_owned();
    let (_, task) = Raw::new(&sb).get(&format!("/tasks/{gid}")).await;
    assert_eq!(task["data"]["name"], "incident 4411");
    assert_eq!(task["data"]["assignee"]["gid"], seed::ME);
    assert!(task["data"]["notes"]
        .as_str()
        .unwrap()
        .starts_with("incident 4411\nsee #ops\n\nLocked with `pushgate lock beta`"));
    assert_eq!(bin.run(&["push", "beta", "--dry-run"]).await.code, 3);

    let run = bin.run(&["unlock", &gid]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (_, task) = Raw::new(&sb).get(&format!("/tasks/{gid}")).await;
    assert_eq!(task["data"]["completed"], true);
    let (_, stories) = Raw::new(&sb).get(&format!("/tasks/{gid}/stories")).await;
    assert!(stories["data"].as_array().unwrap().iter().any(|s| s["text"]
        .as_str()
        .unwrap_or("")
        .starts_with("Unlocked with `pushgate unlock`")));
    assert_eq!(bin.run(&["push", "beta", "--dry-run"]).await.code, 0);
    assert_eq!(
        bin.run(&["unlock", &gid]).await.code,
        0,
        "unlocking twice is fine"
    );
}

#[tokio::test]
async fn unlock_refuses_tasks_outside_lock_projects_and_bad_gids() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let (_, t) = Raw::new(&sb)
        .post(
            "/tasks",
            json!({"data": {"name": "a crash", "projects": [seed::CRASH]}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap();
    let run = bin.run(&["unlock", gid]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("none of the configured lock projects"),
        "{}",
        run.stderr
    );
    let (_, t) = Raw::new(&sb).get(&format!("/tasks/{gid}")).await;
    assert_eq!(t["data"]["completed"], false);
    for bad in ["$(reboot)", "--upload-pack=x", "12ab"] {
        let run = bin.run(&["unlock", "--", bad]).await;
        assert_eq!(run.code, 2, "{bad}: {run:?}");
        assert!(run.stderr.contains("is not a task gid"), "{}", run.stderr);
    }
}

#[tokio::test]
async fn usage_and_config_errors_exit_2_naming_what_is_wrong() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["push", "staging", "--dry-run"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("unknown cluster `staging` (configured: beta, prod)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        bin.run(&["push"]).await.code,
        2,
        "clap usage errors are 2 too"
    );

    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("0 */15 * * * *", "every 15 minutes")
        .replace("[clusters.prod]", "[clusters.prod]\nshedule = \"x\"");
    std::fs::write(&bin.config, text).unwrap();
    let run = bin.run(&["status"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("clusters.beta.schedule: `every 15 minutes` is not a cron expression"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("clusters.prod.shedule: unknown key; did you mean `schedule`?"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
}

#[tokio::test]
async fn a_token_file_readable_by_others_is_refused() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let token_file = bin.dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", bin.token)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&bin.config).unwrap().replace(
        &format!("token_env = \"{}\"", support::TOKEN_ENV),
        "token_file = \"token\"",
    );
    std::fs::write(&bin.config, text).unwrap();
    let run = bin.run(&["check"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("accessible by group or others (mode 0644)")
            && run.stderr.contains("chmod 600"),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = bin.run(&["check"]).await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn check_names_an_unreadable_project() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    support::faults(&sb, |f| f.forbidden_projects = vec![seed::PUSH_PROD.into()]);
    let run = bin.run(&["check", "--json"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let v = run.json();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["prod push project"]);
}

#[tokio::test]
async fn the_sandbox_command_prints_its_coordinates_first() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("s.json"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let info: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(info["workspace"], seed::WORKSPACE);
    assert_eq!(info["projects"]["Lock Beta Release"], seed::LOCK_BETA);
    assert_eq!(info["projects"]["Crash Reports"], seed::CRASH);
    assert_eq!(info["custom_fields"]["Fix commit"], seed::FIX_COMMIT_FIELD);
    let me = reqwest::Client::new()
        .get(format!("{}/users/me", info["base_url"].as_str().unwrap()))
        .bearer_auth(info["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_demo_starts_and_decides() {
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
        run.stdout.contains("curl -s -X POST") && run.stdout.contains(seed::LOCK_BETA),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("web/beta: may push"), "{}", run.stdout);
    for app in ["web", "docs"] {
        assert!(
            run.stdout.contains(&format!("{app}/beta: pushed")),
            "the demo's first tick pushes both sample apps: {}",
            run.stdout
        );
    }
    let current = std::fs::read_to_string(dir.path().join("hosts/beta-2/current/VERSION")).unwrap();
    assert_eq!(current, "1.1\n");
    let docs =
        std::fs::read_to_string(dir.path().join("hosts/docs-beta-2/current/install.html")).unwrap();
    assert_eq!(docs, "<p>cargo install pushgate</p>\n");
    assert!(dir
        .path()
        .join("state/apps/docs/clusters/beta/deployed.json")
        .exists());
    assert!(dir.path().join("pushgate.toml").exists() && dir.path().join("sandbox.json").exists());
}

/// The demo serves the on-call page while it pushes, as `run --http`
/// does: both apps' clusters on the overview, their JSON the CLI's.
#[tokio::test]
async fn the_demo_serves_the_on_call_page_while_it_pushes() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["demo", "--every", "1h", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut seen) = (None, Vec::new());
    while let Some(l) = lines.next_line().await.unwrap() {
        if let Some(u) = l.trim().strip_prefix("on-call page:") {
            url = u.split_whitespace().next().map(str::to_owned);
        }
        let done = l.contains("docs/beta: pushed");
        seen.push(l);
        if done {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no page URL printed: {seen:#?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for needle in [
        "/cluster/web/beta",
        "/cluster/web/prod",
        "/cluster/docs/beta",
    ] {
        assert!(html.contains(needle), "the overview links {needle}: {html}");
    }
    let status: serde_json::Value = reqwest::get(format!("{url}api/status.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clusters = status["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 3, "{status}");
    assert!(
        clusters
            .iter()
            .any(|c| c["app"] == "docs" && c["deployed"]["commit"].is_string()),
        "docs/beta was pushed before the page was read: {status}"
    );
    support::sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}

/// A demo directory the one-app demo left (its state at the root of
/// `state/`) is upgraded in place: web's state moves into
/// `state/apps/web/`, so what beta runs is still known.
#[tokio::test]
async fn a_one_app_demo_directory_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let demo = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .args(["demo", "--ticks", "1", "--every", "1s", "--dir"])
            .arg(dir.path())
            .output()
    };
    let first = support::Run::from(demo().await.unwrap());
    assert_eq!(first.code, 0, "{first:?}");
    // What the one-app demo had: its clusters at the root.
    let state = dir.path().join("state");
    std::fs::rename(state.join("apps/web/clusters"), state.join("clusters")).unwrap();
    let again = support::Run::from(demo().await.unwrap());
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("moved this demo's one-app state"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("web/beta: nothing new"),
        "the moved state still says what beta runs: {}",
        again.stdout
    );
    assert!(!state.join("clusters").exists());
}
