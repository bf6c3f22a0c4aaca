//! Gather: the only code that reads the world for a decision. It asks Asana
//! (and, as the push grows, git and the state directory) and returns plain
//! `Facts`. It decides nothing; a read that fails becomes a fact too.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;

use crate::adapters::asana::{fields, Client, CompletedSince, Task};
use crate::adapters::git::{FetchAuth, GitError, Mirror};
use crate::adapters::hosts::Fleet;
use crate::adapters::state::{HistoryRecord, StateDir};
use crate::config::{ClusterSettings, Config, Source};
use crate::domain::decide::rollback::RollbackFacts;
use crate::domain::decide::FixPlace;
use crate::domain::model::{
    Changelog, ClusterName, CommitId, Fix, Host, LockTask, ReleaseId, RunKind, RunOutcome, TaskGid,
};
use crate::domain::plan::{
    Candidate, Facts, FreezeFacts, LastRun, LockFacts, Overrides, RolledBack, SoakFacts,
};
use crate::run::Ctx;
use crate::run::UsageError;

/// At most this many changelog lines; the rest are counted.
pub const CHANGELOG_LINES: usize = 50;

/// What `decide` needs to know about one push of `cluster` on `hosts`
/// (read once by the caller): the candidate after a fetch of the mirror
/// (unless `fetch` is false: `status` fetches once for all clusters), or
/// `rev`; what is deployed; the lock project, read concurrently; the
/// history, the rollback marks and the artifact cache. Raw facts: every
/// rule, the exemptions of a manual push included, is decide's. A bad
/// `rev` is a usage error; a failed fetch an error.
#[allow(clippy::too_many_arguments)]
pub async fn facts(
    cx: &Ctx<'_>,
    cluster: &ClusterSettings,
    rev: Option<&str>,
    hosts: Vec<Host>,
    now: chrono::DateTime<chrono::Utc>,
    overrides: Overrides,
    fetch: bool,
) -> anyhow::Result<Facts> {
    let (config, state) = (cx.config, cx.state);
    let mine = state.cluster(&cluster.name);
    let deployed = mine.deployed()?;
    let deployed_commit = deployed.as_ref().and_then(|d| d.commit_id());
    let fix_field = config.crash.as_ref().map(|c| c.fix_commit_field.as_str());
    let git = candidate(config, state, cluster, rev, deployed_commit.clone(), fetch);
    let history = mine.history()?;
    let since = lock_window(&history);
    let (git, locks) = tokio::join!(git, lock_facts(cx.client, cluster, fix_field, since));
    let (candidate, changelog) = git?;
    let locks = match (&candidate, locks) {
        (Some(c), LockFacts::Read(tasks)) => {
            LockFacts::Read(check_fixes(state, tasks, c.commit.clone()).await?)
        }
        (_, locks) => locks,
    };
    let rolled_back = mine
        .bad_commits()?
        .into_iter()
        .filter_map(|(c, m)| {
            Some(RolledBack {
                commit: CommitId::parse(&c)?,
                release: m.release,
                at: m.at,
            })
        })
        .collect();
    let artifact_cached = candidate
        .as_ref()
        .is_some_and(|c| state.artifact(&c.commit).is_dir());
    let latest_release = history
        .iter()
        .filter_map(|r| r.release.as_deref().and_then(ReleaseId::parse))
        .max();
    let approval = match (&cluster.approval, &candidate) {
        (Some(a), Some(c)) if deployed_commit.as_ref() != Some(&c.commit) => {
            let outbox = crate::run::outbox::Outbox::open(
                &mine,
                cx.client,
                crate::run::clock::RunClock::starting_at(now),
            )
            .ok();
            Some(
                crate::run::approval::facts(
                    cx,
                    cluster,
                    a,
                    &c.commit,
                    deployed_commit.as_ref(),
                    outbox.as_ref(),
                )
                .await,
            )
        }
        _ => None,
    };
    let last_run = history.last().map(|r| LastRun {
        kind: r.kind,
        outcome: r.outcome,
        failed_step: r.failed_step.clone(),
        commit: CommitId::parse(&r.commit),
        run_id: r.run_id.clone(),
        link: r.push_task_link.clone(),
    });
    Ok(Facts {
        app: config.named_app(),
        cluster: cluster.name.clone(),
        now,
        manual: rev.is_some(),
        overrides,
        running: None,
        downstream_running: config
            .clusters
            .values()
            .filter(|c| c.source == Source::Cluster(cluster.name.clone()))
            .find(|c| state.cluster(&c.name).running().is_some())
            .map(|c| c.name.clone()),
        locks,
        candidate,
        deployed: deployed_commit,
        deployed_release: deployed.as_ref().and_then(|d| ReleaseId::parse(&d.release)),
        changelog,
        artifact_cached,
        hosts,
        source: match &cluster.source {
            Source::Cluster(c) => Some(c.clone()),
            Source::Branch => None,
        },
        freeze: freeze_facts(config, state, cluster),
        soak: match &cluster.source {
            Source::Cluster(from) => soak_facts(config, state, cluster, from)?,
            Source::Branch => None,
        },
        last_run,
        rolled_back,
        latest_release,
        policy: config.sync.policy(),
        approval,
        rollout: cluster.rollout.clone(),
    })
}

