//! The sandbox's HTTP surface: Asana's routes under `/api/1.0`, and a
//! control surface under `/_sandbox` for faults, the request log and the
//! clock.
//!
//! Stricter than Asana on purpose: a query parameter, an `opt_fields` value
//! or a body field that Asana's OpenAPI spec does not declare for the
//! operation is a 400 (see `spec.rs`), so whatever passes here passes a
//! spec-validating server too.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::richtext::{self, Kind};
use super::spec::{self, OpSpec};
use super::store::{escape_xml, Data, ProjectRec, SettingRec, StoryRec, TaskRec};
use super::{Faults, RequestRecord, Shared};

/// An Asana error answer: `{"errors":[{"message":...}]}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    fn not_found(kind: &str, gid: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("{kind}: Unknown object: {gid}"),
        }
    }
    fn status(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
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
        (self.status, Json(json!({ "errors": [err] }))).into_response()
    }
}

type Result<T> = std::result::Result<T, ApiError>;
type St = State<Arc<Shared>>;

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/users/{user}", get(get_user))
        .route("/workspaces", get(get_workspaces))
        .route(
            "/workspaces/{workspace}/projects",
            post(create_project_in_workspace),
        )
        .route("/projects", get(get_projects).post(create_project))
        .route("/projects/{project}", get(get_project))
        .route("/projects/{project}/tasks", get(get_project_tasks))
        .route(
            "/projects/{project}/custom_field_settings",
            get(get_settings),
        )
        .route(
            "/projects/{project}/addCustomFieldSetting",
            post(add_setting),
        )
        .route("/custom_fields", post(create_field))
        .route("/tasks", post(create_task))
        .route(
            "/tasks/{task}",
            get(get_task).put(update_task).delete(delete_task),
        )
        .route("/tasks/{task}/stories", get(get_stories).post(create_story))
        .route("/tasks/{task}/addProject", post(add_project))
        .route("/tasks/{task}/removeProject", post(remove_project))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(shared.clone(), gatekeeper));
    let control = Router::new()
        .route("/faults", get(get_faults).put(put_faults))
        .route("/requests", get(get_requests).delete(clear_requests))
        .route("/clock", axum::routing::put(put_clock))
        .layer(middleware::from_fn_with_state(shared.clone(), control_auth));
    Router::new()
        .nest("/api/1.0", api)
        .nest("/_sandbox", control)
        .fallback(no_route)
        .with_state(shared)
}

async fn no_route() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "No matching route for request")
}

fn authorized(s: &Shared, req: &Request) -> bool {
    let expected = format!("Bearer {}", s.data().token);
    req.headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
}

