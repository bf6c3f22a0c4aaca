//! Canary waves: which hosts switch in which wave, and what a wave's
//! results mean — go on, done, undo (too many hosts failed to switch, as
//! without waves), roll back (a check failed: every host switched in this
//! push goes back, the cluster is locked, the commit marked bad) or halt
//! (a check failed with `auto_rollback = false`: no further wave, a person
//! decides). What the lock task says is decided here too.
//!
//! Staging stays a fleet-wide barrier: waves only split the switch.
//! `execute` asks [`assign`] once every host staged, and [`after_wave`]
//! after each wave's switch, health checks and wave check; it has no rule
//! of its own. Switch failures are counted by `hosts::after_switch`
//! across every wave (with the stage's), unhealthy hosts by
//! `hosts::exceeds` against `max_unhealthy_hosts`.

use crate::domain::decide::hosts::{after_switch, back_of, exceeds, AfterSwitch, Staged, Switched};
use crate::domain::model::{cli, AppName, ClusterName, CommitId, Host, ReleaseId};
use crate::domain::plan::{HostPolicy, Rollout, Wave, WaveSize};
use crate::domain::text::{count, printable};

/// The waves over the hosts marked `eligible` (all of them in the plan;
/// after the stage, those that staged), in the hosts' order. Each size is
/// cumulative and rounded up; a wave has at least one host; a size the
/// waves before already reached adds no wave; hosts the list does not
/// reach make a last wave; no eligible host, no wave.
pub fn assign(sizes: &[WaveSize], eligible: &[bool]) -> Vec<Wave> {
    let hosts: Vec<usize> = eligible
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.then_some(i))
        .collect();
    let n = hosts.len();
    let mut waves = Vec::new();
    let mut done = 0;
    for size in sizes {
        if done == n {
            break;
        }
        let target = match *size {
            WaveSize::Hosts(k) => k,
            // Rounded up: 10% of 15 hosts is 2.
            WaveSize::Share(bp) => (u128::from(bp) * n as u128).div_ceil(10_000) as usize,
        };
        let target = target.max(done + 1).min(n);
        waves.push(Wave {
            size: Some(*size),
            hosts: hosts[done..target].to_vec(),
        });
        done = target;
    }
    if done < n {
        waves.push(Wave {
            size: None,
            hosts: hosts[done..].to_vec(),
        });
    }
    waves
}

/// One host's health check, as the rules read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not checked (no health check, not switched yet, or its switch failed).
    NotChecked,
    Healthy,
    Unhealthy,
}

/// The wave check of the wave just done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaveCheck {
    /// None is configured, or it has not run yet.
    NotRun,
    Passed,
    Failed,
}

/// What failed a wave's checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckFailed {
    /// More hosts failed their health check than `max_unhealthy_hosts`
    /// allows (or every host checked did): these, of `checked`.
    Unhealthy {
        hosts: Vec<usize>,
        checked: usize,
        max: usize,
    },
    /// The wave check exited non-zero (or timed out).
    WaveCheck,
}

impl CheckFailed {
    /// The push's failed step, for its task and history.
    pub fn step(&self) -> &'static str {
        match self {
            CheckFailed::Unhealthy { .. } => "health check",
            CheckFailed::WaveCheck => "wave check",
        }
    }
}

/// Where the hosts go back to (see `hosts::back_of`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Back {
    /// Per host: the release to switch back to.
    pub to: Vec<Option<ReleaseId>>,
    /// Per host: remove `current` where it points at this release (it
    /// ran none before this push).
    pub unset: Vec<Option<ReleaseId>>,
}

impl Back {
    fn of(release: &ReleaseId, staged: &[Staged], switched: &[Switched]) -> Back {
        let (to, unset) = back_of(release, staged, switched);
        Back { to, unset }
    }

    /// How many hosts go back.
    pub fn hosts(&self) -> usize {
        self.to
            .iter()
            .zip(&self.unset)
            .filter(|(t, u)| t.is_some() || u.is_some())
            .count()
    }
}

