//! The run's clock: the wall clock is read once, by whoever starts the run
//! (a command, the daemon's tick, a test's injected time); every later
//! timestamp of the run — its release id, journal lines, history times,
//! `deployed.since` — is that reading plus the monotonic time elapsed. So
//! a simulated week drives the real code, and a clock that steps back
//! mid-run cannot reorder a run's own records.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: DateTime<Utc>,
    started: Instant,
}

impl RunClock {
    /// A run that starts at `start` (the one wall-clock reading).
    pub fn starting_at(start: DateTime<Utc>) -> RunClock {
        RunClock {
            start,
            started: Instant::now(),
        }
    }

    /// When the run started.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The run's now: its start plus the time elapsed since.
    pub fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.elapsed()).unwrap_or_default()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
