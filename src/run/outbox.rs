//! The outbox: every Asana write made after the gate passed — the push
//! task, its stage comments, its completion, crash-task closures, lock
//! project removals, rollback lock tasks — goes through here (SPEC §7).
//!
//! A write is appended to the cluster's `outbox.jsonl` (fsynced) *before*
//! it is sent, and marked done after Asana applied it. Writes about one
//! task are applied in the order they were queued, and nothing about a
//! task goes before the write that creates it; writes that do not depend
//! on each other go out together, in waves of at most [`WAVE`] requests
//! (a push's last comment and its completion, two tasks' writes), and
//! comments on one task that queued up behind a request in flight (behind
//! the push task's create, on a push quicker than Asana) go as one
//! comment, their texts in order, a blank line apart: what costs a push
//! Asana round trips is how many waves its writes need, not how many
//! writes it makes. The first write that fails for a reason that may pass
//! (Asana down, 429s past the retries, 5xx, timeouts, a refused token)
//! stops the flush, and every later write of the run is only queued. The
//! next run of the cluster replays the queue before it does anything else.
//!
//! Exactly once: a write that this process has not tried yet is sent as
//! it is; any other (read back from the file: a previous process may have
//! applied it and died before marking it done) is first looked for in
//! Asana — the comment among the task's stories (alone, or as one of the
//! paragraphs of a comment it was sent with), the task in its project,
//! the completion on the task — and only sent if it is not there.
//! A write Asana refuses for good (400, 403, 404) is dropped with an error
//! in the log: retrying it cannot help, and it must not block the queue.
//!
//! The file is read and written only under the cluster's lock. It never
//! holds the token. It does not decide what to write: callers do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::join_all;
use tokio::sync::Notify;

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

/// What the outbox holds, behind its lock (never held across an await).
struct Inner {
    pending: VecDeque<Entry>,
    /// key → the created task, or `None` if its create was dropped.
    created: BTreeMap<String, Option<Created>>,
    /// Insertion order of `created`, oldest first.
    created_order: Vec<String>,
    next_seq: u64,
    lines: usize,
    /// Why writes are only queued for the rest of this run.
    deferred: Option<String>,
    /// How the last writes went, for a `submit` whose write another
    /// flush applied while it waited its turn (seq → delivery).
    delivered: BTreeMap<u64, Delivery>,
    tally: Tally,
}

/// The outbox of one cluster. Shared by what queues writes and by the one
/// flush that sends them ([`Outbox::background`]): every method takes
/// `&self`, and one flush at a time sends, wave after wave.
pub struct Outbox {
    client: Client,
    path: PathBuf,
    /// The run's clock: when a write was queued.
    clock: RunClock,
    inner: Mutex<Inner>,
    /// Held while writes are sent: one flush at a time, in waves.
    sending: tokio::sync::Mutex<()>,
    /// Tells [`Outbox::background`] a write was posted, or the run ends.
    wake: Notify,
    closing: AtomicBool,
    /// Live [`Hold`]s without a bound.
    holds: AtomicUsize,
    /// The end of the live bounded hold ([`Outbox::hold_at_most`]).
    held_until: Mutex<Option<tokio::time::Instant>>,
}

/// See [`Outbox::hold`]; dropping it lets the background send again.
pub struct Hold<'o> {
    outbox: &'o Outbox,
    bounded: bool,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if self.bounded {
            *self.outbox.until() = None;
        } else {
            self.outbox.holds.fetch_sub(1, Ordering::SeqCst);
        }
        self.outbox.wake.notify_one();
    }
}

/// How many deliveries `Inner::delivered` keeps.
const KEEP_DELIVERED: usize = 64;

/// The most requests one wave sends at once: well inside Asana's 15
/// writes in flight per token (API-FACTS), leaving room for the other
/// clusters' and apps' writes under the daemon's limiter.
pub const WAVE: usize = 8;

/// The longest text comments merged into one may have together; past it,
/// the next comment waits for the next wave.
const MERGED_TEXT: usize = 16 * 1024;

/// What separates the comments sent as one.
const PARAGRAPH: &str = "\n\n";

/// One request of a wave: one write, or comments on one task sent as one.
struct Batch {
    entries: Vec<Entry>,
}

