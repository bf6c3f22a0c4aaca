//! The sandbox's HTTP surface: Asana's routes under `/api/1.0` (one module
//! per kind of object), a control surface under `/_sandbox` for faults,
//! strictness, the request log, the clock and sync tokens, and read-only
//! pages at the permalinks it hands out (`pages.rs`).
//!
//! As strict as Asana where Asana is strict: a query parameter or a body
//! field the operation does not declare, a read-only field, a `limit`
//! outside 1..=100 is a 400 naming it. `opt_fields` follow `fields.rs`
//! (Asana-lenient, or the declared enum in strict mode). A spec operation
//! the sandbox does not implement is a 501; a path the spec does not know,
//! a 404. It does not serve form-encoded bodies, `opt_expand` or batch.

mod events;
mod people;
mod projects;
mod stories;
mod tasks;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::events::{EventRec, Named};
use super::fields::{keep, Selection};
use super::spec::{self, OpSpec};
use super::store::{Data, ProjectRec, StoryRec, TaskRec};
use super::{Faults, RequestRecord, Shared};

/// An Asana error answer: `{"errors":[{"message":...}]}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Members beside `errors` (the fresh `sync` of a 412).
    extra: Option<(&'static str, Value)>,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError::status(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(kind: &str, gid: &str) -> Self {
        ApiError::status(
            StatusCode::NOT_FOUND,
            format!("{kind}: Unknown object: {}", gid.escape_debug()),
        )
    }
    fn forbidden(message: impl Into<String>) -> Self {
        ApiError::status(StatusCode::FORBIDDEN, message)
    }
    fn status(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
        }
    }
    pub(super) fn from_io(e: std::io::Error) -> Self {
        ApiError::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("sandbox storage error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({
            "message": self.message,
            "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors",
        });
        if self.status.is_server_error() {
            err["phrase"] = json!("6 sad squid snuggle softly");
        }
        let mut body = json!({ "errors": [err] });
        if let Some((k, v)) = self.extra {
            body[k] = v;
        }
        (self.status, Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<T, ApiError>;
type St = State<Arc<Shared>>;

/// The user a request acts as: whose token it carried.
#[derive(Clone, Debug)]
pub(crate) struct Actor(pub String);

type Me = Extension<Actor>;

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/users", get(people::get_users))
        .route("/users/{user}", get(people::get_user))
        .route("/workspaces", get(people::get_workspaces))
        .route("/workspaces/{workspace}", get(people::get_workspace))
        .route(
            "/workspaces/{workspace}/projects",
            get(projects::get_workspace_projects).post(projects::create_project_in_workspace),
        )
        .route(
            "/workspaces/{workspace}/custom_fields",
            get(projects::get_workspace_fields),
        )
        .route(
            "/projects",
            get(projects::get_projects).post(projects::create_project),
        )
        .route("/projects/{project}", get(projects::get_project))
        .route("/projects/{project}/tasks", get(tasks::get_project_tasks))
        .route(
            "/projects/{project}/sections",
            get(projects::get_sections).post(projects::create_section),
        )
        .route("/sections/{section}", get(projects::get_section))
        .route(
            "/sections/{section}/addTask",
            post(projects::add_task_to_section),
        )
        .route(
            "/projects/{project}/custom_field_settings",
            get(projects::get_settings),
        )
        .route(
            "/projects/{project}/addCustomFieldSetting",
            post(projects::add_setting),
        )
        .route("/custom_fields", post(projects::create_field))
        .route("/tasks", get(tasks::get_tasks).post(tasks::create_task))
        .route(
            "/tasks/{task}",
            get(tasks::get_task)
                .put(tasks::update_task)
                .delete(tasks::delete_task),
        )
        .route(
            "/tasks/{task}/subtasks",
            get(tasks::get_subtasks).post(tasks::create_subtask),
        )
        .route(
            "/tasks/{task}/stories",
            get(stories::get_stories).post(stories::create_story),
        )
        .route(
            "/stories/{story}",
            get(stories::get_story)
                .put(stories::update_story)
                .delete(stories::delete_story),
        )
        .route("/tasks/{task}/addProject", post(tasks::add_project))
        .route("/tasks/{task}/removeProject", post(tasks::remove_project))
        .route("/events", get(events::get_events))
        .fallback(not_served)
        .method_not_allowed_fallback(not_served)
        .layer(middleware::from_fn_with_state(shared.clone(), gatekeeper));
    let control = Router::new()
        .route("/faults", get(get_faults).put(put_faults))
        .route("/strict", get(get_strict).put(put_strict))
        .route("/requests", get(get_requests).delete(clear_requests))
        .route("/clock", axum::routing::put(put_clock))
        .route("/events/expire", post(expire_sync_tokens))
        .layer(middleware::from_fn_with_state(shared.clone(), control_auth));
    Router::new()
        .nest("/api/1.0", api)
        .nest("/_sandbox", control)
        .merge(super::pages::router())
        .fallback(no_route)
        .with_state(shared)
}

