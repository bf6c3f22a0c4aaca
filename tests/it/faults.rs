//! The fault matrix (docs/reliability.md): 429 storms, 5xx, timeouts,
//! dropped connections and slow answers at each Asana call site of a push,
//! against the sandbox over real HTTP, through the real binary. Each case
//! asserts the documented exit code, what the hosts run, and that nothing
//! is lost: every write lands exactly once, now or on the next run.

use pushgate::sandbox::{Faults, Sandbox};
use serde_json::json;

use crate::support::{self, comments, seed, task, tasks, Bin, Raw, Setup};

/// How a call site misbehaves.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Every request answered 429 (Retry-After: 0).
    Storm,
    /// Every request answered 503.
    ServerError,
    /// Every answer later than the client's timeout (writes are applied
    /// all the same: the server was only slow to say so).
    Timeout,
    /// Every connection dropped before the answer (and before applying).
    Dropped,
    /// Every connection dropped after the write was applied.
    DroppedAfterApply,
    /// Two 500s, then answers: fewer than the client's attempts.
    Transient,
    /// Slow answers within the timeout.
    Slow,
}

impl Kind {
    /// Whether the client gives up on this call site.
    fn persistent(self) -> bool {
        matches!(
            self,
            Kind::Storm | Kind::ServerError | Kind::Timeout | Kind::Dropped
        )
    }

    /// Whether the write is still in the outbox when the run ends. A
    /// write that was applied but whose answer never came (a timeout, a
    /// lost answer) is found by a look-up: the client's probe for a create,
    /// the outbox's re-read before its last flush for a completion.
    fn queues(self) -> bool {
        matches!(self, Kind::Storm | Kind::ServerError | Kind::Dropped)
    }

    fn faults(self, only: &str) -> Faults {
        let mut f = Faults {
            only: Some(only.into()),
            retry_after_secs: 0,
            ..Faults::default()
        };
        match self {
            Kind::Storm => f.rate_limit_every = Some(1),
            Kind::ServerError => {
                f.fail_next = 10_000;
                f.fail_status = 503;
            }
            Kind::Timeout => {
                f.latency_ms = 700;
                f.latency_after_apply = only.starts_with("POST") || only.starts_with("PUT");
            }
            Kind::Dropped => f.drop_next = 10_000,
            Kind::DroppedAfterApply => {
                f.drop_next = 10_000;
                f.drop_after_apply = true;
            }
            Kind::Transient => {
                f.fail_next = 2;
                f.fail_status = 500;
            }
            Kind::Slow => f.latency_ms = 100,
        }
        f
    }
}

const KINDS: [Kind; 7] = [
    Kind::Storm,
    Kind::ServerError,
    Kind::Timeout,
    Kind::Dropped,
    Kind::DroppedAfterApply,
    Kind::Transient,
    Kind::Slow,
];

/// A client that gives up quickly: four attempts, a 400 ms timeout.
fn bin(sb: &Sandbox) -> Bin {
    Bin::with(
        sb,
        Setup {
            asana: "max_attempts = 4\ntimeout = \"400ms\"".into(),
            ..Setup::default()
        },
    )
}

