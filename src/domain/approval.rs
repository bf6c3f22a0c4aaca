//! The approval gate's nouns (SPEC §8 "Approval gate", `docs/approvals.md`):
//! who may approve, the requests pushgate made and what was read of them,
//! and why an approval does not let a push through. The rules are in
//! `decide::approval`; this module only names and shows things.
//!
//! Names, e-mails and comments read from Asana are untrusted: they are
//! only ever shown, through `printable`.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::domain::model::{CommitId, TaskGid};
use crate::domain::text::printable;

/// Someone `approvers` names: an Asana user gid or an e-mail address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approver {
    Gid(String),
    Email(String),
}

impl Approver {
    /// A gid (digits) or an e-mail address (`x@y`, no spaces or controls).
    pub fn parse(s: &str) -> Option<Approver> {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Approver::Gid(s.to_owned()));
        }
        let (user, domain) = s.split_once('@')?;
        let ok = !user.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        ok.then(|| Approver::Email(s.to_ascii_lowercase()))
    }

    /// Whether this entry names `p`.
    pub fn names(&self, p: &Person) -> bool {
        match self {
            Approver::Gid(g) => *g == p.gid,
            Approver::Email(e) => p.email.as_deref().is_some_and(|m| same_email(m, e)),
        }
    }
}

/// E-mail addresses compared as people read them: case does not matter.
pub fn same_email(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Gid(g) | Approver::Email(g) => f.write_str(g),
        }
    }
}

/// `[clusters.NAME.approval]` as the rules read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Empty: anyone but pushgate's own user.
    pub approvers: Vec<Approver>,
    /// An approval older than this does not count.
    pub max_age: Duration,
    pub allow_self_approval: bool,
}

/// An Asana user as read: gid, name, and e-mail when it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub gid: String,
    pub name: String,
    pub email: Option<String>,
}

impl fmt::Display for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.trim().is_empty() {
            write!(f, "user {}", printable(&self.gid, 40))
        } else {
            f.write_str(&printable(&self.name, 60))
        }
    }
}

/// An approval task's `approval_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    ChangesRequested,
}

impl ApprovalStatus {
    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "rejected" => ApprovalStatus::Rejected,
            "changes_requested" => ApprovalStatus::ChangesRequested,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::ChangesRequested => "changes_requested",
        }
    }
}

/// What was read of one approval task, now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskRead {
    /// Its create waits in the outbox (Asana did not take it yet).
    Queued,
    /// Asana says it no longer exists (404).
    Deleted,
    /// It could not be read (Asana down, 401, timeouts after retries).
    Unreadable(String),
    Read(ApprovalTask),
}

/// An approval task as Asana holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalTask {
    pub status: ApprovalStatus,
    /// Its notes still name the digest pushgate asked about (nobody edited
    /// the request into another one).
    pub names_digest: bool,
    /// Who decided (`completed_by`), when a decision was made.
    pub decided_by: Option<Person>,
    /// When (`completed_at`).
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's last comment on the task.
    pub comment: Option<String>,
}

/// One request pushgate made (the state directory's record) and what was
/// read of its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `None` while its create waits in the outbox.
    pub gid: Option<TaskGid>,
    pub link: Option<String>,
    pub commit: CommitId,
    /// The artifact's sha256, hex.
    pub digest: String,
    pub asked_at: DateTime<Utc>,
    /// A newer candidate superseded it; it never counts again.
    pub superseded: bool,
    /// Its candidate shipped.
    pub shipped: bool,
    /// What was read of its task; `None` when it was not read (a request
    /// for another candidate).
    pub read: Option<TaskRead>,
}

impl Request {
    /// The task's link, or what stands for it.
    pub fn shown_link(&self) -> String {
        match (&self.link, &self.gid) {
            (Some(l), _) if !l.is_empty() => printable(l, 200),
            (_, Some(g)) => format!("task {g}"),
            _ => "(queued, not created yet)".to_owned(),
        }
    }
}

/// Everything the approval rules need, gathered raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalFacts {
    pub policy: ApprovalPolicy,
    /// pushgate's own user (`GET /users/me`), or why it is unknown.
    pub bot: Result<String, String>,
    /// Something else the rules need could not be read (the artifact,
    /// the commits' authors, the record of requests): fail closed.
    pub unreadable: Option<String>,
    /// The sha256 of the candidate's artifact, when it is in the cache.
    pub digest: Option<String>,
    /// The author e-mail of every commit the push would ship.
    pub authors: Vec<(CommitId, String)>,
    /// The requests pushgate made for this cluster, oldest first.
    pub requests: Vec<Request>,
}

