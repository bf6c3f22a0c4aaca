//! `pushgate lock` / `pushgate unlock`: lock tasks from the shell.

use serde_json::json;

use super::{Env, Outcome, UsageError};
use crate::adapters::asana::{fields, Comment, NewTask, TaskUpdate};
use crate::domain::model::TaskGid;
use crate::domain::text::printable;

/// Creates a lock task in the cluster's lock project, assigned to the token's user.
pub async fn lock(
    env: &Env,
    cluster: &str,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let settings = env.cluster(cluster)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(UsageError("--reason must say why pushes stop".into()).into());
    }
    let first_line = reason.lines().next().unwrap_or(reason);
    let name: String = first_line.chars().take(200).collect();
    let notes = format!(
        "{reason}\n\nLocked with `{}` by {} at {}. Complete this task (or run `{}`) to let {} push again.",
        env.config.cli(&format!("lock {cluster}")),
        crate::run::gather::operator(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
        env.config.cli("unlock <gid>"),
        env.config.label(&settings.name),
    );
    let task = env
        .client
        .create_task(&NewTask {
            name,
            notes: Some(notes),
            projects: vec![settings.lock_project.clone()],
            assignee: Some("me".into()),
            ..NewTask::default()
        })
        .await?;
    let link = task.permalink_url.clone().unwrap_or_default();
    if json {
        super::print_json(
            &json!({ "app": env.config.app.as_str(), "cluster": cluster, "gid": task.gid, "name": task.name, "link": link }),
        );
    } else {
        println!(
            "locked {}: task {} \"{}\" {link}",
            env.config.label(&settings.name),
            task.gid,
            printable(&task.name, 120)
        );
    }
    Ok(Outcome::Success)
}

/// Completes a lock task of one of `envs`' lock projects, with a comment
/// saying who unlocked it.
pub async fn unlock(envs: &[&Env], task_gid: &str, json: bool) -> anyhow::Result<Outcome> {
    let Some(env) = envs.first() else {
        return Err(UsageError("no app is configured".into()).into());
    };
    let gid = TaskGid::parse(task_gid).ok_or_else(|| {
        UsageError(format!(
            "`{}` is not a task gid (digits only)",
            printable(task_gid, 60)
        ))
    })?;
    let task = env.client.get_task(&gid, fields::TASK).await?;
    let in_projects: Vec<&str> = task
        .projects
        .iter()
        .flatten()
        .map(|p| p.gid.as_str())
        .collect();
    let found = envs.iter().find_map(|e| {
        e.config
            .clusters
            .values()
            .find(|c| in_projects.contains(&c.lock_project.as_str()))
            .map(|c| (*e, c))
    });
    let (env, cluster) = match found {
        Some((e, c)) => (e, Some(c)),
        None => (*env, None),
    };
    let Some(cluster) = cluster else {
        eprintln!(
            "pushgate: task {gid} \"{}\" is in none of the configured lock projects; not completing it",
            printable(&task.name, 120)
        );
        return Ok(Outcome::Failure);
    };
    let already = task.completed == Some(true);
    if !already {
        let text = format!(
            "Unlocked with `pushgate unlock` by {}.",
            crate::run::gather::operator()
        );
        env.client.add_comment(&gid, &Comment::Text(text)).await?;
        env.client
            .update_task(
                &gid,
                &TaskUpdate {
                    completed: Some(true),
                    ..TaskUpdate::default()
                },
            )
            .await?;
    }
    if json {
        super::print_json(
            &json!({ "cluster": cluster.name.as_str(), "gid": gid.as_str(), "already_complete": already }),
        );
    } else if already {
        println!(
            "task {gid} was already complete; it does not hold {}",
            cluster.name
        );
    } else {
        println!(
            "unlocked {}: task {gid} \"{}\" is complete",
            cluster.name,
            printable(&task.name, 120)
        );
    }
    Ok(Outcome::Success)
}