async fn no_route() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "No matching route for request")
}

/// Whether `path` (e.g. `/tasks/12/subtasks`) fits a spec template
/// (`/tasks/{task_gid}/subtasks`).
fn fits(template: &str, path: &str) -> bool {
    let want: Vec<&str> = template.trim_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_matches('/').split('/').collect();
    want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| (w.starts_with('{') && !g.is_empty()) || w == g)
}

/// An operation of Asana's spec the sandbox does not serve is a 501 that
/// says so; anything else a 404, as Asana answers a path it does not know.
async fn not_served(req: Request) -> ApiError {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().trim_start_matches("/api/1.0").to_owned();
    match spec::SPEC_PATHS
        .iter()
        .find(|(m, t)| *m == method && fits(t, &path))
    {
        Some((m, t)) => ApiError::status(
            StatusCode::NOT_IMPLEMENTED,
            format!("{m} {t} is part of Asana's API, but the pushgate sandbox does not implement it (docs/asana.md lists what it does)"),
        ),
        None => ApiError::status(StatusCode::NOT_FOUND, "No matching route for request"),
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Authentication (which person, by token), the request log, then any
/// injected faults.
async fn gatekeeper(State(s): St, mut req: Request, next: Next) -> Response {
    s.log(RequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().trim_start_matches("/api/1.0").to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
    });
    let actor = bearer(&req).and_then(|t| s.data().user_by_token(t).map(str::to_owned));
    let Some(actor) = actor else {
        return ApiError::status(StatusCode::UNAUTHORIZED, "Not Authorized").into_response();
    };
    req.extensions_mut().insert(Actor(actor.clone()));
    // Asana's concurrency limits: one request past them is a 429.
    let write = req.method() != axum::http::Method::GET;
    let Some(_in_flight) = InFlight::enter(&s, &actor, write) else {
        s.rate_limited.fetch_add(1, Ordering::SeqCst);
        let mut resp = ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "You have too many requests in flight. Please, wait for some to finish.",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return resp;
    };
    let n = s.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let api_path = req.uri().path().trim_start_matches("/api/1.0").to_owned();
    let (latency, late, drop_before, drop_after, rate_limited, fail, forbidden) = {
        let mut f = s.faults.lock().unwrap_or_else(|e| e.into_inner());
        let path = req.uri().path();
        let forbidden = f
            .forbidden_projects
            .iter()
            .any(|p| path.split('/').any(|seg| seg == p) || s.task_in_project(path, p));
        if !f.applies_to(req.method().as_str(), &api_path) {
            (0, false, false, false, None, None, forbidden)
        } else {
            let drop = f.drop_next > 0;
            if drop {
                f.drop_next -= 1;
            }
            let rate = f
                .rate_limit_every
                .is_some_and(|every| every > 0 && n % every == 0);
            let fail = !drop && !rate && f.fail_next > 0;
            if fail {
                f.fail_next -= 1;
            }
            (
                f.latency_ms,
                f.latency_after_apply,
                drop && !f.drop_after_apply,
                drop && f.drop_after_apply,
                rate.then_some(f.retry_after_secs),
                fail.then_some(f.fail_status),
                forbidden,
            )
        }
    };
    if latency > 0 && !late {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if drop_before {
        return dropped();
    }
    if let Some(secs) = rate_limited {
        s.rate_limited.fetch_add(1, Ordering::SeqCst);
        let mut resp = ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "You have made too many requests recently. Please, be chill.",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    if let Some(status) = fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return ApiError::status(status, "Server Error (injected by the sandbox)").into_response();
    }
    if forbidden {
        return ApiError::forbidden("You do not have access to this resource.").into_response();
    }
    let resp = next.run(req).await;
    s.answered.notify_waiters();
    if latency > 0 && late {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if drop_after {
        return dropped();
    }
    resp
}

/// One request in flight for a person, counted against Asana's limits while
/// it lives.
struct InFlight<'a> {
    s: &'a Shared,
    actor: String,
    write: bool,
}

impl<'a> InFlight<'a> {
    fn enter(s: &'a Shared, actor: &str, write: bool) -> Option<InFlight<'a>> {
        let (reads, writes) = {
            let f = s.faults.lock().unwrap_or_else(|e| e.into_inner());
            (f.concurrent_reads, f.concurrent_writes)
        };
        let mut m = s.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(actor.to_owned()).or_default();
        let (count, max) = if write {
            (&mut n.1, writes)
        } else {
            (&mut n.0, reads)
        };
        if *count >= max {
            return None;
        }
        *count += 1;
        if write {
            s.most_writes
                .fetch_max(*count as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Some(InFlight {
            s,
            actor: actor.to_owned(),
            write,
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.s.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.actor) {
            let c = if self.write { &mut n.1 } else { &mut n.0 };
            *c = c.saturating_sub(1);
        }
    }
}

/// Headers go out, then the body breaks: the client sees a dropped connection.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped by a sandbox fault",
        ))
    });
    Response::new(Body::from_stream(stream))
}

/// The control surface takes the bot's token only.
async fn control_auth(State(s): St, req: Request, next: Next) -> Response {
    let ok = bearer(&req).is_some_and(|t| t == s.data().token);
    if !ok {
        return ApiError::status(StatusCode::UNAUTHORIZED, "Not Authorized").into_response();
    }
    next.run(req).await
}

async fn get_faults(State(s): St) -> Json<Faults> {
    Json(s.faults.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn put_faults(State(s): St, body: Bytes) -> Result<Json<Faults>> {
    let f: Faults =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("faults: {e}")))?;
    *s.faults.lock().unwrap_or_else(|e| e.into_inner()) = f.clone();
    Ok(Json(f))
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Strictness {
    strict: bool,
}

async fn get_strict(State(s): St) -> Json<Strictness> {
    Json(Strictness {
        strict: s.strict.load(Ordering::SeqCst),
    })
}

async fn put_strict(State(s): St, body: Bytes) -> Result<Json<Strictness>> {
    let v: Strictness =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("strict: {e}")))?;
    s.strict.store(v.strict, Ordering::SeqCst);
    Ok(Json(v))
}

