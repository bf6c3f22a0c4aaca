//! The approval gate's rules (`docs/approvals.md`), pure: whether the
//! candidate's approval lets the push through, which requests to make and
//! which to mark superseded, when to ask, and how long a scheduled push
//! held only by the approval is tried again. No IO, no clock: `now` is
//! given.

use chrono::{DateTime, Duration, Utc};

use crate::domain::approval::{
    same_email, ApprovalFacts, ApprovalHold, ApprovalStatus, Judgement, Request, TaskRead,
};
use crate::domain::model::CommitId;
use crate::domain::plan::{HoldReason, Verdict};

/// What the approval gate says of `candidate` at `now` (SPEC §8): it
/// passes only when the request pushgate made for exactly this candidate's
/// artifact is `approved`, by an allowed person who is not pushgate, no
/// longer than `max_age` ago, and — unless `allow_self_approval` — by
/// someone who authored none of the commits being shipped. Anything that
/// cannot be read fails closed.
pub fn judge(a: &ApprovalFacts, candidate: &CommitId, now: DateTime<Utc>) -> Judgement {
    let hold = Judgement::Held;
    if let Some(why) = &a.unreadable {
        return hold(ApprovalHold::Unreadable {
            reason: why.clone(),
        });
    }
    let bot = match &a.bot {
        Ok(b) => b,
        Err(why) => {
            return hold(ApprovalHold::Unreadable {
                reason: format!("who pushgate is in Asana: {why}"),
            })
        }
    };
    let Some(digest) = &a.digest else {
        // Not built yet: the push builds the artifact, then asks about it.
        return hold(ApprovalHold::NotRequested {
            commit: candidate.clone(),
        });
    };
    let mine: Vec<&Request> = a
        .requests
        .iter()
        .rev()
        .filter(|r| r.commit == *candidate)
        .collect();
    let Some(r) = mine.iter().find(|r| r.digest == *digest) else {
        return hold(match mine.first() {
            Some(other) => ApprovalHold::WrongDigest {
                approved: other.digest.clone(),
                candidate: digest.clone(),
                link: other.shown_link(),
            },
            None => ApprovalHold::NotRequested {
                commit: candidate.clone(),
            },
        });
    };
    let link = r.shown_link();
    if r.superseded {
        return hold(ApprovalHold::Superseded { link });
    }
    let task = match &r.read {
        None => {
            return hold(ApprovalHold::Unreadable {
                reason: "the request's task was not read".into(),
            })
        }
        Some(TaskRead::Queued) => {
            return hold(ApprovalHold::Queued {
                commit: candidate.clone(),
            })
        }
        Some(TaskRead::Deleted) => return hold(ApprovalHold::Deleted { link }),
        Some(TaskRead::Unreadable(why)) => {
            return hold(ApprovalHold::Unreadable {
                reason: why.clone(),
            })
        }
        Some(TaskRead::Read(t)) => t,
    };
    let decided = || task.decided_by.clone();
    let by = match (task.status, decided()) {
        (ApprovalStatus::Pending, _) => return hold(ApprovalHold::Pending { link }),
        (ApprovalStatus::Rejected, Some(by)) => {
            return hold(ApprovalHold::Rejected {
                by,
                comment: task.comment.clone(),
                link,
            })
        }
        (ApprovalStatus::ChangesRequested, Some(by)) => {
            return hold(ApprovalHold::ChangesRequested {
                by,
                comment: task.comment.clone(),
                link,
            })
        }
        (_, None) => {
            return hold(ApprovalHold::Unreadable {
                reason: format!(
                    "the approval task is {} but who decided cannot be read",
                    task.status.as_str()
                ),
            })
        }
        (ApprovalStatus::Approved, Some(by)) => by,
    };
    if !task.names_digest {
        return hold(ApprovalHold::WrongDigest {
            approved: "(edited away)".into(),
            candidate: digest.clone(),
            link,
        });
    }
    let allowed = by.gid != *bot
        && (a.policy.approvers.is_empty() || a.policy.approvers.iter().any(|p| p.names(&by)));
    if !allowed {
        return hold(ApprovalHold::NotAllowed { by, link });
    }
    let fresh = task
        .decided_at
        .is_some_and(|at| at <= now && now - at <= a.policy.max_age);
    if !fresh {
        return hold(ApprovalHold::Expired {
            by,
            at: task.decided_at,
            max_age: a.policy.max_age,
            link,
        });
    }
    if !a.policy.allow_self_approval {
        let Some(email) = &by.email else {
            return hold(ApprovalHold::Unreadable {
                reason: format!(
                    "the e-mail of the approver ({by}) cannot be read to tell whether they authored a commit being shipped"
                ),
            });
        };
        if let Some((c, _)) = a.authors.iter().find(|(_, e)| same_email(e, email)) {
            return hold(ApprovalHold::SelfApproval {
                by,
                commit: c.clone(),
                link,
            });
        }
    }
    Judgement::Approved {
        by,
        at: task.decided_at,
        link,
    }
}

