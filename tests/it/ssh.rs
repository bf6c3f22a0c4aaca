//! The push over ssh to real hosts: three network namespaces, each with its
//! own address and OpenSSH's sshd (`support::hosts`), reached by the real
//! binary with its configured client key and strictly checked host keys.
//! Needs root and OpenSSH, rsync and iproute2; skipped without them, but
//! never under `CI=true`: `.ci/run` runs as root and installs them.

use std::os::unix::fs::MetadataExt;

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;

use crate::support::hosts::{self, Hosts};
use crate::support::{self, seed, Bin, Run, Setup};

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

fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the ssh tests as root with OpenSSH, rsync and iproute2: {why}"
    );
    eprintln!("skipped: {why}");
}

/// Each host's release (`current` without `releases/`), in order.
fn currents(hosts: &Hosts) -> Vec<Option<String>> {
    (0..3)
        .map(|i| {
            hosts
                .current(i)
                .map(|c| c.trim_start_matches("releases/").to_owned())
        })
        .collect()
}

/// A run of the binary that ended with `code`; ssh's and rsync's output
/// included, none of it holds the Asana token.
fn check(run: &Run, code: i32, token: &str, hosts: &Hosts) {
    assert_eq!(run.code, code, "{run:?}\n{}", hosts.logs());
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token leaked: {run:?}"
    );
}

#[tokio::test]
async fn pushes_and_a_rollback_reach_three_ssh_hosts_and_a_down_host_holds_the_switch() {
    if let Some(why) = hosts::unavailable() {
        return skip(&why);
    }
    let mut hosts = match Hosts::start(3).await {
        Ok(h) => h,
        Err(why) => return skip(&why),
    };
    let sb = support::sandbox().await;
    let token = sb.token();
    let bin = Bin::with(
        &sb,
        Setup {
            sync: hosts.sync_toml(),
            beta: hosts.cluster_toml(),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );

    // 1. Every host switches to the first release, with its files.
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 0, &token, &hosts);
    let r1 = hosts.current(0).expect("host 1 switched");
    let r1 = r1.trim_start_matches("releases/").to_owned();
    assert!(r1.ends_with(&bin.first[..12]), "{r1}");
    assert_eq!(currents(&hosts), vec![Some(r1.clone()); 3]);
    for i in 0..3 {
        let page = std::fs::read_to_string(hosts.dir(i).join("current/index.html")).unwrap();
        assert_eq!(page, "v1\n", "host {}", i + 1);
        let util = std::fs::read_to_string(hosts.dir(i).join("current/lib/util.js")).unwrap();
        assert_eq!(util, "// util\n", "host {}", i + 1);
    }
    // One ssh connection per host for the whole push: the probe, rsync and
    // the switch share it (ControlMaster), and it is closed at the end.
    let logs = hosts.logs();
    assert_eq!(
        logs.matches("Accepted publickey").count(),
        3,
        "one connection per host: {logs}"
    );
    // Nothing reached the shared directory the hosts' own ones are mounted on.
    assert_eq!(std::fs::read_dir(&hosts.target).unwrap().count(), 0);
    let t = tasks(&sb, seed::PUSH_BETA).pop().expect("a push task");
    assert!(t.completed, "{:?}", comments(&t));
    let specs = hosts.specs();
    assert!(
        comments(&t)
            .iter()
            .any(|c| c.starts_with("stage: 3/3 hosts")
                && specs.iter().all(|h| c.contains(&format!("{h}: ok")))),
        "{:?}",
        comments(&t)
    );

    // 2. A second commit: every host on release 2.
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 0, &token, &hosts);
    let r2 = hosts.current(0).expect("host 1 switched");
    let r2 = r2.trim_start_matches("releases/").to_owned();
    assert!(r1 < r2, "{r1} {r2}");
    assert_eq!(currents(&hosts), vec![Some(r2.clone()); 3]);
    for i in 0..3 {
        let page = std::fs::read_to_string(hosts.dir(i).join("current/index.html")).unwrap();
        assert_eq!(page, "v2\n", "host {}", i + 1);
        // rsync's --link-dest works remotely: unchanged files are hard links.
        let util = |r: &str| {
            std::fs::metadata(hosts.dir(i).join(format!("releases/{r}/lib/util.js"))).unwrap()
        };
        assert_eq!(util(&r1).ino(), util(&r2).ino(), "host {}", i + 1);
    }
    assert!(tasks(&sb, seed::PUSH_BETA).pop().unwrap().completed);

    // 3. Host 2 is down: it cannot stage, so with max_failed_hosts = 0 no
    // host switches and hosts 1 and 3 lose what they staged.
    hosts.stop_sshd(1).await;
    let third = bin.repo.commit(&[("app/index.html", b"v3\n")], "v3");
    let run = bin.run(&["-vv", "push", "beta"]).await;
    check(&run, 1, &token, &hosts);
    assert_eq!(
        currents(&hosts),
        vec![Some(r2.clone()); 3],
        "no host switched"
    );
    for i in [0, 2] {
        let kept = hosts.releases(i);
        assert!(
            !kept.iter().any(|r| r.ends_with(&third[..12])),
            "host {}'s staged release is removed: {kept:?}",
            i + 1
        );
        assert_eq!(kept, vec![r1.clone(), r2.clone()], "host {}", i + 1);
    }
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(!t.completed, "a failed push leaves its task open");
    let c = comments(&t);
    assert!(
        c.iter()
            .any(|c| c.contains(&format!("{}: FAILED", specs[1]))),
        "{c:?}"
    );
    let last = c.last().unwrap();
    assert!(
        last.contains("1 of 3 hosts failed to stage (max_failed_hosts = 0); no host was switched"),
        "{last}"
    );

    // 4. Host 2 is back: the rollback takes every host to release 1.
    hosts.start_sshd(1).await;
    let run = bin.run(&["-vv", "rollback", "beta", "--json"]).await;
    check(&run, 0, &token, &hosts);
    assert_eq!(run.json()["release"], r1.as_str());
    assert_eq!(currents(&hosts), vec![Some(r1.clone()); 3]);
    for i in 0..3 {
        let page = std::fs::read_to_string(hosts.dir(i).join("current/index.html")).unwrap();
        assert_eq!(page, "v1\n", "host {}", i + 1);
    }
    let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
    assert!(t.name.starts_with("beta rollback "), "{}", t.name);
    assert!(t.completed, "{:?}", comments(&t));
}

