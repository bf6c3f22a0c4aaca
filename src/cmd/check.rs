//! `pushgate check`: is everything a push needs there and right, end to
//! end? The config (already loaded), the state directory, the token, every
//! configured project and the crash field, the webhook, the repository
//! (listed like `git ls-remote`, nothing fetched), the bastion's rsync and
//! ssh, and every host: reached, its target writable, its rsync new
//! enough. One line per check; exit 1 if any failed.
//!
//! It changes nothing a push would not: it creates the state directory
//! and each host's `TARGET/releases` if they are missing, and writes and
//! removes one empty file in each. It sends no notification.

use std::time::Duration;

use serde_json::json;

use super::{Env, Outcome};
use crate::adapters::git::FetchAuth;
use crate::adapters::hosts::Fleet;
use crate::domain::model::{Host, ProjectGid};
use crate::domain::text::describe;
use crate::domain::text::printable;

/// How long one host, the repository or the bastion's rsync may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

struct Line {
    what: String,
    ok: bool,
    detail: String,
}

impl Line {
    fn ok(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line {
            what: what.into(),
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line {
            what: what.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

pub async fn run(
    envs: &[&Env],
    config_path: &std::path::Path,
    json: bool,
) -> anyhow::Result<Outcome> {
    let clusters: usize = envs.iter().map(|e| e.config.clusters.len()).sum();
    let mut lines = vec![Line::ok(
        "config",
        if envs.len() == 1 {
            format!("{} ({clusters} clusters)", config_path.display())
        } else {
            format!(
                "{} ({} apps, {clusters} clusters)",
                config_path.display(),
                envs.len()
            )
        },
    )];
    for env in envs {
        let mut own = app_lines(env).await;
        if envs.len() > 1 {
            for l in &mut own {
                l.what = format!("{}: {}", env.config.app, l.what);
            }
        }
        lines.extend(own);
    }
    print_lines(&lines, json);
    Ok(if lines.iter().all(|l| l.ok) {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// Everything `check` asks of one app.
async fn app_lines(env: &Env) -> Vec<Line> {
    let config = &env.config;
    let mut lines = Vec::new();
    lines.push(state_dir(env));
    lines.extend(asana(env).await);
    if let Some(n) = &config.notify {
        let what = "notify webhook";
        lines.push(match crate::watch::notify::Webhook::from_env(n) {
            Ok(Some(_)) => {
                let host = std::env::var(&n.slack_webhook_env)
                    .ok()
                    .and_then(|u| reqwest::Url::parse(u.trim()).ok())
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                Line::ok(
                    what,
                    format!(
                        "${} is set (a webhook on {host}); no message was sent",
                        n.slack_webhook_env
                    ),
                )
            }
            Ok(None) => Line::fail(
                what,
                format!(
                    "${} is not set in this environment: nothing would be sent",
                    n.slack_webhook_env
                ),
            ),
            Err(why) => Line::fail(what, why),
        });
    }
    lines.push(repository(env).await);
    lines.extend(hosts(env).await);
    lines
}

fn print_lines(lines: &[Line], json: bool) {
    let ok = lines.iter().all(|l| l.ok);
    if json {
        let checks: Vec<_> = lines
            .iter()
            .map(|l| json!({ "check": l.what, "ok": l.ok, "detail": l.detail }))
            .collect();
        super::print_json(&json!({ "ok": ok, "checks": checks }));
    } else {
        let paint = crate::cmd::term::Paint::stdout();
        for l in lines {
            let mark = if l.ok {
                paint.good("ok   ")
            } else {
                paint.bad("FAIL ")
            };
            println!("{mark} {}: {}", l.what, printable(&l.detail, 400));
        }
        let failed = lines.iter().filter(|l| !l.ok).count();
        if failed == 0 {
            println!(
                "{}",
                paint.good(&format!("all {} checks passed", lines.len()))
            );
        } else {
            println!(
                "{}",
                paint.bad(&format!("{failed} of {} checks failed", lines.len()))
            );
        }
    }
}

fn state_dir(env: &Env) -> Line {
    let dir = env.state.root();
    let probe = dir.join(format!(".pushgate-check.{}", std::process::id()));
    let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b""));
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => Line::ok("state dir", format!("{} is writable", dir.display())),
        Err(e) => Line::fail("state dir", format!("{}: {e}", dir.display())),
    }
}

async fn asana(env: &Env) -> Vec<Line> {
    let mut lines = Vec::new();
    lines.push(match env.client.me().await {
        Ok(u) => Line::ok(
            "token",
            format!(
                "{} <{}>",
                u.name.unwrap_or_default(),
                u.email.unwrap_or_default()
            ),
        ),
        Err(e) => Line::fail("token", describe(&e)),
    });
    let mut projects: Vec<(String, &ProjectGid)> = Vec::new();
    for c in env.config.clusters.values() {
        projects.push((format!("{} lock project", c.name), &c.lock_project));
        projects.push((format!("{} push project", c.name), &c.push_project));
    }
    if let Some(crash) = &env.config.crash {
        projects.push(("crash project".into(), &crash.project));
    }
    for (what, gid) in projects {
        lines.push(match env.client.get_project(gid).await {
            Ok(p) => Line::ok(what, format!("{gid} \"{}\"", p.name.unwrap_or_default())),
            Err(e) => Line::fail(what, format!("{gid}: {}", describe(&e))),
        });
    }
    if let Some(crash) = &env.config.crash {
        let what = format!("crash field \"{}\"", crash.fix_commit_field);
        lines.push(match env.client.custom_field_settings(&crash.project).await {
            Ok(settings) => {
                let field = settings.iter().find(|s| {
                    s.custom_field.name.as_deref() == Some(crash.fix_commit_field.as_str())
                });
                match field {
                    Some(s) if s.custom_field.resource_subtype.as_deref() == Some("text") => {
                        Line::ok(what, format!("text field {} on the crash project", s.custom_field.gid))
                    }
                    Some(s) => Line::fail(what, format!("field {} is not a text field", s.custom_field.gid)),
                    None => Line::ok(
                        what,
                        "not on the crash project; fixes are read from `Fixed-in:` notes lines only",
                    ),
                }
            }
            Err(e) => Line::fail(what, describe(&e)),
        });
    }
    lines
}

/// The repository, listed like `git ls-remote`: reachable with the
/// configured credentials, and its branch there.
async fn repository(env: &Env) -> Line {
    let repo = &env.config.repo;
    let what = "repository";
    let url = repo.url.clone();
    let auth = FetchAuth {
        ssh_key: repo.ssh_key.clone(),
    };
    let listed = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || crate::adapters::git::ls_remote(&url, &auth)),
    )
    .await;
    let shown = crate::adapters::git::redact_url(&repo.url);
    let refs = match listed {
        Err(_) => {
            return Line::fail(
                what,
                format!(
                    "{shown}: no answer within {}",
                    humantime::format_duration(CHECK_TIMEOUT)
                ),
            )
        }
        Ok(Err(e)) => return Line::fail(what, format!("{shown}: {e}")),
        Ok(Ok(Err(e))) => return Line::fail(what, describe(&e)),
        Ok(Ok(Ok(refs))) => refs,
    };
    let branch = format!("refs/heads/{}", repo.branch);
    match refs.iter().find(|(name, _)| *name == branch) {
        Some((_, sha)) => Line::ok(
            what,
            format!(
                "{shown}: branch {} at {} ({} branches and tags)",
                repo.branch,
                &sha[..7.min(sha.len())],
                refs.len()
            ),
        ),
        None => Line::fail(
            what,
            format!(
                "{shown}: reachable, but it has no branch `{}` (repo.branch)",
                printable(&repo.branch, 80)
            ),
        ),
    }
}

/// The bastion's rsync and ssh, then every host of every cluster.
async fn hosts(env: &Env) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut any_ssh = false;
    let mut fleets = Vec::new();
    for c in env.config.clusters.values() {
        match c.read_hosts() {
            Ok(hosts) => {
                any_ssh |= hosts.iter().any(|h| matches!(h, Host::Ssh { .. }));
                lines.push(Line::ok(
                    format!("{} hosts", c.name),
                    format!("{} host(s)", hosts.len()),
                ));
                fleets.push((c, hosts));
            }
            Err(e) => lines.push(Line::fail(format!("{} hosts", c.name), e)),
        }
    }
    lines.push(local_tool(env, &["rsync", "--version"], "bastion rsync").await);
    if any_ssh {
        lines.push(local_tool(env, &["ssh", "-V"], "bastion ssh").await);
    }
    // The bittorrent transport seeds with aria2c and, unless it points at
    // a tracker of its own, runs opentracker (the hosts' aria2c is asked
    // of each host below).
    if let crate::config::Transport::BitTorrent { run_tracker, .. } = &env.config.sync.transport {
        lines.push(local_tool(env, &["aria2c", "--version"], "bastion aria2c").await);
        if *run_tracker {
            lines.push(on_path("opentracker", "bastion opentracker"));
        }
    }
    // One attempt per host, bounded: check reports, it does not insist.
    let mut settings = env.config.sync.clone();
    settings.host_timeout = settings.host_timeout.min(CHECK_TIMEOUT);
    settings.retries = 0;
    for (c, hosts) in &fleets {
        let fleet = Fleet::new(hosts, c, &settings, &env.child_env);
        let checked = fleet.check().await;
        fleet.close().await;
        for r in checked {
            let what = format!("{} host {}", c.name, r.host);
            lines.push(match r.outcome {
                Ok(detail) => Line::ok(what, detail),
                Err(e) => Line::fail(what, e.to_string()),
            });
        }
    }
    lines
}

/// A program on the bastion: `rsync --version` must say 3.1.3 or newer;
/// `ssh -V` must run.
async fn local_tool(env: &Env, argv: &[&str], what: &str) -> Line {
    let args: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    let out = match crate::adapters::process::run(&args, None, CHECK_TIMEOUT, &env.child_env).await
    {
        Ok(o) => o,
        Err(e) => return Line::fail(what, e.to_string()),
    };
    if !out.success() {
        return Line::fail(what, out.failure());
    }
    if argv[0] == "aria2c" {
        let v = out.stdout.lines().next().unwrap_or("").trim().to_owned();
        return Line::ok(what, printable(&v, 80));
    }
    if argv[0] == "rsync" {
        match crate::adapters::hosts::argv::check_rsync(out.stdout.lines().next().unwrap_or("")) {
            Ok(v) => Line::ok(what, v),
            Err(e) => Line::fail(what, e),
        }
    } else {
        // `ssh -V` writes its version on stderr.
        let v = out.stderr.lines().next().unwrap_or("").trim().to_owned();
        Line::ok(what, printable(&v, 80))
    }
}

/// A program that must be on the bastion's `PATH` (one that has no
/// version flag to ask).
fn on_path(program: &str, what: &str) -> Line {
    let path = std::env::var_os("PATH").unwrap_or_default();
    match std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
    {
        Some(p) => Line::ok(what, p.display().to_string()),
        None => Line::fail(
            what,
            format!("`{program}` is not installed or not on PATH (Debian's `{program}`)"),
        ),
    }
}
