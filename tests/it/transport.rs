//! How a push moves (issue #19): two ssh sessions per host and push (the
//! stage, which also reads what the host runs and prunes what the last
//! push left; the switch with `after_switch`), the prune decided after
//! every wave and done in the next stage without ever deleting `current`,
//! and Asana's writes sent beside the work instead of between its steps.
//! Real sshd hosts in network namespaces (`support::hosts`), real binary.

use pushgate::sandbox::Sandbox;

use crate::support::hosts::{self, Hosts};
use crate::support::{self, seed, Bin, Run, Setup};

fn check(run: &Run, code: i32, hosts: &Hosts) {
    assert_eq!(run.code, code, "{run:?}\n{}", hosts.logs());
}

fn rel(c: &Option<String>) -> String {
    c.as_deref()
        .unwrap_or_default()
        .trim_start_matches("releases/")
        .to_owned()
}

#[tokio::test]
async fn each_ssh_host_costs_two_sessions_a_push_and_prunes_in_its_next_stage() {
    if let Some(why) = hosts::unavailable() {
        return hosts::skip(&why);
    }
    let hosts = match Hosts::start(2).await {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    let sb = support::sandbox().await;
    let marker = "after-switch-ran";
    let bin = Bin::with(
        &sb,
        Setup {
            sync: format!(
                "{}keep_releases = 2\nafter_switch = [\"sh\", \"-c\", \"echo {marker} > ran.txt\"]\n",
                hosts.sync_toml()
            ),
            beta: hosts.cluster_toml(),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    let mut before = vec![0; 2];
    let mut seen: Vec<String> = Vec::new();
    for k in 1..=4 {
        if k > 1 {
            bin.repo
                .commit(&[("app/index.html", format!("v{k}\n").as_bytes())], "next");
        }
        let run = bin.run(&["push", "beta"]).await;
        check(&run, 0, &hosts);
        let now = hosts.sessions();
        let per_push: Vec<usize> = now.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(
            per_push,
            vec![2, 2],
            "push {k}: one session to stage, one to switch, per host\n{}",
            hosts.logs()
        );
        before = now;
        let current = rel(&hosts.current(0));
        seen.push(current.clone());
        for i in 0..2 {
            assert_eq!(rel(&hosts.current(i)), current, "push {k}, host {}", i + 1);
            // after_switch ran in the same session as the switch.
            let ran = std::fs::read_to_string(hosts.dir(i).join("ran.txt")).unwrap();
            assert_eq!(ran.trim(), marker);
            let page = std::fs::read_to_string(hosts.dir(i).join("current/index.html")).unwrap();
            assert_eq!(page, format!("v{k}\n"));
            // keep_releases = 2, pruned one push late: what push k-1
            // decided to delete is gone once push k staged. Never current.
            let kept = hosts.releases(i);
            let want: Vec<String> = seen.iter().rev().take(3).rev().cloned().collect();
            assert_eq!(kept, want, "push {k}, host {}", i + 1);
        }
    }
    let pending = std::fs::read_to_string(bin.path("state/clusters/beta/prune.json")).unwrap();
    assert!(pending.contains(&seen[1]), "{pending}");
}

/// A push task's comments, in order.
fn comments(sb: &Sandbox) -> (Vec<String>, bool, chrono::DateTime<chrono::Utc>) {
    sb.with_data(|d| {
        let gid = d.projects[seed::PUSH_BETA].tasks.last().unwrap().clone();
        let t = &d.tasks[&gid];
        (crate::support::comments(t), t.completed, t.created_at)
    })
    .unwrap()
}

/// A push whose Asana calls may take seconds each.
fn patient_bin(sb: &Sandbox) -> Bin {
    Bin::with(
        sb,
        Setup {
            asana: "timeout = \"30s\"".into(),
            ..Setup::default()
        },
    )
}

/// A successful push's task said each step once, in order.
fn assert_said_every_step_in_order(c: &[String]) {
    let prefixes = [
        "build: built",
        "stage: 3/3 hosts staged",
        "switch: 3/3 hosts now run",
        "pushed ",
    ];
    assert_eq!(c.len(), 4, "{c:?}");
    for (text, prefix) in c.iter().zip(prefixes) {
        assert!(text.starts_with(prefix), "in order: {c:?}");
    }
}

#[tokio::test]
async fn the_hosts_switch_while_asana_is_still_creating_the_push_task() {
    let sb = support::sandbox().await;
    let bin = patient_bin(&sb);
    // Only the create is slow: 3 s before Asana applies it. The gate
    // (a read) is not.
    support::faults(&sb, |f| {
        f.latency_ms = 3000;
        f.only = Some("POST /tasks".into());
    });
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (c, completed, created) = comments(&sb);
    assert!(completed, "{c:?}");
    assert_said_every_step_in_order(&c);
    // Every host switched before Asana had made the task: the build, the
    // stage and the switch did not wait for it.
    for n in 1..=3 {
        let link = bin.path(&format!("hosts/beta-{n}/current"));
        let switched: chrono::DateTime<chrono::Utc> = std::fs::symlink_metadata(&link)
            .unwrap()
            .modified()
            .unwrap()
            .into();
        assert!(
            switched < created,
            "host {n} switched at {switched}, the task was created at {created}"
        );
    }
    let v = bin.run(&["history", "beta", "--json"]).await.json();
    assert!(v["runs"][0]["push_task"].is_string(), "{v}");
}

/// With every Asana call slow, the end of a push is one wave of requests:
/// the switch's comment goes as the first paragraph of the close's, and
/// the completion is in flight beside it; nothing is lost or reordered,
/// and the history links the task.
#[tokio::test]
async fn the_last_comment_and_the_completion_are_one_wave_of_asana_requests() {
    let sb = support::sandbox().await;
    let bin = patient_bin(&sb);
    support::faults(&sb, |f| f.latency_ms = 1000);
    sb.clear_requests();
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (c, completed, _) = comments(&sb);
    assert!(completed, "{c:?}");
    assert_said_every_step_in_order(&c);
    let raw = sb
        .with_data(|d| {
            let gid = d.projects[seed::PUSH_BETA].tasks.last().unwrap().clone();
            crate::support::raw_comments(&d.tasks[&gid])
        })
        .unwrap();
    let last = raw.last().unwrap();
    let switch = last.find("switch: 3/3 hosts now run");
    let pushed = last.find("\n\npushed ");
    assert!(
        matches!((switch, pushed), (Some(a), Some(b)) if a < b),
        "one comment says the switch, then the push: {raw:?}"
    );
    // The create went alone; then the comment(s) and the completion.
    assert_eq!(sb.most_writes_in_flight(), 2, "{:?}", sb.requests());
    let v = bin.run(&["history", "beta", "--json"]).await.json();
    assert!(v["runs"][0]["push_task"].is_string(), "{v}");
}
