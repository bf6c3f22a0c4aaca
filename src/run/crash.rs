//! Crash tasks after a run (SPEC §2 step 9): complete the crash tasks whose
//! fix the `crash.close_on` cluster (beta) now runs; after a push of any
//! other cluster, take the tasks whose fix it shipped out of its lock
//! project; tell tasks, once, that their fix value is unusable.
//!
//! The decisions are `decide::crash`; this module reads the crash project,
//! checks fixes in one walk of the deployed commit's history, and makes the
//! Asana writes through the cluster's outbox: what Asana does not take now
//! is replayed by the next run. Nothing here is fatal to a push.

use std::collections::HashSet;

use anyhow::Context;

use crate::adapters::asana::{fields, Client, CompletedSince};
use crate::adapters::git::Mirror;
use crate::adapters::state::StateDir;
use crate::config::{ClusterSettings, Config, CrashSettings};
use crate::domain::decide::crash::{bad_fixes, closures, releases, reported_key, CrashAction};
use crate::domain::model::{CommitId, Fix, LockTask, TaskGid};
use crate::run::outbox::{Delivery, Op, Outbox, TaskRef};

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
/// against `deployed`. Approval tasks there are left alone: pushgate
/// never completes one (that would approve it).
pub async fn crash_tasks(
    client: &Client,
    state: &StateDir,
    crash: &CrashSettings,
    deployed: &CommitId,
) -> anyhow::Result<Vec<LockTask>> {
    let raw = client
        .project_tasks(&crash.project, CompletedSince::Now, fields::CRASH_TASK)
        .await?;
    let mut tasks: Vec<LockTask> = raw
        .into_iter()
        .filter(|t| t.resource_subtype.as_deref() != Some("approval"))
        .filter_map(|t| crate::run::gather::lock_task(t, Some(&crash.fix_commit_field)))
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
    outbox: &mut Outbox,
    state: &StateDir,
    run: &str,
    tasks: &[LockTask],
) -> Aftercare {
    let mut done = Aftercare::default();
    let Some(crash) = &config.crash else {
        return done;
    };
    let mut told = state.reported_fixes().unwrap_or_default();
    for a in bad_fixes(tasks, &told) {
        if let CrashAction::BadFix { task, value, why } = &a {
            if tell_bad_fix(outbox, run, crash, task, value, why).await {
                told.insert(task.to_string(), reported_key(value));
                done.reported += 1;
            } else {
                done.asana_failures += 1;
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

/// Comments on a task that its fix value is unusable; whether the comment
/// was made or queued (it will be made).
async fn tell_bad_fix(
    outbox: &Outbox,
    run: &str,
    crash: &CrashSettings,
    task: &TaskGid,
    value: &str,
    why: &str,
) -> bool {
    let text = format!(
        "pushgate cannot use the fix commit value `{}`: {why}. It unlocks nothing and closes nothing. Set the \"{}\" field, or a last notes line `Fixed-in: <sha>`, to a commit of the repository (7 to 40 hex digits). pushgate says this once per value.",
        crate::domain::text::printable(value, 80),
        crash.fix_commit_field
    );
    let op = Op::Comment {
        task: TaskRef::gid(task),
        text,
    };
    !matches!(outbox.submit(run, op).await, Delivery::Dropped(_))
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

/// The crash project read ahead, while the push that ends with `deployed`
/// runs (so that the read is not one more Asana round trip after it);
/// `None` where the run's aftercare reads nothing (`cluster` does not
/// close crash tasks). A task whose fix is recorded meanwhile closes on
/// the next run.
pub async fn read_ahead(
    config: &Config,
    client: &Client,
    state: &StateDir,
    cluster: &ClusterSettings,
    deployed: &CommitId,
) -> Option<anyhow::Result<Vec<LockTask>>> {
    let crash = config.crash.as_ref()?;
    if cluster.name != crash.close_on {
        return None;
    }
    Some(crash_tasks(client, state, crash, deployed).await)
}

/// After a run of `cluster` that pushed (or found nothing new).
pub async fn after_run(
    config: &Config,
    client: &Client,
    outbox: &Outbox,
    state: &StateDir,
    cluster: &ClusterSettings,
    run: &str,
    end: RunEnd<'_>,
) -> Aftercare {
    after_run_read(config, client, outbox, state, cluster, run, end, None).await
}

/// [`after_run`], with the crash project already read ([`read_ahead`]).
#[allow(clippy::too_many_arguments)]
pub async fn after_run_read(
    config: &Config,
    client: &Client,
    outbox: &Outbox,
    state: &StateDir,
    cluster: &ClusterSettings,
    run: &str,
    end: RunEnd<'_>,
    read: Option<anyhow::Result<Vec<LockTask>>>,
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
        let tasks = match read {
            Some(r) => r,
            None => crash_tasks(client, state, crash, deployed).await,
        };
        match tasks {
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
        let ops = match &a {
            CrashAction::Close { task, fix } => vec![
                Op::Comment {
                    task: TaskRef::gid(task),
                    text: format!(
                        "Fixed: {fix} is in the commit {} runs ({}), pushed in {link}. Completed by pushgate.",
                        cluster.name,
                        deployed.short()
                    ),
                },
                Op::Complete {
                    task: TaskRef::gid(task),
                },
            ],
            CrashAction::Release { task, fix } => vec![
                Op::RemoveProject {
                    task: TaskRef::gid(task),
                    project: cluster.lock_project.to_string(),
                },
                Op::Comment {
                    task: TaskRef::gid(task),
                    text: format!(
                        "{} now runs fix {} (pushed in {link}); pushgate took this task out of {}'s lock project.",
                        cluster.name,
                        fix.short(),
                        cluster.name
                    ),
                },
            ],
            CrashAction::BadFix { task, value, why } => {
                if seen.insert(task.clone()) && tell_bad_fix(outbox, run, crash, task, value, why).await {
                    told.insert(task.to_string(), reported_key(value));
                    done.reported += 1;
                }
                Vec::new()
            }
        };
        let mut ok = !ops.is_empty();
        for op in ops {
            if matches!(outbox.submit(run, op).await, Delivery::Dropped(_)) {
                ok = false;
                done.asana_failures += 1;
            }
        }
        match (&a, ok) {
            (CrashAction::Close { .. }, true) => done.closed += 1,
            (CrashAction::Release { .. }, true) => done.released += 1,
            _ => {}
        }
    }
    if done.reported > 0 {
        if let Err(e) = state.set_reported_fixes(&told) {
            tracing::warn!(error = %e, "cannot record which fix values were reported");
        }
    }
    if done.closed + done.released > 0 {
        tracing::info!(app = %config.app, cluster = %cluster.name, closed = done.closed, released = done.released, "crash tasks");
    }
    done
}