/// What follows a wave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterWave {
    /// The wave passed: the next one goes.
    Next,
    /// The last wave passed: the push stands; prune these per host.
    Done { prune: Vec<Vec<ReleaseId>> },
    /// Too many hosts failed to stage or switch (`max_failed_hosts`), or
    /// no host of the wave could switch (`none_took`): every switched host
    /// goes back and the new release is removed, as without waves. A host
    /// problem: nothing is locked or marked.
    Undo {
        failed: usize,
        none_took: bool,
        back: Back,
    },
    /// A check failed and `auto_rollback` is on: every host switched in
    /// this push goes back, the new release is removed where nothing
    /// points at it, the cluster is locked and the commit marked bad.
    RollBack { failed: CheckFailed, back: Back },
    /// A check failed with `auto_rollback = false`: no further wave; the
    /// switched hosts keep the release, the others lose it (`remove`);
    /// the cluster is locked and the commit marked bad.
    Halt {
        failed: CheckFailed,
        remove: Vec<bool>,
    },
}

/// Everything known once a wave switched (and was checked): each host's
/// stage, switch (`Pending` for later waves) and health, the wave check if
/// it ran, and which wave it was.
#[derive(Clone, Copy, Debug)]
pub struct WaveResults<'a> {
    pub staged: &'a [Staged],
    pub switched: &'a [Switched],
    pub health: &'a [Health],
    pub check: WaveCheck,
    /// The wave's hosts.
    pub hosts: &'a [usize],
    /// The wave (0-based), of how many.
    pub wave: usize,
    pub of: usize,
}

pub fn after_wave(
    policy: &HostPolicy,
    rollout: &Rollout,
    release: &ReleaseId,
    r: &WaveResults<'_>,
) -> AfterWave {
    let WaveResults {
        staged,
        switched,
        health,
        check,
        hosts,
        wave,
        of,
    } = *r;
    let prune = match after_switch(policy, release, staged, switched) {
        AfterSwitch::Undo {
            failed,
            back,
            unset,
        } => {
            return AfterWave::Undo {
                failed,
                none_took: false,
                back: Back { to: back, unset },
            }
        }
        // A wave none of whose hosts took the release tells nothing: the
        // next would go unchecked (a canary whose `after_switch` failed).
        // As a push no host has is no push, it is undone.
        AfterSwitch::Done { failed, .. }
            if !hosts.is_empty() && !hosts.iter().any(|i| switched[*i] == Switched::Done) =>
        {
            return AfterWave::Undo {
                failed,
                none_took: true,
                back: Back::of(release, staged, switched),
            }
        }
        AfterSwitch::Done { prune, .. } => prune,
    };
    let unhealthy: Vec<usize> = health
        .iter()
        .enumerate()
        .filter_map(|(i, h)| (*h == Health::Unhealthy).then_some(i))
        .collect();
    let checked = health.iter().filter(|h| **h != Health::NotChecked).count();
    let failed = if exceeds(rollout.max_unhealthy, unhealthy.len(), checked) {
        Some(CheckFailed::Unhealthy {
            hosts: unhealthy,
            checked,
            max: rollout.max_unhealthy,
        })
    } else if check == WaveCheck::Failed {
        Some(CheckFailed::WaveCheck)
    } else {
        None
    };
    match failed {
        None if wave + 1 >= of => AfterWave::Done { prune },
        None => AfterWave::Next,
        Some(failed) if rollout.auto_rollback => AfterWave::RollBack {
            failed,
            back: Back::of(release, staged, switched),
        },
        Some(failed) => AfterWave::Halt {
            failed,
            // Where nothing points at the new release: staged and never
            // switched, or a stage that failed after reaching the host.
            remove: staged
                .iter()
                .zip(switched)
                .map(|(s, w)| match s {
                    Staged::Done { .. } => *w == Switched::Pending,
                    Staged::Failed { reached } => *reached,
                })
                .collect(),
        },
    }
}

/// A push told to stop (the daemon shutting down) between waves: every
/// host switched so far goes back, as after too many failures. Nothing is
/// locked: the release did nothing wrong.
pub fn stopped_between_waves(
    release: &ReleaseId,
    staged: &[Staged],
    switched: &[Switched],
) -> Back {
    Back::of(release, staged, switched)
}

