//! The state directory: what pushgate remembers between runs, and the lock
//! that keeps two pushes of one cluster apart. The layout is in
//! `docs/state.md`:
//!
//! ```text
//! STATE_DIR/
//!   repo/                      bare mirror of repo.url
//!   artifacts/<full sha>/      build outputs, one per commit, never rebuilt
//!   work/                      build work trees while a build runs
//!   clusters/<name>/lock       flock held for a whole push (holder's pid inside)
//!   clusters/<name>/deployed.json   commit and release the hosts run
//!   clusters/<name>/history.jsonl   one line per finished push or rollback
//!   clusters/<name>/journal.jsonl   the running (or interrupted) run's steps
//!   clusters/<name>/runs/<run>.jsonl   a finished run's journal, kept for people
//!   clusters/<name>/runs/<run>.json    how it ended: hosts, changelog, Asana writes
//!   clusters/<name>/runs/<run>.hosts.json  every host's stage in full (comments summarise)
//!   clusters/<name>/outbox.jsonl    Asana writes queued and done (`outbox.rs`)
//!   clusters/<name>/children/       one file per running child's process group
//!   clusters/<name>/bad.json        commits rolled back: never a candidate again
//!   clusters/<name>/approvals.json  approval requests made (`run::approval`)
//!   requests/lock, outbox.jsonl     the requests watcher's lock and Asana writes
//!   requests/journal.json      every request task seen and where it stands
//!   requests/sync.json         the Events API sync token of the requests project
//!   reported-fixes.json        tasks told once that their fix value is unusable
//!   sandbox.json               the embedded sandbox's data
//! ```
//!
//! Whole files are written atomically (temp file, fsync, rename, fsync of
//! the directory); the two logs are appended a line at a time with fsync,
//! and a torn last line is skipped when read. Nothing here holds the token.
//! The records are the state files' DTOs; callers turn them into domain
//! types.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::model::{ClusterName, CommitId, RunKind, RunOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir: cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir: {path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Another process holds the cluster's lock: exit 6.
    #[error("another push of {cluster} is running ({holder})")]
    Busy {
        cluster: ClusterName,
        holder: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io { what, path, source }
}

/// What a cluster's hosts run, as last recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub commit: String,
    pub release: String,
    pub since: DateTime<Utc>,
    pub run_id: String,
    #[serde(default)]
    pub push_task: Option<String>,
    #[serde(default)]
    pub push_task_link: Option<String>,
}

impl Deployed {
    pub fn commit_id(&self) -> Option<CommitId> {
        CommitId::parse(&self.commit)
    }
}

/// One finished run, as `history` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub run_id: String,
    /// `push` or `rollback` on disk.
    #[serde(with = "word")]
    pub kind: RunKind,
    /// `success` or `failed` on disk.
    #[serde(with = "word")]
    pub outcome: RunOutcome,
    pub commit: String,
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    #[serde(default)]
    pub push_task_link: Option<String>,
    #[serde(default)]
    pub failed_step: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A commit rolled back on a cluster: scheduled pushes never pick it again;
/// `push --commit` does, and a successful push of it clears the mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadMark {
    /// The release that was rolled back.
    pub release: String,
    pub at: DateTime<Utc>,
    /// The rollback's run id.
    pub run_id: String,
}

/// One step of a run, written before and after the step's effects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at: DateTime<Utc>,
    pub run_id: String,
    pub step: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// How many finished runs `runs/` keeps per cluster (their journals and
/// reports); older ones are removed when a run ends.
pub const RUNS_KEPT: usize = 500;

