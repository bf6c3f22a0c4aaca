//! One integration-test binary: `support/` starts real parts (the sandbox on
//! loopback, the real binary), then one module per feature.

mod approvals;
mod broken_hosts;
mod check;
mod cli;
mod client;
mod crash;
mod daemon;
mod daemon_dst;
mod faults;
mod hostile;
mod metrics;
mod node;
mod notify;
mod outbox;
mod push;
mod recovery;
mod requests;
mod sandbox;
mod sandbox_approvals;
mod sandbox_endpoints;
mod sandbox_events;
mod sandbox_fields;
mod sandbox_pages;
mod sdk;
mod ssh;
mod support;
mod tidy;
mod token;
mod transport;
mod transport_bittorrent;
mod ux;
mod views;
mod waves;
mod week;
