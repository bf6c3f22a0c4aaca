//! `pushgate demo`: the newcomer's first run. Starts the sandbox in process
//! (seeded projects, data under the demo directory), creates two sample
//! apps — `web`, a site with beta and prod, and `docs`, a small second one
//! with beta only — each its own git repository and `local:` hosts, writes
//! one config of both (`[apps.web]`, `[apps.docs]`) that points at all of
//! it, and pushes on a short schedule until Ctrl-C, printing where to look,
//! how to hold a push and how to ship a new commit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{shutdown_signal, Env};
use crate::adapters::asana::{Client, Sleeper, Token};
use crate::config::ConfigFile;
use crate::sandbox::{seed, Sandbox};

const TOKEN_ENV: &str = "PUSHGATE_DEMO_TOKEN";

/// The gids of the projects the demo made for itself (the seeded ones
/// are `web`'s).
struct Made {
    approvals: String,
    requests: String,
    docs_lock: String,
    docs_push: String,
}

fn demo_config(base_url: &str, made: &Made) -> String {
    format!(
        r#"# Written by `pushgate demo`. Its sandbox serves {base_url} while the demo runs.
# Two apps on one bastion: each has its repository, build, clusters and
# state (state/apps/NAME/); [asana], [sync] and [requests] are shared
# (docs/configuration.md, "Many apps").
state_dir = "state"
max_concurrent_pushes = 2

[asana]
base_url = "{base_url}"
token_env = "{TOKEN_ENV}"
workspace = "{ws}"

[sync]
keep_releases = 3
host_timeout = "1m"

# Requests written as tasks in Asana, naming their app (docs/requests.md).
[requests]
project = "{requests}"
allowed = ["{approver}"]

# web: the sample site, pushed to beta and, once approved, to prod.
[apps.web.repo]
url = "sample-repo"
branch = "main"

[apps.web.build]
command = ["sh", "build.sh"]
output = "dist"
timeout = "1m"

[apps.web.crash]
project = "{crash}"

[apps.web.clusters.beta]
schedule = "0 */15 * * * *"
timezone = "America/Los_Angeles"
lock_project = "{lock_beta}"
push_project = "{push_beta}"
hosts = ["local:{{DIR}}/hosts/beta-1", "local:{{DIR}}/hosts/beta-2", "local:{{DIR}}/hosts/beta-3"]

[apps.web.clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
lock_project = "{lock_prod}"
push_project = "{push_prod}"
hosts = ["local:{{DIR}}/hosts/prod-1", "local:{{DIR}}/hosts/prod-2", "local:{{DIR}}/hosts/prod-3"]
source = "cluster:beta"
min_soak = "0s"

# prod ships only what a person approved in Asana (docs/approvals.md).
[apps.web.clusters.prod.approval]
project = "{approvals}"
approvers = ["{approver}"]

# docs: a second, smaller app with its own projects and hosts.
[apps.docs.repo]
url = "docs-repo"
branch = "main"

[apps.docs.build]
command = ["sh", "-c", "rm -rf dist && cp -R pages dist"]
output = "dist"
timeout = "1m"

[apps.docs.clusters.beta]
schedule = "0 */15 * * * *"
timezone = "America/Los_Angeles"
lock_project = "{docs_lock}"
push_project = "{docs_push}"
hosts = ["local:{{DIR}}/hosts/docs-beta-1", "local:{{DIR}}/hosts/docs-beta-2"]
"#,
        approver = seed::APPROVER_EMAIL,
        ws = seed::WORKSPACE,
        crash = seed::CRASH,
        lock_beta = seed::LOCK_BETA,
        push_beta = seed::PUSH_BETA,
        lock_prod = seed::LOCK_PROD,
        push_prod = seed::PUSH_PROD,
        approvals = made.approvals,
        requests = made.requests,
        docs_lock = made.docs_lock,
        docs_push = made.docs_push,
    )
}

/// The demo's own project named `name` (approvals, requests, `docs`'s):
/// the one an earlier run made, else a new one; its gid.
async fn project(base_url: &str, token: &str, name: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let listed: serde_json::Value = http
        .get(format!("{base_url}/projects"))
        .query(&[("workspace", seed::WORKSPACE), ("limit", "100")])
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let known = listed["data"].as_array().and_then(|ps| {
        ps.iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["gid"].as_str())
    });
    if let Some(gid) = known {
        return Ok(gid.to_owned());
    }
    let v: serde_json::Value = http
        .post(format!("{base_url}/projects"))
        .bearer_auth(token)
        .json(&serde_json::json!({"data": {"name": name, "workspace": seed::WORKSPACE}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["data"]["gid"]
        .as_str()
        .map(str::to_owned)
        .context("the sandbox did not create the demo's project")
}

type Steps<'a> = &'a [(&'a str, &'a [(&'a str, &'a str)])];

/// `web`: a static site and the script that builds it, in three commits.
const WEB: Steps<'static> = &[
    (
        "Add the site and its build script",
        &[
            (
                "build.sh",
                "#!/bin/sh\n# The demo's build: copies the site into dist/ and stamps it.\nset -eu\nrm -rf dist\nmkdir -p dist\ncp -R site/. dist/\necho \"built $(date -u +%Y-%m-%dT%H:%M:%SZ)\" > dist/BUILD\n",
            ),
            ("site/index.html", "<h1>Hello from the pushgate demo</h1>\n"),
            ("site/VERSION", "1.0\n"),
        ],
    ),
    (
        "Add an about page",
        &[("site/about.html", "<p>About the demo</p>\n")],
    ),
    ("Release 1.1", &[("site/VERSION", "1.1\n")]),
];

/// `docs`: two pages.
const DOCS: Steps<'static> = &[
    (
        "Start the docs",
        &[("pages/index.html", "<h1>Demo docs</h1>\n")],
    ),
    (
        "Document the install",
        &[("pages/install.html", "<p>cargo install pushgate</p>\n")],
    ),
];

/// Creates a sample repository with `steps` as its commits, unless it exists.
fn sample_repo(path: &Path, steps: Steps<'_>) -> anyhow::Result<()> {
    if path.join(".git").exists() {
        return Ok(());
    }
    let repo = git2::Repository::init_opts(
        path,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .with_context(|| format!("cannot create the sample repository {}", path.display()))?;
    let sig = git2::Signature::now("Demo Engineer", "demo@example.com")?;
    let mut parent: Option<git2::Oid> = None;
    for (message, files) in steps {
        for (name, body) in *files {
            let p = path.join(name);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&p, body)?;
        }
        let mut index = repo.index()?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let parents: Vec<git2::Commit> = parent
            .iter()
            .map(|p| repo.find_commit(*p))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        parent = Some(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &refs)?);
    }
    Ok(())
}

