//! The pure core: `plan(&facts) -> Plan`. No IO, no async, no clock, no
//! errors — a held push is a result, not a failure. `tests/it/tidy.rs` keeps
//! it that way.

mod gate;

pub use gate::{gate, holds};

use crate::plan::{Facts, Plan};

/// Decides one push of one cluster from what was gathered.
pub fn plan(facts: &Facts) -> Plan {
    Plan {
        cluster: facts.cluster.clone(),
        verdict: gate(&facts.locks),
    }
}

#[cfg(test)]
mod tests;
