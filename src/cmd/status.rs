//! `pushgate status [CLUSTER]`: per cluster, what is deployed since when,
//! the last run's outcome, and the open locks and what they mean.

use serde_json::{json, Value};

use super::{Env, Outcome};
use crate::config::ClusterSettings;
use crate::gather;
use crate::model::LockTask;
use crate::plan::LockFacts;

pub fn lock_json(t: &LockTask) -> Value {
    json!({
        "gid": t.gid.as_str(),
        "name": t.name,
        "assignee": t.assignee,
        "link": t.link,
        "fix_commit": t.fix_commit,
    })
}

pub async fn run(env: &Env, only: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let clusters: Vec<&ClusterSettings> = match only {
        Some(name) => vec![env.cluster(name)?],
        None => env.config.clusters.values().collect(),
    };
    // One read per cluster, concurrently: status is what on-call runs first.
    let reads = clusters
        .iter()
        .map(|c| gather::lock_facts(&env.client, c, env.fix_field()));
    let facts = futures_util::future::join_all(reads).await;
    let mut all_read = true;
    let mut out = Vec::new();
    for (c, locks) in clusters.iter().zip(facts) {
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
                    "locks": tasks.iter().map(lock_json).collect::<Vec<_>>(),
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
                        println!("    - {t}");
                    }
                }
                LockFacts::Unreadable(reason) => {
                    println!(
                        "  locks: unknown — pushes fail closed: {}",
                        crate::plan::printable(reason, 500)
                    )
                }
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
