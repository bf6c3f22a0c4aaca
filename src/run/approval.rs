//! The approval gate's IO (`docs/approvals.md`): gathering what the rules
//! in `decide::approval` need — the candidate's artifact digest, who
//! authored what ships, pushgate's own user, the requests made (the
//! cluster's `approvals.json`) and their tasks as Asana holds them now —
//! and doing what they decide: creating a request, marking older ones
//! superseded, telling a request that its candidate shipped.
//!
//! Exactly one request per candidate, across crashes and Asana faults: the
//! request is recorded in `approvals.json` *before* its create is queued
//! in the outbox (written ahead, looked up before it is re-sent), and a
//! recorded request is never asked again; one whose create the outbox
//! never saw (a kill between the two writes) is sent then, once.
//!
//! pushgate never approves, rejects or completes an approval task: its
//! only writes to one are comments and a new name. Every read asks only
//! `opt_fields` that Asana's spec declares for the operation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::adapters::asana::{fields, Client};
use crate::adapters::git::Mirror;
use crate::adapters::state::{self, ClusterState};
use crate::config::{ApprovalSettings, ClusterSettings, Source};
use crate::domain::approval::{
    ApprovalFacts, ApprovalStatus, ApprovalTask, Person, Request, TaskRead,
};
use crate::domain::decide;
use crate::domain::model::{Changelog, ClusterName, CommitId, TaskGid};
use crate::domain::text::{count, describe, printable};
use crate::run::outbox::{self, Delivery, Op, Outbox};
use crate::run::Ctx;

/// Requests kept in `approvals.json`, newest last.
const KEEP: usize = 50;

/// One request pushgate made, as `approvals.json` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What the outbox names its create by.
    pub key: String,
    pub commit: String,
    /// sha256 of the artifact, hex.
    pub digest: String,
    pub asked_at: DateTime<Utc>,
    /// The task's name as created (for renaming it superseded).
    pub name: String,
    #[serde(default)]
    pub gid: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub superseded: bool,
    #[serde(default)]
    pub shipped: bool,
}

/// The key of the request for `commit`'s artifact `digest` on `cluster`.
pub fn key(cluster: &ClusterName, commit: &CommitId, digest: &str) -> String {
    format!(
        "approval:{cluster}:{}:{}",
        commit.as_str(),
        digest.get(..16).unwrap_or(digest)
    )
}

/// The cluster's requests, oldest first (none if the file is missing; an
/// unreadable file is an error: the gate must not forget a request).
pub fn records(state: &ClusterState) -> Result<Vec<Record>, state::StateError> {
    Ok(state::read_json(&state.approvals_path())?.unwrap_or_default())
}

fn save(state: &ClusterState, records: &[Record]) -> Result<(), state::StateError> {
    state.prepare()?;
    let keep = records.len().saturating_sub(KEEP);
    state::write_json(&state.approvals_path(), &records[keep..].to_vec())
}

