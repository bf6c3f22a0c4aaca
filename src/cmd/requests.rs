//! Requests from Asana (`docs/requests.md`): the daemon watches the
//! `[requests]` project and acts on the tasks people write there —
//! `push CLUSTER [REV]`, `rollback CLUSTER [RELEASE_ID]`, `lock CLUSTER`,
//! `unlock CLUSTER` — exactly as the same command would from the shell,
//! every gate applied and no valve; and `pushgate requests` lists them.
//!
//! Watching is cheap: Asana's Events API on the project, its sync token
//! kept in `requests/sync.json`; a 412 (with a fresh token), an error, and
//! every tenth poll read the project's open tasks in full (delivery is at
//! most once). What to do with each task is `decide::request::next`; the
//! grammar is `domain::request`. Each attempt is journalled
//! (`requests/journal.json`) before it runs, so a crash never runs it
//! twice; every Asana write goes through the requests outbox.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::push::{push_at, Output, PushRequest};
use super::{Env, Outcome, UsageError};
use crate::adapters::asana::{AsanaError, CompletedSince};
use crate::adapters::state::{self, ClusterState, StateError};
use crate::config::RequestsSettings;
use crate::domain::approval::Person;
use crate::domain::decide::request::{next, Action, Seen, Standing};
use crate::domain::model::TaskGid;
use crate::domain::plan::Verdict;
use crate::domain::request::{parse, Parsed, Verb};
use crate::domain::text::{describe, printable};
use crate::run::clock::RunClock;
use crate::run::outbox::{Delivery, Op, Outbox, TaskRef};

/// What the journal keeps of one request task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `refused`, `not-understood`, `running`, `held`, `failed`, `closed`.
    pub standing: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub link: Option<String>,
    /// When it last changed.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// The last outcome, as commented.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Lock tasks this request created: (cluster, outbox key).
    #[serde(default)]
    pub locks: Vec<(String, String)>,
    /// Lock tasks this request completed (outbox keys).
    #[serde(default)]
    pub unlocked: Vec<String>,
}

impl Entry {
    fn standing(&self) -> Standing {
        let at = self.at.unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self.standing.as_str() {
            "refused" => Standing::Refused,
            "not-understood" => Standing::NotUnderstood {
                name: self.name.clone(),
            },
            "running" => Standing::Running {
                attempt: self.attempt,
            },
            "held" => Standing::Held {
                attempt: self.attempt,
            },
            "failed" => Standing::Failed {
                attempt: self.attempt,
                at,
            },
            "closed" => Standing::Closed,
            _ => Standing::New,
        }
    }
}

type Journal = BTreeMap<String, Entry>;

fn journal_path(state: &ClusterState) -> std::path::PathBuf {
    state.dir().join("journal.json")
}

fn sync_path(state: &ClusterState) -> std::path::PathBuf {
    state.dir().join("sync.json")
}

fn load(state: &ClusterState) -> Result<Journal, StateError> {
    Ok(state::read_json(&journal_path(state))?.unwrap_or_default())
}

fn store(state: &ClusterState, j: &Journal) -> Result<(), StateError> {
    state.prepare()?;
    state::write_json(&journal_path(state), j)
}

#[derive(Serialize, Deserialize)]
struct Sync {
    sync: String,
}

/// What one request's attempt came to.
enum Ran {
    Done(String),
    Held(String),
    Failed(String),
}

/// Every tenth poll reads the project in full.
pub const FULL_EVERY: u32 = 10;