/// The one push task of a run, with what it must say once finished.
fn assert_push_recorded_once(sb: &Sandbox, case: &str) {
    let all = tasks(sb, seed::PUSH_BETA);
    assert_eq!(
        all.len(),
        1,
        "{case}: push tasks {:?}",
        all.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let t = &all[0];
    assert!(t.completed, "{case}: the push task is not complete");
    let c = comments(t);
    for prefix in [
        "build: built",
        "stage: 3/3 hosts staged",
        "switch: 3/3 hosts now run",
        "pushed ",
    ] {
        let n = c.iter().filter(|x| x.starts_with(prefix)).count();
        assert_eq!(n, 1, "{case}: `{prefix}` {n} times in {c:?}");
    }
    assert_eq!(c.len(), 4, "{case}: {c:?}");
}

fn assert_hosts_run_one_release(bin: &Bin, case: &str) {
    let first = bin.current(1);
    assert!(first.is_some(), "{case}: no release");
    for h in 2..=3 {
        assert_eq!(bin.current(h), first, "{case}: host {h}");
    }
}

/// A write call site: the push goes on (exit 0); what Asana did not take
/// is queued and the next run applies it, once.
async fn write_site(only: &str) {
    for kind in KINDS {
        let case = format!("{only} × {kind:?}");
        let sb = support::sandbox().await;
        let bin = bin(&sb);
        sb.set_faults(kind.faults(only));
        let run = bin.run(&["push", "beta"]).await;
        assert_eq!(run.code, 0, "{case}: {run:?}");
        assert_hosts_run_one_release(&bin, &case);
        let queued = run.stderr.contains("queued in the outbox");
        assert_eq!(queued, kind.queues(), "{case}: {}", run.stderr);
        sb.set_faults(Faults::default());
        if queued {
            let next = bin.run(&["push", "beta", "--json"]).await;
            assert_eq!(next.code, 0, "{case}: {next:?}");
            let v = next.json();
            assert_eq!(v["verdict"], "nothing-new", "{case}");
            assert!(v["asana_replayed"].as_u64().unwrap() > 0, "{case}: {v}");
            assert_eq!(v["asana_queued"], 0, "{case}: {v}");
        }
        assert_push_recorded_once(&sb, &case);
        // And again: nothing is applied twice.
        assert_eq!(bin.run(&["push", "beta"]).await.code, 0, "{case}");
        assert_push_recorded_once(&sb, &case);
    }
}

#[tokio::test]
async fn the_push_task_create_under_every_fault() {
    write_site("POST /tasks").await;
}

#[tokio::test]
async fn stage_comments_under_every_fault() {
    write_site("POST /tasks/*/stories").await;
}

#[tokio::test]
async fn the_completion_under_every_fault() {
    write_site("PUT /tasks/*").await;
}

/// The gate's read: a fault the retries outlast fails closed (exit 5, no
/// task, no host touched); the others decide correctly.
#[tokio::test]
async fn the_gate_read_under_every_fault() {
    for kind in KINDS {
        let case = format!("gate × {kind:?}");
        let sb = support::sandbox().await;
        let bin = bin(&sb);
        sb.set_faults(kind.faults(&format!("GET /projects/{}/tasks", seed::LOCK_BETA)));
        let run = bin.run(&["push", "beta"]).await;
        if kind.persistent() || matches!(kind, Kind::DroppedAfterApply) {
            // A read whose answer is always lost is as good as none.
            assert_eq!(run.code, 5, "{case}: {run:?}");
            assert!(run.stdout.contains("fail closed"), "{case}: {}", run.stdout);
            assert!(bin.current(1).is_none(), "{case}");
            assert!(tasks(&sb, seed::PUSH_BETA).is_empty(), "{case}");
        } else {
            assert_eq!(run.code, 0, "{case}: {run:?}");
            assert_hosts_run_one_release(&bin, &case);
            assert_push_recorded_once(&sb, &case);
        }
    }
}

/// The crash project: its read failing leaves crash tasks for a later run;
/// its writes failing are queued and applied once.
#[tokio::test]
async fn crash_closure_under_every_fault() {
    for kind in KINDS {
        for site in ["read", "comment", "complete"] {
            let case = format!("crash {site} × {kind:?}");
            let sb = support::sandbox().await;
            let bin = bin(&sb);
            let (st, v) = Raw::new(&sb)
                .post(
                    "/tasks",
                    json!({"data": {
                        "name": "crash in login",
                        "notes": format!("stack...\nFixed-in: {}", &bin.first[..10]),
                        "projects": [seed::CRASH],
                    }}),
                )
                .await;
            assert_eq!(st, 201);
            let gid = v["data"]["gid"].as_str().unwrap().to_owned();
            let only = match site {
                "read" => format!("GET /projects/{}/tasks", seed::CRASH),
                "comment" => format!("POST /tasks/{gid}/stories"),
                _ => format!("PUT /tasks/{gid}"),
            };
            sb.set_faults(kind.faults(&only));
            let run = bin.run(&["push", "beta"]).await;
            assert_eq!(run.code, 0, "{case}: {run:?}");
            assert_hosts_run_one_release(&bin, &case);
            sb.set_faults(Faults::default());
            // Nothing new: the crash project is read again, the queue replayed.
            let next = bin.run(&["push", "beta"]).await;
            assert_eq!(next.code, 0, "{case}: {next:?}");
            let t = task(&sb, &gid);
            assert!(t.completed, "{case}: the crash task is still open");
            let c = comments(&t);
            assert_eq!(
                c.iter().filter(|x| x.starts_with("Fixed:")).count(),
                1,
                "{case}: {c:?}"
            );
            assert_push_recorded_once(&sb, &case);
        }
    }
}

#[tokio::test]
async fn asana_down_mid_push_every_write_lands_once_later_even_through_a_kill() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let gate = probe.path().join("go");
    assert!(std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap()
        .success());
    let g = gate.display();
    let bin = Bin::with(
        &sb,
        Setup {
            // The build waits until the test opens the FIFO: Asana goes
            // down while it runs, after the push task was created.
            build_command: Some(format!(
                r#"["sh", "-c", "cat '{g}' >/dev/null; mkdir -p dist && cp -R app/. dist/"]"#
            )),
            asana: "max_attempts = 3".into(),
            ..Setup::default()
        },
    );
    let push = tokio::spawn({
        let config = bin.config.clone();
        let token = bin.token.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
                .arg("--config")
                .arg(config)
                .args(["push", "beta"])
                .env(support::TOKEN_ENV, token)
                .output()
                .await
                .unwrap()
        }
    });
    // Wait for the task: the build has started (no clock involved: the
    // build blocks on the FIFO until we open it).
    let created = tokio::task::spawn_blocking({
        let gate = gate.clone();
        move || {
            let f = std::fs::OpenOptions::new().write(true).open(gate).unwrap();
            f
        }
    });
    // The FIFO opens once the build reads it; the push task is created
    // beside the build (the outbox sends while it runs): Asana goes down
    // once it exists.
    let fifo = created.await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        sb.until(|d| d.projects[seed::PUSH_BETA].tasks.len() == 1),
    )
    .await
    .expect("the push task is created while the build waits");
    sb.set_faults(Faults {
        fail_next: u32::MAX,
        fail_status: 503,
        ..Faults::default()
    });
    drop(fifo);
    let out = support::Run::from(push.await.unwrap());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("queued in the outbox"),
        "{}",
        out.stderr
    );
    assert_hosts_run_one_release(&bin, "down");
    let t = &tasks(&sb, seed::PUSH_BETA)[0];
    assert!(
        !t.completed && comments(t).is_empty(),
        "nothing reached Asana"
    );
    // status says what waits (it reads no Asana for that).
    sb.set_faults(Faults::default());
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    let waiting = s["clusters"][0]["asana_queued"].as_u64().unwrap();
    assert!(waiting >= 4, "{s}");
    let text = bin.run(&["status", "beta"]).await;
    assert!(
        text.stdout
            .contains(&format!("asana: {waiting} writes queued since")),
        "{}",
        text.stdout
    );

    // Asana is back. A run killed after applying its second replayed write
    // (before marking it done), then a run to the end.
    let killed = bin
        .run_env(
            &["push", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, "outbox:applied#2")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    let next = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(next.json()["asana_queued"], 0);
    assert_push_recorded_once(&sb, "after the outage");
}