/// Authentication, the request log, then any injected faults.
async fn gatekeeper(State(s): St, req: Request, next: Next) -> Response {
    s.log(RequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().trim_start_matches("/api/1.0").to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
    });
    if !authorized(&s, &req) {
        return ApiError::status(StatusCode::UNAUTHORIZED, "Not Authorized").into_response();
    }
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
        return ApiError::status(
            StatusCode::FORBIDDEN,
            "You do not have access to this resource.",
        )
        .into_response();
    }
    let resp = next.run(req).await;
    if latency > 0 && late {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if drop_after {
        return dropped();
    }
    resp
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

async fn control_auth(State(s): St, req: Request, next: Next) -> Response {
    if !authorized(&s, &req) {
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

// ---- parameters, bodies, rendering ----

struct Params {
    pairs: Vec<(String, String)>,
    opt_fields: Option<Vec<String>>,
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

fn params(op: &OpSpec, raw: Option<String>) -> Result<Params> {
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
    for (k, v) in pairs {
        if !op.query.contains(&k.as_str()) {
            return Err(ApiError::bad(format!(
                "{k}: not a parameter of this endpoint (allowed: {})",
                op.query.join(", ")
            )));
        }
        if p.pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::bad(format!("{k}: given more than once")));
        }
        match k.as_str() {
            "opt_fields" => {
                let fields: Vec<String> = v.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
                if let Some(bad) = fields.iter().find(|f| !op.opt_fields.contains(&f.as_str())) {
                    return Err(ApiError::bad(format!("opt_fields: `{bad}` is not a field of this endpoint")));
                }
                p.opt_fields = Some(fields);
            }
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => p.limit = Some(n),
                _ => return Err(ApiError::bad(format!("limit: Must be between 1 and 100, got `{v}`"))),
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

/// The `data` object of a write, with only the fields the spec declares.
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
            "{k}: unexpected top-level member; send {{\"data\": {{...}}}}"
        )));
    }
    let data = match top.remove("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ApiError::bad("data: must be an object")),
        None => return Err(ApiError::bad("data: Missing input")),
    };
    if let Some(k) = data.keys().find(|k| !op.body.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "{k}: not a writable field of this endpoint"
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

fn render(value: Value, p: &Params, status: StatusCode, extra: Option<(&str, Value)>) -> Response {
    let mut body = json!({ "data": value });
    if let Some((k, v)) = extra {
        body[k] = v;
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

/// One full record, trimmed to `opt_fields` when asked.
fn one(full: Value, p: &Params, status: StatusCode) -> Response {
    let v = match &p.opt_fields {
        Some(f) => project(&full, f),
        None => full,
    };
    render(v, p, status, None)
}

/// A list of full records: compact unless `opt_fields`, one page if `limit`.
fn list(items: Vec<Value>, p: &Params, compact_keys: &[&str], s: &Shared, path: &str) -> Response {
    list_with(&items, |v| v.clone(), p, compact_keys, s, path)
}

/// A list response where only the requested page's records are rendered
/// (`full` turns one item into its full JSON record): paging through a
/// large project stays linear.
fn list_with<T>(
    items: &[T],
    full: impl Fn(&T) -> Value,
    p: &Params,
    compact_keys: &[&str],
    s: &Shared,
    path: &str,
) -> Response {
    let shape = |t: &T| {
        let v = full(t);
        match &p.opt_fields {
            Some(f) => project(&v, f),
            None => keep(&v, compact_keys),
        }
    };
    let Some(limit) = p.limit else {
        let all: Vec<Value> = items.iter().map(shape).collect();
        return render(Value::Array(all), p, StatusCode::OK, None);
    };
    let start = p.offset.min(items.len());
    let end = (start + limit).min(items.len());
    let page: Vec<Value> = items[start..end].iter().map(shape).collect();
    let next = if end < items.len() {
        let offset = encode_offset(end);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in p.pairs.iter().filter(|(k, _)| k != "offset") {
            q.append_pair(k, v);
        }
        q.append_pair("offset", &offset);
        let rel = format!("{path}?{}", q.finish());
        json!({ "offset": offset, "path": rel, "uri": format!("{}/api/1.0{rel}", s.origin) })
    } else {
        Value::Null
    };
    render(
        Value::Array(page),
        p,
        StatusCode::OK,
        Some(("next_page", next)),
    )
}

fn keep(v: &Value, keys: &[&str]) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The compact form of a nested record.
fn compact(v: &Value) -> Value {
    match v.get("resource_type").and_then(Value::as_str) {
        Some("custom_field") => keep(
            v,
            &[
                "gid",
                "resource_type",
                "name",
                "type",
                "resource_subtype",
                "text_value",
                "display_value",
                "enabled",
            ],
        ),
        Some(_) => keep(v, &["gid", "resource_type", "name", "resource_subtype"]),
        None => v.clone(),
    }
}

/// Trims a record to dotted `opt_fields` paths; `gid` always stays.
fn project<S: AsRef<str>>(v: &Value, fields: &[S]) -> Value {
    let Value::Object(obj) = v else {
        return v.clone();
    };
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in fields {
        let (head, rest) = f.as_ref().split_once('.').unwrap_or((f.as_ref(), ""));
        groups.entry(head).or_default().push(rest);
    }
    let mut out = Map::new();
    if let Some(g) = obj.get("gid") {
        out.insert("gid".into(), g.clone());
    }
    for (head, rests) in groups {
        let Some(val) = obj.get(head) else { continue };
        let whole = rests.iter().any(|r| r.is_empty());
        let subs: Vec<&str> = rests.into_iter().filter(|r| !r.is_empty()).collect();
        out.insert(head.to_owned(), pick(val, &subs, whole));
    }
    Value::Object(out)
}

fn pick(val: &Value, subs: &[&str], whole: bool) -> Value {
    match val {
        Value::Array(items) => Value::Array(items.iter().map(|i| pick(i, subs, whole)).collect()),
        Value::Object(_) => {
            let mut base = if whole { compact(val) } else { json!({}) };
            if let (Value::Object(b), Value::Object(extra)) = (&mut base, project(val, subs)) {
                b.extend(extra);
            }
            base
        }
        other => other.clone(),
    }
}

// ---- lookups ----

fn task_of<'a>(d: &'a Data, gid: &str) -> Result<&'a TaskRec> {
    check_gid("task", gid)?;
    d.tasks
        .get(gid)
        .ok_or_else(|| ApiError::not_found("task", gid))
}

fn project_of<'a>(d: &'a Data, gid: &str) -> Result<&'a ProjectRec> {
    check_gid("project", gid)?;
    d.projects
        .get(gid)
        .ok_or_else(|| ApiError::not_found("project", gid))
}

