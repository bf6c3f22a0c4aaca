//! Asana's Events API as the sandbox keeps it (API-FACTS §10, spec
//! `paths./events`): an in-memory log of what changed, and sync tokens that
//! remember where a reader of one resource stopped.
//!
//! A change records one event per thing it did (a task added to a project,
//! a field changed, a story added) together with the resources whose
//! subscribers see it: the task itself, its projects, its parent. A token is
//! bound to the resource it was issued for and dies after 24 hours of
//! sandbox time, when the log has dropped the events after it, or when a
//! test expires every token; a dead or missing token is answered with 412
//! and a fresh one, as Asana does.
//!
//! Deliberately not here: events survive no restart (a reader then gets 412
//! and starts again, which Asana allows at any time), no webhooks, no
//! workspace-wide `GET /workspaces/{gid}/events`.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// How many events the log keeps; older ones are dropped with the tokens
/// that still needed them.
const KEEP: usize = 10_000;

/// How long a sync token lives (Asana: "within 24 hours, sooner under load").
const TOKEN_LIFE_HOURS: i64 = 24;

/// The most events one call returns (spec: "limits a single sync token to 100").
pub const MAX_PER_CALL: usize = 100;

/// A reference to an object, as events name it (spec: `AsanaNamedResource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub resource_type: String,
    pub gid: String,
    pub name: Option<String>,
}

impl Named {
    pub fn new(resource_type: &str, gid: &str, name: Option<&str>) -> Named {
        Named {
            resource_type: resource_type.into(),
            gid: gid.into(),
            name: name.map(str::to_owned),
        }
    }
}

/// One event (spec: `EventResponse`).
#[derive(Clone, Debug, PartialEq)]
pub struct EventRec {
    /// Position in the log, set when the change is saved.
    pub seq: u64,
    pub created_at: DateTime<Utc>,
    /// Who made the change (a user gid).
    pub user: String,
    pub resource: Named,
    /// `added`, `removed`, `changed`, `deleted`.
    pub action: String,
    pub parent: Option<Named>,
    /// `{field, action, new_value, ...}` on `changed` events.
    pub change: Option<Value>,
    /// The gids whose subscribers get this event.
    pub audience: Vec<String>,
}

struct SyncPoint {
    resource: String,
    /// The last event this reader has seen.
    after: u64,
    issued: DateTime<Utc>,
}

/// Why a read was refused: a fresh token for the reader to start again from.
pub struct Stale {
    pub fresh: String,
}

/// A page of events for one reader.
pub struct Page {
    pub events: Vec<EventRec>,
    pub sync: String,
    pub has_more: bool,
}

#[derive(Default)]
pub struct EventLog {
    last_seq: u64,
    events: VecDeque<EventRec>,
    tokens: HashMap<String, SyncPoint>,
}

impl EventLog {
    /// Appends saved events in order, numbering them.
    pub fn append(&mut self, events: Vec<EventRec>) {
        for mut e in events {
            self.last_seq += 1;
            e.seq = self.last_seq;
            self.events.push_back(e);
        }
        while self.events.len() > KEEP {
            self.events.pop_front();
        }
    }

    /// A token for `resource` at the head of the log: its reader gets what
    /// happens from now on.
    pub fn issue(&mut self, resource: &str, now: DateTime<Utc>, token: String) -> String {
        self.tokens.insert(
            token.clone(),
            SyncPoint {
                resource: resource.to_owned(),
                after: self.last_seq,
                issued: now,
            },
        );
        token
    }

    /// Every token dies: the next read of each gets 412.
    pub fn expire_all(&mut self) {
        self.tokens.clear();
    }

