//! The Asana REST client: the only code that knows Asana's JSON.
//!
//! Every read names its `opt_fields`; every list sends `limit=100` and
//! follows `next_page` to the end. Calls retry on 429 (honouring
//! `Retry-After`), 5xx and transport errors with bounded exponential backoff
//! and jitter. A POST that creates something (a task, a comment) is sent
//! again only when the failure proves it was not applied (429, connection
//! refused) or after a re-read shows it is not there; see [`Probe`].
//!
//! Every call goes through the client's [`limit::Limiter`]: one client per
//! process, shared by every app, keeps Asana's documented limits.
//!
//! It does not decide anything: callers turn its answers into facts.

mod dto;
mod error;
pub mod limit;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

pub use dto::{
    envelope, error_message, CustomFieldSetting, CustomFieldValue, Envelope, Event, EventResource,
    Named, Story, Task, User,
};
pub use error::AsanaError;

use crate::config::{RetryPolicy, TokenSource};
use crate::domain::model::{ProjectGid, TaskGid, WorkspaceGid};

/// The `opt_fields` each read asks for.
pub mod fields {
    /// What the gate and `status` need of a lock task.
    pub const LOCK_TASK: &str = "name,completed,completed_at,assignee.name,permalink_url,notes,custom_fields.name,custom_fields.text_value";
    /// A crash project's task: a lock task's fields, and its subtype (an
    /// approval task there is never taken for a crash task: completing it
    /// would approve it).
    pub const CRASH_TASK: &str = "name,completed,completed_at,assignee.name,permalink_url,notes,custom_fields.name,custom_fields.text_value,resource_subtype";
    /// A task as `unlock` and the push record read it.
    pub const TASK: &str = "name,notes,completed,completed_at,assignee.name,permalink_url,projects.name,custom_fields.name,custom_fields.text_value";
    /// A task with its custom fields' gids, for writing one.
    pub const TASK_FIELDS: &str = "name,notes,completed,permalink_url,custom_fields.name,custom_fields.text_value,custom_fields.resource_subtype";
    /// Enough to recognise a task we may already have created.
    pub const PROBE_TASK: &str = "name,notes";
    pub const STORY: &str = "text,html_text,resource_subtype,created_at,created_by";
    /// An approval task as the approval gate reads it (all declared for
    /// `GET /tasks/{gid}`; the decider's e-mail comes from `GET /users/{gid}`).
    pub const APPROVAL_TASK: &str = "name,notes,completed,completed_at,completed_by,approval_status,resource_subtype,permalink_url";
    pub const USER: &str = "name,email";
    pub const PROJECT: &str = "name,workspace.name,archived";
    pub const CUSTOM_FIELD_SETTING: &str = "custom_field.name,custom_field.resource_subtype";
}

/// The Asana token: a secret, with a description of where it came from for
/// error messages.
pub struct Token {
    secret: SecretString,
    source: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {}, [REDACTED])", self.source)
    }
}

impl Token {
    pub fn new(secret: String, source: impl Into<String>) -> Token {
        Token {
            secret: SecretString::from(secret),
            source: source.into(),
        }
    }

    /// Reads the token from the environment or a file. A file readable or
    /// writable by group or others is refused.
    pub fn read(source: &TokenSource) -> Result<Token, AsanaError> {
        let value = match source {
            TokenSource::Env(name) => std::env::var(name)
                .map_err(|_| AsanaError::Token(format!("{source} is not set")))?,
            TokenSource::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path)
                    .map_err(|e| AsanaError::Token(format!("cannot read {source}: {e}")))?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(AsanaError::Token(format!(
                        "{source} is accessible by group or others (mode {mode:04o}); run: chmod 600 {}",
                        path.display()
                    )));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| AsanaError::Token(format!("cannot read {source}: {e}")))?
            }
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(AsanaError::Token(format!("{source} is empty")));
        }
        if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(AsanaError::Token(format!(
                "{source} holds spaces or control characters"
            )));
        }
        Ok(Token::new(value, source.to_string()))
    }

    /// The names of this process's environment variables that hold the
    /// token, so that child processes can be started without them.
    pub fn env_vars_holding(&self) -> Vec<std::ffi::OsString> {
        let secret = self.secret.expose_secret().as_bytes();
        std::env::vars_os()
            .filter(|(_, v)| {
                use std::os::unix::ffi::OsStrExt;
                let v = v.as_bytes();
                !secret.is_empty() && v.windows(secret.len()).any(|w| w == secret)
            })
            .map(|(k, _)| k)
            .collect()
    }
}

