//! The push, end to end: the real binary against the sandbox, a real git
//! repository and `local:` hosts. Assertions are what a user sees: exit
//! codes, each host's `current`, push tasks and their comments, history.

use std::os::fd::AsFd;

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;
use serde_json::json;

use crate::support::{self, seed, Bin, Raw, Setup};

/// The tasks of a project, in order, with their comments.
fn tasks(sb: &Sandbox, project: &str) -> Vec<TaskRec> {
    sb.with_data(|d| {
        d.projects[project]
            .tasks
            .iter()
            .map(|g| d.tasks[g].clone())
            .collect()
    })
    .unwrap()
}

use crate::support::comments;

fn release_of(bin: &Bin, host: usize) -> String {
    bin.current(host)
        .expect("the host has a current release")
        .trim_start_matches("releases/")
        .to_owned()
}

#[tokio::test]
async fn a_push_switches_every_host_and_records_a_completed_push_task() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");

    let release = release_of(&bin, 1);
    assert!(release.ends_with(&bin.first[..12]), "{release}");
    for h in 1..=3 {
        assert_eq!(release_of(&bin, h), release, "host {h}");
        let page = std::fs::read_to_string(bin.path(&format!("hosts/beta-{h}/current/index.html")))
            .unwrap();
        assert_eq!(page, "v1\n");
    }

    let pushes = tasks(&sb, seed::PUSH_BETA);
    assert_eq!(pushes.len(), 1);
    let t = &pushes[0];
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        t.name
            .starts_with(&format!("beta push {} · {today} ", &bin.first[..7]))
            && t.name.ends_with(" UTC"),
        "{}",
        t.name
    );
    assert!(t.completed, "a successful push completes its task");
    for needle in [
        "cluster: beta",
        "previous: (nothing deployed)",
        &format!("new: {}", bin.first),
        "Initial app",
        "run: beta-",
        "bastion: ",
    ] {
        assert!(
            t.notes.contains(needle),
            "notes lack {needle:?}: {}",
            t.notes
        );
    }
    let c = comments(t);
    assert!(c.iter().any(|c| c.starts_with("build: built")), "{c:?}");
    assert!(
        c.iter()
            .any(|c| c.starts_with("stage: 3/3 hosts") && c.contains("beta-2: ok")),
        "{c:?}"
    );
    assert!(
        c.iter().any(|c| c.starts_with("switch: 3/3 hosts now run")),
        "{c:?}"
    );

    let status = bin.run(&["status", "beta", "--json"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    let s = &status.json()["clusters"][0];
    assert_eq!(s["deployed"]["commit"], bin.first.as_str());
    assert_eq!(s["deployed"]["release"], release.as_str());
    assert_eq!(s["last_push"]["outcome"], "success");
}

#[tokio::test]
async fn nothing_new_is_exit_0_without_a_second_task_or_build() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("nothing new"), "{}", run.stdout);
    assert_eq!(tasks(&sb, seed::PUSH_BETA).len(), 1);
    assert_eq!(bin.builds(), 1);
}

#[tokio::test]
async fn a_new_commit_ships_with_its_changelog_and_a_rebuilt_artifact_is_reused() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let second = bin
        .repo
        .commit(&[("app/index.html", b"v2\n")], "Ship v2 $(reboot)\n\nbody");
    let run = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["verdict"], "push");
    assert_eq!(v["commit"], second.as_str());
    assert_eq!(v["previous"], bin.first.as_str());
    assert_eq!(v["changelog"][0]["subject"], "Ship v2 $(reboot)");
    assert_eq!(v["result"]["outcome"], "pushed");
    let page = std::fs::read_to_string(bin.path("hosts/beta-3/current/index.html")).unwrap();
    assert_eq!(page, "v2\n");
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(
        t.notes.contains(&format!("previous: {}", bin.first))
            && t.notes.contains("Ship v2 $(reboot)"),
        "{}",
        t.notes
    );
    assert_eq!(bin.builds(), 2);

    // Back to the first commit by hand: its artifact is cached, never rebuilt.
    let run = bin
        .run(&["push", "beta", "--commit", &bin.first[..8]])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("build: reused the cached artifact"),
        "{}",
        run.stdout
    );
    assert_eq!(bin.builds(), 2);
    assert_eq!(
        std::fs::read_to_string(bin.path("hosts/beta-1/current/index.html")).unwrap(),
        "v1\n"
    );
}

