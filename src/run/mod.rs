//! One run of one cluster: gather the facts, execute a plan's steps, the
//! outbox of Asana writes, the recovery of a killed run, and the crash
//! tasks' aftercare. It returns data and never prints; what watches a run
//! is handed to it.

pub mod crash;
pub mod execute;
pub mod gather;
pub mod outbox;
pub mod recover;
