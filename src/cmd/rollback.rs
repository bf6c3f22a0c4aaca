//! `pushgate rollback CLUSTER [--to RELEASE_ID]`: the emergency exit.
//! Switches every host back to the previous kept release (or the named
//! one), ignoring locks, and records it as a push task and in the history.
//! It never builds or stages: the release must still be on every host.

use chrono::Utc;
use serde_json::json;

use super::{Env, Outcome, UsageError};
use crate::asana::{Comment, NewTask, TaskUpdate};
use crate::execute::{run_id, task_name};
use crate::git::Mirror;
use crate::model::{CommitId, ReleaseId};
use crate::state::{Deployed, HistoryRecord, StateError};
use crate::sync::{Fleet, HostReleases, SshOptions};

/// The release to go back to: the newest one older than what runs now that
/// was deployed successfully (`good`: a directory left by a failed or killed
/// run may be partial) and is kept on every host.
pub fn previous_release(
    hosts: &[HostReleases],
    current: Option<&ReleaseId>,
    good: &std::collections::HashSet<ReleaseId>,
) -> Option<ReleaseId> {
    let first = hosts.first()?;
    first
        .releases
        .iter()
        .filter(|r| good.contains(*r))
        .filter(|r| current.is_none_or(|c| *r < c))
        .filter(|r| hosts.iter().all(|h| h.releases.contains(r)))
        .max()
        .cloned()
}

