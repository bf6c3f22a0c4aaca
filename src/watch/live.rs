//! The live board: where each push running in this process stands, as its
//! [`RunWatch`](super::RunWatch) hears it — building, hosts staged of how
//! many and the bytes sent, the wave being switched — for the on-call
//! page's live view (`cmd::page`), which polls it.
//!
//! Only this process's runs are on it (the daemon's scheduled pushes and
//! the requests it runs): a push started by cron or from a shell shows on
//! the page through its journal (its step and waves), not here. The board
//! is told, never asked: a run never waits on it, and nothing on it can
//! fail a run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::model::{AppName, ClusterName};

/// Where one running push stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// `build`, `stage`, `switch` (the step the run last told).
    pub doing: String,
    /// Hosts staging, and how many are done (ok or failed), failed, and the
    /// bytes rsync sent to those done.
    pub hosts: usize,
    pub staged: usize,
    pub failed: usize,
    pub bytes: u64,
    /// The wave switching (1-based) of how many, its hosts, and the waves
    /// that passed.
    pub wave: usize,
    pub of: usize,
    pub wave_hosts: usize,
    pub waves_passed: usize,
}

/// Every push running in this process, by app and cluster.
#[derive(Debug, Default)]
pub struct Board {
    runs: Mutex<BTreeMap<(AppName, ClusterName), Live>>,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(AppName, ClusterName), Live>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the push of `cluster` stands, if one runs here.
    pub fn get(&self, app: &AppName, cluster: &ClusterName) -> Option<Live> {
        self.lock().get(&(app.clone(), cluster.clone())).cloned()
    }

    /// Changes (or starts) the entry of `cluster`'s push.
    pub fn tell(&self, app: &AppName, cluster: &ClusterName, f: impl FnOnce(&mut Live)) {
        f(self
            .lock()
            .entry((app.clone(), cluster.clone()))
            .or_default());
    }

    /// The push of `cluster` ended.
    pub fn end(&self, app: &AppName, cluster: &ClusterName) {
        self.lock().remove(&(app.clone(), cluster.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_is_on_the_board_from_its_first_word_until_it_ends() {
        let b = Board::new();
        let (app, beta) = (
            AppName::parse("web").unwrap(),
            ClusterName::parse("beta").unwrap(),
        );
        assert_eq!(b.get(&app, &beta), None);
        b.tell(&app, &beta, |l| {
            l.doing = "stage".into();
            l.hosts = 3;
        });
        b.tell(&app, &beta, |l| {
            l.staged += 1;
            l.bytes += 512;
        });
        let l = b.get(&app, &beta).unwrap();
        assert_eq!(
            (l.doing.as_str(), l.staged, l.hosts, l.bytes),
            ("stage", 1, 3, 512)
        );
        b.end(&app, &beta);
        assert_eq!(b.get(&app, &beta), None);
    }
}
