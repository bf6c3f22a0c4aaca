//! `/`: every app × cluster on one screen — the state word and the
//! verdict line `status` prints for it (what `decide` said on the facts
//! `push --dry-run` gathers), what holds it (locks with their assignees,
//! the freeze or soak and until when, the approval and who decided),
//! what is deployed since when, the next scheduled push, the last run and
//! its Asana task, and a running push's progress, updated live.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use super::feeds::{live_of, live_words};
use super::html::{self, commit, text, time, tone, BodyData};
use super::Page;
use crate::cmd::status::{self, ClusterView};
use crate::domain::approval::{ApprovalHold, Judgement};
use crate::domain::model::{Fix, LockTask, RunOutcome};
use crate::domain::plan::{HoldReason, LockFacts, Verdict};

pub async fn show(State(page): State<Arc<Page>>) -> Response {
    let o = page.overview().await;
    html::blocking(move || render(&page, &o.views, o.problem.as_deref())).await
}

fn render(page: &Page, views: &[ClusterView], problem: Option<&str>) -> Response {
    let now = Utc::now();
    let tz = status::view_zone(views);
    let zone = if tz == chrono_tz::UTC {
        "UTC"
    } else {
        tz.name()
    };
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for v in views.iter() {
        *counts.entry(status::state_word(v).0).or_default() += 1;
    }
    let body = html! {
        h1 { "Clusters" }
        p.muted {
            (views.len()) " clusters: "
            @for (i, (word, n)) in counts.iter().enumerate() {
                @if i > 0 { ", " }
                (n) " " (word)
            }
            ". Times in " (zone) "."
        }
        @if let Some(why) = problem {
            p.note { "The clusters' state could not be gathered: " (text(why, 600)) }
        }
        table #clusters {
            thead { tr {
                th { "Cluster" } th { "State" } th { "Next push (what decide says)" } th { "Deployed" }
                th { "Scheduled" } th { "Last run" } th { "Locks" }
            } }
            tbody {
                @for v in views.iter() { (row(page, v, tz, now)) }
            }
        }
        (requests(page, tz))
    };
    html::page(StatusCode::OK, "clusters", BodyData::default(), body)
}

fn row(page: &Page, v: &ClusterView, tz: Tz, now: DateTime<Utc>) -> Markup {
    let (word, t) = status::state_word(v);
    let key = format!("{}/{}", v.app_name, v.c.name);
    let label = match &v.app {
        Some(a) => format!("{a}/{}", v.c.name),
        None => v.c.name.to_string(),
    };
    let env = page.cluster(v.app_name.as_str(), v.c.name.as_str());
    let live = env.map(|(e, c)| live_of(page, e, c)).unwrap_or_default();
    let web = env.and_then(|(e, _)| e.config.web.as_ref());
    // A push, with its journal: not a run that only holds the lock to look.
    let running = live.run_id.is_some();
    html! {
        tr data-live=(key) data-running=[running.then_some("1")] data-state=(word) {
            td data-label="Cluster" { a href=(format!("/cluster/{}/{}", v.app_name, v.c.name)) { strong { (label) } } }
            td data-label="State" {
                span class=(format!("live-state state {}", tone(if running { 3 } else { t }))) {
                    (if running { "pushing" } else { word })
                }
                br;
                progress.live-bar max=(live.hosts.max(1)) value=(live.staged) hidden[live.hosts == 0] {}
                div.live-progress.small { (live_words(&live)) }
                @if let Some(r) = &live.run_id {
                    div.small { a href=(format!("/run/{}/{}/{}", v.app_name, v.c.name, r)) { "this run" } }
                }
            }
            td data-label="Next push" { (verdict(page, v, tz)) }
            td data-label="Deployed" {
                @match &v.deployed {
                    Some(d) => {
                        (commit(web, &d.commit)) br;
                        span.small.mono { (text(&d.release, 60)) } br;
                        span.small { "since " (time(d.since, tz)) }
                        @if let Some(link) = d.push_task.as_deref().and_then(crate::domain::model::TaskGid::parse).map(|g| page.links.task(&v.c.push_project, &g)) {
                            br; a.small href=(link) { "push task" }
                        }
                    }
                    None => span.muted { "nothing yet" },
                }
            }
            td data-label="Scheduled" {
                @match v.next {
                    Some(n) => {
                        (time(n, tz)) br;
                        span.small.muted { "in " (html::took((n - now).to_std().unwrap_or_default())) }
                    }
                    None => span.muted { "never" },
                }
            }
            td data-label="Last run" { (last_run(page, v, tz)) }
            td data-label="Locks" { (locks(page, v)) }
        }
    }
}

