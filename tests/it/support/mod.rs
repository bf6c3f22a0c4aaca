//! Real parts for the tests: the sandbox on 127.0.0.1:0, clients with
//! recorded (not slept) waits, raw HTTP, and the real binary with a config
//! pointing at the sandbox; in `hosts`, real ssh hosts in network namespaces.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushgate::adapters::asana::{Client, Sleeper, Token};
use pushgate::config::RetryPolicy;
use pushgate::sandbox::{store::TaskRec, Faults, Sandbox};
use serde_json::Value;

pub use pushgate::sandbox::seed;

pub mod apps;
pub mod hosts;

/// Creates an incomplete task assigned to the sandbox's user in `project`
/// (a lock, in a lock project); returns its gid.
pub async fn add_lock(sb: &Sandbox, project: &str, name: &str) -> String {
    let (s, t) = Raw::new(sb)
        .post(
            "/tasks",
            serde_json::json!({"data": {"name": name, "assignee": "me", "projects": [project]}}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    t["data"]["gid"].as_str().unwrap().to_owned()
}

/// Completes a task.
pub async fn complete(sb: &Sandbox, gid: &str) {
    let (s, t) = Raw::new(sb)
        .put(
            &format!("/tasks/{gid}"),
            serde_json::json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
}

/// A Slack-compatible incoming webhook on loopback that keeps every
/// message's `text`. Its path holds a secret, as a real webhook URL does.
pub struct Webhook {
    pub url: String,
    pub secret: String,
    messages: Arc<Mutex<Vec<String>>>,
    arrived: Arc<tokio::sync::Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Answers every POST with `status`.
    pub async fn start(status: u16) -> Webhook {
        use axum::routing::post;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let tell = arrived.clone();
        let secret = format!("T0SECRET/B0SECRET/{:016x}", fastrand::u64(..));
        let app = axum::Router::new().route(
            &format!("/services/{secret}"),
            post(move |axum::Json(v): axum::Json<Value>| {
                let kept = kept.clone();
                let tell = tell.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(v["text"].as_str().unwrap_or_default().to_owned());
                    tell.notify_waiters();
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        if status == 200 { "ok" } else { "no_service" },
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Webhook {
            url: format!("http://{addr}/services/{secret}"),
            secret,
            messages,
            arrived,
            server,
        }
    }

    /// Waits until at least `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.messages.lock().unwrap().len() >= n {
                return;
            }
            arrived.await;
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn sandbox() -> Sandbox {
    Sandbox::start_strict("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("sandbox starts")
}

/// A client whose waits are recorded instead of slept.
pub fn client(sb: &Sandbox) -> (Client, Arc<Mutex<Vec<Duration>>>) {
    client_with_token(sb, &sb.token())
}

pub fn client_with_token(sb: &Sandbox, token: &str) -> (Client, Arc<Mutex<Vec<Duration>>>) {
    client_with(sb, token, RetryPolicy::default())
}

pub fn client_with(
    sb: &Sandbox,
    token: &str,
    policy: RetryPolicy,
) -> (Client, Arc<Mutex<Vec<Duration>>>) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let url = reqwest::Url::parse(&sb.base_url()).unwrap();
    let client = Client::new(
        &url,
        Token::new(token.to_owned(), "the environment variable ASANA_TOKEN"),
        policy,
        Sleeper::Record(waits.clone()),
    )
    .unwrap();
    (client, waits)
}

pub fn faults(sb: &Sandbox, f: impl FnOnce(&mut Faults)) {
    let mut faults = Faults::default();
    f(&mut faults);
    sb.set_faults(faults);
}

/// Puts `n` tasks straight into a project's store (fast seeding).
pub fn seed_tasks(
    sb: &Sandbox,
    project: &str,
    n: usize,
    completed: bool,
    name: &str,
) -> Vec<String> {
    sb.with_data(|d| {
        let now = chrono::Utc::now();
        (0..n)
            .map(|i| {
                let gid = d.new_gid();
                d.tasks.insert(
                    gid.clone(),
                    TaskRec {
                        gid: gid.clone(),
                        name: format!("{name} {i}"),
                        notes: String::new(),
                        html_notes: None,
                        completed,
                        completed_at: completed.then_some(now),
                        created_at: now,
                        modified_at: now,
                        assignee: None,
                        workspace: seed::WORKSPACE.into(),
                        projects: vec![project.into()],
                        values: Default::default(),
                        stories: Vec::new(),
                    },
                );
                d.projects.get_mut(project).unwrap().tasks.push(gid.clone());
                gid
            })
            .collect()
    })
    .unwrap()
}

/// Raw HTTP against the sandbox, with its token unless told otherwise.
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Raw {
    pub fn new(sb: &Sandbox) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            base: sb.base_url(),
            token: sb.token(),
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("sandbox answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PUT", path, Some(body)).await
    }
}

pub fn error_message(v: &Value) -> String {
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub const TOKEN_ENV: &str = "PUSHGATE_IT_TOKEN";

/// A real git repository in a temp dir, committed to with git2.
pub struct Repo {
    pub path: PathBuf,
    repo: git2::Repository,
}

impl Repo {
    pub fn init(path: &Path) -> Repo {
        let repo = git2::Repository::init_opts(
            path,
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .unwrap();
        Repo {
            path: path.to_owned(),
            repo,
        }
    }

    /// Writes the files (path → bytes) and commits them; returns the full sha.
    pub fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (name, body) in files {
            let p = self.path.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
        }
        self.commit_all(message)
    }

    pub fn commit_all(&self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test Author", "test@example.com").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }
}

/// What a test changes in the config `Bin` writes.
#[derive(Default)]
pub struct Setup {
    /// Appended to `[asana]`.
    pub asana: String,
    /// The `[sync]` section's body, after `retries = 0` and, unless it sets
    /// its own, `host_timeout = "60s"`.
    pub sync: String,
    /// `[build]`'s `command`, as TOML (default: copy `app/` into `dist/`,
    /// count builds in `builds.log`, dump the environment to `build-env.txt`).
    pub build_command: Option<String>,
    /// beta's hosts (default: three `local:` hosts under `hosts/`).
    pub beta_hosts: Option<Vec<String>>,
    /// Appended to `[clusters.beta]`.
    pub beta: String,
}

/// The real binary with a config pointing at a sandbox, a real repository
/// (`repo/`, one commit) and three `local:` hosts for beta (`hosts/beta-N`).
pub struct Bin {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub token: String,
    pub repo: Repo,
    /// The first commit.
    pub first: String,
}

impl Bin {
    pub fn new(sb: &Sandbox) -> Bin {
        Bin::with(sb, Setup::default())
    }

    pub fn with(sb: &Sandbox, setup: Setup) -> Bin {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let repo = Repo::init(&dir.path().join("repo"));
        let first = repo.commit(
            &[
                ("app/index.html", b"v1\n"),
                ("app/lib/util.js", b"// util\n"),
            ],
            "Initial app",
        );
        let config = dir.path().join("pushgate.toml");
        let build = setup.build_command.unwrap_or_else(|| {
            format!(
                r#"["sh", "-c", "mkdir -p dist && cp -R app/. dist/ && echo built >> '{d}/builds.log' && env > '{d}/build-env.txt'"]"#
            )
        });
        let hosts = setup.beta_hosts.unwrap_or_else(|| {
            (1..=3)
                .map(|i| format!("local:{d}/hosts/beta-{i}"))
                .collect()
        });
        let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
        // A key twice in one table is a TOML error.
        let host_timeout = if setup.sync.contains("host_timeout") {
            ""
        } else {
            "host_timeout = \"60s\""
        };
        let text = format!(
            r#"state_dir = "state"
[asana]
base_url = "{url}"
token_env = "{TOKEN_ENV}"
workspace = "{ws}"
retry_delay = "1ms"
{extra_asana}
[repo]
url = "repo"
[build]
command = {build}
output = "dist"
timeout = "60s"
[sync]
{host_timeout}
retries = 0
{sync}
[crash]
project = "{crash}"
[clusters.beta]
schedule = "0 */15 * * * *"
lock_project = "{lb}"
push_project = "{pb}"
hosts = [{hosts}]
{beta}
[clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
lock_project = "{lp}"
push_project = "{pp}"
hosts = ["local:{d}/hosts/prod-1"]
"#,
            url = sb.base_url(),
            ws = seed::WORKSPACE,
            crash = seed::CRASH,
            lb = seed::LOCK_BETA,
            pb = seed::PUSH_BETA,
            lp = seed::LOCK_PROD,
            pp = seed::PUSH_PROD,
            extra_asana = setup.asana,
            sync = setup.sync,
            beta = setup.beta,
            hosts = hosts.join(", "),
        );
        std::fs::write(&config, text).unwrap();
        Bin {
            dir,
            config,
            token: sb.token(),
            repo,
            first,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// beta-N's `current` link, as written (`releases/<id>`), if any.
    pub fn current(&self, n: usize) -> Option<String> {
        std::fs::read_link(self.path(&format!("hosts/beta-{n}/current")))
            .ok()
            .map(|p| p.display().to_string())
    }

    /// The release names kept on beta-N.
    pub fn releases(&self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(&format!("hosts/beta-{n}/releases")))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// How many times the build command ran.
    pub fn builds(&self) -> usize {
        std::fs::read_to_string(self.path("builds.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_token(args, &self.token.clone()).await
    }

    pub async fn run_with_token(&self, args: &[&str], token: &str) -> Run {
        self.run_env(args, token, &[]).await
    }

    /// The binary with `args`, the token, and these extra variables (a
    /// failpoint, a PATH).
    pub async fn run_env(&self, args: &[&str], token: &str, vars: &[(&str, &str)]) -> Run {
        run_pushgate(&self.config, token, args, vars).await
    }

    /// Rewrites the config's lines that start with `key = `.
    pub fn set_config_line(&self, key: &str, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let prefix = format!("{key} = ");
        let fixed: Vec<&str> = text
            .lines()
            .map(|l| if l.starts_with(&prefix) { line } else { l })
            .collect();
        std::fs::write(&self.config, fixed.join("\n")).unwrap();
    }
    /// Appends TOML to the config (a new section at its end).
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&self.config, text).unwrap();
    }
}

/// The tasks of a project, in project order.
pub fn tasks(sb: &Sandbox, project: &str) -> Vec<TaskRec> {
    sb.with_data(|d| {
        d.projects[project]
            .tasks
            .iter()
            .map(|g| d.tasks[g].clone())
            .collect()
    })
    .unwrap()
}

/// One task as the sandbox holds it.
pub fn task(sb: &Sandbox, gid: &str) -> TaskRec {
    sb.with_data(|d| d.tasks[gid].clone()).unwrap()
}

/// A task's comments, oldest first.
/// What pushgate said on a task, one entry per comment it wrote: the
/// outbox sends comments that queued up behind a request in flight as one
/// (and a push's switch comment with its close's), a blank line apart, so
/// a story is split where a paragraph begins one of pushgate's comments.
/// [`raw_comments`] gives the stories as they are.
pub fn comments(t: &TaskRec) -> Vec<String> {
    said(raw_comments(t))
}

/// Comment texts split as [`comments`] splits them.
pub fn said(texts: impl IntoIterator<Item = String>) -> Vec<String> {
    const BEGINS: [&str; 7] = [
        "build: ", "stage: ", "switch: ", "pushed ", "wave ", "push ", "this ",
    ];
    let mut out = Vec::new();
    for text in texts {
        let mut cur: Option<String> = None;
        for p in text.split("\n\n") {
            match cur.as_mut() {
                Some(c) if !BEGINS.iter().any(|b| p.starts_with(b)) => {
                    c.push_str("\n\n");
                    c.push_str(p);
                }
                _ => out.extend(cur.replace(p.to_owned())),
            }
        }
        out.extend(cur);
    }
    out
}

/// A task's comments as Asana holds them.
pub fn raw_comments(t: &TaskRec) -> Vec<String> {
    t.stories
        .iter()
        .filter(|s| s.subtype == "comment_added")
        .map(|s| s.text.clone())
        .collect()
}

/// Every file under `dir` (relative path → bytes), for comparing trees.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: o.status.code().unwrap_or(-1),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// `pushgate run` on `config`, its log as JSON lines on a pipe.
pub fn spawn_daemon(config: &Path, token: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json", "run", "--grace", "60s"])
        .env(TOKEN_ENV, token)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What `systemctl stop` sends.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// The real binary on `config` with `args`, the token, and these extra
/// variables (a failpoint, a PATH); nothing else from the test's
/// environment that would change what it does.
pub async fn run_pushgate(config: &Path, token: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env(TOKEN_ENV, token)
        .env_remove("RUST_LOG")
        .env_remove("PUSHGATE_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove(pushgate::adapters::failpoint::ENV)
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("pushgate runs");
    Run::from(out)
}
