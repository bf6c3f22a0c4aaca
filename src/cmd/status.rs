//! `pushgate status [CLUSTER]`: per cluster, what is deployed since when,
//! the last run's outcome, and the open locks and what they mean.

use serde_json::{json, Value};

use super::{Env, Outcome};
use crate::config::{ClusterSettings, Source};
use crate::git::Mirror;
use std::collections::HashMap;

use crate::gather;
use crate::model::{CommitId, Fix, LockTask, TaskGid};
use crate::plan::LockFacts;

pub fn lock_json(t: &LockTask) -> Value {
    json!({
        "gid": t.gid.as_str(),
        "name": t.name,
        "assignee": t.assignee,
        "link": t.link,
        "fix_commit": t.fix.raw(),
        "fix": match &t.fix {
            Fix::None => Value::Null,
            Fix::Unchecked(_) => json!({ "state": "unchecked" }),
            Fix::Invalid { why, .. } => json!({ "state": "invalid", "why": why }),
            Fix::Valid { commit, shipped } => json!({
                "state": if *shipped { "shipped" } else { "waiting" },
                "commit": commit.as_str(),
            }),
        },
    })
}

/// What the next push would be checked against, without fetching: the
/// source cluster's deployed commit, or the branch tip in the mirror.
fn status_candidate(env: &Env, c: &ClusterSettings) -> Option<CommitId> {
    match &c.source {
        Source::Cluster(from) => env.state.deployed(from).ok()??.commit_id(),
        Source::Branch => Mirror::open(&env.state.repo())
            .ok()?
            .branch_tip(&env.config.repo.branch)
            .ok(),
    }
}

/// The lock tasks that hold the cluster's next push, fixes checked against
/// its candidate, with "(on beta since …)" for fixes its source runs.
/// Fixes a cluster's lock project is waiting for, as `status` shows them.
struct Waiting {
    task: LockTask,
    fix: CommitId,
    /// "on beta since Mon 10:15 PST", when the source cluster runs it.
    on_source: Option<String>,
}

async fn holding(
    env: &Env,
    c: &ClusterSettings,
    locks: LockFacts,
) -> (LockFacts, HashMap<TaskGid, String>, Vec<Waiting>) {
    let mut notes = HashMap::new();
    let mut waiting = Vec::new();
    let LockFacts::Read(tasks) = locks else {
        return (locks, notes, waiting);
    };
    let tasks = match status_candidate(env, c) {
        Some(tip) => gather::check_fixes(&env.state, tasks.clone(), tip)
            .await
            .unwrap_or(tasks),
        None => tasks,
    };
    let mirror = Mirror::open(&env.state.repo()).ok();
    let runs = |tip: Option<CommitId>, fix: &CommitId| {
        tip.zip(mirror.as_ref())
            .is_some_and(|(t, m)| m.contains(&t, fix).unwrap_or(false))
    };
    let source = match &c.source {
        Source::Cluster(from) => env
            .state
            .deployed(from)
            .ok()
            .flatten()
            .map(|d| (from.clone(), d)),
        Source::Branch => None,
    };
    let on_source = |fix: &CommitId| {
        source.as_ref().and_then(|(from, d)| {
            runs(d.commit_id(), fix).then(|| {
                format!(
                    "on {from} since {}",
                    d.since.with_timezone(&c.timezone).format("%a %H:%M %Z")
                )
            })
        })
    };
    let deployed = env
        .state
        .deployed(&c.name)
        .ok()
        .flatten()
        .and_then(|d| d.commit_id());
    let mut out = Vec::new();
    for t in tasks {
        let fix = match &t.fix {
            Fix::Valid { commit, .. } => Some(commit.clone()),
            _ => None,
        };
        if crate::decide::holds(&t) {
            if let Some(n) = fix.as_ref().and_then(on_source) {
                notes.insert(t.gid.clone(), n);
            }
            out.push(t);
        } else if let Some(fix) = fix.filter(|f| !runs(deployed.clone(), f)) {
            // Not holding (the next push carries the fix), but not shipped yet.
            waiting.push(Waiting {
                on_source: on_source(&fix),
                fix,
                task: t,
            });
        }
    }
    (LockFacts::Read(out), notes, waiting)
}