/// Why the approval gate holds a push (exit 3, reason `approval`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalHold {
    /// No request for this candidate yet: a push of the cluster asks.
    NotRequested { commit: CommitId },
    /// The request's create waits in the outbox.
    Queued { commit: CommitId },
    /// Asked; nobody decided yet.
    Pending { link: String },
    Rejected {
        by: Person,
        comment: Option<String>,
        link: String,
    },
    ChangesRequested {
        by: Person,
        comment: Option<String>,
        link: String,
    },
    /// Approved longer than `max_age` ago.
    Expired {
        by: Person,
        at: Option<DateTime<Utc>>,
        max_age: Duration,
        link: String,
    },
    /// The approved task is about other bytes than the candidate's.
    WrongDigest {
        approved: String,
        candidate: String,
        link: String,
    },
    /// Approved by someone `approvers` does not name (or by pushgate).
    NotAllowed { by: Person, link: String },
    /// Approved by the author of a commit being shipped.
    SelfApproval {
        by: Person,
        commit: CommitId,
        link: String,
    },
    /// A newer candidate superseded this candidate's request.
    Superseded { link: String },
    /// The request's task was deleted in Asana.
    Deleted { link: String },
    /// The approval could not be read: fail closed.
    Unreadable { reason: String },
}

/// The first 12 hex digits of a digest, for people.
fn short_digest(d: &str) -> String {
    printable(&d.chars().take(12).collect::<String>(), 12)
}

fn said(comment: &Option<String>) -> String {
    match comment.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!(": \"{}\"", printable(c, 200)),
        None => String::new(),
    }
}

/// `24h`, `90m`: a duration for people.
pub fn human(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s % 3_600 == 0 && s > 0 && s <= 2 * 86_400 => format!("{}h", s / 3_600),
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl fmt::Display for ApprovalHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalHold::NotRequested { commit } => write!(
                f,
                "awaiting approval: {} has not been asked for yet (a push of this cluster asks)",
                commit.short()
            ),
            ApprovalHold::Queued { commit } => write!(
                f,
                "awaiting approval: the request for {} is queued (Asana did not take it yet; the next run sends it)",
                commit.short()
            ),
            ApprovalHold::Pending { link } => write!(f, "awaiting approval {link}"),
            ApprovalHold::Rejected { by, comment, link } => {
                write!(f, "rejected by {by}{} {link}", said(comment))
            }
            ApprovalHold::ChangesRequested { by, comment, link } => {
                write!(f, "changes requested by {by}{} {link}", said(comment))
            }
            ApprovalHold::Expired {
                by,
                at,
                max_age,
                link,
            } => write!(
                f,
                "approval expired: approved by {by}{}, longer than max_age = {} ago {link}",
                at.map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default(),
                human(*max_age)
            ),
            ApprovalHold::WrongDigest {
                approved,
                candidate,
                link,
            } => write!(
                f,
                "approval is for another artifact: sha256:{}… was asked about, the candidate is sha256:{}… {link}",
                short_digest(approved),
                short_digest(candidate)
            ),
            ApprovalHold::NotAllowed { by, link } => write!(
                f,
                "approved by {by}, who is not an allowed approver {link}"
            ),
            ApprovalHold::SelfApproval { by, commit, link } => write!(
                f,
                "approver authored {}: {by} may not approve a push of their own commit (allow_self_approval = false) {link}",
                commit.short()
            ),
            ApprovalHold::Superseded { link } => write!(
                f,
                "approval request superseded: a newer candidate replaced it; a new candidate asks again {link}"
            ),
            ApprovalHold::Deleted { link } => write!(
                f,
                "approval task deleted ({link}); a new candidate asks again"
            ),
            ApprovalHold::Unreadable { reason } => write!(
                f,
                "approval state unknown, not pushing (fail closed): {}",
                printable(reason, 300)
            ),
        }
    }
}

/// What the approval gate says of the candidate, for `status` and
/// `approvals`: it passes (by whom, when), it holds, or there is nothing
/// to approve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    Approved {
        by: Person,
        at: Option<DateTime<Utc>>,
        link: String,
    },
    Held(ApprovalHold),
    /// No candidate, or it is deployed.
    NothingToApprove,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Judgement::Approved { by, at, link } => write!(
                f,
                "approved by {by}{} {link}",
                at.map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            ),
            Judgement::Held(h) => h.fmt(f),
            Judgement::NothingToApprove => f.write_str("nothing to approve"),
        }
    }
}
