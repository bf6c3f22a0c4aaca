//! What decide works on and what it returns: `Facts` in, `Plan` out, and
//! the plan's `Display` — one rendering for the log line, the CLI output and
//! the test snapshots.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::approval::{ApprovalFacts, ApprovalHold};
use crate::domain::model::{
    AppName, Changelog, ClusterName, CommitId, Fix, Host, LockTask, ReleaseId, RunKind, RunOutcome,
};
use crate::domain::text::printable;
use crate::domain::text::{count, plural};

/// What the lock project said, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockFacts {
    Read(Vec<LockTask>),
    /// Asana down, 401, timeouts after retries: the push fails closed.
    Unreadable(String),
}

/// The commit a push would ship, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub commit: CommitId,
    /// "branch main", "--commit v1.2": for the plan's text.
    pub via: String,
    /// `source = "cluster:beta"`: ship beta's artifact, never rebuild.
    pub from_cluster: Option<ClusterName>,
}

/// `freeze_before`: the other cluster's schedule and whether it is pushing.
#[derive(Clone, Debug)]
pub struct FreezeFacts {
    pub other: ClusterName,
    pub other_schedule: croner::Cron,
    pub other_tz: Tz,
    pub duration: chrono::Duration,
    pub other_running: bool,
}

/// `source = "cluster:…"`: since when the source has run the candidate,
/// and how long it must have (`min_soak`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakFacts {
    pub from: ClusterName,
    pub since: DateTime<Utc>,
    pub min: chrono::Duration,
}

/// What a person told a manual push to go past (`push --ignore-locks
/// --reason TEXT`, `--ignore-freeze`). Never the exclusion: another push
/// of the cluster, or the cluster that ships its builds pushing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub ignore_locks: bool,
    pub ignore_freeze: bool,
    /// `--ignore-approval`: push without the approval gate's consent.
    pub ignore_approval: bool,
    pub reason: Option<String>,
}

/// What a push went past because it was told to, for its plan and task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    pub reason: String,
    /// Lock tasks that held the push.
    pub locks: Vec<LockTask>,
    /// The lock project could not be read: why.
    pub unknown: Option<String>,
    /// Freeze or soak holds.
    pub holds: Vec<HoldReason>,
}

impl Ignored {
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.unknown.is_none() && self.holds.is_empty()
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed despite what held it, by hand: {}",
            printable(&self.reason, 500)
        )?;
        for t in &self.locks {
            write!(f, "\n  - ignored lock {t}")?;
        }
        if let Some(u) = &self.unknown {
            write!(
                f,
                "\n  - ignored: the lock state could not be read ({})",
                printable(u, 300)
            )?;
        }
        for h in &self.holds {
            write!(f, "\n  - ignored: {h}")?;
        }
        Ok(())
    }
}

/// `[sync]`'s answer to "what if hosts fail, and what stays".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    /// `sync.max_failed_hosts`: how many hosts may fail while the push
    /// goes on (never all of them).
    pub max_failed: usize,
    /// `sync.keep_releases`: releases kept per host after a switch.
    pub keep_releases: usize,
}

impl Default for HostPolicy {
    fn default() -> Self {
        HostPolicy {
            max_failed: 0,
            keep_releases: 5,
        }
    }
}

impl HostPolicy {
    /// For the plan's text.
    pub fn describe(&self, hosts: usize) -> String {
        format!(
            "if hosts fail: up to {} of {hosts} may and the push goes on; past that no host is switched, or every switched host goes back; {} kept per host",
            self.max_failed.min(hosts.saturating_sub(1)),
            count(self.keep_releases, "release")
        )
    }
}

/// The cluster's last finished run, as the history recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub kind: RunKind,
    pub outcome: RunOutcome,
    /// The step a failed run stopped at (`build`, `stage`, `switch`, …).
    pub failed_step: Option<String>,
    pub commit: Option<CommitId>,
    pub run_id: String,
    pub link: Option<String>,
}

/// A commit rolled back on this cluster (`rollback` marked it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    pub commit: CommitId,
    /// The release that was rolled back.
    pub release: String,
    pub at: DateTime<Utc>,
}

