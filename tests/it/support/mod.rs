//! Real parts for the tests: the sandbox on 127.0.0.1:0, clients with
//! recorded (not slept) waits, raw HTTP, and the real binary with a config
//! pointing at the sandbox.

use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushgate::asana::{Client, RetryPolicy, Sleeper, Token};
use pushgate::sandbox::{store::TaskRec, Faults, Sandbox};
use serde_json::Value;

pub use pushgate::sandbox::seed;

pub async fn sandbox() -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), None)
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

/// The real binary with a config pointing at a sandbox.
pub struct Bin {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub token: String,
}

impl Bin {
    pub fn new(sb: &Sandbox) -> Bin {
        Bin::with_config(sb, "")
    }

    /// `extra_asana` is appended to the `[asana]` section.
    pub fn with_config(sb: &Sandbox, extra_asana: &str) -> Bin {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pushgate.toml");
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
command = ["true"]
output = "dist"
[crash]
project = "{crash}"
[clusters.beta]
schedule = "0 */15 * * * *"
lock_project = "{lb}"
push_project = "{pb}"
hosts = ["local:/tmp/pushgate-it/beta-1"]
[clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
lock_project = "{lp}"
push_project = "{pp}"
hosts = ["local:/tmp/pushgate-it/prod-1"]
"#,
            url = sb.base_url(),
            ws = seed::WORKSPACE,
            crash = seed::CRASH,
            lb = seed::LOCK_BETA,
            pb = seed::PUSH_BETA,
            lp = seed::LOCK_PROD,
            pp = seed::PUSH_PROD,
        );
        std::fs::write(&config, text).unwrap();
        Bin {
            dir,
            config,
            token: sb.token(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_token(args, &self.token.clone()).await
    }

    pub async fn run_with_token(&self, args: &[&str], token: &str) -> Run {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env(TOKEN_ENV, token)
            .env_remove("RUST_LOG")
            .env_remove("PUSHGATE_CONFIG")
            .output()
            .await
            .expect("pushgate runs");
        Run::from(out)
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
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