fn workspace_of(d: &Data, gid: &str) -> Result<()> {
    check_gid("workspace", gid)?;
    d.workspaces
        .contains_key(gid)
        .then_some(())
        .ok_or_else(|| ApiError::not_found("workspace", gid))
}

fn user_of(d: &Data, who: &str) -> Result<String> {
    if who == "me" {
        return Ok(d.me.clone());
    }
    d.users
        .values()
        .find(|u| u.gid == who || u.email.eq_ignore_ascii_case(who))
        .map(|u| u.gid.clone())
        .ok_or_else(|| {
            ApiError::bad(format!(
                "assignee: Not a recognized ID or e-mail: {}",
                who.escape_debug()
            ))
        })
}

// ---- users, workspaces, projects ----

async fn get_user(
    State(s): St,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_USER, q)?;
    let d = s.data();
    let gid = if user == "me" {
        d.me.clone()
    } else {
        user_of(&d, &user).map_err(|_| ApiError::not_found("user", &user))?
    };
    let u = d
        .users
        .get(&gid)
        .ok_or_else(|| ApiError::not_found("user", &user))?;
    Ok(one(d.user_full(u), &p, StatusCode::OK))
}

async fn get_workspaces(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&spec::GET_WORKSPACES, q)?;
    let items: Vec<Value> = {
        let d = s.data();
        d.workspaces
            .keys()
            .map(|w| d.workspace_compact(w))
            .collect()
    };
    Ok(list(
        items,
        &p,
        &["gid", "resource_type", "name"],
        &s,
        "/workspaces",
    ))
}

async fn get_projects(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&spec::GET_PROJECTS, q)?;
    let items: Vec<Value> = {
        let d = s.data();
        if let Some(w) = p.get("workspace") {
            workspace_of(&d, w)?;
        }
        let archived = match p.get("archived") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => return Err(ApiError::bad(format!("archived: Not a boolean: {other}"))),
        };
        d.projects
            .values()
            .filter(|pr| p.get("workspace").is_none_or(|w| pr.workspace == w))
            .filter(|pr| archived.is_none_or(|a| pr.archived == a))
            .map(|pr| d.project_full(pr, &s.origin))
            .collect()
    };
    Ok(list(
        items,
        &p,
        &["gid", "resource_type", "name"],
        &s,
        "/projects",
    ))
}

async fn create_project(state: St, RawQuery(q): RawQuery, bytes: Bytes) -> Result<Response> {
    let p = params(&spec::CREATE_PROJECT, q)?;
    let data = body(&spec::CREATE_PROJECT, &bytes)?;
    let workspace = str_field(&data, "workspace")?
        .ok_or_else(|| ApiError::bad("workspace: Missing input"))?
        .to_owned();
    new_project(state, p, data, workspace)
}