/// How many requests the overview lists (`pushgate requests` has all).
const REQUESTS_SHOWN: usize = 10;

/// The requests project's newest tasks and where each stands, as
/// `pushgate requests` lists them from its journal; names and outcomes
/// are people's text, shown as text; links are built from gids.
fn requests(page: &Page, tz: Tz) -> Markup {
    let Some(env) = page.apps.first() else {
        return html! {};
    };
    let (project, all) = match crate::cmd::requests::seen(env) {
        Ok(Some(seen)) => (seen.project, seen.requests),
        Ok(None) => return html! {},
        Err(e) => {
            return html! {
                h2 { "Requests" }
                p.note { "The requests journal cannot be read: " (text(&e.to_string(), 300)) }
            }
        }
    };
    html! {
        h2 { "Requests" }
        @if all.is_empty() {
            p.muted { "No request task seen yet in the requests project." }
        } @else {
            p.muted.small {
                (all.len().min(REQUESTS_SHOWN)) " newest of " (all.len())
                "; `pushgate requests` lists them all."
            }
            table #requests {
                thead { tr { th { "Request" } th { "Standing" } th { "When" } th { "Outcome" } } }
                tbody {
                    @for (gid, e) in all.iter().take(REQUESTS_SHOWN) {
                        tr data-standing=(e.standing) {
                            td {
                                @let name = if e.name.trim().is_empty() { "(unnamed task)".to_owned() } else { text(&e.name, 120) };
                                @match crate::domain::model::TaskGid::parse(gid) {
                                    Some(g) => a.request href=(page.links.task(&project, &g)) { (name) },
                                    None => (name),
                                }
                            }
                            td {
                                (e.standing)
                                @if e.attempt > 0 { span.small.muted { " (attempt " (e.attempt) ")" } }
                            }
                            td { @if let Some(at) = e.at { (time(at, tz)) } }
                            td.small { (text(e.outcome.as_deref().unwrap_or(""), 300)) }
                        }
                    }
                }
            }
        }
    }
}

/// The verdict line `status` prints, and what it names: who holds, until when.
fn verdict(page: &Page, v: &ClusterView, tz: Tz) -> Markup {
    let (plan_line, details) = match &v.decided {
        Err(e) => (
            format!("cannot tell what the next push would do: {}", text(e, 400)),
            html! {},
        ),
        Ok((_, plan)) => {
            let d = match &plan.verdict {
                Verdict::Hold(HoldReason::Frozen { until, other }) => html! {
                    span.small { "frozen until " (time(until.with_timezone(&Utc), tz)) " (" (other) "'s push)" }
                },
                Verdict::Hold(HoldReason::Soaking { until, from, .. }) => html! {
                    span.small { "soaking on " (from) " until " (time(*until, tz)) }
                },
                Verdict::Hold(HoldReason::Approval(h)) => approval_hold(page, v, h),
                Verdict::Hold(HoldReason::Locked { tasks }) => html! {
                    ul.plain.small {
                        @for t in tasks {
                            li { (lock_link(page, v, t))
                                @match &t.assignee { Some(a) => { " — " (text(a, 60)) }, None => " — unassigned" }
                            }
                        }
                    }
                },
                Verdict::Unknown { .. } => {
                    html! { span.small.bad { "the lock state is unknown: pushes fail closed" } }
                }
                _ => html! {},
            };
            (status::verdict_line(plan), d)
        }
    };
    // Said once: an approval that is the hold is the verdict line.
    let held_by_approval = matches!(
        &v.decided,
        Ok((_, plan)) if matches!(plan.verdict, Verdict::Hold(HoldReason::Approval(_)))
    );
    html! {
        p.verdict { (text(&plan_line, 600)) }
        (details)
        @if let Some(j) = v.approval.as_ref().filter(|_| !held_by_approval) {
            div.small { "approval: " (text(&j.to_string(), 300))
                @if let Some(l) = judgement_link(page, v, j) { " " a href=(l) { "approval task" } }
            }
        }
        @if v.backlog.queued > 0 {
            div.small.warn { (v.backlog.queued) " Asana write" @if v.backlog.queued != 1 { "s" } " queued; the next run replays them" }
        }
        @if let Some(r) = &v.backlog.interrupted {
            div.small.warn { "run " (text(r, 80)) " did not finish; the next run recovers it first" }
        }
        @for c in &v.backlog.rolled_back {
            div.small { "rolled back: " span.mono { (text(&c.chars().take(7).collect::<String>(), 12)) } " is not pushed again without --commit" }
        }
    }
}

