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

use crate::domain::model::{AppName, ClusterName, Host, ProjectGid, WorkspaceGid};

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/pushgate.toml";

/// The whole config file: what the apps share, and every app.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// The state directory's root (the sandbox's data lives here).
    pub state_dir: PathBuf,
    pub asana: AsanaSettings,
    /// `max_concurrent_pushes`: how many pushes the daemon runs at once,
    /// over every app (`None`: the bastion's cores).
    pub max_concurrent_pushes: Option<usize>,
    /// Every app, with the shared `[sync]` and `[notify]` merged in.
    pub apps: BTreeMap<AppName, Config>,
    /// The file has `[apps.NAME]` tables; without them it is one app,
    /// exactly as SPEC §4 (its state directory is the root itself).
    pub has_apps: bool,
    /// `[http]`: the on-call page of `pushgate run --http ADDR`.
    pub http: HttpSettings,
}

/// `[http]`: what the on-call page (`pushgate run --http ADDR`) needs
/// besides its address. Without `token_file` the page only listens on a
/// loopback address; with it, every request needs the token, wherever the
/// page listens (`docs/operations.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// A file holding the page's token (mode 0600, like `asana.token_file`;
    /// read when the daemon starts).
    pub token_file: Option<PathBuf>,
}

/// One app's config: everything a run of it needs. A config without
/// `[apps]` is one of these, named after its repository.
#[derive(Clone, Debug)]
pub struct Config {
    pub app: AppName,
    /// The file has `[apps]`: views and Asana name this app beside its
    /// clusters (`web/beta`).
    pub many_apps: bool,
    /// This app's state directory: the root for a config without apps,
    /// `STATE_DIR/apps/NAME/` for each app of one with them.
    pub state_dir: PathBuf,
    /// `state_dir` as written: what every app shares (the requests' state,
    /// the sandbox's data).
    pub root_dir: PathBuf,
    pub asana: AsanaSettings,
    pub repo: RepoSettings,
    /// `repo.web`: links to the code, for people.
    pub web: Option<WebLinks>,
    pub build: BuildSettings,
    pub sync: SyncSettings,
    pub notify: Option<NotifySettings>,
    pub crash: Option<CrashSettings>,
    pub clusters: BTreeMap<ClusterName, ClusterSettings>,
    /// `[requests]`: the daemon acts on tasks people write in a project.
    pub requests: Option<RequestsSettings>,
}

/// `[requests]` (`docs/requests.md`).
#[derive(Clone, Debug)]
pub struct RequestsSettings {
    /// The Asana project people write requests in.
    pub project: ProjectGid,
    /// Whose requests run (user gids or e-mails); everyone else's are refused.
    pub allowed: Vec<crate::domain::approval::Approver>,
    /// How often the daemon looks (default 60s).
    pub poll: Duration,
    /// A request not done after this long is closed (default 24h).
    pub max_age: Duration,
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
    /// What the one client of the process keeps to: Asana's limits.
    pub limits: AsanaLimits,
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

/// `repo.web`: URL templates into the repository's web view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebLinks {
    /// With `{sha}`, e.g. `https://git.example.com/org/app/commit/{sha}`.
    pub commit: String,
    /// With `{from}` and `{to}`, e.g. `…/compare/{from}...{to}`.
    pub compare: Option<String>,
}

impl WebLinks {
    pub fn commit_url(&self, sha: &str) -> String {
        self.commit.replace("{sha}", sha)
    }
    pub fn compare_url(&self, from: &str, to: &str) -> Option<String> {
        self.compare
            .as_ref()
            .map(|c| c.replace("{from}", from).replace("{to}", to))
    }
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
    /// How releases reach the hosts (`sync.transport`).
    pub transport: Transport,
    /// `sync.ssh_ciphers`: ssh's cipher preference when the `ssh_config`
    /// sets none (`None`: pushgate's default, from the bastion's CPU).
    pub ssh_ciphers: Option<String>,
}

/// `sync.transport`: rsync from the bastion to every host (the default),
/// or a BitTorrent swarm of the hosts seeded by the bastion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Rsync,
    BitTorrent {
        /// `sync.tracker`: the announce URL, as the hosts reach it.
        tracker: reqwest::Url,
        /// `sync.run_tracker` (default true): pushgate runs Debian's
        /// `opentracker` on the URL's port for the stage.
        run_tracker: bool,
    },
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
    /// `[clusters.NAME.approval]`: pushes wait for a person's approval.
    pub approval: Option<ApprovalSettings>,
    /// `waves`, `health_check`, `wave_check` and their keys (`rollout.rs`).
    pub rollout: crate::domain::plan::Rollout,
}