/// What a rollback of `cluster` decides on: every host's releases (read
/// now, over ssh for remote hosts), the deployed record, the releases that
/// successful runs deployed, and the commit of every release named —
/// from the history, else from the 12-hex prefix in its name, resolved in
/// the mirror (no fetch: a rollback must not wait on the remote).
pub async fn rollback_facts(
    cx: &Ctx<'_>,
    cluster: &ClusterSettings,
    hosts: &[Host],
    to: Option<ReleaseId>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<RollbackFacts> {
    let mine = cx.state.cluster(&cluster.name);
    let fleet = Fleet::new(hosts, cluster, &cx.config.sync, cx.child_env);
    let probes = fleet.releases().await;
    let deployed = mine.deployed()?;
    let history = mine.history()?;
    let good: BTreeSet<ReleaseId> = history
        .iter()
        .filter(|r| r.outcome == RunOutcome::Success)
        .filter_map(|r| r.release.as_deref().and_then(ReleaseId::parse))
        .collect();
    let mut commits: BTreeMap<ReleaseId, CommitId> = BTreeMap::new();
    for r in &history {
        if let (Some(rel), Some(c)) = (
            r.release.as_deref().and_then(ReleaseId::parse),
            CommitId::parse(&r.commit),
        ) {
            commits.insert(rel, c);
        }
    }
    let named: BTreeSet<ReleaseId> = probes
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok())
        .flat_map(|h| h.releases.iter().chain(&h.current).cloned())
        .chain(deployed.as_ref().and_then(|d| ReleaseId::parse(&d.release)))
        .chain(to.clone())
        .filter(|r| !commits.contains_key(r))
        .collect();
    if !named.is_empty() {
        let repo = cx.state.repo();
        let found = tokio::task::spawn_blocking(move || {
            let Ok(mirror) = Mirror::open(&repo) else {
                return Vec::new();
            };
            named
                .into_iter()
                .filter_map(|r| {
                    let c = mirror.resolve(r.commit_prefix()).ok()?;
                    Some((r, c))
                })
                .collect::<Vec<_>>()
        })
        .await
        .context("the git task stopped")?;
        commits.extend(found);
    }
    Ok(RollbackFacts {
        cluster: cluster.name.clone(),
        now,
        to,
        hosts: probes
            .into_iter()
            .map(|p| (p.host, p.outcome.map_err(|e| e.to_string())))
            .collect(),
        deployed: deployed
            .as_ref()
            .and_then(|d| Some((ReleaseId::parse(&d.release)?, d.commit_id()))),
        good,
        commits,
    })
}

