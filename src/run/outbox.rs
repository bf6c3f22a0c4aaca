//! The outbox: every Asana write made after the gate passed — the push
//! task, its stage comments, its completion, crash-task closures, lock
//! project removals, rollback lock tasks — goes through here (SPEC §7).
//!
//! A write is appended to the cluster's `outbox.jsonl` (fsynced) *before*
//! it is sent, and marked done after Asana applied it. Writes are applied
//! strictly in the order they were queued; the first one that fails for a
//! reason that may pass (Asana down, 429s past the retries, 5xx, timeouts,
//! a refused token) stops the flush, and every later write of the run is
//! only queued. The next run of the cluster replays the queue before it
//! does anything else.
//!
//! Exactly once: a write that this process has not tried yet is sent as
//! it is; any other (read back from the file: a previous process may have
//! applied it and died before marking it done) is first looked for in
//! Asana — the comment among the task's stories, the task in its project,
//! the completion on the task — and only sent if it is not there.
//! A write Asana refuses for good (400, 403, 404) is dropped with an error
//! in the log: retrying it cannot help, and it must not block the queue.
//!
//! The file is read and written only under the cluster's lock. It never
//! holds the token. It does not decide what to write: callers do.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::adapters::asana::{
    fields, AsanaError, Client, Comment, CompletedSince, NewTask, TaskUpdate,
};
use crate::adapters::state::{self, ClusterState, StateError};
use crate::domain::model::{ProjectGid, TaskGid, WorkspaceGid};
use crate::run::clock::RunClock;

/// The task a write is about: known, or created by an earlier write of
/// the queue (`key`, e.g. the run id of the push whose task it is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRef {
    Gid(String),
    Created(String),
}

impl TaskRef {
    pub fn gid(g: &TaskGid) -> TaskRef {
        TaskRef::Gid(g.to_string())
    }
}

/// One Asana write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A task in `project`; later writes name it `TaskRef::Created(key)`.
    CreateTask {
        key: String,
        name: String,
        notes: String,
        /// The notes as Asana rich text (links to the code), whose plain
        /// text is `notes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        html_notes: Option<String>,
        project: String,
        #[serde(default)]
        workspace: Option<String>,
        #[serde(default)]
        assignee: Option<String>,
    },
    /// An approval task (`resource_subtype: approval`) in `project`, like
    /// `CreateTask`; pushgate never completes one (that approves it).
    CreateApproval {
        key: String,
        name: String,
        notes: String,
        project: String,
    },
    Comment {
        task: TaskRef,
        text: String,
    },
    Complete {
        task: TaskRef,
    },
    RemoveProject {
        task: TaskRef,
        project: String,
    },
    /// A new name (marking an approval request superseded: never by
    /// completing it, which would approve it).
    Rename {
        task: TaskRef,
        name: String,
    },
}

impl Op {
    /// The key a create names its task by.
    fn creates(&self) -> Option<&str> {
        match self {
            Op::CreateTask { key, .. } | Op::CreateApproval { key, .. } => Some(key),
            _ => None,
        }
    }

    fn task(&self) -> Option<&TaskRef> {
        match self {
            Op::CreateTask { .. } | Op::CreateApproval { .. } => None,
            Op::Comment { task, .. }
            | Op::Complete { task }
            | Op::RemoveProject { task, .. }
            | Op::Rename { task, .. } => Some(task),
        }
    }

    /// For logs: what the write is, without its (untrusted, long) text.
    pub fn describe(&self) -> String {
        let t = |r: &TaskRef| match r {
            TaskRef::Gid(g) => format!("task {g}"),
            TaskRef::Created(k) => format!("the task of {k}"),
        };
        match self {
            Op::CreateTask { key, project, .. } | Op::CreateApproval { key, project, .. } => {
                format!("create the task of {key} in project {project}")
            }
            Op::Comment { task, .. } => format!("comment on {}", t(task)),
            Op::Complete { task } => format!("complete {}", t(task)),
            Op::RemoveProject { task, project } => {
                format!("remove {} from project {project}", t(task))
            }
            Op::Rename { task, .. } => format!("rename {}", t(task)),
        }
    }
}

/// A task the outbox created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub gid: String,
    pub link: String,
}

/// One line of `outbox.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
enum Line {
    Queued {
        seq: u64,
        at: DateTime<Utc>,
        run: String,
        op: Op,
    },
    Done {
        seq: u64,
        /// `applied`, `already` (found in Asana) or `dropped: <why>`.
        outcome: String,
        /// For a `CreateTask`: the task, or `None` if it was dropped.
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        task: Option<Created>,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    at: DateTime<Utc>,
    run: String,
    op: Op,
    /// Queued by this process and never tried: sent without looking first.
    fresh: bool,
}

/// What happened to one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Applied now (or found already applied); a created task is given.
    Applied(Option<Created>),
    /// Kept in the outbox for a later flush or run.
    Queued,
    /// Asana refused it for good; it will not be retried.
    Dropped(String),
}

