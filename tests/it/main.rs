//! One integration-test binary: `support/` starts real parts (the sandbox on
//! loopback, the real binary), then one module per feature.

mod broken_hosts;
mod cli;
mod client;
mod crash;
mod daemon;
mod hostile;
mod push;
mod sandbox;
mod sdk;
mod ssh;
mod support;
mod tidy;
mod week;