/// Where each valid fix of `tasks` already runs: in what `cluster` runs,
/// and in what its source runs (for `status`'s "waiting for fix … on beta
/// since …"). One mirror, off the async runtime.
pub async fn fix_places(
    cx: &Ctx<'_>,
    cluster: &ClusterSettings,
    tasks: &[LockTask],
) -> BTreeMap<TaskGid, FixPlace> {
    let fixes: Vec<(TaskGid, CommitId)> = tasks
        .iter()
        .filter_map(|t| match &t.fix {
            Fix::Valid { commit, .. } => Some((t.gid.clone(), commit.clone())),
            _ => None,
        })
        .collect();
    if fixes.is_empty() {
        return BTreeMap::new();
    }
    let state = cx.state;
    let deployed = state
        .cluster(&cluster.name)
        .deployed()
        .ok()
        .flatten()
        .and_then(|d| d.commit_id());
    let source = match &cluster.source {
        Source::Cluster(from) => state
            .cluster(from)
            .deployed()
            .ok()
            .flatten()
            .and_then(|d| Some((from.clone(), d.commit_id()?, d.since))),
        Source::Branch => None,
    };
    let repo = state.repo();
    tokio::task::spawn_blocking(move || {
        let Ok(mirror) = Mirror::open(&repo) else {
            return BTreeMap::new();
        };
        let runs = |tip: &CommitId, fix: &CommitId| mirror.contains(tip, fix).unwrap_or(false);
        fixes
            .into_iter()
            .map(|(gid, fix)| {
                let place = FixPlace {
                    deployed: deployed.as_ref().is_some_and(|d| runs(d, &fix)),
                    on_source: source
                        .as_ref()
                        .filter(|(_, tip, _)| runs(tip, &fix))
                        .map(|(from, _, since)| (from.clone(), *since)),
                };
                (gid, place)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// `freeze_before`: the other cluster's schedule and whether it pushes now.
pub fn freeze_facts(
    config: &Config,
    state: &StateDir,
    cluster: &ClusterSettings,
) -> Option<FreezeFacts> {
    let fb = cluster.freeze_before.as_ref()?;
    let other = config.clusters.get(&fb.cluster)?;
    Some(FreezeFacts {
        other: other.name.clone(),
        other_schedule: other.schedule.cron.clone(),
        other_tz: other.timezone,
        duration: long_duration(fb.duration),
        other_running: state.cluster(&other.name).running().is_some(),
    })
}

/// A configured duration for the clock's arithmetic: at most 100 years,
/// so that adding it to a time can never overflow.
fn long_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d)
        .unwrap_or(chrono::Duration::MAX)
        .min(chrono::Duration::days(36_525))
}

/// `min_soak` (default: the source's `freeze_before` duration towards this
/// cluster) and since when the source runs its release.
fn soak_facts(
    config: &Config,
    state: &StateDir,
    cluster: &ClusterSettings,
    from: &ClusterName,
) -> anyhow::Result<Option<SoakFacts>> {
    let default = config
        .clusters
        .get(from)
        .and_then(|f| f.freeze_before.as_ref())
        .filter(|fb| fb.cluster == cluster.name)
        .map(|fb| fb.duration);
    // `min_soak = "0s"`: no soak, whatever the source's freeze says.
    let Some(min) = cluster.min_soak.or(default).filter(|m| !m.is_zero()) else {
        return Ok(None);
    };
    Ok(state.cluster(from).deployed()?.map(|d| SoakFacts {
        from: from.clone(),
        since: d.since,
        min: long_duration(min),
    }))
}

/// Fetches the mirror and resolves the candidate and its changelog, off
/// the async runtime. No candidate: the source cluster has deployed nothing.
async fn candidate(
    config: &Config,
    state: &StateDir,
    cluster: &ClusterSettings,
    rev: Option<&str>,
    deployed: Option<CommitId>,
    fetch: bool,
) -> anyhow::Result<(Option<Candidate>, Changelog)> {
    // `source = "cluster:beta"`: the commit beta runs, and (in execute)
    // beta's artifact, never a rebuild.
    let shipped = match (&cluster.source, rev) {
        (Source::Cluster(from), None) => {
            match state.cluster(from).deployed()?.and_then(|d| d.commit_id()) {
                Some(c) => Some((from.clone(), c)),
                None => return Ok((None, Changelog::default())),
            }
        }
        _ => None,
    };
    let repo_path = state.repo();
    std::fs::create_dir_all(&repo_path)
        .with_context(|| format!("cannot create {}", repo_path.display()))?;
    let url = config.repo.url.clone();
    let branch = config.repo.branch.clone();
    let auth = FetchAuth {
        ssh_key: config.repo.ssh_key.clone(),
    };
    let rev = rev.map(str::to_owned);
    tokio::task::spawn_blocking(move || -> anyhow::Result<(Option<Candidate>, Changelog)> {
        let mirror = Mirror::open(&repo_path)?;
        if fetch {
            mirror.fetch(&url, &auth)?;
        }
        let candidate = match (&rev, shipped) {
            (_, Some((from, commit))) => Candidate {
                commit,
                via: format!("what {from} runs"),
                from_cluster: Some(from),
            },
            (Some(r), None) => Candidate {
                commit: mirror.resolve(r).map_err(|e| match e {
                    GitError::BadRevision { .. } => {
                        anyhow::Error::new(UsageError(format!("--commit: {e}")))
                    }
                    e => e.into(),
                })?,
                via: format!("--commit {}", crate::domain::text::printable(r, 60)),
                from_cluster: None,
            },
            (None, None) => Candidate {
                commit: mirror.branch_tip(&branch)?,
                via: format!("branch {branch}"),
                from_cluster: None,
            },
        };
        let changelog = mirror.changelog(deployed.as_ref(), &candidate.commit, CHANGELOG_LINES)?;
        Ok((Some(candidate), changelog))
    })
    .await
    .context("the git task stopped")?
}

/// Which tasks of the lock project count (SPEC §2 step 4): the incomplete
/// ones and those completed since the cluster's last successful push (a
/// crash task beta completed still holds prod until prod ships its fix);
/// every task before the first push.
pub fn lock_window(history: &[HistoryRecord]) -> CompletedSince {
    let last = history
        .iter()
        .rev()
        .find(|r| r.kind == RunKind::Push && r.outcome == RunOutcome::Success)
        .map(|r| r.started);
    match last {
        Some(t) => CompletedSince::Since(t),
        None => CompletedSince::All,
    }
}

/// Fetches the repository mirror once (for a view of many clusters).
pub async fn fetch(config: &Config, state: &StateDir) -> anyhow::Result<()> {
    let repo_path = state.repo();
    std::fs::create_dir_all(&repo_path)
        .with_context(|| format!("cannot create {}", repo_path.display()))?;
    let url = config.repo.url.clone();
    let auth = FetchAuth {
        ssh_key: config.repo.ssh_key.clone(),
    };
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        Mirror::open(&repo_path)?.fetch(&url, &auth)?;
        Ok(())
    })
    .await
    .context("the git task stopped")?
}

/// Checks the tasks' fix values against the repository and `tip` (off the
/// async runtime). Ancestry is asked per task: lock projects are small.
pub async fn check_fixes(
    state: &StateDir,
    mut tasks: Vec<LockTask>,
    tip: CommitId,
) -> anyhow::Result<Vec<LockTask>> {
    if !tasks.iter().any(|t| matches!(t.fix, Fix::Unchecked(_))) {
        return Ok(tasks);
    }
    let repo = state.repo();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<LockTask>> {
        let mirror = Mirror::open(&repo)?;
        for t in &mut tasks {
            if let Fix::Unchecked(v) = &t.fix {
                t.fix = mirror.check_fix(v, &tip);
            }
        }
        Ok(tasks)
    })
    .await
    .context("the git task stopped")?
}