/// How the client waits between attempts. Tests record the waits instead of
/// sleeping, so a 30 s `Retry-After` costs them nothing.
#[derive(Clone, Debug, Default)]
pub enum Sleeper {
    #[default]
    Tokio,
    Record(Arc<Mutex<Vec<Duration>>>),
}

impl Sleeper {
    async fn sleep(&self, d: Duration) {
        match self {
            Sleeper::Tokio => tokio::time::sleep(d).await,
            Sleeper::Record(waits) => waits.lock().unwrap_or_else(|e| e.into_inner()).push(d),
        }
    }
}

/// Request counters, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// What to ask for the tasks of a project.
#[derive(Clone, Copy, Debug)]
pub enum CompletedSince {
    /// Incomplete tasks only (`completed_since=now`).
    Now,
    /// Incomplete tasks and those completed since then.
    Since(DateTime<Utc>),
    /// Every task (the parameter is not sent).
    All,
}

#[derive(Clone, Debug, Default)]
pub struct NewTask {
    pub name: String,
    /// The notes; with `html_notes`, their plain text (not sent: it is
    /// how a task created before an ambiguous failure is recognised).
    pub notes: Option<String>,
    pub html_notes: Option<String>,
    pub projects: Vec<ProjectGid>,
    pub workspace: Option<WorkspaceGid>,
    /// `"me"`, an e-mail address or a user gid.
    pub assignee: Option<String>,
    /// Custom field gid → text value.
    pub custom_fields: Vec<(String, String)>,
    /// `approval` for an approval task; `None`: a default task.
    pub resource_subtype: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskUpdate {
    pub completed: Option<bool>,
    pub name: Option<String>,
    pub notes: Option<String>,
    /// Custom field gid → text value (`None` clears it).
    pub custom_fields: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug)]
pub enum Comment {
    Text(String),
    /// Rich text: valid XML inside `<body>`, Asana's tags only.
    Html(String),
}

/// How to tell, after an ambiguous failure, whether a create already happened.
enum Probe<'a> {
    /// Safe to send again as it is (reads, PUT, addProject, removeProject).
    Idempotent,
    /// A task with this name and notes in this project.
    Task(&'a NewTask),
    /// A comment with this text on this task.
    Story(&'a TaskGid, &'a Comment),
}

struct Request<'a> {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    probe: Probe<'a>,
}

impl<'a> Request<'a> {
    fn get(path: String, opt_fields: &str) -> Self {
        Request {
            method: Method::GET,
            path,
            query: vec![("opt_fields", opt_fields.to_owned())],
            body: None,
            probe: Probe::Idempotent,
        }
    }
    fn write(method: Method, path: String, data: Value, probe: Probe<'a>) -> Self {
        Request {
            method,
            path,
            query: Vec::new(),
            body: Some(json!({ "data": data })),
            probe,
        }
    }
}

/// The response of one successful call.
struct Page {
    data: Value,
    next_offset: Option<String>,
    sync: Option<String>,
    has_more: bool,
}

/// One call of `GET /events`.
#[derive(Clone, Debug)]
pub struct Events {
    pub events: Vec<Event>,
    /// Ask with this next time.
    pub sync: String,
    pub has_more: bool,
}

/// A cheap-to-clone handle on one Asana API with one token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Token,
    policy: RetryPolicy,
    sleeper: Sleeper,
    stats: Stats,
    limiter: limit::Limiter,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("token", &self.inner.token)
            .finish()
    }
}

impl Client {
    /// A client with a paid workspace's limits.
    pub fn new(
        base: &Url,
        token: Token,
        policy: RetryPolicy,
        sleeper: Sleeper,
    ) -> Result<Client, AsanaError> {
        Client::with_limits(base, token, policy, sleeper, limit::Limits::default())
    }