/// How a finished push or rollback ended, for people to read later (the
/// on-call page's run view): `runs/<run_id>.json`, written once by
/// `watch::runs` after the run. Its step times are in the run's journal,
/// kept beside it as `runs/<run_id>.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    #[serde(with = "word")]
    pub kind: RunKind,
    /// `pushed`, `failed` or `rolled-back` (as `push --json` says).
    pub outcome: String,
    pub commit: String,
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    /// The push task's gid and link.
    #[serde(default)]
    pub push_task: Option<String>,
    #[serde(default)]
    pub push_task_link: Option<String>,
    #[serde(default)]
    pub failed_step: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// A failed check's stop, in words, and the lock task it left.
    #[serde(default)]
    pub stopped: Option<String>,
    #[serde(default)]
    pub lock_task: Option<String>,
    #[serde(default)]
    pub hosts: Vec<RunHost>,
    #[serde(default)]
    pub changelog: Vec<RunChange>,
    #[serde(default)]
    pub changelog_more: usize,
    /// What a person told the push to go past, and why.
    #[serde(default)]
    pub ignored: Option<RunIgnored>,
    /// Who ran it (`user@host`).
    #[serde(default)]
    pub by: String,
    pub duration_ms: u64,
    #[serde(default)]
    pub asana_queued: usize,
    #[serde(default)]
    pub asana_failures: usize,
    /// The run's Asana writes as the outbox had them when it ended.
    #[serde(default)]
    pub asana_writes: Vec<AsanaWrite>,
}

/// One host's part in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHost {
    pub host: String,
    pub result: String,
    #[serde(default)]
    pub bytes_sent: Option<u64>,
}

/// One commit of a run's changelog (untrusted text, as git has it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChange {
    pub commit: String,
    pub subject: String,
    pub author: String,
}

/// `push --ignore-locks/--ignore-freeze/--ignore-approval --reason TEXT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIgnored {
    pub reason: String,
    /// Each thing ignored, in words.
    pub what: Vec<String>,
}

/// One Asana write of a run (its line in the outbox).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsanaWrite {
    /// Its place in the cluster's outbox.
    pub seq: u64,
    /// What it does, in words (`comment on the push task`).
    pub what: String,
    /// A comment's text (untrusted: it quotes host output).
    #[serde(default)]
    pub text: Option<String>,
    /// `applied`, `already`, `queued` or `dropped: why`.
    pub state: String,
}

/// Whether `s` can name a run's files: what `execute::run_id` makes
/// (`beta-20261122T101500Z-3f2a`), nothing that walks out of `runs/`.
pub fn is_run_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

/// The domain's enums as the words the state files hold, read and written
/// through `as_str`/`parse`, so that the files stay as they always were.
mod word {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::domain::model::{RunKind, RunOutcome};

    pub trait Word: Sized {
        fn as_str(&self) -> &'static str;
        fn parse(s: &str) -> Option<Self>;
    }

    impl Word for RunKind {
        fn as_str(&self) -> &'static str {
            RunKind::as_str(*self)
        }
        fn parse(s: &str) -> Option<Self> {
            RunKind::parse(s)
        }
    }

    impl Word for RunOutcome {
        fn as_str(&self) -> &'static str {
            RunOutcome::as_str(*self)
        }
        fn parse(s: &str) -> Option<Self> {
            RunOutcome::parse(s)
        }
    }

    pub fn serialize<T: Word, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, T: Word, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        T::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown value {s:?}")))
    }
}

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// What one app's pushgate keeps at the root of its state directory
    /// (a config without `[apps]`) and finds there: the paths that exist.
    pub fn one_apps_state(&self) -> Vec<PathBuf> {
        ["clusters", "reported-fixes.json"]
            .iter()
            .map(|p| self.root.join(p))
            .filter(|p| p.exists())
            .collect()
    }
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    pub fn artifact(&self, commit: &CommitId) -> PathBuf {
        self.artifacts().join(commit.as_str())
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    /// The handle to one cluster's part of the state directory.
    pub fn cluster(&self, c: &ClusterName) -> ClusterState {
        ClusterState {
            dir: self.root.join("clusters").join(c.as_str()),
            name: c.clone(),
        }
    }

    /// The requests watcher's part (`requests/`): its lock, outbox,
    /// journal and events sync token, handled like a cluster's.
    pub fn requests(&self) -> ClusterState {
        ClusterState {
            dir: self.root.join("requests"),
            name: ClusterName::parse("requests").unwrap_or_else(|| unreachable!("a valid name")),
        }
    }

    /// Tasks already told their fix value is unusable: gid → that value.
    pub fn reported_fixes(&self) -> Result<std::collections::BTreeMap<String, String>, StateError> {
        Ok(read_json(&self.root.join("reported-fixes.json"))?.unwrap_or_default())
    }

    pub fn set_reported_fixes(
        &self,
        r: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        write_json(&self.root.join("reported-fixes.json"), r)
    }
}

