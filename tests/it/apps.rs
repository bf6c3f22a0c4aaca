//! Many apps on one bastion (`[apps.NAME]`): each app pushes, holds and
//! fails on its own; the daemon bounds pushes over all of them
//! (`max_concurrent_pushes`) and keeps the shared token under Asana's
//! concurrency limits. The real binary, real repositories, `local:` hosts.

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::apps::Apps;
use crate::support::{self, add_lock, sigterm, tasks};

/// A new commit on `app`'s branch: `index.html` says `text`.
fn commit(world: &Apps, app: &str, text: &str) -> String {
    world
        .app(app)
        .repo
        .commit(&[("app/index.html", format!("{text}\n").as_bytes())], text)
}

#[tokio::test]
async fn a_command_about_one_app_needs_app_and_views_cover_every_app() {
    let sb = support::sandbox().await;
    let world = Apps::new(&sb, &["web", "api"], "0 */15 * * * *", "", |_| {
        String::new()
    })
    .await;

    let r = world.run(&["push", "beta"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("2 apps (api, web)") && r.stderr.contains("--app NAME"),
        "{}",
        r.stderr
    );
    let r = world.run(&["--app", "nope", "push", "beta"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("unknown app `nope`"), "{}", r.stderr);
    assert!(tasks(&sb, &world.app("web").push_beta).is_empty());

    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let s = world.run(&["status", "--json"]).await;
    assert_eq!(s.code, 0, "{s:?}");
    let rows: Vec<(String, bool)> = s.json()["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["app"].as_str().unwrap().to_owned(),
                c["deployed"].is_object(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("api".to_owned(), false), ("web".to_owned(), true)],
        "{}",
        s.stdout
    );
    let text = world.run(&["status"]).await.stdout;
    assert!(text.contains("APP"), "{text}");
    let only = world
        .run(&["--app", "api", "status", "--json"])
        .await
        .json();
    assert_eq!(only["clusters"].as_array().unwrap().len(), 1, "{only}");
}

#[tokio::test]
async fn each_app_pushes_into_its_own_projects_hosts_and_state_and_a_lock_holds_only_its_app() {
    let sb = support::sandbox().await;
    let world = Apps::new(&sb, &["web", "api"], "0 */15 * * * *", "", |_| {
        String::new()
    })
    .await;
    let (web, api) = (world.app("web"), world.app("api"));

    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(world.current("web", 1).is_some() && world.current("web", 2).is_some());
    assert_eq!(world.served("web", 1).as_deref(), Some("web v1\n"));
    assert_eq!(world.current("api", 1), None, "api was not pushed");
    assert_eq!(world.builds("api"), 0);
    let pushed = tasks(&sb, &web.push_beta);
    assert_eq!(pushed.len(), 1);
    assert!(
        pushed[0]
            .name
            .starts_with(&format!("web/beta push {}", &web.first[..7])),
        "{}",
        pushed[0].name
    );
    assert!(pushed[0].completed);
    assert!(tasks(&sb, &api.push_beta).is_empty());
    assert!(world
        .state()
        .join("state/apps/web/clusters/beta/deployed.json")
        .exists());
    assert!(!world
        .state()
        .join("state/apps/api/clusters/beta/deployed.json")
        .exists());

    // A lock on api's beta holds api, not web.
    add_lock(&sb, &api.lock_beta, "api migration").await;
    let held = world.run(&["--app", "api", "push", "beta"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert!(held.stdout.contains("api migration"), "{}", held.stdout);
    commit(&world, "web", "web v2");
    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(world.served("web", 2).as_deref(), Some("web v2\n"));
    assert_eq!(world.current("api", 1), None);
    assert!(tasks(&sb, &api.push_beta).is_empty());
    // The same lock says nothing about web's status, everything about api's.
    let s = world.run(&["status", "--json"]).await.json();
    for c in s["clusters"].as_array().unwrap() {
        let locks = c["locks"].as_array().map_or(0, Vec::len);
        let want = usize::from(c["app"] == "api");
        assert_eq!(locks, want, "{c}");
    }
}

#[tokio::test]
async fn one_apps_failed_build_leaves_every_other_app_alone() {
    let sb = support::sandbox().await;
    let world = Apps::new(&sb, &["web", "api"], "0 */15 * * * *", "", |_| {
        String::new()
    })
    .await;
    world.set_build(
        "api",
        r#"["sh", "-c", "echo 'api cannot build' >&2; exit 7"]"#,
    );

    let failed = world.run(&["--app", "api", "push", "beta"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(world.current("api", 1), None);
    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(world.served("web", 1).as_deref(), Some("web v1\n"));
    let api_tasks = tasks(&sb, &world.app("api").push_beta);
    assert_eq!(api_tasks.len(), 1);
    assert!(
        !api_tasks[0].completed,
        "the failed push stays open for on-call"
    );
    let web_tasks = tasks(&sb, &world.app("web").push_beta);
    assert!(web_tasks.len() == 1 && web_tasks[0].completed);
    // `history` shows each app its own outcome.
    let h = world.run(&["history", "beta", "--json"]).await;
    assert_eq!(h.code, 0, "{h:?}");
    assert!(
        h.stdout.contains("\"app\":\"api\"") || h.stdout.contains("\"app\": \"api\""),
        "{}",
        h.stdout
    );
}

#[tokio::test]
async fn a_push_killed_in_one_app_blocks_nothing_in_another_and_its_next_run_recovers() {
    let sb = support::sandbox().await;
    let world = Apps::new(&sb, &["web", "api"], "0 */15 * * * *", "", |_| {
        String::new()
    })
    .await;
    assert_eq!(world.run(&["--app", "web", "push", "beta"]).await.code, 0);
    let v1 = world.current("web", 1).unwrap();
    commit(&world, "web", "web v2");

    let killed = world
        .run_env(
            &["--app", "web", "push", "beta"],
            &[(pushgate::adapters::failpoint::ENV, "switch:host")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    let split = [world.current("web", 1), world.current("web", 2)];
    assert_ne!(split[0], split[1], "one host switched, the other not");

    // api is another app: its lock file and journal are its own.
    let r = world.run(&["--app", "api", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(world.served("api", 2).as_deref(), Some("api v1\n"));

    let s = world
        .run(&["--app", "web", "status", "--json"])
        .await
        .json();
    assert!(s["clusters"][0]["interrupted_run"].is_string(), "{s}");
    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for n in 1..=2 {
        assert_eq!(
            world.served("web", n).as_deref(),
            Some("web v2\n"),
            "host {n}"
        );
        assert_ne!(world.current("web", n).as_deref(), Some(v1.as_str()));
    }
    assert!(!world
        .state()
        .join("state/apps/web/clusters/beta/journal.jsonl")
        .exists());
}

#[tokio::test]
async fn one_apps_old_state_at_the_root_is_not_silently_dropped_by_a_config_with_apps() {
    let sb = support::sandbox().await;
    let world = Apps::new(&sb, &["web"], "0 */15 * * * *", "", |_| String::new()).await;
    // What one app's pushgate left under the root before `[apps]` came.
    std::fs::create_dir_all(world.state().join("state/clusters/beta")).unwrap();
    std::fs::write(
        world.state().join("state/clusters/beta/deployed.json"),
        "{}",
    )
    .unwrap();
    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("state/clusters") && r.stderr.contains("state/apps/NAME"),
        "{}",
        r.stderr
    );
    assert_eq!(world.current("web", 1), None);
    assert_eq!(world.builds("web"), 0);
    // Moved as the message says, the app's state is where its config says.
    std::fs::create_dir_all(world.state().join("state/apps/web")).unwrap();
    std::fs::rename(
        world.state().join("state/clusters"),
        world.state().join("state/apps/web/clusters"),
    )
    .unwrap();
    std::fs::remove_file(
        world
            .state()
            .join("state/apps/web/clusters/beta/deployed.json"),
    )
    .unwrap();
    let r = world.run(&["--app", "web", "push", "beta"]).await;
    assert_eq!(r.code, 0, "{r:?}");
}

fn mkfifo(path: &std::path::Path) {
    assert!(std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success());
}

fn spawn_daemon(world: &Apps) -> tokio::process::Child {
    support::spawn_daemon(&world.config, &world.token)
}

struct Log {
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<serde_json::Value>,
}

impl Log {
    /// Every line, once the daemon has exited: its warnings and errors,
    /// for a failure to say why.
    async fn troubles(mut self) -> Vec<serde_json::Value> {
        while let Ok(Some(l)) = self.lines.next_line().await {
            self.seen
                .push(serde_json::from_str(&l).unwrap_or(serde_json::json!({"raw": l})));
        }
        self.seen
            .into_iter()
            .filter(|v| v["level"] != "INFO" && v["level"] != "DEBUG")
            .collect()
    }

    fn of(child: &mut tokio::process::Child) -> Log {
        Log {
            lines: BufReader::new(child.stderr.take().unwrap()).lines(),
            seen: Vec::new(),
        }
    }

    /// The first line read so far, or read from now on, that satisfies
    /// `hit`; its index in `seen`.
    async fn until(&mut self, what: &str, hit: impl Fn(&serde_json::Value) -> bool) -> usize {
        if let Some(i) = self.seen.iter().position(&hit) {
            return i;
        }
        let read = async {
            while let Some(l) = self.lines.next_line().await.unwrap() {
                let v: serde_json::Value =
                    serde_json::from_str(&l).unwrap_or(serde_json::json!({"raw": l}));
                let found = hit(&v);
                self.seen.push(v);
                if found {
                    return Some(self.seen.len() - 1);
                }
            }
            None
        };
        match tokio::time::timeout(std::time::Duration::from_secs(120), read).await {
            Ok(Some(i)) => i,
            _ => panic!("the log ended without {what}: {:#?}", self.seen),
        }
    }
}

fn message(v: &serde_json::Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

fn app_of(v: &serde_json::Value) -> Option<&str> {
    v["fields"]["app"]
        .as_str()
        .or_else(|| v["span"]["app"].as_str())
}

#[tokio::test]
async fn the_daemon_runs_at_most_max_concurrent_pushes_over_all_apps_and_the_rest_wait_their_turn()
{
    let sb = support::sandbox().await;
    let names = ["web", "api", "db"];
    let world = Apps::new(
        &sb,
        &names,
        "* * * * * *",
        "max_concurrent_pushes = 2",
        |_| String::new(),
    )
    .await;
    let d = world.state().display().to_string();
    for name in names {
        mkfifo(&world.path(&format!("{name}/go")));
        // The build says it started, then waits for the test's go.
        world.set_build(
            name,
            &format!(
                r#"["sh", "-c", "echo started >> '{d}/{name}/started.log'; read go < '{d}/{name}/go'; mkdir -p dist && cp -R app/. dist/ && echo built >> '{d}/{name}/builds.log'"]"#
            ),
        );
    }
    let mut child = spawn_daemon(&world);
    let mut log = Log::of(&mut child);
    let w = log
        .until("a push waiting for its turn", |v| {
            message(v).starts_with("waiting for a turn")
        })
        .await;
    let waiting = app_of(&log.seen[w]).unwrap().to_owned();
    let running: Vec<&str> = names.iter().copied().filter(|n| *n != waiting).collect();
    assert!(
        !world.path(&format!("{waiting}/started.log")).exists(),
        "{waiting} waits: its build has not begun"
    );
    // One running push finishes; only then does the waiting app's begin.
    let first = running[0].to_owned();
    let go = world.path(&format!("{first}/go"));
    tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    let done = log
        .until("the first push done", |v| {
            message(v) == "pushed" && app_of(v) == Some(first.as_str())
        })
        .await;
    for name in [running[1], waiting.as_str()] {
        let go = world.path(&format!("{name}/go"));
        tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
            .await
            .unwrap();
    }
    for name in [running[1], waiting.as_str()] {
        log.until("every push done", |v| {
            message(v) == "pushed" && app_of(v) == Some(name)
        })
        .await;
    }
    let waiting_began = log
        .seen
        .iter()
        .position(|v| v["span"]["app"].as_str() == Some(waiting.as_str()))
        .expect("the waiting app's push logged its steps");
    assert!(
        waiting_began > done,
        "{waiting}'s push began (line {waiting_began}) only after {} finished (line {done}): {:#?}",
        running[0],
        log.seen
    );
    sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    for name in names {
        assert_eq!(
            world.served(name, 1),
            Some(format!("{name} v1\n")),
            "{name}"
        );
        assert_eq!(world.builds(name), 1, "{name}");
        assert_eq!(tasks(&sb, &world.app(name).push_beta).len(), 1, "{name}");
    }
}

/// Ten apps, each with a beta firing every second, on one daemon and one
/// token, against a sandbox whose limits are 4 reads and 2 writes in
/// flight, each request taking a while so that pushes overlap there; with
/// `limited`, the config's `[asana]` says the same limits. Waits until
/// every app pushed; returns how many 429s the sandbox answered.
async fn ten_apps_at_once(limited: bool) -> u64 {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| {
        f.concurrent_reads = 4;
        f.concurrent_writes = 2;
        f.latency_ms = 30;
    });
    let names: Vec<String> = (1..=10).map(|i| format!("app{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let world = Apps::new(
        &sb,
        &refs,
        "* * * * * *",
        "max_concurrent_pushes = 10",
        |_| String::new(),
    )
    .await;
    if limited {
        let text = std::fs::read_to_string(&world.config).unwrap();
        let text = text.replace(
            "retry_delay = \"1ms\"",
            "retry_delay = \"1ms\"\nconcurrent_reads = 4\nconcurrent_writes = 2",
        );
        std::fs::write(&world.config, text).unwrap();
    }
    let mut child = spawn_daemon(&world);
    let mut log = Log::of(&mut child);
    for name in &refs {
        log.until("every app pushed", |v| {
            message(v) == "pushed" && app_of(v) == Some(name)
        })
        .await;
    }
    sigterm(&child);
    let code = child.wait().await.unwrap().code();
    if code != Some(0) {
        panic!("the daemon exited {code:?}: {:#?}", log.troubles().await);
    }
    for name in &refs {
        assert_eq!(
            world.served(name, 1),
            Some(format!("{name} v1\n")),
            "{name}"
        );
        let t = tasks(&sb, &world.app(name).push_beta);
        if limited {
            assert!(t.len() == 1 && t[0].completed, "{name}: {t:?}");
        } else if !(t.len() == 1 && t[0].completed) {
            // Past Asana's limits a write may run out of tries: it waits in
            // the app's outbox for the next run, and status says so.
            let s = world
                .run(&["--app", name, "status", "beta", "--json"])
                .await;
            let queued = s.json()["clusters"][0]["asana_queued"]
                .as_u64()
                .unwrap_or(0);
            assert!(
                queued > 0,
                "{name}: no task and nothing queued: {t:?} {s:?}"
            );
        }
    }
    sb.rate_limited()
}

/// Through one token the client keeps its requests in flight under
/// `[asana]`'s limits, so Asana (here the sandbox, enforcing the same
/// limits) never answers 429.
#[tokio::test]
async fn ten_apps_at_once_stay_under_asanas_concurrency_limits() {
    assert_eq!(ten_apps_at_once(true).await, 0, "no request met a 429");
}

/// Without the limits in the config the sandbox's are met (and the pushes
/// still land, after waiting out `Retry-After`): what makes the test above
/// able to fail.
#[tokio::test]
async fn without_the_limits_ten_apps_at_once_meet_429s_and_still_push() {
    assert!(
        ten_apps_at_once(false).await > 0,
        "ten pushes at once exceed two writes in flight"
    );
}
