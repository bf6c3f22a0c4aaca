//! The build: the candidate checked out into a fresh work tree (nothing left
//! from earlier builds), `build.command` run there with a timeout and
//! without the token in its environment, and `build.output` moved into the
//! artifact cache, `state_dir/artifacts/<full sha>/`. A commit is built
//! once: its cached artifact is reused by every later push of it, on every
//! cluster.
//!
//! It does not decide whether to build; it is asked to.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::BuildSettings;
use crate::git::{GitError, Mirror};
use crate::model::CommitId;
use crate::process::{self, ChildEnv};
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("checking out {commit}")]
    Checkout {
        commit: CommitId,
        #[source]
        source: GitError,
    },
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    /// The command failed or ran past its timeout; `tail` is its output's end.
    #[error("build of {commit}: {message}")]
    Failed {
        commit: CommitId,
        message: String,
        tail: String,
    },
    #[error("the build of {commit} succeeded but left no directory `{output}` in the work tree (build.output)")]
    NoOutput { commit: CommitId, output: PathBuf },
    #[error("build: cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// The last lines of the build's output, when it ran.
    pub fn tail(&self) -> Option<&str> {
        match self {
            BuildError::Failed { tail, .. } => Some(tail),
            _ => None,
        }
    }
}

/// A commit's artifact, ready to stage.
#[derive(Debug)]
pub struct Built {
    pub artifact: PathBuf,
    /// True when the cache had it and nothing was built.
    pub cached: bool,
    pub duration: Duration,
    /// The last lines of the build's output (empty when cached).
    pub tail: String,
}

/// Returns the artifact of `commit`, building it first unless the cache has it.
pub async fn artifact(
    state: &StateDir,
    commit: &CommitId,
    settings: &BuildSettings,
    env: &ChildEnv,
) -> Result<Built, BuildError> {
    let started = std::time::Instant::now();
    let artifact = state.artifact(commit);
    if artifact.is_dir() {
        return Ok(Built {
            artifact,
            cached: true,
            duration: started.elapsed(),
            tail: String::new(),
        });
    }
    let io = |what, path: &std::path::Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { what, path, source }
    };
    let work_root = state.work();
    std::fs::create_dir_all(&work_root).map_err(io("create", &work_root))?;
    std::fs::create_dir_all(state.artifacts()).map_err(io("create", &state.artifacts()))?;
    // Removed on drop, whatever happens below: no build sees another's leftovers.
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", commit.short()))
        .tempdir_in(&work_root)
        .map_err(io("create a work tree in", &work_root))?;
    let tree = work.path().join("tree");

    let repo = state.repo();
    let (c, t) = (commit.clone(), tree.clone());
    tokio::task::spawn_blocking(move || Mirror::open(&repo)?.checkout(&c, &t))
        .await
        .map_err(|e| BuildError::Io {
            what: "check out into",
            path: tree.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| BuildError::Checkout {
            commit: commit.clone(),
            source,
        })?;

    let argv: Vec<std::ffi::OsString> = settings.command.iter().map(Into::into).collect();
    tracing::info!(commit = %commit, command = ?settings.command, "building");
    let out = process::run(&argv, Some(&tree), settings.timeout, env).await?;
    let tail = out.tail(30);
    if !out.success() {
        return Err(BuildError::Failed {
            commit: commit.clone(),
            message: out.failure(),
            tail,
        });
    }
    let output = tree.join(&settings.output);
    let is_dir = std::fs::symlink_metadata(&output).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Err(BuildError::NoOutput {
            commit: commit.clone(),
            output: settings.output.clone(),
        });
    }
    // A rename: the artifact appears whole or not at all. Another process
    // that built the same commit meanwhile wins; its bytes are as good.
    if let Err(e) = std::fs::rename(&output, &artifact) {
        if !artifact.is_dir() {
            return Err(io("move the build output to", &artifact)(e));
        }
    }
    if let Ok(d) = std::fs::File::open(state.artifacts()) {
        let _ = d.sync_all();
    }
    Ok(Built {
        artifact,
        cached: false,
        duration: started.elapsed(),
        tail,
    })
}