/// One cluster's part of the state directory (`clusters/<name>/`): its
/// lock, deployed release, history, journal, outbox, holds log and marks.
/// Every per-cluster read and write goes through this handle, made once
/// per run by [`StateDir::cluster`].
#[derive(Clone, Debug)]
pub struct ClusterState {
    dir: PathBuf,
    name: ClusterName,
}

impl ClusterState {
    pub fn name(&self) -> &ClusterName {
        &self.name
    }

    /// `clusters/<name>/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the cluster's directory.
    pub fn prepare(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))
    }

    /// Takes the cluster's lock without waiting: `Busy` when another
    /// process holds it. Released when the returned value is dropped (or
    /// the process dies: the kernel drops flocks with their process).
    pub fn lock(&self) -> Result<ClusterLock, StateError> {
        self.prepare()?;
        let path = self.dir.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        // A lock just released can look held for an instant: a child forked
        // (by any thread) between our open and its exec shares the open
        // file description until the exec closes it. A few short retries
        // absorb that; a real holder keeps it far longer.
        let mut result = Ok(());
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result = rustix::fs::flock(
                file.as_fd(),
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            );
            if result != Err(rustix::io::Errno::WOULDBLOCK) {
                break;
            }
        }
        match result {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .map(|s| crate::domain::text::printable(&s, 200))
                    .unwrap_or_else(|| "holder unknown".into());
                return Err(StateError::Busy {
                    cluster: self.name.clone(),
                    holder,
                });
            }
            Err(e) => return Err(io("lock", &path)(e.into())),
        }
        let _ = file.set_len(0);
        let _ = writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        Ok(ClusterLock { file })
    }

    /// Whether a push of `c` is running now, asked of the kernel: a shared
    /// lock that cannot be had means another process (or this one, on
    /// another descriptor) holds the exclusive one. A killed push holds
    /// nothing, whatever its lock file still says. The probe's shared lock
    /// lasts an instant; `lock` retries briefly, so it never gets in a
    /// starting push's way.
    pub fn running(&self) -> Option<String> {
        let path = self.dir.join("lock");
        let file = File::open(&path).ok()?;
        match rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockShared,
        ) {
            Ok(()) => {
                let _ = rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::Unlock);
                None
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Some(
                fs::read_to_string(&path)
                    .ok()
                    .map(|t| crate::domain::text::printable(t.trim(), 200))
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "a push".into()),
            ),
            Err(_) => None,
        }
    }

    pub fn deployed(&self) -> Result<Option<Deployed>, StateError> {
        read_json(&self.dir.join("deployed.json"))
    }

    pub fn set_deployed(&self, d: &Deployed) -> Result<(), StateError> {
        self.prepare()?;
        write_json(&self.dir.join("deployed.json"), d)
    }

    pub fn append_history(&self, r: &HistoryRecord) -> Result<(), StateError> {
        self.prepare()?;
        append_line(&self.history_path(), r)
    }

    /// Every finished run, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryRecord>, StateError> {
        read_lines(&self.history_path())
    }

    /// `history.jsonl`, for readers that follow it as it grows (the metrics).
    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    /// One file per running child's process group (`process::reap_orphans`).
    pub fn children(&self) -> PathBuf {
        self.dir.join("children")
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.dir.join("outbox.jsonl")
    }

    /// The holds log (`watch::holds` writes it, `history` and the metrics read it).
    pub fn holds_path(&self) -> PathBuf {
        self.dir.join("holds.jsonl")
    }

    /// The approval requests made for this cluster (`run::approval`).
    pub fn approvals_path(&self) -> PathBuf {
        self.dir.join("approvals.json")
    }

    /// The notifications' memory of the current hold streak.
    pub fn notify_path(&self) -> PathBuf {
        self.dir.join("notify.json")
    }

    /// Commits rolled back on this cluster: full sha → the mark.
    pub fn bad_commits(&self) -> Result<std::collections::BTreeMap<String, BadMark>, StateError> {
        Ok(read_json(&self.dir.join("bad.json"))?.unwrap_or_default())
    }

    pub fn set_bad_commits(
        &self,
        marks: &std::collections::BTreeMap<String, BadMark>,
    ) -> Result<(), StateError> {
        self.prepare()?;
        write_json(&self.dir.join("bad.json"), marks)
    }

    /// Releases each ssh host deletes at the start of its next stage
    /// (host as the config writes it → release ids): a push's pruning,
    /// decided once every wave passed, rides on the next push's stage
    /// session instead of costing a round trip of its own.
    pub fn pending_prune(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, StateError> {
        Ok(read_json(&self.dir.join("prune.json"))?.unwrap_or_default())
    }

    pub fn set_pending_prune(
        &self,
        prune: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(), StateError> {
        self.prepare()?;
        write_json(&self.dir.join("prune.json"), prune)
    }

    /// Every host's record of one run (`runs/RUN_ID.hosts.json`): what
    /// comments only summarise at fleet size. Kept and removed with the
    /// run's journal and report ([`RUNS_KEPT`]).
    pub fn set_run_hosts<T: Serialize>(&self, run_id: &str, record: &T) -> Result<(), StateError> {
        let dir = self.runs_dir();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        write_json(&self.run_hosts_path(run_id), record)
    }

    /// Where [`ClusterState::set_run_hosts`] keeps run `run_id`'s hosts.
    pub fn run_hosts_path(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(format!("{run_id}.hosts.json"))
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// Appends a step to the cluster's journal of the running run.
    pub fn journal(&self, e: &JournalEntry) -> Result<(), StateError> {
        self.prepare()?;
        append_line(&self.journal_path(), e)
    }

    /// The steps of a run that started and did not finish (empty if none).
    pub fn unfinished(&self) -> Result<Vec<JournalEntry>, StateError> {
        read_lines(&self.journal_path())
    }

    /// Ends the journal: the run is in the history now. The journal is
    /// kept as the run's record, `runs/<run_id>.jsonl` (renamed: it is
    /// whole or absent), and the oldest runs beyond [`RUNS_KEPT`] go.
    pub fn close_journal(&self) -> Result<(), StateError> {
        let p = self.journal_path();
        let run = read_lines::<JournalEntry>(&p)
            .ok()
            .and_then(|e| e.first().map(|e| e.run_id.clone()))
            .filter(|r| is_run_id(r));
        if let Some(run) = run {
            let runs = self.runs_dir();
            let kept = fs::create_dir_all(&runs)
                .and_then(|()| fs::rename(&p, runs.join(format!("{run}.jsonl"))));
            match kept {
                Ok(()) => {
                    sync_dir(&runs)?;
                    self.prune_runs();
                    return sync_dir(&self.dir);
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %p.display(), "cannot keep the run's journal; removing it");
                }
            }
        }
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &p)(e)),
        }
    }

    /// `runs/`: finished runs' journals and reports.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// The steps of run `run`: its kept journal, or the journal of the
    /// run in progress if it is that one. Empty if neither is there.
    pub fn run_journal(&self, run: &str) -> Result<Vec<JournalEntry>, StateError> {
        if !is_run_id(run) {
            return Ok(Vec::new());
        }
        let kept = self.runs_dir().join(format!("{run}.jsonl"));
        if kept.exists() {
            return read_lines(&kept);
        }
        let now = self.unfinished()?;
        Ok(match now.first() {
            Some(e) if e.run_id == run => now,
            _ => Vec::new(),
        })
    }

    /// How run `run` ended, if it finished and its report was kept.
    pub fn run_report(&self, run: &str) -> Result<Option<RunReport>, StateError> {
        if !is_run_id(run) {
            return Ok(None);
        }
        read_json(&self.runs_dir().join(format!("{run}.json")))
    }

    /// Keeps how a run ended (atomically).
    pub fn set_run_report(&self, r: &RunReport) -> Result<(), StateError> {
        if !is_run_id(&r.run_id) {
            return Err(StateError::Corrupt {
                path: self.runs_dir(),
                message: format!(
                    "`{}` is not a run id",
                    crate::domain::text::printable(&r.run_id, 60)
                ),
            });
        }
        let runs = self.runs_dir();
        fs::create_dir_all(&runs).map_err(io("create", &runs))?;
        write_json(&runs.join(format!("{}.json", r.run_id)), r)
    }

    /// Removes the files of the oldest runs past [`RUNS_KEPT`] (a cluster's
    /// run ids sort by their start time).
    fn prune_runs(&self) {
        let Ok(rd) = fs::read_dir(self.runs_dir()) else {
            return;
        };
        let mut runs: Vec<String> = rd
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                Some(name.strip_suffix(".jsonl")?.to_owned())
            })
            .collect();
        if runs.len() <= RUNS_KEPT {
            return;
        }
        runs.sort();
        for old in &runs[..runs.len() - RUNS_KEPT] {
            for ext in ["jsonl", "json", "hosts.json"] {
                let _ = fs::remove_file(self.runs_dir().join(format!("{old}.{ext}")));
            }
        }
    }
}

