//! Canary waves, health checks and the automatic rollback (SPEC §8), end
//! to end: the real binary against the strict sandbox, a real repository,
//! `local:` hosts (and, once, sshd hosts in network namespaces).
//!
//! The release says whether it is healthy: its `health` file holds `ok`
//! or not, and the cluster's `health_check` reads `current/health`. Every
//! host logs each switch (`after_switch` appends `readlink current` to its
//! `switches.log`), so a test sees which hosts ever ran a release, and in
//! which order; the wave check logs what every host runs when it is asked.
//! A host hangs in its health check on a FIFO nobody writes (`hang`).

use std::collections::BTreeSet;

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;

use crate::support::hosts::{self, Hosts};
use crate::support::{self, comments, seed, tasks, tree, Bin, Run, Setup};

/// The cluster's waves and checks: one host, two, then all.
const WAVES: &str = r#"waves = ["1", "2", "100%"]
health_check = ["sh", "-c", "if [ -p hang ]; then cat hang; fi; grep -qx ok current/health || { echo \"health says: $(cat current/health)\"; exit 1; }"]
health_retries = 0
wave_check = ["./wave-check.sh"]
"#;

/// Logs what every host runs when it is called, and its environment; fails
/// the wave N if the file `fail-at-wave-N` exists.
const WAVE_CHECK: &str = r#"#!/bin/sh
d=$(dirname "$0")
{
  echo "== $PUSHGATE_WAVE/$PUSHGATE_WAVES of $PUSHGATE_CLUSTER $PUSHGATE_RELEASE ($PUSHGATE_COMMIT) over $PUSHGATE_PREVIOUS_RELEASE"
  echo "hosts of the wave:" $PUSHGATE_WAVE_HOSTS
  echo "switched:" $PUSHGATE_HOSTS
  for h in 1 2 3; do echo "beta-$h runs $(readlink "$d/hosts/beta-$h/current")"; done
} >> "$d/wave-check.log"
env > "$d/wave-env-$PUSHGATE_WAVE.txt"
if [ -f "$d/fail-at-wave-$PUSHGATE_WAVE" ]; then
  echo "checking the canaries' error rate"
  echo "5xx rate 4.2% on the canaries, above 1%" >&2
  exit 1
fi
"#;

fn setup(beta: &str) -> Setup {
    Setup {
        sync: r#"after_switch = ["sh", "-c", "readlink current >> switches.log"]"#.into(),
        beta: beta.into(),
        ..Setup::default()
    }
}

/// A beta of three `local:` hosts in waves, and a first healthy commit.
fn waved(sb: &Sandbox, beta: &str) -> Bin {
    let bin = Bin::with(sb, setup(beta));
    let script = bin.path("wave-check.sh");
    std::fs::write(&script, WAVE_CHECK).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin.repo.commit(&[("app/health", b"ok\n")], "healthy v1");
    bin
}

fn healthy(bin: &Bin, version: &str) -> String {
    bin.repo.commit(
        &[
            ("app/health", b"ok\n"),
            ("app/index.html", version.as_bytes()),
        ],
        version,
    )
}

fn unhealthy(bin: &Bin, version: &str) -> String {
    bin.repo.commit(
        &[
            ("app/health", b"down: \x1b[2Jdb pool exhausted\n"),
            ("app/index.html", version.as_bytes()),
        ],
        version,
    )
}

/// Host N's release, if it has one.
fn release(bin: &Bin, n: usize) -> Option<String> {
    bin.current(n)
        .map(|c| c.trim_start_matches("releases/").to_owned())
}

fn releases(bin: &Bin) -> Vec<Option<String>> {
    (1..=3).map(|n| release(bin, n)).collect()
}

