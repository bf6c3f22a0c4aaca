//! `pushgate status [CLUSTER]`: per cluster, what is deployed since when,
//! the last run's outcome, and the open locks and what they mean. For
//! people: a summary table (coloured on a terminal, never with
//! `NO_COLOR`), then each cluster's details with the links; `--json` for
//! scripts.

use serde_json::{json, Value};

use super::{Env, Outcome};
use crate::adapters::git::Mirror;
use crate::config::{ClusterSettings, Source};
use std::collections::HashMap;

use crate::adapters::state::{Deployed, HistoryRecord};
use crate::cmd::term::Paint;
use crate::domain::model::{CommitId, Fix, LockTask, TaskGid};
use crate::domain::plan::LockFacts;
use crate::domain::text::printable;
use crate::run::gather;

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
        if crate::domain::decide::holds(&t) {
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
    let paint = crate::cmd::term::Paint::stdout();
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for (c, locks) in clusters.iter().zip(facts) {
        let (locks, notes, waiting) = holding(env, c, locks).await;
        let deployed = env.state.deployed(&c.name)?;
        let last = env.state.history(&c.name)?.pop();
        let now = chrono::Utc::now();
        let next = crate::domain::decide::next_fire(&c.schedule.cron, c.timezone, now)
            .map(|t| t.with_timezone(&c.timezone));
        let freeze = gather::freeze_facts(&env.config, &env.state, c)
            .and_then(|f| crate::domain::decide::frozen(&f, now))
            .map(|h| h.to_string());
        let running = env.state.running(&c.name);
        let backlog = Backlog::read(env, c, running.is_some());
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
            v["asana_queued"] = json!(backlog.queued);
            v["asana_queued_since"] = json!(backlog.oldest);
            v["interrupted_run"] = json!(backlog.interrupted);
            v["rolled_back_commits"] = json!(backlog.rolled_back);
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
            let t = Text {
                c,
                locks: &locks,
                notes: &notes,
                waiting: &waiting,
                deployed: deployed.as_ref(),
                last: last.as_ref(),
                next,
                freeze: freeze.as_deref(),
                running: running.as_deref(),
                backlog: &backlog,
            };
            rows.push(t.row(&paint));
            details.push(t.details(&paint));
        }
        all_read &= matches!(locks, LockFacts::Read(_));
    }
    if json {
        super::print_json(&json!({ "clusters": out }));
    } else {
        let header: Vec<String> = [
            "CLUSTER",
            "STATE",
            "DEPLOYED",
            "SINCE",
            "LAST RUN",
            "LOCKS",
            "NEXT PUSH",
        ]
        .iter()
        .map(|h| paint.dim(h))
        .collect();
        print!("{}", crate::cmd::term::table(&header, &rows));
        for d in details {
            println!();
            print!("{d}");
        }
    }
    Ok(if all_read {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// What earlier runs left for the next one: Asana writes in the outbox, a
/// killed run's journal, commits marked by rollbacks.
struct Backlog {
    queued: usize,
    oldest: Option<chrono::DateTime<chrono::Utc>>,
    interrupted: Option<String>,
    rolled_back: Vec<String>,
}

impl Backlog {
    fn read(env: &Env, c: &ClusterSettings, running: bool) -> Backlog {
        let outbox = crate::run::outbox::Outbox::open(&env.state, &c.name, &env.client).ok();
        Backlog {
            queued: outbox.as_ref().map_or(0, |o| o.pending()),
            oldest: outbox.as_ref().and_then(|o| o.oldest()),
            // A journal while no push runs is a killed run's.
            interrupted: (!running)
                .then(|| env.state.unfinished(&c.name).ok())
                .flatten()
                .and_then(|e| e.first().map(|e| e.run_id.clone())),
            rolled_back: env
                .state
                .bad_commits(&c.name)
                .map(|m| m.into_keys().collect())
                .unwrap_or_default(),
        }
    }
}

/// One cluster's status, for people: a row of the summary table and a
/// block of details (links, lock tasks, errors).
struct Text<'a> {
    c: &'a ClusterSettings,
    locks: &'a LockFacts,
    notes: &'a HashMap<TaskGid, String>,
    waiting: &'a [Waiting],
    deployed: Option<&'a Deployed>,
    last: Option<&'a HistoryRecord>,
    next: Option<chrono::DateTime<chrono_tz::Tz>>,
    freeze: Option<&'a str>,
    running: Option<&'a str>,
    backlog: &'a Backlog,
}

impl Text<'_> {
    fn row(&self, paint: &Paint) -> Vec<String> {
        let state = match (self.running, self.freeze, self.locks) {
            (Some(_), _, _) => paint.busy("pushing"),
            (_, _, LockFacts::Unreadable(_)) => paint.bad("unknown"),
            (_, _, LockFacts::Read(t)) if !t.is_empty() => paint.bad("held"),
            (_, Some(_), _) => paint.warn("frozen"),
            _ => paint.good("open"),
        };
        let deployed = self
            .deployed
            .map_or("-".to_owned(), |d| d.commit.chars().take(7).collect());
        let since = self.deployed.map_or("-".to_owned(), |d| {
            d.since.format("%Y-%m-%d %H:%M UTC").to_string()
        });
        let last = match self.last {
            None => "-".to_owned(),
            Some(r) => {
                let what = format!("{} {}", r.kind, r.finished.format("%m-%d %H:%M"));
                if r.outcome == "success" {
                    format!("{what} {}", paint.good("ok"))
                } else {
                    let step = r.failed_step.as_deref().unwrap_or("?");
                    format!(
                        "{what} {}",
                        paint.bad(&format!("failed at {}", printable(step, 40)))
                    )
                }
            }
        };
        let locks = match self.locks {
            LockFacts::Read(t) if t.is_empty() => paint.good("none"),
            LockFacts::Read(t) => paint.bad(&format!("{} open", t.len())),
            LockFacts::Unreadable(_) => paint.bad("unknown"),
        };
        let next = self
            .next
            .map_or("-".to_owned(), |t| t.format("%a %H:%M %Z").to_string());
        vec![
            paint.bold(self.c.name.as_str()),
            state,
            deployed,
            since,
            last,
            locks,
            next,
        ]
    }

    fn details(&self, paint: &Paint) -> String {
        let c = self.c;
        let mut out = format!(
            "{}  (schedule \"{}\", {})\n",
            paint.bold(c.name.as_str()),
            c.schedule.expr,
            c.timezone.name()
        );
        let mut line = |l: String| {
            out.push_str("  ");
            out.push_str(&l);
            out.push('\n');
        };
        if let Some(r) = self.running {
            line(paint.busy(&format!("running: a push is in progress ({r})")));
        }
        if let Some(f) = self.freeze {
            line(paint.warn(f));
        }
        if let Some(t) = self.next {
            line(format!("next push: {}", t.format("%a %Y-%m-%d %H:%M %Z")));
        }
        match self.deployed {
            Some(d) => line(format!(
                "deployed: {} (release {}) since {}{}",
                d.commit.chars().take(7).collect::<String>(),
                d.release,
                d.since.format("%Y-%m-%d %H:%M:%S UTC"),
                d.push_task_link
                    .as_deref()
                    .map(|l| format!(" {}", printable(l, 200)))
                    .unwrap_or_default()
            )),
            None => line("deployed: nothing yet".to_owned()),
        }
        if let Some(r) = self.last {
            let how = match (&r.failed_step, &r.error) {
                (Some(step), Some(e)) => paint.bad(&format!(
                    "failed at {}: {}",
                    printable(step, 40),
                    printable(e, 200)
                )),
                _ if r.outcome == "success" => paint.good(&r.outcome),
                _ => paint.bad(&r.outcome),
            };
            line(format!(
                "last {}: {} {how} at {}{}",
                r.kind,
                r.commit.chars().take(7).collect::<String>(),
                r.finished.format("%Y-%m-%d %H:%M:%S UTC"),
                r.push_task_link
                    .as_deref()
                    .map(|l| format!(" {}", printable(l, 200)))
                    .unwrap_or_default()
            ));
        }
        match self.locks {
            LockFacts::Read(tasks) if tasks.is_empty() => line("locks: none".to_owned()),
            LockFacts::Read(tasks) => {
                line(paint.bad(&format!("locks: {} open — pushes are held", tasks.len())));
                for t in tasks {
                    match self.notes.get(&t.gid) {
                        Some(n) => line(format!("  - {t} ({n})")),
                        None => line(format!("  - {t}")),
                    }
                }
            }
            LockFacts::Unreadable(reason) => line(paint.bad(&format!(
                "locks: unknown — pushes fail closed: {}",
                printable(reason, 500)
            ))),
        }
        let b = self.backlog;
        if let Some(r) = &b.interrupted {
            line(paint.warn(&format!(
                "interrupted: run {r} did not finish; the next push or rollback recovers it first"
            )));
        }
        if b.queued > 0 {
            line(paint.warn(&format!(
                "asana: {} write{} queued since {}; the next run replays them",
                b.queued,
                if b.queued == 1 { "" } else { "s" },
                b.oldest
                    .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            )));
        }
        for c in &b.rolled_back {
            line(format!(
                "rolled back: {} is not pushed again without `--commit`",
                c.chars().take(7).collect::<String>()
            ));
        }
        for w in self.waiting {
            line(format!(
                "waiting for fix {} ({}): \"{}\" {}",
                w.fix.short(),
                w.on_source.as_deref().unwrap_or("in the next push"),
                printable(&w.task.name, 120),
                printable(&w.task.link, 200)
            ));
        }
        out
    }
}
