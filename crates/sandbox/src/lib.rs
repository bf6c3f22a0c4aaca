//! The embedded Asana-compatible server (SPEC §6): what the demo, the tests
//! and anyone without an Asana account run pushgate against.
//!
//! It follows Asana's documented behaviour for what pushgate and Asana's
//! official clients use (docs/asana.md lists it, each behaviour with its
//! pointer into the spec), keeps its data in a JSON file written
//! atomically, and can be told to misbehave (429 storms, 5xx, latency,
//! dropped connections, 403 on a project) from Rust tests or through
//! `/_sandbox/faults`. Several people use it, each with a token
//! (`Sandbox::token_of`), so a test can act as an approver. By default it is
//! as lenient as Asana about `opt_fields`; `Sandbox::set_strict` makes it
//! accept only each operation's declared enum, which is how pushgate's own
//! tests prove its client sends only what the spec declares. Its permalinks
//! open read-only HTML pages. It binds loopback only and its API always
//! requires a bearer token. It is not a general Asana emulator: no tags,
//! webhooks, batch, attachments or teams; text custom fields only.

mod events;
mod fields;
mod http;
mod pages;
mod richtext;
// Generated tables; tests read some parts the server does not.
#[allow(clippy::all, dead_code)]
mod spec;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use store::{seed, Data};

use events::EventLog;

/// Misbehaviour on demand. Counts (`fail_next`, `drop_next`) are used up one
/// request at a time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every Nth request (counted from the start) gets 429 with `Retry-After`.
    pub rate_limit_every: Option<u64>,
    pub retry_after_secs: u64,
    /// The next K requests fail with `fail_status`.
    pub fail_next: u32,
    pub fail_status: u16,
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// The next K requests see their connection dropped mid-answer...
    pub drop_next: u32,
    /// ...after the request was applied (true) or before (false).
    pub drop_after_apply: bool,
    /// Requests touching these projects (or their tasks) get 403.
    pub forbidden_projects: Vec<String>,
    /// Only requests matching `METHOD /path` (path segments after
    /// `/api/1.0`, `*` for any one segment, e.g. `POST /tasks/*/stories`)
    /// meet the faults above; every other request passes untouched.
    pub only: Option<String>,
    /// Spend `latency_ms` after the request was applied instead of before:
    /// a write that times out has happened all the same.
    pub latency_after_apply: bool,
    /// Asana's concurrency limits, per token: at most this many GETs, and
    /// this many writes (POST, PUT, DELETE), in flight; one more gets 429
    /// with `Retry-After` (`API-FACTS.md` §3: 50 and 15).
    pub concurrent_reads: usize,
    pub concurrent_writes: usize,
}

impl Faults {
    /// Whether a request meets the faults (see `only`).
    pub fn applies_to(&self, method: &str, path: &str) -> bool {
        let Some(pattern) = &self.only else {
            return true;
        };
        let (m, p) = pattern.split_once(' ').unwrap_or(("*", pattern));
        if m != "*" && !m.eq_ignore_ascii_case(method) {
            return false;
        }
        let want: Vec<&str> = p.trim_matches('/').split('/').collect();
        let got: Vec<&str> = path.trim_matches('/').split('/').collect();
        want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_limit_every: None,
            retry_after_secs: 1,
            fail_next: 0,
            fail_status: 500,
            latency_ms: 0,
            drop_next: 0,
            drop_after_apply: false,
            forbidden_projects: Vec::new(),
            only: None,
            latency_after_apply: false,
            concurrent_reads: 50,
            concurrent_writes: 15,
        }
    }
}

/// One request as the sandbox saw it (path relative to `/api/1.0`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
}

const MAX_LOG: usize = 100_000;

pub(crate) struct Shared {
    data: Mutex<Data>,
    path: Option<PathBuf>,
    origin: String,
    faults: Mutex<Faults>,
    counter: AtomicU64,
    log: Mutex<Vec<RequestRecord>>,
    clock: Mutex<Option<DateTime<Utc>>>,
    /// Strict mode: `opt_fields` must be in each operation's declared enum.
    strict: AtomicBool,
    events: Mutex<EventLog>,
    /// Requests in flight per person: (reads, writes).
    in_flight: Mutex<std::collections::HashMap<String, (usize, usize)>>,
    /// 429s answered.
    rate_limited: AtomicU64,
    /// The most writes one person had in flight at once since the log
    /// was last cleared.
    most_writes: AtomicU64,
    /// Told after every request handled: [`Sandbox::until`] looks again.
    answered: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, Data> {
        lock(&self.data)
    }

    fn now(&self) -> DateTime<Utc> {
        lock(&self.clock).unwrap_or_else(Utc::now)
    }

    fn set_now(&self, now: Option<DateTime<Utc>>) {
        *lock(&self.clock) = now;
    }