/// The cluster's lock project: the tasks in `since`'s window. An error
/// after the client's retries is recorded as unreadable (the gate fails
/// closed).
pub async fn lock_facts(
    client: &Client,
    cluster: &ClusterSettings,
    fix_field: Option<&str>,
    since: CompletedSince,
) -> LockFacts {
    match client
        .project_tasks(&cluster.lock_project, since, fields::LOCK_TASK)
        .await
    {
        Ok(tasks) => LockFacts::Read(
            tasks
                .into_iter()
                .filter_map(|t| lock_task(t, fix_field))
                .collect(),
        ),
        Err(e) => LockFacts::Unreadable(crate::domain::text::describe(&e)),
    }
}

/// A lock task as the gate sees it. Tasks with an id Asana would never send
/// are dropped (and logged) rather than trusted.
pub fn lock_task(t: Task, fix_field: Option<&str>) -> Option<LockTask> {
    let Some(gid) = TaskGid::parse(&t.gid) else {
        tracing::warn!(gid = %t.gid.escape_debug(), "ignoring a task with a malformed gid");
        return None;
    };
    let fix = match fix_commit(&t, fix_field) {
        Some(v) => Fix::Unchecked(v),
        None => Fix::None,
    };
    Some(LockTask {
        link: t
            .permalink_url
            .clone()
            .unwrap_or_else(|| format!("https://app.asana.com/0/0/{gid}")),
        gid,
        name: t.name,
        assignee: t.assignee.and_then(|a| a.name),
        completed: t.completed.unwrap_or(false),
        fix,
    })
}

