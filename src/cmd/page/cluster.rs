//! `/cluster/APP/CLUSTER`: one cluster's history, as `history` reads it —
//! its state (the overview's), the statistics `history` prints, charts
//! (success rate per day, duration per push with the median, held runs
//! by reason) and the runs, newest first, each with its outcome, commit,
//! duration, push task and what a person told it to ignore. Filters:
//! `?since=` (`24h`, `7d`, a date: as `history --since`) and `?outcome=`
//! (`success`, `failed`, `rolled-back`: the table and the duration chart).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup, PreEscaped};

use super::charts;
use super::html::{self, commit, text, time, tone, took, BodyData};
use super::Page;
use crate::cmd::history;
use crate::cmd::status::{self, ClusterView};
use crate::domain::model::{RunKind, RunOutcome};

/// The table shows at most this many runs (the newest).
const ROWS: usize = 200;

const WINDOWS: &[(&str, &str)] = &[
    ("24h", "the last 24 hours"),
    ("7d", "the last 7 days"),
    ("30d", "the last 30 days"),
    ("90d", "the last 90 days"),
    ("", "all the history"),
];

pub async fn show(
    State(page): State<Arc<Page>>,
    Path((app, cluster)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if page.cluster(&app, &cluster).is_none() {
        return html::not_found("There is no such app or cluster.");
    }
    let (views, _) = page.views().await;
    html::blocking(move || render(&page, &app, &cluster, &q, &views)).await
}

fn render(
    page: &Page,
    app: &str,
    cluster: &str,
    q: &BTreeMap<String, String>,
    views: &[ClusterView],
) -> Response {
    let Some((env, c)) = page.cluster(app, cluster) else {
        return html::not_found("There is no such app or cluster.");
    };
    let now = Utc::now();
    let since_word = q.get("since").map_or("7d", String::as_str);
    let since = match since_word {
        "" => None,
        s => match history::parse_since(s, now) {
            Ok(t) => Some(t),
            Err(e) => return bad(&e.0),
        },
    };
    let outcome = match q.get("outcome").map(String::as_str) {
        None | Some("") => None,
        Some(o) => match RunOutcome::parse(o) {
            Some(o) => Some(o),
            None => return bad("outcome: success, failed or rolled-back"),
        },
    };
    let (runs, holds) = match history::read(&env.config, c.name.as_str(), since) {
        Ok(r) => r,
        Err(e) => return bad(&format!("{e:#}")),
    };
    let st = history::stats(&runs, &holds, since, now);
    let tz = c.timezone;
    let label = env.config.label(&c.name);
    let view = views
        .iter()
        .find(|v| v.app_name == env.config.app && v.c.name == c.name);
    let pushes: Vec<_> = runs.iter().filter(|r| r.kind == RunKind::Push).collect();
    let from = since.or(st.from).unwrap_or(now);
    let days = charts::days(
        &pushes
            .iter()
            .map(|r| (r.started, r.outcome == RunOutcome::Success))
            .collect::<Vec<_>>(),
        from,
        now,
        tz,
    );
    let points: Vec<charts::Point> = pushes
        .iter()
        .filter(|r| outcome.is_none_or(|o| r.outcome == o))
        .map(|r| charts::Point {
            started: r.started,
            secs: history::duration(r).as_secs_f64(),
            ok: r.outcome == RunOutcome::Success,
        })
        .collect();
    let by_reason: Vec<(String, usize)> = st.holds.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let shown: Vec<_> = runs
        .iter()
        .rev()
        .filter(|r| outcome.is_none_or(|o| r.outcome == o))
        .take(ROWS)
        .collect();
    let state = env.state.cluster(&c.name);
    let web = env.config.web.as_ref();
    let chart = |name: &str, caption: &str, svg: Option<String>, empty: &str| -> Markup {
        html! {
            figure.chart data-chart=(name) {
                figcaption { (caption) }
                @match svg {
                    Some(s) => (PreEscaped(s)),
                    None => p.muted { (empty) },
                }
            }
        }
    };
    let body = html! {
        p.small { a href="/" { "← all clusters" } }
        h1 { (label) " — history" }
        @if let Some(v) = view {
            @let (word, t) = status::state_word(v);
            p {
                "State: " span class=(format!("state {}", tone(t))) { (word) }
                @if let Ok((_, plan)) = &v.decided { " — next push: " (text(&status::verdict_line(plan), 400)) }
            }
        }
        form.filters method="get" action=(format!("/cluster/{}/{}", env.config.app, c.name)) {
            label { "Since"
                select name="since" {
                    @for (value, words) in WINDOWS {
                        option value=(value) selected[*value == since_word] { (words) }
                    }
                }
            }
            label { "Outcome"
                select name="outcome" {
                    option value="" selected[outcome.is_none()] { "every outcome" }
                    @for o in RunOutcome::ALL {
                        option value=(o.as_str()) selected[outcome == Some(o)] { (o.as_str()) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        pre.stats { (history::summary_text(&st)) }
        div.charts {
            (chart("success", "Success rate per day", charts::success_per_day(&days, tz), "No pushes in this window."))
            (chart("duration", "Duration per push", charts::durations(&points, st.median.map(|d| d.as_secs_f64()), tz), "No pushes in this window."))
            (chart("holds", "Held runs by reason", charts::holds(&by_reason), "No run was held in this window."))
        }
        h2 { "Runs" }
        @if shown.is_empty() {
            p.muted { "No runs in this window." }
        } @else {
            table #runs {
                thead { tr {
                    th { "Started" } th { "Kind" } th { "Outcome" } th { "Commit" } th { "Duration" }
                    th { "Push task" } th { "By, and what was ignored" } th { "Error" }
                } }
                tbody {
                    @for r in &shown {
                        @let report = state.run_report(&r.run_id).ok().flatten();
                        @let good = r.outcome == RunOutcome::Success;
                        tr data-outcome=(r.outcome.as_str()) {
                            td { a href=(format!("/run/{}/{}/{}", env.config.app, c.name, r.run_id)) { (time(r.started, tz)) } }
                            td { (r.kind) }
                            td { span class=(if good { "good" } else { "bad" }) { (r.outcome.as_str()) } }
                            td { (commit(web, &r.commit)) }
                            td { (took(history::duration(r))) }
                            td {
                                @let gid = report.as_ref().and_then(|x| x.push_task.as_deref()).and_then(crate::domain::model::TaskGid::parse)
                                    .or_else(|| r.push_task_link.as_deref().and_then(super::gid_of_link));
                                @match gid {
                                    Some(g) => a href=(page.links.task(&c.push_project, &g)) { "task" },
                                    None => span.muted { "-" },
                                }
                            }
                            td.small {
                                @if let Some(x) = &report {
                                    @if !x.by.is_empty() { (text(&x.by, 80)) }
                                    @if let Some(ig) = &x.ignored {
                                        div.warn { "ignored, because: " (text(&ig.reason, 200)) }
                                        ul.plain { @for w in &ig.what { li { (text(w, 200)) } } }
                                    }
                                }
                            }
                            td.small {
                                @if let (Some(s), Some(e)) = (&r.failed_step, &r.error) {
                                    "at " (text(s, 40)) ": " (text(e, 300))
                                }
                            }
                        }
                    }
                }
            }
            @if shown.len() == ROWS { p.muted.small { "The newest " (ROWS) " runs; narrow the window to see others." } }
        }
    };
    html::page(
        StatusCode::OK,
        &format!("{label} history"),
        BodyData::default(),
        body,
    )
}

fn bad(why: &str) -> Response {
    html::page(
        StatusCode::BAD_REQUEST,
        "bad request",
        BodyData::default(),
        html! { h1 { "Bad request" } p { (text(why, 400)) } },
    )
}