/// The hold the approval gate puts on a push of `candidate`, if any.
pub fn hold(a: &ApprovalFacts, candidate: &CommitId, now: DateTime<Utc>) -> Option<ApprovalHold> {
    match judge(a, candidate, now) {
        Judgement::Held(h) => Some(h),
        Judgement::Approved { .. } | Judgement::NothingToApprove => None,
    }
}

/// What a run that may write to Asana does about requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// Create the request for the candidate (its artifact's digest known).
    pub create: bool,
    /// The requests (indices into `ApprovalFacts::requests`) a newer
    /// candidate supersedes: commented on and renamed, never completed
    /// (completing an approval task approves it).
    pub supersede: Vec<usize>,
}

/// Which requests to make and supersede for `candidate` (not deployed):
/// exactly one request per candidate (commit and artifact digest) — none
/// when one exists in any state, rejected, deleted or superseded
/// included — and every open request for another candidate is superseded.
/// Nothing before the digest is known (the run builds first).
pub fn ask(a: &ApprovalFacts, candidate: Option<&CommitId>, deployed: Option<&CommitId>) -> Ask {
    let (Some(candidate), Some(digest)) = (candidate, &a.digest) else {
        return Ask::default();
    };
    if deployed == Some(candidate) {
        return Ask::default();
    }
    let this = |r: &Request| r.commit == *candidate && r.digest == *digest;
    Ask {
        create: !a.requests.iter().any(this),
        supersede: a
            .requests
            .iter()
            .enumerate()
            .filter(|(_, r)| !this(r) && !r.superseded && !r.shipped)
            .map(|(i, _)| i)
            .collect(),
    }
}

/// Whether a push run (holding the cluster's lock) that decided `verdict`
/// asks for its candidate's approval: whenever the candidate could ship
/// once approved — not when there is nothing new, another push runs, or
/// the candidate is not to be pushed at all (its build failed, it was
/// rolled back, its source's bytes are gone).
pub fn asks_on(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Push { .. } | Verdict::Unknown { .. } => true,
        Verdict::NothingNew { .. } => false,
        Verdict::Hold(h) => !matches!(
            h,
            HoldReason::Running { .. }
                | HoldReason::OtherRunning { .. }
                | HoldReason::BuildFailed { .. }
                | HoldReason::RolledBack { .. }
                | HoldReason::ArtifactMissing { .. }
        ),
    }
}

/// When to ask for the approval of the push due at `next_push`: when the
/// candidate can no longer change before it — the source cluster's
/// freeze towards this cluster begins (`freeze`), else `request_before`
/// ahead — so that the approver has that long to decide and no request
/// is made for a candidate that never ships.
pub fn ask_from(
    next_push: DateTime<Utc>,
    freeze: Option<Duration>,
    request_before: Duration,
) -> DateTime<Utc> {
    next_push - freeze.unwrap_or(request_before)
}