/// Everything a push decision needs, gathered before deciding: raw facts
/// of the world, with no rule applied (`decide` applies them all).
#[derive(Clone, Debug)]
pub struct Facts {
    /// The cluster's app, when the config has several (views name it).
    pub app: Option<AppName>,
    pub cluster: ClusterName,
    /// The clock, read once when the run started.
    pub now: DateTime<Utc>,
    /// A person named the candidate (`--commit REV`).
    pub manual: bool,
    pub overrides: Overrides,
    /// Another process holds the cluster's lock (who, since when). When set,
    /// nothing else was gathered.
    pub running: Option<String>,
    /// A cluster that ships this one's builds (`source = "cluster:<this>"`)
    /// and is pushing now (SPEC §2 step 1: no beta push while prod runs).
    pub downstream_running: Option<ClusterName>,
    pub locks: LockFacts,
    /// `None` when gathering stopped early (`running`) or when the source
    /// cluster has deployed nothing yet.
    pub candidate: Option<Candidate>,
    pub deployed: Option<CommitId>,
    /// The release the hosts run, as last recorded.
    pub deployed_release: Option<ReleaseId>,
    /// The candidate's commits since the deployed one.
    pub changelog: Changelog,
    /// The candidate's artifact is in the cache.
    pub artifact_cached: bool,
    /// The cluster's hosts, read once for this run.
    pub hosts: Vec<Host>,
    /// `source = "cluster:…"`: the cluster whose release this one ships.
    pub source: Option<ClusterName>,
    pub freeze: Option<FreezeFacts>,
    /// `source = "cluster:…"` with a soak: since when the source runs its
    /// release, and for how long it must have.
    pub soak: Option<SoakFacts>,
    /// The cluster's last finished run.
    pub last_run: Option<LastRun>,
    /// Commits rolled back on this cluster.
    pub rolled_back: Vec<RolledBack>,
    /// The newest release this cluster has had (ids sort in push order).
    pub latest_release: Option<ReleaseId>,
    /// What happens when hosts fail (`[sync]`).
    pub policy: HostPolicy,
    /// `[clusters.NAME.approval]`: the candidate's approval, as read.
    /// `None` when the cluster has no approval gate (or no candidate).
    pub approval: Option<ApprovalFacts>,
}