/// `[clusters.NAME.approval]` (`docs/approvals.md`).
#[derive(Clone, Debug)]
pub struct ApprovalSettings {
    /// The Asana project the approval tasks are created in.
    pub project: ProjectGid,
    /// Who may approve (gids or e-mails); empty: anyone but pushgate.
    pub approvers: Vec<crate::domain::approval::Approver>,
    /// An approval older than this does not count (default 24h).
    pub max_age: Duration,
    /// Without a freeze towards this cluster, ask this long before each
    /// scheduled push (default 90m).
    pub request_before: Duration,
    /// A scheduled push held only by the approval runs when it arrives,
    /// up to this long after its scheduled time (default 2h).
    pub window: Duration,
    pub allow_self_approval: bool,
}

impl ApprovalSettings {
    /// The rules' view of it.
    pub fn policy(&self) -> crate::domain::approval::ApprovalPolicy {
        crate::domain::approval::ApprovalPolicy {
            approvers: self.approvers.clone(),
            max_age: chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX),
            allow_self_approval: self.allow_self_approval,
        }
    }
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

impl ConfigFile {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
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
        ConfigFile::parse(&text, &base).map_err(|problems| ConfigError {
            path: path.to_owned(),
            problems,
        })
    }

    /// Validates config text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<ConfigFile, Vec<ConfigProblem>> {
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
        let config = v.file(&raw);
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(v.problems),
        }
    }

    /// The app a command is about: the named one, or the only one. With
    /// several apps and no name, the error says which there are.
    pub fn app(&self, name: Option<&str>) -> Result<&Config, String> {
        let known = || {
            self.apps
                .keys()
                .map(AppName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(n) => AppName::parse(n)
                .and_then(|a| self.apps.get(&a))
                .ok_or_else(|| {
                    format!(
                        "unknown app `{}` (configured: {})",
                        crate::domain::text::printable(n, 40),
                        known()
                    )
                }),
            None if self.apps.len() == 1 => {
                Ok(self.apps.values().next().unwrap_or_else(|| unreachable!()))
            }
            None => Err(format!(
                "this config has {} apps ({}): say which with --app NAME",
                self.apps.len(),
                known()
            )),
        }
    }
}

impl Config {
    /// Reads a config file that holds one app (every config without
    /// `[apps]` does) and returns that app.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = ConfigFile::load(path)?;
        file.app(None).cloned().map_err(|message| ConfigError {
            path: path.to_owned(),
            problems: vec![ConfigProblem {
                key: "apps".into(),
                message,
            }],
        })
    }

    /// [`ConfigFile::parse`] for text with one app.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
        let file = ConfigFile::parse(text, base)?;
        file.app(None).cloned().map_err(|message| {
            vec![ConfigProblem {
                key: "apps".into(),
                message,
            }]
        })
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSettings> {
        ClusterName::parse(name).and_then(|n| self.clusters.get(&n))
    }

    /// How people see one of this app's clusters: `beta`, or `web/beta`
    /// in a config of several apps.
    pub fn label(&self, cluster: &ClusterName) -> String {
        if self.many_apps {
            format!("{}/{cluster}", self.app)
        } else {
            cluster.to_string()
        }
    }

    /// The app, when views should name it.
    pub fn named_app(&self) -> Option<AppName> {
        self.many_apps.then(|| self.app.clone())
    }

    /// A command line about this app for people to run (`pushgate --app
    /// web rollback beta` in a config of several apps).
    pub fn cli(&self, args: &str) -> String {
        crate::domain::model::cli(self.named_app().as_ref(), args)
    }
}

/// What every app of a file shares.
#[derive(Clone, Copy)]
struct Top<'a> {
    asana: Option<&'a AsanaSettings>,
    requests: Option<&'a RequestsSettings>,
    root: &'a Path,
}

/// An app's view of the shared `[sync]` and `[notify]`: merged with its
/// own keys, and its own keys alone (for where problems are reported).
struct AppParts {
    sync: Table,
    app_sync: Option<Table>,
    notify: Option<Table>,
    app_notify: Option<Table>,
}