/// One poll of the requests project at `now`: the events since the last
/// (or the whole project when `full`, or when the events cannot be
/// followed), then every touched request and every held one, each as
/// `decide::request::next` says. Held under the requests lock (a busy
/// lock: another process polls; this one skips).
pub async fn poll(apps: &[&Env], now: DateTime<Utc>, full: bool) -> anyhow::Result<()> {
    // One requests project for every app: its state at the state
    // directory's root, the client and settings shared.
    let Some(env) = apps.first().copied() else {
        return Ok(());
    };
    let Some(settings) = &env.config.requests else {
        return Ok(());
    };
    let state = requests_state(env);
    let _lock = match state.lock() {
        Ok(l) => l,
        Err(StateError::Busy { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let clock = RunClock::starting_at(now);
    let run_id = format!("requests-{}", now.format("%Y%m%dT%H%M%SZ"));
    let mut ob = Outbox::open(&state, &env.client, clock)?;
    if ob.pending() > 0 {
        ob.flush().await;
    }
    let mut journal = load(&state)?;
    let mut touched = touched(env, settings, &state, full).await?;
    touched.extend(
        journal
            .iter()
            .filter(|(_, e)| matches!(e.standing.as_str(), "held" | "running"))
            .map(|(g, _)| g.clone()),
    );
    let mut people = People::default();
    for gid in touched {
        let Some(g) = TaskGid::parse(&gid) else {
            continue;
        };
        if let Err(e) = one(
            apps,
            settings,
            &state,
            &mut journal,
            &mut ob,
            &mut people,
            &g,
            now,
            &run_id,
        )
        .await
        {
            tracing::warn!(task = %g, error = %format!("{e:#}"), "cannot handle a request; trying again on the next poll");
        }
    }
    if ob.pending() > 0 {
        ob.flush().await;
    }
    Ok(())
}

/// The task gids the events name since the last poll; on a full read (or
/// when the events cannot be followed), every open task of the project.
async fn touched(
    env: &Env,
    settings: &RequestsSettings,
    state: &ClusterState,
    mut full: bool,
) -> anyhow::Result<BTreeSet<String>> {
    let project = settings.project.as_str();
    let mut out = BTreeSet::new();
    let saved: Option<Sync> = state::read_json(&sync_path(state)).ok().flatten();
    let mut sync = saved.map(|s| s.sync);
    for _ in 0..10 {
        match env.client.events(project, sync.as_deref()).await {
            Ok(ev) => {
                for e in &ev.events {
                    for r in [&e.resource, &e.parent].into_iter().flatten() {
                        if r.resource_type.as_deref() == Some("task") {
                            out.insert(r.gid.clone());
                        }
                    }
                }
                sync = Some(ev.sync);
                if !ev.has_more {
                    break;
                }
            }
            Err(AsanaError::SyncExpired { sync: fresh }) => {
                // Start over: a full read, then follow from the fresh token.
                sync = Some(fresh);
                full = true;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "cannot read the requests project's events; reading it in full");
                full = true;
                break;
            }
        }
    }
    if let Some(s) = &sync {
        state.prepare()?;
        state::write_json(&sync_path(state), &Sync { sync: s.clone() })?;
    }
    if full {
        let tasks = env
            .client
            .project_tasks(&settings.project, CompletedSince::Now, "name")
            .await?;
        out.extend(tasks.into_iter().map(|t| t.gid));
    }
    Ok(out)
}

/// Who people are, read once per poll.
#[derive(Default)]
struct People(BTreeMap<String, Option<Person>>);

impl People {
    /// pushgate's own user: never allowed to make requests.
    async fn bot(&mut self, env: &Env) -> Option<String> {
        if let Some(Some(p)) = self.0.get("me") {
            return Some(p.gid.clone());
        }
        let me = env.client.me().await.ok()?;
        self.0.insert(
            "me".into(),
            Some(Person {
                gid: me.gid.clone(),
                name: me.name.unwrap_or_default(),
                email: me.email,
            }),
        );
        Some(me.gid)
    }

    async fn get(&mut self, env: &Env, gid: &str) -> Option<Person> {
        if let Some(p) = self.0.get(gid) {
            return p.clone();
        }
        let p = env.client.user(gid).await.ok().map(|u| Person {
            gid: u.gid,
            name: u.name.unwrap_or_default(),
            email: u.email,
        });
        self.0.insert(gid.to_owned(), p.clone());
        p
    }
}

fn allowed(settings: &RequestsSettings, p: &Person, bot: Option<&str>) -> bool {
    bot != Some(p.gid.as_str()) && settings.allowed.iter().any(|a| a.names(p))
}

/// Where the requests keep their journal, outbox and sync token: the state
/// directory's root, one for every app.
fn requests_state(env: &Env) -> ClusterState {
    crate::adapters::state::StateDir::new(&env.config.root_dir).requests()
}

/// One request task on one poll.
#[allow(clippy::too_many_arguments)]
async fn one(
    apps: &[&Env],
    settings: &RequestsSettings,
    state: &ClusterState,
    journal: &mut Journal,
    ob: &mut Outbox,
    people: &mut People,
    gid: &TaskGid,
    now: DateTime<Utc>,
    run_id: &str,
) -> anyhow::Result<()> {
    let Some(env) = apps.first().copied() else {
        return Ok(());
    };
    let t = match env
        .client
        .get_task(
            gid,
            "name,completed,created_at,created_by,resource_subtype,permalink_url,projects",
        )
        .await
    {
        Ok(t) => t,
        Err(e) if e.status() == Some(404) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let in_project = t
        .projects
        .iter()
        .flatten()
        .any(|p| p.gid == settings.project.as_str());
    if !in_project {
        return Ok(());
    }
    let bot = people.bot(env).await;
    let author = match t.created_by.as_ref() {
        Some(c) => people.get(env, &c.gid).await,
        None => None,
    };
    let Some(author) = author else {
        // Who wrote it cannot be read now: nothing runs; next poll.
        return Ok(());
    };
    let entry = journal.get(gid.as_str()).cloned().unwrap_or_default();
    let standing = entry.standing();
    // With several apps a request names its app first (`push web beta`).
    let names: Vec<&str> = match env.config.many_apps {
        true => apps.iter().map(|e| e.config.app.as_str()).collect(),
        false => Vec::new(),
    };
    let clusters: BTreeSet<&str> = apps
        .iter()
        .flat_map(|e| e.config.clusters.keys().map(|c| c.as_str()))
        .collect();
    let clusters: Vec<&str> = clusters.into_iter().collect();
    let parsed = parse(&t.name, &names, &clusters);
    // The app it is about: the one it names, or the only one.
    let target = match parsed.as_ref().ok().and_then(|p| p.app.as_deref()) {
        Some(a) => apps.iter().find(|e| e.config.app.as_str() == a).copied(),
        None => Some(env),
    }
    .unwrap_or(env);
    let retry = match &standing {
        Standing::Failed { at, .. } if !t.completed.unwrap_or(false) => {
            asked_retry(env, settings, people, gid, *at, bot.as_deref()).await
        }
        _ => false,
    };
    let seen = Seen {
        name: t.name.clone(),
        completed: t.completed.unwrap_or(false),
        created_at: t.created_at.unwrap_or(now),
        allowed: allowed(settings, &author, bot.as_deref()),
        understood: parsed.is_ok(),
        retry,
    };
    let max_age = chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::MAX);
    let action = next(&standing, &seen, now, max_age);
    let approval_task = t.resource_subtype.as_deref() == Some("approval");
    let mut e = Entry {
        name: t.name.clone(),
        link: t.permalink_url.clone(),
        at: Some(now),
        ..entry
    };
    let task = TaskRef::gid(gid);
    let comment = |text: String| Op::Comment {
        task: task.clone(),
        text,
    };
    match action {
        Action::Nothing => return Ok(()),
        Action::Stop => {
            e.standing = "closed".into();
            e.outcome = Some("completed by a person".into());
        }
        Action::Refuse => {
            e.standing = "refused".into();
            let text = format!(
                "Not run: {author} is not allowed to make requests (see `[requests] allowed` in pushgate's config). pushgate will not act on this task."
            );
            ob.submit(run_id, comment(text.clone())).await;
            e.outcome = Some(text);
        }
        Action::NotUnderstood => {
            e.standing = "not-understood".into();
            let why = parsed.as_ref().err().cloned().unwrap_or_default();
            ob.submit(run_id, comment(format!("Not run: {why}"))).await;
            e.outcome = Some(why);
        }
        Action::Interrupted { attempt } => {
            e.standing = "failed".into();
            e.attempt = attempt;
            let text = format!(
                "Attempt {attempt} was interrupted (pushgate stopped while it ran) and is not run again by itself; comment `retry` to run it again."
            );
            ob.submit(run_id, comment(text.clone())).await;
            e.outcome = Some(text);
        }
        Action::Expire => {
            e.standing = "closed".into();
            let text = format!(
                "Closed: not done within max_age = {} of being asked ({}).",
                humantime::format_duration(settings.max_age),
                e.outcome.as_deref().unwrap_or("never run")
            );
            ob.submit(run_id, comment(text.clone())).await;
            if !approval_task {
                ob.submit(run_id, Op::Complete { task: task.clone() }).await;
            }
            e.outcome = Some(text);
        }
        Action::Run { attempt } => {
            let Ok(parsed) = parsed else {
                return Ok(());
            };
            // Journalled before it runs: a crash never runs it twice.
            e.standing = "running".into();
            e.attempt = attempt;
            journal.insert(gid.to_string(), e.clone());
            store(state, journal)?;
            let ran = run_verb(
                target, &parsed, &mut e, ob, run_id, gid, &author, &t, journal, now,
            )
            .await;
            match ran {
                Ran::Done(text) => {
                    e.standing = "closed".into();
                    ob.submit(run_id, comment(text.clone())).await;
                    if !approval_task {
                        ob.submit(run_id, Op::Complete { task: task.clone() }).await;
                    }
                    e.outcome = Some(text);
                }
                Ran::Held(text) => {
                    e.standing = "held".into();
                    if e.outcome.as_deref() != Some(text.as_str()) {
                        ob.submit(
                            run_id,
                            comment(format!(
                                "Held: {text}\nTried again on every poll until it passes, the task is completed, or it is older than max_age."
                            )),
                        )
                        .await;
                    }
                    e.outcome = Some(text);
                }
                Ran::Failed(text) => {
                    e.standing = "failed".into();
                    ob.submit(
                        run_id,
                        comment(format!(
                            "Failed: {text}\nNot tried again until someone allowed comments `retry`."
                        )),
                    )
                    .await;
                    e.outcome = Some(text);
                }
            }
        }
    }
    journal.insert(gid.to_string(), e);
    store(state, journal)?;
    Ok(())
}

/// Whether an allowed person commented `retry` on the task after `since`.
async fn asked_retry(
    env: &Env,
    settings: &RequestsSettings,
    people: &mut People,
    gid: &TaskGid,
    since: DateTime<Utc>,
    bot: Option<&str>,
) -> bool {
    let Ok(stories) = env.client.stories(gid).await else {
        return false;
    };
    for s in stories.into_iter().rev() {
        let fresh = s.created_at.is_some_and(|t| t > since);
        let says = s
            .text
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("retry"));
        if !(fresh && says && s.resource_subtype.as_deref() == Some("comment_added")) {
            continue;
        }
        let Some(by) = s.created_by else { continue };
        if let Some(p) = people.get(env, &by.gid).await {
            if allowed(settings, &p, bot) {
                return true;
            }
        }
    }
    false
}

/// Runs one request as the shell command would: every gate, no valve.
#[allow(clippy::too_many_arguments)]
async fn run_verb(
    env: &Env,
    parsed: &Parsed,
    e: &mut Entry,
    ob: &mut Outbox,
    run_id: &str,
    gid: &TaskGid,
    author: &Person,
    t: &crate::adapters::asana::Task,
    journal: &Journal,
    now: DateTime<Utc>,
) -> Ran {
    let link = t.permalink_url.clone().unwrap_or_default();
    match &parsed.verb {
        Verb::Push { cluster, rev } => {
            let shown = env.config.label(cluster);
            let pushed = push_at(
                env,
                PushRequest {
                    cluster: cluster.as_str(),
                    commit: rev.as_deref(),
                    dry_run: false,
                    output: Output::Log,
                    now,
                    stop: None,
                    overrides: Default::default(),
                },
            )
            .await;
            match pushed {
                Err(err) if err.downcast_ref::<UsageError>().is_some() => {
                    Ran::Failed(printable(&format!("{err:#}"), 500))
                }
                Err(err) => Ran::Failed(printable(&format!("{err:#}"), 500)),
                Ok(p) => {
                    let task = p
                        .report
                        .as_ref()
                        .and_then(|r| r.task.as_ref())
                        .map(|t| t.link.clone());
                    match (&p.plan.verdict, &p.report) {
                        (_, Some(r)) if r.failure.is_some() => Ran::Failed(format!(
                            "the push of {} failed at {}: {}{}",
                            r.commit.short(),
                            r.failure.as_ref().map_or("?", |f| f.0.as_str()),
                            printable(r.failure.as_ref().map_or("", |f| f.1.as_str()), 300),
                            task.map(|l| format!(" — push task: {l}"))
                                .unwrap_or_default()
                        )),
                        (Verdict::Push { to, .. }, _) => Ran::Done(format!(
                            "Done: pushed {} to {shown}{}",
                            to.short(),
                            task.map(|l| format!(" — push task: {l}"))
                                .unwrap_or_default()
                        )),
                        (Verdict::NothingNew { .. }, _) => {
                            Ran::Done(format!("Done: {}", p.plan.verdict_text()))
                        }
                        (Verdict::Hold(_) | Verdict::Unknown { .. }, _) => {
                            Ran::Held(p.plan.verdict_text())
                        }
                    }
                }
            }
        }
        Verb::Rollback { cluster, to } => {
            let shown = env.config.label(cluster);
            let to = to.as_ref().map(|r| r.to_string());
            match super::rollback::run(env, cluster.as_str(), to.as_deref(), false, true).await {
                Ok(Outcome::Success) => {
                    let last = env
                        .state
                        .cluster(cluster)
                        .history()
                        .ok()
                        .and_then(|mut h| h.pop());
                    Ran::Done(format!(
                        "Done: rolled back {shown}{}{}",
                        last.as_ref()
                            .and_then(|r| r.release.as_deref())
                            .map(|r| format!(" to {r}"))
                            .unwrap_or_default(),
                        last.and_then(|r| r.push_task_link)
                            .map(|l| format!(" — rollback task: {l}"))
                            .unwrap_or_default()
                    ))
                }
                Ok(Outcome::Busy) => Ran::Held(format!("another push of {shown} is running")),
                Ok(_) => Ran::Failed(format!(
                    "the rollback of {shown} failed on some hosts; see its rollback task"
                )),
                Err(err) => Ran::Failed(printable(&format!("{err:#}"), 500)),
            }
        }
        Verb::Lock { cluster } => {
            let shown = env.config.label(cluster);
            let Some(c) = env.config.clusters.get(cluster) else {
                return Ran::Failed(format!("{shown} is not configured"));
            };
            let key = format!("request-lock-{gid}-{}", e.attempt);
            let op = Op::CreateTask {
                key: key.clone(),
                name: format!("locked by a request of {author}"),
                notes: format!(
                    "{author} asked for this lock in Asana: {link}\n\nComplete this task (or write `{}unlock {cluster}` in the requests project) to let {shown} push again.\nrequest: {key}\n",
                    env.config.named_app().map(|a| format!("{a} ")).unwrap_or_default()
                ),
                html_notes: None,
                project: c.lock_project.to_string(),
                workspace: None,
                assignee: None,
            };
            e.locks.push((cluster.to_string(), key.clone()));
            match ob.submit(run_id, op).await {
                Delivery::Applied(Some(made)) => {
                    Ran::Done(format!("Done: locked {shown} — lock task: {}", made.link))
                }
                Delivery::Applied(None) | Delivery::Queued => Ran::Done(format!(
                    "Done: locked {shown} (the lock task is queued: Asana did not take it yet)"
                )),
                Delivery::Dropped(why) => {
                    Ran::Failed(format!("Asana refused the lock task: {why}"))
                }
            }
        }
        Verb::Unlock { cluster } => {
            let shown = env.config.label(cluster);
            let open: Vec<String> = journal
                .values()
                .flat_map(|x| x.locks.iter())
                .filter(|(c, _)| c == cluster.as_str())
                .map(|(_, k)| k.clone())
                .filter(|k| !journal.values().any(|x| x.unlocked.contains(k)))
                .collect();
            if open.is_empty() {
                return Ran::Failed(format!(
                    "no lock task made by a request is open for {shown}; a lock made otherwise is completed in Asana (or with `pushgate unlock TASK_GID`)"
                ));
            }
            for k in &open {
                let task = match ob.created(k) {
                    Some(c) => TaskRef::Gid(c.gid.clone()),
                    None => TaskRef::Created(k.clone()),
                };
                ob.submit(
                    run_id,
                    Op::Comment {
                        task: task.clone(),
                        text: format!("Unlocked by a request of {author}: {link}"),
                    },
                )
                .await;
                ob.submit(run_id, Op::Complete { task }).await;
                e.unlocked.push(k.clone());
            }
            Ran::Done(format!(
                "Done: unlocked {shown} ({})",
                crate::domain::text::count(open.len(), "lock task")
            ))
        }
    }
}

/// The requests project and every request its journal holds (by task
/// gid), newest change first.
pub struct Journaled {
    pub project: crate::domain::model::ProjectGid,
    pub requests: Vec<(String, Entry)>,
}

/// What the journal holds (no Asana call): what the on-call page lists.
/// `None` without a `[requests]` table.
pub fn seen(env: &Env) -> Result<Option<Journaled>, StateError> {
    let Some(settings) = &env.config.requests else {
        return Ok(None);
    };
    let mut requests: Vec<(String, Entry)> = load(&requests_state(env))?.into_iter().collect();
    requests.sort_by(|a, b| b.1.at.cmp(&a.1.at).then_with(|| b.0.cmp(&a.0)));
    Ok(Some(Journaled {
        project: settings.project.clone(),
        requests,
    }))
}

/// `pushgate requests`: every request seen and where it stands, from the
/// journal (no Asana call).
pub fn list(env: &Env, json: bool) -> anyhow::Result<Outcome> {
    let Some(settings) = &env.config.requests else {
        return Err(UsageError("no [requests] section in the config".into()).into());
    };
    let journal = load(&requests_state(env))?;
    if json {
        super::print_json(&json!({
            "project": settings.project.as_str(),
            "requests": journal.iter().map(|(gid, e)| json!({
                "gid": gid,
                "name": e.name,
                "link": e.link,
                "standing": e.standing,
                "attempt": e.attempt,
                "at": e.at,
                "outcome": e.outcome,
            })).collect::<Vec<_>>(),
        }));
        return Ok(Outcome::Success);
    }
    println!(
        "requests project {}: {}",
        settings.project,
        crate::domain::text::count(journal.len(), "request")
    );
    for (gid, e) in &journal {
        println!(
            "- {gid} \"{}\": {}{} {}{}",
            printable(&e.name, 80),
            e.standing,
            if e.attempt > 0 {
                format!(" (attempt {})", e.attempt)
            } else {
                String::new()
            },
            e.link
                .as_deref()
                .map(|l| printable(l, 200))
                .unwrap_or_default(),
            e.outcome
                .as_deref()
                .map(|o| format!("\n    {}", printable(o, 300)))
                .unwrap_or_default()
        );
    }
    Ok(Outcome::Success)
}
