//! Child processes (the build, rsync, ssh): started from an argv, never a
//! shell string built here; with the variables that hold the Asana token
//! removed from their environment; in their own process group, so that a
//! timeout kills the whole tree; with the tail of their output kept.
//!
//! It also keeps one figure for the whole process: how long at least one
//! child was running (`children_wall`), so that a push can tell its own
//! overhead from the time it waited on the build, rsync and ssh.
//!
//! It knows nothing about what the children do; callers read the output.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// What child processes must not inherit, and where running children are
/// registered.
#[derive(Clone, Debug, Default)]
pub struct ChildEnv {
    remove: Vec<OsString>,
    /// Variables a child is given (a wave check's `PUSHGATE_*`); never
    /// one of `remove`, which wins.
    set: Vec<(OsString, OsString)>,
    /// A directory holding one file per running child's process group,
    /// so that a run that was killed outright leaves a list of what it
    /// left running (see [`reap_orphans`]).
    registry: Option<std::path::PathBuf>,
}

impl ChildEnv {
    /// Children start without these variables (the token's, and any other
    /// variable that holds its value).
    pub fn without(vars: impl IntoIterator<Item = OsString>) -> ChildEnv {
        let mut remove: Vec<OsString> = vars.into_iter().collect();
        remove.sort();
        remove.dedup();
        ChildEnv {
            remove,
            set: Vec::new(),
            registry: None,
        }
    }

    /// The same, with every child's process group registered in `dir`.
    pub fn registered(&self, dir: std::path::PathBuf) -> ChildEnv {
        ChildEnv {
            registry: Some(dir),
            ..self.clone()
        }
    }

    /// The same, with these variables set in the child (the token's are
    /// still removed).
    pub fn with_vars(&self, vars: impl IntoIterator<Item = (String, String)>) -> ChildEnv {
        let mut env = self.clone();
        env.set
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        env
    }
}

/// A process's start time (clock ticks since boot), its process group and
/// whether it is a zombie, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(u64, u32, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parens.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(19)?.parse().ok()?,
        f.get(2)?.parse().ok()?,
        f.first() == Some(&"Z"),
    ))
}

