//! The pure core: `plan(&facts) -> Plan`. No IO, no async, no clock, no
//! errors — a held push is a result, not a failure. `tests/it/tidy.rs` keeps
//! it that way.

pub mod crash;
mod freeze;
mod gate;

pub use freeze::{frozen, next_fire, soaking};
pub use gate::{gate, holds};

use crate::plan::{Facts, HoldReason, Plan, Step, Verdict};

/// Decides one push of one cluster from what was gathered, in SPEC §2's
/// order: exclusion, freeze, candidate (nothing new is a no-op; a source
/// cluster's commit must have soaked), gate.
pub fn plan(facts: &Facts) -> Plan {
    let verdict = verdict(facts);
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
    }
}

fn verdict(facts: &Facts) -> Verdict {
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
        return Verdict::Hold(hold);
    }
    let Some(candidate) = &facts.candidate else {
        return Verdict::NothingNew { commit: None };
    };
    if facts.deployed.as_ref() == Some(&candidate.commit) {
        return Verdict::NothingNew {
            commit: Some(candidate.commit.clone()),
        };
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
        return Verdict::Hold(hold);
    }
    match gate(&facts.locks) {
        None => Verdict::Push {
            from: facts.deployed.clone(),
            to: candidate.commit.clone(),
        },
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests;
