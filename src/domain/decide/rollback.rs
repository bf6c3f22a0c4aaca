//! `rollback`: which release the cluster goes back to, what each host
//! does, and what the run leaves behind so that automation stops (the
//! rolled-back commit marked bad, a lock task for a person to close).
//!
//! The emergency exit ignores locks and freezes; it only goes to a release
//! that a successful run deployed (a killed run's directory may be partial)
//! and that every host it can read still keeps. It goes back from the
//! newest release any host runs, so that after a push halted at a failed
//! check (`auto_rollback = false`) it puts the switched hosts back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::model::{ClusterName, CommitId, Host, HostReleases, ReleaseId};
use crate::domain::text::{count, printable};

/// Everything a rollback decision needs.
#[derive(Clone, Debug)]
pub struct RollbackFacts {
    pub cluster: ClusterName,
    pub now: DateTime<Utc>,
    /// `--to RELEASE_ID`.
    pub to: Option<ReleaseId>,
    /// Each host, and what it runs and keeps or why it could not be read.
    pub hosts: Vec<(Host, Result<HostReleases, String>)>,
    /// The release the cluster runs as last recorded, and its commit.
    pub deployed: Option<(ReleaseId, Option<CommitId>)>,
    /// Releases that successful runs deployed.
    pub good: BTreeSet<ReleaseId>,
    /// The commit each release named here was built from, as far as the
    /// history and the repository tell.
    pub commits: BTreeMap<ReleaseId, CommitId>,
}

