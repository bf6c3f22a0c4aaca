//! What a browser sees at the links the sandbox hands out: every
//! `permalink_url` (`/0/{project}/{task}`, `/0/{project}/list`) answers a
//! read-only HTML page, as Asana's links open Asana. A task's page shows its
//! name, status (and approval status), who completed it, assignee,
//! projects, parent, subtasks, notes, custom fields, and its comments and
//! system stories in order; a project's page lists its tasks with links;
//! `/` lists the projects.
//!
//! Pages need no token: they are on the sandbox's own loopback origin, and
//! the API under `/api/1.0` still requires one. Every string from the data
//! is untrusted and goes through maud, which escapes it; the rich-text
//! variants (`html_notes`, `html_text`) are never rendered, only their plain
//! text. The Content-Security-Policy allows no script, no request, no frame:
//! only the page's own inline style. Nothing here writes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use crate::store::{ts, Data, ProjectRec, TaskRec};
use crate::Shared;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#1e1f21}\
    .pre{white-space:pre-wrap}.muted{color:#6d6e6f}table{border-collapse:collapse}\
    td,th{padding:.2rem .6rem;text-align:left;vertical-align:top;border-bottom:1px solid #e8e8e8}\
    .story{margin:.6rem 0;padding:.4rem .6rem;border-left:3px solid #e8e8e8}\
    .comment{border-color:#4573d2}.banner{background:#fff4d6;padding:.4rem .6rem}";

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/0/{project}/{task}", get(permalink))
}

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                title { (title) " · pushgate sandbox" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                p.banner { "pushgate sandbox: a read-only view of an Asana-compatible test server. " a href="/" { "All projects" } }
                (body)
            }
        }
    };
    let mut resp = (status, doc.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn not_found(what: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        html! { h1 { "Not found" } p { "There is no " (what) " here." } },
    )
}

fn task_href(t: &TaskRec) -> String {
    let home = t.projects.first().map(String::as_str).unwrap_or("0");
    format!("/0/{home}/{}", t.gid)
}

fn status_of(d: &Data, t: &TaskRec) -> String {
    let meta = d.meta(&t.gid);
    match &meta.approval_status {
        Some(status) => format!("approval: {}", status.replace('_', " ")),
        None if t.completed => "completed".into(),
        None => "incomplete".into(),
    }
}

async fn index(State(s): State<Arc<Shared>>) -> Response {
    let d = s.data();
    page(
        StatusCode::OK,
        "Projects",
        html! {
            h1 { "Projects" }
            ul {
                @for p in d.projects.values() {
                    li { a href={ "/0/" (p.gid) "/list" } { (p.name) } " " span.muted { "(" (p.tasks.len()) " tasks)" } }
                }
            }
        },
    )
}

async fn permalink(
    State(s): State<Arc<Shared>>,
    Path((project, task)): Path<(String, String)>,
) -> Response {
    let d = s.data();
    if task == "list" {
        return match d.projects.get(&project) {
            Some(p) => project_page(&d, p),
            None => not_found("project"),
        };
    }
    match d.tasks.get(&task) {
        Some(t) => task_page(&d, t),
        None => not_found("task"),
    }
}

fn project_page(d: &Data, p: &ProjectRec) -> Response {
    let tasks: Vec<&TaskRec> = p.tasks.iter().filter_map(|g| d.tasks.get(g)).collect();
    page(
        StatusCode::OK,
        &p.name,
        html! {
            h1 { (p.name) }
            @if !p.notes.is_empty() { p.pre { (p.notes) } }
            p.muted { (tasks.len()) " tasks" }
            table {
                tr { th { "Task" } th { "Status" } th { "Assignee" } th { "Section" } }
                @for t in &tasks {
                    tr {
                        td { a href=(task_href(t)) { (t.name) } }
                        td { (status_of(d, t)) }
                        td { (t.assignee.as_deref().map(|a| d.user_name(a)).unwrap_or("—")) }
                        td { (p.task_sections.get(&t.gid).and_then(|s| d.section(s)).map(|(_, s)| s.name.as_str()).unwrap_or("")) }
                    }
                }
            }
        },
    )
}

fn task_page(d: &Data, t: &TaskRec) -> Response {
    let meta = d.meta(&t.gid);
    let person = |gid: &str| -> String {
        match d.users.get(gid) {
            Some(u) => format!("{} <{}>", u.name, u.email),
            None => gid.to_owned(),
        }
    };
    page(
        StatusCode::OK,
        &t.name,
        html! {
            h1 { (t.name) }
            table {
                tr { th { "Status" } td { (status_of(d, t)) } }
                @if let Some(by) = &meta.completed_by {
                    tr { th { @if meta.approval_status.is_some() { "Decided by" } @else { "Completed by" } }
                         td { (person(by)) @if let Some(at) = &t.completed_at { " · " (ts(at)) } } }
                }
                tr { th { "Assignee" } td { (t.assignee.as_deref().map(person).unwrap_or_else(|| "—".into())) } }
                tr { th { "Type" } td { (meta.resource_subtype.as_deref().unwrap_or("default_task")) } }
                tr { th { "Projects" } td {
                    @for (i, pg) in t.projects.iter().enumerate() {
                        @if i > 0 { ", " }
                        a href={ "/0/" (pg) "/list" } { (d.projects.get(pg).map(|p| p.name.as_str()).unwrap_or(pg)) }
                    }
                } }
                @if let Some(parent) = meta.parent.as_ref().and_then(|p| d.tasks.get(p)) {
                    tr { th { "Parent" } td { a href=(task_href(parent)) { (parent.name) } } }
                }
                @if !meta.subtasks.is_empty() {
                    tr { th { "Subtasks" } td { ul {
                        @for sub in meta.subtasks.iter().filter_map(|g| d.tasks.get(g)) {
                            li { a href=(task_href(sub)) { (sub.name) } " " span.muted { "(" (status_of(d, sub)) ")" } }
                        }
                    } } }
                }
                @for (field, value) in &t.values {
                    tr { th { (d.fields.get(field).map(|f| f.name.as_str()).unwrap_or(field)) }
                         td { (value.as_deref().unwrap_or("—")) } }
                }
                tr { th { "Created" } td { (ts(&t.created_at)) " by " (person(meta.created_by.as_deref().unwrap_or(&d.me))) } }
            }
            h2 { "Notes" }
            @if t.notes.is_empty() { p.muted { "No notes." } } @else { div.pre { (t.notes) } }
            h2 { "Activity" }
            @for st in &t.stories {
                div.story.comment[st.is_comment()] {
                    span.muted { (ts(&st.created_at)) " · " (person(&st.created_by)) " · " (st.subtype) }
                    @if let (Some(old), Some(new)) = (&st.old_approval_status, &st.new_approval_status) {
                        " · " (old) " → " (new)
                    }
                    div.pre { (st.text) }
                }
            }
        },
    )
}
