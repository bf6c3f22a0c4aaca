//! pushgate: a release controller driven by Asana. See `docs/ARCHITECTURE.md`.

pub mod asana;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod decide;
pub mod gather;
pub mod model;
pub mod plan;
pub mod sandbox;
pub mod telemetry;