/// What one host does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostStep {
    /// Point `current` at the target (then `after_switch`).
    Switch,
    /// Its releases could not be read: it is reported and left alone.
    Skip(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackVerdict {
    Rollback {
        to: ReleaseId,
        commit: CommitId,
        /// The release rolled back from.
        from: Option<ReleaseId>,
        /// Its commit: marked bad, so the schedule never pushes it again.
        from_commit: Option<CommitId>,
    },
    /// Nothing to go back to, or not to that release: why (exit 1).
    Refused(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackPlan {
    pub cluster: ClusterName,
    pub verdict: RollbackVerdict,
    /// Every host and what it does, in the hosts' order.
    pub hosts: Vec<(Host, HostStep)>,
}

impl RollbackPlan {
    /// The name of the lock task the rollback creates in the cluster's
    /// lock project (pushes stop until a person completes it).
    pub fn lock_task_name(&self) -> Option<String> {
        match &self.verdict {
            RollbackVerdict::Rollback { from, .. } => Some(format!(
                "rolled back from {}: investigate",
                from.as_ref()
                    .map_or("the current release".to_owned(), ToString::to_string)
            )),
            RollbackVerdict::Refused(_) => None,
        }
    }

    /// The hosts asked to switch, by index.
    pub fn switching(&self) -> Vec<bool> {
        self.hosts
            .iter()
            .map(|(_, s)| *s == HostStep::Switch)
            .collect()
    }
}

/// The release to go back to: the newest one older than what runs now that
/// was deployed successfully and is kept on every host read.
pub fn previous_release(
    hosts: &[&HostReleases],
    current: Option<&ReleaseId>,
    good: &BTreeSet<ReleaseId>,
) -> Option<ReleaseId> {
    let first = hosts.first()?;
    first
        .releases
        .iter()
        .filter(|r| good.contains(*r))
        .filter(|r| current.is_none_or(|c| *r < c))
        .filter(|r| hosts.iter().all(|h| h.releases.contains(r)))
        .max()
        .cloned()
}

/// Where the cluster goes back to.
pub fn plan(f: &RollbackFacts) -> RollbackPlan {
    let hosts = f
        .hosts
        .iter()
        .map(|(h, r)| {
            (
                h.clone(),
                match r {
                    Ok(_) => HostStep::Switch,
                    Err(e) => HostStep::Skip(format!("cannot read its releases: {e}")),
                },
            )
        })
        .collect();
    RollbackPlan {
        cluster: f.cluster.clone(),
        verdict: verdict(f),
        hosts,
    }
}

fn verdict(f: &RollbackFacts) -> RollbackVerdict {
    let c = &f.cluster;
    let read: Vec<(&Host, &HostReleases)> = f
        .hosts
        .iter()
        .filter_map(|(h, r)| r.as_ref().ok().map(|r| (h, r)))
        .collect();
    if read.is_empty() {
        let why: Vec<String> = f
            .hosts
            .iter()
            .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
            .collect();
        return RollbackVerdict::Refused(format!(
            "no host of {c} could be read: {}",
            if why.is_empty() {
                "it has no hosts".to_owned()
            } else {
                why.join("; ")
            }
        ));
    }
    // The newest release any host runs: the deployed one, or newer where
    // a push stopped at a failed check with `auto_rollback = false` left
    // some hosts on its release.
    let current = f
        .deployed
        .as_ref()
        .map(|(r, _)| r.clone())
        .into_iter()
        .chain(read.iter().filter_map(|(_, h)| h.current.clone()))
        .max();
    let target = match &f.to {
        Some(t) => {
            if !f.good.contains(t) {
                return RollbackVerdict::Refused(format!(
                    "release {t} was never deployed successfully (see `pushgate history {c}`); pushgate does not switch to it"
                ));
            }
            if let Some((h, _)) = read.iter().find(|(_, r)| !r.releases.contains(t)) {
                return RollbackVerdict::Refused(format!(
                    "release {t} is not kept on {h}; kept releases are listed by `ls TARGET/releases`"
                ));
            }
            t.clone()
        }
        None => {
            let kept: Vec<&HostReleases> = read.iter().map(|(_, r)| *r).collect();
            match previous_release(&kept, current.as_ref(), &f.good) {
                Some(r) => r,
                None => {
                    return RollbackVerdict::Refused(format!(
                        "{c}: no release older than the current one is kept on every host"
                    ))
                }
            }
        }
    };
    let Some(commit) = f.commits.get(&target).cloned() else {
        return RollbackVerdict::Refused(format!(
            "release {target}: the commit it was built from is neither in the history nor in the repository"
        ));
    };
    // The commit rolled back from: what the deployed record says, else the
    // commit the release's name points at.
    let from_commit = match (&f.deployed, &current) {
        (Some((r, c)), Some(cur)) if r == cur && c.is_some() => c.clone(),
        (_, Some(cur)) => f.commits.get(cur).cloned(),
        _ => None,
    };
    RollbackVerdict::Rollback {
        to: target,
        commit,
        from: current,
        from_commit,
    }
}

/// After recovery undid a killed push: that undo is the rollback a person
/// asked for (going further back takes another `rollback`, or `--to`).
pub fn undo_was_the_rollback(to: Option<&ReleaseId>, rollback: bool, finished: bool) -> bool {
    to.is_none() && !rollback && !finished
}

impl fmt::Display for RollbackPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cluster;
        match &self.verdict {
            RollbackVerdict::Refused(why) => {
                write!(f, "{c}: cannot roll back: {}", printable(why, 600))
            }
            RollbackVerdict::Rollback {
                to,
                commit,
                from,
                from_commit,
            } => {
                write!(
                    f,
                    "{c}: may roll back from {} to {to} ({}); locks are not consulted: rollback is the emergency exit",
                    match (from, from_commit) {
                        (Some(r), Some(x)) => format!("{r} ({})", x.short()),
                        (Some(r), None) => r.to_string(),
                        (None, _) => "the current release".to_owned(),
                    },
                    commit.short()
                )?;
                let n = self.hosts.len();
                write!(f, "\n  {}:", count(n, "host"))?;
                for (h, step) in &self.hosts {
                    match step {
                        HostStep::Switch => write!(f, "\n    {h}: switch to {to}")?,
                        HostStep::Skip(why) => {
                            write!(f, "\n    {h}: left alone: {}", printable(why, 300))?
                        }
                    }
                }
                if let Some(name) = self.lock_task_name() {
                    write!(
                        f,
                        "\n  then: a lock task \"{name}\" in {c}'s lock project holds every push of {c} until a person completes it"
                    )?;
                }
                if let Some(x) = from_commit {
                    write!(
                        f,
                        "; {} is not pushed again without `push {c} --commit {}`",
                        x.short(),
                        x.short()
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn rel(day: u8) -> ReleaseId {
        ReleaseId::parse(&format!("202611{day:02}T101500Z-{day:02}2a9c13f2a9")).unwrap()
    }

    fn commit(day: u8) -> CommitId {
        CommitId::parse(&format!("{day:02}2a9c13f2a9{}", "0".repeat(28))).unwrap()
    }

    fn host(n: u8, current: Option<u8>, releases: &[u8]) -> (Host, Result<HostReleases, String>) {
        (
            Host::parse(&format!("local:/srv/beta-{n}")).unwrap(),
            Ok(HostReleases {
                current: current.map(rel),
                releases: releases.iter().copied().map(rel).collect(),
            }),
        )
    }

    fn facts() -> RollbackFacts {
        RollbackFacts {
            cluster: ClusterName::parse("beta").unwrap(),
            now: DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
                .unwrap()
                .to_utc(),
            to: None,
            hosts: vec![
                host(1, Some(5), &[2, 3, 4, 5]),
                host(2, Some(5), &[2, 3, 5]),
            ],
            deployed: Some((rel(5), Some(commit(5)))),
            good: [2, 3, 4, 5].map(rel).into_iter().collect(),
            commits: [2, 3, 4, 5]
                .map(|d| (rel(d), commit(d)))
                .into_iter()
                .collect(),
        }
    }

    fn check(f: RollbackFacts, expect: expect_test::Expect) {
        expect.assert_eq(&plan(&f).to_string());
    }

    #[test]
    fn goes_back_to_the_newest_older_release_kept_on_every_host() {
        check(
            facts(),
            expect![[r#"
                beta: may roll back from 20261105T101500Z-052a9c13f2a9 (052a9c1) to 20261103T101500Z-032a9c13f2a9 (032a9c1); locks are not consulted: rollback is the emergency exit
                  2 hosts:
                    local:/srv/beta-1: switch to 20261103T101500Z-032a9c13f2a9
                    local:/srv/beta-2: switch to 20261103T101500Z-032a9c13f2a9
                  then: a lock task "rolled back from 20261105T101500Z-052a9c13f2a9: investigate" in beta's lock project holds every push of beta until a person completes it; 052a9c1 is not pushed again without `push beta --commit 052a9c1`"#]],
        );
    }

    #[test]
    fn never_to_a_release_no_successful_run_deployed_nor_one_a_host_lacks() {
        let mut f = facts();
        f.good = [2, 5].map(rel).into_iter().collect();
        let p = plan(&f);
        assert!(
            matches!(&p.verdict, RollbackVerdict::Rollback { to, .. } if *to == rel(2)),
            "{p}"
        );
        f.to = Some(rel(4));
        check(
            f.clone(),
            expect!["beta: cannot roll back: release 20261104T101500Z-042a9c13f2a9 was never deployed successfully (see `pushgate history beta`); pushgate does not switch to it"],
        );
        f.good.insert(rel(4));
        check(
            f,
            expect!["beta: cannot roll back: release 20261104T101500Z-042a9c13f2a9 is not kept on local:/srv/beta-2; kept releases are listed by `ls TARGET/releases`"],
        );
    }

    #[test]
    fn an_unreadable_host_is_left_alone_and_no_readable_host_refuses() {
        let mut f = facts();
        f.hosts[1].1 = Err("unreachable: connection refused".into());
        let p = plan(&f);
        assert_eq!(p.switching(), vec![true, false]);
        assert!(p.to_string().contains(
            "local:/srv/beta-2: left alone: cannot read its releases: unreachable: connection refused"
        ));
        f.hosts[0].1 = Err("timed out".into());
        check(
            f,
            expect!["beta: cannot roll back: no host of beta could be read: local:/srv/beta-1: timed out; local:/srv/beta-2: unreachable: connection refused"],
        );
    }

    #[test]
    fn after_a_halted_push_it_goes_back_from_the_release_some_hosts_run() {
        let mut f = facts();
        // Deployed: 4. Host 1 was switched to 5 by a push a check stopped.
        f.hosts = vec![host(1, Some(5), &[3, 4, 5]), host(2, Some(4), &[3, 4, 5])];
        f.deployed = Some((rel(4), Some(commit(4))));
        f.good.remove(&rel(5));
        let p = plan(&f);
        assert_eq!(
            p.verdict,
            RollbackVerdict::Rollback {
                to: rel(4),
                commit: commit(4),
                from: Some(rel(5)),
                from_commit: Some(commit(5)),
            },
            "{p}"
        );
    }

    #[test]
    fn nothing_older_kept_is_refused() {
        let mut f = facts();
        f.hosts = vec![host(1, Some(2), &[2])];
        f.deployed = Some((rel(2), Some(commit(2))));
        check(
            f,
            expect!["beta: cannot roll back: beta: no release older than the current one is kept on every host"],
        );
    }

    #[test]
    fn an_undone_push_is_the_rollback_unless_a_release_was_named() {
        assert!(undo_was_the_rollback(None, false, false));
        assert!(!undo_was_the_rollback(Some(&rel(2)), false, false));
        assert!(!undo_was_the_rollback(None, true, false));
        assert!(!undo_was_the_rollback(None, false, true));
    }
}
