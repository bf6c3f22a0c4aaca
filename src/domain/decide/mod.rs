//! The pure core: `plan(&facts) -> Plan`. No IO, no async, no clock, no
//! errors — a held push is a result, not a failure. `tests/it/tidy.rs` keeps
//! it that way.

pub mod crash;
mod freeze;
mod gate;
pub mod recover;
mod schedule;

pub use freeze::{frozen, soaking};
pub use gate::{gate, holds};
pub use schedule::{after_fire, days_both_restricted, fires, next_fire, parse_cron, AfterFire};

use crate::domain::plan::{Facts, HoldReason, Ignored, Plan, Step, Verdict};

/// Decides one push of one cluster from what was gathered, in SPEC §2's
/// order: exclusion, freeze, candidate (nothing new is a no-op; a source
/// cluster's commit must have soaked), gate.
pub fn plan(facts: &Facts) -> Plan {
    let mut ignored = Ignored {
        reason: facts.overrides.reason.clone().unwrap_or_default(),
        ..Ignored::default()
    };
    let verdict = verdict(facts, &mut ignored);
    let steps = match verdict {
        Verdict::Push { .. } => vec![
            Step::Record,
            match facts
                .candidate
                .as_ref()
                .and_then(|c| c.from_cluster.clone())
            {
                Some(from) => Step::Ship { from },
                None => Step::Build {
                    cached: facts.artifact_cached,
                },
            },
            Step::Stage { hosts: facts.hosts },
            Step::Switch,
            Step::Close,
        ],
        _ => Vec::new(),
    };
    Plan {
        cluster: facts.cluster.clone(),
        verdict,
        steps,
        changelog: facts.changelog.clone(),
        via: facts.candidate.as_ref().map(|c| c.via.clone()),
        source: facts.source.clone(),
        ignored: (!ignored.is_empty()).then_some(ignored),
    }
}

/// The verdict; what `--ignore-locks` / `--ignore-freeze` went past is
/// collected in `ignored`.
fn verdict(facts: &Facts, ignored: &mut Ignored) -> Verdict {
    let o = &facts.overrides;
    if let Some(holder) = &facts.running {
        return Verdict::Hold(HoldReason::Running {
            holder: holder.clone(),
        });
    }
    if let Some(other) = &facts.downstream_running {
        return Verdict::Hold(HoldReason::OtherRunning {
            other: other.clone(),
        });
    }
    if let Some(hold) = facts.freeze.as_ref().and_then(|f| frozen(f, facts.now)) {
        if !o.ignore_freeze {
            return Verdict::Hold(hold);
        }
        ignored.holds.push(hold);
    }
    let Some(candidate) = &facts.candidate else {
        return Verdict::NothingNew { commit: None };
    };
    if facts.deployed.as_ref() == Some(&candidate.commit) {
        return Verdict::NothingNew {
            commit: Some(candidate.commit.clone()),
        };
    }
    if let Some((release, at)) = &facts.rolled_back {
        return Verdict::Hold(HoldReason::RolledBack {
            commit: candidate.commit.clone(),
            release: release.clone(),
            at: *at,
        });
    }
    if let Some((commit, last_run)) = &facts.failed_build {
        if *commit == candidate.commit {
            return Verdict::Hold(HoldReason::BuildFailed {
                commit: commit.clone(),
                last_run: last_run.clone(),
            });
        }
    }
    if let Some(hold) = facts.soak.as_ref().and_then(|s| soaking(s, facts.now)) {
        if !o.ignore_freeze {
            return Verdict::Hold(hold);
        }
        ignored.holds.push(hold);
    }
    let push = Verdict::Push {
        from: facts.deployed.clone(),
        to: candidate.commit.clone(),
    };
    match gate(&facts.locks) {
        None => push,
        Some(Verdict::Hold(HoldReason::Locked { tasks })) if o.ignore_locks => {
            ignored.locks = tasks;
            push
        }
        Some(Verdict::Unknown { reason }) if o.ignore_locks => {
            ignored.unknown = Some(reason);
            push
        }
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests;
