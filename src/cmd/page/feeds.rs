//! The page's feeds: `/api/status.json` and `/api/history.json` (exactly
//! what `status --json` and `history CLUSTER --json` print), the live view
//! the script polls (`/api/live.json`), a CCTray feed (`/cc.xml`) and an
//! SVG badge per app and cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Page;
use crate::cmd::status::{self, ClusterView};
use crate::cmd::Env;
use crate::config::ClusterSettings;
use crate::domain::model::RunOutcome;
use crate::domain::text::xml_escape;

type Params = Query<BTreeMap<String, String>>;

fn with_type(body: String, ty: &'static str, status: StatusCode) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    super::html::secure_with(&mut resp, super::html::FEED_CSP);
    resp
}

fn json_answer(v: &Value, status: StatusCode) -> Response {
    with_type(
        serde_json::to_string_pretty(v).unwrap_or_default(),
        "application/json",
        status,
    )
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json_answer(&json!({ "error": message }), status)
}

/// `status [CLUSTER] [--app NAME] --json`.
pub async fn status(State(page): State<Arc<Page>>, Query(q): Params) -> Response {
    let (views, _) = page.views().await;
    let app = q.get("app").map(String::as_str);
    let only = q.get("cluster").map(String::as_str);
    let apps: Vec<&Env> = match app {
        Some(a) => match page.apps.iter().find(|e| e.config.app.as_str() == a) {
            Some(e) => vec![e],
            None => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    &format!("unknown app `{}`", super::html::text(a, 40)),
                )
            }
        },
        None => page.apps.iter().collect(),
    };
    let wanted = match status::wanted(&apps, only) {
        Ok(w) => w,
        Err(e) => return json_error(StatusCode::NOT_FOUND, &e.0),
    };
    let shown: Vec<ClusterView> = wanted
        .iter()
        .filter_map(|(env, c)| {
            views
                .iter()
                .find(|v| v.app_name == env.config.app && v.c.name == c.name)
                .cloned()
        })
        .collect();
    json_answer(&status::json(&shown), StatusCode::OK)
}

