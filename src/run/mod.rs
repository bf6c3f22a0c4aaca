//! One run of one cluster: gather the facts, execute a plan's steps, the
//! outbox of Asana writes, the recovery of a killed run, and the crash
//! tasks' aftercare. It returns data and never prints; what watches a run
//! is handed to it.

pub mod approval;
pub mod clock;
pub mod crash;
pub mod execute;
pub mod gather;
pub mod journal;
pub mod lockdown;
pub mod outbox;
pub mod preamble;
pub mod record;
pub mod recover;
pub mod rollback;
pub mod summary;

use crate::adapters::asana::Client;
use crate::adapters::process::ChildEnv;
use crate::adapters::state::{ClusterState, StateDir};
use crate::config::{ClusterSettings, Config};
use crate::run::clock::RunClock;
use std::sync::atomic::AtomicBool;

use crate::domain::model::{CommitId, Host};

/// What every run works with: the config, the Asana client, the state
/// directory, and the environment children get (without the token).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub client: &'a Client,
    pub state: &'a StateDir,
    pub child_env: &'a ChildEnv,
}

/// Bad usage, such as an unknown cluster: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What one push or rollback needs from its surroundings.
pub struct Context<'a> {
    pub run: Ctx<'a>,
    pub cluster: &'a ClusterSettings,
    pub state: &'a ClusterState,
    /// The run's clock: read once by the caller.
    pub clock: &'a RunClock,
    /// The run's id (`run_id`), made by the caller.
    pub run_id: &'a str,
    /// What watches the run (progress bars, stage metrics).
    pub progress: &'a dyn Progress,
    /// Who runs it (`user@host`), for the push task's notes.
    pub operator: &'a str,
    /// Print a line per step on stdout.
    pub verbose: bool,
    /// Set when pushgate is shutting down: stop at the next safe point.
    pub stop: Option<&'a AtomicBool>,
}

/// What watches a run while it runs — progress bars, stage metrics, later
/// the on-call page — handed to the run by whoever starts it. The run tells
/// it what happens and never waits on it or asks it anything; every method
/// does nothing by default.
pub trait Progress: Send + Sync {
    /// The build of `commit` starts (not called for a cached artifact).
    fn build_started(&self, _commit: &CommitId) {}
    /// The build ended, whatever its outcome.
    fn build_finished(&self) {}
    /// Staging on `hosts` hosts starts.
    fn stage_started(&self, _hosts: usize) {}
    /// One host is done staging, after its retries.
    fn host_staged(&self, _host: &Host, _ok: bool, _bytes_sent: Option<u64>) {}
    /// Staging ended on every host.
    fn stage_finished(&self) {}
    /// Wave `wave` (1-based) of `of` starts switching `hosts` hosts.
    fn wave_started(&self, _wave: usize, _of: usize, _hosts: usize) {}
    /// A wave ended: it passed, or it failed (a check, or too many hosts).
    fn wave_finished(&self, _wave: usize, _of: usize, _passed: bool) {}
    /// Checks failed in a wave: this many hosts' health checks, and
    /// whether its wave check did.
    fn checks_failed(&self, _unhealthy: usize, _wave_check: bool) {}
}

/// Nobody watches: for tests and runs without a terminal or metrics.
pub struct Unwatched;

impl Progress for Unwatched {}
