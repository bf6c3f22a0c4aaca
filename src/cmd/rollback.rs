//! `pushgate rollback CLUSTER [--to RELEASE_ID] [--dry-run]`: the emergency
//! exit, as gather → decide → execute like a push: the run preamble (an
//! interrupted run is recovered first), the hosts' releases gathered, the
//! target decided (`decide::rollback`), the plan printed, then executed
//! (`run::rollback`) unless it is a dry run. Locks and freezes are not
//! consulted; the rollback locks the cluster itself.

use serde_json::{json, Value};

use super::{Env, Outcome, UsageError};
use crate::domain::decide::rollback::{self as decide, HostStep, RollbackPlan, RollbackVerdict};
use crate::domain::model::{Host, ReleaseId};
use crate::domain::text::{plural, printable};
use crate::run::clock::RunClock;
use crate::run::preamble::{self, Preamble};
use crate::run::rollback::RolledBack;
use crate::run::{execute, gather};

/// `pushgate rollback`.
pub async fn run(
    env: &Env,
    cluster: &str,
    to: Option<&str>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let settings = env.cluster(cluster)?;
    let to = match to {
        Some(t) => Some(ReleaseId::parse(t).ok_or_else(|| {
            UsageError(format!(
                "--to: `{}` is not a release id (YYYYMMDDTHHMMSSZ-<12 hex>)",
                printable(t, 60)
            ))
        })?),
        None => None,
    };
    let hosts = settings.read_hosts().map_err(UsageError)?;
    let result = rollback(env, settings, &hosts, to, dry_run, json).await;
    super::close_connections(env, settings, &hosts).await;
    result
}

async fn rollback(
    env: &Env,
    settings: &crate::config::ClusterSettings,
    hosts: &[Host],
    to: Option<ReleaseId>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let cluster = settings.name.as_str();
    let label = env.config.label(&settings.name);
    let clock = RunClock::starting_at(chrono::Utc::now());
    let rid = execute::run_id(&settings.name, &clock);
    let state = env.state.cluster(&settings.name);
    let cx = env.ctx();
    let Preamble {
        lock,
        running,
        mut outbox,
        child_env,
        recovered,
        ..
    } = preamble::begin(&cx, &state, settings, hosts, &clock, &rid, dry_run).await?;
    if let Some(holder) = running {
        eprintln!("pushgate: another push of {label} is running ({holder})");
        return Ok(Outcome::Busy);
    }
    // The emergency exit goes on even if some host could not be converged.
    match recovered {
        Ok(Some(r)) => {
            let line = r.summary(&label);
            if !json {
                println!("{line}");
            }
            if decide::undo_was_the_rollback(to.as_ref(), r.rollback, r.finished) {
                if !json {
                    println!(
                        "{label}: the interrupted push was undone; run `{}` again to go further back",
                        env.config.cli(&format!("rollback {cluster}"))
                    );
                } else {
                    super::print_json(&json!({
                        "cluster": cluster,
                        "outcome": if r.host_errors.is_empty() { "recovered" } else { "failed" },
                        "release": r.converged_to.as_ref().map(|x| x.as_str()),
                        "failed_hosts": r.host_errors,
                        "message": line,
                    }));
                }
                return Ok(if r.host_errors.is_empty() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                });
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the interrupted run could not be recovered on every host; rolling back anyway");
            let _ = state.close_journal();
        }
    }
    let rcx = crate::run::Ctx {
        child_env: &child_env,
        ..cx
    };
    let facts = gather::rollback_facts(&rcx, settings, hosts, to, clock.start()).await?;
    let deployed_commit = state.deployed()?.map(|d| d.commit);
    let plan = decide::plan(&facts);
    if let RollbackVerdict::Refused(why) = &plan.verdict {
        if json {
            super::print_json(&plan_json(&plan));
        }
        anyhow::bail!("{}", printable(why, 600));
    }
    if dry_run {
        if json {
            super::print_json(&plan_json(&plan));
        } else {
            println!("{plan}");
        }
        return Ok(Outcome::Success);
    }
    if !json {
        println!("{plan}");
    }
    let Some(ob) = outbox.as_mut() else {
        anyhow::bail!("the cluster's outbox is not open");
    };
    let ecx = crate::run::Context {
        run: rcx,
        cluster: settings,
        state: &state,
        clock: &clock,
        run_id: &rid,
        progress: &crate::run::Unwatched,
        operator: &gather::operator(),
        verbose: !json,
        stop: None,
    };
    let Some(done) = crate::run::rollback::rollback(&ecx, &plan, deployed_commit.clone(), ob).await
    else {
        anyhow::bail!("{cluster}: the rollback plan did not roll back");
    };
    if ob.pending() > 0 {
        ob.flush().await;
    }
    let queued = ob.pending();
    drop(lock);
    env.observer
        .rolled_back(&plan, &done, deployed_commit, queued, clock.elapsed())
        .await;
    print_done(cluster, &done, queued, json);
    Ok(if done.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

fn print_done(cluster: &str, done: &RolledBack, queued: usize, json: bool) {
    if json {
        super::print_json(&json!({
            "cluster": cluster,
            "outcome": if done.failed.is_empty() { "rolled-back" } else { "failed" },
            "release": done.release.as_str(),
            "commit": done.commit.as_str(),
            "push_task": done.push_task,
            "lock_task": done.lock_task,
            "rolled_back_commit": done.from_commit.as_ref().map(|c| c.as_str()),
            "failed_hosts": done.failed,
            "asana_queued": queued,
        }));
    } else {
        println!("{}", done.text);
        if let Some(l) = &done.push_task {
            println!("rollback task: {l}");
        }
        if let Some(c) = &done.from_commit {
            println!(
                "{cluster}: {} will not be pushed again without `--commit`; pushes stay held until the lock task is completed",
                c.short()
            );
        }
    }
    if queued > 0 {
        eprintln!(
            "pushgate: warning: {queued} Asana {} queued in the outbox; the next run replays them",
            plural(queued, "write")
        );
    }
}

/// The rollback plan for scripts: `verdict` is `rollback` or `refused`.
pub fn plan_json(plan: &RollbackPlan) -> Value {
    let hosts: Vec<Value> = plan
        .hosts
        .iter()
        .map(|(h, s)| match s {
            HostStep::Switch => json!({ "host": h.to_string(), "action": "switch" }),
            HostStep::Skip(why) => json!({ "host": h.to_string(), "action": "skip", "why": why }),
        })
        .collect();
    match &plan.verdict {
        RollbackVerdict::Rollback {
            to,
            commit,
            from,
            from_commit,
        } => json!({
            "cluster": plan.cluster.as_str(),
            "verdict": "rollback",
            "release": to.as_str(),
            "commit": commit.as_str(),
            "from_release": from.as_ref().map(|r| r.as_str()),
            "rolled_back_commit": from_commit.as_ref().map(|c| c.as_str()),
            "lock_task": plan.lock_task_name(),
            "hosts": hosts,
            "message": plan.to_string(),
        }),
        RollbackVerdict::Refused(why) => json!({
            "cluster": plan.cluster.as_str(),
            "verdict": "refused",
            "reason": why,
            "hosts": hosts,
        }),
    }
}
