//! What the hosts' results mean for a run: whether a push goes on after
//! its stage, which hosts switch back and where the new release is removed
//! after a failed switch, what each host prunes, and where a stopping
//! push stops. The `max_failed_hosts` rule lives here once, for the
//! stage, the switch (every wave of it: `waves.rs` asks here) and the
//! recovery of a killed run; `max_unhealthy_hosts` is counted by the same
//! rule ([`exceeds`]).
//!
//! `execute` asks these functions after each host operation and does what
//! they return; it has no rule of its own.

use crate::domain::model::ReleaseId;
use crate::domain::plan::{HostPolicy, Step};

/// The one `max_failed_hosts` rule: more than `max_failed` hosts failed,
/// or every host did (a push no host has is no push).
pub fn too_many(policy: &HostPolicy, failed: usize, total: usize) -> bool {
    exceeds(policy.max_failed, failed, total)
}

/// The rule itself, for any tolerance (`max_failed_hosts`,
/// `max_unhealthy_hosts`): more than `max` of `total` failed, or all did.
pub fn exceeds(max: usize, failed: usize, total: usize) -> bool {
    failed > max || (failed > 0 && failed == total)
}

/// How one host's stage ended, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staged {
    /// The release is there; the host ran `current` and kept `releases`.
    Done {
        current: Option<ReleaseId>,
        releases: Vec<ReleaseId>,
    },
    /// It failed; `reached`: the host answered at all (something may have
    /// been written there).
    Failed { reached: bool },
}

impl Staged {
    pub fn ok(&self) -> bool {
        matches!(self, Staged::Done { .. })
    }
}

/// What follows a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterStage {
    /// Switch the hosts marked `true` (those that staged).
    Switch(Vec<bool>),
    /// Too many failed: switch none, and remove the new release from the
    /// hosts marked `true` (every host that was reached).
    Abort { failed: usize, remove: Vec<bool> },
}

pub fn after_stage(policy: &HostPolicy, staged: &[Staged]) -> AfterStage {
    let failed = staged.iter().filter(|s| !s.ok()).count();
    if too_many(policy, failed, staged.len()) {
        AfterStage::Abort {
            failed,
            remove: staged
                .iter()
                .map(|s| !matches!(s, Staged::Failed { reached: false }))
                .collect(),
        }
    } else {
        AfterStage::Switch(staged.iter().map(Staged::ok).collect())
    }
}

/// How one host's switch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switched {
    /// `current` points at the new release and `after_switch` passed.
    Done,
    /// `current` points at it, but `after_switch` failed: counted failed.
    AfterSwitchFailed,
    /// The switch failed (or timed out: the host may have swapped).
    Failed,
    /// Not asked (it had not staged).
    Skipped,
    /// Staged, and not asked yet: its wave has not come.
    Pending,
}

/// What follows a switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterSwitch {
    /// The push stands: prune these releases per host.
    Done {
        failed: usize,
        prune: Vec<Vec<ReleaseId>>,
    },
    /// Too many failed: every host asked to switch goes back to the
    /// release it ran (`None`: leave it), and runs `after_switch` again;
    /// a host that ran none (a first push) loses `current` where it
    /// points at the new release (`unset`).
    Undo {
        failed: usize,
        back: Vec<Option<ReleaseId>>,
        unset: Vec<Option<ReleaseId>>,
    },
}

/// Hosts that failed to stage or to switch (`after_switch` included):
/// what `max_failed_hosts` counts, across every wave.
pub fn switch_failures(staged: &[Staged], switched: &[Switched]) -> usize {
    staged
        .iter()
        .zip(switched)
        .filter(|(s, w)| !s.ok() || !matches!(w, Switched::Done | Switched::Pending))
        .count()
}

/// Where every host asked to switch in this push goes back to: the
/// release it ran (`back`), or, if it ran none, no `current` where it
/// points at `release` (`unset`). Hosts never asked stay as they are.
pub fn back_of(
    release: &ReleaseId,
    staged: &[Staged],
    switched: &[Switched],
) -> (Vec<Option<ReleaseId>>, Vec<Option<ReleaseId>>) {
    staged
        .iter()
        .zip(switched)
        .map(|(s, w)| match (s, w) {
            (_, Switched::Skipped | Switched::Pending) | (Staged::Failed { .. }, _) => (None, None),
            // A host that failed or timed out may have swapped already:
            // switching is idempotent, so it goes back too.
            (
                Staged::Done {
                    current: Some(c), ..
                },
                _,
            ) => (Some(c.clone()), None),
            (Staged::Done { current: None, .. }, _) => (None, Some(release.clone())),
        })
        .unzip()
}

pub fn after_switch(
    policy: &HostPolicy,
    release: &ReleaseId,
    staged: &[Staged],
    switched: &[Switched],
) -> AfterSwitch {
    let failed = switch_failures(staged, switched);
    if too_many(policy, failed, staged.len()) {
        let (back, unset) = back_of(release, staged, switched);
        return AfterSwitch::Undo {
            failed,
            back,
            unset,
        };
    }
    let prune = staged
        .iter()
        .zip(switched)
        .map(|(s, w)| match (s, w) {
            (Staged::Done { current, releases }, Switched::Done | Switched::AfterSwitchFailed) => {
                let mut all = releases.clone();
                all.push(release.clone());
                prune(&all, policy.keep_releases, Some(release), current.as_ref())
            }
            _ => Vec::new(),
        })
        .collect();
    AfterSwitch::Done { failed, prune }
}

/// After an undo: where the new release may be removed — hosts never
/// asked to switch, and those switched back. A host that could not be
/// switched back keeps it rather than a dangling `current`.
pub fn removable_after_undo(back: &[Option<ReleaseId>], switched_back: &[bool]) -> Vec<bool> {
    let none = vec![None; back.len()];
    removable_after(back, &none, switched_back)
}

