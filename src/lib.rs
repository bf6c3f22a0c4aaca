//! pushgate: a release controller driven by Asana. See `docs/ARCHITECTURE.md`.
//!
//! The modules are the layers, lowest first; each imports only from the
//! layers above it in this list (`tests/it/tidy.rs` keeps it so):

pub mod adapters;
pub mod cmd;
pub mod config;
pub mod domain;
pub mod run;
pub mod watch;

pub use pushgate_sandbox as sandbox;
