//! `pushgate run`, the real binary: it pushes on schedule, and on SIGTERM
//! it stops a running push at a safe point and exits 0. Progress is read
//! from its log and from FIFOs the build writes to — never from the clock.

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{self, seed, sigterm, Bin, Setup};

fn spawn_run(bin: &Bin) -> tokio::process::Child {
    support::spawn_daemon(&bin.config, &bin.token)
}

/// Reads log lines until one contains `needle`; returns every line read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        let hit = l.contains(needle);
        seen.push(l);
        if hit {
            return seen;
        }
    }
    panic!("the log ended without {needle:?}: {seen:#?}");
}

#[tokio::test]
async fn the_daemon_pushes_on_schedule_and_stops_on_sigterm() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(&bin.config, text.replace("0 */15 * * * *", "* * * * * *")).unwrap();
    let mut child = spawn_run(&bin);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        read_until(&mut lines, "\"pushed\""),
    )
    .await
    .expect("beta pushes within a minute of a schedule that fires every second");
    assert!(
        log.iter()
            .any(|l| l.contains("\"scheduled\"") && l.contains("beta")),
        "{log:#?}"
    );
    for h in 1..=3 {
        assert!(bin.current(h).is_some(), "host {h}");
    }
    sigterm(&child);
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    let pushes = sb
        .with_data(|d| d.projects[seed::PUSH_BETA].tasks.len())
        .unwrap();
    assert_eq!(pushes, 1, "later ticks found nothing new: no second task");
}

#[tokio::test]
async fn sigterm_during_a_build_stops_before_any_host_switches() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let p = probe.path().display().to_string();
    for f in ["started", "go"] {
        assert!(std::process::Command::new("mkfifo")
            .arg(probe.path().join(f))
            .status()
            .unwrap()
            .success());
    }
    let bin = Bin::with(
        &sb,
        Setup {
            // The build says it started, then waits for the test's go.
            build_command: Some(format!(
                r#"["sh", "-c", "echo started > '{p}/started'; read go < '{p}/go'; mkdir -p dist && cp -R app/. dist/"]"#
            )),
            ..Setup::default()
        },
    );
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(&bin.config, text.replace("0 */15 * * * *", "* * * * * *")).unwrap();
    let mut child = spawn_run(&bin);
    let stderr = child.stderr.take().unwrap();
    let started = probe.path().join("started");
    let said = tokio::task::spawn_blocking(move || std::fs::read_to_string(started).unwrap())
        .await
        .unwrap();
    assert_eq!(said, "started\n");
    sigterm(&child);
    // Let the build finish: the push must stop at its next safe point.
    let go = probe.path().join("go");
    tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(stderr).lines();
    while let Some(l) = lines.next_line().await.unwrap() {
        log.push_str(&l);
        log.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{log}");
    for h in 1..=3 {
        assert!(
            bin.current(h).is_none(),
            "host {h} must not switch during shutdown"
        );
    }
    let task = sb
        .with_data(|d| {
            let gid = d.projects[seed::PUSH_BETA].tasks[0].clone();
            d.tasks[&gid].clone()
        })
        .unwrap();
    assert!(!task.completed);
    assert!(
        task.stories
            .iter()
            .any(|s| s.text.contains("shutting down")),
        "{:?}",
        task.stories
    );
    assert!(!bin.path("state/clusters/beta/journal.jsonl").exists());
}
