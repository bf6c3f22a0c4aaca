//! What stops automation once a release went bad, the same for a person's
//! `rollback`, a push whose wave failed a check, and the recovery of
//! either: the commit is marked bad (`bad.json`: the schedule never picks
//! it again; `push --commit` does and clears the mark), and a lock task
//! in the cluster's lock project, assigned to the token's user, holds
//! every push until a person completes it.
//!
//! It decides neither when this happens nor what the task says: the
//! callers' plans (`decide::rollback`, `decide::waves`) do.

use chrono::{DateTime, Utc};

use crate::adapters::state::{BadMark, ClusterState};
use crate::config::ClusterSettings;
use crate::domain::model::{CommitId, ReleaseId, WorkspaceGid};
use crate::run::outbox::{Delivery, Op, Outbox};

/// Marks `commit` bad on the cluster: `release` (its release) was rolled
/// back, or stopped, by run `run_id` at `at`. A failure is an error in
/// the log: the lock task still holds the cluster.
pub fn mark_bad(
    state: &ClusterState,
    commit: &CommitId,
    release: &ReleaseId,
    at: DateTime<Utc>,
    run_id: &str,
) {
    let mut marks = state.bad_commits().unwrap_or_default();
    marks.insert(
        commit.to_string(),
        BadMark {
            release: release.to_string(),
            at,
            run_id: run_id.to_owned(),
        },
    );
    if let Err(e) = state.set_bad_commits(&marks) {
        tracing::error!(error = %e, "cannot mark the rolled-back commit: the schedule may push it again");
    }
}

/// The outbox key of run `run_id`'s lock task: one per run, however often
/// a recovery asks.
pub fn lock_key(run_id: &str) -> String {
    format!("lock:{run_id}")
}

/// Creates run `for_run`'s lock task (through the outbox, as run `by_run`),
/// unless the outbox created it or is creating it already; its link, if
/// Asana answered.
pub async fn lock(
    outbox: &Outbox,
    cluster: &ClusterSettings,
    workspace: &WorkspaceGid,
    by_run: &str,
    for_run: &str,
    name: String,
    notes: String,
) -> Option<String> {
    let key = lock_key(for_run);
    if let Some(t) = outbox.created(&key) {
        return Some(t.link.clone());
    }
    if outbox.creating(&key) {
        return None;
    }
    let op = Op::CreateTask {
        key,
        name,
        notes,
        html_notes: None,
        project: cluster.lock_project.to_string(),
        workspace: Some(workspace.to_string()),
        assignee: Some("me".into()),
    };
    match outbox.submit(by_run, op).await {
        Delivery::Applied(Some(t)) => Some(t.link),
        _ => None,
    }
}
