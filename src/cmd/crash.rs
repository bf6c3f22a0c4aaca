//! `pushgate crash fixed TASK_GID COMMIT` records a crash task's fix;
//! `pushgate shipped COMMIT --cluster CLUSTER` answers whether a cluster
//! runs it (no network: the state directory and the repository mirror).

use anyhow::Context;
use serde_json::json;

use super::{Env, Outcome, UsageError};
use crate::adapters::asana::{fields, Comment, TaskUpdate};
use crate::adapters::git::{FetchAuth, Mirror};
use crate::adapters::state::StateDir;
use crate::config::Config;
use crate::domain::model::{CommitId, TaskGid};
use crate::domain::text::printable;

/// Records `commit` as the fix of a crash task: in its text custom field
/// named `crash.fix_commit_field` when the task has one, else as a
/// `Fixed-in: <sha>` notes line; then a comment. A value that is not a
/// commit of the repository writes nothing (exit 2).
pub async fn fixed(env: &Env, task: &str, commit: &str, json: bool) -> anyhow::Result<Outcome> {
    let gid = TaskGid::parse(task).ok_or_else(|| {
        UsageError(format!(
            "`{}` is not a task gid (digits only)",
            printable(task, 60)
        ))
    })?;
    let crash = env
        .config
        .crash
        .as_ref()
        .ok_or_else(|| UsageError("the config has no [crash] section".into()))?;
    let repo = env.state.repo();
    std::fs::create_dir_all(&repo).with_context(|| format!("cannot create {}", repo.display()))?;
    let url = env.config.repo.url.clone();
    let auth = FetchAuth {
        ssh_key: env.config.repo.ssh_key.clone(),
    };
    let value = commit.to_owned();
    let sha = tokio::task::spawn_blocking(move || -> anyhow::Result<Result<CommitId, String>> {
        let mirror = Mirror::open(&repo)?;
        mirror.fetch(&url, &auth)?;
        Ok(mirror.resolve_fix(&value))
    })
    .await
    .context("the git task stopped")??
    .map_err(|why| {
        UsageError(format!(
            "`{}` is not a commit of the repository: {why}; nothing was written",
            printable(commit, 60)
        ))
    })?;

    let t = env.client.get_task(&gid, fields::TASK_FIELDS).await?;
    let field = t
        .custom_fields
        .iter()
        .flatten()
        .find(|f| f.name.as_deref() == Some(crash.fix_commit_field.as_str()));
    let (update, place) = match field {
        Some(f) => (
            TaskUpdate {
                custom_fields: vec![(f.gid.clone(), Some(sha.to_string()))],
                ..TaskUpdate::default()
            },
            format!("the \"{}\" field", crash.fix_commit_field),
        ),
        None => {
            let mut notes = t.notes.clone().unwrap_or_default();
            if !notes.is_empty() && !notes.ends_with('\n') {
                notes.push('\n');
            }
            notes.push_str(&format!("Fixed-in: {sha}"));
            (
                TaskUpdate {
                    notes: Some(notes),
                    ..TaskUpdate::default()
                },
                "a `Fixed-in:` notes line".to_owned(),
            )
        }
    };
    env.client.update_task(&gid, &update).await?;
    let text = format!(
        "Fix recorded by `pushgate crash fixed` ({}): {sha}, in {place}. The task is completed once beta runs a commit containing it.",
        crate::run::gather::operator()
    );
    env.client.add_comment(&gid, &Comment::Text(text)).await?;
    if json {
        super::print_json(
            &json!({ "task": gid.as_str(), "fix_commit": sha.as_str(), "recorded_in": if field.is_some() { "custom_field" } else { "notes" } }),
        );
    } else {
        println!(
            "{}task {gid}: fix {sha} recorded in {place}",
            env.config
                .named_app()
                .map(|a| format!("{a}: "))
                .unwrap_or_default()
        );
    }
    Ok(Outcome::Success)
}

/// Exit 0 if `cluster`'s deployed commit contains `commit`, 1 if not, 2
/// (a usage error) if it cannot tell.
pub fn shipped(
    config: &Config,
    commit: &str,
    cluster: &str,
    json: bool,
) -> anyhow::Result<Outcome> {
    let settings = config
        .cluster(cluster)
        .ok_or_else(|| UsageError(format!("unknown cluster `{}`", printable(cluster, 40))))?;
    let state = StateDir::new(&config.state_dir);
    let label = config.label(&settings.name);
    // Anything that stops the answer is "cannot tell" (exit 2), never "no".
    let cannot = |e: &dyn std::fmt::Display| UsageError(format!("cannot tell: {e}"));
    let deployed = state
        .cluster(&settings.name)
        .deployed()
        .map_err(|e| cannot(&e))?
        .ok_or_else(|| UsageError(format!("{cluster} has deployed nothing yet: cannot tell")))?;
    let tip = deployed
        .commit_id()
        .ok_or_else(|| UsageError(format!("{cluster}'s deployed commit is unreadable")))?;
    let mirror = Mirror::open(&state.repo()).map_err(|e| cannot(&e))?;
    let c = mirror.resolve_fix(commit).map_err(|why| {
        UsageError(format!(
            "`{}` is not a commit of the repository: {why}",
            printable(commit, 60)
        ))
    })?;
    let yes = mirror.contains(&tip, &c).map_err(|e| cannot(&e))?;
    if json {
        super::print_json(&json!({
            "app": config.app.as_str(),
            "cluster": cluster,
            "commit": c.as_str(),
            "shipped": yes,
            "deployed": { "commit": deployed.commit, "release": deployed.release, "since": deployed.since },
        }));
    } else if yes {
        println!(
            "{label} runs {} (deployed {} since {})",
            c.short(),
            &deployed.commit[..7],
            deployed.since.format("%Y-%m-%d %H:%M UTC")
        );
    } else {
        println!(
            "{label} does not run {} yet (deployed: {})",
            c.short(),
            &deployed.commit[..7]
        );
    }
    Ok(if yes {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