pub async fn run(
    env: &Env,
    cluster: &str,
    to: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let settings = env.cluster(cluster)?;
    let to = match to {
        Some(t) => Some(ReleaseId::parse(t).ok_or_else(|| {
            UsageError(format!(
                "--to: `{}` is not a release id (YYYYMMDDTHHMMSSZ-<12 hex>)",
                crate::plan::printable(t, 60)
            ))
        })?),
        None => None,
    };
    let _lock = match env.state.lock(&settings.name) {
        Ok(l) => l,
        Err(e @ StateError::Busy { .. }) => {
            eprintln!("pushgate: {e}");
            return Ok(Outcome::Busy);
        }
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let hosts = settings.read_hosts().map_err(UsageError)?;
    let fleet = Fleet {
        hosts: &hosts,
        target: settings.target.as_deref(),
        settings: &env.config.sync,
        ssh: SshOptions::from_settings(&env.config.sync),
        env: &env.child_env,
    };
    // The emergency exit: hosts that cannot be reached are reported and
    // skipped; every other host goes back.
    let probes = fleet.releases().await;
    let mut read = Vec::new();
    let mut unreachable = Vec::new();
    let mut reachable = Vec::new();
    for p in &probes {
        match &p.outcome {
            Ok(r) => {
                read.push(r.clone());
                reachable.push(true);
            }
            Err(e) => {
                tracing::error!(host = %p.host, error = %e, "cannot read the host's releases; it is not rolled back");
                unreachable.push(format!("{}: cannot read its releases: {e}", p.host));
                reachable.push(false);
            }
        }
    }
    if read.is_empty() {
        anyhow::bail!(
            "no host of {cluster} could be read: {}",
            unreachable.join("; ")
        );
    }
    let deployed = env.state.deployed(&settings.name)?;
    let good: std::collections::HashSet<ReleaseId> = env
        .state
        .history(&settings.name)?
        .iter()
        .filter(|r| r.outcome == "success")
        .filter_map(|r| r.release.as_deref().and_then(ReleaseId::parse))
        .collect();
    let current = deployed
        .as_ref()
        .and_then(|d| ReleaseId::parse(&d.release))
        .or_else(|| read.iter().filter_map(|h| h.current.clone()).max());
    let target = match to {
        Some(t) => {
            if !good.contains(&t) {
                anyhow::bail!("release {t} was never deployed successfully (see `pushgate history {cluster}`); pushgate does not switch to it");
            }
            if let Some(h) = probes
                .iter()
                .filter(|p| p.outcome.is_ok())
                .zip(&read)
                .find(|(_, r)| !r.releases.contains(&t))
            {
                anyhow::bail!("release {t} is not kept on {}; kept releases are listed by `ls TARGET/releases`", h.0.host);
            }
            t
        }
        None => previous_release(&read, current.as_ref(), &good).ok_or_else(|| {
            anyhow::anyhow!(
                "{cluster}: no release older than the current one is kept on every host"
            )
        })?,
    };
    let commit = release_commit(env, settings, &target).await?;

    let rid = run_id(settings, now);
    let task = env
        .client
        .create_task(&NewTask {
            name: task_name(settings, "rollback", &commit, now),
            notes: Some(format!(
                "cluster: {cluster}\nrollback from: {}\nrollback to: {target}\ncommit: {commit}\nrun: {rid}\nbastion: {}\n\nLocks were not consulted: rollback is the emergency exit.",
                current.as_ref().map_or("(unknown)".to_owned(), ToString::to_string),
                super::operator(),
            )),
            projects: vec![settings.push_project.clone()],
            ..NewTask::default()
        })
        .await;
    let task = match task {
        Ok(t) => {
            crate::model::TaskGid::parse(&t.gid).map(|g| (g, t.permalink_url.unwrap_or_default()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the rollback task; rolling back without it");
            None
        }
    };

    let results = fleet.switch(&target, &reachable).await;
    let mut failed: Vec<String> = results
        .iter()
        .zip(&reachable)
        .filter(|(_, ok)| **ok)
        .filter_map(|(r, _)| match &r.outcome {
            Ok(None) => None,
            Ok(Some(e)) => Some(format!(
                "{}: switched, but after_switch failed: {e}",
                r.host
            )),
            Err(e) => Some(format!("{}: {e}", r.host)),
        })
        .collect();
    failed.extend(unreachable);
    let mut text = format!(
        "rollback: {}/{} hosts now run {target}",
        hosts.len() - failed.len(),
        hosts.len()
    );
    for f in &failed {
        text.push_str(&format!("\n- FAILED {f}"));
    }
    if let Some((gid, _)) = &task {
        let _ = env
            .client
            .add_comment(gid, &Comment::Text(text.clone()))
            .await;
        if failed.is_empty() {
            let done = TaskUpdate {
                completed: Some(true),
                ..TaskUpdate::default()
            };
            let _ = env.client.update_task(gid, &done).await;
        }
    }
    let link = task.as_ref().map(|t| t.1.as_str());
    env.observer
        .rolled_back(&settings.name, &target, &commit, hosts.len(), &failed, link)
        .await;
    let switched_any = results.iter().any(|r| r.outcome.is_ok());
    if switched_any {
        env.state.set_deployed(
            &settings.name,
            &Deployed {
                commit: commit.to_string(),
                release: target.to_string(),
                since: Utc::now(),
                run_id: rid.clone(),
                push_task: task.as_ref().map(|t| t.0.to_string()),
                push_task_link: task.as_ref().map(|t| t.1.clone()),
            },
        )?;
    }
    env.state.append_history(
        &settings.name,
        &HistoryRecord {
            run_id: rid.clone(),
            kind: "rollback".into(),
            outcome: if failed.is_empty() {
                "success"
            } else {
                "failed"
            }
            .into(),
            commit: commit.to_string(),
            previous: deployed.map(|d| d.commit),
            release: Some(target.to_string()),
            started: now,
            finished: Utc::now(),
            push_task_link: task.as_ref().map(|t| t.1.clone()),
            failed_step: (!failed.is_empty()).then(|| "switch".to_owned()),
            error: (!failed.is_empty()).then(|| failed.join("; ")),
        },
    )?;
    if json {
        super::print_json(&json!({
            "cluster": cluster,
            "outcome": if failed.is_empty() { "rolled-back" } else { "failed" },
            "release": target.as_str(),
            "commit": commit.as_str(),
            "push_task": task.as_ref().map(|t| &t.1),
            "failed_hosts": failed,
        }));
    } else {
        println!("{text}");
        if let Some((_, link)) = &task {
            println!("rollback task: {link}");
        }
    }
    Ok(if failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// The commit a release was built from: from the history, else from the
/// 12-hex prefix in its name, resolved in the mirror.
async fn release_commit(
    env: &Env,
    settings: &crate::config::ClusterSettings,
    release: &ReleaseId,
) -> anyhow::Result<CommitId> {
    let known = env
        .state
        .history(&settings.name)?
        .into_iter()
        .rev()
        .find(|r| r.release.as_deref() == Some(release.as_str()))
        .and_then(|r| CommitId::parse(&r.commit));
    if let Some(c) = known {
        return Ok(c);
    }
    let repo = env.state.repo();
    let prefix = release.commit_prefix().to_owned();
    let c = tokio::task::spawn_blocking(move || Mirror::open(&repo)?.resolve(&prefix)).await??;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(day: u8) -> ReleaseId {
        ReleaseId::parse(&format!("202611{day:02}T101500Z-3f2a9c13f2a9")).unwrap()
    }

    #[test]
    fn goes_back_to_the_newest_older_release_kept_on_every_host() {
        let h1 = HostReleases {
            current: Some(rel(5)),
            releases: vec![rel(2), rel(3), rel(4), rel(5)],
        };
        let h2 = HostReleases {
            current: Some(rel(5)),
            releases: vec![rel(2), rel(3), rel(5)],
        };
        let good = [2, 3, 4, 5].map(rel).into_iter().collect();
        assert_eq!(
            previous_release(&[h1.clone(), h2.clone()], Some(&rel(5)), &good),
            Some(rel(3))
        );
        assert_eq!(
            previous_release(std::slice::from_ref(&h1), Some(&rel(2)), &good),
            None
        );
        assert_eq!(previous_release(&[], Some(&rel(2)), &good), None);
        // A directory no successful push made (a killed run's) is never chosen.
        let good = [2, 5].map(rel).into_iter().collect();
        assert_eq!(previous_release(&[h1], Some(&rel(5)), &good), Some(rel(2)));
    }
}
