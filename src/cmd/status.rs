//! `pushgate status [CLUSTER]`: per cluster, what `decide` says of its next
//! push on the same facts `push --dry-run` gathers (the mirror fetched once
//! for every cluster, the lock project read, the history, the freeze, the
//! soak), with its reasons; then what is deployed since when, the last
//! run, the open locks and what earlier runs left behind. For people: a
//! summary table in one time zone named in its header (coloured on a
//! terminal, never with `NO_COLOR`), then each cluster's details with the
//! links; `--json` for scripts. It decides nothing itself.
//!
//! What it gathers and what decide made of it, per cluster, is a
//! [`ClusterView`]: the on-call page (`cmd::page`) shows the same views,
//! its state word and verdict line from the same functions, and
//! `/api/status.json` is [`json`] of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::views::{judgement_json, lock_json, plan_json};
use super::{Env, Envs, Outcome, UsageError};
use crate::adapters::state::{Deployed, HistoryRecord};
use crate::cmd::term::Paint;
use crate::config::ClusterSettings;
use crate::domain::approval::Judgement;
use crate::domain::decide::{self, FixPlace, Waiting};
use crate::domain::model::{AppName, Host, LockTask, RunOutcome, TaskGid};
use crate::domain::plan::{Facts, HoldReason, LockFacts, Overrides, Plan, Verdict};
use crate::domain::text::{plural, printable};
use crate::run::gather;

/// What `status` (and the on-call page) knows of one cluster: the facts
/// `push --dry-run` gathers and the plan decide made of them, and what is
/// shown beside it. Owned, so the page can keep it between requests.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Its app, when the config has several (named in every line).
    pub app: Option<AppName>,
    /// Its app, always (for `--json`).
    pub app_name: AppName,
    pub c: ClusterSettings,
    /// Its facts and decision, or why they could not be gathered.
    pub decided: Result<(Facts, Plan), String>,
    /// The lock tasks that hold, and the notes on fixes its source runs.
    pub holding: Vec<LockTask>,
    pub notes: BTreeMap<TaskGid, String>,
    pub waiting: Vec<Waiting>,
    pub deployed: Option<Deployed>,
    pub last: Option<HistoryRecord>,
    pub next: Option<DateTime<Utc>>,
    pub backlog: Backlog,
    /// What the approval gate says of the candidate (gated clusters only).
    pub approval: Option<Judgement>,
}

type Seen = ClusterView;

/// The clusters a view covers: every cluster of `apps`, or each app's
/// cluster named `only` (an unknown one is a usage error).
pub fn wanted<'a>(
    apps: &[&'a Env],
    only: Option<&str>,
) -> Result<Vec<(&'a Env, &'a ClusterSettings)>, UsageError> {
    let mut wanted: Vec<(&Env, &ClusterSettings)> = Vec::new();
    for env in apps {
        match only {
            Some(name) => match env.config.cluster(name) {
                Some(c) => wanted.push((env, c)),
                None if apps.len() == 1 => {
                    env.cluster(name)?;
                }
                None => {}
            },
            None => wanted.extend(env.config.clusters.values().map(|c| (*env, c))),
        }
    }
    if wanted.is_empty() {
        return Err(UsageError(format!(
            "no app has a cluster `{}`",
            printable(only.unwrap_or(""), 40)
        )));
    }
    Ok(wanted)
}

/// Gathers and decides for every cluster of `wanted` at `now`, as `status`
/// does: each app's mirror fetched once (a fetch that fails is a warning,
/// returned; the mirror is shown as it is), then every cluster at once.
pub async fn gather(
    wanted: &[(&Env, &ClusterSettings)],
    now: DateTime<Utc>,
    many: bool,
) -> Result<(Vec<ClusterView>, Vec<String>), UsageError> {
    let mut warnings = Vec::new();
    let mut fetched: Vec<&AppName> = Vec::new();
    for (env, _) in wanted {
        if fetched.contains(&&env.config.app) {
            continue;
        }
        fetched.push(&env.config.app);
        if let Err(e) = gather::fetch(&env.config, &env.state).await {
            warnings.push(format!(
                "cannot fetch {}'s repository ({}); showing what the mirror has",
                env.config.app,
                printable(&format!("{e:#}"), 300)
            ));
        }
    }
    let mut hosts = Vec::new();
    for (_, c) in wanted {
        hosts.push(c.read_hosts().map_err(UsageError)?);
    }
    // Every cluster at once: status is what on-call runs first.
    let seen = futures_util::future::join_all(
        wanted
            .iter()
            .zip(hosts)
            .map(|((env, c), hosts)| look(env, c, hosts, now, many)),
    )
    .await;
    Ok((seen, warnings))
}