/// Whether the daemon asks now for the push due at `next_push`.
pub fn time_to_ask(
    now: DateTime<Utc>,
    next_push: DateTime<Utc>,
    freeze: Option<Duration>,
    request_before: Duration,
) -> bool {
    now >= ask_from(next_push, freeze, request_before) && now <= next_push
}

/// Whether a scheduled push at `scheduled`, held only by the approval, is
/// still tried again at `now`: up to `window` after its scheduled time;
/// after that it waits for the next scheduled push.
pub fn retrying(now: DateTime<Utc>, scheduled: DateTime<Utc>, window: Duration) -> bool {
    now >= scheduled && now - scheduled <= window
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::domain::approval::{ApprovalPolicy, ApprovalTask, Approver, Person};
    use crate::domain::model::TaskGid;

    fn commit(c: char) -> CommitId {
        CommitId::parse(&c.to_string().repeat(40)).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const NOW: &str = "2026-11-24T17:30:00Z";
    const BOT: &str = "100";

    fn avery() -> Person {
        Person {
            gid: "101".into(),
            name: "Avery Approver".into(),
            email: Some("Approver@Example.com".into()),
        }
    }

    fn task(status: ApprovalStatus, by: Option<Person>, decided: &str) -> ApprovalTask {
        ApprovalTask {
            status,
            names_digest: true,
            decided_by: by,
            decided_at: Some(at(decided)),
            comment: None,
        }
    }

    fn request(c: char, digest: &str, read: Option<TaskRead>) -> Request {
        Request {
            gid: TaskGid::parse("555"),
            link: Some("https://app.asana.com/0/7/555".into()),
            commit: commit(c),
            digest: digest.into(),
            asked_at: at("2026-11-24T16:30:00Z"),
            superseded: false,
            shipped: false,
            read,
        }
    }

    /// prod's candidate `c…`, its artifact `d1`, Eli authored it; one
    /// request, approved by Avery at 17:00.
    fn facts() -> ApprovalFacts {
        ApprovalFacts {
            policy: ApprovalPolicy {
                approvers: vec![],
                max_age: Duration::hours(24),
                allow_self_approval: false,
            },
            bot: Ok(BOT.into()),
            unreadable: None,
            digest: Some("d1".repeat(32)),
            authors: vec![(commit('c'), "eli@example.com".into())],
            requests: vec![request(
                'c',
                &"d1".repeat(32),
                Some(TaskRead::Read(task(
                    ApprovalStatus::Approved,
                    Some(avery()),
                    "2026-11-24T17:00:00Z",
                ))),
            )],
        }
    }

    fn check(f: ApprovalFacts, expect: Expect) {
        expect.assert_eq(&judge(&f, &commit('c'), at(NOW)).to_string());
    }

    fn with_task(f: &mut ApprovalFacts, edit: impl FnOnce(&mut ApprovalTask)) {
        if let Some(TaskRead::Read(t)) = &mut f.requests[0].read {
            edit(t);
        }
    }

    #[test]
    fn approved_by_anyone_but_pushgate_passes() {
        check(
            facts(),
            expect![
                "approved by Avery Approver at 2026-11-24 17:00 UTC https://app.asana.com/0/7/555"
            ],
        );
    }

    #[test]
    fn pending_rejected_and_changes_requested_hold_with_who_and_what_they_said() {
        let mut f = facts();
        with_task(&mut f, |t| {
            t.status = ApprovalStatus::Pending;
            t.decided_by = None;
        });
        check(
            f,
            expect!["awaiting approval https://app.asana.com/0/7/555"],
        );
        let mut f = facts();
        with_task(&mut f, |t| {
            t.status = ApprovalStatus::Rejected;
            t.comment = Some("not during the sale\n\u{1b}[2J".into());
        });
        check(
            f,
            expect![[
                r#"rejected by Avery Approver: "not during the sale\n\u{1b}[2J" https://app.asana.com/0/7/555"#
            ]],
        );
        let mut f = facts();
        with_task(&mut f, |t| t.status = ApprovalStatus::ChangesRequested);
        check(
            f,
            expect!["changes requested by Avery Approver https://app.asana.com/0/7/555"],
        );
    }

    #[test]
    fn an_approval_older_than_max_age_has_expired() {
        let mut f = facts();
        with_task(&mut f, |t| t.decided_at = Some(at("2026-11-23T17:29:59Z")));
        check(
            f,
            expect!["approval expired: approved by Avery Approver at 2026-11-23 17:29 UTC, longer than max_age = 24h ago https://app.asana.com/0/7/555"],
        );
        // Exactly max_age old still counts; an unknown time does not.
        let mut f = facts();
        with_task(&mut f, |t| t.decided_at = Some(at("2026-11-23T17:30:00Z")));
        assert!(matches!(
            judge(&f, &commit('c'), at(NOW)),
            Judgement::Approved { .. }
        ));
        let mut f = facts();
        with_task(&mut f, |t| t.decided_at = None);
        assert!(matches!(
            hold(&f, &commit('c'), at(NOW)),
            Some(ApprovalHold::Expired { .. })
        ));
    }

    #[test]
    fn only_the_candidates_own_artifact_counts() {
        let mut f = facts();
        f.digest = Some("e2".repeat(32));
        check(
            f,
            expect!["approval is for another artifact: sha256:d1d1d1d1d1d1… was asked about, the candidate is sha256:e2e2e2e2e2e2… https://app.asana.com/0/7/555"],
        );
        // Someone edited the digest out of the request's notes.
        let mut f = facts();
        with_task(&mut f, |t| t.names_digest = false);
        assert!(matches!(
            hold(&f, &commit('c'), at(NOW)),
            Some(ApprovalHold::WrongDigest { .. })
        ));
        // An approval of another commit is no approval of this one.
        let mut f = facts();
        f.requests[0].commit = commit('b');
        check(
            f,
            expect!["awaiting approval: ccccccc has not been asked for yet (a push of this cluster asks)"],
        );
    }

    #[test]
    fn approvers_name_people_by_gid_or_email_and_never_pushgate() {
        let mut f = facts();
        f.policy.approvers = vec![Approver::parse("approver@example.com").unwrap()];
        assert!(matches!(
            judge(&f, &commit('c'), at(NOW)),
            Judgement::Approved { .. }
        ));
        f.policy.approvers = vec![Approver::parse("101").unwrap()];
        assert!(matches!(
            judge(&f, &commit('c'), at(NOW)),
            Judgement::Approved { .. }
        ));
        f.policy.approvers = vec![Approver::parse("someone@example.com").unwrap()];
        check(
            f,
            expect!["approved by Avery Approver, who is not an allowed approver https://app.asana.com/0/7/555"],
        );
        // pushgate itself never counts, even with no list.
        let mut f = facts();
        with_task(&mut f, |t| {
            t.decided_by = Some(Person {
                gid: BOT.into(),
                name: "pushgate".into(),
                email: None,
            })
        });
        assert!(matches!(
            hold(&f, &commit('c'), at(NOW)),
            Some(ApprovalHold::NotAllowed { .. })
        ));
    }

    #[test]
    fn the_author_of_a_shipped_commit_may_not_approve_it_unless_allowed() {
        let mut f = facts();
        f.authors.push((commit('a'), "APPROVER@example.com".into()));
        check(
            f.clone(),
            expect!["approver authored aaaaaaa: Avery Approver may not approve a push of their own commit (allow_self_approval = false) https://app.asana.com/0/7/555"],
        );
        f.policy.allow_self_approval = true;
        assert!(matches!(
            judge(&f, &commit('c'), at(NOW)),
            Judgement::Approved { .. }
        ));
        // Without the approver's e-mail nobody can tell: fail closed.
        let mut f = facts();
        with_task(&mut f, |t| {
            if let Some(p) = &mut t.decided_by {
                p.email = None;
            }
        });
        check(
            f,
            expect!["approval state unknown, not pushing (fail closed): the e-mail of the approver (Avery Approver) cannot be read to tell whether they authored a commit being shipped"],
        );
    }

    #[test]
    fn superseded_deleted_queued_and_unreadable_requests_hold() {
        let mut f = facts();
        f.requests[0].superseded = true;
        check(
            f,
            expect!["approval request superseded: a newer candidate replaced it; a new candidate asks again https://app.asana.com/0/7/555"],
        );
        let mut f = facts();
        f.requests[0].read = Some(TaskRead::Deleted);
        check(
            f,
            expect![
                "approval task deleted (https://app.asana.com/0/7/555); a new candidate asks again"
            ],
        );
        let mut f = facts();
        f.requests[0].read = Some(TaskRead::Queued);
        check(
            f,
            expect!["awaiting approval: the request for ccccccc is queued (Asana did not take it yet; the next run sends it)"],
        );
        let mut f = facts();
        f.requests[0].read = Some(TaskRead::Unreadable("GET /tasks/555: HTTP 500".into()));
        check(
            f,
            expect!["approval state unknown, not pushing (fail closed): GET /tasks/555: HTTP 500"],
        );
        let mut f = facts();
        f.bot = Err("GET /users/me: HTTP 401".into());
        check(
            f,
            expect!["approval state unknown, not pushing (fail closed): who pushgate is in Asana: GET /users/me: HTTP 401"],
        );
    }

    #[test]
    fn one_request_per_candidate_and_older_open_ones_are_superseded() {
        let c = commit('c');
        let mut f = facts();
        f.requests.clear();
        assert_eq!(
            ask(&f, Some(&c), None),
            Ask {
                create: true,
                supersede: vec![]
            }
        );
        // Any request for this candidate, whatever became of it, is the one.
        for read in [
            TaskRead::Deleted,
            TaskRead::Queued,
            TaskRead::Read(task(ApprovalStatus::Rejected, Some(avery()), NOW)),
        ] {
            let mut f = facts();
            f.requests[0].read = Some(read);
            assert_eq!(ask(&f, Some(&c), None), Ask::default());
        }
        // A newer candidate: ask, and supersede the open older request
        // (not one that shipped, nor one already superseded).
        let mut f = facts();
        f.requests.push(request('a', "aa", None));
        f.requests[1].shipped = true;
        f.requests.push(request('b', "bb", None));
        f.requests[2].superseded = true;
        f.digest = Some("e2".into());
        assert_eq!(
            ask(&f, Some(&c), None),
            Ask {
                create: true,
                supersede: vec![0]
            }
        );
        // Nothing before the digest is known, nor for what is deployed.
        f.digest = None;
        assert_eq!(ask(&f, Some(&c), None), Ask::default());
        assert_eq!(ask(&facts(), Some(&c), Some(&c)), Ask::default());
    }

    #[test]
    fn asks_when_the_freeze_begins_or_request_before_ahead() {
        let push = at("2026-11-24T18:00:00Z");
        let before = Duration::minutes(90);
        assert!(!time_to_ask(at("2026-11-24T16:29:59Z"), push, None, before));
        assert!(time_to_ask(at("2026-11-24T16:30:00Z"), push, None, before));
        assert!(time_to_ask(push, push, None, before));
        let freeze = Some(Duration::minutes(30));
        assert!(!time_to_ask(
            at("2026-11-24T17:29:00Z"),
            push,
            freeze,
            before
        ));
        assert!(time_to_ask(
            at("2026-11-24T17:30:00Z"),
            push,
            freeze,
            before
        ));
    }

    #[test]
    fn a_held_scheduled_push_is_tried_again_only_within_its_window() {
        let fired = at("2026-11-24T18:00:00Z");
        let w = Duration::hours(2);
        assert!(!retrying(at("2026-11-24T17:59:59Z"), fired, w));
        assert!(retrying(fired, fired, w));
        assert!(retrying(at("2026-11-24T20:00:00Z"), fired, w));
        assert!(!retrying(at("2026-11-24T20:00:01Z"), fired, w));
    }
}
