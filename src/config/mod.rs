//! Configuration: TOML text → raw `toml::Table` → validated [`Config`].
//!
//! Validation walks the raw table once and collects every problem, each
//! naming its key (`clusters.prod.schedule: ...`), so an operator fixes a
//! config in one pass. Unknown keys are refused with the nearest valid key
//! suggested. Relative paths are resolved against the config file's
//! directory. Cron expressions are parsed exactly as tokio-cron-scheduler
//! reads them (seconds first); one that restricts both the day of the month
//! and the day of the week is refused (a crontab would read it differently).
//! This module reads no file but the config and a
//! `hosts_file`; the token itself is read by `asana::Token`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use toml::{Table, Value};

use crate::domain::model::{ClusterName, Host, ProjectGid, WorkspaceGid};

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/pushgate.toml";

#[derive(Clone, Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    pub asana: AsanaSettings,
    pub repo: RepoSettings,
    pub build: BuildSettings,
    pub sync: SyncSettings,
    pub notify: Option<NotifySettings>,
    pub crash: Option<CrashSettings>,
    pub clusters: BTreeMap<ClusterName, ClusterSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsanaEndpoint {
    /// The embedded sandbox, started in process with its data in the state dir.
    Sandbox,
    /// A real (or sandbox-compatible) Asana API base URL, ending in `/api/1.0`.
    Url(reqwest::Url),
}

/// Where the Asana token comes from; shown in errors instead of the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env(name) => write!(f, "the environment variable {name}"),
            TokenSource::File(path) => write!(f, "the token file {}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AsanaSettings {
    pub endpoint: AsanaEndpoint,
    /// `None` only with the embedded sandbox, which knows its own token.
    pub token: Option<TokenSource>,
    pub workspace: WorkspaceGid,
    /// Attempts, backoff and timeouts of every Asana call.
    pub retry: RetryPolicy,
}

#[derive(Clone, Debug)]
pub struct RepoSettings {
    /// A URL git understands, or a local path (made absolute against the
    /// config file's directory).
    pub url: String,
    pub branch: String,
    /// An ssh private key for fetching; without it, the ssh agent.
    pub ssh_key: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct BuildSettings {
    pub command: Vec<String>,
    /// Relative to the work tree, never outside it.
    pub output: PathBuf,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub parallelism: usize,
    pub max_failed_hosts: usize,
    pub keep_releases: usize,
    pub after_switch: Option<Vec<String>>,
    pub ssh_config: Option<PathBuf>,
    pub ssh_identity: Option<PathBuf>,
    /// `-o UserKnownHostsFile=` for ssh; without it, ssh's own default.
    pub known_hosts: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub host_timeout: Duration,
    /// Attempts per host and stage after the first one fails.
    pub retries: usize,
}

impl SyncSettings {
    /// What happens when hosts fail, and how many releases stay.
    pub fn policy(&self) -> crate::domain::plan::HostPolicy {
        crate::domain::plan::HostPolicy {
            max_failed: self.max_failed_hosts,
            keep_releases: self.keep_releases,
        }
    }
}

/// ssh's `StrictHostKeyChecking`: `strict` (`yes`, the default) refuses
/// unknown hosts; `accept-new` records a new host's key on first contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// The environment variable holding the incoming-webhook URL (a secret:
    /// never logged, never in errors, removed from children's environment).
    pub slack_webhook_env: String,
    /// How long one message may take, connection included (default 5 s).
    pub timeout: Duration,
    /// Which events are sent (default: [`NOTIFY_DEFAULT`]).
    pub on: Vec<String>,
    /// `started` is posted only for a push still running after this long
    /// (default 30 s; zero: every push), so that a quick push is one
    /// message, not two.
    pub started_after: Duration,
}

/// The events `[notify] on` may name.
pub const NOTIFY_EVENTS: &[&str] = &[
    "started",
    "succeeded",
    "failed",
    "held",
    "frozen",
    "rollback",
];

/// The events sent when `[notify] on` is not given: all but `frozen` (a
/// freeze comes before every scheduled push of the other cluster).
pub const NOTIFY_DEFAULT: &[&str] = &["started", "succeeded", "failed", "held", "rollback"];

#[derive(Clone, Debug)]
pub struct CrashSettings {
    pub project: ProjectGid,
    pub fix_commit_field: String,
    /// The cluster whose runs close crash tasks (default `beta`). After a
    /// push of any other cluster, tasks whose fix it shipped leave that
    /// cluster's lock project.
    pub close_on: ClusterName,
}

