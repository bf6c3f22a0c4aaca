//! `pushgate demo`: the newcomer's first run. Starts the sandbox in process
//! (seeded projects, data under the demo directory), creates a sample git
//! repository and three `local:` hosts per cluster, writes a config that
//! points at all of it, and pushes beta on a short schedule until Ctrl-C,
//! printing where to look, how to hold a push and how to ship a new commit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{shutdown_signal, Env};
use crate::adapters::asana::{Client, Sleeper, Token};
use crate::config::Config;
use crate::sandbox::{seed, Sandbox};

const TOKEN_ENV: &str = "PUSHGATE_DEMO_TOKEN";

fn demo_config(base_url: &str, approvals: &str, requests: &str) -> String {
    format!(
        r#"# Written by `pushgate demo`. Its sandbox serves {base_url} while the demo runs.
state_dir = "state"

[asana]
base_url = "{base_url}"
token_env = "{TOKEN_ENV}"
workspace = "{ws}"

[repo]
url = "sample-repo"
branch = "main"

[build]
command = ["sh", "build.sh"]
output = "dist"
timeout = "1m"

[sync]
keep_releases = 3
host_timeout = "1m"

[crash]
project = "{crash}"

[clusters.beta]
schedule = "0 */15 * * * *"
timezone = "America/Los_Angeles"
lock_project = "{lock_beta}"
push_project = "{push_beta}"
hosts = ["local:{{DIR}}/hosts/beta-1", "local:{{DIR}}/hosts/beta-2", "local:{{DIR}}/hosts/beta-3"]

[clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
lock_project = "{lock_prod}"
push_project = "{push_prod}"
hosts = ["local:{{DIR}}/hosts/prod-1", "local:{{DIR}}/hosts/prod-2", "local:{{DIR}}/hosts/prod-3"]
source = "cluster:beta"
min_soak = "0s"

# prod ships only what a person approved in Asana (docs/approvals.md).
[clusters.prod.approval]
project = "{approvals}"
approvers = ["{approver}"]

# Requests written as tasks in Asana (docs/requests.md).
[requests]
project = "{requests}"
allowed = ["{approver}"]
"#,
        approver = seed::APPROVER_EMAIL,
        ws = seed::WORKSPACE,
        crash = seed::CRASH,
        lock_beta = seed::LOCK_BETA,
        push_beta = seed::PUSH_BETA,
        lock_prod = seed::LOCK_PROD,
        push_prod = seed::PUSH_PROD,
    )
}

/// Creates a project for the demo (approvals, requests); its gid.
async fn project(base_url: &str, token: &str, name: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = reqwest::Client::new()
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

/// The sample repository's files: a static site and the script that builds it.
const SAMPLE_FILES: &[(&str, &str)] = &[
    (
        "build.sh",
        "#!/bin/sh\n# The demo's build: copies the site into dist/ and stamps it.\nset -eu\nrm -rf dist\nmkdir -p dist\ncp -R site/. dist/\necho \"built $(date -u +%Y-%m-%dT%H:%M:%SZ)\" > dist/BUILD\n",
    ),
    ("site/index.html", "<h1>Hello from the pushgate demo</h1>\n"),
    ("site/VERSION", "1.0\n"),
];

/// Creates the sample repository with a few commits, unless it exists.
fn sample_repo(path: &Path) -> anyhow::Result<()> {
    if path.join(".git").exists() {
        return Ok(());
    }
    let repo = git2::Repository::init_opts(
        path,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .with_context(|| format!("cannot create the sample repository {}", path.display()))?;
    let sig = git2::Signature::now("Demo Engineer", "demo@example.com")?;
    let steps: &[(&str, &[(&str, &str)])] = &[
        ("Add the site and its build script", SAMPLE_FILES),
        (
            "Add an about page",
            &[("site/about.html", "<p>About the demo</p>\n")],
        ),
        ("Release 1.1", &[("site/VERSION", "1.1\n")]),
    ];
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
) -> anyhow::Result<()> {
    require_rsync()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let repo = dir.join("sample-repo");
    sample_repo(&repo)?;
    let sandbox = Sandbox::start(listen, Some(&dir.join("sandbox.json"))).await?;
    let base_url = sandbox.base_url();
    let token = sandbox.token();
    let approvals = project(&base_url, &token, "Prod Approvals").await?;
    let requests = project(&base_url, &token, "Release Requests").await?;
    let approver_token = sandbox.token_of(seed::APPROVER_EMAIL).unwrap_or_default();
    let config_path = dir.join("pushgate.toml");
    let text =
        demo_config(&base_url, &approvals, &requests).replace("{DIR}", &dir.display().to_string());
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let url = reqwest::Url::parse(&base_url)?;
    let client = Client::new(
        &url,
        Token::new(token.clone(), "the demo sandbox"),
        config.asana.retry.clone(),
        Sleeper::Tokio,
    )?;
    let env = Env::from_parts(config, client);
    env.observer.show_progress(crate::watch::progress::wanted());
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pushgate".into());
    let cfg = config_path.display();
    let hosts = dir.join("hosts");

    println!("pushgate demo");
    println!("  sandbox Asana:  {base_url}");
    println!("  token:          {token}");
    println!("  config:         {cfg}");
    println!("  sample repo:    {}", repo.display());
    println!(
        "  beta's hosts:   {}/beta-{{1,2,3}}  (each `current` points at a release)",
        hosts.display()
    );
    println!();
    println!("Watch what beta runs:");
    println!(
        "  ls -l {0}/beta-*/current; cat {0}/beta-1/current/VERSION",
        hosts.display()
    );
    println!("Ship a new commit on the next push:");
    println!(
        "  echo 1.2 > {0}/site/VERSION && git -C {0} -c user.name=You -c user.email=you@example.com commit -qam 'Release 1.2'",
        repo.display()
    );
    println!("Hold beta's next push by adding a lock task (paste into another terminal):");
    println!(
        "  curl -s -X POST '{base_url}/tasks' -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"name\":\"Hold beta: demo lock\",\"projects\":[\"{}\"]}}}}'",
        seed::LOCK_BETA
    );
    println!("Then see it, and lift it, with pushgate itself:");
    println!("  export {TOKEN_ENV}={token}");
    println!("  {exe} --config {cfg} status");
    println!("  {exe} --config {cfg} unlock <gid printed by curl>");
    println!("  {exe} --config {cfg} history beta");
    println!("  {exe} --config {cfg} check");
    println!();
    println!("prod ships what beta runs once Avery Approver approves it in Asana:");
    println!("  {exe} --config {cfg} approvals prod");
    println!("  (each push of prod below prints the command that approves its pending request)");
    println!("Ask for a rollback of beta from Asana, as Avery Approver (the next tick runs it and comments):");
    println!(
        "  curl -s -X POST '{base_url}/tasks' -H 'Authorization: Bearer {approver_token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"name\":\"rollback beta\",\"projects\":[\"{requests}\"]}}}}'"
    );
    println!("  {exe} --config {cfg} requests");
    println!();
    println!(
        "Pushing beta, then prod, every {} (Ctrl-C stops):",
        humantime::format_duration(every)
    );
    let mut shown = String::new();
    let prod_name = crate::domain::model::ClusterName::parse("prod").context("prod")?;

    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(every);
    let mut done = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = interval.tick() => {}
        }
        println!("[{}]", chrono::Utc::now().format("%H:%M:%S"));
        if let Err(e) = super::requests::poll(&[&env], chrono::Utc::now(), true).await {
            println!("requests: {e:#}");
        }
        match super::push::run(&env, "beta", None, false, false, Default::default()).await {
            Ok(_) => {}
            Err(e) => println!("push failed: {e:#}"),
        }
        match super::push::run(&env, "prod", None, false, false, Default::default()).await {
            Ok(_) => {}
            Err(e) => println!("push failed: {e:#}"),
        }
        let prod = env.state.cluster(&prod_name);
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
    sandbox.stop().await;
    Ok(())
}