/// A demo directory from before the demo had two apps: its one app's
/// state moves into `web`'s, the upgrade `docs/operations.md` describes
/// (its repository and hosts are `web`'s as they were).
fn upgrade_one_app_demo(dir: &Path) -> anyhow::Result<()> {
    let state = dir.join("state");
    let web = state.join("apps").join("web");
    let old = crate::adapters::state::StateDir::new(&state).one_apps_state();
    if !old.is_empty() {
        std::fs::create_dir_all(&web)?;
        for p in old {
            if let Some(name) = p.file_name() {
                std::fs::rename(&p, web.join(name)).with_context(|| {
                    format!("cannot move {} into {}", p.display(), web.display())
                })?;
            }
        }
        println!("(moved this demo's one-app state into {})", web.display());
    }
    Ok(())
}

/// rsync is the one thing the demo needs beyond the Rust toolchain.
fn require_rsync() -> anyhow::Result<()> {
    match std::process::Command::new("rsync").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => anyhow::bail!(
            "the demo copies releases to its hosts with rsync, which is not installed; \
             install it (Debian/Ubuntu: `sudo apt-get install rsync`, Fedora: `sudo dnf install rsync`, macOS: `brew install rsync`) and run the demo again"
        ),
    }
}

pub async fn run(
    dir: &Path,
    every: Duration,
    ticks: Option<u32>,
    listen: SocketAddr,
    http: SocketAddr,
) -> anyhow::Result<()> {
    require_rsync()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    upgrade_one_app_demo(&dir)?;
    let repo = dir.join("sample-repo");
    sample_repo(&repo, WEB)?;
    let docs_repo = dir.join("docs-repo");
    sample_repo(&docs_repo, DOCS)?;
    let sandbox = Sandbox::start(listen, Some(&dir.join("sandbox.json"))).await?;
    let base_url = sandbox.base_url();
    let token = sandbox.token();
    let made = Made {
        approvals: project(&base_url, &token, "Prod Approvals").await?,
        requests: project(&base_url, &token, "Release Requests").await?,
        docs_lock: project(&base_url, &token, "Lock docs beta").await?,
        docs_push: project(&base_url, &token, "docs beta pushes").await?,
    };
    let approver_token = sandbox.token_of(seed::APPROVER_EMAIL).unwrap_or_default();
    let config_path = dir.join("pushgate.toml");
    let text = demo_config(&base_url, &made).replace("{DIR}", &dir.display().to_string());
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let file = ConfigFile::load(&config_path)?;
    let url = reqwest::Url::parse(&base_url)?;
    // One client for both apps, as the daemon has: its limiter keeps
    // Asana's limits for all of them.
    let client = Client::with_limits(
        &url,
        Token::new(token.clone(), "the demo sandbox"),
        file.asana.retry.clone(),
        Sleeper::Tokio,
        file.asana.limits,
    )?;
    let envs: Vec<Env> = file
        .apps
        .values()
        .map(|c| Env::from_parts(c.clone(), client.clone()))
        .collect();
    let show = crate::watch::progress::wanted();
    for env in &envs {
        env.observer.show_progress(show);
    }
    // The on-call page, as `pushgate run --http` serves it: loopback only
    // (a demo has no token), links to the sandbox's task pages.
    if !http.ip().is_loopback() {
        anyhow::bail!("--http {http}: the demo serves its page on loopback only (it has no token)");
    }
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("--http {http}: cannot listen there"))?;
    let page_url = format!("http://{}/", listener.local_addr()?);
    let router = {
        let all: Vec<&Env> = envs.iter().collect();
        let configs: Vec<&crate::config::Config> = envs.iter().map(|e| &e.config).collect();
        let metrics = std::sync::Arc::new(crate::watch::metrics::Metrics::new(&configs, &client));
        let board = std::sync::Arc::new(crate::watch::live::Board::new());
        for env in &envs {
            env.observer.set_metrics(metrics.clone());
            env.observer.set_live(board.clone());
        }
        let site = crate::cmd::page::Site {
            addr: http,
            token: None,
            asana_web: reqwest::Url::parse(&base_url)?
                .origin()
                .ascii_serialization(),
            file: file.clone(),
        };
        let page = std::sync::Arc::new(crate::cmd::page::Page::new(&all, site, board));
        crate::cmd::page::router(page, crate::watch::metrics::router(metrics))
    };
    let app = |name: &str| {
        envs.iter()
            .find(|e| e.config.app.as_str() == name)
            .with_context(|| format!("the demo config has no app {name}"))
    };
    let (web, docs) = (app("web")?, app("docs")?);
    let requests = &made.requests;
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pushgate".into());
    let cfg = config_path.display();
    let hosts = dir.join("hosts");

    println!("pushgate demo: two apps on one bastion, web (beta, prod) and docs (beta)");
    println!("  sandbox Asana:  {base_url}");
    println!("  token:          {token}");
    println!("  config:         {cfg}");
    println!(
        "  sample repos:   {} (web), {} (docs)",
        repo.display(),
        docs_repo.display()
    );
    println!(
        "  hosts:          {0}/beta-{{1,2,3}} and {0}/prod-{{1,2,3}} (web), {0}/docs-beta-{{1,2}} (docs); each `current` points at a release",
        hosts.display()
    );
    println!(
        "  on-call page:   {page_url} (every app and cluster, live pushes, history, each run)"
    );
    println!();
    println!("Watch what web's beta runs:");
    println!(
        "  ls -l {0}/beta-*/current; cat {0}/beta-1/current/VERSION",
        hosts.display()
    );
    println!("Ship a new commit of web on the next push:");
    println!(
        "  echo 1.2 > {0}/site/VERSION && git -C {0} -c user.name=You -c user.email=you@example.com commit -qam 'Release 1.2'",
        repo.display()
    );
    println!(
        "Hold web's beta by adding a lock task (paste into another terminal); docs keeps pushing:"
    );
    println!(
        "  curl -s -X POST '{base_url}/tasks' -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"name\":\"Hold beta: demo lock\",\"projects\":[\"{}\"]}}}}'",
        seed::LOCK_BETA
    );
    println!(
        "Then see it, and lift it, with pushgate itself (status and history cover both apps):"
    );
    println!("  export {TOKEN_ENV}={token}");
    println!("  {exe} --config {cfg} status");
    println!("  {exe} --config {cfg} unlock <gid printed by curl>");
    println!("  {exe} --config {cfg} history beta");
    println!("  {exe} --config {cfg} check");
    println!();
    println!("web's prod ships what its beta runs once Avery Approver approves it in Asana:");
    println!("  {exe} --config {cfg} --app web approvals prod");
    println!("  (each push of prod below prints the command that approves its pending request)");
    println!("Ask for a rollback of web's beta from Asana, as Avery Approver (a request names its app; the next tick runs it and comments):");
    println!(
        "  curl -s -X POST '{base_url}/tasks' -H 'Authorization: Bearer {approver_token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"name\":\"web rollback beta\",\"projects\":[\"{requests}\"]}}}}'"
    );
    println!("  {exe} --config {cfg} requests");
    println!();
    println!(
        "Pushing web's beta and prod and docs's beta every {} (Ctrl-C stops):",
        humantime::format_duration(every)
    );
    let mut shown = String::new();
    let prod_name = crate::domain::model::ClusterName::parse("prod").context("prod")?;
    let all: Vec<&Env> = envs.iter().collect();

    let stop = shutdown_signal();
    tokio::pin!(stop);
    // The page is served while pushes run (its live view shows them).
    let pushes = async {
        let mut interval = tokio::time::interval(every);
        let mut done = 0u32;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = interval.tick() => {}
            }
            println!("[{}]", chrono::Utc::now().format("%H:%M:%S"));
            if let Err(e) = super::requests::poll(&all, chrono::Utc::now(), true).await {
                println!("requests: {e:#}");
            }
            for (env, cluster) in [(web, "beta"), (web, "prod"), (docs, "beta")] {
                if let Err(e) =
                    super::push::run(env, cluster, None, false, false, Default::default()).await
                {
                    println!(
                        "push of {} failed: {e:#}",
                        env.config.label(&env.cluster(cluster)?.name)
                    );
                }
            }
            let prod = web.state.cluster(&prod_name);
            let pending = crate::run::approval::records(&prod)
                .ok()
                .and_then(|r| r.into_iter().rev().find(|r| !r.superseded && !r.shipped))
                .and_then(|r| r.gid);
            if let Some(gid) = pending.filter(|g| *g != shown) {
                println!(
                    "Approve prod's pending request as Avery Approver (paste into another terminal):"
                );
                println!(
                    "  curl -s -X PUT '{base_url}/tasks/{gid}' -H 'Authorization: Bearer {approver_token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"approval_status\":\"approved\"}}}}'"
                );
                shown = gid;
            }
            done += 1;
            if ticks.is_some_and(|t| done >= t) {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = std::future::IntoFuture::into_future(axum::serve(listener, router)) => r.context("the on-call page stopped")?,
        r = pushes => r?,
    }
    sandbox.stop().await;
    Ok(())
}