/// The cluster's lock, held while this value lives. Dropping it clears
/// the holder's pid from the file, then the kernel releases the lock.
#[derive(Debug)]
pub struct ClusterLock {
    file: File,
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Writes `value` to `path` so that a reader sees the old or the new file,
/// never a mix, even after a power loss.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a temp file in", dir))?;
    tmp.write_all(bytes).map_err(io("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io("sync", path))?;
    tmp.persist(path)
        .map_err(|e| io("rename onto", path)(e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

pub(crate) fn append_line<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let mut line = serde_json::to_vec(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("open", path))?;
    f.write_all(&line).map_err(io("append to", path))?;
    f.sync_data().map_err(io("sync", path))
}

/// Reads a JSON-lines log; a line that does not parse (a torn write at the
/// end) is skipped with a warning.
pub(crate) fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, StateError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(io("read", path))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(&line) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::warn!(path = %path.display(), line = n + 1, error = %e, "skipping an unreadable line")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterName {
        ClusterName::parse("beta").unwrap()
    }

    #[test]
    fn a_second_lock_of_one_cluster_is_busy_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let held = state.cluster(&cluster()).lock().unwrap();
        let err = state.cluster(&cluster()).lock().unwrap_err();
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        state.cluster(&cluster()).lock().unwrap();
    }

    #[test]
    fn a_torn_last_history_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let at = Utc::now();
        let rec = HistoryRecord {
            run_id: "r1".into(),
            kind: RunKind::Push,
            outcome: RunOutcome::Success,
            commit: "a".repeat(40),
            previous: None,
            release: None,
            started: at,
            finished: at,
            push_task_link: None,
            failed_step: None,
            error: None,
        };
        state.cluster(&cluster()).append_history(&rec).unwrap();
        let path = dir.path().join("clusters/beta/history.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"run_id\": \"r2\", \"ki").unwrap();
        assert_eq!(state.cluster(&cluster()).history().unwrap(), vec![rec]);
    }
}