impl Facts {
    /// Facts for a cluster whose lock another process holds.
    pub fn running(cluster: ClusterName, holder: String, now: DateTime<Utc>) -> Facts {
        Facts {
            app: None,
            cluster,
            now,
            manual: false,
            overrides: Overrides::default(),
            running: Some(holder),
            downstream_running: None,
            locks: LockFacts::Read(Vec::new()),
            candidate: None,
            deployed: None,
            deployed_release: None,
            changelog: Changelog::default(),
            artifact_cached: false,
            hosts: Vec::new(),
            source: None,
            freeze: None,
            soak: None,
            last_run: None,
            rolled_back: Vec::new(),
            latest_release: None,
            policy: HostPolicy::default(),
            approval: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing holds the push of `to`.
    Push {
        from: Option<CommitId>,
        to: CommitId,
    },
    /// The candidate is what the cluster runs (or, with `source =
    /// "cluster:…"`, that cluster has deployed nothing): a no-op, exit 0.
    NothingNew {
        commit: Option<CommitId>,
    },
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
    /// Another push of this cluster is running (exit 6).
    Running { holder: String },
    /// Within `freeze_before` of the other cluster's next push (exit 4).
    Frozen {
        other: ClusterName,
        until: DateTime<Tz>,
    },
    /// The other cluster of `freeze_before` is pushing (exit 4).
    OtherRunning { other: ClusterName },
    /// The candidate's build failed in the last run; a scheduled push does
    /// not retry it, a new commit or `--commit` does (exit 1, no task).
    BuildFailed { commit: CommitId, last_run: String },
    /// The candidate was rolled back on this cluster: not pushed again
    /// without `--commit` (exit 3).
    RolledBack {
        commit: CommitId,
        release: String,
        at: DateTime<Utc>,
    },
    /// The source cluster has not run the candidate for `min_soak` (exit 4).
    Soaking {
        from: ClusterName,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// The source cluster's artifact of the candidate is not in the cache,
    /// and this cluster never rebuilds what it ships (exit 1, no task).
    ArtifactMissing { commit: CommitId, from: ClusterName },
    /// The approval gate: no approval of exactly this candidate by an
    /// allowed person (exit 3).
    Approval(ApprovalHold),
}

/// Every reason a run can be held for, as the holds log records it, the
/// metrics label it and `--json` names it.
pub const HOLD_REASONS: &[&str] = &[
    "locked",
    "frozen",
    "soaking",
    "build-failed",
    "rolled-back",
    "artifact-missing",
    "approval",
    "running",
    "unknown",
];

impl Verdict {
    /// The hold reason (`unknown`: the lock state could not be read, so the
    /// run failed closed), or `None` when the run was not held.
    pub fn hold_reason(&self) -> Option<&'static str> {
        Some(match self {
            Verdict::Push { .. } | Verdict::NothingNew { .. } => return None,
            Verdict::Unknown { .. } => "unknown",
            Verdict::Hold(h) => h.key(),
        })
    }
}

impl HoldReason {
    /// The hold's name in [`HOLD_REASONS`].
    pub fn key(&self) -> &'static str {
        match self {
            HoldReason::Locked { .. } => "locked",
            HoldReason::Frozen { .. } | HoldReason::OtherRunning { .. } => "frozen",
            HoldReason::Soaking { .. } => "soaking",
            HoldReason::BuildFailed { .. } => "build-failed",
            HoldReason::RolledBack { .. } => "rolled-back",
            HoldReason::ArtifactMissing { .. } => "artifact-missing",
            HoldReason::Approval(_) => "approval",
            HoldReason::Running { .. } => "running",
        }
    }
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::Locked { tasks } => {
                write!(f, "held by {}:", crate::domain::text::count(tasks.len(), "lock"))?;
                for t in tasks {
                    write!(f, "\n  - {t}")?;
                }
                Ok(())
            }
            HoldReason::Running { holder } => write!(f, "another push is running ({holder})"),
            HoldReason::Frozen { other, until } => write!(
                f,
                "frozen until {} ({other} push at {} on {})",
                until.format("%H:%M %Z"),
                until.format("%H:%M %Z"),
                until.format("%a %Y-%m-%d")
            ),
            HoldReason::OtherRunning { other } => write!(f, "frozen while {other}'s push runs"),
            HoldReason::BuildFailed { commit, last_run } => write!(
                f,
                "not retrying {}: its build failed in the last run ({}); a new commit, or `--commit {}`, retries",
                commit.short(),
                printable(last_run, 200),
                commit.short()
            ),
            HoldReason::RolledBack { commit, release, at } => write!(
                f,
                "not pushing {}: release {} was rolled back at {}; push a new commit, or `--commit {}` to push it anyway",
                commit.short(),
                printable(release, 40),
                at.format("%Y-%m-%d %H:%M UTC"),
                commit.short()
            ),
            HoldReason::Soaking { from, since, until } => write!(
                f,
                "soaking: {from} has run it only since {}; it may ship from {}",
                since.format("%Y-%m-%d %H:%M UTC"),
                until.format("%H:%M UTC")
            ),
            HoldReason::ArtifactMissing { commit, from } => write!(
                f,
                "not shipping {}: {from}'s artifact of it is not in the artifact cache, and a cluster that ships {from}'s bytes never rebuilds them; push {from} again to rebuild it, or push with `--commit {}`",
                commit.short(),
                commit.short()
            ),
            HoldReason::Approval(h) => h.fmt(f),
        }
    }
}

/// What a push does, in order; `execute` makes one call per step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the push task.
    Record,
    /// Build the candidate, or reuse its cached artifact.
    Build { cached: bool },
    /// Ship the artifact `from` ran (it must be cached: never rebuilt).
    Ship { from: ClusterName },
    /// Copy the artifact into a new release on every host.
    Stage { hosts: usize },
    /// Point every host's `current` at the new release; prune old ones.
    Switch,
    /// Comment, complete the push task, record the deployed release.
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The cluster's app, when the config has several.
    pub app: Option<AppName>,
    pub cluster: ClusterName,
    pub verdict: Verdict,
    /// Empty unless the verdict is `Push`.
    pub steps: Vec<Step>,
    /// The new release's id: `Some` when the verdict is `Push`.
    pub release: Option<ReleaseId>,
    /// The release the hosts run now, as last recorded.
    pub before: Option<ReleaseId>,
    /// The hosts the push stages on and switches.
    pub hosts: Vec<Host>,
    /// What happens when hosts fail, and how many releases stay.
    pub policy: HostPolicy,
    pub changelog: Changelog,
    /// Where the candidate came from, when there is one.
    pub via: Option<String>,
    /// The cluster whose release this one ships (`source = "cluster:…"`).
    pub source: Option<ClusterName>,
    /// What this push goes past because a person said so.
    pub ignored: Option<Ignored>,
    /// With nothing new to push: the lock tasks that would hold the next
    /// candidate (so that a lock added now is seen to take effect).
    pub standing_locks: Vec<LockTask>,
}