async fn get_requests(State(s): St) -> Json<Vec<RequestRecord>> {
    Json(s.requests())
}

async fn clear_requests(State(s): St) -> StatusCode {
    s.clear_requests();
    StatusCode::NO_CONTENT
}

async fn put_clock(State(s): St, body: Bytes) -> Result<StatusCode> {
    #[derive(serde::Deserialize)]
    struct Clock {
        now: Option<DateTime<Utc>>,
    }
    let c: Clock =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("clock: {e}")))?;
    s.set_now(c.now);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_sync_tokens(State(s): St) -> StatusCode {
    s.expire_sync_tokens();
    StatusCode::NO_CONTENT
}

// ---- parameters, bodies, rendering ----

pub(crate) struct Params {
    pairs: Vec<(String, String)>,
    opt_fields: Option<Selection>,
    limit: Option<usize>,
    offset: usize,
    pretty: bool,
}

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn encode_offset(pos: usize) -> String {
    format!("eyJ0eXAiOiJKV1Qi{:x}", pos as u64 * 7919 + 4099)
}

fn decode_offset(token: &str) -> Option<usize> {
    let n = u64::from_str_radix(token.strip_prefix("eyJ0eXAiOiJKV1Qi")?, 16).ok()?;
    (n >= 4099 && (n - 4099) % 7919 == 0).then(|| ((n - 4099) / 7919) as usize)
}

/// The query of a request to `op`: only its declared parameters.
fn params(s: &Shared, op: &OpSpec, raw: Option<String>) -> Result<Params> {
    params_with(s, op, raw, &[])
}