/// Whether `text`, a comment queued alone, is in `story`: the story
/// itself, or one of the comments it was sent with (a paragraph of it).
fn said_in(story: &str, text: &str) -> bool {
    story == text
        || story
            .strip_prefix(text)
            .is_some_and(|rest| rest.starts_with(PARAGRAPH))
        || story
            .strip_suffix(text)
            .is_some_and(|rest| rest.ends_with(PARAGRAPH))
        || story.contains(&format!("{PARAGRAPH}{text}{PARAGRAPH}"))
}

/// The next wave: the pending writes that depend on no write before them
/// that is still pending, in order — at most [`WAVE`] requests, each
/// task's consecutive comments as one. A write about a task waits while
/// its create is pending, and while an earlier write about the task
/// waits; a comment also waits while a completion, rename or removal of
/// its task goes in this wave (so it never lands before them), and a
/// second such write while the first goes.
fn next_wave(inner: &Inner) -> Vec<Batch> {
    let creating: BTreeSet<&str> = inner
        .pending
        .iter()
        .filter_map(|e| e.op.creates())
        .collect();
    let mut wave: Vec<Batch> = Vec::new();
    // Tasks no later write about may join this wave.
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    // Task → its comment's request in this wave, while more may join it.
    let mut merging: BTreeMap<String, usize> = BTreeMap::new();
    // Tasks a completion, rename or removal goes to in this wave.
    let mut other: BTreeSet<String> = BTreeSet::new();
    for e in &inner.pending {
        let Some(r) = e.op.task() else {
            if wave.len() >= WAVE {
                break;
            }
            wave.push(Batch {
                entries: vec![e.clone()],
            });
            continue;
        };
        let key = match r {
            TaskRef::Gid(g) => g.clone(),
            TaskRef::Created(k) => match inner.created.get(k) {
                Some(Some(c)) => c.gid.clone(),
                _ => format!("created {k}"),
            },
        };
        if blocked.contains(&key) {
            continue;
        }
        if matches!(r, TaskRef::Created(k) if creating.contains(k.as_str())) {
            blocked.insert(key);
            continue;
        }
        if let Op::Comment { text, .. } = &e.op {
            if let Some(&i) = merging.get(&key) {
                let len: usize = wave[i]
                    .entries
                    .iter()
                    .map(|e| comment_text(e).len() + PARAGRAPH.len())
                    .sum();
                if len + text.len() <= MERGED_TEXT {
                    wave[i].entries.push(e.clone());
                    continue;
                }
            }
            if other.contains(&key) || merging.contains_key(&key) || wave.len() >= WAVE {
                blocked.insert(key);
                continue;
            }
            merging.insert(key, wave.len());
        } else {
            if other.contains(&key) || wave.len() >= WAVE {
                blocked.insert(key);
                continue;
            }
            merging.remove(&key);
            other.insert(key);
        }
        wave.push(Batch {
            entries: vec![e.clone()],
        });
    }
    wave
}

