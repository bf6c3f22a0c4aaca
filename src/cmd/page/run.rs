//! `/run/APP/CLUSTER/RUN_ID`: one push or rollback — its stage timeline
//! (gate, record, build, stage, switch with its waves and checks, close:
//! bars on a time axis, from its journal's step times), every host's
//! result and bytes, the changelog, the failed step's output tail, and its
//! Asana writes with whether any are still queued. From the run's kept
//! journal and report (`runs/`), its history line, and while it runs its
//! journal and the live board (the page reloads as its steps go by).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped};
use serde_json::Value;

use super::charts::{self, Bar};
use super::feeds::{live_of, live_words};
use super::html::{self, commit, text, time, took, BodyData};
use super::Page;
use crate::adapters::state::{AsanaWrite, HistoryRecord, JournalEntry, RunReport};
use crate::domain::model::{ProjectGid, RunOutcome, TaskGid};

/// The steps a run's journal names, and what the timeline calls them.
fn top(step: &str) -> Option<&'static str> {
    Some(match step {
        "build" => "build",
        "stage" => "stage",
        "switch" => "switch",
        "revert" => "switch back",
        "rollback" => "roll back",
        "halt" => "halt",
        "close" => "close",
        _ => return None,
    })
}

/// A run's timeline from its journal: the gate from the run's start to
/// its `start` line, the push task's creation to `record`, then each step
/// from its line to the next step's (or the failure, or the end), and
/// within the switch each wave and check. `end` is when the run ended
/// (`None`: it still runs, until `now`).
pub fn bars(
    started: DateTime<Utc>,
    journal: &[JournalEntry],
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    rollback: bool,
) -> Vec<Bar> {
    let secs = |t: DateTime<Utc>| ((t - started).num_milliseconds() as f64 / 1000.0).max(0.0);
    let end = secs(end.unwrap_or(now));
    let entries: Vec<&JournalEntry> = journal.iter().filter(|e| e.step != "recovered").collect();
    let failed_at = entries
        .iter()
        .find(|e| e.step == "failed")
        .map(|e| secs(e.at));
    let mut out = Vec::new();
    let Some(start) = entries.iter().find(|e| e.step == "start") else {
        return out;
    };
    out.push(Bar {
        name: if rollback { "prepare" } else { "gate" }.into(),
        from: 0.0,
        to: secs(start.at),
        failed: false,
        sub: false,
    });
    // What comes after the `start` line, in order: the top steps and the
    // switch's parts.
    let marks: Vec<(f64, &JournalEntry)> = entries
        .iter()
        .filter(|e| e.step != "start")
        .map(|e| (secs(e.at), *e))
        .collect();
    let first_top = marks
        .iter()
        .find(|(_, e)| top(&e.step).is_some() || e.step == "failed")
        .map_or(end, |(t, _)| *t);
    if let Some((t, _)) = marks.iter().find(|(_, e)| e.step == "record") {
        out.push(Bar {
            name: "record".into(),
            from: secs(start.at),
            to: *t,
            failed: false,
            sub: false,
        });
    } else if first_top > secs(start.at) {
        out.push(Bar {
            name: "record".into(),
            from: secs(start.at),
            to: first_top,
            failed: false,
            sub: false,
        });
    }
    let failed_step = entries
        .iter()
        .find(|e| e.step == "failed")
        .and_then(|e| e.detail.get("step").and_then(Value::as_str));
    let tops: Vec<(f64, &str)> = marks
        .iter()
        .filter_map(|(t, e)| top(&e.step).map(|n| (*t, n)))
        .collect();
    for (i, (t, name)) in tops.iter().enumerate() {
        let next = tops.get(i + 1).map(|(n, _)| *n);
        let to = [next, failed_at.filter(|f| *f >= *t), Some(end)]
            .into_iter()
            .flatten()
            .fold(f64::MAX, f64::min);
        let last = i + 1 == tops.len();
        out.push(Bar {
            name: (*name).to_owned(),
            from: *t,
            to,
            failed: last
                && failed_at.is_some()
                && failed_step.is_some_and(|s| top(s) == Some(*name) || s == *name),
            sub: false,
        });
        if *name == "switch" {
            let upto = to;
            let parts: Vec<(f64, String)> = marks
                .iter()
                .filter(|(m, _)| *m >= *t && *m <= upto)
                .filter_map(|(m, e)| {
                    let d = &e.detail;
                    let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
                    Some((
                        *m,
                        match e.step.as_str() {
                            "wave" => format!("wave {} of {}", n("wave"), n("of")),
                            "health" => "health check".to_owned(),
                            "wave_check" => format!("wave check {}", n("wave")),
                            _ => return None,
                        },
                    ))
                })
                .collect();
            for (k, (m, part)) in parts.iter().enumerate() {
                let to = parts.get(k + 1).map_or(upto, |(n, _)| *n);
                out.push(Bar {
                    name: part.clone(),
                    from: *m,
                    to,
                    failed: false,
                    sub: true,
                });
            }
        }
    }
    // A run that failed before any step (the record) shows where.
    if let (Some(f), true) = (failed_at, tops.is_empty()) {
        if let Some(b) = out.last_mut() {
            b.failed = true;
            b.to = f;
        }
    }
    out
}

