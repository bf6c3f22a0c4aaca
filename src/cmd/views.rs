//! The JSON shapes of `--json` (and, later, the page's API): one function
//! per noun, shared by every command that shows it, so that `push
//! --dry-run --json` and `status --json` show a plan the same way.

use serde_json::{json, Value};

use crate::domain::approval::{ApprovalHold, Judgement, Person};
use crate::domain::model::{CommitId, Fix, LockTask};
use crate::domain::plan::{HoldReason, Plan, Verdict};
use crate::domain::report::PushReport;

pub fn lock_json(t: &LockTask) -> Value {
    json!({
        "gid": t.gid.as_str(),
        "name": t.name,
        "assignee": t.assignee,
        "link": t.link,
        "fix_commit": t.fix.raw(),
        "fix": match &t.fix {
            Fix::None => Value::Null,
            Fix::Unchecked(_) => json!({ "state": "unchecked" }),
            Fix::Invalid { why, .. } => json!({ "state": "invalid", "why": why }),
            Fix::Valid { commit, shipped } => json!({
                "state": if *shipped { "shipped" } else { "waiting" },
                "commit": commit.as_str(),
            }),
        },
    })
}

pub fn report_json(r: &PushReport) -> Value {
    json!({
        "outcome": match (&r.failure, &r.stopped) {
            (_, Some(s)) if s.rolled_back => "rolled-back",
            (Some(_), _) => "failed",
            (None, _) => "pushed",
        },
        "stopped_by_check": r.stopped.as_ref().map(|s| json!({
            "rolled_back": s.rolled_back,
            "wave": s.wave,
            "waves": s.of,
            "what": s.what,
            "back_to": s.back_to.as_ref().map(|b| b.as_str()),
            "lock_task": s.lock_task,
        })),
        "failed_step": r.failure.as_ref().map(|f| &f.0),
        "error": r.failure.as_ref().map(|f| &f.1),
        "run_id": r.run_id,
        "release": r.release.as_str(),
        "commit": r.commit.as_str(),
        "previous": r.previous.as_ref().map(|c| c.as_str()),
        "push_task": r.task.as_ref().map(|t| json!({ "gid": t.gid.as_str(), "link": t.link })),
        "hosts": r.hosts.iter().map(|h| json!({
            "host": h.host.to_string(),
            "result": h.result,
            "bytes_sent": h.bytes_sent,
        })).collect::<Vec<_>>(),
        "asana_failures": r.asana_failures,
        "asana_queued": r.asana_queued,
        "duration_ms": r.duration.as_millis() as u64,
    })
}