/// A comment write's text ("" for any other write).
fn comment_text(e: &Entry) -> &str {
    match &e.op {
        Op::Comment { text, .. } => text,
        _ => "",
    }
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
            clock,
            inner: Mutex::new(Inner {
                pending: queued.into_values().collect(),
                created,
                created_order,
                next_seq,
                lines: lines.len(),
                deferred: None,
                delivered: BTreeMap::new(),
                tally: Tally::default(),
            }),
            sending: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            holds: AtomicUsize::new(0),
            held_until: Mutex::new(None),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn until(&self) -> MutexGuard<'_, Option<tokio::time::Instant>> {
        self.held_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This run's counts so far.
    pub fn tally(&self) -> Tally {
        self.inner().tally.clone()
    }

    /// Writes waiting to be applied.
    pub fn pending(&self) -> usize {
        self.inner().pending.len()
    }

    /// The oldest waiting write's time, if any.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.inner().pending.front().map(|e| e.at)
    }

    /// Why this run only queues (Asana failed), if it does.
    pub fn deferred(&self) -> Option<String> {
        self.inner().deferred.clone()
    }

    /// The task created for `key`, if the outbox created it.
    pub fn created(&self, key: &str) -> Option<Created> {
        self.inner().created.get(key).cloned().flatten()
    }

    /// Whether Asana refused the create for `key` for good.
    pub fn never_created(&self, key: &str) -> bool {
        matches!(self.inner().created.get(key), Some(None))
    }

    /// Whether a create for `key` waits in the queue.
    pub fn creating(&self, key: &str) -> bool {
        self.inner()
            .pending
            .iter()
            .any(|e| e.op.creates() == Some(key))
    }

    /// Queues `op` durably, then applies the queue in order up to it
    /// unless this run already saw Asana fail; how it went.
    pub async fn submit(&self, run: &str, op: Op) -> Delivery {
        let seq = match self.queue(run, op).await {
            Ok(seq) => seq,
            Err(delivered) => return delivered,
        };
        if self.inner().deferred.is_some() {
            return Delivery::Queued;
        }
        self.flush_until(Some(seq))
            .await
            .unwrap_or(Delivery::Queued)
    }

    /// Queues `op` durably and returns at once: [`Outbox::background`]
    /// (or the run's next `submit` or `flush`) sends it, after every write
    /// queued before it. For writes whose answer the caller does not wait
    /// for: the push task's stage comments, its completion.
    pub async fn post(&self, run: &str, op: Op) {
        if self.queue(run, op).await.is_ok() {
            self.wake.notify_one();
        }
    }

    /// Appends `op` to the file (fsynced); its sequence number. If it
    /// cannot be made durable, it is sent now, once: `Err` says how that
    /// went.
    async fn queue(&self, run: &str, op: Op) -> Result<u64, Delivery> {
        let entry = {
            let mut inner = self.inner();
            let entry = Entry {
                seq: inner.next_seq,
                at: self.clock.now(),
                run: run.to_owned(),
                op,
                fresh: true,
            };
            inner.next_seq += 1;
            entry
        };
        let line = Line::Queued {
            seq: entry.seq,
            at: entry.at,
            run: entry.run.clone(),
            op: entry.op.clone(),
        };
        if let Err(e) = state::append_line(&self.path, &line) {
            // Not durable: send it now, once, and say so if that fails too.
            tracing::error!(error = %e, write = %entry.op.describe(), "cannot queue an Asana write; sending it without a queue");
            let _turn = self.sending.lock().await;
            return Err(match self.apply(&entry).await {
                Ok((task, _)) => {
                    let mut inner = self.inner();
                    inner.tally.applied += 1;
                    if let Some(key) = entry.op.creates() {
                        inner.created.insert(key.to_owned(), task.clone());
                        inner.created_order.push(key.to_owned());
                    }
                    Delivery::Applied(task)
                }
                Err(Failed::Later(why) | Failed::Never(why)) => {
                    tracing::error!(write = %entry.op.describe(), error = %why, "an Asana write is lost");
                    self.inner().tally.dropped += 1;
                    Delivery::Dropped(why)
                }
            });
        }
        let seq = entry.seq;
        let mut inner = self.inner();
        inner.lines += 1;
        inner.pending.push_back(entry);
        Ok(seq)
    }

    /// Applies every waiting write in order, stopping at the first that
    /// fails for a reason that may pass. Returns how many still wait.
    pub async fn flush(&self) -> usize {
        self.inner().deferred = None;
        self.flush_until(None).await;
        self.pending()
    }

    /// Applies what waits, in order, unless this run saw Asana fail;
    /// returns once nothing waits (or Asana failed). What a run waits on
    /// before a step that must follow its writes.
    pub async fn settle(&self) {
        if self.inner().deferred.is_none() {
            self.flush_until(None).await;
        }
    }

    /// Sends what is posted, in order, as it is posted, until
    /// [`Outbox::close_background`] and nothing waits (or Asana failed:
    /// the rest stays queued for the run's last try and the next run).
    /// Joined with the work it runs beside — never spawned.
    pub async fn background(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let bound = self.until().filter(|t| tokio::time::Instant::now() < *t);
            if self.holds.load(Ordering::SeqCst) == 0 && bound.is_none() {
                self.settle().await;
            }
            let idle = {
                let inner = self.inner();
                inner.pending.is_empty() || inner.deferred.is_some()
            };
            if idle && self.closing.load(Ordering::SeqCst) {
                return;
            }
            match bound {
                // A bounded hold ends by itself too.
                Some(t) => {
                    tokio::select! {
                        () = woken => {}
                        () = tokio::time::sleep_until(t) => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Keeps [`Outbox::background`] from starting a wave while the guard
    /// lives (a wave in flight finishes), so that what is posted meanwhile
    /// goes in one: the push's switch comment, held from the end of the
    /// switch until the close has posted its own comment and the
    /// completion. Only the background waits: `submit`, `settle` and
    /// `flush` send at once.
    pub fn hold(&self) -> Hold<'_> {
        self.holds.fetch_add(1, Ordering::SeqCst);
        Hold {
            outbox: self,
            bounded: false,
        }
    }

    /// [`Outbox::hold`] for at most `bound`: then the background sends
    /// what waits though the guard lives. The push's stage comment, held
    /// while a plain switch runs so that it goes with the switch's and
    /// the close's, is never late by more than that. One bounded hold at
    /// a time: a second one replaces the first.
    pub fn hold_at_most(&self, bound: std::time::Duration) -> Hold<'_> {
        *self.until() = Some(tokio::time::Instant::now() + bound);
        Hold {
            outbox: self,
            bounded: true,
        }
    }

    /// Tells [`Outbox::background`] to return once nothing waits.
    pub fn close_background(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Flushes; returns the delivery of write `seq` if it was reached (by
    /// this flush or one before it).
    async fn flush_until(&self, seq: Option<u64>) -> Option<Delivery> {
        let _turn = self.sending.lock().await;
        if let Some(d) = seq.and_then(|s| self.inner().delivered.get(&s).cloned()) {
            return Some(d);
        }
        loop {
            let wave = {
                let inner = self.inner();
                if inner.deferred.is_some() {
                    break;
                }
                next_wave(&inner)
            };
            if wave.is_empty() {
                break;
            }
            let sent = join_all(wave.iter().map(|b| self.apply_batch(b))).await;
            for (batch, results) in wave.iter().zip(sent) {
                for (entry, result) in batch.entries.iter().zip(results) {
                    self.settled(entry, result);
                }
            }
        }
        let result = seq.and_then(|s| self.inner().delivered.get(&s).cloned());
        let compact = {
            let inner = self.inner();
            inner.pending.is_empty() && inner.lines >= COMPACT_AT
        };
        if compact {
            self.compact();
        }
        result
    }

    /// Records how one write of a wave went: done (applied, found, or
    /// dropped), or kept for later — and then nothing more is sent by
    /// this run.
    fn settled(&self, entry: &Entry, result: Result<(Option<Created>, bool), Failed>) {
        let delivery = match result {
            Ok((task, already)) => {
                let mut inner = self.inner();
                if already {
                    inner.tally.already += 1;
                } else {
                    inner.tally.applied += 1;
                }
                Delivery::Applied(task)
            }
            Err(Failed::Later(why)) => {
                let mut inner = self.inner();
                // It may have been applied all the same: look first
                // next time, even in this process.
                if let Some(e) = inner.pending.iter_mut().find(|e| e.seq == entry.seq) {
                    e.fresh = false;
                }
                tracing::warn!(write = %entry.op.describe(), error = %why, queued = inner.pending.len(), "Asana write failed; queued for a later run");
                inner.deferred.get_or_insert(why);
                return;
            }
            Err(Failed::Never(why)) => {
                tracing::error!(write = %entry.op.describe(), error = %why, "Asana refused a write; dropping it");
                Delivery::Dropped(why)
            }
        };
        crate::adapters::failpoint::hit("outbox:applied");
        self.done(entry, &delivery);
        let mut inner = self.inner();
        inner.pending.retain(|e| e.seq != entry.seq);
        inner.delivered.insert(entry.seq, delivery);
        while inner.delivered.len() > KEEP_DELIVERED {
            inner.delivered.pop_first();
        }
    }

    /// Sends one request of a wave; how each of its writes went.
    async fn apply_batch(&self, b: &Batch) -> Vec<Result<(Option<Created>, bool), Failed>> {
        match b.entries.as_slice() {
            [one] => vec![self.apply(one).await],
            many => self.comments(many).await,
        }
    }

    /// Comments queued one after another on one task, sent as one: those
    /// this process has not tried are sent as they are; any other is
    /// first looked for among the task's stories, and left out if found.
    async fn comments(&self, many: &[Entry]) -> Vec<Result<(Option<Created>, bool), Failed>> {
        let all = |f: Failed| many.iter().map(|_| Err(f.clone())).collect();
        let Some(task) = many[0].op.task() else {
            return all(Failed::Never("the write names no task".into()));
        };
        let gid = match self.resolve(task) {
            Ok(g) => g,
            Err(f) => return all(f),
        };
        let mut found = vec![false; many.len()];
        if many.iter().any(|e| !e.fresh) {
            let stories = match self.client.stories(&gid).await {
                Ok(s) => s,
                Err(e) => return all(Failed::from(e)),
            };
            for (i, e) in many.iter().enumerate() {
                found[i] = !e.fresh && said(&stories, comment_text(e));
            }
        }
        let texts: Vec<&str> = many
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|(e, _)| comment_text(e))
            .collect();
        let sent = if texts.is_empty() {
            Ok(())
        } else {
            self.client
                .add_comment(&gid, &Comment::Text(texts.join(PARAGRAPH)))
                .await
                .map(|_| ())
                .map_err(Failed::from)
        };
        found
            .iter()
            .map(|&f| match (&sent, f) {
                (_, true) => Ok((None, true)),
                (Ok(()), false) => Ok((None, false)),
                (Err(e), false) => Err(e.clone()),
            })
            .collect()
    }

    /// Marks a write done in the file and in the counts.
    fn done(&self, entry: &Entry, delivery: &Delivery) {
        let (outcome, task) = match delivery {
            Delivery::Applied(t) => ("applied".to_owned(), t.clone()),
            Delivery::Dropped(why) => {
                self.inner().tally.dropped += 1;
                (format!("dropped: {why}"), None)
            }
            Delivery::Queued => return,
        };
        let key = entry.op.creates().map(str::to_owned);
        if let Some(key) = &key {
            let mut inner = self.inner();
            if inner.created.insert(key.clone(), task.clone()).is_none() {
                inner.created_order.push(key.clone());
            }
        }
        let line = Line::Done {
            seq: entry.seq,
            outcome,
            key,
            task,
        };
        match state::append_line(&self.path, &line) {
            Ok(()) => self.inner().lines += 1,
            // Replayed later, found already applied: still exactly once.
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark an Asana write done; a later run will find it applied")
            }
        }
    }

    /// Rewrites the file with only the newest created tasks.
    fn compact(&self) {
        let mut inner = self.inner();
        let inner = &mut *inner;
        let keep = inner.created_order.len().saturating_sub(KEEP_CREATED);
        for k in inner.created_order.drain(..keep) {
            inner.created.remove(&k);
        }
        let mut text = Vec::new();
        for k in &inner.created_order {
            let line = Line::Done {
                seq: 0,
                outcome: "applied".into(),
                key: Some(k.clone()),
                task: inner.created.get(k).cloned().flatten(),
            };
            if let Ok(mut l) = serde_json::to_vec(&line) {
                l.push(b'\n');
                text.extend(l);
            }
        }
        // The sequence continues across compactions.
        let seq_line = Line::Done {
            seq: inner.next_seq.saturating_sub(1),
            outcome: "compacted".into(),
            key: None,
            task: None,
        };
        if let Ok(mut l) = serde_json::to_vec(&seq_line) {
            l.push(b'\n');
            text.extend(l);
        }
        match state::write_atomic(&self.path, &text) {
            Ok(()) => inner.lines = inner.created_order.len() + 1,
            Err(e) => tracing::warn!(error = %e, "cannot compact the outbox"),
        }
    }

    /// The task a write is about, if it exists.
    fn resolve(&self, r: &TaskRef) -> Result<TaskGid, Failed> {
        let gid = match r {
            TaskRef::Gid(g) => g.clone(),
            TaskRef::Created(key) => match self.inner().created.get(key).cloned() {
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
                    if said(&stories, text) {
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

/// Whether one of the task's comments says `text` (see [`said_in`]).
fn said(stories: &[crate::adapters::asana::Story], text: &str) -> bool {
    stories.iter().any(|s| {
        s.resource_subtype.as_deref() == Some("comment_added")
            && s.text.as_deref().is_some_and(|t| said_in(t, text))
    })
}

/// Why a write did not go through.
#[derive(Clone)]
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
