//! The pure core: `plan(&facts) -> Plan`. No IO, no async, no clock, no
//! errors — a held push is a result, not a failure. `tests/it/tidy.rs` keeps
//! it that way.

pub mod approval;
pub mod crash;
mod freeze;
mod gate;
pub mod hosts;
pub mod recover;
pub mod request;
pub mod rollback;
mod schedule;
pub mod waves;

pub use freeze::{frozen, soaking};
pub use gate::{gate, holds, waiting, FixPlace, Waiting};
pub use schedule::{
    after_fire, days_both_restricted, fires, next_fire, next_turn, parse_cron, AfterFire,
};

use crate::domain::model::ReleaseId;
use crate::domain::model::{RunKind, RunOutcome};
use crate::domain::plan::{Facts, HoldReason, Ignored, Plan, Step, Verdict};

/// Decides one push of one cluster from what was gathered, in SPEC §2's
/// order: exclusion, freeze, candidate (nothing new is a no-op; a rolled
/// back commit or a failed build is not retried on schedule; a source
/// cluster's commit must have soaked), gate, and last whether the bytes to
/// ship are there. A push's plan names its release, its hosts, its waves
/// (if every host stages) and what happens when hosts fail or checks do.
pub fn plan(facts: &Facts) -> Plan {
    let mut ignored = Ignored {
        reason: facts.overrides.reason.clone().unwrap_or_default(),
        ..Ignored::default()
    };
    let verdict = verdict(facts, &mut ignored);
    let nothing_new = matches!(verdict, Verdict::NothingNew { commit: Some(_) });
    let pushing = matches!(verdict, Verdict::Push { .. });
    // The waves if every host stages; execute asks again after the stage.
    let waves = if pushing {
        waves::assign(&facts.rollout.waves, &vec![true; facts.hosts.len()])
    } else {
        Vec::new()
    };
    // One wave and no check is a plain switch, as before waves existed.
    let switch = if waves.len() <= 1 && !facts.rollout.checks() {
        Step::Switch
    } else {
        Step::Waves {
            waves: waves.len(),
            health: facts.rollout.health_check.is_some(),
            wave_check: facts.rollout.wave_check.is_some(),
        }
    };
    let (steps, release) = match &verdict {
        Verdict::Push { to, .. } => (
            vec![
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
                Step::Stage {
                    hosts: facts.hosts.len(),
                },
                switch,
                Step::Close,
            ],
            Some(ReleaseId::after(
                facts.now,
                to,
                facts.latest_release.as_ref(),
            )),
        ),
        _ => (Vec::new(), None),
    };
    Plan {
        app: facts.app.clone(),
        cluster: facts.cluster.clone(),
        verdict,
        steps,
        release,
        before: facts.deployed_release.clone(),
        hosts: facts.hosts.clone(),
        policy: facts.policy,
        rollout: facts.rollout.clone(),
        waves,
        changelog: facts.changelog.clone(),
        via: facts.candidate.as_ref().map(|c| c.via.clone()),
        source: facts.source.clone(),
        ignored: (!ignored.is_empty()).then_some(ignored),
        standing_locks: match (&nothing_new, gate(&facts.locks)) {
            (true, Some(Verdict::Hold(HoldReason::Locked { tasks }))) => tasks,
            _ => Vec::new(),
        },
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
    // What a person named is pushed even if it was rolled back, its build
    // failed, or it has not soaked: these hold only the schedule.
    if !facts.manual {
        if let Some(r) = facts
            .rolled_back
            .iter()
            .find(|r| r.commit == candidate.commit)
        {
            return Verdict::Hold(HoldReason::RolledBack {
                commit: candidate.commit.clone(),
                release: r.release.clone(),
                at: r.at,
            });
        }
        if let Some(last) = facts.last_run.as_ref().filter(|l| {
            l.kind == RunKind::Push
                && l.outcome == RunOutcome::Failed
                && l.failed_step.as_deref() == Some("build")
                && l.commit.as_ref() == Some(&candidate.commit)
        }) {
            return Verdict::Hold(HoldReason::BuildFailed {
                commit: candidate.commit.clone(),
                last_run: format!("{} {}", last.run_id, last.link.as_deref().unwrap_or(""))
                    .trim()
                    .to_owned(),
            });
        }
        if let Some(hold) = facts.soak.as_ref().and_then(|s| soaking(s, facts.now)) {
            if !o.ignore_freeze {
                return Verdict::Hold(hold);
            }
            ignored.holds.push(hold);
        }
    }
    let push = Verdict::Push {
        from: facts.deployed.clone(),
        to: candidate.commit.clone(),
    };
    let gated = match gate(&facts.locks) {
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
    };
    // Then: only a push that would run needs its bytes.
    let gated = match (&gated, &candidate.from_cluster) {
        (Verdict::Push { to, .. }, Some(from)) if !facts.artifact_cached => {
            Verdict::Hold(HoldReason::ArtifactMissing {
                commit: to.clone(),
                from: from.clone(),
            })
        }
        _ => gated,
    };
    // Last, the approval gate: a person's consent to exactly these bytes.
    match (&gated, &facts.approval) {
        (Verdict::Push { to, .. }, Some(a)) => match approval::hold(a, to, facts.now) {
            None => gated,
            Some(h) if o.ignore_approval => {
                ignored.holds.push(HoldReason::Approval(h));
                gated
            }
            Some(h) => Verdict::Hold(HoldReason::Approval(h)),
        },
        _ => gated,
    }
}

#[cfg(test)]
mod tests;
