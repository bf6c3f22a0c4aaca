//! Command-line definitions (clap) only; `main.rs` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "pushgate",
    version,
    about = "A release controller driven by Asana: lock projects gate pushes, push tasks record them.",
    propagate_version = true
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "PUSHGATE_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The app a command is about (`[apps.NAME]`): needed when the config has several and the command is about one; `status`, `history`, `check` and `run` cover every app without it.
    #[arg(long, global = true, value_name = "NAME")]
    pub app: Option<String>,
    /// Log lines on stderr: human-readable or one JSON object each.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// More log detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log detail (repeat for less).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Push CLUSTER now: exclusion, freeze, candidate, gate, then build, stage, switch (exit 0/1/2/3/4/5/6).
    Push {
        /// The cluster to push (a name under `[clusters]`).
        cluster: String,
        /// Push this revision (full or unambiguous short sha, branch, tag) instead of the branch tip.
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
        /// Run exclusion, freeze, candidate and gate; print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan (and the push's result) as JSON, for scripts.
        #[arg(long)]
        json: bool,
        /// Push despite open lock tasks (or an unreadable lock project); needs --reason. Never despite a running push or a freeze.
        #[arg(long, requires = "reason")]
        ignore_locks: bool,
        /// Push despite a freeze window or min_soak; needs --reason.
        #[arg(long, requires = "reason")]
        ignore_freeze: bool,
        /// Push without the approval gate's consent; needs --reason (recorded in the push task and on the request).
        #[arg(long, requires = "reason")]
        ignore_approval: bool,
        /// Why the locks, freeze or approval are ignored: recorded in the push task.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// The daemon: push every cluster on its schedule, in its time zone, until SIGINT/SIGTERM.
    Run {
        /// On a signal, how long a running push may take to reach a safe point.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Serve the on-call page at http://ADDR/, its JSON, and Prometheus metrics at
        /// /metrics (e.g. 127.0.0.1:9187); any address but loopback needs [http] token_file.
        #[arg(long, value_name = "ADDR", visible_alias = "metrics")]
        http: Option<SocketAddr>,
    },
    /// Crash tasks: `crash fixed TASK_GID COMMIT` records the commit that fixes one.
    Crash {
        #[command(subcommand)]
        action: CrashCommand,
    },
    /// Exit 0 if CLUSTER runs a commit containing COMMIT, 1 if not, 2 if it cannot tell (no network).
    Shipped {
        /// The commit asked about (full or unambiguous short sha, branch, tag).
        commit: String,
        /// The cluster whose deployed commit is checked.
        #[arg(long)]
        cluster: String,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Switch every host of CLUSTER back to the previous (or named) kept release; ignores locks, then locks the cluster.
    Rollback {
        /// The cluster to roll back (a name under `[clusters]`).
        cluster: String,
        /// The release to switch to (default: the one before the deployed release).
        #[arg(long, value_name = "RELEASE_ID")]
        to: Option<String>,
        /// Print the plan (which release each host goes to, the lock task it creates); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan and the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Past pushes of CLUSTER: outcome, commit, duration, push task; success rate, median and p90 duration, pushes a day, holds by reason.
    History {
        /// The cluster whose runs are shown.
        cluster: String,
        /// Show at most this many runs, newest last.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs and holds since then: a duration back from now (7d, 24h) or a date (2026-11-20).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Per cluster: deployed commit and release, last outcome, open locks (name, assignee, link).
    Status {
        /// Only this cluster.
        cluster: Option<String>,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Approval gates: what each gated cluster's candidate waits for, and its recent approval requests.
    Approvals {
        /// Only this cluster.
        cluster: Option<String>,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Requests from Asana ([requests]): every request task seen, where it stands and how it ended.
    Requests {
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Create a lock task in CLUSTER's lock project, assigned to the token's user.
    Lock {
        /// The cluster whose lock project gets the task.
        cluster: String,
        /// Why pushes must stop; becomes the task's name and notes.
        #[arg(long)]
        reason: String,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Complete a lock task (it must be in a configured lock project).
    Unlock {
        /// The lock task to complete (its gid, as `status` shows).
        task_gid: String,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Validate the config, the token (GET /users/me) and every configured project.
    Check {
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Serve the embedded Asana-compatible API; first stdout line: JSON with base_url, token, gids.
    Sandbox {
        /// Loopback address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Keep the sandbox's data in this JSON file (default: memory only).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// The newcomer's first run: the sandbox, a demo config, and the gate deciding on a short schedule.
    Demo {
        /// Where the demo keeps its files.
        #[arg(long, default_value = "pushgate-demo")]
        dir: PathBuf,
        /// How often the demo decides (a duration such as 20s).
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
        /// Stop after this many decisions (default: until Ctrl-C).
        #[arg(long)]
        ticks: Option<u32>,
        /// Loopback address for the demo's sandbox.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Loopback address for the on-call page (as `run --http` serves it).
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
    },
    /// Print a shell completion script: `pushgate completions bash > /etc/bash_completion.d/pushgate`.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write one page per command into --dir.
    Man {
        /// Write pushgate.1 and pushgate-COMMAND.1 into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrashCommand {
    /// Record COMMIT (full or unambiguous short sha, 7+ hex digits) as the fix of a crash task.
    Fixed {
        /// The crash task (its gid).
        task_gid: String,
        /// The commit that fixes it.
        commit: String,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_of_every_command_says_what_it_is() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                if s.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "pushgate", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