/// Every release host N's `current` was switched to, in order.
fn switches(bin: &Bin, n: usize) -> Vec<String> {
    std::fs::read_to_string(bin.path(&format!("hosts/beta-{n}/switches.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches("releases/").to_owned())
        .collect()
}

fn last_push_task(sb: &Sandbox) -> TaskRec {
    tasks(sb, seed::PUSH_BETA).pop().expect("a push task")
}

fn check(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

fn history(bin: &Bin) -> Vec<serde_json::Value> {
    std::fs::read_to_string(bin.path("state/clusters/beta/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_healthy_push_goes_through_every_wave_canary_first() {
    let sb = support::sandbox().await;
    let bin = waved(&sb, WAVES);

    // The dry run shows the waves, as text and as JSON.
    let dry = bin.run(&["push", "beta", "--dry-run"]).await;
    check(&dry, 0);
    let d = bin.path("hosts").display().to_string();
    for line in [
        format!("wave 1/3 (\"1\", 1 host): local:{d}/beta-1"),
        format!("wave 2/3 (\"2\", 1 host): local:{d}/beta-2"),
        format!("wave 3/3 (\"100%\", 1 host): local:{d}/beta-3"),
        "health check on each host after its switch: `sh -c".into(),
        "steps: create the push task, build, stage on 3 hosts, switch `current` in 3 waves, health-check each host, run the wave check after each and prune".into(),
        "if a check fails: every host switched in this push goes back, a lock task holds beta".into(),
    ] {
        assert!(dry.stdout.contains(&line), "{line}\n{}", dry.stdout);
    }
    let j = bin
        .run(&["push", "beta", "--dry-run", "--json"])
        .await
        .json();
    assert_eq!(j["waves"][0]["size"], "1");
    assert_eq!(j["waves"][0]["hosts"][0], format!("local:{d}/beta-1"));
    assert_eq!(j["waves"][2]["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(j["checks"]["auto_rollback"], true);
    // `status` shows the same plan, waves and all.
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert_eq!(s["clusters"][0]["next"]["waves"], j["waves"], "{s}");
    assert_eq!(s["clusters"][0]["next"]["checks"], j["checks"], "{s}");
    assert!(bin.current(1).is_none(), "a dry run switches nothing");

    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0);
    let r1 = release(&bin, 1).unwrap();
    assert_eq!(releases(&bin), vec![Some(r1.clone()); 3]);
    for n in 1..=3 {
        assert_eq!(switches(&bin, n), vec![r1.clone()], "host {n}");
    }
    // Each wave check saw exactly the hosts of its waves on the release.
    let log = std::fs::read_to_string(bin.path("wave-check.log")).unwrap();
    let runs = |n: usize, wave: usize| -> String {
        let block = log
            .split("== ")
            .find(|b| b.starts_with(&format!("{wave}/3 ")))
            .unwrap_or_else(|| panic!("no wave {wave} in {log}"));
        block
            .lines()
            .find(|l| l.starts_with(&format!("beta-{n} runs")))
            .unwrap()
            .to_owned()
    };
    assert_eq!(runs(1, 1), format!("beta-1 runs releases/{r1}"));
    assert_eq!(runs(2, 1), "beta-2 runs ");
    assert_eq!(runs(3, 1), "beta-3 runs ");
    assert_eq!(runs(2, 2), format!("beta-2 runs releases/{r1}"));
    assert_eq!(runs(3, 2), "beta-3 runs ");
    assert_eq!(runs(3, 3), format!("beta-3 runs releases/{r1}"));
    assert!(
        log.contains(&format!("== 2/3 of beta {r1} ("))
            && log.contains(&format!("hosts of the wave: local:{d}/beta-2\n"))
            && log.contains(&format!("switched: local:{d}/beta-1 local:{d}/beta-2\n")),
        "{log}"
    );
    // Its environment names the cluster and the release, never the token.
    for wave in 1..=3 {
        let env = std::fs::read_to_string(bin.path(&format!("wave-env-{wave}.txt"))).unwrap();
        assert!(env.contains("PUSHGATE_CLUSTER=beta"), "{env}");
        assert!(
            !env.contains(&bin.token),
            "the token reached the wave check"
        );
        assert!(!env.contains(support::TOKEN_ENV), "{env}");
    }

    // The push task says what each wave did, in one comment per wave.
    let t = last_push_task(&sb);
    assert!(t.completed);
    let c = comments(&t);
    for wave in 1..=3 {
        assert!(
            c.iter().any(|c| c.starts_with(&format!(
                "wave {wave}/3: 1/1 host switched to {r1}, 1 healthy, wave check passed ("
            ))),
            "{c:#?}"
        );
    }
    assert!(
        c.iter()
            .any(|c| c.starts_with(&format!("switch: 3/3 hosts now run {r1} after 3 waves"))),
        "{c:#?}"
    );
    assert_eq!(history(&bin).last().unwrap()["outcome"], "success");

    // The next push goes through the waves too, canary first.
    healthy(&bin, "v2");
    check(&bin.run(&["push", "beta"]).await, 0);
    let r2 = release(&bin, 1).unwrap();
    assert_ne!(r1, r2);
    assert_eq!(releases(&bin), vec![Some(r2.clone()); 3]);
}

#[tokio::test]
async fn a_canary_failing_its_health_check_is_rolled_back_locked_and_never_pushed_again() {
    let sb = support::sandbox().await;
    let bin = waved(&sb, WAVES);
    let hook = support::Webhook::start(200).await;
    bin.append_config("[notify]\nslack_webhook_env = \"PUSHGATE_IT_WEBHOOK\"\n");
    let vars = [("PUSHGATE_IT_WEBHOOK", hook.url.clone())];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let push = |args: &'static [&'static str]| bin.run_env(args, &bin.token, &vars);
    check(&push(&["push", "beta"]).await, 0);
    let r1 = release(&bin, 1).unwrap();
    let before = hook.messages().len();

    let bad = unhealthy(&bin, "v2");
    let run = push(&["push", "beta"]).await;
    check(&run, 1);
    // Every host runs the release it ran before; the canary went there
    // and back, the others never ran the bad release; it is gone.
    assert_eq!(releases(&bin), vec![Some(r1.clone()); 3], "{run:?}");
    let r2 = switches(&bin, 1)[1].clone();
    assert!(r2.ends_with(&bad[..12]), "{r2}");
    assert_eq!(switches(&bin, 1), vec![r1.clone(), r2.clone(), r1.clone()]);
    assert_eq!(switches(&bin, 2), vec![r1.clone()]);
    assert_eq!(switches(&bin, 3), vec![r1.clone()]);
    for n in 1..=3 {
        assert_eq!(bin.releases(n), vec![r1.clone()], "host {n}");
    }
    assert!(
        !std::path::Path::new(&bin.path("wave-check.log")).exists()
            || !std::fs::read_to_string(bin.path("wave-check.log"))
                .unwrap()
                .contains(&r2),
        "no wave check of a wave that failed its health checks"
    );

    // The push task stays open and names the host, why and its output.
    let t = last_push_task(&sb);
    assert!(!t.completed);
    let c = comments(&t);
    let last = c.last().unwrap();
    let d = bin.path("hosts").display().to_string();
    for needle in [
        "push rolled back automatically at step health check: wave 1/3: health check failed on 1 of 1 host checked (max_unhealthy_hosts = 0): ".to_owned(),
        format!("local:{d}/beta-1: sh exited with status 1"),
        format!("rolled back automatically: the 1 host switched went back to {r1}"),
        "and ".to_owned() + &bad[..7] + " is marked bad",
        "last lines of output:".into(),
        "health says: down: \\u{1b}[2Jdb pool exhausted".into(),
    ] {
        assert!(last.contains(&needle), "{needle}\n{last}");
    }
    assert!(!last.contains('\u{1b}'), "{last}");
    assert!(
        c.iter()
            .any(|c| c.starts_with(&format!("wave 1/3: 1/1 host switched to {r2}, 0 healthy"))),
        "{c:#?}"
    );

    // A lock task holds the cluster and says why.
    let locks = tasks(&sb, seed::LOCK_BETA);
    assert_eq!(locks.len(), 1, "{locks:#?}");
    let lock = &locks[0];
    assert!(!lock.completed);
    assert_eq!(
        lock.name,
        format!("rolled back from {r2} automatically: health check failed: investigate")
    );
    assert!(
        lock.notes
            .contains("wave 1's health check failed on 1 of 1 host checked")
            && lock.notes.contains(&format!("went back to {r1}"))
            && lock
                .notes
                .contains(&format!("pushgate push beta --commit {}", &bad[..7]))
            && lock.notes.contains(&t.gid),
        "{}",
        lock.notes
    );
    let h = history(&bin);
    let last = h.last().unwrap();
    assert_eq!(last["outcome"], "rolled-back", "{last}");
    assert_eq!(last["failed_step"], "health check", "{last}");
    let marks = std::fs::read_to_string(bin.path("state/clusters/beta/bad.json")).unwrap();
    assert!(marks.contains(&bad), "{marks}");
    let s = bin.run(&["status", "beta", "--json"]).await.json();
    assert_eq!(
        s["clusters"][0]["last_push"]["outcome"], "rolled-back",
        "{s}"
    );
    assert_eq!(s["clusters"][0]["deployed"]["release"], r1.as_str());

    // One notification says what happened.
    let m = hook.messages();
    assert_eq!(m.len(), before + 1, "{m:#?}");
    let said = m.last().unwrap();
    assert!(
        said.contains(&format!(
            "*beta*: push of `{}` rolled back automatically at wave 1/3",
            &bad[..7]
        )) && said.contains(&format!("went back to {r1}"))
            && said.contains("|lock task>"),
        "{said}"
    );

    // The schedule does not push it again (the mark), and no newer commit
    // ships while the lock task is open.
    let held = push(&["push", "beta", "--json"]).await;
    check(&held, 3);
    assert_eq!(held.json()["reason"], "rolled-back");
    assert_eq!(releases(&bin), vec![Some(r1.clone()); 3]);
    healthy(&bin, "v3");
    let held = push(&["push", "beta"]).await;
    check(&held, 3);
    assert!(
        held.stdout.contains("held by 1 lock") && held.stdout.contains("rolled back from"),
        "{}",
        held.stdout
    );
    assert_eq!(
        tasks(&sb, seed::PUSH_BETA).len(),
        2,
        "held pushes make no task"
    );
    support::complete(&sb, &lock.gid).await;

    // Once a person completed it, the fixed commit ships, in waves.
    check(&push(&["push", "beta"]).await, 0);
    let r3 = release(&bin, 1).unwrap();
    assert_eq!(releases(&bin), vec![Some(r3); 3]);
}

#[tokio::test]
async fn a_wave_check_failing_after_the_second_wave_sends_every_switched_host_back() {
    let sb = support::sandbox().await;
    let bin = waved(&sb, WAVES);
    check(&bin.run(&["push", "beta"]).await, 0);
    let r1 = release(&bin, 1).unwrap();
    std::fs::write(bin.path("fail-at-wave-2"), "").unwrap();
    let v2 = healthy(&bin, "v2");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1);
    assert_eq!(releases(&bin), vec![Some(r1.clone()); 3], "{run:?}");
    let r2 = switches(&bin, 1)[1].clone();
    assert!(r2.ends_with(&v2[..12]));
    // Waves 1 and 2 went there and back; wave 3 never came.
    assert_eq!(switches(&bin, 1), vec![r1.clone(), r2.clone(), r1.clone()]);
    assert_eq!(switches(&bin, 2), vec![r1.clone(), r2.clone(), r1.clone()]);
    assert_eq!(switches(&bin, 3), vec![r1.clone()]);
    for n in 1..=3 {
        assert_eq!(bin.releases(n), vec![r1.clone()], "host {n}");
    }
    let last = comments(&last_push_task(&sb)).pop().unwrap();
    for needle in [
        "push rolled back automatically at step wave check: wave 2/3: wave check failed: ",
        "wave-check.sh exited with status 1: 5xx rate 4.2% on the canaries, above 1%",
        "the 2 hosts switched went back to",
        "last lines of output:",
        "checking the canaries' error rate",
    ] {
        assert!(last.contains(needle), "{needle}\n{last}");
    }
    let locks = tasks(&sb, seed::LOCK_BETA);
    assert_eq!(locks.len(), 1);
    assert!(
        locks[0].name.contains("wave check failed"),
        "{}",
        locks[0].name
    );
    assert_eq!(history(&bin).last().unwrap()["failed_step"], "wave check");
}

#[tokio::test]
async fn a_host_hanging_in_its_health_check_times_out_and_max_unhealthy_hosts_decides() {
    let sb = support::sandbox().await;
    let beta = WAVES
        .replace(
            "health_retries = 0",
            "health_retries = 0\nhealth_timeout = \"2s\"\nmax_unhealthy_hosts = 1",
        )
        .replace(r#"waves = ["1", "2", "100%"]"#, r#"waves = ["1", "100%"]"#)
        .replace("wave_check = [\"./wave-check.sh\"]\n", "");
    let bin = waved(&sb, &beta);
    check(&bin.run(&["push", "beta"]).await, 0);
    let r1 = release(&bin, 1).unwrap();
    let fifo = |n: usize| {
        let p = bin.path(&format!("hosts/beta-{n}/hang"));
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from(0o644)).unwrap();
    };

    // Host 3 never answers its health check: one unhealthy host is
    // tolerated, the push stands, and the comment says which and why.
    fifo(3);
    healthy(&bin, "v2");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 0);
    let r2 = release(&bin, 1).unwrap();
    assert_ne!(r1, r2);
    assert_eq!(releases(&bin), vec![Some(r2.clone()); 3]);
    let t = last_push_task(&sb);
    assert!(t.completed);
    let c = comments(&t);
    let d = bin.path("hosts").display().to_string();
    let wave2 = c
        .iter()
        .find(|c| c.starts_with("wave 2/2: 2/2 hosts switched"))
        .unwrap_or_else(|| panic!("{c:#?}"));
    assert!(
        wave2.contains(", 1 healthy (")
            && wave2.contains(&format!(
                "- local:{d}/beta-3: unhealthy after 1 try: timed out after 2s (health_timeout); sh was killed"
            )),
        "{wave2}"
    );
    let done = c.iter().find(|c| c.starts_with("switch: 3/3")).unwrap();
    assert!(
        done.contains(&format!(
            "- local:{d}/beta-3: runs {r2}, but unhealthy after 1 try: timed out"
        )),
        "{done}"
    );

    // Two of three is one too many: every switched host goes back.
    fifo(2);
    healthy(&bin, "v3");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1);
    assert_eq!(releases(&bin), vec![Some(r2.clone()); 3], "{run:?}");
    let last = comments(&last_push_task(&sb)).pop().unwrap();
    assert!(
        last.contains(
            "wave 2/2: health check failed on 2 of 3 hosts checked (max_unhealthy_hosts = 1)"
        ) && last.contains("the 3 hosts switched went back to"),
        "{last}"
    );
    assert_eq!(history(&bin).last().unwrap()["outcome"], "rolled-back");
}

#[tokio::test]
async fn without_auto_rollback_a_failed_canary_stops_the_push_where_it_is_and_locks() {
    let sb = support::sandbox().await;
    let beta = format!("{WAVES}auto_rollback = false\n");
    let bin = waved(&sb, &beta);
    check(&bin.run(&["push", "beta"]).await, 0);
    let r1 = release(&bin, 1).unwrap();
    let bad = unhealthy(&bin, "v2");
    let run = bin.run(&["push", "beta"]).await;
    check(&run, 1);
    // The canary keeps the release: a person decides. No further wave.
    let now = releases(&bin);
    let r2 = now[0].clone().unwrap();
    assert!(r2.ends_with(&bad[..12]));
    assert_eq!(
        now,
        vec![Some(r2.clone()), Some(r1.clone()), Some(r1.clone())]
    );
    assert_eq!(
        bin.releases(2),
        vec![r1.clone()],
        "the release left the others"
    );
    let last = comments(&last_push_task(&sb)).pop().unwrap();
    assert!(
        last.starts_with("push failed at step health check: wave 1/3: health check failed")
            && last.contains(
                "auto_rollback is off, so the push stopped there: 1 host switched so far keeps"
            ),
        "{last}"
    );
    let locks = tasks(&sb, seed::LOCK_BETA);
    assert_eq!(locks.len(), 1);
    assert!(
        locks[0].name.starts_with("beta stopped at wave 1/3 of"),
        "{}",
        locks[0].name
    );
    assert!(
        locks[0].notes.contains("`pushgate rollback beta`"),
        "{}",
        locks[0].notes
    );
    assert_eq!(history(&bin).last().unwrap()["outcome"], "failed");
    // The next run leaves it so: no recovery, held by the lock.
    check(&bin.run(&["push", "beta"]).await, 3);
    assert_eq!(release(&bin, 1), Some(r2.clone()));
    // `rollback` puts the canary back on what the others run.
    let rb = bin.run(&["rollback", "beta"]).await;
    check(&rb, 0);
    assert_eq!(releases(&bin), vec![Some(r1.clone()); 3], "{rb:?}");
}

/// Every host's `current`, if any, is a whole release: its files are the
/// artifact's of the commit it was built from.
fn assert_whole(bin: &Bin, when: &str) {
    for n in 1..=3 {
        let Some(r) = release(bin, n) else { continue };
        let artifacts = bin.path("state/artifacts");
        let sha = std::fs::read_dir(&artifacts)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|s| s.starts_with(&r[17..]))
            .unwrap_or_else(|| panic!("{when}: no artifact for {r}"));
        assert!(
            tree(&artifacts.join(sha)) == tree(&bin.path(&format!("hosts/beta-{n}/current"))),
            "{when}: host {n}'s {r} is not whole"
        );
    }
}

/// Pushes v1, then v2 (healthy or not) killed at `point`; runs again.
/// Returns the next run, v1's release and v2's commit.
async fn kill_at(sb: &Sandbox, point: &str, bad: bool) -> (Bin, Run, String, String) {
    let bin = waved(sb, WAVES);
    check(&bin.run(&["push", "beta"]).await, 0);
    let r1 = release(&bin, 1).unwrap();
    let v2 = if bad {
        unhealthy(&bin, "v2")
    } else {
        healthy(&bin, "v2")
    };
    let point = point.replace("SCRIPT", &bin.path("wave-check.sh").display().to_string());
    let killed = bin
        .run_env(
            &["push", "beta"],
            &bin.token,
            &[(pushgate::adapters::failpoint::ENV, point.as_str())],
        )
        .await;
    assert_eq!(
        killed.signal,
        Some(9),
        "{point}: not killed there: {killed:?}"
    );
    assert_whole(&bin, &point);
    let next = bin.run(&["push", "beta", "--json"]).await;
    assert!(!next.stderr.contains("panicked"), "{}", next.stderr);
    assert_whole(&bin, &format!("{point}, then run again"));
    assert!(
        !bin.path("state/clusters/beta/journal.jsonl").exists(),
        "{point}"
    );
    // Recorded once: the killed run's task once, no comment twice.
    let runs: Vec<String> = tasks(sb, seed::PUSH_BETA)
        .iter()
        .map(|t| {
            t.notes
                .lines()
                .find(|l| l.starts_with("run: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        runs.iter().collect::<BTreeSet<_>>().len(),
        runs.len(),
        "{point}: {runs:?}"
    );
    for t in tasks(sb, seed::PUSH_BETA) {
        let c = comments(&t);
        assert_eq!(
            c.iter().collect::<BTreeSet<_>>().len(),
            c.len(),
            "{point}: {c:#?}"
        );
    }
    (bin, next, r1, v2)
}

/// Killed between waves, inside a health check or a wave check: the next
/// run undoes the killed push (no host stays on its release), records it,
/// then pushes the commit again through every wave.
#[tokio::test]
async fn killed_during_the_waves_the_next_run_undoes_the_push_then_pushes_again() {
    for point in [
        "journal:wave",
        "journal:health",
        // The build, the canary's after_switch, then its health check.
        "spawned:sh#3",
        "health:host",
        "journal:wave_check",
        "spawned:SCRIPT",
        "journal:wave#2",
        "switch:host#2",
        "spawned:SCRIPT#3",
    ] {
        let sb = support::sandbox().await;
        let (bin, next, r1, v2) = kill_at(&sb, point, false).await;
        check(&next, 0);
        let v = next.json();
        assert_eq!(v["recovered"]["finished"], false, "{point}: {v}");
        assert_eq!(v["verdict"], "push", "{point}: {v}");
        let now = releases(&bin);
        let r2 = now[0].clone().unwrap();
        assert!(r2.ends_with(&v2[..12]), "{point}: {now:?}");
        assert_eq!(now, vec![Some(r2.clone()); 3], "{point}");
        // Between the kill and the new push, every host was back on v1:
        // the killed push's release went, the new one came in waves.
        for n in 1..=3 {
            let s = switches(&bin, n);
            assert_eq!(s.last(), Some(&r2), "{point}: host {n}: {s:?}");
            assert!(
                !s.iter()
                    .any(|r| r != &r1 && r != &r2 && s.iter().filter(|x| *x == r).count() > 1),
                "{point}: {s:?}"
            );
            assert!(
                bin.releases(n).iter().all(|r| *r == r1 || *r == r2),
                "{point}: {:?}",
                bin.releases(n)
            );
        }
        let killed = v["recovered"]["run_id"].as_str().unwrap().to_owned();
        let h = history(&bin);
        let mine: Vec<_> = h
            .iter()
            .filter(|r| r["run_id"] == killed.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{point}: {h:?}");
        assert_eq!(mine[0]["outcome"], "failed", "{point}");
        assert!(
            tasks(&sb, seed::LOCK_BETA).is_empty(),
            "{point}: nothing failed a check"
        );
    }
}

/// Killed in the middle of its automatic rollback: the next run finishes
/// it — every host back on v1, the commit marked, one lock task, the run
/// recorded as rolled back — and is then held by that lock.
#[tokio::test]
async fn killed_during_an_automatic_rollback_the_next_run_finishes_it() {
    for point in ["journal:rollback", "journal:revert", "revert:host"] {
        let sb = support::sandbox().await;
        let (bin, next, r1, v2) = kill_at(&sb, point, true).await;
        check(&next, 3);
        let v = next.json();
        assert_eq!(v["recovered"]["finished"], false, "{point}: {v}");
        assert!(
            v["recovered"]["message"]
                .as_str()
                .unwrap()
                .contains("its automatic rollback was finished"),
            "{point}: {v}"
        );
        assert_eq!(releases(&bin), vec![Some(r1.clone()); 3], "{point}");
        for n in 1..=3 {
            assert_eq!(bin.releases(n), vec![r1.clone()], "{point}: host {n}");
        }
        let locks = tasks(&sb, seed::LOCK_BETA);
        assert_eq!(locks.len(), 1, "{point}: {locks:#?}");
        assert!(
            locks[0].name.contains("automatically: health check failed"),
            "{point}"
        );
        let marks = std::fs::read_to_string(bin.path("state/clusters/beta/bad.json")).unwrap();
        assert!(marks.contains(&v2), "{point}: {marks}");
        let killed = v["recovered"]["run_id"].as_str().unwrap().to_owned();
        let h = history(&bin);
        let mine: Vec<_> = h
            .iter()
            .filter(|r| r["run_id"] == killed.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{point}: {h:?}");
        assert_eq!(mine[0]["outcome"], "rolled-back", "{point}");
        let t = tasks(&sb, seed::PUSH_BETA).pop().unwrap();
        assert!(!t.completed);
        assert!(
            comments(&t)
                .iter()
                .any(|c| c.contains("finishes its automatic rollback")),
            "{point}: {:#?}",
            comments(&t)
        );
        // Held from then on: by the lock, then by the mark.
        support::complete(&sb, &locks[0].gid).await;
        let held = bin.run(&["push", "beta", "--json"]).await;
        check(&held, 3);
        assert_eq!(held.json()["reason"], "rolled-back", "{point}");
    }
}

/// While a push is in a health check, the journal says where it is: what
/// `status` shows (`run::execute::wave_progress`).
#[tokio::test]
async fn a_push_in_its_waves_can_be_seen_where_it_is() {
    let sb = support::sandbox().await;
    let bin = waved(&sb, WAVES);
    check(&bin.run(&["push", "beta"]).await, 0);
    let fifo = bin.path("hosts/beta-2/hang");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o644)).unwrap();
    healthy(&bin, "v2");
    let push = bin.run(&["push", "beta"]);
    tokio::pin!(push);
    // Opening the FIFO for writing returns once host 2's check reads it.
    let opened = tokio::task::spawn_blocking({
        let fifo = fifo.clone();
        move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap()
    });
    let writer = tokio::select! {
        w = opened => w.unwrap(),
        r = &mut push => panic!("the push ended first: {r:?}"),
    };
    let state = pushgate::adapters::state::StateDir::new(bin.path("state"));
    let cluster = pushgate::domain::model::ClusterName::parse("beta").unwrap();
    let p = pushgate::run::execute::wave_progress(&state.cluster(&cluster)).expect("progress");
    assert_eq!((p.wave, p.of, p.switched, p.hosts), (2, 3, 2, 3), "{p}");
    assert_eq!(p.doing, "health check");
    assert!(
        p.to_string()
            .contains("is at wave 2/3 (health check) of release"),
        "{p}"
    );
    drop(writer);
    std::fs::remove_file(&fifo).unwrap();
    check(&push.await, 0);
}

#[tokio::test]
async fn over_ssh_a_failing_canary_never_reaches_the_other_hosts() {
    if let Some(why) = hosts::unavailable() {
        return hosts::skip(&why);
    }
    let hosts = match Hosts::start(3).await {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            sync: format!(
                "{}after_switch = [\"sh\", \"-c\", \"readlink current >> switches.log\"]\n",
                hosts.sync_toml()
            ),
            beta: format!(
                "{}waves = [\"1\", \"100%\"]\nhealth_check = [\"sh\", \"-c\", \"grep -qx ok current/health\"]\nhealth_retries = 1\n",
                hosts.cluster_toml()
            ),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    bin.repo.commit(&[("app/health", b"ok\n")], "healthy v1");
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}\n{}", hosts.logs());
    let cur = |i: usize| {
        hosts
            .current(i)
            .map(|c| c.trim_start_matches("releases/").to_owned())
    };
    let r1 = cur(0).unwrap();
    assert_eq!(
        (0..3).map(cur).collect::<Vec<_>>(),
        vec![Some(r1.clone()); 3]
    );

    let bad = unhealthy(&bin, "v2");
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}\n{}", hosts.logs());
    assert_eq!(
        (0..3).map(cur).collect::<Vec<_>>(),
        vec![Some(r1.clone()); 3]
    );
    let log = |i: usize| std::fs::read_to_string(hosts.dir(i).join("switches.log")).unwrap();
    assert_eq!(log(0).lines().count(), 3, "there and back: {}", log(0));
    assert_eq!(log(1).lines().count(), 1, "{}", log(1));
    assert_eq!(log(2).lines().count(), 1, "{}", log(2));
    for i in 0..3 {
        assert_eq!(hosts.releases(i), vec![r1.clone()], "host {i}");
    }
    let last = comments(&last_push_task(&sb)).pop().unwrap();
    assert!(
        last.contains(&format!("{}: unhealthy after 2 tries", hosts.specs()[0]))
            || last.contains(&format!("{}: ssh exited with status 1", hosts.specs()[0])),
        "{last}"
    );
    assert!(
        last.contains(&format!("{} is marked bad", &bad[..7])),
        "{last}"
    );
    assert_eq!(tasks(&sb, seed::LOCK_BETA).len(), 1);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
}

/// A health check that hangs on an ssh host is stopped on the host at
/// `health_timeout`, not only its ssh client on the bastion: nothing of it
/// is left running once the push has ended.
#[tokio::test]
async fn over_ssh_a_hanging_health_check_is_stopped_on_the_host() {
    if let Some(why) = hosts::unavailable() {
        return hosts::skip(&why);
    }
    let hosts = match Hosts::start(1).await {
        Ok(h) => h,
        Err(why) => return hosts::skip(&why),
    };
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            sync: hosts.sync_toml(),
            beta: format!(
                "{}health_check = [\"sh\", \"-c\", \"test -e current/hang || exit 0; echo $$ > check.pid; exec sleep 600\"]\nhealth_timeout = \"1s\"\nhealth_retries = 0\n",
                hosts.cluster_toml()
            ),
            beta_hosts: Some(hosts.specs()),
            ..Setup::default()
        },
    );
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}\n{}", hosts.logs());
    let first = hosts.current(0).unwrap();

    bin.repo
        .commit(&[("app/hang", b"\n")], "hangs in its health check");
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 1, "{run:?}\n{}", hosts.logs());
    assert_eq!(hosts.current(0).unwrap(), first, "rolled back");
    let last = comments(&last_push_task(&sb)).join("\n");
    assert!(
        last.contains("timed out after 1s (health_timeout); stopped on the host"),
        "{last}"
    );
    let pid: i32 = std::fs::read_to_string(hosts.dir(0).join("check.pid"))
        .expect("the check ran")
        .trim()
        .parse()
        .unwrap();
    let alive = rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid).unwrap());
    assert!(
        alive.is_err(),
        "the hung check (pid {pid}) still runs on the host"
    );
}