    /// The events for `resource` after `sync`, at most `limit`, and the
    /// token to read on from. `new_token` makes the tokens handed out.
    pub fn read(
        &mut self,
        resource: &str,
        sync: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
        mut new_token: impl FnMut() -> String,
    ) -> Result<Page, Stale> {
        let oldest_kept = self.events.front().map_or(self.last_seq, |e| e.seq - 1);
        let point = sync
            .filter(|t| !t.is_empty())
            .and_then(|t| self.tokens.get(t));
        let after = match point {
            Some(p)
                if p.resource == resource
                    && p.after >= oldest_kept
                    && now - p.issued < Duration::hours(TOKEN_LIFE_HOURS) =>
            {
                p.after
            }
            _ => {
                let fresh = self.issue(resource, now, new_token());
                return Err(Stale { fresh });
            }
        };
        let mut matching = self
            .events
            .iter()
            .filter(|e| e.seq > after && e.audience.iter().any(|a| a == resource));
        let events: Vec<EventRec> = matching.by_ref().take(limit).cloned().collect();
        let has_more = matching.next().is_some();
        let at = if has_more {
            events.last().map_or(after, |e| e.seq)
        } else {
            self.last_seq
        };
        let sync = new_token();
        self.tokens.insert(
            sync.clone(),
            SyncPoint {
                resource: resource.to_owned(),
                after: at,
                issued: now,
            },
        );
        Ok(Page {
            events,
            sync,
            has_more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(on: &str) -> EventRec {
        EventRec {
            seq: 0,
            created_at: Utc::now(),
            user: "1".into(),
            resource: Named::new("task", on, Some("t")),
            action: "changed".into(),
            parent: None,
            change: None,
            audience: vec![on.into()],
        }
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("tok{n}")
        }
    }

    #[test]
    fn a_reader_gets_412_then_only_what_happens_after_its_token() {
        let mut log = EventLog::default();
        let now = Utc::now();
        let mut tok = counter();
        log.append(vec![ev("7")]);
        let Err(stale) = log.read("7", None, 100, now, &mut tok) else {
            panic!("no token is 412")
        };
        log.append(vec![ev("7"), ev("8"), ev("7")]);
        let page = log
            .read("7", Some(&stale.fresh), 100, now, &mut tok)
            .ok()
            .unwrap();
        assert_eq!(page.events.len(), 2, "only task 7's, only after the token");
        assert!(!page.has_more);
        let again = log
            .read("7", Some(&page.sync), 100, now, &mut tok)
            .ok()
            .unwrap();
        assert!(again.events.is_empty());
    }

    #[test]
    fn pages_of_at_most_limit_with_has_more() {
        let mut log = EventLog::default();
        let now = Utc::now();
        let mut tok = counter();
        let Err(stale) = log.read("7", None, 100, now, &mut tok) else {
            panic!()
        };
        log.append((0..5).map(|_| ev("7")).collect());
        let p1 = log
            .read("7", Some(&stale.fresh), 2, now, &mut tok)
            .ok()
            .unwrap();
        assert_eq!((p1.events.len(), p1.has_more), (2, true));
        let p2 = log
            .read("7", Some(&p1.sync), 2, now, &mut tok)
            .ok()
            .unwrap();
        let p3 = log
            .read("7", Some(&p2.sync), 2, now, &mut tok)
            .ok()
            .unwrap();
        assert_eq!((p3.events.len(), p3.has_more), (1, false));
        let seqs: Vec<u64> = [p1, p2, p3]
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn tokens_die_of_age_of_expiry_and_of_another_resource() {
        let mut log = EventLog::default();
        let now = Utc::now();
        let mut tok = counter();
        let t = log.issue("7", now, "a".into());
        assert!(log.read("8", Some(&t), 100, now, &mut tok).is_err());
        let t = log.issue("7", now, "b".into());
        let later = now + Duration::hours(25);
        assert!(log.read("7", Some(&t), 100, later, &mut tok).is_err());
        let t = log.issue("7", now, "c".into());
        log.expire_all();
        assert!(log.read("7", Some(&t), 100, now, &mut tok).is_err());
        assert!(log.read("7", Some(""), 100, now, &mut tok).is_err());
    }
}
