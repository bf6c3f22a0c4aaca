//! What decide works on and what it returns: `Facts` in, `Plan` out, and
//! the plan's `Display` — one rendering for the log line, the CLI output and
//! the test snapshots.

use std::fmt;

use crate::model::{ClusterName, LockTask};

/// What the lock project said, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockFacts {
    Read(Vec<LockTask>),
    /// Asana down, 401, timeouts after retries: the push fails closed.
    Unreadable(String),
}

/// Everything a push decision needs, gathered before deciding.
#[derive(Clone, Debug)]
pub struct Facts {
    pub cluster: ClusterName,
    pub locks: LockFacts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing holds the push.
    Push,
    Hold(HoldReason),
    /// The lock state could not be read: nothing is pushed.
    Unknown {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// These tasks of the lock project hold the push.
    Locked { tasks: Vec<LockTask> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub cluster: ClusterName,
    pub verdict: Verdict,
}

/// Untrusted text made safe for a terminal or a log line: control
/// characters escaped, long text cut.
pub fn printable(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for LockTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.trim().is_empty() {
            "(unnamed task)".to_owned()
        } else {
            printable(&self.name, 120)
        };
        write!(f, "\"{name}\"")?;
        match &self.assignee {
            Some(a) => write!(f, " (assignee: {})", printable(a, 60))?,
            None => write!(f, " (unassigned)")?,
        }
        write!(f, " {}", printable(&self.link, 200))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cluster;
        match &self.verdict {
            Verdict::Push => write!(f, "{c}: may push: no open lock in the lock project"),
            Verdict::Hold(HoldReason::Locked { tasks }) => {
                let n = tasks.len();
                write!(f, "{c}: held by {n} lock{}:", if n == 1 { "" } else { "s" })?;
                for t in tasks {
                    write!(f, "\n  - {t}")?;
                }
                Ok(())
            }
            Verdict::Unknown { reason } => {
                write!(
                    f,
                    "{c}: lock state unknown, not pushing (fail closed): {}",
                    printable(reason, 500)
                )
            }
        }
    }
}