#[tokio::test]
async fn a_bad_commit_is_exit_2_and_changes_nothing() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    for rev in [
        "no-such-branch",
        "--upload-pack=touch /tmp/x",
        "$(reboot)",
        "deadbeefdeadbeef",
    ] {
        let arg = format!("--commit={rev}");
        let run = bin.run(&["push", "beta", &arg]).await;
        assert_eq!(run.code, 2, "{rev}: {run:?}");
        assert!(
            run.stderr.contains("is not a commit of the repository"),
            "{rev}: {}",
            run.stderr
        );
    }
    assert!(tasks(&sb, seed::PUSH_BETA).is_empty());
    assert!(bin.current(1).is_none());
}

#[tokio::test]
async fn a_failed_build_leaves_the_task_open_with_the_step_and_the_output() {
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            build_command: Some(
                r#"["sh", "-c", "echo compiling; echo 'error: missing semicolon' >&2; exit 3"]"#
                    .into(),
            ),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(bin.current(1).is_none());
    let t = tasks(&sb, seed::PUSH_BETA)
        .pop()
        .expect("a push that started has a task");
    assert!(!t.completed);
    let last = comments(&t).pop().unwrap();
    assert!(last.starts_with("push failed at step build: "), "{last}");
    assert!(
        last.contains("exited with status 3")
            && last.contains("error: missing semicolon")
            && last.contains("compiling"),
        "{last}"
    );
    let h = bin.run(&["history", "beta", "--json"]).await.json();
    assert_eq!(h["runs"][0]["outcome"], "failed");
    assert_eq!(h["runs"][0]["failed_step"], "build");

    // The next scheduled push does not rebuild the same commit, nor open a
    // second task; --commit retries.
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("not retrying") && run.stdout.contains("--commit"),
        "{}",
        run.stdout
    );
    assert_eq!(tasks(&sb, seed::PUSH_BETA).len(), 1);
    let run = bin.run(&["push", "beta", "--commit", "main"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        tasks(&sb, seed::PUSH_BETA).len(),
        2,
        "a manual retry is a push"
    );
}