/// Counts for one run's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: usize,
    /// Found already applied (a replay after a crash).
    pub already: usize,
    pub dropped: usize,
}

/// Created tasks remembered after the queue empties, for recovering runs
/// whose journal never learnt their task's gid.
const KEEP_CREATED: usize = 64;
/// Rewrite the file once it has this many lines and nothing is pending.
const COMPACT_AT: usize = 200;

/// The outbox of one cluster.
pub struct Outbox {
    client: Client,
    path: PathBuf,
    pending: VecDeque<Entry>,
    /// key → the created task, or `None` if its create was dropped.
    created: BTreeMap<String, Option<Created>>,
    /// Insertion order of `created`, oldest first.
    created_order: Vec<String>,
    next_seq: u64,
    lines: usize,
    /// Why writes are only queued for the rest of this run.
    deferred: Option<String>,
    /// The run's clock: when a write was queued.
    clock: RunClock,
    pub tally: Tally,
}

impl Outbox {
    /// Reads the cluster's outbox (empty if there is none).
    pub fn open(
        state: &ClusterState,
        client: &Client,
        clock: RunClock,
    ) -> Result<Outbox, StateError> {
        state.prepare()?;
        let path = state.outbox_path();
        let lines: Vec<Line> = state::read_lines(&path)?;
        let mut queued = BTreeMap::new();
        let mut created = BTreeMap::new();
        let mut created_order = Vec::new();
        let mut next_seq = 1;
        for l in &lines {
            match l {
                Line::Queued { seq, at, run, op } => {
                    next_seq = next_seq.max(seq + 1);
                    queued.insert(
                        *seq,
                        Entry {
                            seq: *seq,
                            at: *at,
                            run: run.clone(),
                            op: op.clone(),
                            fresh: false,
                        },
                    );
                }
                Line::Done { seq, key, task, .. } => {
                    next_seq = next_seq.max(seq + 1);
                    queued.remove(seq);
                    if let Some(k) = key {
                        if created.insert(k.clone(), task.clone()).is_none() {
                            created_order.push(k.clone());
                        }
                    }
                }
            }
        }
        Ok(Outbox {
            client: client.clone(),
            path,
            pending: queued.into_values().collect(),
            created,
            created_order,
            next_seq,
            lines: lines.len(),
            deferred: None,
            clock,
            tally: Tally::default(),
        })
    }