/// Kills what a run that died outright left running: each registered
/// process group whose members are still alive. pushgate's direct children
/// die with it (`PR_SET_PDEATHSIG`), but their own children — rsync's
/// receiver, a build's compilers — live on and may still write. A group
/// is killed only if its leader is gone (killed with pushgate) or is the
/// very process registered (same start time), never a stranger that
/// reused the number. Waits (briefly) until they are gone.
pub fn reap_orphans(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = 0;
    for e in rd.flatten() {
        let path = e.path();
        let Some(pgid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let started: Option<u64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let leader_ok = match proc_stat(pgid) {
            None => true,
            Some((start, _, zombie)) => zombie || Some(start) == started,
        };
        if leader_ok && group_alive(pgid) {
            tracing::warn!(pgid, "killing what an interrupted run left running");
            kill_group(Some(pgid));
            killed += 1;
            for _ in 0..200 {
                if !group_alive(pgid) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Whether a live (not zombie) process is in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| matches!(proc_stat(pid), Some((_, g, false)) if g == pgid))
}

/// How one child ran.
#[derive(Debug)]
pub struct ChildOutput {
    pub program: String,
    /// `None` when it was killed for running past its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl ChildOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "rsync exited with status 23: <last stderr line>", for errors.
    pub fn failure(&self) -> String {
        let what = match self.status {
            None => format!("{} ran past its timeout and was killed", self.program),
            Some(s) => match s.code() {
                Some(c) => format!("{} exited with status {c}", self.program),
                None => format!("{} was killed by a signal", self.program),
            },
        };
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .or_else(|| self.stdout.lines().rev().find(|l| !l.trim().is_empty()));
        match last {
            Some(l) => format!("{what}: {}", crate::domain::text::printable(l.trim(), 300)),
            None => what,
        }
    }

    /// The last `n` lines of stdout and stderr, for a push task comment.
    pub fn tail(&self, n: usize) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for (label, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let t: Vec<&str> = text.lines().collect();
            if t.is_empty() {
                continue;
            }
            lines.push(label);
            lines.extend(t.iter().skip(t.len().saturating_sub(n)));
        }
        lines.join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start `{program}`{hint}")]
pub struct SpawnError {
    pub program: String,
    hint: String,
    #[source]
    source: std::io::Error,
}

/// How much of each stream is kept: the end matters, not the beginning.
const KEEP_BYTES: usize = 256 * 1024;

/// Wall time during which at least one child of this process ran: the
/// union of the children's intervals, from just before spawn to reaped,
/// so that children running in parallel count once.
struct Busy {
    running: usize,
    since: Option<Instant>,
    total: Duration,
}

static BUSY: Mutex<Busy> = Mutex::new(Busy {
    running: 0,
    since: None,
    total: Duration::ZERO,
});

fn busy() -> std::sync::MutexGuard<'static, Busy> {
    BUSY.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long, since this process started, at least one child started by
/// `run` was running. A push's wall time minus this is pushgate's own time.
pub fn children_wall() -> Duration {
    let b = busy();
    b.total + b.since.map_or(Duration::ZERO, |s| s.elapsed())
}

/// Counts one child as running until dropped.
struct BusyGuard;

impl BusyGuard {
    fn enter() -> BusyGuard {
        let mut b = busy();
        if b.running == 0 {
            b.since = Some(Instant::now());
        }
        b.running += 1;
        BusyGuard
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut b = busy();
        b.running -= 1;
        if b.running == 0 {
            if let Some(s) = b.since.take() {
                b.total += s.elapsed();
            }
        }
    }
}

/// Runs `argv` in `cwd` and waits at most `timeout`.
pub async fn run(
    argv: &[OsString],
    cwd: Option<&Path>,
    timeout: Duration,
    env: &ChildEnv,
) -> Result<ChildOutput, SpawnError> {
    run_input(argv, cwd, timeout, env, None).await
}

/// [`run`], with `input` written to the child's stdin (then closed).
pub async fn run_input(
    argv: &[OsString],
    cwd: Option<&Path>,
    timeout: Duration,
    env: &ChildEnv,
    input: Option<&[u8]>,
) -> Result<ChildOutput, SpawnError> {
    let program = argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = tokio::process::Command::new(argv.first().map_or(OsStr::new(""), |p| p));
    cmd.args(&argv[1.min(argv.len())..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for (k, v) in &env.set {
        cmd.env(k, v);
    }
    for var in &env.remove {
        cmd.env_remove(var);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    // If pushgate is killed outright (kill -9, OOM), the child goes with
    // it rather than write into a release directory behind the back of
    // the run that recovers. Tied to the spawning thread: tokio's worker
    // threads, and the main thread, live as long as the process.
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let started = Instant::now();
    let _busy = BusyGuard::enter();
    let mut child = cmd.spawn().map_err(|source| SpawnError {
        hint: if source.kind() == std::io::ErrorKind::NotFound {
            format!(": `{program}` is not installed or not on PATH")
        } else {
            String::new()
        },
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    let registered = match (&env.registry, pid) {
        (Some(dir), Some(p)) => {
            let file = dir.join(p.to_string());
            let start = proc_stat(p).map(|s| s.0.to_string()).unwrap_or_default();
            match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, start)) {
                Ok(()) => Some(file),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register a child process");
                    None
                }
            }
        }
        _ => None,
    };
    crate::adapters::failpoint::hit(&format!("spawned:{program}"));
    // If this future is dropped (a daemon stopping past its grace period),
    // the whole group goes, not only the direct child.
    let mut guard = GroupGuard(pid);
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let stdin = child.stdin.take();
    let (mut out_buf, mut err_buf) = (VecDeque::new(), VecDeque::new());
    let status = {
        let work = async {
            let feed = async {
                if let (Some(mut w), Some(bytes)) = (stdin, input) {
                    use tokio::io::AsyncWriteExt;
                    // A child that stops reading early is not an error here:
                    // its exit status says what happened.
                    let _ = w.write_all(bytes).await;
                    let _ = w.shutdown().await;
                }
            };
            let (_, _, _, status) = tokio::join!(
                feed,
                keep_tail(out.as_mut(), &mut out_buf),
                keep_tail(err.as_mut(), &mut err_buf),
                child.wait()
            );
            status.ok()
        };
        tokio::time::timeout(timeout, work).await
    };
    let status = match status {
        Ok(status) => status,
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            None
        }
    };
    guard.0 = None;
    if let Some(f) = registered {
        let _ = std::fs::remove_file(f);
    }
    let text = |mut b: VecDeque<u8>| String::from_utf8_lossy(b.make_contiguous()).into_owned();
    let (stdout, stderr) = (text(out_buf), text(err_buf));
    Ok(ChildOutput {
        program,
        status,
        stdout,
        stderr,
        duration: started.elapsed(),
    })
}

/// Kills the child's process group when dropped while armed.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.0.is_some() {
            kill_group(self.0);
        }
    }
}

/// Kills the child's whole process group (the build's compilers, rsync's ssh).
fn kill_group(pid: Option<u32>) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

async fn keep_tail<R: AsyncRead + Unpin>(reader: Option<&mut R>, kept: &mut VecDeque<u8>) {
    let Some(reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend(&buf[..n]);
                let excess = kept.len().saturating_sub(KEEP_BYTES);
                kept.drain(..excess);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_running_at_once_count_in_the_children_wall_time() {
        let before = children_wall();
        let sleep: Vec<OsString> = vec!["sleep".into(), "0.2".into()];
        let env = ChildEnv::default();
        let (a, b) = tokio::join!(
            run(&sleep, None, Duration::from_secs(30), &env),
            run(&sleep, None, Duration::from_secs(30), &env)
        );
        assert!(a.unwrap().success() && b.unwrap().success());
        assert!(children_wall() - before >= Duration::from_millis(200));
    }
}
