//! `pushgate rollback CLUSTER [--to RELEASE_ID]`: the emergency exit.
//! Switches every host back to the previous kept release (or the named
//! one), ignoring locks, and records it as a push task and in the history.
//! It never builds or stages: the release must still be on every host.
//!
//! So that automation does not push the bad release straight back, it
//! marks the rolled-back commit bad (no scheduled push picks it again;
//! `push --commit` does) and creates a lock task assigned to the token's
//! user: pushes stay held until a person completes it.

use chrono::Utc;
use serde_json::json;

use super::{Env, Outcome, UsageError};
use crate::adapters::git::Mirror;
use crate::adapters::hosts::{Fleet, SshOptions};
use crate::adapters::state::{BadMark, Deployed, HistoryRecord, JournalEntry, StateError};
use crate::domain::model::{CommitId, HostReleases, ReleaseId};
use crate::run::execute::{run_id, task_name};
use crate::run::outbox::{Delivery, Op, Outbox, TaskRef};
use crate::run::recover;

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
    let result = rollback(env, cluster, to, json).await;
    if let Ok(settings) = env.cluster(cluster) {
        super::close_connections(env, settings).await;
    }
    result
}

async fn rollback(
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
                crate::domain::text::printable(t, 60)
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
    let rid = run_id(settings, now);
    let hosts = settings.read_hosts().map_err(UsageError)?;
    let mut outbox = Outbox::open(&env.state, &settings.name, &env.client)?;
    let child_env = env.child_env.registered(env.state.children(&settings.name));
    crate::adapters::process::reap_orphans(&env.state.children(&settings.name));
    if outbox.pending() > 0 {
        outbox.flush().await;
    }
    // An interrupted run first: its hosts converge before anything else.
    // The emergency exit goes on even if some host cannot be converged.
    let rcx = recover::Cx {
        config: &env.config,
        state: &env.state,
        child_env: &child_env,
        cluster: settings,
        hosts: &hosts,
        by_run: &rid,
    };
    match recover::interrupted(&rcx, &mut outbox).await {
        Ok(Some(r)) => {
            let line = r.summary(cluster);
            if !json {
                println!("{line}");
            }
            // Undoing a half-done push is the rollback a person expects:
            // going further back needs another `rollback` (or --to).
            if to.is_none() && !r.rollback && !r.finished {
                if !json {
                    println!("{cluster}: the interrupted push was undone; run `pushgate rollback {cluster}` again to go further back");
                } else {
                    super::print_json(&json!({
                        "cluster": cluster,
                        "outcome": if r.host_errors.is_empty() { "recovered" } else { "failed" },
                        "release": r.converged_to.as_ref().map(|x| x.as_str()),
                        "failed_hosts": r.host_errors,
                        "message": line,
                    }));
                }
                return Ok(if r.host_errors.is_empty() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                });
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the interrupted run could not be recovered on every host; rolling back anyway");
            let _ = env.state.close_journal(&settings.name);
        }
    }
    let fleet = Fleet {
        hosts: &hosts,
        target: settings.target.as_deref(),
        settings: &env.config.sync,
        ssh: SshOptions::from_settings(&env.config.sync),
        env: &child_env,
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
    // The commit rolled back from: what the deployed record says, else
    // the prefix in the release's name.
    let from_commit = match (&deployed, &current) {
        (Some(d), Some(c)) if d.release == c.as_str() => d.commit_id(),
        (_, Some(c)) => release_commit(env, settings, c).await.ok(),
        _ => None,
    };

    let (name, notes) = (
        task_name(settings, "rollback", &commit, now),
        format!(
            "cluster: {cluster}\nrollback from: {}\nrollback to: {target}\ncommit: {commit}\nrun: {rid}\nbastion: {}\n\nLocks were not consulted: rollback is the emergency exit.",
            current.as_ref().map_or("(unknown)".to_owned(), ToString::to_string),
            crate::run::gather::operator(),
        ),
    );
    let journal = |step: &str, detail: serde_json::Value| {
        let e = JournalEntry {
            at: Utc::now(),
            run_id: rid.clone(),
            step: step.to_owned(),
            detail,
        };
        if let Err(err) = env.state.journal(&settings.name, &e) {
            tracing::warn!(error = %err, "cannot write the run journal");
        }
        crate::adapters::failpoint::hit(&format!("journal:{step}"));
    };
    journal(
        "start",
        json!({
            "kind": "rollback",
            "from": deployed.as_ref().map(|d| d.commit.clone()),
            "to": commit.as_str(),
            "release": target.as_str(),
            "before": current.as_ref().map(ToString::to_string),
            "task": { "name": name, "notes": notes, "project": settings.push_project.as_str() },
        }),
    );

    // Automation stops: the rolled-back commit is never a candidate again
    // without --commit, and a lock task holds the cluster until a person
    // completes it.
    if let (Some(bad), Some(cur)) = (&from_commit, &current) {
        let mut marks = env.state.bad_commits(&settings.name)?;
        marks.insert(
            bad.to_string(),
            BadMark {
                release: cur.to_string(),
                at: now,
                run_id: rid.clone(),
            },
        );
        env.state.set_bad_commits(&settings.name, &marks)?;
    }
    let from_name = current
        .as_ref()
        .map_or("the current release".to_owned(), ToString::to_string);
    let lock_key = format!("lock:{rid}");
    let lock = outbox
        .submit(
            &rid,
            Op::CreateTask {
                key: lock_key.clone(),
                name: format!("rolled back from {from_name}: investigate"),
                notes: format!(
                    "`pushgate rollback {cluster}` switched {cluster} from {from_name}{} back to {target} ({}) at {} (run {rid}, by {}).\n\nAutomatic pushes of {cluster} stop while this task is open: complete it once the cause is understood.{}",
                    from_commit.as_ref().map(|c| format!(" ({})", c.short())).unwrap_or_default(),
                    commit.short(),
                    now.format("%Y-%m-%d %H:%M:%S UTC"),
                    crate::run::gather::operator(),
                    from_commit.as_ref().map(|c| format!(" The rolled-back commit {} is not pushed again unless someone runs `pushgate push {cluster} --commit {}`.", c.short(), c.short())).unwrap_or_default(),
                ),
                project: settings.lock_project.to_string(),
                workspace: Some(env.config.asana.workspace.to_string()),
                assignee: Some("me".into()),
            },
        )
        .await;
    let lock_link = match &lock {
        Delivery::Applied(Some(t)) => Some(t.link.clone()),
        _ => None,
    };
    let task = match outbox
        .submit(
            &rid,
            Op::CreateTask {
                key: rid.clone(),
                name,
                notes,
                project: settings.push_project.to_string(),
                workspace: None,
                assignee: None,
            },
        )
        .await
    {
        Delivery::Applied(Some(t)) => {
            journal("record", json!({ "task": t.gid, "link": t.link }));
            Some((TaskRef::Gid(t.gid), Some(t.link)))
        }
        Delivery::Queued => Some((TaskRef::Created(rid.clone()), None)),
        _ => None,
    };

    journal("switch", json!({ "release": target.as_str() }));
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
    if let Some(l) = &lock_link {
        text.push_str(&format!(
            "\nlock task (pushes stop until it is completed): {l}"
        ));
    }
    if let Some((t, _)) = &task {
        outbox
            .submit(
                &rid,
                Op::Comment {
                    task: t.clone(),
                    text: text.clone(),
                },
            )
            .await;
        if failed.is_empty() {
            outbox.submit(&rid, Op::Complete { task: t.clone() }).await;
        }
    }
    let link = task.as_ref().and_then(|t| t.1.clone());
    env.observer
        .rolled_back(
            &settings.name,
            &target,
            &commit,
            hosts.len(),
            &failed,
            link.as_deref(),
        )
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
                push_task: match &task {
                    Some((TaskRef::Gid(g), _)) => Some(g.clone()),
                    _ => None,
                },
                push_task_link: link.clone(),
            },
        )?;
        crate::adapters::failpoint::hit("deployed");
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
            push_task_link: link.clone(),
            failed_step: (!failed.is_empty()).then(|| "switch".to_owned()),
            error: (!failed.is_empty()).then(|| failed.join("; ")),
        },
    )?;
    env.state.close_journal(&settings.name)?;
    if outbox.pending() > 0 {
        outbox.flush().await;
    }
    let queued = outbox.pending();
    if json {
        super::print_json(&json!({
            "cluster": cluster,
            "outcome": if failed.is_empty() { "rolled-back" } else { "failed" },
            "release": target.as_str(),
            "commit": commit.as_str(),
            "push_task": link,
            "lock_task": lock_link,
            "rolled_back_commit": from_commit.as_ref().map(|c| c.as_str()),
            "failed_hosts": failed,
            "asana_queued": queued,
        }));
    } else {
        println!("{text}");
        if let Some(l) = &link {
            println!("rollback task: {l}");
        }
        if let Some(c) = &from_commit {
            println!(
                "{cluster}: {} will not be pushed again without `--commit`; pushes stay held until the lock task is completed",
                c.short()
            );
        }
    }
    if queued > 0 {
        eprintln!("pushgate: warning: {queued} Asana write{} queued in the outbox; the next run replays them", if queued == 1 { "" } else { "s" });
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