async fn create_project_in_workspace(
    state: St,
    Path(workspace): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::CREATE_PROJECT_FOR_WORKSPACE, q)?;
    let data = body(&spec::CREATE_PROJECT_FOR_WORKSPACE, &bytes)?;
    new_project(state, p, data, workspace)
}

fn new_project(
    State(s): St,
    p: Params,
    data: Map<String, Value>,
    workspace: String,
) -> Result<Response> {
    let now = s.now();
    let v = s.mutate(|d| {
        workspace_of(d, &workspace)?;
        let name = str_field(&data, "name")?.unwrap_or("").to_owned();
        let notes = str_field(&data, "notes")?.unwrap_or("").to_owned();
        let gid = d.new_gid();
        let rec = ProjectRec {
            gid: gid.clone(),
            name,
            workspace,
            notes,
            archived: bool_field(&data, "archived")?.unwrap_or(false),
            created_at: now,
            tasks: Vec::new(),
            settings: Vec::new(),
        };
        let v = d.project_full(&rec, &s.origin);
        d.projects.insert(gid, rec);
        Ok(v)
    })?;
    Ok(one(v, &p, StatusCode::CREATED))
}

async fn get_project(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_PROJECT, q)?;
    let d = s.data();
    let pr = project_of(&d, &project)?;
    Ok(one(d.project_full(pr, &s.origin), &p, StatusCode::OK))
}

async fn get_project_tasks(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_PROJECT_TASKS, q)?;
    let since = match p.get("completed_since") {
        None => None,
        Some("now") => Some(None),
        Some(t) => Some(Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    ApiError::bad(format!(
                        "completed_since: Not a date-time or `now`: {}",
                        t.escape_debug()
                    ))
                })?
                .with_timezone(&Utc),
        )),
    };
    let d = s.data();
    let pr = project_of(&d, &project)?;
    let items: Vec<&TaskRec> = pr
        .tasks
        .iter()
        .filter_map(|t| d.tasks.get(t))
        .filter(|t| match since {
            None => true,
            Some(None) => !t.completed,
            Some(Some(since)) => !t.completed || t.completed_at.is_some_and(|c| c >= since),
        })
        .collect();
    Ok(list_with(
        &items,
        |t| d.task_full(t, &s.origin),
        &p,
        &["gid", "resource_type", "name", "resource_subtype"],
        &s,
        &format!("/projects/{project}/tasks"),
    ))
}

async fn get_settings(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_CUSTOM_FIELD_SETTINGS, q)?;
    let items: Vec<Value> = {
        let d = s.data();
        let pr = project_of(&d, &project)?;
        pr.settings
            .iter()
            .map(|st| d.setting_full(pr, st))
            .collect()
    };
    let all = [
        "gid",
        "resource_type",
        "is_important",
        "project",
        "parent",
        "custom_field",
    ];
    Ok(list(
        items,
        &p,
        &all,
        &s,
        &format!("/projects/{project}/custom_field_settings"),
    ))
}

async fn add_setting(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::ADD_CUSTOM_FIELD_SETTING, q)?;
    let data = body(&spec::ADD_CUSTOM_FIELD_SETTING, &bytes)?;
    let v = s.mutate(|d| {
        let workspace = project_of(d, &project)?.workspace.clone();
        let field = match data.get("custom_field") {
            Some(Value::String(g)) => g.clone(),
            Some(Value::Object(_)) => {
                return Err(ApiError::bad(
                    "custom_field: the sandbox takes the gid of an existing field",
                ))
            }
            _ => return Err(ApiError::bad("custom_field: Missing input")),
        };
        check_gid("custom_field", &field)?;
        let f = d
            .fields
            .get(&field)
            .ok_or_else(|| ApiError::not_found("custom_field", &field))?;
        if f.workspace != workspace {
            return Err(ApiError::bad("custom_field: belongs to another workspace"));
        }
        if project_of(d, &project)?
            .settings
            .iter()
            .any(|st| st.field == field)
        {
            return Err(ApiError::bad(
                "custom_field: This custom field is already on the project",
            ));
        }
        let setting = SettingRec {
            gid: d.new_gid(),
            field,
            is_important: bool_field(&data, "is_important")?.unwrap_or(false),
        };
        let pr = d
            .projects
            .get_mut(&project)
            .ok_or_else(|| ApiError::not_found("project", &project))?;
        pr.settings.push(setting.clone());
        let pr = d
            .projects
            .get(&project)
            .ok_or_else(|| ApiError::not_found("project", &project))?;
        Ok(d.setting_full(pr, &setting))
    })?;
    Ok(one(v, &p, StatusCode::OK))
}

