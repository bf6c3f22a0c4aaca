//! The one journal writer: every step of a push or rollback is written to
//! the cluster's `journal.jsonl` before its effects, so that a killed run
//! can be recovered (`recover.rs`). A write that fails is a warning: the
//! run goes on, and recovery works from what is there.

use serde_json::Value;

use crate::adapters::state::{ClusterState, JournalEntry};
use crate::run::clock::RunClock;

pub struct Journal<'a> {
    state: &'a ClusterState,
    run_id: String,
    clock: &'a RunClock,
}

impl<'a> Journal<'a> {
    /// The journal of run `run_id` (the running run's, or for recovery the
    /// killed run's).
    pub fn new(state: &'a ClusterState, run_id: &str, clock: &'a RunClock) -> Journal<'a> {
        Journal {
            state,
            run_id: run_id.to_owned(),
            clock,
        }
    }

    /// Appends `step` (fsynced), then passes the tests' failpoint
    /// `journal:<step>`.
    pub fn write(&self, step: &str, detail: Value) {
        let e = JournalEntry {
            at: self.clock.now(),
            run_id: self.run_id.clone(),
            step: step.to_owned(),
            detail,
        };
        if let Err(err) = self.state.journal(&e) {
            tracing::warn!(error = %err, "cannot write the run journal");
        }
        crate::adapters::failpoint::hit(&format!("journal:{step}"));
    }

    /// Ends the journal: the run is in the history now.
    pub fn close(&self) {
        if let Err(e) = self.state.close_journal() {
            tracing::warn!(error = %e, "cannot remove the run journal");
        }
    }
}