pub async fn show(
    State(page): State<Arc<Page>>,
    Path((app, cluster, run)): Path<(String, String, String)>,
) -> Response {
    html::blocking(move || render(&page, &app, &cluster, &run)).await
}

fn render(page: &Page, app: &str, cluster: &str, run: &str) -> Response {
    let run = run.to_owned();
    let Some((env, c)) = page.cluster(app, cluster) else {
        return html::not_found("There is no such app or cluster.");
    };
    if !crate::adapters::state::is_run_id(&run) {
        return html::not_found("That is not a run id.");
    }
    let state = env.state.cluster(&c.name);
    let journal = state.run_journal(&run).unwrap_or_default();
    let report = state.run_report(&run).ok().flatten();
    let history = state.history().unwrap_or_default();
    let last = history.last().is_some_and(|r| r.run_id == run);
    let record: Option<HistoryRecord> = history.into_iter().rev().find(|r| r.run_id == run);
    if journal.is_empty() && report.is_none() && record.is_none() {
        return html::not_found("No run of this cluster has that id (runs/ keeps the newest 500).");
    }
    let now = Utc::now();
    let tz = c.timezone;
    let live = live_of(page, env, c);
    // Running: its journal is the cluster's current one; or it has just
    // ended (its history line is the last, its journal kept) and its report
    // is not written yet while the cluster's lock is still held — the page
    // looks again until the report is there.
    let running = live.run_id.as_deref() == Some(run.as_str())
        || (last && report.is_none() && live.running.is_some() && live.run_id.is_none());
    let start = journal.iter().find(|e| e.step == "start");
    let s = |k: &str| start.and_then(|e| e.detail.get(k)).and_then(Value::as_str);
    let rollback = s("kind") == Some("rollback")
        || record
            .as_ref()
            .is_some_and(|r| r.kind == crate::domain::model::RunKind::Rollback);
    let started = record
        .as_ref()
        .map(|r| r.started)
        .or_else(|| {
            s("release")
                .and_then(crate::domain::model::ReleaseId::parse)
                .and_then(|r| release_time(r.as_str()))
        })
        .or_else(|| journal.first().map(|e| e.at))
        .unwrap_or(now);
    let end = match (&report, &record) {
        (Some(r), _) => Some(started + chrono::Duration::milliseconds(r.duration_ms as i64)),
        (None, Some(h)) => Some(h.finished),
        (None, None) => None,
    };
    let bars = bars(started, &journal, end, now, rollback);
    let commit_sha = report
        .as_ref()
        .map(|r| r.commit.clone())
        .or_else(|| record.as_ref().map(|r| r.commit.clone()))
        .or_else(|| s("to").map(str::to_owned))
        .unwrap_or_default();
    let kind = if rollback { "rollback" } else { "push" };
    let label = env.config.label(&c.name);
    let web = env.config.web.as_ref();
    let step = journal
        .iter()
        .rev()
        .find(|e| e.step != "recovered")
        .map(|e| e.step.clone());
    let failed = journal.iter().find(|e| e.step == "failed");
    let task = task_link(
        page,
        &c.push_project,
        report.as_ref(),
        record.as_ref(),
        &journal,
    );
    let current = crate::watch::runs::asana_writes(&state, &run);
    let writes = merged_writes(report.as_ref().map(|r| r.asana_writes.as_slice()), &current);
    // The history's word, as `history` says it; then the report's.
    let outcome = match (&record, &report) {
        (Some(h), _) => h.outcome.as_str().to_owned(),
        (None, Some(r)) => r.outcome.clone(),
        (None, None) if running => "running".to_owned(),
        (None, None) => "did not finish".to_owned(),
    };
    let good = matches!(outcome.as_str(), "pushed" | "success");
    let body = html! {
        p.small { a href="/" { "← all clusters" } " · " a href=(format!("/cluster/{}/{}", env.config.app, c.name)) { (label) " history" } }
        h1 { (label) " " (kind) " " (commit(web, &commit_sha)) }
        table.facts {
            tr { th { "Run" } td.mono { (text(&run, 128)) } }
            tr { th { "Outcome" } td {
                span #outcome class=(format!("state {}", if running { "busy" } else if good { "good" } else { "bad" })) { (text(&outcome, 40)) }
                @if let Some(r) = &record { @if r.outcome != RunOutcome::Success { @if let (Some(s), Some(e)) = (&r.failed_step, &r.error) { " at " (text(s, 40)) ": " (text(e, 500)) } } }
            } }
            @if running {
                tr data-live=(format!("{}/{}", env.config.app, c.name)) data-running="1" { th { "Now" } td {
                    span.live-state.state.busy { "pushing" } " "
                    progress.live-bar max=(live.hosts.max(1)) value=(live.staged) hidden[live.hosts == 0] {}
                    div.live-progress { (live_words(&live)) }
                } }
            }
            tr { th { "Started" } td { (time(started, tz)) } }
            @if let Some(e) = end { tr { th { "Took" } td { (took((e - started).to_std().unwrap_or_default())) } } }
            @if let Some(r) = s("release").or(report.as_ref().and_then(|r| r.release.as_deref())) { tr { th { "Release" } td.mono { (text(r, 60)) } } }
            @if let Some(p) = report.as_ref().and_then(|r| r.previous.as_deref()).or(s("from")) { tr { th { "Previous commit" } td { (commit(web, p)) } } }
            @if let Some(r) = &report { @if !r.by.is_empty() { tr { th { "By" } td { (text(&r.by, 80)) } } } }
            tr { th { "Push task" } td { @match &task {
                Some(l) => a #push-task href=(l) { "open in Asana" },
                None if journal.iter().any(|e| e.step == "record" && e.detail.get("queued").is_some()) => span.warn { "queued: Asana was not answering; created when it is back" },
                None => span.muted { "none" },
            } } }
            @if let Some(r) = &report {
                @if let Some(ig) = &r.ignored {
                    tr { th { "Ignored" } td.warn { "because: " (text(&ig.reason, 300)) ul.plain { @for w in &ig.what { li { (text(w, 300)) } } } } }
                }
                @if let Some(st) = &r.stopped { tr { th { "Stopped by a check" } td.bad { (text(st, 500)) } } }
                @if let Some(l) = r.lock_task.as_deref().and_then(|l| page.links.task_of_link(&c.lock_project, l)) {
                    tr { th { "Lock task" } td { a href=(l) { "the lock task holding " (c.name) } } }
                }
            }
        }
        h2 { "Timeline" }
        @match charts::timeline(&bars) {
            Some(svg) => figure.chart data-chart="timeline" { figcaption { "Steps on a time axis" } (PreEscaped(svg)) },
            None => p.muted { "This run's journal was not kept (it ran before runs were recorded, or was pruned)." },
        }
        @if !bars.is_empty() {
            table #steps {
                thead { tr { th { "Step" } th { "From (s)" } th { "To (s)" } th { "Took" } } }
                tbody { @for b in &bars {
                    tr class=(if b.failed { "bad" } else { "" }) data-step=(b.name) {
                        td { @if b.sub { "↳ " } (b.name) @if b.failed { " (failed)" } }
                        td { (format!("{:.1}", b.from)) } td { (format!("{:.1}", b.to)) }
                        td { (took(std::time::Duration::from_secs_f64((b.to - b.from).max(0.0)))) }
                    }
                } }
            }
        }
        h2 { "Hosts" }
        @match &report {
            Some(r) if !r.hosts.is_empty() => table #hosts {
                thead { tr { th { "Host" } th { "Result" } th { "Sent" } } }
                tbody { @for h in &r.hosts {
                    tr { td.mono { (text(&h.host, 200)) } td { (text(&h.result, 400)) }
                        td { @match h.bytes_sent { Some(b) => (crate::domain::text::bytes(b)), None => span.muted { "-" } } } }
                } }
            },
            _ if running => p { "Staging: " (live_words(&live)) },
            _ => p.muted { "No host results were kept for this run." },
        }
        @if let Some(f) = failed {
            h2 { "Output" }
            @if let Some(e) = f.detail.get("error").and_then(Value::as_str) { p.bad { (text(e, 2000)) } }
            @match f.detail.get("tail").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(t) => pre #tail { (tail(t)) },
                None => p.muted { "No output was kept." },
            }
        }
        h2 { "Changelog" }
        (changelog(report.as_ref(), start, web))
        h2 { "Asana writes" }
        @if writes.is_empty() {
            p.muted { "None recorded." }
        } @else {
            @let queued = writes.iter().filter(|w| w.state == "queued").count();
            @if queued > 0 { p.warn { (queued) " still queued in the outbox: the cluster's next run sends them." } }
            @else { p.good { "None queued." } }
            table #writes {
                thead { tr { th { "#" } th { "Write" } th { "State" } } }
                tbody { @for w in &writes {
                    tr data-state=(w.state) {
                        td { (w.seq) }
                        td { (text(&w.what, 100)) @if let Some(t) = &w.text { pre.small { (tail(t)) } } }
                        td class=(if w.state == "queued" { "warn" } else if w.state.starts_with("dropped") { "bad" } else { "good" }) { (text(&w.state, 200)) }
                    }
                } }
            }
        }
    };
    html::page(
        StatusCode::OK,
        &format!(
            "{label} {kind} {}",
            commit_sha.chars().take(7).collect::<String>()
        ),
        BodyData {
            run: Some(run.clone()),
            running,
            step,
        },
        body,
    )
}