async fn create_field(State(s): St, RawQuery(q): RawQuery, bytes: Bytes) -> Result<Response> {
    let p = params(&spec::CREATE_CUSTOM_FIELD, q)?;
    let data = body(&spec::CREATE_CUSTOM_FIELD, &bytes)?;
    let v = s.mutate(|d| {
        let workspace = str_field(&data, "workspace")?
            .ok_or_else(|| ApiError::bad("workspace: Missing input"))?
            .to_owned();
        workspace_of(d, &workspace)?;
        match str_field(&data, "resource_subtype")? {
            Some("text") => {}
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "resource_subtype: the sandbox has text fields only, not `{other}`"
                )))
            }
            None => return Err(ApiError::bad("resource_subtype: Missing input")),
        }
        let name = str_field(&data, "name")?.unwrap_or("").to_owned();
        if d.fields
            .values()
            .any(|f| f.workspace == workspace && f.name == name)
        {
            return Err(ApiError::bad(format!(
                "name: A custom field named `{name}` already exists in this workspace"
            )));
        }
        let gid = d.new_gid();
        let description = str_field(&data, "description")?.unwrap_or("").to_owned();
        d.fields.insert(
            gid.clone(),
            super::store::FieldRec {
                gid: gid.clone(),
                name,
                workspace,
                description,
            },
        );
        Ok(d.field_full(&gid, None, true))
    })?;
    Ok(one(v, &p, StatusCode::CREATED))
}

// ---- tasks ----

/// Text custom field values from a write: gid → value (null clears).
fn field_values(
    d: &Data,
    data: &Map<String, Value>,
    allowed: &[String],
    current: Option<&TaskRec>,
) -> Result<Vec<(String, Option<String>)>> {
    let Some(v) = data.get("custom_fields") else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = v else {
        return Err(ApiError::bad(
            "custom_fields: must be an object of field gid to value",
        ));
    };
    let mut out = Vec::new();
    for (gid, value) in map {
        check_gid("custom_fields", gid)?;
        let disabled_value = current.is_some_and(|t| t.values.contains_key(gid));
        let clearing = value.is_null();
        let settable = allowed.contains(gid) || (disabled_value && clearing);
        if !settable {
            if !d.fields.contains_key(gid) {
                return Err(ApiError::not_found("custom_field", gid));
            }
            return Err(ApiError::bad(format!(
                "custom_fields: Custom field with ID {gid} is not on given object"
            )));
        }
        let value = match value {
            Value::Null => None,
            Value::String(s) if s.chars().count() <= 1024 => Some(s.clone()),
            Value::String(_) => {
                return Err(ApiError::bad(format!(
                    "custom_fields: the value for {gid} is longer than 1024 characters"
                )))
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "custom_fields: the value for text field {gid} must be a string or null"
                )))
            }
        };
        out.push((gid.clone(), value));
    }
    Ok(out)
}

