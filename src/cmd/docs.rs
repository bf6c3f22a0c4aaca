//! `pushgate completions SHELL` and `pushgate man [--dir DIR]`: generated
//! from the clap definitions in `cli.rs`, so they never drift from the
//! real command line. No config is read.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cmd::cli::Cli;

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pushgate", &mut std::io::stdout());
}

/// The man page on stdout, or every page (`pushgate.1`,
/// `pushgate-push.1`, …) written into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            use std::io::Write;
            std::io::stdout().write_all(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        }
    }
    Ok(())
}
