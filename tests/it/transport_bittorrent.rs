//! `sync.transport = "bittorrent"` against real parts: sshd hosts on a
//! bridge with the bastion (`support::hosts`, `Net::Switch`), Debian's
//! `opentracker` and `aria2c` on both sides, the real binary. A full push
//! and an incremental one (unchanged files hard-linked from the release
//! the host runs), a host that never finishes, and a kill -9 in the
//! middle of the transfer: the stage barrier, `max_failed_hosts` and the
//! `current` invariants are those of rsync.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use pushgate::sandbox::Sandbox;

use crate::support::hosts::{self, Hosts, Kind, Net};
use crate::support::{self, seed, Bin, Run, Setup};

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = hosts::unavailable() {
        return Some(why);
    }
    let missing: Vec<&str> = ["aria2c", "opentracker", "tc", "setsid"]
        .into_iter()
        .filter(|p| {
            !["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(p).is_file())
        })
        .collect();
    (!missing.is_empty()).then(|| format!("not installed: {}", missing.join(", ")))
}

/// `n` plain hosts on a bridge with the bastion; `None`, the test
/// skipped, where they cannot run here.
async fn swarm(n: usize) -> Option<Hosts> {
    if let Some(why) = unavailable() {
        hosts::skip(&why);
        return None;
    }
    match Hosts::start_switched(n, None, None).await {
        Ok(h) => Some(h),
        Err(why) => {
            hosts::skip(&why);
            None
        }
    }
}

/// A port nothing listens on now, for the tracker.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An artifact with what a torrent cannot carry: an executable, an empty
/// file, a symlink, an empty directory; and 300 KiB that never change.
const BUILD: &str = r#"["sh", "-c", "mkdir -p dist/empty-dir && cp -R app/. dist/ && : > dist/empty && ln -s index.html dist/link && printf '#!/bin/sh\necho hi\n' > dist/run.sh && chmod 0755 dist/run.sh && dd if=/dev/zero of=dist/big.bin bs=1024 count=300 2>/dev/null"]"#;

fn bin(sb: &Sandbox, hosts: &Hosts, extra: &str) -> Bin {
    bin_with(sb, hosts, extra, BUILD, free_port())
}

/// [`bin`] with its own build command and tracker port.
fn bin_with(sb: &Sandbox, hosts: &Hosts, extra: &str, build: &str, port: u16) -> Bin {
    Bin::with(sb, setup(hosts, extra, build, port))
}

/// The setup of [`bin_with`].
fn setup(hosts: &Hosts, extra: &str, build: &str, port: u16) -> Setup {
    let tracker = format!("http://{}:{port}/announce", hosts.bastion_addr().unwrap(),);
    Setup {
        sync: format!(
            "{}transport = \"bittorrent\"\ntracker = \"{tracker}\"\n{extra}",
            hosts.sync_toml_with_timeout("60s")
        ),
        beta: hosts.cluster_toml(),
        beta_hosts: Some(hosts.specs()),
        build_command: Some(build.into()),
        ..Setup::default()
    }
}

/// Every aria2c running on a host: (host, command line).
fn aria2c_on_hosts(hosts: &Hosts) -> Vec<(usize, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let n = pid.parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if !cmd.starts_with("aria2c ") {
                return None;
            }
            Some((hosts.host_of(n)?, cmd))
        })
        .collect()
}

/// The comments on the newest push task.
fn comments(sb: &Sandbox) -> Vec<String> {
    sb.with_data(|d| {
        let g = d.projects[seed::PUSH_BETA].tasks.last().unwrap().clone();
        crate::support::comments(&d.tasks[&g])
    })
    .unwrap()
}

fn check(run: &Run, code: i32, hosts: &Hosts) {
    assert_eq!(run.code, code, "{run:?}\n{}", hosts.logs());
}

fn release(hosts: &Hosts, i: usize) -> Option<String> {
    hosts
        .current(i)
        .map(|c| c.trim_start_matches("releases/").to_owned())
}