    /// Writes waiting to be applied.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The oldest waiting write's time, if any.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.pending.front().map(|e| e.at)
    }

    /// Why this run only queues (Asana failed), if it does.
    pub fn deferred(&self) -> Option<&str> {
        self.deferred.as_deref()
    }

    /// The task created for `key`, if the outbox created it.
    pub fn created(&self, key: &str) -> Option<&Created> {
        self.created.get(key).and_then(Option::as_ref)
    }

    /// Whether a create for `key` waits in the queue.
    pub fn creating(&self, key: &str) -> bool {
        self.pending.iter().any(|e| e.op.creates() == Some(key))
    }

    /// Queues `op` durably, then applies the queue in order unless this run
    /// already saw Asana fail.
    pub async fn submit(&mut self, run: &str, op: Op) -> Delivery {
        let entry = Entry {
            seq: self.next_seq,
            at: self.clock.now(),
            run: run.to_owned(),
            op,
            fresh: true,
        };
        self.next_seq += 1;
        let line = Line::Queued {
            seq: entry.seq,
            at: entry.at,
            run: entry.run.clone(),
            op: entry.op.clone(),
        };
        if let Err(e) = state::append_line(&self.path, &line) {
            // Not durable: send it now, once, and say so if that fails too.
            tracing::error!(error = %e, write = %entry.op.describe(), "cannot queue an Asana write; sending it without a queue");
            return match self.apply(&entry).await {
                Ok((task, _)) => {
                    self.tally.applied += 1;
                    if let Some(key) = entry.op.creates() {
                        self.created.insert(key.to_owned(), task.clone());
                        self.created_order.push(key.to_owned());
                    }
                    Delivery::Applied(task)
                }
                Err(Failed::Later(why) | Failed::Never(why)) => {
                    tracing::error!(write = %entry.op.describe(), error = %why, "an Asana write is lost");
                    self.tally.dropped += 1;
                    Delivery::Dropped(why)
                }
            };
        }
        self.lines += 1;
        let seq = entry.seq;
        self.pending.push_back(entry);
        if self.deferred.is_some() {
            return Delivery::Queued;
        }
        self.flush_until(Some(seq))
            .await
            .unwrap_or(Delivery::Queued)
    }

    /// Applies every waiting write in order, stopping at the first that
    /// fails for a reason that may pass. Returns how many still wait.
    pub async fn flush(&mut self) -> usize {
        self.deferred = None;
        self.flush_until(None).await;
        self.pending.len()
    }

    /// Flushes; returns the delivery of write `seq` if it was reached.
    async fn flush_until(&mut self, seq: Option<u64>) -> Option<Delivery> {
        let mut result = None;
        while let Some(entry) = self.pending.front().cloned() {
            let delivery = match self.apply(&entry).await {
                Ok((task, already)) => {
                    if already {
                        self.tally.already += 1;
                    } else {
                        self.tally.applied += 1;
                    }
                    Delivery::Applied(task)
                }
                Err(Failed::Later(why)) => {
                    // It may have been applied all the same: look first
                    // next time, even in this process.
                    if let Some(e) = self.pending.front_mut() {
                        e.fresh = false;
                    }
                    tracing::warn!(write = %entry.op.describe(), error = %why, queued = self.pending.len(), "Asana write failed; queued for a later run");
                    self.deferred = Some(why);
                    break;
                }
                Err(Failed::Never(why)) => {
                    tracing::error!(write = %entry.op.describe(), error = %why, "Asana refused a write; dropping it");
                    Delivery::Dropped(why)
                }
            };
            crate::adapters::failpoint::hit("outbox:applied");
            self.done(&entry, &delivery);
            self.pending.pop_front();
            if Some(entry.seq) == seq {
                result = Some(delivery);
            }
        }
        if self.pending.is_empty() && self.lines >= COMPACT_AT {
            self.compact();
        }
        result
    }

    /// Marks a write done in the file and in the counts.
    fn done(&mut self, entry: &Entry, delivery: &Delivery) {
        let (outcome, task) = match delivery {
            Delivery::Applied(t) => ("applied".to_owned(), t.clone()),
            Delivery::Dropped(why) => {
                self.tally.dropped += 1;
                (format!("dropped: {why}"), None)
            }
            Delivery::Queued => return,
        };
        let key = entry.op.creates().map(str::to_owned);
        if let Some(key) = &key {
            if self.created.insert(key.clone(), task.clone()).is_none() {
                self.created_order.push(key.clone());
            }
        }
        let line = Line::Done {
            seq: entry.seq,
            outcome,
            key,
            task,
        };
        match state::append_line(&self.path, &line) {
            Ok(()) => self.lines += 1,
            // Replayed later, found already applied: still exactly once.
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark an Asana write done; a later run will find it applied")
            }
        }
    }

    /// Rewrites the file with only the newest created tasks.
    fn compact(&mut self) {
        let keep = self.created_order.len().saturating_sub(KEEP_CREATED);
        for k in self.created_order.drain(..keep) {
            self.created.remove(&k);
        }
        let mut text = Vec::new();
        for k in &self.created_order {
            let line = Line::Done {
                seq: 0,
                outcome: "applied".into(),
                key: Some(k.clone()),
                task: self.created.get(k).cloned().flatten(),
            };
            if let Ok(mut l) = serde_json::to_vec(&line) {
                l.push(b'\n');
                text.extend(l);
            }
        }
        // The sequence continues across compactions.
        let seq_line = Line::Done {
            seq: self.next_seq.saturating_sub(1),
            outcome: "compacted".into(),
            key: None,
            task: None,
        };
        if let Ok(mut l) = serde_json::to_vec(&seq_line) {
            l.push(b'\n');
            text.extend(l);
        }
        match state::write_atomic(&self.path, &text) {
            Ok(()) => self.lines = self.created_order.len() + 1,
            Err(e) => tracing::warn!(error = %e, "cannot compact the outbox"),
        }
    }

    /// The task a write is about, if it exists.
    fn resolve(&self, r: &TaskRef) -> Result<TaskGid, Failed> {
        let gid = match r {
            TaskRef::Gid(g) => g.clone(),
            TaskRef::Created(key) => match self.created.get(key) {
                Some(Some(c)) => c.gid.clone(),
                Some(None) => {
                    return Err(Failed::Never(format!(
                        "the task of {key} was never created"
                    )))
                }
                None => {
                    return Err(Failed::Never(format!(
                        "the task of {key} is unknown (its create is not in the outbox)"
                    )))
                }
            },
        };
        TaskGid::parse(&gid).ok_or_else(|| Failed::Never(format!("malformed task gid {gid:?}")))
    }

    /// Creates `new` in `project`; unless the write is fresh, first looks
    /// for it among what was created there since it was queued.
    async fn create(
        &self,
        e: &Entry,
        project: &str,
        mut new: NewTask,
    ) -> Result<(Option<Created>, bool), Failed> {
        let c = &self.client;
        let project = ProjectGid::parse(project)
            .ok_or_else(|| Failed::Never(format!("malformed project gid {project:?}")))?;
        if !e.fresh {
            // Anything created since the write was queued, open or not.
            let since = e.at - chrono::Duration::minutes(1);
            let tasks = c
                .project_tasks(&project, CompletedSince::Since(since), "name,notes")
                .await
                .map_err(Failed::from)?;
            let notes = new.notes.as_deref().unwrap_or("");
            if let Some(t) = tasks
                .into_iter()
                .rev()
                .find(|t| t.name == new.name && t.notes.as_deref().unwrap_or("") == notes)
            {
                let gid = TaskGid::parse(&t.gid)
                    .ok_or_else(|| Failed::Never(format!("malformed task gid {:?}", t.gid)))?;
                let full = c.get_task(&gid, fields::TASK).await.map_err(Failed::from)?;
                let found = Created {
                    gid: t.gid,
                    link: full.permalink_url.unwrap_or_default(),
                };
                return Ok((Some(found), true));
            }
        }
        new.projects = vec![project];
        let t = c.create_task(&new).await.map_err(Failed::from)?;
        let made = Created {
            link: t.permalink_url.unwrap_or_default(),
            gid: t.gid,
        };
        Ok((Some(made), false))
    }

    /// Sends one write; unless it is fresh, first looks whether it was
    /// applied already.
    async fn apply(&self, e: &Entry) -> Result<(Option<Created>, bool), Failed> {
        let c = &self.client;
        let task = match e.op.task() {
            Some(r) => Some(self.resolve(r)?),
            None => None,
        };
        match (&e.op, task) {
            (
                Op::CreateTask {
                    name,
                    notes,
                    html_notes,
                    project,
                    workspace,
                    assignee,
                    ..
                },
                _,
            ) => {
                let new = NewTask {
                    name: name.clone(),
                    notes: Some(notes.clone()),
                    html_notes: html_notes.clone(),
                    workspace: workspace.as_deref().and_then(WorkspaceGid::parse),
                    assignee: assignee.clone(),
                    ..NewTask::default()
                };
                self.create(e, project, new).await
            }
            (
                Op::CreateApproval {
                    name,
                    notes,
                    project,
                    ..
                },
                _,
            ) => {
                let new = NewTask {
                    name: name.clone(),
                    notes: Some(notes.clone()),
                    resource_subtype: Some("approval".into()),
                    ..NewTask::default()
                };
                self.create(e, project, new).await
            }
            (Op::Comment { text, .. }, Some(gid)) => {
                if !e.fresh {
                    let stories = c.stories(&gid).await.map_err(Failed::from)?;
                    if stories.iter().any(|s| {
                        s.resource_subtype.as_deref() == Some("comment_added")
                            && s.text.as_deref() == Some(text.as_str())
                    }) {
                        return Ok((None, true));
                    }
                }
                c.add_comment(&gid, &Comment::Text(text.clone()))
                    .await
                    .map_err(Failed::from)?;
                Ok((None, false))
            }
            (Op::Complete { .. }, Some(gid)) => {
                if !e.fresh {
                    let t = c.get_task(&gid, "completed").await.map_err(Failed::from)?;
                    if t.completed == Some(true) {
                        return Ok((None, true));
                    }
                }
                let done = TaskUpdate {
                    completed: Some(true),
                    ..TaskUpdate::default()
                };
                c.update_task(&gid, &done).await.map_err(Failed::from)?;
                Ok((None, false))
            }
            (Op::RemoveProject { project, .. }, Some(gid)) => {
                let project = ProjectGid::parse(project)
                    .ok_or_else(|| Failed::Never(format!("malformed project gid {project:?}")))?;
                // Removing twice changes nothing: no need to look first.
                c.remove_project(&gid, &project)
                    .await
                    .map_err(Failed::from)?;
                Ok((None, false))
            }
            (Op::Rename { name, .. }, Some(gid)) => {
                // Renaming twice changes nothing: no need to look first.
                let update = TaskUpdate {
                    name: Some(name.clone()),
                    ..TaskUpdate::default()
                };
                c.update_task(&gid, &update).await.map_err(Failed::from)?;
                Ok((None, false))
            }
            (_, None) => Err(Failed::Never("the write names no task".into())),
        }
    }
}

/// Why a write did not go through.
enum Failed {
    /// Asana down, rate limits past the retries, 5xx, timeouts, a refused
    /// token: keep it and stop the flush.
    Later(String),
    /// Refused for good (400, 403, 404, an answer that makes no sense).
    Never(String),
}

impl From<AsanaError> for Failed {
    fn from(e: AsanaError) -> Failed {
        let why = crate::domain::text::describe(&e);
        if e.is_transient() || e.status() == Some(401) || matches!(e, AsanaError::Token(_)) {
            Failed::Later(why)
        } else {
            Failed::Never(why)
        }
    }
}