/// Per host: switched in an earlier wave or this one (asked, whatever came of it).
pub fn asked(switched: &[Switched]) -> usize {
    switched
        .iter()
        .filter(|w| !matches!(w, Switched::Skipped | Switched::Pending))
        .count()
}

/// What a failed check stops: the lock task's name and notes, and the
/// line for the push task. `why` is the failed check's own words (host
/// output, printed here through `printable`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockdown {
    pub lock_name: String,
    pub lock_notes: String,
}

/// The lock task a failed check leaves, so that the schedule does not push
/// `commit` again and a person looks.
#[allow(clippy::too_many_arguments)]
pub fn lockdown(
    app: Option<&AppName>,
    cluster: &ClusterName,
    release: &ReleaseId,
    commit: &CommitId,
    back_to: Option<&ReleaseId>,
    rolled_back: bool,
    wave: usize,
    of: usize,
    what: &str,
    push_task: Option<&str>,
) -> Lockdown {
    let what = printable(what, 300);
    let cmd = |args: String| cli(app, &args);
    let label = app.map_or_else(|| cluster.to_string(), |a| format!("{a}/{cluster}"));
    let lock_name = if rolled_back {
        format!(
            "rolled back from {release} automatically: {} failed: investigate",
            printable(first_clause(&what), 120)
        )
    } else {
        format!(
            "{label} stopped at wave {wave}/{of} of {release}: {} failed: decide",
            printable(first_clause(&what), 120)
        )
    };
    let mut notes = if rolled_back {
        format!(
            "pushgate pushed {} ({}) to {label} in {of} waves and wave {wave}'s {what}.\n\nEvery host switched in that push went back to {}, so the cluster runs one release again.",
            commit.short(),
            release,
            back_to.map_or("no release (it was the first push)".to_owned(), ToString::to_string),
        )
    } else {
        format!(
            "pushgate pushed {} ({}) to {label} in {of} waves and wave {wave}'s {what}.\n\nauto_rollback is off: no further wave ran, and the hosts switched so far keep {release}; the others run {}. To finish the push: `{}`. To put every host back: `{}`.",
            commit.short(),
            release,
            back_to.map_or("no release".to_owned(), ToString::to_string),
            cmd(format!("push {cluster} --commit {}", commit.short())),
            cmd(format!("rollback {cluster}")),
        )
    };
    notes.push_str(&format!(
        "\n\nAutomatic pushes of {label} stop while this task is open: complete it once the cause is understood. The commit {} is not pushed again unless someone runs `{}`.",
        commit.short(),
        cmd(format!("push {cluster} --commit {}", commit.short())),
    ));
    if let Some(t) = push_task {
        notes.push_str(&format!("\n\nPush task: {}", printable(t, 200)));
    }
    Lockdown {
        lock_name,
        lock_notes: notes,
    }
}

/// "the health check failed on 1 of 3 hosts (…)" → "the health check".
fn first_clause(what: &str) -> &str {
    what.split(" failed").next().unwrap_or(what)
}