/// Every entry of `a` is in `b` with the same kind, bytes, mode and
/// modification time (to the nanosecond), and nothing else is.
fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    let list = |root: &Path| -> Vec<String> {
        let mut v = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.symlink_metadata().unwrap().is_dir() {
                    stack.push(p.clone());
                }
                v.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
        v.sort();
        v
    };
    assert_eq!(list(a), list(b), "{what}: the same entries");
    for rel in list(a) {
        let (x, y) = (a.join(&rel), b.join(&rel));
        let (mx, my) = (x.symlink_metadata().unwrap(), y.symlink_metadata().unwrap());
        assert_eq!(mx.file_type(), my.file_type(), "{what}: {rel}");
        if mx.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&x).unwrap(),
                std::fs::read_link(&y).unwrap()
            );
            continue;
        }
        assert_eq!(
            mx.permissions().mode() & 0o7777,
            my.permissions().mode() & 0o7777,
            "{what}: mode of {rel}"
        );
        if mx.is_file() {
            assert_eq!(
                std::fs::read(&x).unwrap(),
                std::fs::read(&y).unwrap(),
                "{what}: {rel}"
            );
            assert_eq!(
                (mx.mtime(), mx.mtime_nsec()),
                (my.mtime(), my.mtime_nsec()),
                "{what}: time of {rel}"
            );
        }
    }
}

/// No stage scratch left on the hosts, and no aria2c running on one (the
/// switch stopped every host's seeder).
fn assert_no_scratch(hosts: &Hosts, n: usize, what: &str) {
    let seeding = aria2c_on_hosts(hosts);
    assert!(seeding.is_empty(), "{what}: still seeding: {seeding:?}");
    for i in 0..n {
        let left: Vec<String> = std::fs::read_dir(hosts.dir(i).join("releases"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".bt") || n.ends_with(".aria2"))
            .collect();
        assert!(left.is_empty(), "{what}: host {} keeps {left:?}", i + 1);
    }
}

#[tokio::test]
async fn a_swarm_stages_every_host_and_an_incremental_push_links_what_did_not_change() {
    let Some(hosts) = swarm(3).await else {
        return;
    };
    let sb = support::sandbox().await;
    let bin = bin(&sb, &hosts, "");

    let run = bin.run(&["-vv", "push", "beta", "--json"]).await;
    check(&run, 0, &hosts);
    let r1 = release(&hosts, 0).expect("host 1 switched");
    let artifact = bin.path(&format!("state/artifacts/{}", bin.first));
    for i in 0..3 {
        assert_eq!(release(&hosts, i).as_deref(), Some(r1.as_str()));
        assert_same_tree(
            &artifact,
            &hosts.dir(i).join("releases").join(&r1),
            &format!("push 1, host {}", i + 1),
        );
    }
    assert_eq!(hosts.sessions(), vec![2, 2, 2], "{}", hosts.logs());
    assert_no_scratch(&hosts, 3, "push 1");
    assert!(!bin.path("state/clusters/beta/bt").exists());

    let second = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 0, &hosts);
    let r2 = release(&hosts, 0).expect("host 1 switched");
    assert_ne!(r1, r2);
    let artifact = bin.path(&format!("state/artifacts/{second}"));
    for i in 0..3 {
        assert_eq!(release(&hosts, i).as_deref(), Some(r2.as_str()));
        let (old, new) = (
            hosts.dir(i).join("releases").join(&r1),
            hosts.dir(i).join("releases").join(&r2),
        );
        assert_same_tree(&artifact, &new, &format!("push 2, host {}", i + 1));
        // What did not change is the same file as in the release the
        // host ran; what changed is not.
        let ino = |d: &Path, f: &str| std::fs::metadata(d.join(f)).unwrap().ino();
        for f in ["big.bin", "run.sh", "lib/util.js"] {
            assert_eq!(ino(&old, f), ino(&new, f), "host {}: {f}", i + 1);
        }
        assert_ne!(ino(&old, "index.html"), ino(&new, "index.html"));
    }
    assert_eq!(hosts.sessions(), vec![4, 4, 4], "{}", hosts.logs());
    assert_no_scratch(&hosts, 3, "push 2");
    let t = sb
        .with_data(|d| {
            let g = d.projects[seed::PUSH_BETA].tasks.last().unwrap().clone();
            d.tasks[&g].completed
        })
        .unwrap();
    assert!(t, "the push task is complete");
}

