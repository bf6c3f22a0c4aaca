//! Crash tasks after a run (SPEC §2 step 9): complete the crash tasks whose
//! fix the `crash.close_on` cluster (beta) now runs; after a push of any
//! other cluster, take the tasks whose fix it shipped out of its lock
//! project; tell tasks, once, that their fix value is unusable.
//!
//! The decisions are `decide::crash`; this module reads the crash project,
//! checks fixes in one walk of the deployed commit's history, and makes the
//! Asana writes. A failed write is logged and counted, never fatal.

use std::collections::HashSet;

use anyhow::Context;

use crate::asana::{fields, Client, Comment, CompletedSince, TaskUpdate};
use crate::config::{ClusterSettings, Config, CrashSettings};
use crate::decide::crash::{bad_fixes, closures, releases, CrashAction};
use crate::git::Mirror;
use crate::model::{CommitId, Fix, LockTask};
use crate::state::StateDir;

/// What one aftercare pass did.
#[derive(Debug, Default)]
pub struct Aftercare {
    pub closed: usize,
    pub released: usize,
    pub reported: usize,
    pub asana_failures: usize,
}

/// Checks many fix values against `tip` with one history walk.
pub fn check_many(mirror: &Mirror, tasks: &mut [LockTask], tip: &CommitId) -> anyhow::Result<()> {
    let mut wanted = HashSet::new();
    for t in tasks.iter_mut() {
        if let Fix::Unchecked(v) = &t.fix {
            t.fix = match mirror.resolve_fix(v) {
                Ok(commit) => {
                    wanted.insert(commit.clone());
                    Fix::Valid {
                        commit,
                        shipped: false,
                    }
                }
                Err(why) => Fix::Invalid {
                    value: v.clone(),
                    why,
                },
            };
        }
    }
    let shipped = mirror.contained(tip, &wanted)?;
    for t in tasks.iter_mut() {
        if let Fix::Valid { commit, shipped: s } = &mut t.fix {
            *s = shipped.contains(commit);
        }
    }
    Ok(())
}

/// Reads the crash project's incomplete tasks and checks their fixes
/// against `deployed`.
pub async fn crash_tasks(
    client: &Client,
    state: &StateDir,
    crash: &CrashSettings,
    deployed: &CommitId,
) -> anyhow::Result<Vec<LockTask>> {
    let raw = client
        .project_tasks(&crash.project, CompletedSince::Now, fields::LOCK_TASK)
        .await?;
    let mut tasks: Vec<LockTask> = raw
        .into_iter()
        .filter_map(|t| crate::gather::lock_task(t, Some(&crash.fix_commit_field)))
        .filter(|t| !matches!(t.fix, Fix::None))
        .collect();
    let repo = state.repo();
    let tip = deployed.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<LockTask>> {
        check_many(&Mirror::open(&repo)?, &mut tasks, &tip)?;
        Ok(tasks)
    })
    .await
    .context("the git task stopped")?
}

/// Tells lock-project tasks, once per value, that their fix value is
/// unusable. Runs on every run that read the lock project, held or not.
pub async fn report_bad_fixes(
    config: &Config,
    client: &Client,
    state: &StateDir,
    tasks: &[LockTask],
) -> Aftercare {
    let mut done = Aftercare::default();
    let Some(crash) = &config.crash else {
        return done;
    };
    let mut told = state.reported_fixes().unwrap_or_default();
    for a in bad_fixes(tasks, &told) {
        if let CrashAction::BadFix { task, value, why } = &a {
            match tell_bad_fix(client, crash, task, value, why).await {
                Ok(()) => {
                    told.insert(task.to_string(), value.clone());
                    done.reported += 1;
                }
                Err(e) => {
                    tracing::warn!(task = %task, error = %e, "cannot comment on a bad fix value");
                    done.asana_failures += 1;
                }
            }
        }
    }
    if done.reported > 0 {
        if let Err(e) = state.set_reported_fixes(&told) {
            tracing::warn!(error = %e, "cannot record which fix values were reported");
        }
    }
    done
}