    /// A client that keeps these limits (`[asana]`'s).
    pub fn with_limits(
        base: &Url,
        token: Token,
        policy: RetryPolicy,
        sleeper: Sleeper,
        limits: limit::Limits,
    ) -> Result<Client, AsanaError> {
        let http = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(policy.connect_timeout)
            .user_agent(concat!("pushgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AsanaError::Token(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: base.as_str().trim_end_matches('/').to_owned(),
                token,
                policy,
                sleeper,
                stats: Stats::default(),
                limiter: limit::Limiter::new(limits),
            }),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    // ---- reads ----

    /// `GET /users/me`: whose token this is.
    pub async fn me(&self) -> Result<User, AsanaError> {
        let page = self
            .call(&Request::get("/users/me".into(), fields::USER))
            .await?;
        decode(&Method::GET, "/users/me", page.data)
    }

    /// `GET /users/{gid}` (`opt_fields=name,email`): who decided an approval.
    pub async fn user(&self, gid: &str) -> Result<User, AsanaError> {
        if gid.is_empty() || !gid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AsanaError::Decode {
                method: Method::GET,
                path: "/users/{gid}".into(),
                detail: format!("malformed user gid {:?}", gid.escape_debug().to_string()),
            });
        }
        let path = format!("/users/{gid}");
        let page = self.call(&Request::get(path.clone(), fields::USER)).await?;
        decode(&Method::GET, &path, page.data)
    }

    pub async fn get_project(&self, project: &ProjectGid) -> Result<Named, AsanaError> {
        let path = format!("/projects/{project}");
        let page = self
            .call(&Request::get(path.clone(), fields::PROJECT))
            .await?;
        decode(&Method::GET, &path, page.data)
    }

    /// All tasks of a project (see [`CompletedSince`]), every page.
    pub async fn project_tasks(
        &self,
        project: &ProjectGid,
        since: CompletedSince,
        opt_fields: &str,
    ) -> Result<Vec<Task>, AsanaError> {
        let mut query = Vec::new();
        match since {
            CompletedSince::Now => query.push(("completed_since", "now".to_owned())),
            CompletedSince::Since(t) => query.push((
                "completed_since",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )),
            CompletedSince::All => {}
        }
        query.push(("opt_fields", opt_fields.to_owned()));
        self.list(format!("/projects/{project}/tasks"), query).await
    }

    pub async fn get_task(&self, task: &TaskGid, opt_fields: &str) -> Result<Task, AsanaError> {
        let path = format!("/tasks/{task}");
        let page = self.call(&Request::get(path.clone(), opt_fields)).await?;
        decode(&Method::GET, &path, page.data)
    }

    pub async fn stories(&self, task: &TaskGid) -> Result<Vec<Story>, AsanaError> {
        self.list(
            format!("/tasks/{task}/stories"),
            vec![("opt_fields", fields::STORY.to_owned())],
        )
        .await
    }

    /// `GET /events?resource=&sync=`: what changed in `resource` since
    /// `sync` (`None`: start). A stale or missing token is
    /// [`AsanaError::SyncExpired`] with a fresh one.
    pub async fn events(&self, resource: &str, sync: Option<&str>) -> Result<Events, AsanaError> {
        let mut query = vec![("resource", resource.to_owned())];
        if let Some(s) = sync {
            query.push(("sync", s.to_owned()));
        }
        query.push((
            "opt_fields",
            "action,resource,parent,type,created_at,user".to_owned(),
        ));
        let req = Request {
            method: Method::GET,
            path: "/events".into(),
            query,
            body: None,
            probe: Probe::Idempotent,
        };
        let page = self.call(&req).await?;
        let events: Vec<Event> = decode(&Method::GET, "/events", page.data)?;
        Ok(Events {
            events,
            sync: page.sync.unwrap_or_default(),
            has_more: page.has_more,
        })
    }

    /// The custom fields a project gives its tasks.
    pub async fn custom_field_settings(
        &self,
        project: &ProjectGid,
    ) -> Result<Vec<CustomFieldSetting>, AsanaError> {
        self.list(
            format!("/projects/{project}/custom_field_settings"),
            vec![("opt_fields", fields::CUSTOM_FIELD_SETTING.to_owned())],
        )
        .await
    }

    // ---- writes ----

    /// `POST /tasks`. Make name + notes unique (a run id, a time): after an
    /// ambiguous failure they are how an already-created task is recognised.
    pub async fn create_task(&self, new: &NewTask) -> Result<Task, AsanaError> {
        let mut data = Map::new();
        data.insert("name".into(), json!(new.name));
        // One or the other (Asana takes one): with `html_notes`, `notes`
        // is its plain text, what the probe below recognises the task by.
        match (&new.html_notes, &new.notes) {
            (Some(h), _) => {
                data.insert("html_notes".into(), json!(h));
            }
            (None, Some(n)) => {
                data.insert("notes".into(), json!(n));
            }
            (None, None) => {}
        }
        if !new.projects.is_empty() {
            let gids: Vec<&str> = new.projects.iter().map(ProjectGid::as_str).collect();
            data.insert("projects".into(), json!(gids));
        }
        if let Some(w) = &new.workspace {
            data.insert("workspace".into(), json!(w.as_str()));
        }
        if let Some(a) = &new.assignee {
            data.insert("assignee".into(), json!(a));
        }
        if let Some(st) = &new.resource_subtype {
            data.insert("resource_subtype".into(), json!(st));
        }
        if !new.custom_fields.is_empty() {
            let cf: Map<String, Value> = new
                .custom_fields
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            data.insert("custom_fields".into(), Value::Object(cf));
        }
        let mut req = Request::write(
            Method::POST,
            "/tasks".into(),
            Value::Object(data),
            Probe::Task(new),
        );
        req.query.push(("opt_fields", fields::TASK.to_owned()));
        let page = self.call(&req).await?;
        decode(&Method::POST, "/tasks", page.data)
    }

    /// `PUT /tasks/{gid}`: only the fields set change.
    pub async fn update_task(
        &self,
        task: &TaskGid,
        update: &TaskUpdate,
    ) -> Result<Task, AsanaError> {
        let mut data = Map::new();
        if let Some(c) = update.completed {
            data.insert("completed".into(), json!(c));
        }
        if let Some(n) = &update.name {
            data.insert("name".into(), json!(n));
        }
        if let Some(n) = &update.notes {
            data.insert("notes".into(), json!(n));
        }
        if !update.custom_fields.is_empty() {
            let cf: Map<String, Value> = update
                .custom_fields
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            data.insert("custom_fields".into(), Value::Object(cf));
        }
        let path = format!("/tasks/{task}");
        let mut req = Request::write(
            Method::PUT,
            path.clone(),
            Value::Object(data),
            Probe::Idempotent,
        );
        req.query.push(("opt_fields", fields::TASK.to_owned()));
        let page = self.call(&req).await?;
        decode(&Method::PUT, &path, page.data)
    }

    /// `POST /tasks/{gid}/stories`: a comment authored by the token's user.
    pub async fn add_comment(
        &self,
        task: &TaskGid,
        comment: &Comment,
    ) -> Result<Story, AsanaError> {
        let data = match comment {
            Comment::Text(t) => json!({ "text": t }),
            Comment::Html(h) => json!({ "html_text": h }),
        };
        let path = format!("/tasks/{task}/stories");
        let mut req = Request::write(
            Method::POST,
            path.clone(),
            data,
            Probe::Story(task, comment),
        );
        req.query.push(("opt_fields", fields::STORY.to_owned()));
        let page = self.call(&req).await?;
        decode(&Method::POST, &path, page.data)
    }

    /// `POST /tasks/{gid}/addProject`; adding twice changes nothing, so it is retried freely.
    pub async fn add_project(
        &self,
        task: &TaskGid,
        project: &ProjectGid,
    ) -> Result<(), AsanaError> {
        let req = Request::write(
            Method::POST,
            format!("/tasks/{task}/addProject"),
            json!({ "project": project.as_str() }),
            Probe::Idempotent,
        );
        self.call(&req).await.map(drop)
    }

    /// `POST /tasks/{gid}/removeProject`; idempotent as well.
    pub async fn remove_project(
        &self,
        task: &TaskGid,
        project: &ProjectGid,
    ) -> Result<(), AsanaError> {
        let req = Request::write(
            Method::POST,
            format!("/tasks/{task}/removeProject"),
            json!({ "project": project.as_str() }),
            Probe::Idempotent,
        );
        self.call(&req).await.map(drop)
    }

    // ---- transport ----

    /// Every page of a list, `limit=100`, following `next_page`. An offset
    /// Asana no longer accepts (400 mid-walk) restarts the walk once.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<T>, AsanaError> {
        let mut restarted = false;
        'walk: loop {
            let mut out = Vec::new();
            let mut offset: Option<String> = None;
            loop {
                let mut q = query.clone();
                q.push(("limit", "100".to_owned()));
                if let Some(o) = &offset {
                    q.push(("offset", o.clone()));
                }
                let req = Request {
                    method: Method::GET,
                    path: path.clone(),
                    query: q,
                    body: None,
                    probe: Probe::Idempotent,
                };
                let page = match self.call(&req).await {
                    Err(e) if offset.is_some() && !restarted && e.status() == Some(400) => {
                        tracing::warn!(path = %path, "pagination offset refused; restarting from the first page");
                        restarted = true;
                        continue 'walk;
                    }
                    other => other?,
                };
                let items: Vec<T> = decode(&Method::GET, &path, page.data)?;
                out.extend(items);
                match page.next_offset {
                    Some(o) => offset = Some(o),
                    None => return Ok(out),
                }
            }
        }
    }

    /// One logical call: attempts, backoff, and probes for creates.
    async fn call(&self, req: &Request<'_>) -> Result<Page, AsanaError> {
        let policy = &self.inner.policy;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.once(req).await {
                Ok(page) => return Ok(page),
                Err(e) => e,
            };
            if !err.is_transient() {
                return Err(err);
            }
            if attempt >= policy.max_attempts {
                return Err(AsanaError::Exhausted {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            if !err.known_not_applied() {
                if let Some(page) = Box::pin(self.probe(&req.probe)).await? {
                    tracing::info!(path = %req.path, "the failed request had been applied; not sending it again");
                    return Ok(page);
                }
            }
            let delay = match err.retry_after() {
                Some(d) if d > policy.max_retry_after => return Err(err),
                Some(d) => d,
                None => backoff(policy, attempt),
            };
            tracing::warn!(path = %req.path, attempt, delay_ms = delay.as_millis() as u64, error = %err, "Asana call failed; retrying");
            self.inner.sleeper.sleep(delay).await;
        }
    }

    /// After an ambiguous failure of a create, looks for what it would have
    /// created. `None`: not there, send again.
    async fn probe(&self, probe: &Probe<'_>) -> Result<Option<Page>, AsanaError> {
        match probe {
            Probe::Idempotent => Ok(None),
            Probe::Task(new) => {
                let Some(project) = new.projects.first() else {
                    // Without a project there is nothing to list; do not risk a duplicate.
                    return Err(AsanaError::Decode {
                        method: Method::POST,
                        path: "/tasks".into(),
                        detail: "the create may or may not have been applied, and a task without a project cannot be looked up".into(),
                    });
                };
                let tasks = self
                    .project_tasks(project, CompletedSince::Now, fields::PROBE_TASK)
                    .await?;
                let found = tasks.into_iter().rev().find(|t| {
                    t.name == new.name
                        && t.notes.as_deref().unwrap_or("") == new.notes.as_deref().unwrap_or("")
                });
                match found {
                    Some(t) => {
                        let gid = TaskGid::parse(&t.gid).ok_or_else(|| AsanaError::Decode {
                            method: Method::GET,
                            path: format!("/projects/{project}/tasks"),
                            detail: format!("malformed task gid {:?}", t.gid),
                        })?;
                        let full = self.get_task(&gid, fields::TASK).await?;
                        Ok(Some(Page {
                            data: serde_json::to_value(full).unwrap_or(Value::Null),
                            next_offset: None,
                            sync: None,
                            has_more: false,
                        }))
                    }
                    None => Ok(None),
                }
            }
            Probe::Story(task, comment) => {
                let stories = self.stories(task).await?;
                let found = stories.into_iter().rev().find(|s| {
                    s.resource_subtype.as_deref() == Some("comment_added")
                        && match comment {
                            Comment::Text(t) => s.text.as_deref() == Some(t.as_str()),
                            Comment::Html(h) => s.html_text.as_deref() == Some(h.as_str()),
                        }
                });
                Ok(found.map(|s| Page {
                    data: serde_json::to_value(s).unwrap_or(Value::Null),
                    next_offset: None,
                    sync: None,
                    has_more: false,
                }))
            }
        }
    }

    /// Exactly one HTTP exchange.
    async fn once(&self, req: &Request<'_>) -> Result<Page, AsanaError> {
        let inner = &self.inner;
        let slot = inner.limiter.slot(req.method != Method::GET).await;
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.exchange(req).await;
        drop(slot);
        if let Err(e) = &result {
            inner.stats.errors.fetch_add(1, Ordering::Relaxed);
            if e.status() == Some(429) {
                inner.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                // Every caller of this token waits it out, not only this one.
                // (A test's recording sleeper waits for nobody.)
                if let (Some(d), Sleeper::Tokio) = (e.retry_after(), &inner.sleeper) {
                    if d <= inner.policy.max_retry_after {
                        inner.limiter.quiet_for(d);
                    }
                }
            }
        }
        result
    }

    async fn exchange(&self, req: &Request<'_>) -> Result<Page, AsanaError> {
        let inner = &self.inner;
        let url = format!("{}{}", inner.base, req.path);
        let mut builder = inner
            .http
            .request(req.method.clone(), &url)
            .bearer_auth(inner.token.secret.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json");
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let transport = |e: reqwest::Error| AsanaError::Transport {
            method: req.method.clone(),
            path: req.path.clone(),
            detail: describe_transport(&e),
            before_send: e.is_connect(),
        };
        tracing::debug!(method = %req.method, path = %req.path, "asana request");
        let resp = builder.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            let Envelope {
                data,
                next_offset,
                sync,
                has_more,
            } = envelope(&bytes).map_err(|detail| AsanaError::Decode {
                method: req.method.clone(),
                path: req.path.clone(),
                detail,
            })?;
            return Ok(Page {
                data,
                next_offset,
                sync,
                has_more,
            });
        }
        if status == StatusCode::PRECONDITION_FAILED {
            if let Some(sync) = dto::fresh_sync(&bytes) {
                return Err(AsanaError::SyncExpired { sync });
            }
        }
        let message = error_message(&bytes);
        if status == StatusCode::UNAUTHORIZED {
            return Err(AsanaError::Unauthorized {
                method: req.method.clone(),
                path: req.path.clone(),
                token_source: inner.token.source.clone(),
                message,
            });
        }
        Err(AsanaError::Status {
            method: req.method.clone(),
            path: req.path.clone(),
            status: status.as_u16(),
            message,
            retry_after,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    method: &Method,
    path: &str,
    data: Value,
) -> Result<T, AsanaError> {
    serde_json::from_value(data).map_err(|e| AsanaError::Decode {
        method: method.clone(),
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Equal jitter: half the exponential step, plus up to half again at random.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    let half = exp / 2;
    half + half.mul_f64(fastrand::f64())
}

/// reqwest's errors say "error sending request for url (...)"; add the cause.
fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the answer"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    match causes.last() {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            let d = backoff(&p, attempt);
            assert!(d <= p.max_delay, "{attempt}: {d:?}");
            let floor =
                (p.base_delay.saturating_mul(1 << (attempt - 1).min(16))).min(p.max_delay) / 2;
            assert!(d >= floor, "{attempt}: {d:?} < {floor:?}");
        }
    }

    #[test]
    fn error_bodies_become_messages() {
        assert_eq!(
            error_message(br#"{"errors":[{"message":"a"},{"message":"b"}]}"#),
            "a; b"
        );
        assert_eq!(error_message(b"<html>\n"), "<html>\\n");
        assert_eq!(error_message(b""), "(no message)");
    }

    #[test]
    fn token_debug_never_shows_the_secret() {
        let t = Token::new("s3cr3t-token".into(), "the environment variable X");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
