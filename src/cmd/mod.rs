//! The commands: each opens what it needs, does its work and returns an
//! [`Outcome`]; `main.rs` turns outcomes and errors into exit codes.

pub mod approvals;
pub mod check;
pub mod cli;
pub mod crash;
pub mod daemon;
pub mod demo;
pub mod docs;
pub mod history;
pub mod locks;
pub mod page;
pub mod push;
pub mod requests;
pub mod rollback;
pub mod status;
pub mod telemetry;
pub mod term;
pub mod views;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::adapters::asana::{Client, Sleeper, Token};
use crate::adapters::process::ChildEnv;
use crate::adapters::state::StateDir;
use crate::config::{AsanaEndpoint, ClusterSettings, Config, ConfigFile, TokenSource};
use crate::domain::model::{AppName, Host};
use crate::domain::plan::{HoldReason, Verdict};
use crate::sandbox::Sandbox;
use crate::watch::Observer;

/// How a command ended, for `main` to turn into an exit code.
#[derive(Debug)]
pub enum Outcome {
    Success,
    /// The command ran and reports a failure it already printed.
    Failure,
    /// A push decision (push, dry run).
    Decided(Verdict),
    /// The cluster's lock is held by another push (exit 6).
    Busy,
}

pub use crate::run::UsageError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_LOCKED: u8 = 3;
pub const EXIT_FROZEN: u8 = 4;
pub const EXIT_UNKNOWN: u8 = 5;
pub const EXIT_RUNNING: u8 = 6;

/// The exit code of an outcome (SPEC §3): the one mapping, for `main` and
/// for the commands that say where a verdict fails the run.
pub fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Success => EXIT_OK,
        Outcome::Failure => EXIT_FAILED,
        Outcome::Busy => EXIT_RUNNING,
        Outcome::Decided(Verdict::Push { .. } | Verdict::NothingNew { .. }) => EXIT_OK,
        Outcome::Decided(Verdict::Hold(
            HoldReason::Locked { .. } | HoldReason::RolledBack { .. } | HoldReason::Approval(_),
        )) => EXIT_LOCKED,
        Outcome::Decided(Verdict::Hold(HoldReason::Running { .. })) => EXIT_RUNNING,
        Outcome::Decided(Verdict::Hold(
            HoldReason::BuildFailed { .. } | HoldReason::ArtifactMissing { .. },
        )) => EXIT_FAILED,
        Outcome::Decided(Verdict::Hold(
            HoldReason::Frozen { .. }
            | HoldReason::OtherRunning { .. }
            | HoldReason::Soaking { .. },
        )) => EXIT_FROZEN,
        Outcome::Decided(Verdict::Unknown { .. }) => EXIT_UNKNOWN,
    }
}

/// Every app of the config file and what they share: the one Asana client
/// of the process (its limiter keeps Asana's limits for all apps), and the
/// in-process sandbox when the config says `base_url = "sandbox"`.
pub struct Envs {
    pub file: ConfigFile,
    pub client: Client,
    /// One per app, in the order of their names.
    pub apps: Vec<Env>,
    sandbox: Option<Sandbox>,
}

impl Envs {
    pub async fn open(config_path: &Path) -> anyhow::Result<Envs> {
        let file = ConfigFile::load(config_path)?;
        refuse_one_apps_state(&file)?;
        let asana = &file.asana;
        let policy = asana.retry.clone();
        let mut scrub = scrubbed(&file);
        let (client, sandbox) = match &asana.endpoint {
            AsanaEndpoint::Sandbox => {
                let data = file.state_dir.join("sandbox.json");
                let sb = Sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), Some(&data)).await?;
                let url = reqwest::Url::parse(&sb.base_url())?;
                let client = Client::with_limits(
                    &url,
                    Token::new(sb.token(), "the embedded sandbox"),
                    policy,
                    Sleeper::Tokio,
                    asana.limits,
                )?;
                (client, Some(sb))
            }
            AsanaEndpoint::Url(url) => {
                let source = asana
                    .token
                    .as_ref()
                    .context("asana: no token source configured")?;
                let token = Token::read(source).map_err(|e| UsageError(e.to_string()))?;
                scrub.extend(token.env_vars_holding());
                (
                    Client::with_limits(url, token, policy, Sleeper::Tokio, asana.limits)?,
                    None,
                )
            }
        };
        let child_env = ChildEnv::without(scrub);
        let apps = file
            .apps
            .values()
            .map(|c| Env::with_child_env(c.clone(), client.clone(), child_env.clone()))
            .collect();
        Ok(Envs {
            file,
            client,
            apps,
            sandbox,
        })
    }

    /// The app a command is about: `--app NAME`, or the only one.
    pub fn app(&self, name: Option<&str>) -> Result<&Env, UsageError> {
        let chosen = self.file.app(name).map_err(UsageError)?;
        self.apps
            .iter()
            .find(|e| e.config.app == chosen.app)
            .ok_or_else(|| UsageError(format!("app `{}` has no environment", chosen.app)))
    }

    /// The apps a view covers: `--app NAME`'s, or all of them.
    pub fn apps(&self, name: Option<&str>) -> Result<Vec<&Env>, UsageError> {
        match name {
            Some(_) => Ok(vec![self.app(name)?]),
            None => Ok(self.apps.iter().collect()),
        }
    }

    /// Whether views name the app of each line (a file with `[apps]`).
    pub fn many(&self) -> bool {
        self.file.has_apps
    }

    /// Where Asana's own pages are, for links built from gids: the origin
    /// of `asana.base_url` (`https://app.asana.com`), or the embedded
    /// sandbox's, which serves its permalink pages.
    pub fn asana_web(&self) -> String {
        let api = match (&self.sandbox, &self.file.asana.endpoint) {
            (Some(sb), _) => sb.base_url(),
            (None, AsanaEndpoint::Url(u)) => u.to_string(),
            (None, AsanaEndpoint::Sandbox) => String::new(),
        };
        reqwest::Url::parse(&api)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "https://app.asana.com".to_owned())
    }

    /// Stops the in-process sandbox, if any.
    pub async fn close(self) {
        if let Some(sb) = self.sandbox {
            sb.stop().await;
        }
    }
}