async fn tell_bad_fix(
    client: &Client,
    crash: &CrashSettings,
    task: &crate::model::TaskGid,
    value: &str,
    why: &str,
) -> Result<(), crate::asana::AsanaError> {
    let text = format!(
        "pushgate cannot use the fix commit value `{}`: {why}. It unlocks nothing and closes nothing. Set the \"{}\" field, or a last notes line `Fixed-in: <sha>`, to a commit of the repository (7 to 40 hex digits). pushgate says this once per value.",
        crate::plan::printable(value, 80),
        crash.fix_commit_field
    );
    client
        .add_comment(task, &Comment::Text(text))
        .await
        .map(drop)
}

/// What a run left for the crash tasks.
pub struct RunEnd<'a> {
    /// The commit the cluster runs now.
    pub deployed: &'a CommitId,
    /// The push task of the push that deployed it.
    pub push_link: Option<&'a str>,
    /// The lock project's tasks, fixes checked against `deployed`.
    pub lock_tasks: &'a [LockTask],
    /// Whether this run pushed (else it found nothing new).
    pub pushed: bool,
}

/// After a run of `cluster` that pushed (or found nothing new).
pub async fn after_run(
    config: &Config,
    client: &Client,
    state: &StateDir,
    cluster: &ClusterSettings,
    end: RunEnd<'_>,
) -> Aftercare {
    let RunEnd {
        deployed,
        push_link,
        lock_tasks,
        pushed,
    } = end;
    let mut done = Aftercare::default();
    let Some(crash) = &config.crash else {
        return done;
    };
    let link = push_link.unwrap_or("(no push task)");
    let mut actions = Vec::new();
    let mut told = state.reported_fixes().unwrap_or_default();
    if cluster.name == crash.close_on {
        match crash_tasks(client, state, crash, deployed).await {
            Ok(tasks) => {
                actions.extend(closures(&tasks));
                actions.extend(bad_fixes(&tasks, &told));
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the crash project; crash tasks close on a later run");
                done.asana_failures += 1;
            }
        }
    } else if pushed {
        actions.extend(releases(lock_tasks));
    }
    let mut seen = HashSet::new();
    for a in actions {
        let result = match &a {
            CrashAction::Close { task, fix } => {
                let text = format!(
                    "Fixed: {fix} is in the commit {} runs ({}), pushed in {link}. Completed by pushgate.",
                    cluster.name,
                    deployed.short()
                );
                let r = client.add_comment(task, &Comment::Text(text)).await;
                match r {
                    Ok(_) => client
                        .update_task(
                            task,
                            &TaskUpdate {
                                completed: Some(true),
                                ..TaskUpdate::default()
                            },
                        )
                        .await
                        .map(|_| done.closed += 1),
                    Err(e) => Err(e),
                }
            }
            CrashAction::Release { task, fix } => {
                let r = client.remove_project(task, &cluster.lock_project).await;
                match r {
                    Ok(_) => {
                        done.released += 1;
                        let text = format!(
                            "{} now runs fix {} (pushed in {link}); pushgate took this task out of {}'s lock project.",
                            cluster.name,
                            fix.short(),
                            cluster.name
                        );
                        client
                            .add_comment(task, &Comment::Text(text))
                            .await
                            .map(drop)
                    }
                    Err(e) => Err(e),
                }
            }
            CrashAction::BadFix { task, value, why } => {
                if !seen.insert(task.clone()) {
                    continue;
                }
                let r = tell_bad_fix(client, crash, task, value, why).await;
                if r.is_ok() {
                    told.insert(task.to_string(), value.clone());
                    done.reported += 1;
                }
                r
            }
        };
        if let Err(e) = result {
            tracing::warn!(action = ?a, error = %e, "a crash-task write failed");
            done.asana_failures += 1;
        }
    }
    if done.reported > 0 {
        if let Err(e) = state.set_reported_fixes(&told) {
            tracing::warn!(error = %e, "cannot record which fix values were reported");
        }
    }
    if done.closed + done.released > 0 {
        tracing::info!(cluster = %cluster.name, closed = done.closed, released = done.released, "crash tasks");
    }
    done
}
