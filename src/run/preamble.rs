//! The run preamble, the same for a push and a rollback: take the
//! cluster's lock (or learn who holds it), then — holding it, and unless
//! it is a dry run — replay the Asana writes earlier runs queued, stop
//! what a killed run left running, and recover that run so that every
//! host is on one release before anything is gathered.

use crate::adapters::state::{ClusterLock, ClusterState, StateError};
use crate::config::ClusterSettings;
use crate::domain::model::Host;
use crate::run::clock::RunClock;
use crate::run::outbox::Outbox;
use crate::run::recover::{self, Recovered};
use crate::run::Ctx;

/// What the preamble found and did.
pub struct Preamble {
    /// Held for the whole run; `None` for a dry run or when busy.
    pub lock: Option<ClusterLock>,
    /// Another process holds the cluster's lock (who, since when).
    pub running: Option<String>,
    /// The cluster's outbox: only the lock's holder has one.
    pub outbox: Option<Outbox>,
    /// The children's environment for this run: each child registers its
    /// process group, so that a later run can stop what this one leaves.
    pub child_env: crate::adapters::process::ChildEnv,
    /// Queued writes of earlier runs found, and how many were applied.
    pub waiting: usize,
    pub replayed: usize,
    /// The killed run recovered first, if there was one; an error when its
    /// hosts could not all be converged (its journal stays).
    pub recovered: anyhow::Result<Option<Recovered>>,
}

/// Begins a run of `cluster` on `hosts` (read once by the caller).
pub async fn begin(
    cx: &Ctx<'_>,
    state: &ClusterState,
    cluster: &ClusterSettings,
    hosts: &[Host],
    clock: &RunClock,
    run_id: &str,
    dry_run: bool,
) -> anyhow::Result<Preamble> {
    // Exclusion first (SPEC §2 step 1); a dry run only looks.
    let (lock, running) = match state.lock() {
        Ok(l) => (Some(l), None),
        Err(StateError::Busy { holder, .. }) => (None, Some(holder)),
        Err(e) => return Err(e.into()),
    };
    let lock = if dry_run { None } else { lock };
    let mut out = Preamble {
        child_env: cx.child_env.registered(state.children()),
        outbox: match &lock {
            Some(_) => Some(Outbox::open(state, cx.client, *clock)?),
            None => None,
        },
        lock,
        running,
        waiting: 0,
        replayed: 0,
        recovered: Ok(None),
    };
    let Some(outbox) = out.outbox.as_mut() else {
        return Ok(out);
    };
    out.waiting = outbox.pending();
    if out.waiting > 0 {
        let left = outbox.flush().await;
        out.replayed = out.waiting - left;
    }
    crate::adapters::process::reap_orphans(&state.children());
    let rcx = recover::Cx {
        run: Ctx {
            child_env: &out.child_env,
            ..*cx
        },
        state,
        cluster,
        hosts,
        by_run: run_id,
        clock,
    };
    out.recovered = recover::interrupted(&rcx, outbox).await;
    Ok(out)
}