/// The plan for scripts: `verdict` is `push`, `nothing-new`, `held` or `unknown`.
pub fn plan_json(plan: &Plan) -> Value {
    let c = plan.cluster.as_str();
    let changelog: Vec<Value> = plan
        .changelog
        .entries
        .iter()
        .map(|e| json!({ "commit": e.commit.as_str(), "subject": e.subject, "author": e.author }))
        .collect();
    match &plan.verdict {
        Verdict::Push { from, to } => json!({
            "cluster": c,
            "verdict": "push",
            "commit": to.as_str(),
            "previous": from.as_ref().map(|f| f.as_str()),
            "via": plan.via,
            "changelog": changelog,
            "changelog_more": plan.changelog.more,
            "steps": plan.steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "release": plan.release.as_ref().map(|r| r.as_str()),
            "hosts": plan.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "max_failed_hosts": plan.policy.max_failed,
            "keep_releases": plan.policy.keep_releases,
            "waves": plan.waves.iter().map(|w| json!({
                "size": w.size.map(|s| s.to_string()),
                "hosts": w.hosts.iter().filter_map(|i| plan.hosts.get(*i)).map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "checks": json!({
                "health_check": plan.rollout.health_check,
                "health_timeout_ms": plan.rollout.health_timeout.as_millis() as u64,
                "health_retries": plan.rollout.health_retries,
                "max_unhealthy_hosts": plan.rollout.max_unhealthy,
                "wave_check": plan.rollout.wave_check,
                "wave_soak_ms": plan.rollout.wave_soak.as_millis() as u64,
                "auto_rollback": plan.rollout.auto_rollback,
            }),
            "locks": [],
            "ignored": plan.ignored.as_ref().map(|ig| json!({
                "reason": ig.reason,
                "locks": ig.locks.iter().map(lock_json).collect::<Vec<_>>(),
                "lock_state_unknown": ig.unknown,
                "holds": ig.holds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        }),
        Verdict::NothingNew { commit } => json!({
            "cluster": c,
            "verdict": "nothing-new",
            "commit": commit.as_ref().map(CommitId::as_str),
            "locks": [],
        }),
        Verdict::Hold(HoldReason::Locked { tasks }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "locked",
            "locks": tasks.iter().map(lock_json).collect::<Vec<_>>(),
        }),
        Verdict::Hold(HoldReason::Running { holder }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "running",
            "holder": holder,
            "locks": null,
        }),
        Verdict::Hold(HoldReason::Frozen { other, until }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "frozen",
            "other": other.as_str(),
            "until": until.with_timezone(&chrono::Utc),
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::OtherRunning { other }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "frozen",
            "other": other.as_str(),
            "until": null,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::BuildFailed { commit, last_run }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "build-failed",
            "commit": commit.as_str(),
            "last_run": last_run,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::RolledBack {
            commit,
            release,
            at,
        }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "rolled-back",
            "commit": commit.as_str(),
            "release": release,
            "rolled_back_at": at,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::Soaking { from, since, until }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "soaking",
            "other": from.as_str(),
            "since": since,
            "until": until,
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::ArtifactMissing { commit, from }) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "artifact-missing",
            "commit": commit.as_str(),
            "other": from.as_str(),
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Hold(HoldReason::Approval(h)) => json!({
            "cluster": c,
            "verdict": "held",
            "reason": "approval",
            "approval": approval_hold_json(h),
            "message": plan.verdict_text(),
            "locks": null,
        }),
        Verdict::Unknown { reason } => json!({
            "cluster": c,
            "verdict": "unknown",
            "reason": reason,
            "locks": null,
        }),
    }
}

fn person_json(p: &Person) -> Value {
    json!({ "gid": p.gid, "name": p.name, "email": p.email })
}

/// Why the approval gate holds: `state` names the case.
pub fn approval_hold_json(h: &ApprovalHold) -> Value {
    let (state, by, link, extra) = match h {
        ApprovalHold::NotRequested { commit } => (
            "not-requested",
            None,
            None,
            json!({ "commit": commit.as_str() }),
        ),
        ApprovalHold::Queued { commit } => {
            ("queued", None, None, json!({ "commit": commit.as_str() }))
        }
        ApprovalHold::Pending { link } => ("pending", None, Some(link), Value::Null),
        ApprovalHold::Rejected { by, comment, link } => (
            "rejected",
            Some(by),
            Some(link),
            json!({ "comment": comment }),
        ),
        ApprovalHold::ChangesRequested { by, comment, link } => (
            "changes-requested",
            Some(by),
            Some(link),
            json!({ "comment": comment }),
        ),
        ApprovalHold::Expired {
            by,
            at,
            max_age,
            link,
        } => (
            "expired",
            Some(by),
            Some(link),
            json!({ "approved_at": at, "max_age_secs": max_age.num_seconds() }),
        ),
        ApprovalHold::WrongDigest {
            approved,
            candidate,
            link,
        } => (
            "wrong-digest",
            None,
            Some(link),
            json!({ "asked_digest": approved, "candidate_digest": candidate }),
        ),
        ApprovalHold::NotAllowed { by, link } => ("not-allowed", Some(by), Some(link), Value::Null),
        ApprovalHold::SelfApproval { by, commit, link } => (
            "self-approval",
            Some(by),
            Some(link),
            json!({ "authored": commit.as_str() }),
        ),
        ApprovalHold::Superseded { link } => ("superseded", None, Some(link), Value::Null),
        ApprovalHold::Deleted { link } => ("deleted", None, Some(link), Value::Null),
        ApprovalHold::Unreadable { reason } => ("unknown", None, None, json!({ "error": reason })),
    };
    let mut v = json!({
        "state": state,
        "by": by.map(person_json),
        "link": link,
        "message": h.to_string(),
    });
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

/// What the approval gate says of a cluster's candidate, for `status` and
/// `approvals`.
pub fn judgement_json(j: &Judgement) -> Value {
    match j {
        Judgement::Approved { by, at, link } => json!({
            "state": "approved",
            "by": person_json(by),
            "approved_at": at,
            "link": link,
            "message": j.to_string(),
        }),
        Judgement::Held(h) => approval_hold_json(h),
        Judgement::NothingToApprove => json!({
            "state": "nothing-to-approve",
            "message": j.to_string(),
        }),
    }
}
