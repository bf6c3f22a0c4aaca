//! After a run that never finished (kill -9, power loss): which release
//! every host goes to, and what each host must do to get there.
//!
//! - A run that recorded its release as deployed got that far: every host
//!   had switched. Its release stays; only the bookkeeping is finished.
//! - A rollback that stopped half-way is finished: it is the emergency
//!   exit, and its target is kept on every host.
//! - A push that a failed check had halted (`auto_rollback = false`)
//!   stays where it stopped: a person decides, as if it had finished
//!   halting.
//! - Any other push is undone — one stopped between waves, inside a
//!   health check, or in the middle of its automatic rollback alike:
//!   every host goes back to the release that was deployed when it
//!   started (the hosts that had switched switch back), and the new
//!   release, whole or partial, is removed. If nothing was deployed
//!   before, `current` links to the new release are removed.

use crate::domain::model::{HostReleases, ReleaseId};

/// What the journal and the state directory say of the interrupted run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub rollback: bool,
    /// A push's new release; a rollback's target.
    pub release: Option<ReleaseId>,
    /// The release deployed when the run started.
    pub before: Option<ReleaseId>,
    /// The deployed record names this run: it reached its close.
    pub finished: bool,
    /// A failed check had halted it (`auto_rollback = false`).
    pub halted: bool,
}

/// Where the cluster converges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Converge {
    /// Every host's `current` points at this release.
    To(ReleaseId),
    /// Nothing was deployed: no host keeps a `current` pointing at this
    /// (the interrupted push's) release.
    Unset(ReleaseId),
    /// The run never named a release: nothing to do on the hosts.
    Nothing,
}

pub fn converge(run: &Interrupted) -> Converge {
    match (&run.release, &run.before) {
        (Some(r), _) if run.finished || run.rollback => Converge::To(r.clone()),
        _ if run.halted => Converge::Nothing,
        (_, Some(b)) => Converge::To(b.clone()),
        (Some(r), None) => Converge::Unset(r.clone()),
        (None, None) => Converge::Nothing,
    }
}

/// What one host must do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAction {
    /// Point `current` here (then run `after_switch`).
    pub switch: Option<ReleaseId>,
    /// Remove `current`, which points at this release.
    pub unset: Option<ReleaseId>,
    /// Delete these release directories (never the one `current` ends on).
    pub remove: Vec<ReleaseId>,
    /// Why this host cannot converge.
    pub error: Option<String>,
}

pub fn host_action(target: &Converge, run: &Interrupted, host: &HostReleases) -> HostAction {
    let mut a = HostAction::default();
    // The interrupted push's release, when the cluster does not end on it:
    // its copy may be partial.
    let leftover = match (target, &run.release) {
        (Converge::To(t), Some(r)) if t != r && !run.rollback => Some(r.clone()),
        (Converge::Unset(r), _) => Some(r.clone()),
        _ => None,
    };
    match target {
        Converge::To(t) => {
            if host.current.as_ref() != Some(t) {
                if host.releases.contains(t) {
                    a.switch = Some(t.clone());
                } else {
                    a.error = Some(format!(
                        "release {t} is not on this host, so it cannot be switched back to it"
                    ));
                    return a;
                }
            }
        }
        Converge::Unset(r) => {
            if host.current.as_ref() == Some(r) {
                a.unset = Some(r.clone());
            }
        }
        Converge::Nothing => {}
    }
    if let Some(l) = leftover.filter(|l| host.releases.contains(l)) {
        a.remove.push(l);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(day: u8) -> ReleaseId {
        ReleaseId::parse(&format!("202611{day:02}T101500Z-3f2a9c13f2a9")).unwrap()
    }

    fn host(current: Option<u8>, releases: &[u8]) -> HostReleases {
        HostReleases {
            current: current.map(rel),
            releases: releases.iter().copied().map(rel).collect(),
        }
    }

    #[test]
    fn an_unfinished_push_goes_back_and_its_release_is_removed() {
        let run = Interrupted {
            rollback: false,
            release: Some(rel(2)),
            before: Some(rel(1)),
            finished: false,
            halted: false,
        };
        let t = converge(&run);
        assert_eq!(t, Converge::To(rel(1)));
        // Switched before the kill: back, and the new release goes.
        let a = host_action(&t, &run, &host(Some(2), &[1, 2]));
        assert_eq!(a.switch, Some(rel(1)));
        assert_eq!(a.remove, vec![rel(2)]);
        // Not switched, partial copy: only removed.
        let a = host_action(&t, &run, &host(Some(1), &[1, 2]));
        assert_eq!((a.switch, a.remove), (None, vec![rel(2)]));
        // Nothing staged: nothing to do.
        assert_eq!(
            host_action(&t, &run, &host(Some(1), &[1])),
            HostAction::default()
        );
        // The old release is gone: this host cannot converge.
        let a = host_action(&t, &run, &host(Some(2), &[2]));
        assert!(a.error.is_some(), "{a:?}");
    }

    #[test]
    fn a_finished_push_and_a_rollback_keep_their_release() {
        let mut run = Interrupted {
            rollback: false,
            release: Some(rel(2)),
            before: Some(rel(1)),
            finished: true,
            halted: false,
        };
        assert_eq!(converge(&run), Converge::To(rel(2)));
        let a = host_action(&converge(&run), &run, &host(Some(2), &[1, 2]));
        assert_eq!(a, HostAction::default());
        run.finished = false;
        run.rollback = true;
        run.release = Some(rel(1));
        run.before = Some(rel(2));
        let t = converge(&run);
        assert_eq!(t, Converge::To(rel(1)));
        // A rollback never deletes what it leaves: it is a kept release.
        let a = host_action(&t, &run, &host(Some(2), &[1, 2]));
        assert_eq!((a.switch, a.remove), (Some(rel(1)), vec![]));
    }

    #[test]
    fn a_first_push_that_stopped_leaves_no_current() {
        let run = Interrupted {
            rollback: false,
            release: Some(rel(2)),
            before: None,
            finished: false,
            halted: false,
        };
        let t = converge(&run);
        assert_eq!(t, Converge::Unset(rel(2)));
        let a = host_action(&t, &run, &host(Some(2), &[2]));
        assert_eq!((a.unset, a.remove), (Some(rel(2)), vec![rel(2)]));
        let a = host_action(&t, &run, &host(None, &[]));
        assert_eq!(a, HostAction::default());
    }

    #[test]
    fn a_halted_push_is_left_as_it_stopped_and_a_rolling_back_one_is_undone() {
        let mut run = Interrupted {
            rollback: false,
            release: Some(rel(2)),
            before: Some(rel(1)),
            finished: false,
            halted: true,
        };
        assert_eq!(converge(&run), Converge::Nothing);
        // Killed in its automatic rollback: undone like any unfinished push.
        run.halted = false;
        assert_eq!(converge(&run), Converge::To(rel(1)));
    }
}