/// `pushgate status [CLUSTER]`: every app's clusters (or `--app`'s), in
/// one table.
pub async fn run(
    envs: &Envs,
    app: Option<&str>,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let apps = envs.apps(app)?;
    let wanted = wanted(&apps, only)?;
    // One clock reading for the whole view.
    let now = Utc::now();
    // One fetch per app (each has its mirror); without it, the mirror as it is.
    let (seen, warnings) = gather(&wanted, now, envs.many()).await?;
    for w in warnings {
        eprintln!("pushgate: warning: {w}");
    }
    let all_read = seen
        .iter()
        .all(|s| matches!(&s.decided, Ok((f, _)) if !matches!(f.locks, LockFacts::Unreadable(_))));
    if json {
        super::print_json(&self::json(&seen));
    } else {
        print_text(&seen, now);
    }
    Ok(if all_read {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// Gathers and decides for one cluster as `push --dry-run` would (no
/// fetch: [`gather`] fetched once), plus what the views show beside it.
pub async fn look(
    env: &Env,
    c: &ClusterSettings,
    hosts: Vec<Host>,
    now: DateTime<Utc>,
    many: bool,
) -> ClusterView {
    let cx = &env.ctx();
    let state = env.state.cluster(&c.name);
    let running = state.running();
    let facts = match running {
        Some(holder) => Ok(Facts {
            app: env.config.named_app(),
            ..Facts::running(c.name.clone(), holder, now)
        }),
        None => gather::facts(cx, c, None, hosts, now, Overrides::default(), false)
            .await
            .map_err(|e| format!("{e:#}")),
    };
    let decided = facts.map(|f| {
        let p = decide::plan(&f);
        (f, p)
    });
    let tasks: Vec<LockTask> = match &decided {
        Ok((f, _)) => match &f.locks {
            LockFacts::Read(t) => t.clone(),
            LockFacts::Unreadable(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    let places = gather::fix_places(cx, c, &tasks).await;
    let holding: Vec<LockTask> = tasks.iter().filter(|t| decide::holds(t)).cloned().collect();
    let notes = on_source_notes(&holding, &places, c.timezone);
    let approval = c.approval.as_ref().map(|_| match &decided {
        Ok((f, _)) => match (&f.approval, &f.candidate) {
            (Some(a), Some(cand)) => decide::approval::judge(a, &cand.commit, now),
            _ => Judgement::NothingToApprove,
        },
        Err(e) => {
            Judgement::Held(crate::domain::approval::ApprovalHold::Unreadable { reason: e.clone() })
        }
    });
    ClusterView {
        app: many.then(|| env.config.app.clone()),
        app_name: env.config.app.clone(),
        c: c.clone(),
        approval,
        waiting: decide::waiting(&tasks, &places),
        holding,
        notes,
        deployed: state.deployed().ok().flatten(),
        last: state.history().ok().and_then(|mut h| h.pop()),
        next: decide::next_fire(&c.schedule.cron, c.timezone, now),
        backlog: Backlog::read(env, c, running_now(&decided), now),
        decided,
    }
}

fn running_now(decided: &Result<(Facts, Plan), String>) -> bool {
    matches!(decided, Ok((f, _)) if f.running.is_some())
}

/// "on beta since Mon 10:15 PST" for holding tasks whose fix the source runs.
fn on_source_notes(
    holding: &[LockTask],
    places: &BTreeMap<TaskGid, FixPlace>,
    tz: Tz,
) -> BTreeMap<TaskGid, String> {
    holding
        .iter()
        .filter_map(|t| {
            let (from, since) = places.get(&t.gid)?.on_source.as_ref()?;
            Some((
                t.gid.clone(),
                format!(
                    "on {from} since {}",
                    since.with_timezone(&tz).format("%a %H:%M %Z")
                ),
            ))
        })
        .collect()
}

/// The table's STATE: what the verdict means for the next push, and its
/// tone (0 good, 1 warn, 2 bad, 3 busy: the colour). The page shows the
/// same word.
pub fn state_word(s: &ClusterView) -> (&'static str, u8) {
    // 0 good, 1 warn, 2 bad, 3 busy: the colour.
    match &s.decided {
        Err(_) => ("error", 2),
        Ok((_, p)) => match &p.verdict {
            Verdict::Hold(HoldReason::Running { .. }) => ("pushing", 3),
            Verdict::Unknown { .. } => ("unknown", 2),
            Verdict::Hold(
                HoldReason::Locked { .. } | HoldReason::RolledBack { .. } | HoldReason::Approval(_),
            ) => ("held", 2),
            Verdict::Hold(HoldReason::Frozen { .. } | HoldReason::OtherRunning { .. }) => {
                ("frozen", 1)
            }
            Verdict::Hold(HoldReason::Soaking { .. }) => ("soaking", 1),
            Verdict::Hold(HoldReason::BuildFailed { .. } | HoldReason::ArtifactMissing { .. }) => {
                ("failing", 2)
            }
            Verdict::Push { .. } | Verdict::NothingNew { .. } => ("open", 0),
        },
    }
}

/// The view's one time zone: the clusters' own when they share one, else UTC.
pub fn view_zone(seen: &[ClusterView]) -> Tz {
    let first = seen.first().map(|s| s.c.timezone);
    match first {
        Some(tz) if seen.iter().all(|s| s.c.timezone == tz) => tz,
        _ => chrono_tz::UTC,
    }
}

fn print_text(seen: &[Seen], now: DateTime<Utc>) {
    let paint = Paint::stdout();
    let tz = view_zone(seen);
    let zone = if tz == chrono_tz::UTC {
        "UTC".to_owned()
    } else {
        tz.name().to_owned()
    };
    let header: Vec<String> = seen
        .first()
        .and_then(|s| s.app.as_ref())
        .map(|_| "APP".to_owned())
        .into_iter()
        .chain([
            "CLUSTER".to_owned(),
            "STATE".into(),
            "DEPLOYED".into(),
            format!("SINCE ({zone})"),
            "LAST RUN".into(),
            "LOCKS".into(),
            "NEXT PUSH".into(),
        ])
        .map(|h| paint.dim(&h))
        .collect();
    let rows: Vec<Vec<String>> = seen.iter().map(|s| row(s, &paint, tz)).collect();
    print!("{}", crate::cmd::term::table(&header, &rows));
    for s in seen {
        println!();
        print!("{}", details(s, &paint, tz, now));
    }
}

fn row(s: &Seen, paint: &Paint, tz: Tz) -> Vec<String> {
    let (word, tone) = state_word(s);
    let state = match tone {
        0 => paint.good(word),
        1 => paint.warn(word),
        3 => paint.busy(word),
        _ => paint.bad(word),
    };
    let deployed = s
        .deployed
        .as_ref()
        .map_or("-".to_owned(), |d| d.commit.chars().take(7).collect());
    let since = s.deployed.as_ref().map_or("-".to_owned(), |d| {
        d.since
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    });
    let last = match &s.last {
        None => "-".to_owned(),
        Some(r) => {
            let what = format!(
                "{} {}",
                r.kind,
                r.finished.with_timezone(&tz).format("%m-%d %H:%M")
            );
            if r.outcome == RunOutcome::Success {
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
    let locks = match &s.decided {
        Ok((f, _)) if matches!(f.locks, LockFacts::Unreadable(_)) => paint.bad("unknown"),
        Err(_) => paint.bad("unknown"),
        Ok(_) if s.holding.is_empty() => paint.good("none"),
        Ok(_) => paint.bad(&format!("{} open", s.holding.len())),
    };
    let next = s.next.map_or("-".to_owned(), |t| {
        t.with_timezone(&tz).format("%a %H:%M").to_string()
    });
    s.app
        .as_ref()
        .map(|a| paint.bold(a.as_str()))
        .into_iter()
        .chain([
            paint.bold(s.c.name.as_str()),
            state,
            deployed,
            since,
            last,
            locks,
            next,
        ])
        .collect()
}

fn details(s: &Seen, paint: &Paint, tz: Tz, now: DateTime<Utc>) -> String {
    let c = &s.c;
    let mut out = format!(
        "{}{}  (schedule \"{}\", {})\n",
        s.app
            .as_ref()
            .map(|a| format!("{} ", paint.bold(a.as_str())))
            .unwrap_or_default(),
        paint.bold(c.name.as_str()),
        c.schedule.expr,
        c.timezone.name()
    );
    let mut line = |l: String| {
        out.push_str("  ");
        out.push_str(&l);
        out.push('\n');
    };
    let at = |t: DateTime<Utc>| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    match &s.decided {
        Err(e) => line(paint.bad(&format!(
            "cannot tell what the next push would do: {}",
            printable(e, 500)
        ))),
        Ok((_, plan)) => {
            let shown = format!("next push: {}", verdict_line(plan));
            line(match state_word(s).1 {
                0 => shown,
                1 => paint.warn(&shown),
                3 => paint.busy(&shown),
                _ => paint.bad(&shown),
            });
        }
    }
    if let Some(t) = s.next {
        line(format!(
            "scheduled: {} (in {})",
            t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z"),
            humantime::format_duration(std::time::Duration::from_secs(
                (t - now).num_seconds().max(0) as u64
            ))
        ));
    }
    match &s.deployed {
        Some(d) => line(format!(
            "deployed: {} (release {}) since {}{}",
            d.commit.chars().take(7).collect::<String>(),
            d.release,
            at(d.since),
            d.push_task_link
                .as_deref()
                .map(|l| format!(" {}", printable(l, 200)))
                .unwrap_or_default()
        )),
        None => line("deployed: nothing yet".to_owned()),
    }
    if let Some(r) = &s.last {
        let how = match (&r.failed_step, &r.error) {
            (Some(step), Some(e)) => paint.bad(&format!(
                "failed at {}: {}",
                printable(step, 40),
                printable(e, 200)
            )),
            _ if r.outcome == RunOutcome::Success => paint.good(r.outcome.as_str()),
            _ => paint.bad(r.outcome.as_str()),
        };
        line(format!(
            "last {}: {} {how} at {}{}",
            r.kind,
            r.commit.chars().take(7).collect::<String>(),
            at(r.finished),
            r.push_task_link
                .as_deref()
                .map(|l| format!(" {}", printable(l, 200)))
                .unwrap_or_default()
        ));
    }
    match &s.decided {
        Ok((f, _)) => match &f.locks {
            LockFacts::Unreadable(reason) => line(paint.bad(&format!(
                "locks: unknown — pushes fail closed: {}",
                printable(reason, 500)
            ))),
            LockFacts::Read(_) if s.holding.is_empty() => line("locks: none".to_owned()),
            LockFacts::Read(_) => {
                line(paint.bad(&format!(
                    "locks: {} open — pushes are held",
                    s.holding.len()
                )));
                for t in &s.holding {
                    match s.notes.get(&t.gid) {
                        Some(n) => line(format!("  - {t} ({n})")),
                        None => line(format!("  - {t}")),
                    }
                }
            }
        },
        Err(_) => line(paint.bad("locks: unknown")),
    }
    if let Some(j) = &s.approval {
        let text = format!("approval: {j}");
        line(match j {
            Judgement::Approved { .. } | Judgement::NothingToApprove => text,
            Judgement::Held(_) => paint.warn(&text),
        });
    }
    let b = &s.backlog;
    if let Some(r) = &b.interrupted {
        line(paint.warn(&format!(
            "interrupted: run {r} did not finish; the next push or rollback recovers it first"
        )));
    }
    if b.queued > 0 {
        line(paint.warn(&format!(
            "asana: {} {} queued since {}; the next run replays them",
            b.queued,
            plural(b.queued, "write"),
            b.oldest.map_or("?".into(), at)
        )));
    }
    for c in &b.rolled_back {
        line(format!(
            "rolled back: {} is not pushed again without `--commit`",
            c.chars().take(7).collect::<String>()
        ));
    }
    for w in &s.waiting {
        line(format!(
            "waiting for fix {} ({}): \"{}\" {}",
            w.fix.short(),
            w.on_source
                .as_ref()
                .map_or("in the next push".to_owned(), |(from, since)| format!(
                    "on {from} since {}",
                    since.with_timezone(&tz).format("%a %H:%M %Z")
                )),
            printable(&w.task.name, 120),
            printable(&w.task.link, 200)
        ));
    }
    out
}

/// The verdict decide gave, as `push --dry-run` prints it: its first line
/// without the cluster's name (a hold's reasons follow on the next lines).
pub fn verdict_line(plan: &Plan) -> String {
    let text = plan.to_string();
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix(&format!("{}: ", plan.label()))
        .unwrap_or(first)
        .to_owned()
}

/// `status --json`: `{"clusters": [...]}`, one object per view.
pub fn json(seen: &[ClusterView]) -> Value {
    json!({ "clusters": seen.iter().map(to_json).collect::<Vec<_>>() })
}

/// One cluster as `status --json` shows it.
pub fn to_json(s: &ClusterView) -> Value {
    let c = &s.c;
    let mut v = json!({
        "app": s.app_name.as_str(),
        "cluster": c.name.as_str(),
        "schedule": c.schedule.expr,
        "timezone": c.timezone.name(),
    });
    match &s.decided {
        Ok((f, plan)) => {
            match &f.locks {
                LockFacts::Read(_) => {
                    v["lock_state"] = json!(if s.holding.is_empty() { "open" } else { "held" });
                    v["locks"] = json!(s
                        .holding
                        .iter()
                        .map(|t| {
                            let mut l = lock_json(t);
                            l["fix_on_source"] = json!(s.notes.get(&t.gid));
                            l
                        })
                        .collect::<Vec<_>>());
                }
                LockFacts::Unreadable(reason) => {
                    v["lock_state"] = json!("unknown");
                    v["error"] = json!(reason);
                    v["locks"] = Value::Null;
                }
            }
            // The same plan `push --dry-run --json` prints.
            v["next"] = plan_json(plan);
            v["state"] = json!(state_word(s).0);
            v["freeze"] = json!(match &plan.verdict {
                Verdict::Hold(
                    h @ (HoldReason::Frozen { .. } | HoldReason::OtherRunning { .. }),
                ) => Some(h.to_string()),
                _ => None,
            });
        }
        Err(e) => {
            v["lock_state"] = json!("unknown");
            v["error"] = json!(e);
            v["locks"] = Value::Null;
            v["state"] = json!("error");
        }
    }
    v["next_push"] = json!(s.next);
    v["approval"] = s.approval.as_ref().map_or(Value::Null, judgement_json);
    v["waiting_for_fixes"] = json!(s
        .waiting
        .iter()
        .map(|w| json!({
            "gid": w.task.gid.as_str(),
            "name": w.task.name,
            "link": w.task.link,
            "fix": w.fix.as_str(),
            "on_source": w.on_source.as_ref().map(|(from, since)| json!({"cluster": from.as_str(), "since": since})),
        }))
        .collect::<Vec<_>>());
    v["running"] = json!(match &s.decided {
        Ok((f, _)) => f.running.clone(),
        Err(_) => None,
    });
    v["asana_queued"] = json!(s.backlog.queued);
    v["asana_queued_since"] = json!(s.backlog.oldest);
    v["interrupted_run"] = json!(s.backlog.interrupted);
    v["rolled_back_commits"] = json!(s.backlog.rolled_back);
    v["deployed"] = match &s.deployed {
        Some(d) => json!({
            "commit": d.commit,
            "release": d.release,
            "since": d.since,
            "push_task": d.push_task_link,
        }),
        None => Value::Null,
    };
    v["last_push"] = match &s.last {
        Some(r) => json!({
            "kind": r.kind.as_str(),
            "outcome": r.outcome.as_str(),
            "commit": r.commit,
            "release": r.release,
            "finished": r.finished,
            "push_task": r.push_task_link,
            "failed_step": r.failed_step,
        }),
        None => Value::Null,
    };
    v
}

/// What earlier runs left for the next one: Asana writes in the outbox, a
/// killed run's journal, commits marked by rollbacks.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    pub queued: usize,
    pub oldest: Option<DateTime<Utc>>,
    pub interrupted: Option<String>,
    pub rolled_back: Vec<String>,
}

impl Backlog {
    fn read(env: &Env, c: &ClusterSettings, running: bool, now: DateTime<Utc>) -> Backlog {
        let state = env.state.cluster(&c.name);
        let clock = crate::run::clock::RunClock::starting_at(now);
        let outbox = crate::run::outbox::Outbox::open(&state, &env.client, clock).ok();
        Backlog {
            queued: outbox.as_ref().map_or(0, |o| o.pending()),
            oldest: outbox.as_ref().and_then(|o| o.oldest()),
            // A journal while no push runs is a killed run's.
            interrupted: (!running)
                .then(|| state.unfinished().ok())
                .flatten()
                .and_then(|e| e.first().map(|e| e.run_id.clone())),
            rolled_back: state
                .bad_commits()
                .map(|m| m.into_keys().collect())
                .unwrap_or_default(),
        }
    }
}