    /// Applies a change and persists it; a change that fails leaves the data
    /// as it was.
    fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Data) -> Result<T, http::ApiError>,
    ) -> Result<T, http::ApiError> {
        let mut guard = self.data();
        let mut draft = guard.clone();
        let out = f(&mut draft)?;
        if let Some(path) = &self.path {
            draft.save(path).map_err(|e| {
                tracing::error!(error = %e, "sandbox: cannot save its data file");
                http::ApiError::from_io(e)
            })?;
        }
        let events = std::mem::take(&mut draft.pending_events);
        lock(&self.events).append(events);
        *guard = draft;
        Ok(out)
    }

    /// A resource's events after `sync`: `Ok(Err(fresh))` when the token is
    /// missing or dead (the reader gets 412 and `fresh`).
    fn read_events(
        &self,
        resource: &str,
        sync: Option<&str>,
        limit: usize,
    ) -> Result<Result<events::Page, String>, http::ApiError> {
        // Tokens are made before the log is locked: reading the kernel's
        // generator can fail, and a failure is a 500, not a panic.
        let tokens = [new_secret()?, new_secret()?];
        let mut tokens = tokens.into_iter();
        let mut next = || tokens.next().unwrap_or_default();
        let now = self.now();
        Ok(lock(&self.events)
            .read(resource, sync, limit, now, &mut next)
            .map_err(|stale| stale.fresh))
    }

    fn expire_sync_tokens(&self) {
        lock(&self.events).expire_all();
    }

    fn log(&self, r: RequestRecord) {
        let mut log = lock(&self.log);
        if log.len() < MAX_LOG {
            log.push(r);
        }
    }

    fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    /// Whether `path` names a task that belongs to `project`.
    fn task_in_project(&self, path: &str, project: &str) -> bool {
        let mut segs = path.split('/');
        while let Some(seg) = segs.next() {
            if seg == "tasks" {
                if let Some(gid) = segs.next() {
                    return self
                        .data()
                        .tasks
                        .get(gid)
                        .is_some_and(|t| t.projects.iter().any(|p| p == project));
                }
            }
        }
        false
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh random token, from the kernel's generator.
fn new_token() -> anyhow::Result<String> {
    Ok(format!(
        "sandbox-{}",
        random_hex(20).context("cannot read /dev/urandom for a sandbox token")?
    ))
}

/// A sync token for the Events API.
fn new_secret() -> Result<String, http::ApiError> {
    random_hex(16).map_err(http::ApiError::from_io)
}

/// A person in the sandbox, as `Sandbox::users` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Person {
    pub gid: String,
    pub name: String,
    pub email: String,
    /// Their bearer token: a request with it acts as them.
    pub token: String,
}