#[tokio::test]
async fn a_host_that_never_finishes_stops_the_switch_and_the_others_lose_what_they_staged() {
    let Some(mut hosts) = swarm(3).await else {
        return;
    };
    let sb = support::sandbox().await;
    let bin = bin(&sb, &hosts, "");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0, &hosts);
    let r1 = release(&hosts, 0).unwrap();

    // Host 3's bittorrent stage never gets going; its timeout is short.
    hosts.stall_matching(2, "aria2c").await;
    let cfg = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        cfg.replace("host_timeout = \"60s\"", "host_timeout = \"6s\""),
    )
    .unwrap();
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);
    for i in 0..3 {
        assert_eq!(
            release(&hosts, i).as_deref(),
            Some(r1.as_str()),
            "no host switched"
        );
    }
    for i in 0..2 {
        assert_eq!(hosts.releases(i), vec![r1.clone()], "host {}", i + 1);
    }
    assert_no_scratch(&hosts, 2, "after the failed stage");
    let specs = hosts.specs();
    let c = comments(&sb);
    let last = c.last().unwrap();
    assert!(
        last.contains("1 of 3 hosts failed to stage")
            && last.contains(&format!("{}: timed out", specs[2])),
        "{last}"
    );
}

#[tokio::test]
async fn killed_mid_transfer_the_next_run_converges_and_leaves_no_swarm_behind() {
    let Some(hosts) = swarm(3).await else {
        return;
    };
    let sb = support::sandbox().await;
    let bin = bin(&sb, &hosts, "");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0, &hosts);
    let r1 = release(&hosts, 0).unwrap();

    let v2 = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    // One host staged, the others still fetching.
    let killed = bin
        .run_env(
            &["push", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, "stage:host")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    for i in 0..3 {
        assert_eq!(
            release(&hosts, i).as_deref(),
            Some(r1.as_str()),
            "host {}",
            i + 1
        );
    }
    assert!(bin.path("state/clusters/beta/journal.jsonl").exists());

    let next = bin.run(&["push", "beta", "--json"]).await;
    check(&next, 0, &hosts);
    assert!(next.json()["recovered"].is_object(), "{}", next.stdout);
    let now = release(&hosts, 0).unwrap();
    assert!(now.ends_with(&v2[..12]), "{now}");
    let artifact = bin.path(&format!("state/artifacts/{v2}"));
    for i in 0..3 {
        assert_eq!(release(&hosts, i).as_deref(), Some(now.as_str()));
        assert_same_tree(
            &artifact,
            &hosts.dir(i).join("releases").join(&now),
            &format!("host {}", i + 1),
        );
        assert_eq!(
            hosts.releases(i),
            vec![r1.clone(), now.clone()],
            "host {}",
            i + 1
        );
    }
    assert_no_scratch(&hosts, 3, "after the recovery");
    // The killed run's tracker and seeder were stopped by the next run.
    let state = bin.path("state").display().to_string();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            pid.parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(&state) && (cmd.starts_with("aria2c") || cmd.starts_with("opentracker")))
                .then_some(cmd)
        })
        .collect();
    assert!(alive.is_empty(), "{alive:?}");
}

#[tokio::test]
async fn check_names_the_host_without_aria2c() {
    let Some(mut hosts) = swarm(2).await else {
        return;
    };
    hosts.without_program(1, "aria2c").await;
    let sb = support::sandbox().await;
    let bin = bin(&sb, &hosts, "");
    let specs = hosts.specs();
    let run = bin.run(&["check"]).await;
    check(&run, 1, &hosts);
    let line = |start: &str| -> String {
        run.stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?}:\n{}", run.stdout))
            .to_owned()
    };
    let ok = line(&format!("ok    beta host {}: ", specs[0]));
    assert!(ok.contains("; aria2c 1."), "{ok}");
    let bad = line(&format!("FAIL  beta host {}: ", specs[1]));
    assert!(bad.contains("no aria2c"), "{bad}");
}

