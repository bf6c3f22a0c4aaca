//! `pushgate demo`: the newcomer's first run. Starts the sandbox in process
//! (seeded projects, data under the demo directory), writes a config that
//! points at it, and decides beta's push on a short schedule until Ctrl-C,
//! printing where to look and how to lock and unlock.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{shutdown_signal, Env};
use crate::asana::{Client, Sleeper, Token};
use crate::config::Config;
use crate::sandbox::{seed, Sandbox};
use crate::{decide, gather};

const TOKEN_ENV: &str = "PUSHGATE_DEMO_TOKEN";

fn demo_config(base_url: &str) -> String {
    format!(
        r#"# Written by `pushgate demo`. Its sandbox serves {base_url} while the demo runs.
state_dir = "state"

[asana]
base_url = "{base_url}"
token_env = "{TOKEN_ENV}"
workspace = "{ws}"

[repo]
url = "repo"
branch = "main"

[build]
command = ["true"]
output = "."

[crash]
project = "{crash}"

[clusters.beta]
schedule = "0 */15 * * * *"
lock_project = "{lock_beta}"
push_project = "{push_beta}"
hosts = ["local:{{DIR}}/hosts/beta-1", "local:{{DIR}}/hosts/beta-2", "local:{{DIR}}/hosts/beta-3"]

[clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
lock_project = "{lock_prod}"
push_project = "{push_prod}"
hosts = ["local:{{DIR}}/hosts/prod-1", "local:{{DIR}}/hosts/prod-2", "local:{{DIR}}/hosts/prod-3"]
"#,
        ws = seed::WORKSPACE,
        crash = seed::CRASH,
        lock_beta = seed::LOCK_BETA,
        push_beta = seed::PUSH_BETA,
        lock_prod = seed::LOCK_PROD,
        push_prod = seed::PUSH_PROD,
    )
}

pub async fn run(
    dir: &Path,
    every: Duration,
    ticks: Option<u32>,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let sandbox = Sandbox::start(listen, Some(&dir.join("sandbox.json"))).await?;
    let base_url = sandbox.base_url();
    let token = sandbox.token();
    let config_path = dir.join("pushgate.toml");
    let text = demo_config(&base_url).replace("{DIR}", &dir.display().to_string());
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
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pushgate".into());

    println!("pushgate demo");
    println!("  sandbox Asana:  {base_url}");
    println!("  token:          {token}");
    println!("  config:         {}", config_path.display());
    println!("  sandbox data:   {}", dir.join("sandbox.json").display());
    println!();
    println!("Hold beta's next push by adding a lock task (paste into another terminal):");
    println!(
        "  curl -s -X POST '{base_url}/tasks' -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{{\"data\":{{\"name\":\"Hold beta: demo lock\",\"projects\":[\"{}\"]}}}}'",
        seed::LOCK_BETA
    );
    println!("Then see it, and lift it, with pushgate itself:");
    println!("  export {TOKEN_ENV}={token}");
    println!("  {exe} --config {} status", config_path.display());
    println!(
        "  {exe} --config {} unlock <gid printed by curl>",
        config_path.display()
    );
    println!();
    println!(
        "Deciding beta's push every {} (Ctrl-C stops):",
        humantime::format_duration(every)
    );

    let beta = env.cluster("beta")?.clone();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(every);
    let mut done = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = interval.tick() => {}
        }
        let facts = gather::facts(&env.client, &beta, env.fix_field()).await;
        let plan = decide::plan(&facts);
        println!("[{}] {plan}", chrono::Utc::now().format("%H:%M:%S"));
        done += 1;
        if ticks.is_some_and(|t| done >= t) {
            break;
        }
    }
    sandbox.stop().await;
    Ok(())
}