/// The raw fix-commit value (SPEC §5): the text custom field named
/// `fix_field`, else the last notes line starting with `Fixed-in:`.
/// Not validated here: that is decided against the repository.
fn fix_commit(t: &Task, fix_field: Option<&str>) -> Option<String> {
    let from_field = fix_field.and_then(|name| {
        t.custom_fields
            .iter()
            .flatten()
            .find(|f| f.name.as_deref() == Some(name))
            .and_then(|f| f.text_value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    });
    from_field.or_else(|| {
        // SPEC §5: the last line matching `Fixed-in: <7-40 hex>`; failing
        // that, the last `Fixed-in:` line, which is then reported invalid.
        let lines: Vec<&str> = t
            .notes
            .as_deref()?
            .lines()
            .rev()
            .filter_map(|l| l.trim().strip_prefix("Fixed-in:"))
            .map(str::trim)
            .collect();
        lines
            .iter()
            .find(|v| crate::domain::model::is_fix_shaped(v))
            .or(lines.first())
            .map(|v| (*v).to_owned())
    })
}

/// Who is running pushgate, for notes and comments: `user@host`.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::asana::CustomFieldValue;

    #[test]
    fn fix_commit_prefers_the_field_then_the_last_notes_line() {
        let mut t = Task {
            gid: "1".into(),
            notes: Some("Fixed-in: aaaaaaa\ntext\nFixed-in: bbbbbbb\nmore".into()),
            ..Task::default()
        };
        assert_eq!(
            fix_commit(&t, Some("Fix commit")).as_deref(),
            Some("bbbbbbb")
        );
        t.custom_fields = Some(vec![CustomFieldValue {
            gid: "9".into(),
            name: Some("Fix commit".into()),
            text_value: Some(" ccccccc ".into()),
        }]);
        assert_eq!(
            fix_commit(&t, Some("Fix commit")).as_deref(),
            Some("ccccccc")
        );
        assert_eq!(fix_commit(&t, Some("Other")).as_deref(), Some("bbbbbbb"));
    }
}