/// Pushes twice, the second push incremental (every file but
/// `index.html` reused from the release the hosts run), and checks that
/// every host's `current` then holds exactly the artifact.
async fn push_twice_and_compare(hosts: &Hosts, n: usize, build: &str) {
    let sb = support::sandbox().await;
    let bin = bin_with(&sb, hosts, "", build, free_port());
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 0, hosts);
    let r1 = release(hosts, 0).expect("host 1 switched");
    let artifact = bin.path(&format!("state/artifacts/{}", bin.first));
    for i in 0..n {
        assert_eq!(release(hosts, i).as_deref(), Some(r1.as_str()));
        assert_same_tree(
            &artifact,
            &hosts.dir(i).join("current"),
            &format!("push 1, host {}", i + 1),
        );
    }
    let second = bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 0, hosts);
    let r2 = release(hosts, 0).expect("host 1 switched");
    assert_ne!(r1, r2);
    let artifact = bin.path(&format!("state/artifacts/{second}"));
    for i in 0..n {
        assert_eq!(release(hosts, i).as_deref(), Some(r2.as_str()));
        assert_same_tree(
            &artifact,
            &hosts.dir(i).join("releases").join(&r2),
            &format!("push 2, host {}", i + 1),
        );
    }
    assert_no_scratch(hosts, n, "push 2");
}

#[tokio::test]
async fn files_named_like_options_are_reused_whole_by_an_incremental_push() {
    let Some(hosts) = swarm(2).await else {
        return;
    };
    // `--help` given to cp as an option prints its help and links nothing.
    const DASHES: &str = r#"["sh", "-c", "mkdir -p dist && cp -R app/. dist/ && printf 'help me\n' > dist/--help && printf 'ex\n' > dist/-x && dd if=/dev/zero of=dist/big.bin bs=1024 count=64 2>/dev/null"]"#;
    push_twice_and_compare(&hosts, 2, DASHES).await;
}

#[tokio::test]
async fn a_non_root_deploy_user_stages_read_only_directories_again_and_again() {
    if let Some(why) = unavailable() {
        return hosts::skip(&why);
    }
    let hosts = match Hosts::start_on(
        &[hosts::Kind::Deploy, hosts::Kind::Deploy],
        hosts::Net::Switch {
            bastion_rate: None,
            host_delay: None,
        },
    )
    .await
    {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    // A 0555 directory with files in it, reused by the second push.
    const READ_ONLY: &str = r#"["sh", "-c", "mkdir -p dist/ro/deeper && cp -R app/. dist/ && printf 'kept\n' > dist/ro/f && printf 'deep\n' > dist/ro/deeper/g && : > dist/ro/empty && chmod 0555 dist/ro/deeper dist/ro"]"#;
    push_twice_and_compare(&hosts, 2, READ_ONLY).await;
}

#[tokio::test]
async fn a_tracker_port_taken_by_another_program_fails_the_stage_at_once_naming_it() {
    let Some(hosts) = swarm(2).await else {
        return;
    };
    // Another program (another push's tracker, say) listens on the port.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sb = support::sandbox().await;
    let bin = bin_with(&sb, &hosts, "", BUILD, port);
    let started = std::time::Instant::now();
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);
    // Long before the hosts' 60 s timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    for i in 0..2 {
        assert_eq!(hosts.current(i), None, "host {}", i + 1);
    }
    let c = comments(&sb);
    let last = c.last().unwrap();
    assert!(
        last.contains(&format!(
            "the bittorrent tracker (opentracker on port {port}) stopped"
        )) && last.contains("Address already in use")
            && !last.contains("timed out"),
        "{last}"
    );
    drop(taken);
}

#[tokio::test]
async fn a_file_name_with_a_control_character_is_refused_before_any_host_is_touched() {
    let Some(hosts) = swarm(2).await else {
        return;
    };
    const TAB: &str = r#"["sh", "-c", "mkdir -p dist && cp -R app/. dist/ && printf 'x\n' > \"dist/a$(printf '\\t')b\""]"#;
    let sb = support::sandbox().await;
    let bin = bin_with(&sb, &hosts, "", TAB, free_port());
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);
    for i in 0..2 {
        assert_eq!(hosts.current(i), None, "host {}", i + 1);
    }
    let c = comments(&sb);
    let last = c.last().unwrap();
    assert!(
        last.contains("a\\tb: the bittorrent transport cannot carry this name")
            && last.contains("sync.transport = \"rsync\" can")
            && !last.contains('\t'),
        "{last}"
    );
}