#[tokio::test]
async fn a_build_that_leaves_no_output_directory_fails_clearly() {
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            build_command: Some(r#"["true"]"#.into()),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("left no directory `dist`"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn one_failed_host_stops_the_switch_on_every_host() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    // A host whose target sits under a regular file cannot be created.
    let blocked = probe.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let d = probe.path().display();
    let hosts = vec![
        format!("local:{d}/ok-1"),
        format!("local:{}/beta", blocked.display()),
        format!("local:{d}/ok-2"),
    ];
    let bin = Bin::with(
        &sb,
        Setup {
            beta_hosts: Some(hosts),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    for ok in ["ok-1", "ok-2"] {
        let host = probe.path().join(ok);
        assert!(
            std::fs::read_link(host.join("current")).is_err(),
            "{ok} must not switch"
        );
        assert_eq!(
            std::fs::read_dir(host.join("releases")).unwrap().count(),
            0,
            "{ok}'s staged release is cleaned"
        );
    }
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(!t.completed);
    let c = comments(&t);
    assert!(
        c.iter()
            .any(|c| c.contains(&format!("local:{}/beta: FAILED", blocked.display()))),
        "{c:?}"
    );
    assert!(
        c.last()
            .unwrap()
            .contains("1 of 3 hosts failed to stage (max_failed_hosts = 0); no host was switched"),
        "{c:?}"
    );

    // With one failure allowed, the two good hosts switch.
    let tolerant = Bin::with(
        &sb,
        Setup {
            beta_hosts: Some(vec![
                format!("local:{d}/ok-1"),
                format!("local:{}/beta", blocked.display()),
            ]),
            sync: "max_failed_hosts = 1".into(),
            ..Setup::default()
        },
    );
    let run = tolerant.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(std::fs::read_link(probe.path().join("ok-1/current")).is_ok());
}

#[tokio::test]
async fn held_and_busy_pushes_create_no_task() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let (s, _) = Raw::new(&sb)
        .post(
            "/tasks",
            json!({"data": {"name": "freeze for the launch", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(s, 201);
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("freeze for the launch"));

    // Another process holds beta's lock: exit 6 at once, for a push and a dry run.
    std::fs::create_dir_all(bin.path("state/clusters/beta")).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(bin.path("state/clusters/beta/lock"))
        .unwrap();
    rustix::fs::flock(
        f.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();
    for args in [&["push", "beta"][..], &["push", "beta", "--dry-run"]] {
        let run = bin.run(args).await;
        assert_eq!(run.code, 6, "{args:?}: {run:?}");
        assert!(
            run.stdout.contains("another push of beta is running"),
            "{run:?}"
        );
    }
    drop(f);
    assert!(tasks(&sb, seed::PUSH_BETA).is_empty());
    assert!(bin.current(1).is_none());
}

#[tokio::test]
async fn rollback_switches_back_and_is_recorded_then_pruning_keeps_what_it_should() {
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            sync: "keep_releases = 2".into(),
            ..Setup::default()
        },
    );
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = release_of(&bin, 1);
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r2 = release_of(&bin, 1);
    assert!(
        r1 < r2,
        "release ids grow even within one second: {r1} {r2}"
    );

    let run = bin.run(&["rollback", "beta", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["release"], r1.as_str());
    for h in 1..=3 {
        assert_eq!(release_of(&bin, h), r1, "host {h} rolled back");
    }
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(
        t.name
            .starts_with(&format!("beta rollback {}", &bin.first[..7])),
        "{}",
        t.name
    );
    assert!(t.completed);
    let h = bin.run(&["history", "beta", "--json"]).await.json();
    assert_eq!(h["runs"].as_array().unwrap().len(), 3);
    assert_eq!(h["runs"][2]["kind"], "rollback");
    assert_eq!(h["success_rate"], 1.0);
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert_eq!(s["clusters"][0]["deployed"]["release"], r1.as_str());

    // Automation stops: a lock task assigned to the token's user holds
    // the cluster, and the rolled-back commit is never picked again.
    let locks = tasks(&sb, seed::LOCK_BETA);
    let lock = locks.last().expect("the rollback created a lock task");
    assert_eq!(lock.name, format!("rolled back from {r2}: investigate"));
    assert!(!lock.completed);
    assert_eq!(lock.assignee.as_deref(), Some(seed::ME));
    let v2 = run.json()["rolled_back_commit"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        lock.notes.contains(&format!("--commit {}", &v2[..7])),
        "{}",
        lock.notes
    );
    // The branch tip is the rolled-back commit: held, not pushed again.
    let held = bin.run(&["push", "beta"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert!(
        held.stdout.contains(&format!(
            "not pushing {}: release {r2} was rolled back",
            &v2[..7]
        )),
        "{}",
        held.stdout
    );
    assert_eq!(release_of(&bin, 1), r1);
    // A named release that is not kept: refused, nothing switched.
    let run = bin
        .run(&["rollback", "beta", "--to", "20200101T000000Z-0123456789ab"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(release_of(&bin, 2), r1);
    let run = bin.run(&["rollback", "beta", "--to", "../../etc"]).await;
    assert_eq!(run.code, 2, "{run:?}");

    // Forward again: r2's commit is new relative to r1. keep_releases = 2
    // keeps the new one and the previous (r1); r2 goes.
    bin.repo.commit(&[("app/index.html", b"v3\n")], "v3");
    // A new commit is a candidate, but the lock task still holds it.
    let held = bin.run(&["push", "beta"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert!(held.stdout.contains("rolled back from"), "{}", held.stdout);
    let (st, _) = Raw::new(&sb)
        .put(
            &format!("/tasks/{}", lock.gid),
            json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r3 = release_of(&bin, 1);
    assert_eq!(bin.releases(1), vec![r1.clone(), r3.clone()]);
}

#[tokio::test]
async fn a_one_file_change_in_a_2000_file_tree_sends_about_that_file() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let files: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            (
                format!("app/f/{i:04}.txt"),
                format!("{i}").repeat(200).into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    bin.repo.commit(&refs, "2000 files");
    let full = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(full.code, 0, "{full:?}");
    let full_bytes = full.json()["result"]["hosts"][0]["bytes_sent"]
        .as_u64()
        .unwrap();

    let changed = vec![b'x'; 100_000];
    let r1 = release_of(&bin, 1);
    bin.repo
        .commit(&[("app/f/0007.txt", &changed)], "change one file");
    let inc = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(inc.code, 0, "{inc:?}");
    let inc_bytes = inc.json()["result"]["hosts"][0]["bytes_sent"]
        .as_u64()
        .unwrap();
    assert!(
        full_bytes > 800_000,
        "the full push sent the tree: {full_bytes}"
    );
    // The changed file plus rsync's file list for 2,000 names.
    assert!(
        inc_bytes < 100_000 + 80_000,
        "an incremental push sent {inc_bytes} bytes"
    );
    let unchanged = |r: &str| {
        std::fs::metadata(bin.path(&format!("hosts/beta-1/releases/{r}/f/0100.txt"))).unwrap()
    };
    use std::os::unix::fs::MetadataExt;
    let r2 = release_of(&bin, 1);
    assert_eq!(
        unchanged(&r1).ino(),
        unchanged(&r2).ino(),
        "unchanged files are hard links to the previous release"
    );
}

#[tokio::test]
async fn prod_ships_the_exact_artifact_beta_runs_and_never_rebuilds_it() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "[clusters.prod]\n",
            "[clusters.prod]\nsource = \"cluster:beta\"\n",
        ),
    )
    .unwrap();
    let prod_current = || std::fs::read_to_string(bin.path("hosts/prod-1/current/BUILD-ID")).ok();

    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("prod: nothing new: beta has deployed nothing yet"),
        "{}",
        run.stdout
    );
    assert!(tasks(&sb, seed::PUSH_PROD).is_empty());

    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    // A commit lands after beta's push: prod still ships what beta runs.
    bin.repo
        .commit(&[("app/index.html", b"not on beta\n")], "later");
    let artifact = bin.path(&format!("state/artifacts/{}", bin.first));
    std::fs::write(artifact.join("BUILD-ID"), "beta's bytes\n").unwrap();
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("ship beta's artifact"),
        "{}",
        run.stdout
    );
    assert_eq!(prod_current().as_deref(), Some("beta's bytes\n"));
    assert_eq!(bin.builds(), 1, "prod never builds");
    let t = tasks(&sb, seed::PUSH_PROD).pop().unwrap();
    assert!(
        t.name
            .starts_with(&format!("prod push {}", &bin.first[..7]))
            && t.completed,
        "{}",
        t.name
    );

    // Beta moves on; its artifact vanishes from the cache: prod fails, clearly, without building.
    let second = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    std::fs::remove_dir_all(bin.path(&format!("state/artifacts/{second}"))).unwrap();
    let run = bin.run(&["push", "prod"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("never rebuilds"), "{}", run.stderr);
    assert_eq!(bin.builds(), 2);
    assert_eq!(prod_current().as_deref(), Some("beta's bytes\n"));
}

#[tokio::test]
async fn a_run_killed_during_the_build_is_recorded_and_the_next_push_takes_over() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let p = probe.path().display().to_string();
    let fifo = probe.path().join("ready");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let bin = Bin::with(
        &sb,
        Setup {
            build_command: Some(format!(
                r#"["sh", "-c", "echo $$ > '{p}/build.pid'; echo ready > '{p}/ready'; exec sleep 600"]"#
            )),
            ..Setup::default()
        },
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["push", "beta"])
        .env(support::TOKEN_ENV, &bin.token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The build announces itself through the FIFO: no waiting on the clock.
    let said = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap())
        .await
        .unwrap();
    assert_eq!(said, "ready\n");
    // The push task is created beside the build: kill once it exists.
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        sb.until(|d| d.projects[seed::PUSH_BETA].tasks.len() == 1),
    )
    .await
    .expect("the push task is created while the build runs");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let build_pid: i32 = std::fs::read_to_string(probe.path().join("build.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(build_pid).unwrap(),
        rustix::process::Signal::KILL,
    );
    assert!(bin.current(1).is_none());
    assert!(
        bin.path("state/clusters/beta/journal.jsonl").exists(),
        "the killed run left its journal"
    );
    let killed_task = tasks(&sb, seed::PUSH_BETA)
        .pop()
        .expect("the killed run had created its task");

    let text = std::fs::read_to_string(&bin.config).unwrap();
    let fixed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("command = ") {
                r#"command = ["sh", "-c", "mkdir -p dist && cp -R app/. dist/"]"#
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&bin.config, fixed).unwrap();
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("did not finish (it stopped during step build)"),
        "{}",
        run.stdout
    );
    for h in 1..=3 {
        assert!(bin.current(h).is_some(), "host {h}");
    }
    let old = sb.with_data(|d| d.tasks[&killed_task.gid].clone()).unwrap();
    assert!(!old.completed);
    assert!(
        comments(&old).iter().any(|c| c.contains("did not finish")),
        "{:?}",
        comments(&old)
    );
    let h = bin.run(&["history", "beta", "--json"]).await.json();
    assert_eq!(h["runs"][0]["outcome"], "failed");
    assert_eq!(h["runs"][0]["failed_step"], "interrupted during build");
    assert_eq!(h["runs"][1]["outcome"], "success");
    assert!(!bin.path("state/clusters/beta/journal.jsonl").exists());
}

#[tokio::test]
async fn freeze_and_soak_hold_with_exit_4_and_say_why() {
    let sb = support::sandbox().await;
    // prod fires every second, so beta is always within 90 minutes of it.
    let bin = Bin::with(
        &sb,
        Setup {
            beta: "freeze_before = { cluster = \"prod\", duration = \"90m\" }".into(),
            ..Setup::default()
        },
    );
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "schedule = \"0 0 10,17 * * Mon-Fri\"",
            "schedule = \"* * * * * *\"\nsource = \"cluster:beta\"\nmin_soak = \"2h\"",
        ),
    )
    .unwrap();
    for args in [&["push", "beta"][..], &["push", "beta", "--dry-run"]] {
        let run = bin.run(args).await;
        assert_eq!(run.code, 4, "{args:?}: {run:?}");
        assert!(
            run.stdout.contains("beta: frozen until ") && run.stdout.contains("(prod push at "),
            "{}",
            run.stdout
        );
    }
    let s = bin.run(&["status", "beta"]).await;
    assert!(s.stdout.contains("frozen until"), "{}", s.stdout);
    assert!(tasks(&sb, seed::PUSH_BETA).is_empty());

    // Beta pushes by hand (--commit skips nothing: the freeze applies to manual pushes too).
    let run = bin.run(&["push", "beta", "--commit", "main"]).await;
    assert_eq!(run.code, 4, "{run:?}");

    // Without the freeze, beta ships; prod must wait for min_soak.
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "freeze_before = { cluster = \"prod\", duration = \"90m\" }",
            "",
        ),
    )
    .unwrap();
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let run = bin.run(&["push", "prod", "--json"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    let v = run.json();
    assert_eq!(v["reason"], "soaking");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("soaking: beta has run it only since"),
        "{v}"
    );
    assert!(tasks(&sb, seed::PUSH_PROD).is_empty());
}

#[tokio::test]
async fn beta_is_frozen_while_a_prod_push_runs() {
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            // prod's next push is far away: only the running push freezes beta.
            beta: "freeze_before = { cluster = \"prod\", duration = \"1m\" }".into(),
            ..Setup::default()
        },
    );
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace("0 0 10,17 * * Mon-Fri", "0 0 0 1 1 *"),
    )
    .unwrap();
    std::fs::create_dir_all(bin.path("state/clusters/prod")).unwrap();
    let lock = bin.path("state/clusters/prod/lock");
    std::fs::write(&lock, format!("pid {} since now\n", std::process::id())).unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    rustix::fs::flock(
        held.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout.contains("beta: frozen while prod's push runs"),
        "{}",
        run.stdout
    );
    // A prod push that was killed holds no lock, whatever its file says.
    drop(held);
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn rollback_moves_every_reachable_host_and_names_the_others() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let blocked = probe.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let good = probe.path().join("ok-1");
    let bin = Bin::with(
        &sb,
        Setup {
            beta_hosts: Some(vec![
                format!("local:{}", good.display()),
                format!("local:{}/beta", blocked.display()),
            ]),
            sync: "max_failed_hosts = 1".into(),
            ..Setup::default()
        },
    );
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = std::fs::read_link(good.join("current")).unwrap();
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_ne!(std::fs::read_link(good.join("current")).unwrap(), r1);
    let run = bin.run(&["rollback", "beta", "--json"]).await;
    assert_eq!(run.code, 1, "a host could not be rolled back: {run:?}");
    let v = run.json();
    assert!(
        v["failed_hosts"][0]
            .as_str()
            .unwrap()
            .contains("cannot read its releases"),
        "{v}"
    );
    assert_eq!(std::fs::read_link(good.join("current")).unwrap(), r1);
}