/// `history CLUSTER [--app NAME] [--limit N] [--since WHEN] --json`.
pub async fn history(State(page): State<Arc<Page>>, Query(q): Params) -> Response {
    let Some(cluster) = q.get("cluster") else {
        let names: Vec<String> = page
            .clusters()
            .iter()
            .map(|(e, c)| e.config.label(&c.name))
            .collect();
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "say which cluster: ?cluster=NAME (as `pushgate history CLUSTER`); configured: {}",
                names.join(", ")
            ),
        );
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) => n,
        Some(Err(_)) => return json_error(StatusCode::BAD_REQUEST, "limit: not a number"),
    };
    let file = page.file.clone();
    let (app, since) = (q.get("app").cloned(), q.get("since").cloned());
    let cluster = cluster.clone();
    let made = tokio::task::spawn_blocking(move || {
        crate::cmd::history::json(
            &file,
            app.as_deref(),
            &cluster,
            limit,
            since.as_deref(),
            Utc::now(),
        )
        .map_err(|e| format!("{e:#}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match made {
        Ok(v) => json_answer(&v, StatusCode::OK),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// Where one cluster's running push stands: the journal (any process's
/// push) and, for this daemon's own pushes, the live board.
#[derive(Clone, Debug, Default)]
pub struct LiveView {
    /// Who holds the cluster's lock, while a push runs.
    pub running: Option<String>,
    pub run_id: Option<String>,
    pub kind: Option<String>,
    pub commit: Option<String>,
    pub release: Option<String>,
    pub started: Option<DateTime<Utc>>,
    /// The journal's last step.
    pub step: Option<String>,
    pub hosts: usize,
    pub staged: usize,
    pub failed: usize,
    pub bytes: u64,
    pub wave: usize,
    pub of: usize,
}

/// The live view of `c` now.
pub fn live_of(page: &Page, env: &Env, c: &ClusterSettings) -> LiveView {
    let state = env.state.cluster(&c.name);
    let Some(holder) = state.running() else {
        return LiveView::default();
    };
    let journal = state.unfinished().unwrap_or_default();
    let start = journal.iter().find(|e| e.step == "start");
    let s = |k: &str| {
        start
            .and_then(|e| e.detail.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut v = LiveView {
        running: Some(holder),
        run_id: journal.first().map(|e| e.run_id.clone()),
        kind: s("kind"),
        commit: s("to"),
        release: s("release"),
        started: journal.first().map(|e| e.at),
        step: journal
            .iter()
            .rev()
            .find(|e| e.step != "recovered")
            .map(|e| e.step.clone()),
        ..LiveView::default()
    };
    if let Some(w) = crate::run::execute::wave_progress(&state) {
        v.wave = w.wave;
        v.of = w.of;
    }
    if let Some(l) = page.board.get(&env.config.app, &c.name) {
        v.hosts = l.hosts;
        v.staged = l.staged;
        v.failed = l.failed;
        v.bytes = l.bytes;
        if l.of > 0 {
            v.wave = l.wave;
            v.of = l.of;
        }
    }
    v
}

/// The live view's words: `stage: 2 of 3 hosts staged, 1.2 KiB sent`.
pub fn live_words(v: &LiveView) -> String {
    if v.running.is_none() {
        return String::new();
    }
    let mut s = v.step.clone().unwrap_or_else(|| "starting".into());
    if v.hosts > 0 {
        s.push_str(&format!(
            ": {} of {} hosts staged, {} sent",
            v.staged,
            v.hosts,
            crate::domain::text::bytes(v.bytes)
        ));
        if v.failed > 0 {
            s.push_str(&format!(", {} failed", v.failed));
        }
    }
    if v.of > 0 {
        s.push_str(&format!("; wave {} of {}", v.wave, v.of));
    }
    s
}

/// `/api/live.json`: every cluster, running or not, with its last run.
pub async fn live(State(page): State<Arc<Page>>) -> Response {
    let p = page.clone();
    let v = tokio::task::spawn_blocking(move || {
        let clusters: Vec<Value> = p
            .clusters()
            .iter()
            .map(|(env, c)| {
                let l = live_of(&p, env, c);
                let last = last_run(env, c);
                json!({
                    "app": env.config.app.as_str(),
                    "cluster": c.name.as_str(),
                    "running": l.running.is_some(),
                    "holder": l.running,
                    "run_id": l.run_id,
                    "kind": l.kind,
                    "commit": l.commit,
                    "release": l.release,
                    "started": l.started,
                    "step": l.step,
                    "hosts": l.hosts,
                    "staged": l.staged,
                    "failed": l.failed,
                    "bytes": l.bytes,
                    "wave": l.wave,
                    "of": l.of,
                    "words": live_words(&l),
                    "last": last.map(|r| json!({
                        "run_id": r.run_id,
                        "kind": r.kind.as_str(),
                        "outcome": r.outcome.as_str(),
                        "commit": r.commit,
                        "finished": r.finished,
                    })),
                })
            })
            .collect();
        json!({ "clusters": clusters })
    })
    .await
    .unwrap_or(Value::Null);
    json_answer(&v, StatusCode::OK)
}

/// The cluster's last finished run, read from the end of its history
/// (the live view asks every second: not the whole file).
pub fn last_run(env: &Env, c: &ClusterSettings) -> Option<crate::adapters::state::HistoryRecord> {
    use std::io::{Read, Seek, SeekFrom};
    let path = env.state.cluster(&c.name).history_path();
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    tail.split(|b| *b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice(l).ok())
}

/// The page's address as the request named it, for absolute links in
/// feeds (a Host that is not a plain host name is not used).
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// `/cc.xml`: one CCTray project per app and cluster — `Building` while a
/// push runs, the last run's outcome, its commit, when it ended, the
/// next scheduled push and the cluster's page.
pub async fn cctray(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    let base = origin(&headers);
    let p = page.clone();
    let body = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Projects>\n");
        for (env, c) in p.clusters() {
            let running = env.state.cluster(&c.name).running().is_some();
            let last = last_run(env, c);
            let status = match last.as_ref().map(|r| r.outcome) {
                Some(RunOutcome::Success) => "Success",
                Some(_) => "Failure",
                None => "Unknown",
            };
            let mut attrs = vec![
                ("name", env.config.label(&c.name)),
                (
                    "activity",
                    if running { "Building" } else { "Sleeping" }.to_owned(),
                ),
                ("lastBuildStatus", status.to_owned()),
                (
                    "webUrl",
                    format!("{base}/cluster/{}/{}", env.config.app, c.name),
                ),
            ];
            if let Some(r) = &last {
                attrs.push(("lastBuildLabel", r.commit.chars().take(12).collect()));
                attrs.push((
                    "lastBuildTime",
                    r.finished.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                ));
            }
            if let Some(n) = crate::domain::decide::next_fire(&c.schedule.cron, c.timezone, now) {
                attrs.push(("nextBuildTime", n.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
            }
            out.push_str("  <Project");
            for (k, v) in attrs {
                out.push_str(&format!(
                    " {k}=\"{}\"",
                    xml_escape(&crate::domain::text::printable(&v, 200))
                ));
            }
            out.push_str("/>\n");
        }
        out.push_str("</Projects>\n");
        out
    })
    .await
    .unwrap_or_default();
    with_type(body, "application/xml; charset=utf-8", StatusCode::OK)
}

/// `/badge/APP/CLUSTER.svg`: the cluster's name and its state word (what
/// `status` says), coloured by its tone.
pub async fn badge(
    State(page): State<Arc<Page>>,
    Path((app, file)): Path<(String, String)>,
) -> Response {
    let Some(cluster) = file.strip_suffix(".svg") else {
        return super::html::not_found("A badge is CLUSTER.svg.");
    };
    let Some((env, c)) = page.cluster(&app, cluster) else {
        return super::html::not_found("There is no such app or cluster.");
    };
    let (label, name) = (env.config.label(&c.name), c.name.clone());
    let app = env.config.app.clone();
    let (views, _) = page.views().await;
    let (word, tone) = views
        .iter()
        .find(|v| v.app_name == app && v.c.name == name)
        .map_or(("unknown", 2), status::state_word);
    with_type(
        badge_svg(&label, word, tone),
        "image/svg+xml",
        StatusCode::OK,
    )
}

/// A flat badge: `label | word`.
pub fn badge_svg(label: &str, word: &str, tone: u8) -> String {
    let colour = match tone {
        0 => "#1a7f37",
        1 => "#9a6700",
        3 => "#0969da",
        _ => "#cf222e",
    };
    let w = |s: &str| 12 + 7 * s.chars().count();
    let (lw, rw) = (w(label), w(word));
    let (label, word) = (xml_escape(label), xml_escape(word));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{t}\" height=\"20\" role=\"img\" aria-label=\"{label}: {word}\">\
<title>{label}: {word}</title>\
<rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{rw}\" height=\"20\" fill=\"{colour}\"/>\
<g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{rx}\" y=\"14\">{word}</text></g></svg>\n",
        t = lw + rw,
        lx = lw / 2,
        rx = lw + rw / 2,
    )
}