/// As `params`, also accepting `extra` (parameters the spec omits but
/// Asana and its official clients use; each use says why).
fn params_with(s: &Shared, op: &OpSpec, raw: Option<String>, extra: &[&str]) -> Result<Params> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut p = Params {
        pairs: Vec::new(),
        opt_fields: None,
        limit: None,
        offset: 0,
        pretty: false,
    };
    let strict = s.strict.load(Ordering::SeqCst);
    for (k, v) in pairs {
        // Both official clients take an optional request body among the
        // options, and send the options as the query: `body=[object
        // Object]` (node-asana v3's SectionsApi, python-asana v5 alike).
        // Asana answers those calls; so does the lenient sandbox.
        if k == "body" && op.optional_body && !strict {
            continue;
        }
        if !op.query.contains(&k.as_str()) && !extra.contains(&k.as_str()) {
            let allowed: Vec<&str> = op.query.iter().chain(extra).copied().collect();
            return Err(ApiError::bad(format!(
                "{}: not a parameter of {} {} (allowed: {})",
                k.escape_debug(),
                op.method,
                op.path,
                allowed.join(", ")
            )));
        }
        if p.pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::bad(format!("{k}: given more than once")));
        }
        match k.as_str() {
            "opt_fields" => {
                p.opt_fields = Some(
                    Selection::parse(&v, op, strict).map_err(|e| {
                        ApiError::bad(format!(
                            "opt_fields: {} ({} {})",
                            e.escape_debug(),
                            op.method,
                            op.path
                        ))
                    })?,
                );
            }
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => p.limit = Some(n),
                _ => {
                    return Err(ApiError::bad(format!(
                        "limit: Must be between 1 and 100, got `{}`",
                        v.escape_debug()
                    )))
                }
            },
            "offset" => {
                p.offset = decode_offset(&v).ok_or_else(|| {
                    ApiError::bad("offset: Your pagination token is invalid or has expired. Start again from the first page.")
                })?
            }
            "opt_pretty" => p.pretty = v != "false",
            _ => {}
        }
        p.pairs.push((k, v));
    }
    Ok(p)
}

/// The `data` object of a write, with only the fields the spec declares
/// writable.
fn body(op: &OpSpec, bytes: &Bytes) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("Could not parse request data, invalid JSON: {e}")))?;
    let Value::Object(mut top) = v else {
        return Err(ApiError::bad(
            "Request data must be a JSON object with a `data` member",
        ));
    };
    if let Some(k) = top.keys().find(|k| *k != "data" && *k != "options") {
        return Err(ApiError::bad(format!(
            "{}: unexpected top-level member; send {{\"data\": {{...}}}}",
            k.escape_debug()
        )));
    }
    let data = match top.remove("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ApiError::bad("data: must be an object")),
        None => return Err(ApiError::bad("data: Missing input")),
    };
    if let Some(k) = data.keys().find(|k| !op.body.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "{}: not a writable field of {} {}",
            k.escape_debug(),
            op.method,
            op.path
        )));
    }
    Ok(data)
}

fn str_field<'a>(data: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad(format!("{key}: Not a string"))),
    }
}

fn bool_field(data: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad(format!("{key}: Not a boolean"))),
    }
}

fn check_gid(kind: &str, gid: &str) -> Result<()> {
    if !gid.is_empty() && gid.len() <= 40 && gid.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{kind}: Not a valid gid: {}",
            gid.escape_debug()
        )))
    }
}

/// A date-time query value (`completed_since` also takes `now`).
fn date_time(key: &str, v: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad(format!(
                "{key}: Not a date-time (ISO 8601, e.g. 2026-11-22T10:15:00Z): {}",
                v.escape_debug()
            ))
        })
}

/// `completed_since`: `None` = all tasks, `Some(None)` = `now` (only
/// incomplete ones), `Some(Some(t))` = incomplete or completed since `t`.
fn completed_since(p: &Params) -> Result<Option<Option<DateTime<Utc>>>> {
    match p.get("completed_since") {
        None => Ok(None),
        Some("now") => Ok(Some(None)),
        Some(t) => Ok(Some(Some(date_time("completed_since", t)?))),
    }
}

fn keeps(t: &TaskRec, since: Option<Option<DateTime<Utc>>>) -> bool {
    match since {
        None => true,
        Some(None) => !t.completed,
        Some(Some(since)) => !t.completed || t.completed_at.is_some_and(|c| c >= since),
    }
}