/// A cron schedule, seconds first, as tokio-cron-scheduler reads it.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub expr: String,
    pub cron: croner::Cron,
}

#[derive(Clone, Debug)]
pub struct FreezeBefore {
    pub cluster: ClusterName,
    pub duration: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The tip of `repo.branch`.
    Branch,
    /// The commit and artifact another cluster runs (`cluster:beta`).
    Cluster(ClusterName),
}

#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub name: ClusterName,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub lock_project: ProjectGid,
    pub push_project: ProjectGid,
    /// The inline `hosts`; empty when they come from `hosts_file`.
    pub hosts: Vec<Host>,
    /// Read by [`ClusterSettings::read_hosts`] each time hosts are needed.
    pub hosts_file: Option<PathBuf>,
    pub target: Option<PathBuf>,
    pub freeze_before: Option<FreezeBefore>,
    pub source: Source,
    pub min_soak: Option<Duration>,
    /// `waves`, `health_check`, `wave_check` and their keys (`rollout.rs`).
    pub rollout: crate::domain::plan::Rollout,
}

impl ClusterSettings {
    /// The cluster's hosts: inline, or read from `hosts_file` now.
    pub fn read_hosts(&self) -> Result<Vec<Host>, String> {
        match &self.hosts_file {
            Some(path) => read_hosts_file(path),
            None => Ok(self.hosts.clone()),
        }
    }
}

/// One problem with the config, naming its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid config {} ({}):",
            self.path.display(),
            crate::domain::text::count(n, "problem")
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |key: &str, message: String| ConfigError {
            path: path.to_owned(),
            problems: vec![ConfigProblem {
                key: key.to_owned(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail("(file)", format!("cannot read {}: {e}", path.display())))?;
        // Absolute, so that paths stay right whatever directory a child
        // process (the build, rsync) runs in.
        let base = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        Config::parse(&text, &base).map_err(|problems| ConfigError {
            path: path.to_owned(),
            problems,
        })
    }

    /// Validates config text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let raw: Table = toml::from_str(text).map_err(|e| {
            vec![ConfigProblem {
                key: "(toml)".into(),
                message: e.message().to_owned()
                    + &e.span()
                        .map(|s| format!(" (at {})", line_col(text, s.start)))
                        .unwrap_or_default(),
            }]
        })?;
        let mut v = Validator {
            problems: Vec::new(),
            base: base.to_owned(),
        };
        let config = v.config(&raw);
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(v.problems),
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSettings> {
        ClusterName::parse(name).and_then(|n| self.clusters.get(&n))
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {col}")
}

/// The longest duration any key takes: a year and a day. Longer is a typo
/// (`"90y"` for `"90m"`), and would overflow date arithmetic downstream.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// The most attempts (`asana.max_attempts`, `sync.retries`) a config may ask for.
const MAX_ATTEMPTS: i64 = 100;

const TOP_KEYS: &[&str] = &[
    "state_dir",
    "asana",
    "repo",
    "build",
    "sync",
    "notify",
    "crash",
    "clusters",
];
const ASANA_KEYS: &[&str] = &[
    "base_url",
    "token_env",
    "token_file",
    "workspace",
    "max_attempts",
    "retry_delay",
    "timeout",
];
const REPO_KEYS: &[&str] = &["url", "branch", "ssh_key"];
const BUILD_KEYS: &[&str] = &["command", "output", "timeout"];
const SYNC_KEYS: &[&str] = &[
    "parallelism",
    "max_failed_hosts",
    "keep_releases",
    "after_switch",
    "ssh_config",
    "ssh_identity",
    "known_hosts",
    "host_key_policy",
    "host_timeout",
    "retries",
];
const NOTIFY_KEYS: &[&str] = &["slack_webhook_env", "timeout", "on", "started_after"];
const CRASH_KEYS: &[&str] = &["project", "fix_commit_field", "close_on"];
const CLUSTER_KEYS: &[&str] = &[
    "schedule",
    "timezone",
    "lock_project",
    "push_project",
    "hosts",
    "hosts_file",
    "target",
    "freeze_before",
    "source",
    "min_soak",
    "waves",
    "health_check",
    "health_timeout",
    "health_retries",
    "wave_check",
    "wave_soak",
    "max_unhealthy_hosts",
    "auto_rollback",
];
const FREEZE_KEYS: &[&str] = &["cluster", "duration"];

