//! How a push ended, as data: what the commands print, the notifications
//! say and the history keeps. Filled in by the run; read by every view.

use std::time::Duration;

use crate::domain::model::{CommitId, Host, ReleaseId, TaskGid};

/// The push task, once created.
#[derive(Clone, Debug)]
pub struct TaskRef {
    pub gid: TaskGid,
    pub link: String,
}

/// How a push ended.
#[derive(Debug)]
pub struct PushReport {
    pub run_id: String,
    pub release: ReleaseId,
    pub commit: CommitId,
    pub previous: Option<CommitId>,
    pub task: Option<TaskRef>,
    /// `None` on success; else the step that failed and why.
    pub failure: Option<(String, String)>,
    /// A failed check stopped the push (rolled back, or halted).
    pub stopped: Option<CheckStop>,
    /// How each host ended.
    pub hosts: Vec<HostLine>,
    /// Asana writes Asana refused for good (logged; the push went on).
    pub asana_failures: usize,
    /// Asana writes left in the outbox for a later run.
    pub asana_queued: usize,
    pub duration: Duration,
}

/// One host's part in a push.
#[derive(Clone, Debug)]
pub struct HostLine {
    pub host: Host,
    pub result: String,
    /// What rsync sent to it (its `--stats`).
    pub bytes_sent: Option<u64>,
}

/// A push that a wave's failed check stopped (`decide::waves`).
#[derive(Clone, Debug)]
pub struct CheckStop {
    /// Every switched host went back (`auto_rollback`); else the push
    /// only stopped and the switched hosts kept the release.
    pub rolled_back: bool,
    /// The wave that failed (1-based), of how many.
    pub wave: usize,
    pub of: usize,
    /// What failed, in words (host output printed through `printable`).
    pub what: String,
    /// The release the hosts went back to (or that the rest still run).
    pub back_to: Option<ReleaseId>,
    /// The lock task that holds the cluster, if Asana answered.
    pub lock_task: Option<String>,
}