/// The daemon's metrics count waves, failed checks and automatic
/// rollbacks; a first push rolled back leaves no `current` at all.
#[tokio::test]
async fn the_daemon_counts_waves_failed_checks_and_automatic_rollbacks() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let sb = support::sandbox().await;
    let bin = waved(&sb, WAVES);
    let bad = unhealthy(&bin, "v1, broken");
    // beta every second; prod never during the test.
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("0 */15 * * * *", "* * * * * *")
        .replace("0 0 10,17 * * Mon-Fri", "0 0 0 1 1 *");
    std::fs::write(&bin.config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["--log-format", "json", "run", "--metrics", "127.0.0.1:0"])
        .env(support::TOKEN_ENV, &bin.token)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut until = async |needle: &str| -> String {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains(needle) {
                return l;
            }
            seen.push(l);
        }
        panic!("the log ended without {needle:?}: {seen:#?}");
    };
    let serving: serde_json::Value = serde_json::from_str(&until("serving metrics").await).unwrap();
    let url = serving["fields"]["url"].as_str().unwrap().to_owned();
    // The first push fails its canary; the next tick is held by the mark.
    until(&format!("not pushing {}", &bad[..7])).await;
    let m = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let sample = |series: &str| -> Option<f64> {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    for (series, want) in [
        (
            r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="rolled-back"}"#,
            1.0,
        ),
        (
            r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="success"}"#,
            0.0,
        ),
        (
            r#"pushgate_auto_rollbacks_total{app="repo",cluster="beta"}"#,
            1.0,
        ),
        (
            r#"pushgate_waves_total{app="repo",cluster="beta",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"pushgate_waves_total{app="repo",cluster="beta",outcome="passed"}"#,
            0.0,
        ),
        (
            r#"pushgate_health_check_failures_total{app="repo",cluster="beta"}"#,
            1.0,
        ),
        (
            r#"pushgate_wave_check_failures_total{app="repo",cluster="beta"}"#,
            0.0,
        ),
        (
            r#"pushgate_auto_rollbacks_total{app="repo",cluster="prod"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(series), Some(want), "{series}\n{m}");
    }
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().await.unwrap().success());
    // Nothing was deployed before: the canary lost its `current`, and the
    // release is gone everywhere.
    assert_eq!(releases(&bin), vec![None, None, None]);
    for n in 1..=3 {
        assert!(
            bin.releases(n).is_empty(),
            "host {n}: {:?}",
            bin.releases(n)
        );
    }
    assert_eq!(switches(&bin, 1).len(), 1);
    assert!(switches(&bin, 2).is_empty() && switches(&bin, 3).is_empty());
}
