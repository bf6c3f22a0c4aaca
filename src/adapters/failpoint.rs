//! Kill points for the crash-recovery tests: `PUSHGATE_FAILPOINT=NAME` (or
//! `NAME#N` for the N-th time NAME is reached) makes this process send
//! itself SIGKILL at that point — a real `kill -9`, not an unwinding panic,
//! so nothing gets to clean up.
//!
//! Only the test harness sets the variable; without it, [`hit`] is one load
//! of an already-initialised cell. The points are named after what was just
//! made durable or started: `journal:<step>` after a journal entry is
//! written, `spawned:<program>` while a child runs, `stage:host` and
//! `switch:host` after one host finished, `outbox:applied` after an Asana
//! write was applied but before it is marked done, `deployed` after the
//! deployed release was recorded. The list is in `docs/reliability.md`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The environment variable the test harness sets.
pub const ENV: &str = "PUSHGATE_FAILPOINT";

struct Armed {
    name: String,
    nth: u32,
    seen: AtomicU32,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, nth) = match spec.split_once('#') {
                Some((n, k)) => (n.to_owned(), k.parse().ok().filter(|k| *k > 0)?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Reached the point `name`: dies here if the harness asked for it.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    if a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
        tracing::warn!(failpoint = name, "failpoint reached: killing this process");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this only runs if the kill failed.
        std::process::abort();
    }
}