#[tokio::test]
async fn a_host_seeds_from_the_aria2c_that_fetched_it_until_its_switch() {
    let Some(hosts) = swarm(3).await else {
        return;
    };
    let sb = support::sandbox().await;
    // The first host switches alone; the first wave check holds the push
    // there until the test has looked (FIFOs: no clock).
    let mut s = setup(&hosts, "", BUILD, free_port());
    s.beta
        .push_str("waves = [\"1\", \"100%\"]\nwave_check = [\"./hold.sh\"]\n");
    let bin = Bin::with(&sb, s);
    let (ready, gate) = (bin.path("ready"), bin.path("gate"));
    for f in [&ready, &gate] {
        rustix::fs::mkfifoat(rustix::fs::CWD, f, rustix::fs::Mode::from(0o600)).unwrap();
    }
    let hold = bin.path("hold.sh");
    std::fs::write(
        &hold,
        format!(
            "#!/bin/sh\n[ \"$PUSHGATE_WAVE\" = 1 ] || exit 0\necho \"$PUSHGATE_WAVE\" > '{}'\ncat '{}' > /dev/null\n",
            ready.display(),
            gate.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hold, std::fs::Permissions::from_mode(0o755)).unwrap();
    let look = async {
        let r = ready.clone();
        let wave = tokio::task::spawn_blocking(move || std::fs::read_to_string(r).unwrap())
            .await
            .unwrap();
        let seen = aria2c_on_hosts(&hosts);
        // Let the push go on: the check's `cat` reads to the end.
        let g = gate.clone();
        tokio::task::spawn_blocking(move || drop(std::fs::File::create(g).unwrap()))
            .await
            .unwrap();
        (wave, seen)
    };
    let (run, (wave, seen)) = tokio::join!(bin.run(&["push", "beta"]), look);
    check(&run, 0, &hosts);
    assert_eq!(wave.trim(), "1");
    let r = release(&hosts, 0).unwrap();
    let torrent = format!("releases/.{r}.bt/meta/t.torrent");
    for i in 0..3 {
        let mine: Vec<&String> = seen
            .iter()
            .filter(|(h, c)| *h == i && c.contains(&torrent))
            .map(|(_, c)| c)
            .collect();
        if i == 0 {
            assert!(mine.is_empty(), "its switch stopped its seeder: {mine:?}");
        } else {
            // One aria2c: the one that fetched (its completion hook), not
            // a second one started after it.
            assert_eq!(mine.len(), 1, "host {}: {seen:?}", i + 1);
            assert!(
                mine[0].contains("--on-bt-download-complete=") && mine[0].contains("--seed-time="),
                "host {}: {}",
                i + 1,
                mine[0]
            );
        }
    }
    for i in 0..3 {
        assert_eq!(release(&hosts, i).as_deref(), Some(r.as_str()));
    }
    assert_no_scratch(&hosts, 3, "after the push");
}

#[tokio::test]
async fn a_host_whose_aria2c_fails_says_why_at_once_and_nothing_switches() {
    if let Some(why) = unavailable() {
        return hosts::skip(&why);
    }
    // Host 3's TARGET is a tmpfs smaller than the artifact's 300 KiB.
    let hosts = match Hosts::start_on(
        &[Kind::Plain, Kind::Plain, Kind::Tmpfs { kib: 128 }],
        Net::Switch {
            bastion_rate: None,
            host_delay: None,
        },
    )
    .await
    {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    let sb = support::sandbox().await;
    let bin = bin(&sb, &hosts, "");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1, &hosts);
    for i in 0..3 {
        assert_eq!(release(&hosts, i), None, "host {}", i + 1);
    }
    let specs = hosts.specs();
    let c = comments(&sb);
    let last = c.last().unwrap();
    // aria2c's own reason, from its log, long before host_timeout (60 s).
    assert!(
        last.contains("1 of 3 hosts failed to stage")
            && last.contains(&specs[2])
            && last.contains("disk full")
            && !last.contains("timed out"),
        "{last}"
    );
    assert_no_scratch(&hosts, 2, "after the failed stage");
}
