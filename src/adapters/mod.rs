//! The adapters: one thing each that pushgate talks to — Asana, git, the
//! build, child processes, the state directory, the hosts — each with a
//! typed error. They import the domain and the config, and each other
//! without a circle; never the run, the watchers or the commands.

pub mod asana;
pub mod build;
pub mod failpoint;
pub mod git;
pub mod hosts;
pub mod process;
pub mod state;