/// `shared` with `own`'s keys over it.
fn merged(shared: &Table, own: Option<&Table>) -> Table {
    let mut out = shared.clone();
    if let Some(own) = own {
        for (k, v) in own {
            out.insert(k.clone(), v.clone());
        }
    }
    out
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
    "max_concurrent_pushes",
    "repo",
    "build",
    "sync",
    "notify",
    "crash",
    "clusters",
    "requests",
    "http",
];
/// The top of a config with `[apps.NAME]` tables: what the apps share.
const TOP_KEYS_APPS: &[&str] = &[
    "state_dir",
    "asana",
    "max_concurrent_pushes",
    "allow_shared",
    "sync",
    "notify",
    "requests",
    "http",
    "apps",
];
/// What an `[apps.NAME]` table holds.
const APP_KEYS: &[&str] = &["repo", "build", "sync", "notify", "crash", "clusters"];
const REQUESTS_KEYS: &[&str] = &["project", "allowed", "poll", "max_age"];
const HTTP_KEYS: &[&str] = &["token_file"];
const ASANA_KEYS: &[&str] = &[
    "base_url",
    "token_env",
    "token_file",
    "workspace",
    "max_attempts",
    "retry_delay",
    "timeout",
    "requests_per_minute",
    "concurrent_reads",
    "concurrent_writes",
];
const REPO_KEYS: &[&str] = &["url", "branch", "ssh_key", "web"];
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
    "transport",
    "tracker",
    "run_tracker",
    "ssh_ciphers",
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
    "approval",
    "waves",
    "health_check",
    "health_timeout",
    "health_retries",
    "wave_check",
    "wave_soak",
    "max_unhealthy_hosts",
    "auto_rollback",
];
const APPROVAL_KEYS: &[&str] = &[
    "project",
    "approvers",
    "max_age",
    "request_before",
    "window",
    "allow_self_approval",
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

    fn file(&mut self, raw: &Table) -> Option<ConfigFile> {
        let has_apps = raw.contains_key("apps");
        // With apps, an app's own section at the top gets its own message.
        let top: Vec<&str> = match has_apps {
            true => TOP_KEYS_APPS
                .iter()
                .chain(&["repo", "build", "crash", "clusters"])
                .copied()
                .collect(),
            false => TOP_KEYS.to_vec(),
        };
        self.known_keys("", raw, &top);
        let state_dir = if raw.contains_key("state_dir") {
            self.path("", raw, "state_dir")
        } else {
            self.problem("state_dir", "missing required key");
            None
        };
        let asana = self
            .required_table("", raw, "asana")
            .and_then(|t| self.asana(t));
        let max_concurrent_pushes = if raw.contains_key("max_concurrent_pushes") {
            Some(self.integer("", raw, "max_concurrent_pushes", 1, 1024))
        } else {
            None
        };
        let allow_shared = self.allow_shared(raw);
        // `[requests]` is one for every app: a request names its app.
        let requests = match self.table("", raw, "requests") {
            None => None,
            Some(t) => self.requests(t),
        };
        let http = match self.table("", raw, "http") {
            None => Some(HttpSettings::default()),
            Some(t) => self.http(t),
        };
        let empty = Table::new();
        let shared_sync = self.table("", raw, "sync").unwrap_or(&empty).clone();
        let shared_notify = self.table("", raw, "notify").cloned();
        // With apps, the shared sections are checked once, under their own
        // keys (each app then reports only its own keys); without, they are
        // the app's own.
        let sync = if has_apps {
            self.sync("", &shared_sync).map(drop)
        } else {
            Some(())
        };
        let notify = match (&shared_notify, has_apps) {
            (Some(t), true) => Some(self.notify("", t).map(drop)),
            _ => None,
        };
        // Checked on even when the top is wrong: every problem at once.
        let root = state_dir.clone().unwrap_or_default();
        let top = Top {
            asana: asana.as_ref(),
            requests: requests.as_ref(),
            root: &root,
        };
        let mut apps = BTreeMap::new();
        if has_apps {
            let table = self.table("", raw, "apps")?;
            if table.is_empty() {
                self.problem("apps", "define at least one app, e.g. [apps.web]");
            }
            for (name, value) in table {
                let pre = format!("apps.{name}");
                let Some(app) = AppName::parse(name) else {
                    self.problem(pre, "an app name holds lowercase letters, digits, `-` and `_`, starting with a letter");
                    continue;
                };
                let Value::Table(t) = value else {
                    self.problem(pre, format!("expected a table, found {}", type_name(value)));
                    continue;
                };
                self.known_keys(&pre, t, APP_KEYS);
                let dir = root.join("apps").join(app.as_str());
                let parts = AppParts {
                    sync: merged(&shared_sync, self.table(&pre, t, "sync")),
                    app_sync: self.table(&pre, t, "sync").cloned(),
                    notify: match (self.table(&pre, t, "notify"), &shared_notify) {
                        (Some(own), shared) => {
                            Some(merged(shared.as_ref().unwrap_or(&empty), Some(own)))
                        }
                        (None, shared) => shared.clone(),
                    },
                    app_notify: self.table(&pre, t, "notify").cloned(),
                };
                if let Some(c) = self.app(&pre, app.clone(), t, dir, &top, parts) {
                    apps.insert(app, c);
                }
            }
        } else {
            let name = raw
                .get("repo")
                .and_then(Value::as_table)
                .and_then(|r| r.get("url"))
                .and_then(Value::as_str)
                .map_or_else(|| AppName::from_repo_url(""), AppName::from_repo_url);
            let parts = AppParts {
                sync: shared_sync.clone(),
                app_sync: None,
                notify: shared_notify.clone(),
                app_notify: None,
            };
            if let Some(c) = self.app("", name.clone(), raw, root.clone(), &top, parts) {
                apps.insert(name, c);
            }
        }
        if has_apps {
            for key in ["repo", "build", "crash", "clusters"] {
                if raw.contains_key(key) {
                    self.problem(
                        key,
                        format!("with [apps], each app has its own: move it to [apps.NAME.{key}]"),
                    );
                }
            }
        }
        self.shared_resources(&apps, &allow_shared);
        // Only a config with every part valid is one.
        sync?;
        if let Some(n) = notify {
            n?;
        }
        Some(ConfigFile {
            state_dir: state_dir?,
            asana: asana?,
            max_concurrent_pushes: max_concurrent_pushes.flatten(),
            apps,
            has_apps,
            http: http?,
        })
    }

    /// One app: its own `repo`, `build`, `clusters` and `crash`, the
    /// shared `[sync]`/`[notify]` with its own keys over them. `pre` is
    /// where its keys live (`apps.web`, or the top of a config without apps).
    fn app(
        &mut self,
        pre: &str,
        app: AppName,
        t: &Table,
        state_dir: PathBuf,
        top: &Top<'_>,
        parts: AppParts,
    ) -> Option<Config> {
        let Top {
            asana,
            requests,
            root: root_dir,
        } = *top;
        let repo = self.required_table(pre, t, "repo").and_then(|r| {
            let repo = self.repo(pre, r);
            let web = self.web(&join(pre, "repo"), r);
            Some((repo?, web?))
        });
        let build = self
            .required_table(pre, t, "build")
            .and_then(|b| self.build(pre, b));
        // The shared keys were checked under `sync`/`notify`: here only the
        // app's own keys may add problems.
        let sync = self.own_keys_only(pre, "sync", parts.app_sync.as_ref(), |v| {
            v.sync(pre, &parts.sync)
        });
        let notify = match &parts.notify {
            Some(n) => Some(
                self.own_keys_only(pre, "notify", parts.app_notify.as_ref(), |v| {
                    v.notify(pre, n)
                })?,
            ),
            None => None,
        };
        let crash = self.table(pre, t, "crash").and_then(|c| self.crash(pre, c));
        let clusters = self
            .required_table(pre, t, "clusters")
            .and_then(|c| self.clusters(pre, c));
        if let (Some(c), Some(cl)) = (&crash, &clusters) {
            let explicit = t
                .get("crash")
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key("close_on"));
            if explicit && !cl.contains_key(&c.close_on) {
                self.problem(
                    join(&join(pre, "crash"), "close_on"),
                    format!("`{}` is not a configured cluster", c.close_on),
                );
            }
        }
        let (repo, web) = repo?;
        Some(Config {
            app,
            many_apps: !pre.is_empty(),
            state_dir,
            root_dir: root_dir.to_owned(),
            asana: asana?.clone(),
            requests: requests.cloned(),
            repo,
            web,
            build: build?,
            sync: sync?,
            notify,
            crash,
            clusters: clusters?,
        })
    }

    /// Runs `check` and keeps only the problems in `section` keys the app
    /// itself sets (those of the shared section were reported under it).
    fn own_keys_only<T>(
        &mut self,
        pre: &str,
        section: &str,
        own: Option<&Table>,
        check: impl FnOnce(&mut Validator) -> Option<T>,
    ) -> Option<T> {
        if pre.is_empty() {
            return check(self);
        }
        let before = self.problems.len();
        let out = check(self);
        let sec = join(pre, section);
        let mine: Vec<String> = own
            .map(|t| t.keys().map(|k| join(&sec, k)).collect())
            .unwrap_or_default();
        let mut i = before;
        while i < self.problems.len() {
            let k = &self.problems[i].key;
            let own_key = mine.iter().any(|m| {
                k == m || k.starts_with(&format!("{m}.")) || k.starts_with(&format!("{m}["))
            });
            if own_key {
                i += 1;
            } else {
                self.problems.remove(i);
            }
        }
        out
    }

    /// `repo.web`: URL templates for a commit (`{sha}`) and a compare
    /// (`{from}`, `{to}`), for links in push tasks and notifications.
    fn web(&mut self, sp: &str, t: &Table) -> Option<Option<WebLinks>> {
        let Some(w) = self.table(sp, t, "web") else {
            return if t.contains_key("web") {
                None
            } else {
                Some(None)
            };
        };
        let wp = join(sp, "web");
        self.known_keys(&wp, w, &["commit", "compare"]);
        let template = |v: &mut Validator, key: &str, needs: &[&str]| -> Option<Option<String>> {
            let Some(s) = v.string(&wp, w, key) else {
                return if w.contains_key(key) {
                    None
                } else {
                    Some(None)
                };
            };
            let url_ok =
                reqwest::Url::parse(&needs.iter().fold(s.to_owned(), |s, n| s.replace(n, "x")))
                    .is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
            let missing: Vec<&&str> = needs.iter().filter(|n| !s.contains(**n)).collect();
            if !url_ok {
                v.problem(join(&wp, key), format!("`{s}` is not an http(s) URL"));
                None
            } else if !missing.is_empty() {
                v.problem(
                    join(&wp, key),
                    format!(
                        "`{s}` must hold {}",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                );
                None
            } else {
                Some(Some(s.to_owned()))
            }
        };
        let commit = template(self, "commit", &["{sha}"]);
        let compare = template(self, "compare", &["{from}", "{to}"]);
        let (commit, compare) = (commit?, compare?);
        if commit.is_none() {
            self.problem(join(&wp, "commit"), "missing required key");
            return None;
        }
        Some(Some(WebLinks {
            commit: commit?,
            compare,
        }))
    }

    /// `allow_shared`: what apps may share on purpose.
    fn allow_shared(&mut self, raw: &Table) -> Vec<String> {
        const KINDS: &[&str] = &["lock_project", "push_project", "target"];
        let Some(v) = raw.get("allow_shared") else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            self.problem(
                "allow_shared",
                format!(
                    "expected an array such as [\"push_project\"], found {}",
                    type_name(v)
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(k) if KINDS.contains(&k) => out.push(k.to_owned()),
                _ => self.problem(
                    format!("allow_shared[{i}]"),
                    format!("expected one of: {}", KINDS.join(", ")),
                ),
            }
        }
        out
    }

    /// Two apps that share a lock project, a push project or a host's
    /// target directory would hold, record over or overwrite each other:
    /// refused unless `allow_shared` names it.
    fn shared_resources(&mut self, apps: &BTreeMap<AppName, Config>, allowed: &[String]) {
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut found = Vec::new();
        for (name, app) in apps {
            for c in app.clusters.values() {
                let key = |k: &str| format!("apps.{name}.clusters.{}.{k}", c.name);
                let mut claim = |kind: &str, what: String, key: String| {
                    let owner = format!("apps.{name}");
                    match seen.get(&(kind.to_owned(), what.clone())) {
                        Some(first) if !first.starts_with(&format!("{owner}.")) => {
                            found.push((kind.to_owned(), key, first.clone()));
                        }
                        Some(_) => {}
                        None => {
                            seen.insert((kind.to_owned(), what), key);
                        }
                    }
                };
                claim(
                    "lock_project",
                    c.lock_project.to_string(),
                    key("lock_project"),
                );
                claim(
                    "push_project",
                    c.push_project.to_string(),
                    key("push_project"),
                );
                for h in c.read_hosts().unwrap_or_default() {
                    let place = match &h {
                        Host::Local { path } => format!("local:{}", path.display()),
                        Host::Ssh { hostname, port, .. } => format!(
                            "{hostname}:{}:{}",
                            port.unwrap_or(22),
                            c.target
                                .as_deref()
                                .map(Path::display)
                                .map(|d| d.to_string())
                                .unwrap_or_default()
                        ),
                    };
                    claim("target", place, key("hosts"));
                }
            }
        }
        for (kind, key, first) in found {
            if !allowed.contains(&kind) {
                self.problem(
                    key,
                    format!("shares its {} with {first}: two apps would {}; if that is meant, add \"{kind}\" to allow_shared", kind.replace('_', " "), match kind.as_str() {
                        "lock_project" => "hold each other's pushes",
                        "push_project" => "record their pushes in one project",
                        _ => "overwrite each other's releases on that host",
                    }),
                );
            }
        }
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
        let mut limits = AsanaLimits::default();
        if t.contains_key("requests_per_minute") {
            limits.per_minute = self.integer(P, t, "requests_per_minute", 1, 100_000)? as u32;
        }
        if t.contains_key("concurrent_reads") {
            limits.reads = self.integer(P, t, "concurrent_reads", 1, 50)?;
        }
        if t.contains_key("concurrent_writes") {
            limits.writes = self.integer(P, t, "concurrent_writes", 1, 15)?;
        }
        Some(AsanaSettings {
            endpoint: endpoint?,
            token,
            workspace: workspace?,
            retry,
            limits,
        })
    }

    fn repo(&mut self, pre: &str, t: &Table) -> Option<RepoSettings> {
        let sec = join(pre, "repo");
        let sp: &str = &sec;
        self.known_keys(sp, t, REPO_KEYS);
        let url = self.required_string(sp, t, "url");
        if url == Some("") {
            self.problem(join(sp, "url"), "must not be empty");
        }
        let branch = if t.contains_key("branch") {
            self.string(sp, t, "branch")
        } else {
            Some("main")
        };
        if let Some(b) = branch {
            if b.is_empty()
                || b.starts_with('-')
                || b.contains("..")
                || b.contains(char::is_whitespace)
            {
                self.problem(
                    join(sp, "branch"),
                    format!("`{b}` is not a valid branch name"),
                );
            }
        }
        if url.is_some_and(|u| u.starts_with('-')) {
            self.problem(join(sp, "url"), "must not start with `-`");
        }
        let ssh_key = self.path(sp, t, "ssh_key");
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

    fn build(&mut self, pre: &str, t: &Table) -> Option<BuildSettings> {
        let sec = join(pre, "build");
        let sp: &str = &sec;
        self.known_keys(sp, t, BUILD_KEYS);
        let command = if t.contains_key("command") {
            self.argv(sp, t, "command")
        } else {
            self.problem(join(sp, "command"), "missing required key");
            None
        };
        let output = self.required_string(sp, t, "output").and_then(|s| {
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
                    join(sp, "output"),
                    format!(
                        "`{}` must be a relative path inside the work tree (no `..`, no control characters)",
                        s.escape_debug()
                    ),
                );
                None
            }
        });
        let timeout = if t.contains_key("timeout") {
            self.duration(sp, t, "timeout")
        } else {
            Some(Duration::from_secs(20 * 60))
        };
        Some(BuildSettings {
            command: command?,
            output: output?,
            timeout: timeout?,
        })
    }

    fn sync(&mut self, pre: &str, t: &Table) -> Option<SyncSettings> {
        let sec = join(pre, "sync");
        let sp: &str = &sec;
        self.known_keys(sp, t, SYNC_KEYS);
        let or = |v: Option<usize>, present: bool, d: usize| if present { v } else { Some(d) };
        let parallelism = or(
            self.non_negative(sp, t, "parallelism", 1),
            t.contains_key("parallelism"),
            16,
        );
        let max_failed_hosts = or(
            self.non_negative(sp, t, "max_failed_hosts", 0),
            t.contains_key("max_failed_hosts"),
            0,
        );
        let keep_releases = or(
            self.non_negative(sp, t, "keep_releases", 2),
            t.contains_key("keep_releases"),
            5,
        );
        let after_switch = self.argv(sp, t, "after_switch");
        let ssh_config = self.path(sp, t, "ssh_config");
        let ssh_identity = self.path(sp, t, "ssh_identity");
        let known_hosts = self.path(sp, t, "known_hosts");
        for (key, p) in [
            ("ssh_config", &ssh_config),
            ("ssh_identity", &ssh_identity),
            ("known_hosts", &known_hosts),
        ] {
            if p.as_ref()
                .is_some_and(|p| p.to_string_lossy().contains('\''))
            {
                self.problem(
                    join(sp, key),
                    "must not contain `'` (it is passed to rsync's ssh command line)",
                );
            }
        }
        if known_hosts
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().contains(char::is_whitespace))
        {
            self.problem(
                join(sp, "known_hosts"),
                "must not contain spaces (ssh reads UserKnownHostsFile as a list of files)",
            );
        }
        let host_key_policy = match self.string(sp, t, "host_key_policy") {
            None => Some(HostKeyPolicy::Strict),
            Some("strict") => Some(HostKeyPolicy::Strict),
            Some("accept-new") => Some(HostKeyPolicy::AcceptNew),
            Some(other) => {
                self.problem(
                    join(sp, "host_key_policy"),
                    format!("`{other}`: expected `strict` or `accept-new`"),
                );
                None
            }
        };
        let retries = or(
            self.integer(sp, t, "retries", 0, MAX_ATTEMPTS),
            t.contains_key("retries"),
            2,
        );
        let host_timeout = if t.contains_key("host_timeout") {
            self.duration(sp, t, "host_timeout")
        } else {
            Some(Duration::from_secs(10 * 60))
        };
        let transport = self.transport(sp, t);
        let ssh_ciphers = match self.string(sp, t, "ssh_ciphers") {
            Some(c)
                if c.is_empty()
                    || !c.chars().all(|ch| {
                        ch.is_ascii_alphanumeric()
                            || matches!(ch, '-' | '@' | '.' | ',' | '+' | '^')
                    }) =>
            {
                self.problem(
                    join(sp, "ssh_ciphers"),
                    format!("`{c}`: expected ssh cipher names separated by commas (e.g. `aes128-gcm@openssh.com,chacha20-poly1305@openssh.com`)"),
                );
                None
            }
            c => c.map(str::to_owned),
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
            transport: transport?,
            ssh_ciphers,
        })
    }

    /// `transport`, `tracker` and `run_tracker`.
    fn transport(&mut self, sp: &str, t: &Table) -> Option<Transport> {
        let run_tracker = match t.get("run_tracker") {
            None => true,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                let found = type_name(other);
                self.problem(
                    join(sp, "run_tracker"),
                    format!("expected true or false, found {found}"),
                );
                return None;
            }
        };
        match self.string(sp, t, "transport") {
            None | Some("rsync") => {
                for k in ["tracker", "run_tracker"] {
                    if t.contains_key(k) {
                        self.problem(join(sp, k), "only used with `transport = \"bittorrent\"`");
                    }
                }
                Some(Transport::Rsync)
            }
            Some("bittorrent") => {
                let url = self.required_string(sp, t, "tracker")?;
                match reqwest::Url::parse(url) {
                    Ok(u)
                        if u.scheme() == "http"
                            && u.host_str().is_some()
                            && u.port_or_known_default().is_some()
                            && u.query().is_none()
                            && !url.contains(['\'', '"', ' ', '\\']) =>
                    {
                        Some(Transport::BitTorrent {
                            tracker: u,
                            run_tracker,
                        })
                    }
                    _ => {
                        self.problem(
                            join(sp, "tracker"),
                            format!("`{url}`: expected the tracker's announce URL as the hosts reach it, `http://HOST:PORT/announce`"),
                        );
                        None
                    }
                }
            }
            Some(other) => {
                self.problem(
                    join(sp, "transport"),
                    format!("`{other}`: expected `rsync` or `bittorrent`"),
                );
                None
            }
        }
    }

    fn notify(&mut self, pre: &str, t: &Table) -> Option<NotifySettings> {
        let sec = join(pre, "notify");
        let sp: &str = &sec;
        self.known_keys(sp, t, NOTIFY_KEYS);
        let env = self.required_string(sp, t, "slack_webhook_env");
        if env.is_some_and(|e| e.is_empty() || e.contains('=') || e.contains('\0')) {
            self.problem(
                join(sp, "slack_webhook_env"),
                "must name an environment variable (not the URL itself)",
            );
            return None;
        }
        if env.is_some_and(|e| e.starts_with("http")) {
            self.problem(
                join(sp, "slack_webhook_env"),
                "must name an environment variable that holds the URL, not the URL: it is a secret",
            );
            return None;
        }
        let timeout = if t.contains_key("timeout") {
            self.duration(sp, t, "timeout")
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
                            format!("{sp}.on[{i}]"),
                            format!(
                                "`{e}` is not an event; expected some of: {}",
                                NOTIFY_EVENTS.join(", ")
                            ),
                        ),
                        None => self.problem(
                            format!("{sp}.on[{i}]"),
                            format!("expected a string, found {}", type_name(item)),
                        ),
                    }
                }
                (out.len() == items.len()).then_some(out)
            }
            Some(other) => {
                self.problem(
                    join(sp, "on"),
                    format!(
                        "expected an array of events, e.g. [\"failed\", \"held\"], found {}",
                        type_name(other)
                    ),
                );
                None
            }
        };
        let started_after = match self.string(sp, t, "started_after") {
            None if t.contains_key("started_after") => None,
            None => Some(Duration::from_secs(30)),
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(
                        join(sp, "started_after"),
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

    fn crash(&mut self, pre: &str, t: &Table) -> Option<CrashSettings> {
        let sec = join(pre, "crash");
        let sp: &str = &sec;
        self.known_keys(sp, t, CRASH_KEYS);
        let project = self.gid(sp, t, "project", ProjectGid::parse);
        let field = if t.contains_key("fix_commit_field") {
            self.string(sp, t, "fix_commit_field")
        } else {
            Some("Fix commit")
        };
        if field == Some("") {
            self.problem(join(sp, "fix_commit_field"), "must not be empty");
        }
        let close_on = match self.string(sp, t, "close_on") {
            None => ClusterName::parse("beta"),
            Some(s) => {
                let c = ClusterName::parse(s);
                if c.is_none() {
                    self.problem(join(sp, "close_on"), format!("`{s}` is not a cluster name"));
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

    fn clusters(&mut self, pre: &str, t: &Table) -> Option<BTreeMap<ClusterName, ClusterSettings>> {
        let sec = join(pre, "clusters");
        let sp: &str = &sec;
        if t.is_empty() {
            self.problem(sp, "define at least one cluster, e.g. [clusters.beta]");
            return None;
        }
        let names: Vec<&str> = t.keys().map(String::as_str).collect();
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, value) in t {
            let path = format!("{sp}.{name}");
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
        let approval = match t.get("approval") {
            None => Some(None),
            Some(Value::Table(at)) => self.approval(&join(p, "approval"), at).map(Some),
            Some(other) => {
                self.problem(
                    join(p, "approval"),
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        };
        let rollout = self.rollout(p, t);
        Some(ClusterSettings {
            approval: approval?,
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

    /// A list of people: user gids or e-mail addresses.
    fn people(
        &mut self,
        p: &str,
        t: &Table,
        key: &str,
    ) -> Option<Vec<crate::domain::approval::Approver>> {
        let k = join(p, key);
        match t.get(key) {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(crate::domain::approval::Approver::parse) {
                        Some(Some(a)) => out.push(a),
                        Some(None) => self.problem(
                            format!("{k}[{i}]"),
                            format!(
                                "`{}` is neither an Asana user gid (digits) nor an e-mail address",
                                item.as_str().unwrap_or_default().escape_debug()
                            ),
                        ),
                        None => self.problem(
                            format!("{k}[{i}]"),
                            format!("expected a string, found {}", type_name(item)),
                        ),
                    }
                }
                (out.len() == items.len()).then_some(out)
            }
            Some(other) => {
                self.problem(
                    k,
                    format!(
                        "expected an array of user gids or e-mails, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn requests(&mut self, t: &Table) -> Option<RequestsSettings> {
        const P: &str = "requests";
        self.known_keys(P, t, REQUESTS_KEYS);
        let project = self.gid(P, t, "project", ProjectGid::parse);
        let allowed = self.people(P, t, "allowed");
        if allowed.as_ref().is_some_and(Vec::is_empty) {
            self.problem(
                "requests.allowed",
                "name at least one person (user gid or e-mail) whose requests run",
            );
            return None;
        }
        let mut dur = |key: &str, default: u64| {
            if t.contains_key(key) {
                self.duration(P, t, key)
            } else {
                Some(Duration::from_secs(default))
            }
        };
        let poll = dur("poll", 60);
        let max_age = dur("max_age", 24 * 3600);
        Some(RequestsSettings {
            project: project?,
            allowed: allowed?,
            poll: poll?,
            max_age: max_age?,
        })
    }

    fn http(&mut self, t: &Table) -> Option<HttpSettings> {
        const P: &str = "http";
        self.known_keys(P, t, HTTP_KEYS);
        let token_file = if t.contains_key("token_file") {
            Some(self.path(P, t, "token_file")?)
        } else {
            None
        };
        Some(HttpSettings { token_file })
    }

    fn approval(&mut self, p: &str, t: &Table) -> Option<ApprovalSettings> {
        self.known_keys(p, t, APPROVAL_KEYS);
        let project = self.gid(p, t, "project", ProjectGid::parse);
        let approvers = match t.get("approvers") {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(crate::domain::approval::Approver::parse) {
                        Some(Some(a)) => out.push(a),
                        Some(None) => self.problem(
                            format!("{}[{i}]", join(p, "approvers")),
                            format!(
                                "`{}` is neither an Asana user gid (digits) nor an e-mail address",
                                item.as_str().unwrap_or_default().escape_debug()
                            ),
                        ),
                        None => self.problem(
                            format!("{}[{i}]", join(p, "approvers")),
                            format!("expected a string, found {}", type_name(item)),
                        ),
                    }
                }
                (out.len() == items.len()).then_some(out)
            }
            Some(other) => {
                self.problem(
                    join(p, "approvers"),
                    format!(
                        "expected an array of user gids or e-mails, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        };
        let mut dur = |key: &str, default: u64| {
            if t.contains_key(key) {
                self.duration(p, t, key)
            } else {
                Some(Duration::from_secs(default))
            }
        };
        let max_age = dur("max_age", 24 * 3600);
        let request_before = dur("request_before", 90 * 60);
        let window = dur("window", 2 * 3600);
        let allow_self_approval = match t.get("allow_self_approval") {
            None => Some(false),
            Some(Value::Boolean(b)) => Some(*b),
            Some(other) => {
                self.problem(
                    join(p, "allow_self_approval"),
                    format!("expected a boolean, found {}", type_name(other)),
                );
                None
            }
        };
        Some(ApprovalSettings {
            project: project?,
            approvers: approvers?,
            max_age: max_age?,
            request_before: request_before?,
            window: window?,
            allow_self_approval: allow_self_approval?,
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

/// `[asana]`'s `requests_per_minute`, `concurrent_reads`,
/// `concurrent_writes`: Asana's documented limits, which the one client of
/// a process keeps for every app (`API-FACTS.md` §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsanaLimits {
    pub per_minute: u32,
    pub reads: usize,
    pub writes: usize,
}

impl Default for AsanaLimits {
    /// A paid workspace's limits.
    fn default() -> Self {
        AsanaLimits {
            per_minute: 1500,
            reads: 50,
            writes: 15,
        }
    }
}

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
