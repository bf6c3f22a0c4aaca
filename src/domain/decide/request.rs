//! What the daemon does with one request task on one poll
//! (`docs/requests.md`), pure: from what the journal says of it and what
//! was read of the task now.

use chrono::{DateTime, Duration, Utc};

/// Where a request stands, as the requests journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Never looked at.
    New,
    /// Its author is not allowed: told once, never run.
    Refused,
    /// Its name is not a request: told once; looked at again if renamed.
    NotUnderstood { name: String },
    /// An attempt started and did not finish (a crash): never re-run by itself.
    Running { attempt: u32 },
    /// Held by a gate: tried again on each poll.
    Held { attempt: u32 },
    /// Failed: tried again only after a `retry` comment newer than `at`.
    Failed { attempt: u32, at: DateTime<Utc> },
    /// Succeeded, expired, or closed by a person: nothing more.
    Closed,
}

/// What was read of the request task now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
    /// Whether its author is in `[requests] allowed`.
    pub allowed: bool,
    /// Whether its name parses.
    pub understood: bool,
    /// An allowed person commented `retry` after the last failure.
    pub retry: bool,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Comment that its author is not allowed (once).
    Refuse,
    /// Comment what is understood (once per name).
    NotUnderstood,
    /// A crash interrupted attempt `attempt`: comment, and wait for `retry`.
    Interrupted {
        attempt: u32,
    },
    /// Run attempt `attempt`.
    Run {
        attempt: u32,
    },
    /// Older than `max_age` and never done: comment and close it.
    Expire,
    /// A person completed it: stop trying.
    Stop,
}

/// The rule: a request runs as its author asked only if they are allowed
/// and its name parses; a held one is tried on every poll until it passes,
/// a person completes it, or it is older than `max_age`; a failed one only
/// after a `retry` comment; each attempt runs at most once.
pub fn next(standing: &Standing, seen: &Seen, now: DateTime<Utc>, max_age: Duration) -> Action {
    let attempt = match standing {
        Standing::Closed | Standing::Refused => return Action::Nothing,
        Standing::Running { attempt } => return Action::Interrupted { attempt: *attempt },
        Standing::New | Standing::NotUnderstood { .. } => 0,
        Standing::Held { attempt } | Standing::Failed { attempt, .. } => *attempt,
    };
    if seen.completed {
        return match standing {
            Standing::New | Standing::Held { .. } => Action::Stop,
            _ => Action::Nothing,
        };
    }
    if !seen.allowed {
        return match standing {
            Standing::New | Standing::NotUnderstood { .. } => Action::Refuse,
            _ => Action::Nothing,
        };
    }
    if !seen.understood {
        return match standing {
            Standing::NotUnderstood { name } if *name == seen.name => Action::Nothing,
            Standing::New | Standing::NotUnderstood { .. } => Action::NotUnderstood,
            _ => Action::Nothing,
        };
    }
    let old = now - seen.created_at > max_age;
    match standing {
        Standing::New | Standing::NotUnderstood { .. } | Standing::Held { .. } if old => {
            Action::Expire
        }
        Standing::New | Standing::NotUnderstood { .. } | Standing::Held { .. } => Action::Run {
            attempt: attempt + 1,
        },
        Standing::Failed { .. } if seen.retry => Action::Run {
            attempt: attempt + 1,
        },
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn seen() -> Seen {
        Seen {
            name: "push prod".into(),
            completed: false,
            created_at: at("2026-11-24T10:00:00Z"),
            allowed: true,
            understood: true,
            retry: false,
        }
    }

    fn check(standing: Standing, edit: impl FnOnce(&mut Seen)) -> Action {
        let mut s = seen();
        edit(&mut s);
        next(
            &standing,
            &s,
            at("2026-11-24T12:00:00Z"),
            Duration::hours(24),
        )
    }

    #[test]
    fn a_new_request_by_an_allowed_person_runs_once_per_attempt() {
        assert_eq!(check(Standing::New, |_| {}), Action::Run { attempt: 1 });
        assert_eq!(
            check(Standing::Held { attempt: 3 }, |_| {}),
            Action::Run { attempt: 4 }
        );
        assert_eq!(
            check(Standing::Running { attempt: 2 }, |_| {}),
            Action::Interrupted { attempt: 2 }
        );
        assert_eq!(check(Standing::Closed, |_| {}), Action::Nothing);
    }

    #[test]
    fn not_allowed_and_not_understood_are_told_once() {
        assert_eq!(check(Standing::New, |s| s.allowed = false), Action::Refuse);
        assert_eq!(
            check(Standing::Refused, |s| s.allowed = false),
            Action::Nothing
        );
        // Refused stays refused, whatever the task becomes.
        assert_eq!(check(Standing::Refused, |_| {}), Action::Nothing);
        assert_eq!(
            check(Standing::New, |s| s.understood = false),
            Action::NotUnderstood
        );
        let told = Standing::NotUnderstood {
            name: "push prod".into(),
        };
        assert_eq!(
            check(told.clone(), |s| s.understood = false),
            Action::Nothing
        );
        // Renamed into something else that is wrong: told again; fixed: runs.
        assert_eq!(
            check(told.clone(), |s| {
                s.understood = false;
                s.name = "psuh prod".into();
            }),
            Action::NotUnderstood
        );
        assert_eq!(check(told, |_| {}), Action::Run { attempt: 1 });
    }

    #[test]
    fn held_requests_stop_when_completed_or_too_old_failed_ones_wait_for_retry() {
        assert_eq!(
            check(Standing::Held { attempt: 1 }, |s| s.completed = true),
            Action::Stop
        );
        assert_eq!(
            check(Standing::Held { attempt: 1 }, |s| s.created_at =
                at("2026-11-23T11:59:59Z")),
            Action::Expire
        );
        let failed = Standing::Failed {
            attempt: 1,
            at: at("2026-11-24T11:00:00Z"),
        };
        assert_eq!(check(failed.clone(), |_| {}), Action::Nothing);
        assert_eq!(
            check(failed.clone(), |s| s.retry = true),
            Action::Run { attempt: 2 }
        );
        assert_eq!(
            check(failed, |s| {
                s.retry = true;
                s.completed = true;
            }),
            Action::Nothing
        );
    }
}
