//! Gather: the only code that reads the world for a decision. It asks Asana
//! (and, as the push grows, git and the state directory) and returns plain
//! `Facts`. It decides nothing; a read that fails becomes a fact too.

use anyhow::Context;

use crate::adapters::asana::{fields, Client, CompletedSince, Task};
use crate::adapters::git::{FetchAuth, GitError, Mirror};
use crate::adapters::state::StateDir;
use crate::config::{ClusterSettings, Config, Source};
use crate::domain::model::{Changelog, ClusterName, CommitId, Fix, LockTask, TaskGid};
use crate::domain::plan::{Candidate, Facts, FreezeFacts, LockFacts, Overrides, SoakFacts};
use crate::run::UsageError;

/// At most this many changelog lines; the rest are counted.
pub const CHANGELOG_LINES: usize = 50;

/// What `decide` needs to know about one push of `cluster`: the candidate
/// after a fetch (or `rev`), what is deployed, and the lock project, read
/// concurrently. A bad `rev` is a usage error; a failed fetch an error.
pub async fn facts(
    config: &Config,
    client: &Client,
    cluster: &ClusterSettings,
    rev: Option<&str>,
    hosts: usize,
    now: chrono::DateTime<chrono::Utc>,
    overrides: Overrides,
) -> anyhow::Result<Facts> {
    let state = StateDir::new(&config.state_dir);
    let deployed = state.deployed(&cluster.name)?.and_then(|d| d.commit_id());
    let fix_field = config.crash.as_ref().map(|c| c.fix_commit_field.as_str());
    let git = candidate(config, &state, cluster, rev, deployed.clone());
    let since = lock_window(&state, cluster)?;
    let (git, locks) = tokio::join!(git, lock_facts(client, cluster, fix_field, since));
    let (candidate, changelog) = git?;
    let locks = match (&candidate, locks) {
        (Some(c), LockFacts::Read(tasks)) => {
            LockFacts::Read(check_fixes(&state, tasks, c.commit.clone()).await?)
        }
        (_, locks) => locks,
    };
    // A commit rolled back here is not a candidate again unless asked for.
    let rolled_back = match (&candidate, rev) {
        (Some(c), None) => state
            .bad_commits(&cluster.name)?
            .remove(c.commit.as_str())
            .map(|m| (m.release, m.at)),
        _ => None,
    };
    let artifact_cached = candidate
        .as_ref()
        .is_some_and(|c| state.artifact(&c.commit).is_dir());
    Ok(Facts {
        cluster: cluster.name.clone(),
        running: None,
        locks,
        candidate,
        deployed,
        changelog,
        artifact_cached,
        hosts,
        source: match &cluster.source {
            Source::Cluster(c) => Some(c.clone()),
            Source::Branch => None,
        },
        now,
        freeze: freeze_facts(config, &state, cluster),
        // Only a scheduled push (no --commit) skips a commit whose build failed.
        failed_build: match rev {
            Some(_) => None,
            None => state.history(&cluster.name)?.pop().and_then(|r| {
                (r.kind == "push"
                    && r.outcome == "failed"
                    && r.failed_step.as_deref() == Some("build"))
                .then(|| CommitId::parse(&r.commit))
                .flatten()
                .map(|c| {
                    (
                        c,
                        format!("{} {}", r.run_id, r.push_task_link.unwrap_or_default())
                            .trim()
                            .to_owned(),
                    )
                })
            }),
        },
        downstream_running: config
            .clusters
            .values()
            .filter(|c| c.source == Source::Cluster(cluster.name.clone()))
            .find(|c| state.running(&c.name).is_some())
            .map(|c| c.name.clone()),
        rolled_back,
        overrides,
        soak: match (&cluster.source, rev) {
            (Source::Cluster(from), None) => soak_facts(config, &state, cluster, from)?,
            _ => None,
        },
    })
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
        other_running: state.running(&other.name).is_some(),
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
    let Some(min) = cluster.min_soak.or(default) else {
        return Ok(None);
    };
    Ok(state.deployed(from)?.map(|d| SoakFacts {
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
) -> anyhow::Result<(Option<Candidate>, Changelog)> {
    // `source = "cluster:beta"`: the commit beta runs, and (in execute)
    // beta's artifact, never a rebuild.
    let shipped = match (&cluster.source, rev) {
        (Source::Cluster(from), None) => match state.deployed(from)?.and_then(|d| d.commit_id()) {
            Some(c) => Some((from.clone(), c)),
            None => return Ok((None, Changelog::default())),
        },
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
        mirror.fetch(&url, &auth)?;
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
pub fn lock_window(state: &StateDir, cluster: &ClusterSettings) -> anyhow::Result<CompletedSince> {
    let last = state
        .history(&cluster.name)?
        .into_iter()
        .rev()
        .find(|r| r.kind == "push" && r.outcome == "success")
        .map(|r| r.started);
    Ok(match last {
        Some(t) => CompletedSince::Since(t),
        None => CompletedSince::All,
    })
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