impl Plan {
    /// `beta`, or `web/beta` when the config has several apps.
    pub fn label(&self) -> String {
        match &self.app {
            Some(a) => format!("{a}/{}", self.cluster),
            None => self.cluster.to_string(),
        }
    }

    /// The verdict's line without the cluster prefix, for `--json`'s `message`.
    pub fn verdict_text(&self) -> String {
        match &self.verdict {
            Verdict::Hold(r) => r.to_string(),
            _ => self.to_string(),
        }
    }
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
        write!(f, " {}", printable(&self.link, 200))?;
        match &self.fix {
            Fix::None => Ok(()),
            Fix::Valid {
                commit,
                shipped: false,
            } => write!(f, " — waiting for fix {}", commit.short()),
            Fix::Valid {
                commit,
                shipped: true,
            } => write!(f, " — fix {} is in the candidate", commit.short()),
            Fix::Invalid { value, why } => write!(
                f,
                " — fix value `{}` is not usable: {}",
                printable(value, 60),
                printable(why, 200)
            ),
            Fix::Unchecked(v) => write!(f, " — fix {} not checked yet", printable(v, 60)),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Record => write!(f, "create the push task"),
            Step::Build { cached: true } => write!(f, "reuse the cached artifact"),
            Step::Build { cached: false } => write!(f, "build"),
            Step::Ship { from } => write!(f, "ship {from}'s artifact"),
            Step::Stage { hosts } => {
                write!(f, "stage on {}", crate::domain::text::count(*hosts, "host"))
            }
            Step::Switch => write!(f, "switch `current` and prune"),
            Step::Close => write!(f, "complete the push task and record the release"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.label();
        let short = |x: &CommitId| x.short().to_owned();
        match &self.verdict {
            Verdict::Push { from, to } => {
                let from = from.as_ref().map_or("nothing deployed".to_owned(), short);
                let via = self.via.as_deref().unwrap_or("candidate");
                write!(
                    f,
                    "{c}: may push {} ({via}) over {from}: {}",
                    short(to),
                    if self.ignored.is_some() {
                        "told to ignore what holds it"
                    } else {
                        "no open lock"
                    }
                )?;
                let n = self.changelog.len();
                write!(f, "\n  {} new {}:", n, plural(n, "commit"))?;
                for e in &self.changelog.entries {
                    write!(
                        f,
                        "\n    {} {} ({})",
                        e.commit.short(),
                        printable(&e.subject, 100),
                        printable(&e.author, 40)
                    )?;
                }
                if self.changelog.more > 0 {
                    write!(f, "\n    and {} more", self.changelog.more)?;
                }
                if let Some(ig) = &self.ignored {
                    write!(f, "\n  {ig}")?;
                }
                let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
                write!(f, "\n  steps: {}", steps.join(", "))?;
                if let Some(r) = &self.release {
                    write!(f, "\n  release: {r}")?;
                }
                let hosts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "\n  {}: {}",
                    crate::domain::text::count(hosts.len(), "host"),
                    printable(&hosts.join(", "), 2000)
                )?;
                write!(f, "\n  {}", self.policy.describe(self.hosts.len()))
            }
            Verdict::NothingNew {
                commit: Some(commit),
            } => {
                write!(f, "{c}: nothing new: {} is already deployed", short(commit))?;
                if !self.standing_locks.is_empty() {
                    write!(
                        f,
                        "; {} would hold a new commit:",
                        count(self.standing_locks.len(), "open lock")
                    )?;
                    for t in &self.standing_locks {
                        write!(f, "\n  - {t}")?;
                    }
                }
                Ok(())
            }
            Verdict::NothingNew { commit: None } => {
                let from = self.source.as_ref().map_or("its source", |s| s.as_str());
                write!(f, "{c}: nothing new: {from} has deployed nothing yet")
            }
            Verdict::Hold(HoldReason::Running { holder }) => {
                write!(f, "{c}: another push of {c} is running ({holder})")
            }
            Verdict::Hold(reason) => write!(f, "{c}: {reason}"),
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