pub async fn run(env: &Env, only: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let clusters: Vec<&ClusterSettings> = match only {
        Some(name) => vec![env.cluster(name)?],
        None => env.config.clusters.values().collect(),
    };
    // One read per cluster, concurrently: status is what on-call runs first.
    let mut windows = Vec::new();
    for c in &clusters {
        windows.push(gather::lock_window(&env.state, c)?);
    }
    let reads = clusters
        .iter()
        .zip(windows)
        .map(|(c, since)| gather::lock_facts(&env.client, c, env.fix_field(), since));
    let facts = futures_util::future::join_all(reads).await;
    let mut all_read = true;
    let mut out = Vec::new();
    for (c, locks) in clusters.iter().zip(facts) {
        let (locks, notes, waiting) = holding(env, c, locks).await;
        let deployed = env.state.deployed(&c.name)?;
        let last = env.state.history(&c.name)?.pop();
        let now = chrono::Utc::now();
        let next = crate::decide::next_fire(&c.schedule.cron, c.timezone, now)
            .map(|t| t.with_timezone(&c.timezone));
        let freeze = gather::freeze_facts(&env.config, &env.state, c)
            .and_then(|f| crate::decide::frozen(&f, now))
            .map(|h| h.to_string());
        let running = env.state.running(&c.name);
        if json {
            let mut v = match &locks {
                LockFacts::Read(tasks) => json!({
                    "cluster": c.name.as_str(),
                    "schedule": c.schedule.expr,
                    "timezone": c.timezone.name(),
                    "lock_state": if tasks.is_empty() { "open" } else { "held" },
                    "locks": tasks.iter().map(|t| {
                        let mut v = lock_json(t);
                        v["fix_on_source"] = json!(notes.get(&t.gid));
                        v
                    }).collect::<Vec<_>>(),
                }),
                LockFacts::Unreadable(reason) => json!({
                    "cluster": c.name.as_str(),
                    "schedule": c.schedule.expr,
                    "timezone": c.timezone.name(),
                    "lock_state": "unknown",
                    "error": reason,
                    "locks": null,
                }),
            };
            v["next_push"] = json!(next.map(|t| t.with_timezone(&chrono::Utc)));
            v["waiting_for_fixes"] = json!(waiting
                .iter()
                .map(|w| json!({
                    "gid": w.task.gid.as_str(),
                    "name": w.task.name,
                    "link": w.task.link,
                    "fix": w.fix.as_str(),
                    "on_source": w.on_source,
                }))
                .collect::<Vec<_>>());
            v["freeze"] = json!(freeze);
            v["running"] = json!(running);
            v["deployed"] = match &deployed {
                Some(d) => json!({
                    "commit": d.commit,
                    "release": d.release,
                    "since": d.since,
                    "push_task": d.push_task_link,
                }),
                None => Value::Null,
            };
            v["last_push"] = match &last {
                Some(r) => json!({
                    "kind": r.kind,
                    "outcome": r.outcome,
                    "commit": r.commit,
                    "release": r.release,
                    "finished": r.finished,
                    "push_task": r.push_task_link,
                    "failed_step": r.failed_step,
                }),
                None => Value::Null,
            };
            out.push(v);
        } else {
            println!(
                "{}  (schedule \"{}\", {})",
                c.name,
                c.schedule.expr,
                c.timezone.name()
            );
            if let Some(r) = &running {
                println!("  running: a push is in progress ({r})");
            }
            if let Some(f) = &freeze {
                println!("  {f}");
            }
            if let Some(t) = next {
                println!("  next push: {}", t.format("%a %Y-%m-%d %H:%M %Z"));
            }
            match &deployed {
                Some(d) => println!(
                    "  deployed: {} (release {}) since {}",
                    d.commit.chars().take(7).collect::<String>(),
                    d.release,
                    d.since.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => println!("  deployed: nothing yet"),
            }
            if let Some(r) = &last {
                let how = match (&r.failed_step, &r.error) {
                    (Some(step), Some(e)) => {
                        format!("failed at {step}: {}", crate::plan::printable(e, 200))
                    }
                    _ => r.outcome.clone(),
                };
                println!(
                    "  last {}: {} {how} at {}{}",
                    r.kind,
                    r.commit.chars().take(7).collect::<String>(),
                    r.finished.format("%Y-%m-%d %H:%M:%S UTC"),
                    r.push_task_link
                        .as_deref()
                        .map(|l| format!(" {l}"))
                        .unwrap_or_default()
                );
            }
            match &locks {
                LockFacts::Read(tasks) if tasks.is_empty() => println!("  locks: none"),
                LockFacts::Read(tasks) => {
                    println!("  locks: {} open — pushes are held", tasks.len());
                    for t in tasks {
                        match notes.get(&t.gid) {
                            Some(n) => println!("    - {t} ({n})"),
                            None => println!("    - {t}"),
                        }
                    }
                }
                LockFacts::Unreadable(reason) => {
                    println!(
                        "  locks: unknown — pushes fail closed: {}",
                        crate::plan::printable(reason, 500)
                    )
                }
            }
            for w in &waiting {
                println!(
                    "  waiting for fix {} ({}): \"{}\" {}",
                    w.fix.short(),
                    w.on_source.as_deref().unwrap_or("in the next push"),
                    crate::plan::printable(&w.task.name, 120),
                    crate::plan::printable(&w.task.link, 200)
                );
            }
        }
        all_read &= matches!(locks, LockFacts::Read(_));
    }
    if json {
        super::print_json(&json!({ "clusters": out }));
    }
    Ok(if all_read {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