impl Sandbox {
    /// Serves on `listen` (loopback only). With `data`, state is loaded from
    /// and saved to that file; a missing file is seeded.
    pub async fn start(listen: SocketAddr, data: Option<&Path>) -> anyhow::Result<Sandbox> {
        if !listen.ip().is_loopback() {
            anyhow::bail!("the sandbox serves plain HTTP and binds loopback only; {listen} is not a loopback address");
        }
        let loaded = match data {
            Some(p) => Data::load(p)?,
            None => None,
        };
        let fresh = loaded.is_none();
        let mut store = match loaded {
            Some(d) => d,
            None => Data::seeded(new_token()?, Utc::now()),
        };
        let upgraded = store.add_seed_people(new_token)?;
        if let (true, Some(p)) = (fresh || upgraded, data) {
            store
                .save(p)
                .with_context(|| format!("cannot write the sandbox data file {}", p.display()))?;
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            data: Mutex::new(store),
            path: data.map(Path::to_owned),
            origin: format!("http://{addr}"),
            faults: Mutex::new(Faults::default()),
            counter: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            clock: Mutex::new(None),
            strict: AtomicBool::new(false),
            events: Mutex::new(EventLog::default()),
            in_flight: Mutex::new(std::collections::HashMap::new()),
            rate_limited: AtomicU64::new(0),
            most_writes: AtomicU64::new(0),
            answered: tokio::sync::Notify::new(),
        });
        let app = http::router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Sandbox {
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The API base URL, e.g. `http://127.0.0.1:4321/api/1.0`.
    pub fn base_url(&self) -> String {
        format!("{}/api/1.0", self.shared.origin)
    }

    /// As `start`, in strict mode (see `set_strict`): what pushgate's own
    /// end-to-end tests use.
    pub async fn start_strict(listen: SocketAddr, data: Option<&Path>) -> anyhow::Result<Sandbox> {
        let sb = Sandbox::start(listen, data).await?;
        sb.set_strict(true);
        Ok(sb)
    }

    /// The bot's token: pushgate's own user, `me`.
    pub fn token(&self) -> String {
        self.shared.data().token.clone()
    }

    /// The token of the person with this e-mail (case-insensitive); a
    /// request carrying it acts as them (`me`, story authors,
    /// `completed_by`). E.g. `sb.token_of(seed::APPROVER_EMAIL)`.
    pub fn token_of(&self, email: &str) -> Option<String> {
        self.users()
            .into_iter()
            .find(|p| p.email.eq_ignore_ascii_case(email))
            .map(|p| p.token)
    }

    /// Everyone who can log in, the bot first.
    pub fn users(&self) -> Vec<Person> {
        let d = self.shared.data();
        let mut out: Vec<Person> = d
            .users
            .values()
            .filter_map(|u| {
                let token = if u.gid == d.me {
                    d.token.clone()
                } else {
                    u.token.clone()?
                };
                Some(Person {
                    gid: u.gid.clone(),
                    name: u.name.clone(),
                    email: u.email.clone(),
                    token,
                })
            })
            .collect();
        out.sort_by_key(|p| p.gid != d.me);
        out
    }

    /// Adds a person with a token of their own (saved with the data).
    pub fn add_user(&self, name: &str, email: &str) -> anyhow::Result<Person> {
        let token = new_token()?;
        let gid = self.with_data(|d| {
            if d.users
                .values()
                .any(|u| u.email.eq_ignore_ascii_case(email))
            {
                anyhow::bail!("the sandbox already has a user with the e-mail {email}");
            }
            let gid = d.new_gid();
            d.users.insert(
                gid.clone(),
                store::UserRec {
                    gid: gid.clone(),
                    name: name.into(),
                    email: email.into(),
                    token: Some(token.clone()),
                },
            );
            Ok(gid)
        })??;
        Ok(Person {
            gid,
            name: name.into(),
            email: email.into(),
            token,
        })
    }

    /// Strict mode: `opt_fields` must be in each operation's declared enum
    /// (a path Asana would resolve but the enum does not list is a 400).
    /// Off by default (Asana-lenient); also `PUT /_sandbox/strict`.
    pub fn set_strict(&self, strict: bool) {
        self.shared.strict.store(strict, Ordering::SeqCst);
    }

    /// Every Events API sync token dies: the next `GET /events` with one
    /// gets 412 and a fresh token. Also `POST /_sandbox/events/expire`.
    pub fn expire_sync_tokens(&self) {
        self.shared.expire_sync_tokens();
    }

    /// The one-line JSON the `sandbox` command prints first.
    pub fn info(&self) -> serde_json::Value {
        let users: serde_json::Map<String, serde_json::Value> = self
            .users()
            .into_iter()
            .map(|p| {
                (
                    p.email.clone(),
                    json!({ "gid": p.gid, "name": p.name, "token": p.token }),
                )
            })
            .collect();
        let d = self.shared.data();
        let workspace = d.workspaces.keys().next().cloned().unwrap_or_default();
        let projects: serde_json::Map<String, serde_json::Value> = d
            .projects
            .values()
            .map(|p| (p.name.clone(), json!(p.gid)))
            .collect();
        let fields: serde_json::Map<String, serde_json::Value> = d
            .fields
            .values()
            .map(|f| (f.name.clone(), json!(f.gid)))
            .collect();
        json!({
            "base_url": self.base_url(),
            "token": d.token,
            "workspace": workspace,
            "projects": projects,
            "custom_fields": fields,
            "users": users,
        })
    }

    /// How many requests the sandbox answered 429 (any reason).
    pub fn rate_limited(&self) -> u64 {
        self.shared
            .rate_limited
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests();
        self.shared
            .most_writes
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most writes (POST, PUT, DELETE) one person had in flight at
    /// once since the request log was last cleared: 1 for a client that
    /// waits for each answer before its next write.
    pub fn most_writes_in_flight(&self) -> u64 {
        self.shared
            .most_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Pins the sandbox's clock (timestamps it writes); `None` follows real time.
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        self.shared.set_now(now);
    }

    /// Reads or changes the data directly (seeding tests); changes are saved.
    pub fn with_data<R>(&self, f: impl FnOnce(&mut Data) -> R) -> anyhow::Result<R> {
        let mut d = self.shared.data();
        let out = f(&mut d);
        if let Some(p) = &self.shared.path {
            d.save(p)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(out)
    }

    /// Waits until `cond` holds of the data, looking again after every
    /// request the sandbox has handled: how a test waits for another
    /// process's Asana write without a clock.
    pub async fn until(&self, cond: impl Fn(&Data) -> bool) {
        loop {
            let answered = self.shared.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if cond(&self.shared.data()) {
                return;
            }
            answered.await;
        }
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