/// [`removable_after_undo`], with the hosts whose `current` was to be
/// removed (`unset`): the release goes only where that worked too.
pub fn removable_after(
    back: &[Option<ReleaseId>],
    unset: &[Option<ReleaseId>],
    done: &[bool],
) -> Vec<bool> {
    back.iter()
        .zip(unset)
        .zip(done)
        .map(|((b, u), ok)| (b.is_none() && u.is_none()) || *ok)
        .collect()
}

/// Which releases to delete so that `keep` remain: the oldest first, never
/// `current` or `previous`.
pub fn prune(
    releases: &[ReleaseId],
    keep: usize,
    current: Option<&ReleaseId>,
    previous: Option<&ReleaseId>,
) -> Vec<ReleaseId> {
    let mut sorted: Vec<&ReleaseId> = releases.iter().collect();
    sorted.sort();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(keep);
    sorted
        .into_iter()
        .filter(|r| Some(*r) != current && Some(*r) != previous)
        .take(excess)
        .cloned()
        .collect()
}

/// Where a push that is told to stop (the daemon shutting down) stops:
/// before a step that touches the hosts, with what that step's name and
/// whether the staged release must be removed. `None`: not a safe point,
/// the step runs.
pub fn stop_before(step: &Step) -> Option<Stop> {
    match step {
        Step::Stage { .. } => Some(Stop {
            step: "stage",
            remove_release: false,
        }),
        Step::Switch | Step::Waves { .. } => Some(Stop {
            step: "switch",
            remove_release: true,
        }),
        _ => None,
    }
}

/// A push stopped at a safe point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop {
    pub step: &'static str,
    /// Every host staged the release and none switched: it goes.
    pub remove_release: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(d: u8) -> ReleaseId {
        ReleaseId::parse(&format!("202611{d:02}T101500Z-3f2a9c13f2a9")).unwrap()
    }

    fn done(current: u8) -> Staged {
        Staged::Done {
            current: Some(rel(current)),
            releases: (1..=current).map(rel).collect(),
        }
    }

    #[test]
    fn the_max_failed_hosts_rule_never_lets_every_host_fail() {
        let p = HostPolicy {
            max_failed: 1,
            keep_releases: 5,
        };
        assert!(!too_many(&p, 0, 3));
        assert!(!too_many(&p, 1, 3));
        assert!(too_many(&p, 2, 3));
        assert!(too_many(&p, 1, 1), "the only host failing is a failed push");
        assert!(!too_many(&p, 0, 0), "no host, no failure");
        assert!(too_many(&HostPolicy::default(), 1, 3));
    }

    #[test]
    fn a_stage_with_too_many_failures_removes_the_release_where_a_host_answered() {
        let p = HostPolicy::default();
        let staged = [
            done(4),
            Staged::Failed { reached: true },
            Staged::Failed { reached: false },
        ];
        assert_eq!(
            after_stage(&p, &staged),
            AfterStage::Abort {
                failed: 2,
                remove: vec![true, true, false]
            }
        );
        let p = HostPolicy { max_failed: 2, ..p };
        assert_eq!(
            after_stage(&p, &staged),
            AfterStage::Switch(vec![true, false, false])
        );
    }

    #[test]
    fn a_failed_switch_sends_every_asked_host_back_and_keeps_the_release_where_it_could_not() {
        let p = HostPolicy::default();
        let staged = [done(4), done(4), Staged::Failed { reached: true }];
        let switched = [Switched::Done, Switched::Failed, Switched::Skipped];
        let AfterSwitch::Undo { failed, back, .. } = after_switch(&p, &rel(5), &staged, &switched)
        else {
            panic!("undo")
        };
        assert_eq!(failed, 2);
        assert_eq!(back, vec![Some(rel(4)), Some(rel(4)), None]);
        assert_eq!(
            removable_after_undo(&back, &[true, false, false]),
            vec![true, false, true]
        );
    }

    #[test]
    fn an_after_switch_failure_counts_and_a_good_switch_prunes_to_keep_releases() {
        let p = HostPolicy {
            max_failed: 1,
            keep_releases: 3,
        };
        let staged = [done(4), done(4)];
        let r = after_switch(
            &p,
            &rel(5),
            &staged,
            &[Switched::Done, Switched::AfterSwitchFailed],
        );
        assert_eq!(
            r,
            AfterSwitch::Done {
                failed: 1,
                prune: vec![vec![rel(1), rel(2)], vec![rel(1), rel(2)]]
            }
        );
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_current_or_previous() {
        let all: Vec<ReleaseId> = (21..=27).map(rel).collect();
        // Keep 3: delete the 4 oldest, but the oldest is `previous` (a rollback target).
        let gone = prune(&all, 3, Some(&all[6]), Some(&all[0]));
        assert_eq!(gone, all[1..5].to_vec());
        assert_eq!(prune(&all[..2], 3, None, None), Vec::<ReleaseId>::new());
        // After a rollback, current is old: it is kept too.
        let gone = prune(&all, 2, Some(&all[1]), Some(&all[6]));
        assert_eq!(
            gone,
            vec![
                all[0].clone(),
                all[2].clone(),
                all[3].clone(),
                all[4].clone(),
                all[5].clone()
            ]
        );
    }

    #[test]
    fn a_stopping_push_stops_before_touching_hosts_and_removes_a_release_nobody_runs() {
        assert_eq!(stop_before(&Step::Record), None);
        assert_eq!(stop_before(&Step::Close), None);
        assert!(
            !stop_before(&Step::Stage { hosts: 3 })
                .unwrap()
                .remove_release
        );
        assert!(stop_before(&Step::Switch).unwrap().remove_release);
    }
}