/// The time in a release id (`YYYYMMDDTHHMMSSZ-…`).
fn release_time(r: &str) -> Option<DateTime<Utc>> {
    let stamp = r.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Untrusted output, line by line, printable.
fn tail(t: &str) -> String {
    t.lines()
        .map(|l| text(l, 400))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The push task, from its gid: the report's, the journal's `record`, or
/// read from the history's link.
fn task_link(
    page: &Page,
    project: &ProjectGid,
    report: Option<&RunReport>,
    record: Option<&HistoryRecord>,
    journal: &[JournalEntry],
) -> Option<String> {
    let gid = report
        .and_then(|r| r.push_task.as_deref())
        .and_then(TaskGid::parse)
        .or_else(|| {
            journal
                .iter()
                .find(|e| e.step == "record")
                .and_then(|e| e.detail.get("task")?.as_str().and_then(TaskGid::parse))
        })
        .or_else(|| {
            report
                .and_then(|r| r.push_task_link.as_deref())
                .or(record.and_then(|r| r.push_task_link.as_deref()))
                .and_then(super::gid_of_link)
        })?;
    Some(page.links.task(project, &gid))
}

/// The report's writes with what became of them since: a write the
/// outbox still has shows its state now; one it no longer has was done
/// (the outbox forgets only when nothing waits).
fn merged_writes(kept: Option<&[AsanaWrite]>, now: &[AsanaWrite]) -> Vec<AsanaWrite> {
    let Some(kept) = kept else {
        return now.to_vec();
    };
    let mut out: Vec<AsanaWrite> = kept
        .iter()
        .map(|w| match now.iter().find(|n| n.seq == w.seq) {
            Some(n) => n.clone(),
            None if w.state == "queued" => AsanaWrite {
                state: "applied later".into(),
                ..w.clone()
            },
            None => w.clone(),
        })
        .collect();
    for n in now {
        if !out.iter().any(|w| w.seq == n.seq) {
            out.push(n.clone());
        }
    }
    out
}

fn changelog(
    report: Option<&RunReport>,
    start: Option<&JournalEntry>,
    web: Option<&crate::config::WebLinks>,
) -> Markup {
    if let Some(r) = report.filter(|r| !r.changelog.is_empty()) {
        return html! {
            ul #changelog {
                @for e in &r.changelog {
                    li { (commit(web, &e.commit)) " " (text(&e.subject, 200)) " " span.muted { "(" (text(&e.author, 60)) ")" } }
                }
                @if r.changelog_more > 0 { li.muted { "and " (r.changelog_more) " more" } }
            }
        };
    }
    // A run without a report (still running, or killed): the push task's
    // notes, as the journal has them.
    match start
        .and_then(|e| e.detail.get("task")?.get("notes")?.as_str())
        .filter(|n| !n.is_empty())
    {
        Some(notes) => {
            html! { p.small.muted { "From the push task's notes:" } pre #changelog { (tail(notes)) } }
        }
        None => html! { p.muted { "No changelog was kept (a rollback has none)." } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: f64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:15:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::milliseconds((s * 1000.0) as i64)
    }

    fn e(s: f64, step: &str, detail: Value) -> JournalEntry {
        JournalEntry {
            at: at(s),
            run_id: "beta-1".into(),
            step: step.into(),
            detail,
        }
    }

    fn shown(b: &[Bar]) -> Vec<String> {
        b.iter()
            .map(|b| {
                format!(
                    "{}{} {:.1}-{:.1}{}",
                    if b.sub { "  " } else { "" },
                    b.name,
                    b.from,
                    b.to,
                    if b.failed { " FAILED" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn a_push_in_waves_is_gate_record_build_stage_switch_with_its_waves_and_close() {
        let j = [
            e(0.5, "start", json!({})),
            e(0.9, "record", json!({"task": "1"})),
            e(1.0, "build", json!({})),
            e(4.0, "stage", json!({})),
            e(6.0, "switch", json!({})),
            e(6.1, "wave", json!({"wave": 1, "of": 2})),
            e(6.5, "health", json!({})),
            e(7.0, "wave", json!({"wave": 2, "of": 2})),
            e(8.0, "close", json!({})),
        ];
        let b = bars(at(0.0), &j, Some(at(8.5)), at(100.0), false);
        assert_eq!(
            shown(&b),
            [
                "gate 0.0-0.5",
                "record 0.5-0.9",
                "build 1.0-4.0",
                "stage 4.0-6.0",
                "switch 6.0-8.0",
                "  wave 1 of 2 6.1-6.5",
                "  health check 6.5-7.0",
                "  wave 2 of 2 7.0-8.0",
                "close 8.0-8.5"
            ]
        );
    }

    #[test]
    fn a_failed_build_ends_its_bar_at_the_failure_and_is_marked() {
        let j = [
            e(0.2, "start", json!({})),
            e(0.3, "record", json!({})),
            e(0.3, "build", json!({})),
            e(2.0, "failed", json!({"step": "build", "tail": "boom"})),
        ];
        let b = bars(at(0.0), &j, Some(at(2.5)), at(100.0), false);
        assert_eq!(
            shown(&b),
            ["gate 0.0-0.2", "record 0.2-0.3", "build 0.3-2.0 FAILED"]
        );
        // Still running: up to now.
        let b = bars(at(0.0), &j[..3], None, at(5.0), false);
        assert_eq!(shown(&b).last().unwrap(), "build 0.3-5.0");
    }

    #[test]
    fn writes_no_longer_in_the_outbox_were_done_and_new_ones_are_added() {
        let w = |seq, state: &str| AsanaWrite {
            seq,
            what: "comment".into(),
            text: None,
            state: state.into(),
        };
        let m = merged_writes(
            Some(&[w(1, "applied"), w(2, "queued"), w(3, "queued")]),
            &[w(3, "applied"), w(4, "queued")],
        );
        let states: Vec<(u64, &str)> = m.iter().map(|w| (w.seq, w.state.as_str())).collect();
        assert_eq!(
            states,
            [
                (1, "applied"),
                (2, "applied later"),
                (3, "applied"),
                (4, "queued")
            ]
        );
    }
}
