//! Crash recovery: the real binary killed with SIGKILL (a failpoint:
//! `PUSHGATE_FAILPOINT`, see `src/failpoint.rs`) at every step boundary of
//! a push and inside its build, stage, switch and outbox, then run again.
//!
//! After each kill no host's `current` points at a partial release; the
//! next run comments on the interrupted push's task, converges every host
//! onto one complete release, and then proceeds. Every push is recorded in
//! Asana exactly once.

use std::collections::BTreeSet;

use pushgate::sandbox::Sandbox;
use serde_json::json;

use crate::support::{self, comments, seed, tasks, tree, Bin, Raw, Run};

/// A repository with enough files that staging takes a moment.
fn files(version: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("app/assets/file-{i:03}.txt"),
                format!("{version} asset {i}\n").into_bytes(),
            )
        })
        .collect();
    v.push(("app/index.html".into(), format!("{version}\n").into_bytes()));
    v
}

fn commit(bin: &Bin, version: &str) -> String {
    let f = files(version);
    let refs: Vec<(&str, &[u8])> = f.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    bin.repo.commit(&refs, version)
}

/// Every host's `current` (if any) is a whole release: the same files and
/// bytes as the artifact of the commit it was built from. Returns the
/// releases the hosts run.
fn assert_whole(bin: &Bin, when: &str) -> Vec<Option<String>> {
    (1..=3)
        .map(|h| {
            let current = bin.current(h)?;
            let release = current.trim_start_matches("releases/").to_owned();
            let prefix = &release[17..];
            let artifacts = bin.path("state/artifacts");
            let sha = std::fs::read_dir(&artifacts)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .find(|s| s.starts_with(prefix))
                .unwrap_or_else(|| panic!("{when}: no artifact for {release}"));
            let want = tree(&artifacts.join(sha));
            let got = tree(&bin.path(&format!("hosts/beta-{h}/current")));
            assert!(
                want == got,
                "{when}: host {h} runs {release}, which is not whole ({} of {} files)",
                got.len(),
                want.len()
            );
            Some(release)
        })
        .collect()
}

fn push_tasks(sb: &Sandbox) -> Vec<pushgate::sandbox::store::TaskRec> {
    tasks(sb, seed::PUSH_BETA)
}

/// The run id in a push task's notes.
fn run_of(notes: &str) -> String {
    notes
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap_or_default()
        .to_owned()
}

fn assert_recorded_once(sb: &Sandbox, when: &str) {
    let runs: Vec<String> = push_tasks(sb).iter().map(|t| run_of(&t.notes)).collect();
    let unique: BTreeSet<&String> = runs.iter().collect();
    assert_eq!(
        unique.len(),
        runs.len(),
        "{when}: a push recorded twice: {runs:?}"
    );
    for t in push_tasks(sb) {
        let c = comments(&t);
        let distinct: BTreeSet<&String> = c.iter().collect();
        assert_eq!(
            distinct.len(),
            c.len(),
            "{when}: a comment made twice on {}: {c:?}",
            t.name
        );
    }
}

/// Where the push is killed, and whether it had recorded its release as
/// deployed by then (so the next run finds nothing new to push).
const KILL_POINTS: &[(&str, bool)] = &[
    ("journal:start", false),
    ("outbox:applied", false),
    ("journal:record", false),
    ("journal:build", false),
    ("spawned:sh", false),
    ("journal:stage", false),
    ("spawned:rsync", false),
    ("stage:host", false),
    ("stage:host#2", false),
    ("journal:switch", false),
    ("switch:host", false),
    ("switch:host#2", false),
    ("journal:close", false),
    ("deployed", true),
    // The close's comment (the switch's with it) and the completion are
    // queued once the release is recorded as deployed.
    ("outbox:applied#4", true),
    ("outbox:applied#5", true),
];

