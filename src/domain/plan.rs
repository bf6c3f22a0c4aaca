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

/// How many hosts run the new release once a wave is done, as `waves`
/// writes it: cumulative (`["1", "10%", "100%"]`: one host, then a tenth
/// of them, then all), never the size of one wave alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaveSize {
    /// `"5"`: five hosts in all.
    Hosts(usize),
    /// `"10%"`, `"2.5%"`: this share of the hosts, in hundredths of a
    /// percent (1 to 10 000), rounded up to whole hosts.
    Share(u32),
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Hosts(n) => write!(f, "{n}"),
            WaveSize::Share(bp) if bp % 100 == 0 => write!(f, "{}%", bp / 100),
            WaveSize::Share(bp) if bp % 10 == 0 => write!(f, "{}.{}%", bp / 100, bp % 100 / 10),
            WaveSize::Share(bp) => write!(f, "{}.{:02}%", bp / 100, bp % 100),
        }
    }
}

/// A cluster's waves and checks (`[clusters.NAME]`'s `waves`,
/// `health_check`, `wave_check`, … keys): how a push switches its hosts
/// once they all staged, and what makes a wave fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// `waves`; empty: one wave of every host.
    pub waves: Vec<WaveSize>,
    /// `health_check`: argv run on each host after its switch and
    /// `after_switch`; the host is healthy when it exits 0.
    pub health_check: Option<Vec<String>>,
    /// `health_timeout`: the most one try of a check may take.
    pub health_timeout: std::time::Duration,
    /// `health_retries`: further tries of a failing health check.
    pub health_retries: usize,
    /// `wave_check`: argv run on the bastion after each wave (and its
    /// soak); the wave passes when it exits 0.
    pub wave_check: Option<Vec<String>>,
    /// `wave_soak`: how long a wave runs before its wave check.
    pub wave_soak: std::time::Duration,
    /// `max_unhealthy_hosts`: how many hosts may fail their health check
    /// while the push goes on (never all the hosts checked).
    pub max_unhealthy: usize,
    /// `auto_rollback`: a failed check sends every switched host back.
    pub auto_rollback: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            waves: Vec::new(),
            health_check: None,
            health_timeout: std::time::Duration::from_secs(30),
            health_retries: 2,
            wave_check: None,
            wave_soak: std::time::Duration::ZERO,
            max_unhealthy: 0,
            auto_rollback: true,
        }
    }
}

impl Rollout {
    /// A health check or a wave check is configured.
    pub fn checks(&self) -> bool {
        self.health_check.is_some() || self.wave_check.is_some()
    }
}

/// One wave of a push: the hosts that switch in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// The size in `waves` it was made for; `None`: the wave of the hosts
    /// the list did not reach (or the one wave of a cluster without `waves`).
    pub size: Option<WaveSize>,
    /// Indices into the plan's hosts, in order.
    pub hosts: Vec<usize>,
}

/// A push's waves while it runs, from its journal: what `status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveProgress {
    pub run_id: String,
    pub release: Option<ReleaseId>,
    /// The wave under way (1-based) and how many there are.
    pub wave: usize,
    pub of: usize,
    /// What it does now: `switch`, `health check`, `wave check`,
    /// `rollback`, `revert`.
    pub doing: String,
    /// Hosts asked to switch so far in this push, of how many.
    pub switched: usize,
    pub hosts: usize,
}

impl fmt::Display for WaveProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} is at wave {}/{} ({}) of release {}: {} of {} switched",
            printable(&self.run_id, 80),
            self.wave,
            self.of,
            printable(&self.doing, 40),
            self.release
                .as_ref()
                .map_or("?".to_owned(), ToString::to_string),
            self.switched,
            count(self.hosts, "host")
        )
    }
}

/// A duration as config writes it: `30s`, `5m`, `1h 30m`.
pub fn humantime_ish(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

/// An argv for the plan's text: words joined, a word with a space quoted.
fn shown_argv(argv: &[String]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(char::is_whitespace) {
                format!("{w:?}")
            } else {
                w.clone()
            }
        })
        .collect();
    printable(&words.join(" "), 200)
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
    /// The cluster's waves and checks.
    pub rollout: Rollout,
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
            rollout: Rollout::default(),
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
    /// Switch in waves (the plan's `waves`), health-checking each host
    /// and running the wave check as the rollout says; prune old ones.
    Waves {
        waves: usize,
        health: bool,
        wave_check: bool,
    },
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
    /// The cluster's waves and checks.
    pub rollout: Rollout,
    /// Which hosts switch in which wave, when every host stages (empty
    /// unless the verdict is `Push`).
    pub waves: Vec<Wave>,
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

    /// The waves and checks of a push, when there is more than one wave
    /// or a check (a plain push says nothing more).
    fn fmt_rollout(&self, f: &mut fmt::Formatter<'_>, to: &CommitId) -> fmt::Result {
        let r = &self.rollout;
        if self.waves.len() <= 1 && !r.checks() {
            return Ok(());
        }
        let of = self.waves.len();
        for (i, w) in self.waves.iter().enumerate() {
            let hosts: Vec<String> = w
                .hosts
                .iter()
                .filter_map(|h| self.hosts.get(*h).map(ToString::to_string))
                .collect();
            let size = match (w.size, of) {
                (Some(s), _) => format!("\"{s}\""),
                (None, 1) => "every host".to_owned(),
                (None, _) => "the rest".to_owned(),
            };
            write!(
                f,
                "\n  wave {}/{of} ({size}, {}): {}",
                i + 1,
                count(hosts.len(), "host"),
                printable(&hosts.join(", "), 300)
            )?;
        }
        if let Some(h) = &r.health_check {
            write!(
                f,
                "\n  health check on each host after its switch: `{}` ({} a try, {}); up to {} may fail",
                shown_argv(h),
                humantime_ish(r.health_timeout),
                match 1 + r.health_retries {
                    1 => "1 try".to_owned(),
                    n => format!("{n} tries"),
                },
                count(r.max_unhealthy, "host")
            )?;
        }
        if let Some(w) = &r.wave_check {
            write!(
                f,
                "\n  wave check on the bastion after each wave{}: `{}` ({} at most)",
                if r.wave_soak.is_zero() {
                    String::new()
                } else {
                    format!(" and a soak of {}", humantime_ish(r.wave_soak))
                },
                shown_argv(w),
                humantime_ish(r.health_timeout),
            )?;
        }
        if r.checks() {
            let c = &self.cluster;
            if r.auto_rollback {
                write!(
                    f,
                    "\n  if a check fails: every host switched in this push goes back, a lock task holds {c} and {} is marked bad",
                    to.short()
                )?;
            } else {
                write!(
                    f,
                    "\n  if a check fails (auto_rollback = false): no further wave, switched hosts keep the release, a lock task holds {c} and {} is marked bad",
                    to.short()
                )?;
            }
        }
        Ok(())
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
            Step::Waves {
                waves,
                health,
                wave_check,
            } => {
                if *waves == 1 {
                    write!(f, "switch `current`")?;
                } else {
                    write!(f, "switch `current` in {waves} waves")?;
                }
                if *health {
                    write!(f, ", health-check each host")?;
                }
                match (*wave_check, *waves == 1) {
                    (true, true) => write!(f, ", run the wave check")?,
                    (true, false) => write!(f, ", run the wave check after each")?,
                    (false, _) => {}
                }
                write!(f, " and prune")
            }
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
                write!(f, "\n  {}", self.policy.describe(self.hosts.len()))?;
                self.fmt_rollout(f, to)
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