/// "the health check failed on 2 of 10 hosts checked (max_unhealthy_hosts
/// = 1): HOST: WHY; HOST: WHY", or "the wave check failed: WHY".
pub fn what_failed(failed: &CheckFailed, hosts: &[Host], why: &[(usize, String)]) -> String {
    match failed {
        CheckFailed::Unhealthy {
            hosts: bad,
            checked,
            max,
        } => {
            let mut named: Vec<String> = bad
                .iter()
                .take(5)
                .map(|i| {
                    let host = hosts.get(*i).map_or("?".to_owned(), ToString::to_string);
                    match why.iter().find(|(j, _)| j == i) {
                        Some((_, w)) => format!("{host}: {}", printable(w, 200)),
                        None => host,
                    }
                })
                .collect();
            if bad.len() > 5 {
                named.push(format!("and {} more", bad.len() - 5));
            }
            format!(
                "health check failed on {} of {} checked (max_unhealthy_hosts = {max}): {}",
                bad.len(),
                count(*checked, "host"),
                named.join("; ")
            )
        }
        CheckFailed::WaveCheck => format!(
            "wave check failed: {}",
            why.first()
                .map_or("it exited non-zero".to_owned(), |(_, w)| printable(w, 300))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn rel(d: u8) -> ReleaseId {
        ReleaseId::parse(&format!("202611{d:02}T101500Z-3f2a9c13f2a9")).unwrap()
    }

    fn sizes(s: &[&str]) -> Vec<WaveSize> {
        s.iter()
            .map(|w| match w.strip_suffix('%') {
                Some(p) => WaveSize::Share((p.parse::<f64>().unwrap() * 100.0).round() as u32),
                None => WaveSize::Hosts(w.parse().unwrap()),
            })
            .collect()
    }

    /// The waves as "size:count" per wave, for `n` hosts all eligible.
    fn shape(s: &[&str], n: usize) -> String {
        assign(&sizes(s), &vec![true; n])
            .iter()
            .map(|w| {
                format!(
                    "{}:{}",
                    w.size.map_or("rest".to_owned(), |s| s.to_string()),
                    w.hosts.len()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn waves_are_cumulative_rounded_up_never_empty_and_end_on_every_host() {
        let cases = [
            (vec!["1", "10%", "100%"], 100),
            (vec!["1", "10%", "100%"], 15),
            (vec!["1", "10%", "100%"], 3),
            (vec!["1", "10%", "100%"], 1),
            (vec!["1", "10%"], 100),
            (vec!["1"], 5),
            (vec![], 4),
            (vec!["5", "10%"], 20),
            (vec!["2.5%", "50%"], 1000),
            (vec!["0.01%"], 3),
            (vec!["50", "100%"], 7),
            (vec!["1", "10%", "100%"], 0),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(s, n)| format!("{s:?} of {n}: {}", shape(s, *n)))
            .collect();
        expect![[r#"
            ["1", "10%", "100%"] of 100: 1:1 10%:9 100%:90
            ["1", "10%", "100%"] of 15: 1:1 10%:1 100%:13
            ["1", "10%", "100%"] of 3: 1:1 10%:1 100%:1
            ["1", "10%", "100%"] of 1: 1:1
            ["1", "10%"] of 100: 1:1 10%:9 rest:90
            ["1"] of 5: 1:1 rest:4
            [] of 4: rest:4
            ["5", "10%"] of 20: 5:5 10%:1 rest:14
            ["2.5%", "50%"] of 1000: 2.5%:25 50%:475 rest:500
            ["0.01%"] of 3: 0.01%:1 rest:2
            ["50", "100%"] of 7: 50:7
            ["1", "10%", "100%"] of 0: "#]]
        .assert_eq(&got.join("\n"));
    }

    #[test]
    fn waves_after_a_tolerated_stage_failure_are_counted_over_the_hosts_that_staged() {
        // Host 0 (the canary of the plan) failed to stage: host 1 is the canary now.
        let w = assign(&sizes(&["1", "50%"]), &[false, true, true, true, true]);
        assert_eq!(
            w.iter().map(|w| w.hosts.clone()).collect::<Vec<_>>(),
            vec![vec![1], vec![2], vec![3, 4]]
        );
    }

    fn done(current: u8) -> Staged {
        Staged::Done {
            current: Some(rel(current)),
            releases: (1..=current).map(rel).collect(),
        }
    }

    /// The results of wave `wave` of `of`, its hosts those switched (not
    /// `Pending`) since the wave before.
    fn res<'a>(
        staged: &'a [Staged],
        switched: &'a [Switched],
        health: &'a [Health],
        check: WaveCheck,
        wave: usize,
        of: usize,
    ) -> WaveResults<'a> {
        let hosts: &'static [usize] = match (wave, of) {
            (0, _) => &[0],
            (1, 2) => &[1, 2],
            _ => &[1],
        };
        WaveResults {
            staged,
            switched,
            health,
            check,
            hosts,
            wave,
            of,
        }
    }

    fn checked() -> Rollout {
        Rollout {
            waves: sizes(&["1", "100%"]),
            health_check: Some(vec!["true".into()]),
            ..Rollout::default()
        }
    }

    #[test]
    fn a_healthy_wave_goes_on_and_the_last_one_prunes() {
        let p = HostPolicy::default();
        let staged = [done(4), done(4), done(4)];
        let sw = [Switched::Done, Switched::Pending, Switched::Pending];
        let h = [Health::Healthy, Health::NotChecked, Health::NotChecked];
        let r = checked();
        assert_eq!(
            after_wave(
                &p,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::NotRun, 0, 2)
            ),
            AfterWave::Next
        );
        let sw = [Switched::Done; 3];
        let h = [Health::Healthy; 3];
        assert!(matches!(
            after_wave(
                &p,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::Passed, 1, 2)
            ),
            AfterWave::Done { .. }
        ));
    }

    #[test]
    fn an_unhealthy_canary_sends_every_switched_host_back_even_within_max_unhealthy() {
        let p = HostPolicy::default();
        let staged = [done(4), done(4), done(4)];
        let sw = [Switched::Done, Switched::Pending, Switched::Pending];
        let h = [Health::Unhealthy, Health::NotChecked, Health::NotChecked];
        let r = Rollout {
            max_unhealthy: 1,
            ..checked()
        };
        // One of one checked host: every host checked failed.
        assert_eq!(
            after_wave(
                &p,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::NotRun, 0, 2)
            ),
            AfterWave::RollBack {
                failed: CheckFailed::Unhealthy {
                    hosts: vec![0],
                    checked: 1,
                    max: 1
                },
                back: Back {
                    to: vec![Some(rel(4)), None, None],
                    unset: vec![None, None, None]
                }
            }
        );
        // One of three: tolerated, the push stands.
        let sw = [Switched::Done; 3];
        let h = [Health::Healthy, Health::Unhealthy, Health::Healthy];
        assert!(matches!(
            after_wave(
                &p,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::NotRun, 1, 2)
            ),
            AfterWave::Done { .. }
        ));
        // Two of three: not.
        let h = [Health::Unhealthy, Health::Unhealthy, Health::Healthy];
        let AfterWave::RollBack { back, .. } = after_wave(
            &p,
            &r,
            &rel(5),
            &res(&staged, &sw, &h, WaveCheck::NotRun, 1, 2),
        ) else {
            panic!()
        };
        assert_eq!(back.hosts(), 3);
    }

    #[test]
    fn a_failed_wave_check_rolls_back_and_without_auto_rollback_halts() {
        let p = HostPolicy::default();
        let staged = [done(4), done(4), Staged::Failed { reached: true }];
        let sw = [Switched::Done, Switched::Pending, Switched::Skipped];
        let h = [Health::NotChecked; 3];
        let r = Rollout {
            wave_check: Some(vec!["check".into()]),
            ..Rollout::default()
        };
        let p2 = HostPolicy { max_failed: 1, ..p };
        assert!(matches!(
            after_wave(
                &p2,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::Failed, 0, 2)
            ),
            AfterWave::RollBack {
                failed: CheckFailed::WaveCheck,
                ..
            }
        ));
        let r = Rollout {
            auto_rollback: false,
            ..r
        };
        assert_eq!(
            after_wave(
                &p2,
                &r,
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::Failed, 0, 2)
            ),
            AfterWave::Halt {
                failed: CheckFailed::WaveCheck,
                remove: vec![false, true, true]
            }
        );
    }

    #[test]
    fn switch_failures_in_any_wave_undo_every_wave_as_without_waves() {
        let p = HostPolicy::default();
        let staged = [done(4), done(4), done(4)];
        let sw = [Switched::Done, Switched::Failed, Switched::Pending];
        let h = [Health::Healthy, Health::NotChecked, Health::NotChecked];
        assert_eq!(
            after_wave(
                &p,
                &checked(),
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::NotRun, 1, 3)
            ),
            AfterWave::Undo {
                failed: 1,
                none_took: false,
                back: Back {
                    to: vec![Some(rel(4)), Some(rel(4)), None],
                    unset: vec![None; 3]
                }
            }
        );
    }

    #[test]
    fn a_canary_that_could_not_take_the_release_is_no_canary_even_within_max_failed_hosts() {
        let p = HostPolicy {
            max_failed: 1,
            keep_releases: 5,
        };
        let staged = [done(4), done(4), done(4)];
        let sw = [
            Switched::AfterSwitchFailed,
            Switched::Pending,
            Switched::Pending,
        ];
        let h = [Health::NotChecked; 3];
        let AfterWave::Undo {
            failed: 1,
            none_took: true,
            back,
        } = after_wave(
            &p,
            &checked(),
            &rel(5),
            &res(&staged, &sw, &h, WaveCheck::NotRun, 0, 2),
        )
        else {
            panic!("undo")
        };
        assert_eq!(back.to, vec![Some(rel(4)), None, None]);
        // In a later wave, one failed host of two is tolerated as before.
        let sw = [Switched::Done, Switched::Done, Switched::Failed];
        let h = [Health::Healthy, Health::Healthy, Health::NotChecked];
        assert!(matches!(
            after_wave(
                &p,
                &checked(),
                &rel(5),
                &res(&staged, &sw, &h, WaveCheck::NotRun, 1, 2)
            ),
            AfterWave::Done { .. }
        ));
    }

    #[test]
    fn a_first_push_rolled_back_leaves_no_current() {
        let staged = [Staged::Done {
            current: None,
            releases: vec![],
        }];
        let back = stopped_between_waves(&rel(5), &staged, &[Switched::Done]);
        assert_eq!(
            back,
            Back {
                to: vec![None],
                unset: vec![Some(rel(5))]
            }
        );
    }

    #[test]
    fn the_lock_task_names_the_failed_check_and_what_to_do() {
        let hosts: Vec<Host> = (1..=3)
            .map(|i| Host::parse(&format!("local:/srv/beta-{i}")).unwrap())
            .collect();
        let what = what_failed(
            &CheckFailed::Unhealthy {
                hosts: vec![0],
                checked: 1,
                max: 0,
            },
            &hosts,
            &[(0, "sh exited with status 1: \u{1b}[2Jdown".into())],
        );
        let c = ClusterName::parse("beta").unwrap();
        let commit = CommitId::parse(&"c".repeat(40)).unwrap();
        let l = lockdown(
            None,
            &c,
            &rel(5),
            &commit,
            Some(&rel(4)),
            true,
            1,
            3,
            &what,
            Some("https://app.asana.com/0/3/9"),
        );
        expect![[r#"rolled back from 20261105T101500Z-3f2a9c13f2a9 automatically: health check failed: investigate"#]]
            .assert_eq(&l.lock_name);
        expect![[r#"
            pushgate pushed ccccccc (20261105T101500Z-3f2a9c13f2a9) to beta in 3 waves and wave 1's health check failed on 1 of 1 host checked (max_unhealthy_hosts = 0): local:/srv/beta-1: sh exited with status 1: \u{1b}[2Jdown.

            Every host switched in that push went back to 20261104T101500Z-3f2a9c13f2a9, so the cluster runs one release again.

            Automatic pushes of beta stop while this task is open: complete it once the cause is understood. The commit ccccccc is not pushed again unless someone runs `pushgate push beta --commit ccccccc`.

            Push task: https://app.asana.com/0/3/9"#]]
        .assert_eq(&l.lock_notes);
        // In a config of several apps, the app is named, and the commands
        // say --app.
        let web = AppName::parse("web").unwrap();
        let l = lockdown(
            Some(&web),
            &c,
            &rel(5),
            &commit,
            Some(&rel(4)),
            false,
            2,
            3,
            "wave check failed: 5xx rate 4%",
            None,
        );
        expect![
            "web/beta stopped at wave 2/3 of 20261105T101500Z-3f2a9c13f2a9: wave check failed: decide"
        ]
        .assert_eq(&l.lock_name);
        expect![[r#"
            pushgate pushed ccccccc (20261105T101500Z-3f2a9c13f2a9) to web/beta in 3 waves and wave 2's wave check failed: 5xx rate 4%.

            auto_rollback is off: no further wave ran, and the hosts switched so far keep 20261105T101500Z-3f2a9c13f2a9; the others run 20261104T101500Z-3f2a9c13f2a9. To finish the push: `pushgate --app web push beta --commit ccccccc`. To put every host back: `pushgate --app web rollback beta`.

            Automatic pushes of web/beta stop while this task is open: complete it once the cause is understood. The commit ccccccc is not pushed again unless someone runs `pushgate --app web push beta --commit ccccccc`."#]]
        .assert_eq(&l.lock_notes);
    }
}