/// One kill: push v1, then v2 killed at `point`; check; run again; check.
async fn kill_at(point: &str, finished: bool) {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    commit(&bin, "v1");
    let first = bin.run(&["push", "beta"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let r1 = assert_whole(&bin, "after v1")[0].clone().unwrap();
    let v2 = commit(&bin, "v2");

    let killed = bin
        .run_env(
            &["push", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, point)],
        )
        .await;
    assert_eq!(
        killed.signal,
        Some(9),
        "{point}: not killed there: {killed:?}"
    );
    let when = format!("killed at {point}");
    // At once, before anything recovers: no host on a partial release.
    let after_kill = assert_whole(&bin, &when);
    assert!(
        after_kill.iter().all(Option::is_some),
        "{when}: {after_kill:?}"
    );
    assert!(
        bin.path("state/clusters/beta/journal.jsonl").exists(),
        "{when}"
    );

    let next = bin.run(&["push", "beta", "--json"]).await;
    assert_eq!(next.code, 0, "{when}: {next:?}");
    let v = next.json();
    let rec = &v["recovered"];
    assert!(rec.is_object(), "{when}: nothing recovered: {v}");
    assert_eq!(rec["finished"], finished, "{when}: {rec}");
    let killed_run = rec["run_id"].as_str().unwrap().to_owned();
    // Every host on one whole release, of v2.
    let now = assert_whole(&bin, &format!("{when}, then run again"));
    let first_host = now[0].clone().unwrap();
    assert!(
        now.iter()
            .all(|r| r.as_deref() == Some(first_host.as_str())),
        "{when}: {now:?}"
    );
    assert!(first_host.ends_with(&v2[..12]), "{when}: {first_host}");
    assert!(
        !bin.path("state/clusters/beta/journal.jsonl").exists(),
        "{when}"
    );
    // The interrupted push's release is gone unless it is the one kept.
    for h in 1..=3 {
        for r in bin.releases(h) {
            assert!(
                r == r1 || r == first_host,
                "{when}: host {h} keeps {r} (v1 {r1}, now {first_host}, all {:?}); {}",
                bin.releases(h),
                next.stdout
            );
        }
    }
    // Recorded: the killed run's task exists once, with what happened.
    let all = push_tasks(&sb);
    let killed_task = all
        .iter()
        .find(|t| run_of(&t.notes) == killed_run)
        .unwrap_or_else(|| panic!("{when}: the killed run {killed_run} has no task"));
    let said = comments(killed_task);
    if finished {
        assert!(killed_task.completed, "{when}: {said:?}");
        assert_eq!(v["verdict"], "nothing-new", "{when}");
        assert_eq!(all.len(), 2, "{when}");
    } else {
        assert!(!killed_task.completed, "{when}");
        assert!(
            said.iter().any(|c| c.contains("did not finish")),
            "{when}: {said:?}"
        );
        assert_eq!(v["verdict"], "push", "{when}");
        assert_eq!(all.len(), 3, "{when}");
        assert!(all.last().unwrap().completed, "{when}");
    }
    assert_recorded_once(&sb, &when);
    let h = bin.run(&["history", "beta", "--json"]).await.json();
    let runs = h["runs"].as_array().unwrap();
    let mine: Vec<_> = runs
        .iter()
        .filter(|r| r["run_id"] == killed_run.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{when}: {h}");
    assert_eq!(
        mine[0]["outcome"],
        if finished { "success" } else { "failed" },
        "{when}"
    );
}

#[tokio::test]
async fn killed_at_every_step_boundary_the_next_run_converges_and_proceeds() {
    for (point, finished) in &KILL_POINTS[..7] {
        kill_at(point, *finished).await;
    }
}

#[tokio::test]
async fn killed_inside_stage_switch_and_close_the_next_run_converges_and_proceeds() {
    for (point, finished) in &KILL_POINTS[7..] {
        kill_at(point, *finished).await;
    }
}

#[tokio::test]
async fn a_held_next_run_still_converges_the_hosts_first() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    commit(&bin, "v1");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = assert_whole(&bin, "v1")[0].clone().unwrap();
    commit(&bin, "v2");
    let killed = bin
        .run_env(
            &["push", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, "switch:host")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    let split: BTreeSet<Option<String>> = assert_whole(&bin, "killed mid-switch")
        .into_iter()
        .collect();
    assert_eq!(
        split.len(),
        2,
        "one host switched, the others not: {split:?}"
    );
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert!(s["clusters"][0]["interrupted_run"].is_string(), "{s}");

    // Someone locks beta meanwhile: the next run is held (exit 3), but the
    // hosts converge before anything else — back onto v1, all of them.
    let (st, _) = Raw::new(&sb)
        .post(
            "/tasks",
            json!({"data": {"name": "hold on", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(st, 201);
    let held = bin.run(&["push", "beta"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert!(held.stdout.contains("did not finish"), "{}", held.stdout);
    let now = assert_whole(&bin, "held");
    assert!(
        now.iter().all(|r| r.as_deref() == Some(r1.as_str())),
        "{now:?}"
    );
    // A dry run would not have touched anything; the journal is closed.
    assert!(!bin.path("state/clusters/beta/journal.jsonl").exists());
    assert_recorded_once(&sb, "held");
}

#[tokio::test]
async fn a_rollback_killed_mid_switch_is_finished_by_the_next_run() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    commit(&bin, "v1");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let r1 = assert_whole(&bin, "v1")[0].clone().unwrap();
    commit(&bin, "v2");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let killed = bin
        .run_env(
            &["rollback", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, "switch:host")],
        )
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    assert_whole(&bin, "rollback killed");
    // The next run — a scheduled push — finishes the rollback first, and
    // is then held by the rollback's lock task (or its mark).
    let next: Run = bin.run(&["push", "beta"]).await;
    assert_eq!(next.code, 3, "{next:?}");
    let now = assert_whole(&bin, "after");
    assert!(
        now.iter().all(|r| r.as_deref() == Some(r1.as_str())),
        "{now:?}"
    );
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert_eq!(s["clusters"][0]["deployed"]["release"], r1.as_str());
    let locks = tasks(&sb, seed::LOCK_BETA);
    assert_eq!(locks.len(), 1, "one lock task, not two");
    assert_recorded_once(&sb, "rollback");
}