fn render(value: Value, p: &Params, status: StatusCode, extra: &[(&str, Value)]) -> Response {
    let mut body = json!({ "data": value });
    for (k, v) in extra {
        body[*k] = v.clone();
    }
    let text = if p.pretty {
        serde_json::to_string_pretty(&body)
    } else {
        serde_json::to_string(&body)
    }
    .unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        text,
    )
        .into_response()
}

/// A record trimmed to `opt_fields` (if any), nested objects expanded from
/// `d`.
fn shape(d: &Data, origin: &str, full: &Value, p: &Params, compact_keys: Option<&[&str]>) -> Value {
    match (&p.opt_fields, compact_keys) {
        (Some(sel), _) => sel.apply(full, &|rt, gid| d.full_record(rt, gid, origin)),
        (None, Some(keys)) => keep(full, keys),
        (None, None) => full.clone(),
    }
}

/// One full record, trimmed to `opt_fields` when asked.
fn one(d: &Data, origin: &str, full: Value, p: &Params, status: StatusCode) -> Response {
    render(shape(d, origin, &full, p, None), p, status, &[])
}

/// A list response: compact records unless `opt_fields`, one page if
/// `limit`; only the requested page's records are rendered (`full` turns an
/// item into its full record), so paging through a large project stays
/// linear.
#[allow(clippy::too_many_arguments)]
fn list<T>(
    d: &Data,
    origin: &str,
    items: &[T],
    full: impl Fn(&T) -> Value,
    p: &Params,
    compact_keys: &[&str],
    path: &str,
) -> Response {
    let each = |t: &T| shape(d, origin, &full(t), p, Some(compact_keys));
    let Some(limit) = p.limit else {
        let all: Vec<Value> = items.iter().map(each).collect();
        return render(Value::Array(all), p, StatusCode::OK, &[]);
    };
    let start = p.offset.min(items.len());
    let end = (start + limit).min(items.len());
    let page: Vec<Value> = items[start..end].iter().map(each).collect();
    let next = if end < items.len() {
        let offset = encode_offset(end);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in p.pairs.iter().filter(|(k, _)| k != "offset") {
            q.append_pair(k, v);
        }
        q.append_pair("offset", &offset);
        let rel = format!("{path}?{}", q.finish());
        json!({ "offset": offset, "path": rel, "uri": format!("{origin}/api/1.0{rel}") })
    } else {
        Value::Null
    };
    render(
        Value::Array(page),
        p,
        StatusCode::OK,
        &[("next_page", next)],
    )
}

/// `{"data": {}}`, what Asana answers to addProject, deletes and the like.
fn empty(p: &Params) -> Response {
    render(json!({}), p, StatusCode::OK, &[])
}

const COMPACT: &[&str] = &["gid", "resource_type", "name"];
const TASK_COMPACT: &[&str] = &["gid", "resource_type", "name", "resource_subtype"];

// ---- lookups ----

fn task_of<'a>(d: &'a Data, gid: &str) -> Result<&'a TaskRec> {
    check_gid("task", gid)?;
    d.tasks
        .get(gid)
        .ok_or_else(|| ApiError::not_found("task", gid))
}

fn task_mut<'a>(d: &'a mut Data, gid: &str) -> Result<&'a mut TaskRec> {
    d.tasks
        .get_mut(gid)
        .ok_or_else(|| ApiError::not_found("task", gid))
}

fn project_of<'a>(d: &'a Data, gid: &str) -> Result<&'a ProjectRec> {
    check_gid("project", gid)?;
    d.projects
        .get(gid)
        .ok_or_else(|| ApiError::not_found("project", gid))
}

fn project_mut<'a>(d: &'a mut Data, gid: &str) -> Result<&'a mut ProjectRec> {
    d.projects
        .get_mut(gid)
        .ok_or_else(|| ApiError::not_found("project", gid))
}

fn workspace_of(d: &Data, gid: &str) -> Result<()> {
    check_gid("workspace", gid)?;
    d.workspaces
        .contains_key(gid)
        .then_some(())
        .ok_or_else(|| ApiError::not_found("workspace", gid))
}

/// A user named as Asana names them: `me`, an e-mail or a gid. `what` is
/// the field or parameter, for the error.
fn user_of(d: &Data, me: &Actor, who: &str, what: &str) -> Result<String> {
    if who == "me" {
        return Ok(me.0.clone());
    }
    d.users
        .values()
        .find(|u| u.gid == who || u.email.eq_ignore_ascii_case(who))
        .map(|u| u.gid.clone())
        .ok_or_else(|| {
            ApiError::bad(format!(
                "{what}: Not a recognized ID or e-mail: {}",
                who.escape_debug()
            ))
        })
}