/// `notes` / `html_notes` from a write → (plain, rich).
fn notes_of(data: &Map<String, Value>) -> Result<Option<(String, Option<String>)>> {
    match (str_field(data, "notes")?, str_field(data, "html_notes")?) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "You may only provide one of notes or html_notes",
        )),
        (Some(n), None) => Ok(Some((n.to_owned(), None))),
        (None, Some(h)) => {
            let plain = richtext::to_plain(h, Kind::TaskNotes)
                .map_err(|e| ApiError::bad(format!("html_notes: {e}")))?;
            Ok(Some((plain, Some(h.to_owned()))))
        }
        (None, None) => Ok(None),
    }
}

fn story(d: &mut Data, now: DateTime<Utc>, subtype: &str, text: String) -> StoryRec {
    StoryRec {
        gid: d.new_gid(),
        created_at: now,
        created_by: d.me.clone(),
        subtype: subtype.into(),
        text,
        html_text: None,
    }
}

async fn create_task(State(s): St, RawQuery(q): RawQuery, bytes: Bytes) -> Result<Response> {
    let p = params(&spec::CREATE_TASK, q)?;
    let data = body(&spec::CREATE_TASK, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        let projects: Vec<String> = match data.get("projects") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::bad("projects: must be an array of gid strings"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(ApiError::bad("projects: must be an array of gid strings")),
        };
        if projects.len() > 20 {
            return Err(ApiError::bad(
                "projects: a task can be in at most 20 projects",
            ));
        }
        let mut workspace = str_field(&data, "workspace")?.map(str::to_owned);
        for pg in &projects {
            let pw = project_of(d, pg)?.workspace.clone();
            match &workspace {
                Some(w) if *w != pw => {
                    return Err(ApiError::bad(format!(
                        "projects: project {pg} is not in workspace {w}"
                    )))
                }
                _ => workspace = Some(pw),
            }
        }
        let workspace = workspace.ok_or_else(|| {
            ApiError::bad("workspace: Missing input; give projects or a workspace")
        })?;
        workspace_of(d, &workspace)?;
        let name = str_field(&data, "name")?.unwrap_or("").to_owned();
        let (notes, html_notes) = notes_of(&data)?.unwrap_or_default();
        let assignee = str_field(&data, "assignee")?
            .map(|a| user_of(d, a))
            .transpose()?;
        let completed = bool_field(&data, "completed")?.unwrap_or(false);
        let gid = d.new_gid();
        let mut task = TaskRec {
            gid: gid.clone(),
            name,
            notes,
            html_notes,
            completed,
            completed_at: completed.then_some(now),
            created_at: now,
            modified_at: now,
            assignee,
            workspace,
            projects: projects.clone(),
            values: BTreeMap::new(),
            stories: Vec::new(),
        };
        let allowed = d.task_fields(&task);
        for f in &allowed {
            task.values.insert(f.clone(), None);
        }
        for (f, v) in field_values(d, &data, &allowed, None)? {
            task.values.insert(f, v);
        }
        let created = story(
            d,
            now,
            "added_to_task",
            "Sandbox User created this task".into(),
        );
        task.stories.push(created);
        for pg in &projects {
            if let Some(pr) = d.projects.get_mut(pg) {
                pr.tasks.push(gid.clone());
            }
        }
        let v = d.task_full(&task, &s.origin);
        d.tasks.insert(gid, task);
        Ok(v)
    })?;
    Ok(one(v, &p, StatusCode::CREATED))
}

async fn get_task(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_TASK, q)?;
    let d = s.data();
    let t = task_of(&d, &task)?;
    Ok(one(d.task_full(t, &s.origin), &p, StatusCode::OK))
}

