//! Progress bars for a person at a terminal (indicatif): a spinner while
//! the build runs, a bar of hosts staged with the bytes sent. They draw on
//! stderr and are cleared when their step ends; the step's plain line
//! (printed by the push, as without a terminal) then says how it went.
//!
//! Whether to show them is decided by the caller ([`wanted`]); this module
//! only draws.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars only when a person watches: stdout and stderr are terminals, and
/// `TERM` is not `dumb`.
pub fn wanted() -> bool {
    std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// A spinner with the elapsed time: "building 3f2a9c1 (12s)".
pub fn build_spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// "staging [=====>    ] 2/3 hosts · 1.2 MB sent (4s)".
pub fn stage_bar(hosts: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(hosts as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("staging [{bar:30}] {pos}/{len} hosts · {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("0 B sent");
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