#[test]
fn faults_aim_at_one_call_site() {
    let f = Faults {
        only: Some("POST /tasks/*/stories".into()),
        ..Faults::default()
    };
    assert!(f.applies_to("POST", "/tasks/1200000000001001/stories"));
    assert!(!f.applies_to("GET", "/tasks/1200000000001001/stories"));
    assert!(!f.applies_to("POST", "/tasks"));
    assert!(Faults::default().applies_to("GET", "/users/me"));
}

#[tokio::test]
async fn rollback_with_asana_down_still_rolls_back_and_records_it_later() {
    let sb = support::sandbox().await;
    let bin = bin(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = bin.current(1).unwrap();
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    sb.set_faults(Faults {
        fail_next: u32::MAX,
        fail_status: 503,
        ..Faults::default()
    });
    let run = bin.run(&["rollback", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("queued in the outbox"),
        "{}",
        run.stderr
    );
    for h in 1..=3 {
        assert_eq!(bin.current(h).as_ref(), Some(&r1), "host {h}");
    }
    // While Asana is down, the branch tip is the rolled-back commit: held
    // by its mark (exit 3) without asking Asana.
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    sb.set_faults(Faults::default());
    // Asana is back: the queued lock task is created before the gate reads
    // the lock project, so the push is held by it.
    let held = bin.run(&["push", "beta"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    let locks = tasks(&sb, seed::LOCK_BETA);
    assert_eq!(locks.len(), 1, "one lock task");
    assert!(
        locks[0].name.starts_with("rolled back from"),
        "{}",
        locks[0].name
    );
    let pushes = tasks(&sb, seed::PUSH_BETA);
    let rollbacks: Vec<_> = pushes
        .iter()
        .filter(|t| t.name.contains(" rollback "))
        .collect();
    assert_eq!(rollbacks.len(), 1);
    assert!(rollbacks[0].completed);
    assert_eq!(
        comments(rollbacks[0]).len(),
        1,
        "{:?}",
        comments(rollbacks[0])
    );
}

#[tokio::test]
async fn commands_with_asana_down_say_so_and_exit_as_documented() {
    let sb = support::sandbox().await;
    let bin = bin(&sb);
    sb.set_faults(Faults {
        fail_next: u32::MAX,
        fail_status: 503,
        ..Faults::default()
    });
    let lock = bin.run(&["lock", "beta", "--reason", "db"]).await;
    assert_eq!(lock.code, 1, "{lock:?}");
    assert!(lock.stderr.contains("HTTP 503"), "{}", lock.stderr);
    let dry = bin.run(&["push", "beta", "--dry-run"]).await;
    assert_eq!(dry.code, 5, "{dry:?}");
    // status reports what it knows and fails: the locks are unknown.
    let status = bin.run(&["status", "beta", "--json"]).await;
    assert_eq!(status.code, 1, "{status:?}");
    assert_eq!(status.json()["clusters"][0]["lock_state"], "unknown");
    let check = bin.run(&["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    assert!(!format!("{lock:?}{dry:?}{status:?}{check:?}").contains("panicked"));
}