async fn update_task(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::UPDATE_TASK, q)?;
    let data = body(&spec::UPDATE_TASK, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        let current = task_of(d, &task)?.clone();
        let allowed = d.task_fields(&current);
        let values = field_values(d, &data, &allowed, Some(&current))?;
        let notes = notes_of(&data)?;
        let name = str_field(&data, "name")?.map(str::to_owned);
        let completed = bool_field(&data, "completed")?;
        let assignee = match data.get("assignee") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(a)) => Some(Some(user_of(d, a)?)),
            Some(_) => return Err(ApiError::bad("assignee: Not a string")),
        };
        let mut new_stories = Vec::new();
        if let Some(c) = completed {
            if c != current.completed {
                let (sub, text) = if c {
                    ("marked_complete", "Sandbox User completed this task")
                } else {
                    (
                        "marked_incomplete",
                        "Sandbox User marked this task incomplete",
                    )
                };
                new_stories.push(story(d, now, sub, text.into()));
            }
        }
        let t = d
            .tasks
            .get_mut(&task)
            .ok_or_else(|| ApiError::not_found("task", &task))?;
        if let Some(n) = name {
            t.name = n;
        }
        if let Some((plain, rich)) = notes {
            t.notes = plain;
            t.html_notes = rich;
        }
        if let Some(c) = completed {
            if c != t.completed {
                t.completed = c;
                t.completed_at = c.then_some(now);
            }
        }
        if let Some(a) = assignee {
            t.assignee = a;
        }
        for (f, v) in values {
            t.values.insert(f, v);
        }
        t.stories.extend(new_stories);
        t.modified_at = now;
        let t = d
            .tasks
            .get(&task)
            .ok_or_else(|| ApiError::not_found("task", &task))?;
        Ok(d.task_full(t, &s.origin))
    })?;
    Ok(one(v, &p, StatusCode::OK))
}

async fn delete_task(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::DELETE_TASK, q)?;
    s.mutate(|d| {
        task_of(d, &task)?;
        d.tasks.remove(&task);
        for pr in d.projects.values_mut() {
            pr.tasks.retain(|t| *t != task);
        }
        Ok(())
    })?;
    Ok(render(json!({}), &p, StatusCode::OK, None))
}

async fn get_stories(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&spec::GET_STORIES, q)?;
    let items: Vec<Value> = {
        let d = s.data();
        let t = task_of(&d, &task)?;
        t.stories.iter().map(|st| d.story_full(t, st)).collect()
    };
    let compact = [
        "gid",
        "resource_type",
        "created_at",
        "created_by",
        "resource_subtype",
        "text",
    ];
    Ok(list(
        items,
        &p,
        &compact,
        &s,
        &format!("/tasks/{task}/stories"),
    ))
}

async fn create_story(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::CREATE_STORY, q)?;
    let data = body(&spec::CREATE_STORY, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        task_of(d, &task)?;
        let (text, html) = match (str_field(&data, "text")?, str_field(&data, "html_text")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "You may only provide one of text or html_text",
                ))
            }
            (Some(t), None) => (t.to_owned(), None),
            (None, Some(h)) => {
                let plain = richtext::to_plain(h, Kind::Comment)
                    .map_err(|e| ApiError::bad(format!("html_text: {e}")))?;
                (plain, Some(h.to_owned()))
            }
            (None, None) => {
                return Err(ApiError::bad("text: Missing input; give text or html_text"))
            }
        };
        let mut st = story(d, now, "comment_added", text);
        st.html_text = html.or_else(|| Some(format!("<body>{}</body>", escape_xml(&st.text))));
        let t = d
            .tasks
            .get_mut(&task)
            .ok_or_else(|| ApiError::not_found("task", &task))?;
        t.stories.push(st.clone());
        t.modified_at = now;
        let t = d
            .tasks
            .get(&task)
            .ok_or_else(|| ApiError::not_found("task", &task))?;
        Ok(d.story_full(t, &st))
    })?;
    Ok(one(v, &p, StatusCode::CREATED))
}