struct Validator {
    problems: Vec<ConfigProblem>,
    base: PathBuf,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Validator {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Refuses keys not in `known`, suggesting the nearest one.
    fn known_keys(&mut self, path: &str, table: &Table, known: &[&str]) {
        for key in table.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let nearest = known
                .iter()
                .map(|k| (strsim::damerau_levenshtein(k, key), *k))
                .filter(|(d, k)| *d <= 2.max(k.len() / 3))
                .min();
            let msg = match nearest {
                Some((_, k)) => format!("unknown key; did you mean `{k}`?"),
                None => format!("unknown key; expected one of: {}", known.join(", ")),
            };
            self.problem(join(path, key), msg);
        }
    }

    fn table<'t>(&mut self, path: &str, parent: &'t Table, key: &str) -> Option<&'t Table> {
        match parent.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                let found = type_name(other);
                self.problem(join(path, key), format!("expected a table, found {found}"));
                None
            }
        }
    }

    fn required_table<'t>(
        &mut self,
        path: &str,
        parent: &'t Table,
        key: &str,
    ) -> Option<&'t Table> {
        if !parent.contains_key(key) {
            self.problem(join(path, key), "missing required section");
            return None;
        }
        self.table(path, parent, key)
    }

    fn string<'t>(&mut self, path: &str, table: &'t Table, key: &str) -> Option<&'t str> {
        match table.get(key)? {
            Value::String(s) => Some(s.as_str()),
            other => {
                let found = type_name(other);
                self.problem(join(path, key), format!("expected a string, found {found}"));
                None
            }
        }
    }

    fn required_string<'t>(&mut self, path: &str, table: &'t Table, key: &str) -> Option<&'t str> {
        if !table.contains_key(key) {
            self.problem(join(path, key), "missing required key");
            return None;
        }
        self.string(path, table, key)
    }

    fn non_negative(&mut self, path: &str, table: &Table, key: &str, min: i64) -> Option<usize> {
        self.integer(path, table, key, min, i64::MAX)
    }

    /// An integer in `min..=max`.
    fn integer(
        &mut self,
        path: &str,
        table: &Table,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<usize> {
        match table.get(key)? {
            Value::Integer(n) if (min..=max).contains(n) => usize::try_from(*n).ok(),
            Value::Integer(n) if *n > max => {
                self.problem(join(path, key), format!("must be at most {max}, found {n}"));
                None
            }
            Value::Integer(n) => {
                self.problem(
                    join(path, key),
                    format!("must be at least {min}, found {n}"),
                );
                None
            }
            other => {
                let found = type_name(other);
                self.problem(
                    join(path, key),
                    format!("expected an integer, found {found}"),
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, table: &Table, key: &str) -> Option<Duration> {
        self.duration_from(path, table, key, false)
    }

    /// A duration that may be zero (`min_soak = "0s"`: no soak).
    fn duration_or_zero(&mut self, path: &str, table: &Table, key: &str) -> Option<Duration> {
        self.duration_from(path, table, key, true)
    }

    fn duration_from(
        &mut self,
        path: &str,
        table: &Table,
        key: &str,
        zero_ok: bool,
    ) -> Option<Duration> {
        let s = self.string(path, table, key)?;
        match humantime::parse_duration(s) {
            Ok(d) if d > MAX_DURATION => {
                self.problem(
                    join(path, key),
                    format!(
                        "`{s}` is longer than {} days: surely a typo",
                        MAX_DURATION.as_secs() / 86_400
                    ),
                );
                None
            }
            Ok(d) if d > Duration::ZERO || zero_ok => Some(d),
            Ok(_) => {
                self.problem(join(path, key), "must be longer than zero");
                None
            }
            Err(e) => {
                self.problem(
                    join(path, key),
                    format!("`{s}` is not a duration ({e}); write e.g. \"90m\" or \"1h 30m\""),
                );
                None
            }
        }
    }

    fn argv(&mut self, path: &str, table: &Table, key: &str) -> Option<Vec<String>> {
        let k = join(path, key);
        match table.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let found = type_name(other);
                            self.problem(
                                format!("{k}[{i}]"),
                                format!("expected a string, found {found}"),
                            );
                        }
                    }
                }
                if items.is_empty() {
                    self.problem(k, "must name a program: the array is empty");
                    return None;
                }
                (out.len() == items.len()).then_some(out)
            }
            Value::String(_) => {
                self.problem(
                    k,
                    "expected an array of arguments, e.g. [\"make\", \"release\"] (no shell is used)",
                );
                None
            }
            other => {
                let found = type_name(other);
                self.problem(k, format!("expected an array of strings, found {found}"));
                None
            }
        }
    }

    fn path(&mut self, path: &str, table: &Table, key: &str) -> Option<PathBuf> {
        let s = self.string(path, table, key)?;
        if s.is_empty() {
            self.problem(join(path, key), "must not be empty");
            return None;
        }
        if s.contains(char::is_control) {
            self.problem(
                join(path, key),
                format!("`{}` must not contain control characters", s.escape_debug()),
            );
            return None;
        }
        Some(self.base.join(s))
    }

    fn gid<T>(
        &mut self,
        path: &str,
        table: &Table,
        key: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.required_string(path, table, key)?;
        let parsed = parse(s);
        if parsed.is_none() {
            self.problem(
                join(path, key),
                format!("`{s}` is not an Asana gid (digits only)"),
            );
        }
        parsed
    }

    fn config(&mut self, raw: &Table) -> Option<Config> {
        self.known_keys("", raw, TOP_KEYS);
        let state_dir = if raw.contains_key("state_dir") {
            self.path("", raw, "state_dir")
        } else {
            self.problem("state_dir", "missing required key");
            None
        };
        let asana = self
            .required_table("", raw, "asana")
            .and_then(|t| self.asana(t));
        let repo = self
            .required_table("", raw, "repo")
            .and_then(|t| self.repo(t));
        let build = self
            .required_table("", raw, "build")
            .and_then(|t| self.build(t));
        let empty = Table::new();
        let sync_table = self.table("", raw, "sync").unwrap_or(&empty);
        let sync = self.sync(sync_table);
        let notify = self.table("", raw, "notify").map(|t| self.notify(t));
        let crash = self.table("", raw, "crash").and_then(|t| self.crash(t));
        let clusters = self
            .required_table("", raw, "clusters")
            .and_then(|t| self.clusters(t));
        let notify = match notify {
            Some(n) => Some(n?),
            None => None,
        };
        if let (Some(c), Some(cl)) = (&crash, &clusters) {
            let explicit = raw
                .get("crash")
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key("close_on"));
            if explicit && !cl.contains_key(&c.close_on) {
                self.problem(
                    "crash.close_on",
                    format!("`{}` is not a configured cluster", c.close_on),
                );
            }
        }
        Some(Config {
            state_dir: state_dir?,
            asana: asana?,
            repo: repo?,
            build: build?,
            sync: sync?,
            notify,
            crash,
            clusters: clusters?,
        })
    }

    fn asana(&mut self, t: &Table) -> Option<AsanaSettings> {
        const P: &str = "asana";
        self.known_keys(P, t, ASANA_KEYS);
        let endpoint = match self.string(P, t, "base_url") {
            None if !t.contains_key("base_url") => Some(AsanaEndpoint::Url(
                reqwest::Url::parse("https://app.asana.com/api/1.0").ok()?,
            )),
            None => None,
            Some("sandbox") => Some(AsanaEndpoint::Sandbox),
            Some(s) => match check_base_url(s) {
                Ok(url) => Some(AsanaEndpoint::Url(url)),
                Err(msg) => {
                    self.problem("asana.base_url", msg);
                    None
                }
            },
        };
        let env = self.string(P, t, "token_env");
        let file = self.path(P, t, "token_file");
        let token = match (env, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    "asana.token_file",
                    "set either token_env or token_file, not both",
                );
                None
            }
            (Some(name), None) => {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    self.problem(
                        "asana.token_env",
                        format!("`{name}` is not an environment variable name"),
                    );
                }
                Some(TokenSource::Env(name.to_owned()))
            }
            (None, Some(path)) => Some(TokenSource::File(path)),
            (None, None) => {
                if endpoint != Some(AsanaEndpoint::Sandbox)
                    && !t.contains_key("token_env")
                    && !t.contains_key("token_file")
                {
                    self.problem("asana.token_env", "missing: set token_env or token_file");
                }
                None
            }
        };
        let workspace = self.gid(P, t, "workspace", WorkspaceGid::parse);
        let mut retry = RetryPolicy::default();
        if t.contains_key("max_attempts") {
            retry.max_attempts = self.integer(P, t, "max_attempts", 1, MAX_ATTEMPTS)? as u32;
        }
        if t.contains_key("retry_delay") {
            retry.base_delay = self.duration(P, t, "retry_delay")?;
        }
        if t.contains_key("timeout") {
            retry.request_timeout = self.duration(P, t, "timeout")?;
        }
        Some(AsanaSettings {
            endpoint: endpoint?,
            token,
            workspace: workspace?,
            retry,
        })
    }

    fn repo(&mut self, t: &Table) -> Option<RepoSettings> {
        self.known_keys("repo", t, REPO_KEYS);
        let url = self.required_string("repo", t, "url");
        if url == Some("") {
            self.problem("repo.url", "must not be empty");
        }
        let branch = if t.contains_key("branch") {
            self.string("repo", t, "branch")
        } else {
            Some("main")
        };
        if let Some(b) = branch {
            if b.is_empty()
                || b.starts_with('-')
                || b.contains("..")
                || b.contains(char::is_whitespace)
            {
                self.problem("repo.branch", format!("`{b}` is not a valid branch name"));
            }
        }
        if url.is_some_and(|u| u.starts_with('-')) {
            self.problem("repo.url", "must not start with `-`");
        }
        let ssh_key = self.path("repo", t, "ssh_key");
        if t.contains_key("ssh_key") && ssh_key.is_none() {
            return None;
        }
        Some(RepoSettings {
            url: self.repo_url(url?),
            branch: branch?.to_owned(),
            ssh_key,
        })
    }

    /// A relative local path is made absolute against the config's
    /// directory; URLs (`scheme://`) and scp-like `host:path` stay as written.
    fn repo_url(&self, url: &str) -> String {
        let scp_like = url
            .split_once(':')
            .is_some_and(|(before, _)| !before.contains('/'));
        if url.contains("://") || scp_like || Path::new(url).is_absolute() {
            url.to_owned()
        } else {
            self.base.join(url).to_string_lossy().into_owned()
        }
    }

    fn build(&mut self, t: &Table) -> Option<BuildSettings> {
        const P: &str = "build";
        self.known_keys(P, t, BUILD_KEYS);
        let command = if t.contains_key("command") {
            self.argv(P, t, "command")
        } else {
            self.problem("build.command", "missing required key");
            None
        };
        let output = self.required_string(P, t, "output").and_then(|s| {
            let p = PathBuf::from(s);
            let inside = !s.is_empty()
                && !s.contains(char::is_control)
                && p.is_relative()
                && p.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::Normal(_) | std::path::Component::CurDir
                    )
                });
            if inside {
                Some(p)
            } else {
                self.problem(
                    "build.output",
                    format!(
                        "`{}` must be a relative path inside the work tree (no `..`, no control characters)",
                        s.escape_debug()
                    ),
                );
                None
            }
        });
        let timeout = if t.contains_key("timeout") {
            self.duration(P, t, "timeout")
        } else {
            Some(Duration::from_secs(20 * 60))
        };
        Some(BuildSettings {
            command: command?,
            output: output?,
            timeout: timeout?,
        })
    }

    fn sync(&mut self, t: &Table) -> Option<SyncSettings> {
        const P: &str = "sync";
        self.known_keys(P, t, SYNC_KEYS);
        let or = |v: Option<usize>, present: bool, d: usize| if present { v } else { Some(d) };
        let parallelism = or(
            self.non_negative(P, t, "parallelism", 1),
            t.contains_key("parallelism"),
            16,
        );
        let max_failed_hosts = or(
            self.non_negative(P, t, "max_failed_hosts", 0),
            t.contains_key("max_failed_hosts"),
            0,
        );
        let keep_releases = or(
            self.non_negative(P, t, "keep_releases", 2),
            t.contains_key("keep_releases"),
            5,
        );
        let after_switch = self.argv(P, t, "after_switch");
        let ssh_config = self.path(P, t, "ssh_config");
        let ssh_identity = self.path(P, t, "ssh_identity");
        let known_hosts = self.path(P, t, "known_hosts");
        for (key, p) in [
            ("ssh_config", &ssh_config),
            ("ssh_identity", &ssh_identity),
            ("known_hosts", &known_hosts),
        ] {
            if p.as_ref()
                .is_some_and(|p| p.to_string_lossy().contains('\''))
            {
                self.problem(
                    join(P, key),
                    "must not contain `'` (it is passed to rsync's ssh command line)",
                );
            }
        }
        if known_hosts
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().contains(char::is_whitespace))
        {
            self.problem(
                "sync.known_hosts",
                "must not contain spaces (ssh reads UserKnownHostsFile as a list of files)",
            );
        }
        let host_key_policy = match self.string(P, t, "host_key_policy") {
            None => Some(HostKeyPolicy::Strict),
            Some("strict") => Some(HostKeyPolicy::Strict),
            Some("accept-new") => Some(HostKeyPolicy::AcceptNew),
            Some(other) => {
                self.problem(
                    "sync.host_key_policy",
                    format!("`{other}`: expected `strict` or `accept-new`"),
                );
                None
            }
        };
        let retries = or(
            self.integer(P, t, "retries", 0, MAX_ATTEMPTS),
            t.contains_key("retries"),
            2,
        );
        let host_timeout = if t.contains_key("host_timeout") {
            self.duration(P, t, "host_timeout")
        } else {
            Some(Duration::from_secs(10 * 60))
        };
        let failed = |k: &str| t.contains_key(k);
        if (failed("after_switch") && after_switch.is_none())
            || (failed("ssh_config") && ssh_config.is_none())
            || (failed("ssh_identity") && ssh_identity.is_none())
            || (failed("known_hosts") && known_hosts.is_none())
        {
            return None;
        }
        Some(SyncSettings {
            parallelism: parallelism?,
            max_failed_hosts: max_failed_hosts?,
            keep_releases: keep_releases?,
            after_switch,
            ssh_config,
            ssh_identity,
            known_hosts,
            host_key_policy: host_key_policy?,
            host_timeout: host_timeout?,
            retries: retries?,
        })
    }

    fn notify(&mut self, t: &Table) -> Option<NotifySettings> {
        self.known_keys("notify", t, NOTIFY_KEYS);
        let env = self.required_string("notify", t, "slack_webhook_env");
        if env.is_some_and(|e| e.is_empty() || e.contains('=') || e.contains('\0')) {
            self.problem(
                "notify.slack_webhook_env",
                "must name an environment variable (not the URL itself)",
            );
            return None;
        }
        if env.is_some_and(|e| e.starts_with("http")) {
            self.problem(
                "notify.slack_webhook_env",
                "must name an environment variable that holds the URL, not the URL: it is a secret",
            );
            return None;
        }
        let timeout = if t.contains_key("timeout") {
            self.duration("notify", t, "timeout")
        } else {
            Some(Duration::from_secs(5))
        };
        let on = match t.get("on") {
            None => Some(NOTIFY_DEFAULT.iter().map(|e| e.to_string()).collect()),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(e) if NOTIFY_EVENTS.contains(&e) => out.push(e.to_owned()),
                        Some(e) => self.problem(
                            format!("notify.on[{i}]"),
                            format!(
                                "`{e}` is not an event; expected some of: {}",
                                NOTIFY_EVENTS.join(", ")
                            ),
                        ),
                        None => self.problem(
                            format!("notify.on[{i}]"),
                            format!("expected a string, found {}", type_name(item)),
                        ),
                    }
                }
                (out.len() == items.len()).then_some(out)
            }
            Some(other) => {
                self.problem(
                    "notify.on",
                    format!(
                        "expected an array of events, e.g. [\"failed\", \"held\"], found {}",
                        type_name(other)
                    ),
                );
                None
            }
        };
        let started_after = match self.string("notify", t, "started_after") {
            None if t.contains_key("started_after") => None,
            None => Some(Duration::from_secs(30)),
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(
                        "notify.started_after",
                        format!("`{s}` is not a duration ({e}); write e.g. \"30s\", or \"0s\" for every push"),
                    );
                    None
                }
            },
        };
        Some(NotifySettings {
            slack_webhook_env: env?.to_owned(),
            timeout: timeout?,
            on: on?,
            started_after: started_after?,
        })
    }

    fn crash(&mut self, t: &Table) -> Option<CrashSettings> {
        self.known_keys("crash", t, CRASH_KEYS);
        let project = self.gid("crash", t, "project", ProjectGid::parse);
        let field = if t.contains_key("fix_commit_field") {
            self.string("crash", t, "fix_commit_field")
        } else {
            Some("Fix commit")
        };
        if field == Some("") {
            self.problem("crash.fix_commit_field", "must not be empty");
        }
        let close_on = match self.string("crash", t, "close_on") {
            None => ClusterName::parse("beta"),
            Some(s) => {
                let c = ClusterName::parse(s);
                if c.is_none() {
                    self.problem("crash.close_on", format!("`{s}` is not a cluster name"));
                }
                c
            }
        };
        Some(CrashSettings {
            project: project?,
            fix_commit_field: field?.to_owned(),
            close_on: close_on?,
        })
    }

    fn clusters(&mut self, t: &Table) -> Option<BTreeMap<ClusterName, ClusterSettings>> {
        if t.is_empty() {
            self.problem(
                "clusters",
                "define at least one cluster, e.g. [clusters.beta]",
            );
            return None;
        }
        let names: Vec<&str> = t.keys().map(String::as_str).collect();
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, value) in t {
            let path = format!("clusters.{name}");
            let Some(cname) = ClusterName::parse(name) else {
                self.problem(path, "a cluster name holds lowercase letters, digits, `-` and `_`, starting with a letter");
                ok = false;
                continue;
            };
            let Value::Table(ct) = value else {
                self.problem(
                    path,
                    format!("expected a table, found {}", type_name(value)),
                );
                ok = false;
                continue;
            };
            match self.cluster(&path, cname.clone(), ct, &names) {
                Some(c) => {
                    out.insert(cname, c);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn cluster(
        &mut self,
        p: &str,
        name: ClusterName,
        t: &Table,
        names: &[&str],
    ) -> Option<ClusterSettings> {
        self.known_keys(p, t, CLUSTER_KEYS);
        let schedule = self.required_string(p, t, "schedule").and_then(|expr| {
            let cron = crate::domain::decide::parse_cron(expr);
            // The daemon reads AND, a system crontab OR: refuse, so that
            // `crontab.example` users and daemon users get the same pushes.
            let both = crate::domain::decide::days_both_restricted(expr);
            match (cron, both) {
                (Ok(cron), None) => Some(Schedule {
                    expr: expr.to_owned(),
                    cron,
                }),
                (Ok(_), Some((dom, dow))) => {
                    self.problem(
                        join(p, "schedule"),
                        format!("`{expr}` restricts both the day of the month (`{dom}`) and the day of the week (`{dow}`): pushgate would push only on days that match both, a system crontab on days that match either; set one of the two fields to `*`"),
                    );
                    None
                }
                (Err(e), _) => {
                    self.problem(
                        join(p, "schedule"),
                        format!("`{expr}` is not a cron expression with seconds first, e.g. \"0 */15 * * * *\" ({e})"),
                    );
                    None
                }
            }
        });
        let timezone = match self.string(p, t, "timezone") {
            None if !t.contains_key("timezone") => Some(Tz::UTC),
            None => None,
            Some(s) => match s.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    self.problem(
                        join(p, "timezone"),
                        format!("`{s}` is not an IANA time zone, e.g. \"America/Los_Angeles\""),
                    );
                    None
                }
            },
        };
        let lock_project = self.gid(p, t, "lock_project", ProjectGid::parse);
        let push_project = self.gid(p, t, "push_project", ProjectGid::parse);
        let (hosts, hosts_file) = self.hosts(p, t);
        let target = self.string(p, t, "target").and_then(|s| {
            let path = PathBuf::from(s);
            if s.contains(char::is_control) {
                self.problem(
                    join(p, "target"),
                    format!("`{}` must not contain control characters", s.escape_debug()),
                );
                None
            } else if path.is_absolute()
                && !path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                Some(path)
            } else {
                self.problem(
                    join(p, "target"),
                    format!("`{s}` must be an absolute path on the hosts (no `..`)"),
                );
                None
            }
        });
        if let Some(hosts) = &hosts {
            if target.is_none()
                && !t.contains_key("target")
                && hosts.iter().any(|h| matches!(h, Host::Ssh { .. }))
            {
                self.problem(
                    join(p, "target"),
                    "missing: required when the cluster has ssh hosts",
                );
            }
        }
        let other_cluster = |v: &mut Validator, key: &str, s: &str| -> Option<ClusterName> {
            if s == name.as_str() {
                v.problem(key, format!("`{s}` names this cluster itself"));
                None
            } else if names.contains(&s) {
                ClusterName::parse(s)
            } else {
                v.problem(
                    key,
                    format!(
                        "`{s}` is not a configured cluster (have: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        };
        let freeze_before = match t.get("freeze_before") {
            None => Some(None),
            Some(Value::Table(ft)) => {
                let fp = join(p, "freeze_before");
                self.known_keys(&fp, ft, FREEZE_KEYS);
                let cluster = self
                    .required_string(&fp, ft, "cluster")
                    .and_then(|s| other_cluster(self, &join(&fp, "cluster"), s));
                let duration = if ft.contains_key("duration") {
                    self.duration(&fp, ft, "duration")
                } else {
                    self.problem(join(&fp, "duration"), "missing required key");
                    None
                };
                match (cluster, duration) {
                    (Some(cluster), Some(duration)) => {
                        Some(Some(FreezeBefore { cluster, duration }))
                    }
                    _ => None,
                }
            }
            Some(other) => {
                self.problem(
                    join(p, "freeze_before"),
                    format!("expected a table like {{ cluster = \"prod\", duration = \"90m\" }}, found {}", type_name(other)),
                );
                None
            }
        };
        let source = match self.string(p, t, "source") {
            None if !t.contains_key("source") => Some(Source::Branch),
            None => None,
            Some("branch") => Some(Source::Branch),
            Some(s) => match s.strip_prefix("cluster:") {
                Some(c) => other_cluster(self, &join(p, "source"), c).map(Source::Cluster),
                None => {
                    self.problem(
                        join(p, "source"),
                        format!("`{s}` is not a source; write \"branch\" or \"cluster:NAME\""),
                    );
                    None
                }
            },
        };
        let min_soak = if t.contains_key("min_soak") {
            let d = self.duration_or_zero(p, t, "min_soak");
            if !matches!(source, Some(Source::Cluster(_))) && source.is_some() {
                self.problem(
                    join(p, "min_soak"),
                    "only applies with source = \"cluster:NAME\"",
                );
            }
            Some(d?)
        } else {
            None
        };
        let rollout = self.rollout(p, t);
        Some(ClusterSettings {
            name,
            rollout: rollout?,
            schedule: schedule?,
            timezone: timezone?,
            lock_project: lock_project?,
            push_project: push_project?,
            hosts: hosts?,
            hosts_file,
            target,
            freeze_before: freeze_before?,
            source: source?,
            min_soak,
        })
    }

    fn hosts(&mut self, p: &str, t: &Table) -> (Option<Vec<Host>>, Option<PathBuf>) {
        match (t.get("hosts"), t.contains_key("hosts_file")) {
            (Some(_), true) => {
                self.problem(
                    join(p, "hosts_file"),
                    "set either hosts or hosts_file, not both",
                );
                (None, None)
            }
            (None, false) => {
                self.problem(join(p, "hosts"), "missing: set hosts or hosts_file");
                (None, None)
            }
            (Some(Value::Array(items)), false) => {
                let key = join(p, "hosts");
                let mut hosts = Vec::new();
                let mut ok = !items.is_empty();
                if items.is_empty() {
                    self.problem(key.clone(), "a cluster needs at least one host");
                }
                for (i, item) in items.iter().enumerate() {
                    let parsed = match item {
                        Value::String(s) => Host::parse(s),
                        other => Err(format!("expected a string, found {}", type_name(other))),
                    };
                    match parsed {
                        Ok(h) => hosts.push(h),
                        Err(e) => {
                            self.problem(format!("{key}[{i}]"), e);
                            ok = false;
                        }
                    }
                }
                (ok.then_some(hosts), None)
            }
            (Some(other), false) => {
                self.problem(
                    join(p, "hosts"),
                    format!("expected an array of hosts, found {}", type_name(other)),
                );
                (None, None)
            }
            // Read when hosts are needed (a push, `check`), not at load:
            // `status` and a dry run must not depend on it.
            (None, true) => match self.path(p, t, "hosts_file") {
                Some(path) => (Some(Vec::new()), Some(path)),
                None => (None, None),
            },
        }
    }
}

/// Reads a hosts file: one host per line; blank lines and `#` lines ignored.
pub fn read_hosts_file(path: &Path) -> Result<Vec<Host>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match Host::parse(line) {
            Ok(h) => hosts.push(h),
            Err(e) => errors.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if hosts.is_empty() {
        return Err(format!("{} lists no host", path.display()));
    }
    Ok(hosts)
}

/// `https` is required unless the host is loopback.
/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`):
/// the one loopback test, for Asana's base URL, the webhook and the page.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub fn check_base_url(s: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a URL ({e}), nor \"sandbox\""))?;
    let loopback = is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{s}`: https is required for a non-loopback Asana host"
            ))
        }
        other => return Err(format!("`{s}`: unsupported scheme `{other}`")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}`: put no credentials in the URL; use token_env or token_file",
            url.host_str().unwrap_or("")
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{s}`: a base URL takes no query or fragment"));
    }
    Ok(url)
}

mod rollout;
#[cfg(test)]
mod tests;

/// How patiently calls are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out: the call fails.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}