// ---- stories and events of a change ----

fn named_task(t: &TaskRec) -> Named {
    Named::new("task", &t.gid, Some(&t.name))
}

fn named_project(p: &ProjectRec) -> Named {
    Named::new("project", &p.gid, Some(&p.name))
}

/// Who sees events about task `t`: the task, its projects and its parent.
fn audience(d: &Data, t: &TaskRec) -> Vec<String> {
    let mut out = vec![t.gid.clone()];
    out.extend(t.projects.iter().cloned());
    if let Some(parent) = d.meta(&t.gid).parent {
        out.push(parent);
    }
    out
}

/// Queues an event for the log (see `events.rs`).
#[allow(clippy::too_many_arguments)]
fn event(
    d: &mut Data,
    now: DateTime<Utc>,
    me: &Actor,
    resource: Named,
    action: &str,
    parent: Option<Named>,
    change: Option<Value>,
    audience: Vec<String>,
) {
    d.pending_events.push(EventRec {
        seq: 0,
        created_at: now,
        user: me.0.clone(),
        resource,
        action: action.into(),
        parent,
        change,
        audience,
    });
}

/// A `changed` event for one field of task `task`.
fn task_changed(d: &mut Data, now: DateTime<Utc>, me: &Actor, task: &str, field: &str, new: Value) {
    let Some(t) = d.tasks.get(task) else { return };
    let (named, who) = (named_task(t), audience(d, t));
    let change = json!({ "field": field, "action": "changed", "new_value": new });
    event(d, now, me, named, "changed", None, Some(change), who);
}

/// A story written by `me` (text as Asana words it, after the author's name).
fn story(d: &mut Data, now: DateTime<Utc>, me: &Actor, subtype: &str, text: String) -> StoryRec {
    StoryRec {
        gid: d.new_gid(),
        created_at: now,
        created_by: me.0.clone(),
        subtype: subtype.into(),
        text,
        html_text: None,
        old_approval_status: None,
        new_approval_status: None,
        is_edited: false,
        is_pinned: false,
        sticker_name: None,
    }
}

/// Adds a story to a task, with its `added` event.
fn add_story(d: &mut Data, now: DateTime<Utc>, me: &Actor, task: &str, st: StoryRec) -> Result<()> {
    let named = Named::new("story", &st.gid, None);
    let t = task_mut(d, task)?;
    t.stories.push(st);
    let t = task_of(d, task)?;
    let (parent, who) = (named_task(t), audience(d, t));
    event(d, now, me, named, "added", Some(parent), None, who);
    Ok(())
}

/// `"<name> did x"`, as Asana's system stories read.
fn said(d: &Data, me: &Actor, what: &str) -> String {
    format!("{} {what}", d.user_name(&me.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_forgeries_fail() {
        for pos in [0, 1, 100, 12345] {
            assert_eq!(decode_offset(&encode_offset(pos)), Some(pos));
        }
        assert_eq!(decode_offset("100"), None);
        assert_eq!(decode_offset("eyJ0eXAiOiJKV1Qi5"), None);
    }

    #[test]
    fn a_spec_path_is_told_from_an_unknown_one() {
        assert!(fits("/tasks/{task_gid}/duplicate", "/tasks/12/duplicate"));
        assert!(!fits("/tasks/{task_gid}/duplicate", "/tasks//duplicate"));
        assert!(!fits("/tasks/{task_gid}", "/tasks/12/duplicate"));
        assert!(!fits("/tags/{tag_gid}", "/tugs/1"));
        let served: Vec<(&str, &str)> = spec::OPS.iter().map(|o| (o.method, o.path)).collect();
        for op in spec::OPS {
            assert!(
                spec::SPEC_PATHS.contains(&(op.method, op.path)),
                "{} {} is served but not in the spec",
                op.method,
                op.path
            );
        }
        assert!(spec::SPEC_PATHS.len() > served.len());
    }

    #[test]
    fn the_docs_list_every_served_operation() {
        let docs = include_str!("../../../../docs/asana.md");
        for op in spec::OPS {
            let named = format!("`{} {}`", op.method, op.path);
            assert!(docs.contains(&named), "docs/asana.md does not list {named}");
        }
    }
}
