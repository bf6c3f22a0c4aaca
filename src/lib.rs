//! pushgate: a release controller driven by Asana. See `docs/ARCHITECTURE.md`.

pub mod asana;
pub mod build;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod decide;
pub mod execute;
pub mod failpoint;
pub mod gather;
pub mod git;
pub mod holds;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod observe;
pub mod outbox;
pub mod plan;
pub mod process;
pub mod progress;
pub mod recover;
pub use pushgate_sandbox as sandbox;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod term;
