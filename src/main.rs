//! The `pushgate` binary: parses the command line, runs the command, and is
//! the one place that prints errors and picks exit codes (SPEC §3).

use std::process::ExitCode;

use clap::Parser;

use pushgate::cmd::cli::{Cli, Command, CrashCommand};
use pushgate::cmd::telemetry;
use pushgate::cmd::{self, Envs, Outcome, UsageError};
use pushgate::config::{ConfigError, ConfigFile};
use pushgate::sandbox::Sandbox;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(
        cli.log_format,
        cli.verbose.min(8) as i8 - cli.quiet.min(8) as i8,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pushgate: cannot start the async runtime: {e}");
            return ExitCode::from(cmd::EXIT_FAILED);
        }
    };
    let result = runtime.block_on(run(cli));
    pushgate::adapters::hosts::remove_mux_dir();
    match result {
        Ok(outcome) => ExitCode::from(cmd::exit_code(&outcome)),
        Err(err) => {
            eprintln!("pushgate: {err:#}");
            let usage = err.downcast_ref::<ConfigError>().is_some()
                || err.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage {
                cmd::EXIT_USAGE
            } else {
                cmd::EXIT_FAILED
            })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Sandbox { listen, data } => {
            let sandbox = Sandbox::start(listen, data.as_deref()).await?;
            println!("{}", serde_json::to_string(&sandbox.info())?);
            if data.is_none() {
                tracing::warn!("no --data FILE: the sandbox's data lives in memory only");
            }
            tracing::info!(base_url = %sandbox.base_url(), "sandbox serving; Ctrl-C stops it");
            cmd::shutdown_signal().await;
            sandbox.stop().await;
            Ok(Outcome::Success)
        }
        Command::Demo {
            dir,
            every,
            ticks,
            listen,
            http,
        } => {
            cmd::demo::run(&dir, every, ticks, listen, http).await?;
            Ok(Outcome::Success)
        }
        Command::Shipped {
            commit,
            cluster,
            json,
        } => {
            // No network and no token: only the state directory and the mirror.
            let file = ConfigFile::load(&cli.config)?;
            let config = file.app(cli.app.as_deref()).map_err(UsageError)?;
            cmd::crash::shipped(config, &commit, &cluster, json)
        }
        Command::Completions { shell } => {
            cmd::docs::completions(shell);
            Ok(Outcome::Success)
        }
        Command::Man { dir } => {
            cmd::docs::man(dir.as_deref())?;
            Ok(Outcome::Success)
        }
        Command::History {
            cluster,
            limit,
            since,
            json,
        } => {
            let file = ConfigFile::load(&cli.config)?;
            cmd::history::run(
                &file,
                cli.app.as_deref(),
                &cluster,
                limit,
                since.as_deref(),
                json,
            )
        }
        command => {
            let envs = Envs::open(&cli.config).await?;
            let app = cli.app.as_deref();
            let outcome = one_of(&envs, app, command, &cli.config).await;
            envs.close().await;
            outcome
        }
    }
}

/// The commands that need the config's apps and its Asana client.
async fn one_of(
    envs: &Envs,
    app: Option<&str>,
    command: Command,
    config_path: &std::path::Path,
) -> anyhow::Result<Outcome> {
    // The command's app, for the commands about one app.
    let env = || envs.app(app);
    {
        // Progress bars only for a person watching a push or rollback.
        if matches!(
            &command,
            Command::Push {
                json: false,
                dry_run: false,
                ..
            } | Command::Rollback {
                json: false,
                dry_run: false,
                ..
            }
        ) {
            env()?
                .observer
                .show_progress(pushgate::watch::progress::wanted());
        }
        match command {
            Command::Push {
                cluster,
                commit,
                dry_run,
                json,
                ignore_locks,
                ignore_freeze,
                ignore_approval,
                reason,
            } => {
                let overrides = pushgate::domain::plan::Overrides {
                    ignore_locks,
                    ignore_freeze,
                    ignore_approval,
                    reason,
                };
                cmd::push::run(
                    env()?,
                    &cluster,
                    commit.as_deref(),
                    dry_run,
                    json,
                    overrides,
                )
                .await
            }
            Command::Crash {
                action:
                    CrashCommand::Fixed {
                        task_gid,
                        commit,
                        json,
                    },
            } => cmd::crash::fixed(env()?, &task_gid, &commit, json).await,
            Command::Run { grace, http } => {
                pushgate::cmd::daemon::run(envs, app, grace, http).await
            }
            Command::Rollback {
                cluster,
                to,
                dry_run,
                json,
            } => cmd::rollback::run(env()?, &cluster, to.as_deref(), dry_run, json).await,

            Command::Status { cluster, json } => {
                cmd::status::run(envs, app, cluster.as_deref(), json).await
            }
            Command::Requests { json } => cmd::requests::list(env()?, json),
            Command::Approvals { cluster, json } => {
                cmd::approvals::run(env()?, cluster.as_deref(), json).await
            }
            Command::Lock {
                cluster,
                reason,
                json,
            } => cmd::locks::lock(env()?, &cluster, &reason, chrono::Utc::now(), json).await,
            Command::Unlock { task_gid, json } => {
                cmd::locks::unlock(&envs.apps(app)?, &task_gid, json).await
            }
            Command::Check { json } => cmd::check::run(&envs.apps(app)?, config_path, json).await,
            Command::Sandbox { .. }
            | Command::Demo { .. }
            | Command::Shipped { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::History { .. } => Err(anyhow::anyhow!("this command runs without a config")),
        }
    }
}