/// The sha256 of `commit`'s cached artifact, if the cache has it.
pub async fn digest(cx: &Ctx<'_>, commit: &CommitId) -> Result<Option<String>, String> {
    let dir = cx.state.artifact(commit);
    if !dir.is_dir() {
        return Ok(None);
    }
    tokio::task::spawn_blocking(move || crate::adapters::build::digest(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map(Some)
        .map_err(|e| format!("cannot read the artifact to digest it: {e}"))
}

/// What the approval rules need for `candidate` on `cluster`: raw facts,
/// every read that fails recorded as such (the rules fail closed).
pub async fn facts(
    cx: &Ctx<'_>,
    cluster: &ClusterSettings,
    settings: &ApprovalSettings,
    candidate: &CommitId,
    deployed: Option<&CommitId>,
    outbox: Option<&Outbox>,
) -> ApprovalFacts {
    let mut unreadable = None;
    let digest = digest(cx, candidate).await.unwrap_or_else(|e| {
        unreadable = Some(e);
        None
    });
    let repo = cx.state.repo();
    let (to, from) = (candidate.clone(), deployed.cloned());
    let authors = tokio::task::spawn_blocking(move || {
        Mirror::open(&repo)
            .and_then(|m| m.authors(from.as_ref(), &to))
            .map_err(|e| describe(&e))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .unwrap_or_else(|e| {
        unreadable.get_or_insert(format!("who authored the commits being shipped: {e}"));
        Vec::new()
    });
    let bot = cx
        .client
        .me()
        .await
        .map(|u| u.gid)
        .map_err(|e| describe(&e));
    let state = cx.state.cluster(&cluster.name);
    let recs = records(&state).unwrap_or_else(|e| {
        unreadable.get_or_insert(describe(&e));
        Vec::new()
    });
    let mut requests = Vec::new();
    for r in recs {
        let Some(commit) = CommitId::parse(&r.commit) else {
            continue;
        };
        let made = outbox.and_then(|o| o.created(&r.key));
        let gid = r
            .gid
            .clone()
            .or_else(|| made.as_ref().map(|c| c.gid.clone()))
            .and_then(|g| TaskGid::parse(&g));
        let link = r
            .link
            .clone()
            .or_else(|| made.as_ref().map(|c| c.link.clone()));
        let read = match &gid {
            _ if commit != *candidate => None,
            None => Some(TaskRead::Queued),
            Some(g) => Some(read_task(cx.client, g, &r.digest).await),
        };
        requests.push(Request {
            gid,
            link,
            commit,
            digest: r.digest,
            asked_at: r.asked_at,
            superseded: r.superseded,
            shipped: r.shipped,
            read,
        });
    }
    ApprovalFacts {
        policy: settings.policy(),
        bot,
        unreadable,
        digest,
        authors,
        requests,
    }
}

/// One approval task as Asana holds it: its status, whether its notes
/// still name `digest`, who decided (with their e-mail, from
/// `GET /users/{gid}`), when, and what they last commented.
pub async fn read_task(client: &Client, gid: &TaskGid, digest: &str) -> TaskRead {
    let t = match client.get_task(gid, fields::APPROVAL_TASK).await {
        Ok(t) => t,
        Err(e) if e.status() == Some(404) => return TaskRead::Deleted,
        Err(e) => return TaskRead::Unreadable(describe(&e)),
    };
    let Some(status) = t.approval_status.as_deref().and_then(ApprovalStatus::parse) else {
        return TaskRead::Unreadable(format!(
            "task {gid} is not an approval task (approval_status {:?})",
            t.approval_status
                .as_deref()
                .map(|s| printable(s, 40))
                .unwrap_or_default()
        ));
    };
    let mut task = ApprovalTask {
        status,
        names_digest: t
            .notes
            .as_deref()
            .is_some_and(|n| n.contains(&format!("sha256:{digest}"))),
        decided_by: None,
        decided_at: t.completed_at,
        comment: None,
    };
    if status == ApprovalStatus::Pending {
        return TaskRead::Read(task);
    }
    let Some(by) = t.completed_by else {
        return TaskRead::Read(task);
    };
    let user = match client.user(&by.gid).await {
        Ok(u) => u,
        Err(e) => return TaskRead::Unreadable(describe(&e)),
    };
    if matches!(
        status,
        ApprovalStatus::Rejected | ApprovalStatus::ChangesRequested
    ) {
        // What they said is shown if it can be read; the hold holds anyway.
        if let Ok(stories) = client.stories(gid).await {
            task.comment = stories
                .into_iter()
                .rev()
                .find(|s| {
                    s.resource_subtype.as_deref() == Some("comment_added")
                        && s.created_by.as_ref().is_some_and(|c| c.gid == by.gid)
                })
                .and_then(|s| s.text);
        }
    }
    task.decided_by = Some(Person {
        gid: user.gid,
        name: user.name.or(by.name).unwrap_or_default(),
        email: user.email,
    });
    TaskRead::Read(task)
}

/// What [`ask`] did.
#[derive(Debug, Default)]
pub struct Asked {
    /// The request created for the candidate: its link, or `None` when
    /// queued in the outbox.
    pub created: Option<Option<String>>,
    pub superseded: usize,
}

/// Everything the request's text says besides the changelog.
pub struct About<'a> {
    pub changelog: &'a Changelog,
    pub now: DateTime<Utc>,
    pub run_id: &'a str,
}

/// Asks for the approval of `candidate` as `decide::approval::ask` says
/// (building its artifact first when the cluster builds its own and the
/// cache lacks it), and marks the requests it supersedes. The caller holds
/// the cluster's lock; writes go through `outbox`.
#[allow(clippy::too_many_arguments)]
pub async fn ask(
    cx: &Ctx<'_>,
    cluster: &ClusterSettings,
    settings: &ApprovalSettings,
    candidate: &CommitId,
    deployed: Option<&CommitId>,
    outbox: &mut Outbox,
    about: About<'_>,
) -> anyhow::Result<Asked> {
    let mut done = Asked::default();
    if deployed == Some(candidate) {
        return Ok(done);
    }
    let state = cx.state.cluster(&cluster.name);
    if !cx.state.artifact(candidate).is_dir() && cluster.source == Source::Branch {
        // The approver approves bytes: build them first (cached by commit,
        // so the push that follows reuses them).
        if let Err(e) = crate::adapters::build::artifact(
            cx.state,
            candidate,
            deployed,
            &cx.config.build,
            cx.child_env,
        )
        .await
        {
            tracing::warn!(app = %cx.config.app, cluster = %cluster.name, error = %describe(&e), "cannot build the candidate to ask for its approval");
            return Ok(done);
        }
    }
    let Some(digest) = digest(cx, candidate).await.map_err(anyhow::Error::msg)? else {
        return Ok(done);
    };
    let mut recs = records(&state)?;
    // Requests whose create the outbox never saw (killed between the
    // record and the queue) are sent now; those it created get their gid.
    for r in recs.iter_mut().filter(|r| r.gid.is_none()) {
        if let Some(c) = outbox.created(&r.key) {
            r.gid = Some(c.gid.clone());
            r.link = Some(c.link.clone());
        }
    }
    let lost: Vec<Record> = recs
        .iter()
        .filter(|r| r.gid.is_none() && !outbox.creating(&r.key) && outbox.created(&r.key).is_none())
        .cloned()
        .collect();
    save(&state, &recs)?;
    let facts = ApprovalFacts {
        policy: settings.policy(),
        bot: Ok(String::new()),
        unreadable: None,
        digest: Some(digest.clone()),
        authors: Vec::new(),
        requests: recs
            .iter()
            .filter_map(|r| {
                Some(Request {
                    gid: r.gid.as_deref().and_then(TaskGid::parse),
                    link: r.link.clone(),
                    commit: CommitId::parse(&r.commit)?,
                    digest: r.digest.clone(),
                    asked_at: r.asked_at,
                    superseded: r.superseded,
                    shipped: r.shipped,
                    read: None,
                })
            })
            .collect(),
    };
    let plan = decide::approval::ask(&facts, Some(candidate), deployed);
    let k = key(&cluster.name, candidate, &digest);
    for r in &lost {
        tracing::warn!(app = %cx.config.app, cluster = %cluster.name, request = %r.key, "an approval request was recorded but never queued; sending it now");
        let (name, notes) = (r.name.clone(), notes_of(cx, cluster, r, &about));
        submit_create(outbox, about.run_id, &state, &r.key, name, notes, settings).await;
    }
    if plan.create {
        let rec = Record {
            key: k.clone(),
            commit: candidate.to_string(),
            digest: digest.clone(),
            asked_at: about.now,
            name: format!(
                "approve {} push {} · {}",
                cluster.name,
                candidate.short(),
                count(about.changelog.len(), "change")
            ),
            gid: None,
            link: None,
            superseded: false,
            shipped: false,
        };
        let notes = notes_of(cx, cluster, &rec, &about);
        let name = rec.name.clone();
        recs.push(rec);
        // Recorded before it is queued: never asked twice.
        save(&state, &recs)?;
        done.created =
            Some(submit_create(outbox, about.run_id, &state, &k, name, notes, settings).await);
    }
    let new_link = done
        .created
        .clone()
        .flatten()
        .or_else(|| {
            records(&state)
                .ok()?
                .into_iter()
                .find(|r| r.key == k)
                .and_then(|r| r.link)
        })
        .unwrap_or_else(|| "(queued)".into());
    let mut recs = records(&state)?;
    let mut ops = Vec::new();
    for i in plan.supersede {
        let Some(old) = facts.requests.get(i) else {
            continue;
        };
        let Some(r) = recs
            .iter_mut()
            .find(|r| r.commit == old.commit.as_str() && r.digest == old.digest)
        else {
            continue;
        };
        r.superseded = true;
        let task = match &r.gid {
            Some(g) => outbox::TaskRef::Gid(g.clone()),
            None => outbox::TaskRef::Created(r.key.clone()),
        };
        ops.push(Op::Comment {
            task: task.clone(),
            text: format!(
                "superseded: {} now has a newer candidate, {} (request: {}). This request no longer counts; approving it ships nothing.",
                cluster.name,
                candidate.short(),
                printable(&new_link, 200)
            ),
        });
        ops.push(Op::Rename {
            task,
            name: format!("[superseded] {}", r.name),
        });
        done.superseded += 1;
    }
    if !ops.is_empty() {
        // Marked first: a crash after this never supersedes twice, and
        // the outbox delivers what was queued exactly once.
        save(&state, &recs)?;
        for op in ops {
            outbox.submit(about.run_id, op).await;
        }
    }
    Ok(done)
}

async fn submit_create(
    outbox: &mut Outbox,
    run_id: &str,
    state: &ClusterState,
    key: &str,
    name: String,
    notes: String,
    settings: &ApprovalSettings,
) -> Option<String> {
    let op = Op::CreateApproval {
        key: key.to_owned(),
        name,
        notes,
        project: settings.project.to_string(),
    };
    match outbox.submit(run_id, op).await {
        Delivery::Applied(Some(t)) => {
            if let Ok(mut recs) = records(state) {
                if let Some(r) = recs.iter_mut().find(|r| r.key == key) {
                    r.gid = Some(t.gid.clone());
                    r.link = Some(t.link.clone());
                }
                if let Err(e) = save(state, &recs) {
                    tracing::warn!(error = %e, "cannot record the approval task's gid; the outbox remembers it");
                }
            }
            Some(t.link)
        }
        Delivery::Applied(None) | Delivery::Queued => None,
        Delivery::Dropped(why) => {
            tracing::error!(error = %why, "Asana refused the approval request");
            None
        }
    }
}

/// The request's notes: what ships, from where, when, and how to decide.
fn notes_of(cx: &Ctx<'_>, cluster: &ClusterSettings, r: &Record, about: &About<'_>) -> String {
    let deployed = cx
        .state
        .cluster(&cluster.name)
        .deployed()
        .ok()
        .flatten()
        .map_or("(nothing deployed)".to_owned(), |d| d.commit);
    let source = match &cluster.source {
        Source::Cluster(from) => {
            let link = cx
                .state
                .cluster(from)
                .deployed()
                .ok()
                .flatten()
                .and_then(|d| d.push_task_link)
                .unwrap_or_else(|| "(none recorded)".into());
            format!("{from} push task: {link}\n")
        }
        Source::Branch => String::new(),
    };
    let next = decide::next_fire(&cluster.schedule.cron, cluster.timezone, r.asked_at)
        .map(|t| {
            format!(
                "{} ({})",
                t.with_timezone(&cluster.timezone)
                    .format("%a %Y-%m-%d %H:%M %Z"),
                t.format("%Y-%m-%d %H:%M UTC")
            )
        })
        .unwrap_or_else(|| "none scheduled".into());
    let mut n = format!(
        "pushgate asks: may {c} ship {short}?\n\nApprove this task to let {c}'s push ship exactly the artifact below. Reject it, or request changes, to hold it. pushgate never approves or completes it itself; a newer candidate supersedes it.\n\ncluster: {c}\ncommit: {commit}\ndeployed: {deployed}\nartifact: sha256:{digest}\n{source}next scheduled push: {next}\nrequest: {key}\nrun: {run}\n",
        c = cluster.name,
        short = &r.commit[..7.min(r.commit.len())],
        commit = r.commit,
        digest = r.digest,
        key = r.key,
        run = about.run_id,
    );
    let log = about.changelog;
    n.push_str(&format!("\nchangelog ({}):\n", count(log.len(), "commit")));
    for e in &log.entries {
        n.push_str(&format!(
            "- {} {} ({})\n",
            e.commit.short(),
            printable(&e.subject, 200),
            printable(&e.author, 60)
        ));
    }
    if log.more > 0 {
        n.push_str(&format!("and {} more\n", log.more));
    }
    n
}

/// After a successful push of `commit`: its request learns it shipped
/// (a comment, never a completion), and is not superseded later.
pub async fn shipped(
    state: &ClusterState,
    outbox: &Outbox,
    run_id: &str,
    commit: &CommitId,
    push_link: Option<&str>,
    ignored: Option<&str>,
) {
    let Ok(mut recs) = records(state) else {
        return;
    };
    let mut ops = Vec::new();
    for r in recs
        .iter_mut()
        .filter(|r| r.commit == commit.as_str() && !r.shipped)
    {
        r.shipped = true;
        let task = match &r.gid {
            Some(g) => outbox::TaskRef::Gid(g.clone()),
            None => outbox::TaskRef::Created(r.key.clone()),
        };
        let how = match ignored {
            Some(reason) => format!(
                " without this approval, by hand (--ignore-approval): {}",
                printable(reason, 300)
            ),
            None => String::new(),
        };
        ops.push(Op::Comment {
            task,
            text: format!(
                "shipped {}{how}: {}",
                commit.short(),
                push_link.unwrap_or("(push task not recorded)")
            ),
        });
    }
    if ops.is_empty() {
        return;
    }
    if let Err(e) = save(state, &recs) {
        tracing::warn!(error = %e, "cannot record that the approved candidate shipped");
        return;
    }
    for op in ops {
        outbox.submit(run_id, op).await;
    }
}