#[tokio::test]
async fn check_reaches_every_ssh_host_and_names_the_one_that_is_down() {
    if let Some(why) = hosts::unavailable() {
        return skip(&why);
    }
    let mut hosts = match Hosts::start(2).await {
        Ok(h) => h,
        Err(why) => return skip(&why),
    };
    let sb = support::sandbox().await;
    let token = sb.token();
    let bin = Bin::with(
        &sb,
        Setup {
            sync: hosts.sync_toml(),
            beta: hosts.cluster_toml(),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    let specs = hosts.specs();
    let line = |out: &str, start: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?}:\n{out}"))
            .to_owned()
    };
    let run = bin.run(&["check"]).await;
    check(&run, 0, &token, &hosts);
    line(&run.stdout, "ok    bastion ssh: OpenSSH");
    for s in &specs {
        let l = line(&run.stdout, &format!("ok    beta host {s}: "));
        assert!(l.contains("is writable; rsync 3."), "{l}");
    }

    hosts.stop_sshd(1).await;
    let run = bin.run(&["check"]).await;
    check(&run, 1, &token, &hosts);
    line(&run.stdout, &format!("ok    beta host {}: ", specs[0]));
    let down = line(&run.stdout, &format!("FAIL  beta host {}: ", specs[1]));
    assert!(
        down.contains("ssh exited with status 255") && down.contains("port 22"),
        "{down}"
    );
    let last = run.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("1 of ") && last.ends_with(" checks failed"),
        "{last}"
    );
}
