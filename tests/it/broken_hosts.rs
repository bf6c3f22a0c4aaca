//! Pushes to hosts that are broken for real (`support::hosts`): sshd
//! stopped, no route, a disk too small for the artifact, a TARGET the ssh
//! user may not write, a host that never answers. Each failed host is named
//! with its cause on stdout and in the push task's stage comment;
//! `max_failed_hosts` decides, and when staging fails no host's `current`
//! changes. Needs root and OpenSSH; skipped without them, never under CI.

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;

use crate::support::hosts::{self, Hosts, Kind};
use crate::support::{self, seed, Bin, Run, Setup};

fn last_push_task(sb: &Sandbox) -> TaskRec {
    sb.with_data(|d| {
        let gid = d.projects[seed::PUSH_BETA].tasks.last().cloned();
        gid.map(|g| d.tasks[&g].clone())
    })
    .unwrap()
    .expect("a push task")
}

use crate::support::comments;

/// Each host's release (`current` without `releases/`).
fn currents(hosts: &Hosts, n: usize) -> Vec<Option<String>> {
    (0..n)
        .map(|i| {
            hosts
                .current(i)
                .map(|c| c.trim_start_matches("releases/").to_owned())
        })
        .collect()
}

fn check(run: &Run, code: i32, hosts: &Hosts) {
    assert_eq!(run.code, code, "{run:?}\n{}", hosts.logs());
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// 1 MiB that does not compress: more than a `Kind::Tmpfs { kib: 512 }` holds.
fn big_file() -> Vec<u8> {
    let mut x: u32 = 2463534242;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// How a disk-full host's error shows it, one of these.
const DISK_FULL: &str = "No space left on device|KiB free, the artifact is 1.0 MiB";

/// The line of the stage comment about `host`.
fn line_of<'c>(comment: &'c str, host: &str) -> &'c str {
    comment
        .lines()
        .find(|l| l.starts_with(&format!("- {host}: ")))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{comment}"))
}

#[tokio::test]
async fn each_broken_host_is_named_with_its_cause_and_no_host_switches() {
    if let Some(why) = hosts::unavailable() {
        return hosts::skip(&why);
    }
    let kinds = [
        Kind::Plain,              // 1: healthy
        Kind::Plain,              // 2: sshd stopped
        Kind::Plain,              // 3: no route
        Kind::Tmpfs { kib: 512 }, // 4: disk full
        Kind::Deploy,             // 5: permission denied
        Kind::Plain,              // 6: never answers
    ];
    let mut hosts = match Hosts::start_with(&kinds).await {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            // Up to 4 failed hosts are tolerated; 5 are not.
            sync: format!(
                "max_failed_hosts = 4\n{}",
                hosts.sync_toml_with_timeout("20s")
            ),
            beta: hosts.cluster_toml(),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    let specs = hosts.specs();

    // Every host takes the first, small release.
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0, &hosts);
    let r1 = currents(&hosts, 6)[0].clone().expect("host 1 switched");
    assert_eq!(currents(&hosts, 6), vec![Some(r1.clone()); 6]);

    // Then each breaks in its own way, and the next release holds 1 MiB.
    hosts.stop_sshd(1).await;
    hosts.unplug(2);
    hosts.deny_writes(4);
    hosts.stall(5).await;
    let second = bin
        .repo
        .commit(&[("app/big.bin", &big_file())], "a big asset");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);

    // Nothing switched, and the healthy host lost what it staged.
    assert_eq!(currents(&hosts, 6), vec![Some(r1.clone()); 6], "{run:?}");
    assert_eq!(hosts.releases(0), vec![r1.clone()]);
    assert!(
        !hosts.releases(3).iter().any(|r| r.ends_with(&second[..12])),
        "the full disk keeps no partial release: {:?}",
        hosts.releases(3)
    );

    // stdout and the stage comment name every failed host and its cause.
    let t = last_push_task(&sb);
    assert!(!t.completed);
    let c = comments(&t);
    let stage = c
        .iter()
        .find(|c| c.starts_with("stage: 1/6 hosts staged"))
        .unwrap_or_else(|| panic!("{c:#?}"));
    assert!(line_of(stage, &specs[0]).contains(": ok, "), "{stage}");
    for (i, cause, evidence) in [
        (1, "unreachable: connection refused", "Connection refused"),
        (2, "unreachable: no route to host", "No route to host"),
        // rsync's own words, or, when the dying receiver took them along,
        // what pushgate read of the host's free space afterwards.
        (3, "disk full", DISK_FULL),
        (4, "permission denied", "Permission denied"),
        (5, "timed out after 20s (sync.host_timeout)", ""),
    ] {
        let line = line_of(stage, &specs[i]);
        let expect = format!("- {}: FAILED after 1 attempt: {cause}", specs[i]);
        assert!(
            line.starts_with(&expect),
            "{line}\nexpected: {expect}\n{run:?}"
        );
        assert!(evidence.split('|').any(|e| line.contains(e)), "{line}");
        assert!(
            run.stdout.contains(line),
            "stdout names it too: {}",
            run.stdout
        );
    }
    let last = c.last().unwrap();
    assert!(
        last.contains("push failed at step stage: 5 of 6 hosts failed to stage (max_failed_hosts = 4); no host was switched"),
        "{last}"
    );
    assert!(
        run.stderr.contains("5 of 6 hosts failed to stage"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn max_failed_hosts_lets_tolerated_failures_through_and_stops_at_one_more() {
    if let Some(why) = hosts::unavailable() {
        return hosts::skip(&why);
    }
    let mut hosts =
        match Hosts::start_with(&[Kind::Plain, Kind::Plain, Kind::Tmpfs { kib: 512 }]).await {
            Ok(h) => h,
            Err(why) => return hosts::skip(&why),
        };
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            sync: format!("max_failed_hosts = 1\n{}", hosts.sync_toml()),
            beta: hosts.cluster_toml(),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    let specs = hosts.specs();
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0, &hosts);
    let r1 = currents(&hosts, 3)[0].clone().unwrap();

    // Host 3's disk cannot take the big release: one failure is tolerated,
    // hosts 1 and 2 run it, host 3 keeps the old one.
    bin.repo
        .commit(&[("app/big.bin", &big_file())], "a big asset");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0, &hosts);
    let now = currents(&hosts, 3);
    let r2 = now[0].clone().unwrap();
    assert_ne!(r1, r2);
    assert_eq!(
        now,
        vec![Some(r2.clone()), Some(r2.clone()), Some(r1.clone())]
    );
    let t = last_push_task(&sb);
    assert!(t.completed, "{:?}", comments(&t));
    let switch = comments(&t)
        .into_iter()
        .find(|c| c.starts_with("switch: 2/3 hosts now run"))
        .unwrap_or_else(|| panic!("{:?}", comments(&t)));
    let line = line_of(&switch, &specs[2]);
    assert!(
        line.contains("failed to stage: disk full: ")
            && DISK_FULL.split('|').any(|e| line.contains(e)),
        "{line}"
    );

    // A second broken host is one too many: nobody moves.
    hosts.stop_sshd(1).await;
    bin.repo.commit(&[("app/index.html", b"v3\n")], "v3");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);
    assert_eq!(
        currents(&hosts, 3),
        vec![Some(r2.clone()), Some(r2), Some(r1)],
        "{run:?}"
    );
    let t = last_push_task(&sb);
    assert!(!t.completed);
    assert!(
        comments(&t)
            .last()
            .unwrap()
            .contains("2 of 3 hosts failed to stage (max_failed_hosts = 1); no host was switched"),
        "{:?}",
        comments(&t)
    );
}
