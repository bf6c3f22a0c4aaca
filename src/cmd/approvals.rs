//! `pushgate approvals [CLUSTER]`: per gated cluster, what the approval
//! gate says of the candidate (as `decide::approval::judge` returned it)
//! and the recent requests with their status read from Asana now; and
//! the daemon's side of the gate: asking when it is time, and trying a
//! scheduled push held only by its approval again while its window lasts.
//! It decides nothing itself.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::views::judgement_json;
use super::{Env, Outcome};
use crate::adapters::state::StateError;
use crate::config::ClusterSettings;
use crate::domain::approval::{Judgement, TaskRead};
use crate::domain::decide;
use crate::domain::model::TaskGid;
use crate::domain::plan::{Overrides, Verdict};
use crate::domain::text::printable;
use crate::run::clock::RunClock;
use crate::run::{approval, gather};

/// Requests listed per cluster, newest first.
const SHOWN: usize = 20;

/// One request as listed.
struct Listed {
    rec: approval::Record,
    read: Option<TaskRead>,
}

pub async fn run(env: &Env, only: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let clusters: Vec<&ClusterSettings> = match only {
        Some(name) => vec![env.cluster(name)?],
        None => env
            .config
            .clusters
            .values()
            .filter(|c| c.approval.is_some())
            .collect(),
    };
    let now = Utc::now();
    let cx = env.ctx();
    let mut out = Vec::new();
    let mut ok = true;
    for c in clusters {
        let Some(a) = &c.approval else {
            if json {
                out.push(json!({ "cluster": c.name.as_str(), "gated": false }));
            } else {
                println!(
                    "{}: no approval gate ([clusters.{}.approval])",
                    c.name, c.name
                );
            }
            continue;
        };
        let hosts = c.read_hosts().unwrap_or_default();
        let judged =
            match gather::facts(&cx, c, None, hosts, now, Overrides::default(), false).await {
                Ok(f) => match (&f.approval, &f.candidate) {
                    (Some(ap), Some(cand)) => decide::approval::judge(ap, &cand.commit, now),
                    _ => Judgement::NothingToApprove,
                },
                Err(e) => {
                    ok = false;
                    Judgement::Held(crate::domain::approval::ApprovalHold::Unreadable {
                        reason: format!("{e:#}"),
                    })
                }
            };
        let recs = approval::records(&env.state.cluster(&c.name))?;
        let mut listed = Vec::new();
        for r in recs.into_iter().rev().take(SHOWN) {
            let read = match r.gid.as_deref().and_then(TaskGid::parse) {
                Some(g) => Some(approval::read_task(&env.client, &g, &r.digest).await),
                None => Some(TaskRead::Queued),
            };
            if matches!(read, Some(TaskRead::Unreadable(_))) {
                ok = false;
            }
            listed.push(Listed { rec: r, read });
        }
        if json {
            out.push(json!({
                "cluster": c.name.as_str(),
                "gated": true,
                "project": a.project.as_str(),
                "candidate": judgement_json(&judged),
                "requests": listed.iter().map(listed_json).collect::<Vec<_>>(),
            }));
        } else {
            print_text(c, a.project.as_str(), &judged, &listed);
        }
    }
    if json {
        super::print_json(&json!({ "clusters": out }));
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

fn status_of(read: &Option<TaskRead>) -> (String, Option<String>, Option<DateTime<Utc>>) {
    match read {
        None => ("-".into(), None, None),
        Some(TaskRead::Queued) => ("queued".into(), None, None),
        Some(TaskRead::Deleted) => ("deleted".into(), None, None),
        Some(TaskRead::Unreadable(e)) => (format!("unknown ({})", printable(e, 80)), None, None),
        Some(TaskRead::Read(t)) => (
            t.status.as_str().to_owned(),
            t.decided_by.as_ref().map(ToString::to_string),
            t.decided_at,
        ),
    }
}

fn listed_json(l: &Listed) -> Value {
    let (status, by, at) = status_of(&l.read);
    json!({
        "commit": l.rec.commit,
        "digest": l.rec.digest,
        "asked_at": l.rec.asked_at,
        "gid": l.rec.gid,
        "link": l.rec.link,
        "name": l.rec.name,
        "status": status,
        "decided_by": by,
        "decided_at": at,
        "superseded": l.rec.superseded,
        "shipped": l.rec.shipped,
    })
}

fn print_text(c: &ClusterSettings, project: &str, judged: &Judgement, listed: &[Listed]) {
    println!("{}  (approval project {project})", c.name);
    println!("  candidate: {judged}");
    if listed.is_empty() {
        println!("  no requests yet");
        return;
    }
    for l in listed {
        let (status, by, _) = status_of(&l.read);
        let mut marks = Vec::new();
        if l.rec.superseded {
            marks.push("superseded");
        }
        if l.rec.shipped {
            marks.push("shipped");
        }
        println!(
            "  - {} {} {}{}{} {}",
            l.rec.asked_at.format("%Y-%m-%d %H:%M UTC"),
            &l.rec.commit[..7.min(l.rec.commit.len())],
            status,
            by.map(|b| format!(" by {b}")).unwrap_or_default(),
            if marks.is_empty() {
                String::new()
            } else {
                format!(" ({})", marks.join(", "))
            },
            l.rec
                .link
                .as_deref()
                .map(|l| printable(l, 200))
                .unwrap_or_else(|| "(not created yet)".into())
        );
    }
}

/// The daemon asks for `c`'s next approval when it is time (SPEC §8:
/// when the candidate can no longer change before the push), holding the
/// cluster's lock; a busy cluster is asked about on the next poll.
pub async fn ask_if_due(env: &Env, c: &ClusterSettings, now: DateTime<Utc>) -> anyhow::Result<()> {
    let Some(a) = &c.approval else {
        return Ok(());
    };
    let Some(next) = decide::next_fire(&c.schedule.cron, c.timezone, now) else {
        return Ok(());
    };
    if !decide::approval::time_to_ask(now, next, freeze_towards(env, c), long(a.request_before)) {
        return Ok(());
    }
    let state = env.state.cluster(&c.name);
    let _lock = match state.lock() {
        Ok(l) => l,
        Err(StateError::Busy { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let clock = RunClock::starting_at(now);
    let mut ob = crate::run::outbox::Outbox::open(&state, &env.client, clock)?;
    if ob.pending() > 0 {
        ob.flush().await;
    }
    let cx = env.ctx();
    let hosts = c.read_hosts().unwrap_or_default();
    let facts = gather::facts(&cx, c, None, hosts, now, Overrides::default(), false).await?;
    let Some(candidate) = facts.candidate.clone() else {
        return Ok(());
    };
    if !decide::approval::asks_on(&decide::plan(&facts).verdict) {
        return Ok(());
    }
    let run_id = crate::run::execute::run_id(&c.name, &clock);
    let asked = approval::ask(
        &cx,
        c,
        a,
        &candidate.commit,
        facts.deployed.as_ref(),
        &mut ob,
        approval::About {
            changelog: &facts.changelog,
            now,
            run_id: &run_id,
        },
    )
    .await?;
    if let Some(link) = asked.created {
        tracing::info!(app = %env.config.app, cluster = %c.name, commit = %candidate.commit.short(), link = %link.as_deref().unwrap_or("(queued)"), next_push = %next, "asked for the approval of the next push");
    }
    Ok(())
}

/// `freeze_before` of `c`'s source towards `c`: when its candidate stops
/// changing before each push.
fn freeze_towards(env: &Env, c: &ClusterSettings) -> Option<chrono::Duration> {
    let crate::config::Source::Cluster(from) = &c.source else {
        return None;
    };
    env.config
        .clusters
        .get(from)?
        .freeze_before
        .as_ref()
        .filter(|fb| fb.cluster == c.name)
        .map(|fb| long(fb.duration))
}

fn long(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d)
        .unwrap_or(chrono::Duration::MAX)
        .min(chrono::Duration::days(36_525))
}

/// What the daemon does with a scheduled push of `c` at `scheduled`, held
/// by its approval, at `now`: `None` while it stays held, or (the window
/// passed, or the push ran) that it is done with it.
pub async fn retry_held(
    env: &Env,
    c: &ClusterSettings,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Option<String> {
    let a = c.approval.as_ref()?;
    if !decide::approval::retrying(now, scheduled, long(a.window)) {
        return Some(format!(
            "the approval did not come within window = {} of the push scheduled at {}; waiting for the next scheduled push",
            humantime::format_duration(a.window),
            scheduled.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    // Looked at first without the lock: most polls find it still held.
    let hosts = c.read_hosts().ok()?;
    let facts = gather::facts(&env.ctx(), c, None, hosts, now, Overrides::default(), false)
        .await
        .ok()?;
    if !matches!(decide::plan(&facts).verdict, Verdict::Push { .. }) {
        return None;
    }
    let pushed = super::push::push_at(
        env,
        super::push::PushRequest {
            stop,
            ..super::push::PushRequest::scheduled(c.name.as_str(), now)
        },
    )
    .await;
    match pushed {
        Ok(p) if is_approval_hold(&p.plan.verdict) => None,
        Ok(p) => Some(format!(
            "the push held for its approval ran once it came: {}",
            p.plan.verdict_text().lines().next().unwrap_or_default()
        )),
        Err(e) => Some(format!("the push held for its approval failed: {e:#}")),
    }
}

/// Whether a verdict is the approval gate's hold.
pub fn is_approval_hold(v: &Verdict) -> bool {
    matches!(
        v,
        Verdict::Hold(crate::domain::plan::HoldReason::Approval(_))
    )
}
