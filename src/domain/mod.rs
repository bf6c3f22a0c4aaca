//! The pure core: domain nouns, the facts a decision is made on, the plans
//! it returns, and every decision (`decide`). No IO, no async, no clock
//! read, no error type; it imports nothing outside itself.

pub mod approval;
pub mod decide;
pub mod model;
pub mod plan;
pub mod report;
pub mod request;
pub mod text;