async fn add_project(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::ADD_PROJECT, q)?;
    let data = body(&spec::ADD_PROJECT, &bytes)?;
    let now = s.now();
    s.mutate(|d| {
        let project = str_field(&data, "project")?
            .ok_or_else(|| ApiError::bad("project: Missing input"))?
            .to_owned();
        let t = task_of(d, &task)?;
        let pr = project_of(d, &project)?;
        if pr.workspace != t.workspace {
            return Err(ApiError::bad(
                "project: is in another workspace than the task",
            ));
        }
        let before = str_field(&data, "insert_before")?;
        let after = str_field(&data, "insert_after")?;
        if before.is_some() && after.is_some() {
            return Err(ApiError::bad(
                "You may only provide one of insert_before or insert_after",
            ));
        }
        if data.contains_key("section") && !data["section"].is_null() {
            return Err(ApiError::bad("section: the sandbox has no sections"));
        }
        let anchor = before.or(after).map(str::to_owned);
        if let Some(a) = &anchor {
            if !pr.tasks.contains(a) {
                return Err(ApiError::bad(format!(
                    "insert_before/insert_after: task {a} is not in the project"
                )));
            }
        }
        let already = t.projects.contains(&project);
        if !already && t.projects.len() >= 20 {
            return Err(ApiError::bad(
                "project: a task can be in at most 20 projects",
            ));
        }
        let new_fields: Vec<String> = pr.settings.iter().map(|st| st.field.clone()).collect();
        let pr = d
            .projects
            .get_mut(&project)
            .ok_or_else(|| ApiError::not_found("project", &project))?;
        pr.tasks.retain(|x| *x != task);
        let at = match (&anchor, before.is_some()) {
            (Some(a), true) => pr
                .tasks
                .iter()
                .position(|x| x == a)
                .unwrap_or(pr.tasks.len()),
            (Some(a), false) => pr
                .tasks
                .iter()
                .position(|x| x == a)
                .map_or(pr.tasks.len(), |i| i + 1),
            (None, _) => pr.tasks.len(),
        };
        pr.tasks.insert(at, task.clone());
        let name = pr.name.clone();
        if !already {
            let st = story(
                d,
                now,
                "added_to_project",
                format!("Sandbox User added this task to {name}"),
            );
            let t = d
                .tasks
                .get_mut(&task)
                .ok_or_else(|| ApiError::not_found("task", &task))?;
            t.projects.push(project);
            for f in new_fields {
                t.values.entry(f).or_insert(None);
            }
            t.stories.push(st);
        }
        Ok(())
    })?;
    Ok(render(json!({}), &p, StatusCode::OK, None))
}

async fn remove_project(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&spec::REMOVE_PROJECT, q)?;
    let data = body(&spec::REMOVE_PROJECT, &bytes)?;
    let now = s.now();
    s.mutate(|d| {
        let project = str_field(&data, "project")?
            .ok_or_else(|| ApiError::bad("project: Missing input"))?
            .to_owned();
        let present = task_of(d, &task)?.projects.contains(&project);
        let name = project_of(d, &project)?.name.clone();
        if !present {
            return Ok(());
        }
        let st = story(
            d,
            now,
            "removed_from_project",
            format!("Sandbox User removed this task from {name}"),
        );
        if let Some(pr) = d.projects.get_mut(&project) {
            pr.tasks.retain(|x| *x != task);
        }
        let t = d
            .tasks
            .get_mut(&task)
            .ok_or_else(|| ApiError::not_found("task", &task))?;
        t.projects.retain(|x| *x != project);
        t.stories.push(st);
        Ok(())
    })?;
    Ok(render(json!({}), &p, StatusCode::OK, None))
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
    fn projection_follows_dotted_paths() {
        let task = json!({
            "gid": "1", "resource_type": "task", "name": "n", "notes": "x",
            "assignee": {"gid": "2", "resource_type": "user", "name": "Ada"},
            "custom_fields": [{"gid": "3", "resource_type": "custom_field", "name": "Fix commit", "text_value": "abc", "type": "text"}],
        });
        let v = project(
            &task,
            &["name", "assignee.name", "custom_fields.text_value"],
        );
        assert_eq!(
            v,
            json!({"gid": "1", "name": "n", "assignee": {"gid": "2", "name": "Ada"}, "custom_fields": [{"gid": "3", "text_value": "abc"}]})
        );
        let v = project(&task, &["assignee"]);
        assert_eq!(
            v,
            json!({"gid": "1", "assignee": {"gid": "2", "resource_type": "user", "name": "Ada"}})
        );
    }
}
