//! `pushgate check`: is everything pushgate needs reachable and right?

use serde_json::json;

use super::{Env, Outcome};
use crate::gather::describe;
use crate::model::ProjectGid;

struct Line {
    what: String,
    ok: bool,
    detail: String,
}

pub async fn run(env: &Env, config_path: &std::path::Path, json: bool) -> anyhow::Result<Outcome> {
    let mut lines = vec![Line {
        what: "config".into(),
        ok: true,
        detail: format!(
            "{} ({} clusters)",
            config_path.display(),
            env.config.clusters.len()
        ),
    }];
    for c in env.config.clusters.values() {
        let line = match c.read_hosts() {
            Ok(hosts) => Line {
                what: format!("{} hosts", c.name),
                ok: true,
                detail: format!("{} host(s)", hosts.len()),
            },
            Err(e) => Line {
                what: format!("{} hosts", c.name),
                ok: false,
                detail: e,
            },
        };
        lines.push(line);
    }
    match env.client.me().await {
        Ok(u) => lines.push(Line {
            what: "token".into(),
            ok: true,
            detail: format!(
                "{} <{}>",
                u.name.unwrap_or_default(),
                u.email.unwrap_or_default()
            ),
        }),
        Err(e) => lines.push(Line {
            what: "token".into(),
            ok: false,
            detail: describe(&e),
        }),
    }
    let mut projects: Vec<(String, &ProjectGid)> = Vec::new();
    for c in env.config.clusters.values() {
        projects.push((format!("{} lock project", c.name), &c.lock_project));
        projects.push((format!("{} push project", c.name), &c.push_project));
    }
    if let Some(crash) = &env.config.crash {
        projects.push(("crash project".into(), &crash.project));
    }
    for (what, gid) in projects {
        let line = match env.client.get_project(gid).await {
            Ok(p) => Line {
                what,
                ok: true,
                detail: format!("{gid} \"{}\"", p.name.unwrap_or_default()),
            },
            Err(e) => Line {
                what,
                ok: false,
                detail: format!("{gid}: {}", describe(&e)),
            },
        };
        lines.push(line);
    }
    if let Some(crash) = &env.config.crash {
        let what = format!("crash field \"{}\"", crash.fix_commit_field);
        let line = match env.client.custom_field_settings(&crash.project).await {
            Ok(settings) => {
                let field = settings.iter().find(|s| {
                    s.custom_field.name.as_deref() == Some(crash.fix_commit_field.as_str())
                });
                match field {
                    Some(s) if s.custom_field.resource_subtype.as_deref() == Some("text") => {
                        Line { what, ok: true, detail: format!("text field {} on the crash project", s.custom_field.gid) }
                    }
                    Some(s) => Line {
                        what,
                        ok: false,
                        detail: format!("field {} is not a text field", s.custom_field.gid),
                    },
                    None => Line {
                        what,
                        ok: true,
                        detail: "not on the crash project; fixes are read from `Fixed-in:` notes lines only".into(),
                    },
                }
            }
            Err(e) => Line {
                what,
                ok: false,
                detail: describe(&e),
            },
        };
        lines.push(line);
    }
    let ok = lines.iter().all(|l| l.ok);
    if json {
        let checks: Vec<_> = lines
            .iter()
            .map(|l| json!({ "check": l.what, "ok": l.ok, "detail": l.detail }))
            .collect();
        super::print_json(&json!({ "ok": ok, "checks": checks }));
    } else {
        for l in &lines {
            println!(
                "{:<5} {}: {}",
                if l.ok { "ok" } else { "FAIL" },
                l.what,
                crate::plan::printable(&l.detail, 400)
            );
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