/// A config that gained `[apps]` over a state directory one app's
/// pushgate used: that state (deployed releases, an interrupted run's
/// journal, history) would be ignored, so nothing runs until it is moved
/// into the app it belongs to (`docs/operations.md`).
fn refuse_one_apps_state(file: &ConfigFile) -> Result<(), UsageError> {
    if !file.has_apps {
        return Ok(());
    }
    let found = StateDir::new(&file.state_dir).one_apps_state();
    if found.is_empty() {
        return Ok(());
    }
    let root = file.state_dir.display();
    let example = file.apps.keys().next().map_or("web", AppName::as_str);
    let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    Err(UsageError(format!(
        "state_dir `{root}` holds the state of a config without [apps] ({}); \
         with [apps] each app keeps its state in {root}/apps/NAME/, so this would be ignored. \
         Move it into the app it belongs to, e.g. `mkdir -p {root}/apps/{example} && mv {} {root}/apps/{example}/` \
         (see docs/operations.md, \"From one app to many\")",
        names.join(", "),
        names.join(" "),
    )))
}

/// One app's config and what a run of it works with: the shared client,
/// its state directory, the children's environment (without the token and
/// the webhook URLs), its watchers.
pub struct Env {
    pub config: Config,
    pub client: Client,
    pub state: StateDir,
    /// What child processes (build, rsync, ssh) must not inherit: the token.
    pub child_env: ChildEnv,
    /// The holds log, notifications, metrics and progress bars.
    pub observer: Observer,
}

impl Env {
    /// One app's environment, for tests and the demo: its config and a
    /// client for its Asana.
    pub fn from_parts(config: Config, client: Client) -> Env {
        let scrub = token_env_name(&config);
        Env::with_child_env(config, client, ChildEnv::without(scrub))
    }

    fn with_child_env(config: Config, client: Client, child_env: ChildEnv) -> Env {
        Env {
            state: StateDir::new(&config.state_dir),
            child_env,
            observer: Observer::new(&config),
            config,
            client,
        }
    }

    pub fn cluster(&self, name: &str) -> Result<&ClusterSettings, UsageError> {
        self.config.cluster(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.clusters.keys().map(|c| c.as_str()).collect();
            UsageError(format!(
                "unknown cluster `{name}` (configured: {})",
                known.join(", ")
            ))
        })
    }

    /// What a run works with.
    pub fn ctx(&self) -> crate::run::Ctx<'_> {
        crate::run::Ctx {
            config: &self.config,
            client: &self.client,
            state: &self.state,
            child_env: &self.child_env,
        }
    }

    pub fn fix_field(&self) -> Option<&str> {
        self.config
            .crash
            .as_ref()
            .map(|c| c.fix_commit_field.as_str())
    }
}

/// The `token_env` variable and the webhook's, removed from every child's
/// environment even when they are unset here.
fn token_env_name(config: &Config) -> Vec<std::ffi::OsString> {
    secret_vars(&config.asana, config.notify.iter())
}

/// What every app's children must not see: the token's variable and every
/// app's webhook variable (one app's build never sees another's webhook).
fn scrubbed(file: &ConfigFile) -> Vec<std::ffi::OsString> {
    secret_vars(
        &file.asana,
        file.apps.values().filter_map(|a| a.notify.as_ref()),
    )
}

fn secret_vars<'a>(
    asana: &crate::config::AsanaSettings,
    notify: impl Iterator<Item = &'a crate::config::NotifySettings>,
) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = match &asana.token {
        Some(TokenSource::Env(name)) => vec![name.into()],
        _ => Vec::new(),
    };
    for n in notify {
        v.push(n.slack_webhook_env.clone().into());
    }
    v
}

/// Stops the shared ssh connections to a cluster's hosts (see
/// `sync::SshOptions::control_dir`) at the end of a command's work on it.
pub async fn close_connections(env: &Env, settings: &ClusterSettings, hosts: &[Host]) {
    crate::adapters::hosts::Fleet::new(hosts, settings, &env.config.sync, &env.child_env)
        .close()
        .await;
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
