//! The build: the candidate checked out into a fresh work tree (nothing left
//! from earlier builds), `build.command` run there with a timeout and
//! without the token in its environment, and `build.output` moved into the
//! artifact cache, `state_dir/artifacts/<full sha>/`. A commit is built
//! once: its cached artifact is reused by every later push of it, on every
//! cluster.
//!
//! It does not decide whether to build; it is asked to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapters::git::{GitError, Mirror};
use crate::adapters::process::{self, ChildEnv};
use crate::adapters::state::StateDir;
use crate::config::BuildSettings;
use crate::domain::model::CommitId;

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
///
/// `previous` is the commit the cluster runs: files of the new artifact
/// whose bytes equal that artifact's get its modification times, so that
/// rsync's size-and-time check sees them unchanged and hard-links them from
/// the current release instead of sending them again.
pub async fn artifact(
    state: &StateDir,
    commit: &CommitId,
    previous: Option<&CommitId>,
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
    if let Some(old) = previous.map(|p| state.artifact(p)).filter(|p| p.is_dir()) {
        let (new, old2) = (output.clone(), old.clone());
        let carried = tokio::task::spawn_blocking(move || carry_mtimes(&new, &old2))
            .await
            .unwrap_or(0);
        tracing::debug!(files = carried, from = %old.display(), "kept modification times of unchanged files");
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

/// Gives each regular file under `new` whose bytes equal the file at the
/// same path under `old` that file's modification time (nanoseconds
/// included). Returns how many files it changed. Best effort: a file it
/// cannot read or touch keeps its own time, which only costs a transfer.
pub fn carry_mtimes(new: &Path, old: &Path) -> usize {
    let mut carried = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(new.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = rel.join(e.file_name());
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(rel);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let old_path = old.join(&rel);
            let Ok(old_meta) = old_path.symlink_metadata() else {
                continue;
            };
            if !old_meta.is_file()
                || old_meta.len() != meta.len()
                || !same_bytes(&e.path(), &old_path)
            {
                continue;
            }
            let Ok(mtime) = old_meta.modified() else {
                continue;
            };
            let ts = timespec(mtime);
            let times = rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            };
            if rustix::fs::utimensat(
                rustix::fs::CWD,
                e.path(),
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .is_ok()
            {
                carried += 1;
            }
        }
    }
    carried
}

fn timespec(t: std::time::SystemTime) -> rustix::fs::Timespec {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rustix::fs::Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos().into(),
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let Ok(na) = read_full(&mut fa, &mut ba) else {
            return false;
        };
        let Ok(nb) = read_full(&mut fb, &mut bb) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }

    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_take_the_old_times_and_changed_ones_keep_their_own() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        for (dir, changed) in [(old.path(), "old"), (new.path(), "new")] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/same.txt"), "same bytes").unwrap();
            std::fs::write(dir.join("changed.txt"), changed).unwrap();
        }
        std::fs::write(new.path().join("only-new.txt"), "x").unwrap();
        let past = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        for f in ["sub/same.txt", "changed.txt"] {
            std::fs::File::options()
                .write(true)
                .open(old.path().join(f))
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        assert_eq!(carry_mtimes(new.path(), old.path()), 1);
        let mtime = |p: &str| {
            std::fs::metadata(new.path().join(p))
                .unwrap()
                .modified()
                .unwrap()
        };
        assert_eq!(mtime("sub/same.txt"), past);
        assert_ne!(mtime("changed.txt"), past);
    }
}

/// The sha256 of an artifact directory, hex: what an approval names. Over
/// every entry in path order — its kind, path, executable bit, size and
/// bytes (a symlink: its target) — so that two artifacts have one digest
/// exactly when they would stage the same files.
pub fn digest(dir: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            out.push(p.strip_prefix(root).unwrap_or(&p).to_owned());
            if std::fs::symlink_metadata(&p)?.is_dir() {
                walk(root, &p, out)?;
            }
        }
        Ok(())
    }
    let mut entries = Vec::new();
    walk(dir, dir, &mut entries)?;
    entries.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    for rel in entries {
        let p = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&p)?;
        let name = rel.as_os_str().as_encoded_bytes();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p)?;
            ctx.update(b"L\0");
            ctx.update(name);
            ctx.update(b"\0");
            ctx.update(target.as_os_str().as_encoded_bytes());
            ctx.update(b"\0");
        } else if meta.is_dir() {
            ctx.update(b"D\0");
            ctx.update(name);
            ctx.update(b"\0");
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            ctx.update(if exec { b"X\0" } else { b"F\0" });
            ctx.update(name);
            ctx.update(format!("\0{}\0", meta.len()).as_bytes());
            let mut f = std::fs::File::open(&p)?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
            }
        }
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod digest_tests {
    #[test]
    fn the_digest_changes_with_any_byte_name_or_mode_and_only_then() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/x"), b"one").unwrap();
        std::fs::write(d.path().join("top"), b"two").unwrap();
        let first = super::digest(d.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(super::digest(d.path()).unwrap(), first);
        std::fs::write(d.path().join("top"), b"twO").unwrap();
        let second = super::digest(d.path()).unwrap();
        assert_ne!(second, first);
        std::fs::set_permissions(d.path().join("top"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_ne!(super::digest(d.path()).unwrap(), second);
        std::fs::rename(d.path().join("a/b/x"), d.path().join("a/b/y")).unwrap();
        assert_ne!(super::digest(d.path()).unwrap(), second);
    }
}