#[tokio::test]
async fn a_push_that_reaches_no_host_fails_whatever_the_tolerance() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let blocked = probe.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let bin = Bin::with(
        &sb,
        Setup {
            beta_hosts: Some(vec![format!("local:{}/beta", blocked.display())]),
            sync: "max_failed_hosts = 1".into(),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert!(
        s["clusters"][0]["deployed"].is_null(),
        "nothing is recorded as deployed: {s}"
    );
    assert!(!tasks(&sb, seed::PUSH_BETA).pop().unwrap().completed);
}

#[tokio::test]
async fn ignore_locks_pushes_past_locks_with_a_reason_but_never_past_a_freeze() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let (st, _) = Raw::new(&sb)
        .post(
            "/tasks",
            json!({"data": {"name": "DB migration; $(reboot)", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    // No reason: refused before anything happens.
    let run = bin.run(&["push", "beta", "--ignore-locks"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = bin
        .run(&["push", "beta", "--ignore-locks", "--reason", "  "])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--reason"), "{}", run.stderr);
    assert!(bin.current(1).is_none());

    let run = bin
        .run(&[
            "push",
            "beta",
            "--ignore-locks",
            "--reason",
            "hotfix for INC-42",
            "--json",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["ignored"]["reason"], "hotfix for INC-42");
    assert_eq!(v["ignored"]["locks"][0]["name"], "DB migration; $(reboot)");
    for h in 1..=3 {
        assert!(bin.current(h).is_some(), "host {h}");
    }
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(t.completed);
    assert!(
        t.notes.contains("by hand: hotfix for INC-42"),
        "{}",
        t.notes
    );
    assert!(
        t.notes.contains("ignored lock \"DB migration; $(reboot)\""),
        "{}",
        t.notes
    );

    // A freeze holds even with --ignore-locks; --ignore-freeze passes it.
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "[clusters.prod]\nschedule = \"0 0 10,17 * * Mon-Fri\"",
            "[clusters.prod]\nschedule = \"* * * * * *\"",
        )
        .replace(
            "[clusters.beta]\n",
            "[clusters.beta]\nfreeze_before = { cluster = \"prod\", duration = \"90m\" }\n",
        ),
    )
    .unwrap();
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let run = bin
        .run(&["push", "beta", "--ignore-locks", "--reason", "again"])
        .await;
    assert_eq!(run.code, 4, "{run:?}");
    let run = bin
        .run(&[
            "push",
            "beta",
            "--ignore-locks",
            "--ignore-freeze",
            "--reason",
            "the outage",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("ignored: frozen until"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_rolled_back_commit_ships_again_only_with_commit_which_clears_its_mark() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let v2 = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    assert_eq!(bin.run(&["rollback", "beta"]).await.code, 0);
    let lock = tasks(&sb, seed::LOCK_BETA).pop().unwrap();
    let (st, _) = Raw::new(&sb)
        .put(
            &format!("/tasks/{}", lock.gid),
            json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(st, 200);
    let held = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert_eq!(held.json()["reason"], "rolled-back");
    let run = bin.run(&["push", "beta", "--commit", &v2[..9]]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(release_of(&bin, 1).ends_with(&v2[..12]));
    // A person shipped it on purpose: its mark is gone, and the schedule
    // finds nothing new.
    let again = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["verdict"], "nothing-new");
    let marks = std::fs::read_to_string(bin.path("state/clusters/beta/bad.json")).unwrap();
    assert!(!marks.contains(&v2), "{marks}");
}

/// At fleet size the stage comment is a summary — counts, bytes, the
/// slowest hosts and every failed host with its cause — while the state
/// directory keeps every host's record of the run.
#[tokio::test]
async fn a_large_push_summarises_its_hosts_and_keeps_every_hosts_record() {
    let sb = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // A regular file where a directory must be: this host cannot stage.
    std::fs::write(dir.path().join("blocker"), b"not a directory").unwrap();
    let mut hosts: Vec<String> = (1..=11).map(|i| format!("local:{d}/beta-{i}")).collect();
    hosts.push(format!("local:{d}/blocker/beta-12"));
    let bin = Bin::with(
        &sb,
        Setup {
            beta_hosts: Some(hosts),
            sync: "max_failed_hosts = 1".into(),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "one failed host is tolerated: {run:?}");
    for i in 1..=11 {
        assert!(
            dir.path()
                .join(format!("beta-{i}/current/index.html"))
                .exists(),
            "beta-{i} runs the release"
        );
    }

    let pushes = tasks(&sb, seed::PUSH_BETA);
    let c = comments(&pushes[0]);
    let stage = c
        .iter()
        .find(|c| c.starts_with("stage: "))
        .unwrap_or_else(|| panic!("no stage comment: {c:?}"));
    assert!(stage.starts_with("stage: 11/12 hosts"), "{stage}");
    assert!(stage.contains("sent "), "{stage}");
    assert!(stage.contains("slowest: "), "{stage}");
    assert!(stage.contains("1 host failed:"), "{stage}");
    assert!(stage.contains("blocker/beta-12: FAILED"), "{stage}");
    assert!(
        !stage.contains("beta-7: ok"),
        "no line per healthy host at 12 hosts: {stage}"
    );
    assert!(stage.lines().count() <= 8, "{stage}");

    let history = bin.run(&["history", "beta", "--json"]).await;
    let run_id = history.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bin.path(&format!("state/clusters/beta/runs/{run_id}.hosts.json")))
            .expect("the run's hosts record is kept"),
    )
    .unwrap();
    let rec = record["hosts"].as_array().unwrap();
    assert_eq!(rec.len(), 12, "{record}");
    assert_eq!(rec.iter().filter(|h| h["stage"]["ok"] == true).count(), 11);
    let failed = rec.iter().find(|h| h["stage"]["ok"] == false).unwrap();
    assert!(
        failed["host"]
            .as_str()
            .unwrap()
            .ends_with("blocker/beta-12"),
        "{failed}"
    );
    assert!(!failed["stage"]["error"].as_str().unwrap().is_empty());
    // The page's report of the same run is still its own file.
    assert!(bin
        .path(&format!("state/clusters/beta/runs/{run_id}.json"))
        .exists());
}