/// The verdict line already says what the approval is waiting for: the
/// link to its task, built from gids.
fn approval_hold(page: &Page, v: &ClusterView, h: &ApprovalHold) -> Markup {
    html! {
        @if let Some(l) = approval_link(page, v, h) {
            span.small { a href=(l) { "approval task" } }
        }
    }
}

fn approval_link(page: &Page, v: &ClusterView, h: &ApprovalHold) -> Option<String> {
    let project = &v.c.approval.as_ref()?.project;
    let link = match h {
        ApprovalHold::Pending { link }
        | ApprovalHold::Rejected { link, .. }
        | ApprovalHold::ChangesRequested { link, .. }
        | ApprovalHold::Expired { link, .. }
        | ApprovalHold::WrongDigest { link, .. }
        | ApprovalHold::NotAllowed { link, .. }
        | ApprovalHold::SelfApproval { link, .. }
        | ApprovalHold::Superseded { link }
        | ApprovalHold::Deleted { link } => link,
        _ => return None,
    };
    page.links.task_of_link(project, link)
}

fn judgement_link(page: &Page, v: &ClusterView, j: &Judgement) -> Option<String> {
    match j {
        Judgement::Approved { link, .. } => page
            .links
            .task_of_link(&v.c.approval.as_ref()?.project, link),
        Judgement::Held(h) => approval_link(page, v, h),
        Judgement::NothingToApprove => None,
    }
}

fn lock_link(page: &Page, v: &ClusterView, t: &LockTask) -> Markup {
    let name = if t.name.trim().is_empty() {
        "(unnamed task)".to_owned()
    } else {
        text(&t.name, 120)
    };
    html! { a.lock href=(page.links.task(&v.c.lock_project, &t.gid)) { (name) } }
}

fn locks(page: &Page, v: &ClusterView) -> Markup {
    match &v.decided {
        Ok((f, _)) if matches!(f.locks, LockFacts::Unreadable(_)) => {
            html! { span.bad { "unknown" } }
        }
        Err(_) => html! { span.bad { "unknown" } },
        Ok(_) if v.holding.is_empty() && v.waiting.is_empty() => html! { span.good { "none" } },
        Ok(_) => html! {
            ul.plain.locks {
                @for t in &v.holding {
                    li {
                        (lock_link(page, v, t))
                        br;
                        span.small.muted {
                            @match &t.assignee { Some(a) => { "assignee: " (text(a, 60)) }, None => "unassigned" }
                            @match &t.fix {
                                Fix::Valid { commit, shipped: false } => { " · waiting for fix " span.mono { (commit.short()) } }
                                Fix::Invalid { why, .. } => { " · fix value unusable: " (text(why, 120)) }
                                _ => {}
                            }
                            @if let Some(n) = v.notes.get(&t.gid) { " · " (text(n, 80)) }
                        }
                    }
                }
                @for w in &v.waiting {
                    li.small { "waiting for fix " span.mono { (w.fix.short()) } ": " (lock_link(page, v, &w.task)) }
                }
            }
        },
    }
}

fn last_run(page: &Page, v: &ClusterView, tz: Tz) -> Markup {
    let Some(r) = &v.last else {
        return html! { span.muted { "none yet" } };
    };
    let good = r.outcome == RunOutcome::Success;
    let task = r
        .push_task_link
        .as_deref()
        .and_then(|l| page.links.task_of_link(&v.c.push_project, l));
    html! {
        a href=(format!("/run/{}/{}/{}", v.app_name, v.c.name, r.run_id)) {
            (r.kind) " " span.mono { (text(&r.commit.chars().take(7).collect::<String>(), 12)) }
        }
        " "
        span class=(if good { "good" } else { "bad" }) {
            @if good { "ok" } @else {
                (r.outcome.as_str())
                @if let Some(s) = &r.failed_step { " at " (text(s, 40)) }
            }
        }
        br;
        span.small { (time(r.finished, tz)) }
        @if let Some(t) = task { br; a.small href=(t) { "push task" } }
    }
}
