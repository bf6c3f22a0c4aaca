//! One run of one cluster: gather the facts, execute a plan's steps, the
//! outbox of Asana writes, the recovery of a killed run, and the crash
//! tasks' aftercare. It returns data and never prints; what watches a run
//! is handed to it.

pub mod crash;
pub mod execute;
pub mod gather;
pub mod outbox;
pub mod recover;

use crate::domain::model::{CommitId, Host};

/// Bad usage, such as an unknown cluster: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

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
}

/// Nobody watches: for tests and runs without a terminal or metrics.
pub struct Unwatched;

impl Progress for Unwatched {}
