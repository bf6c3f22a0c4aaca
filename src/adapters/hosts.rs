//! Hosts: stage a release, switch `current` to it, prune old releases,
//! roll back — over rsync and ssh for `[user@]host[:port]`, on this
//! machine's filesystem for `local:/abs/path`.
//!
//! Every command line is built by a pure function below (`ssh_argv`,
//! `rsync_argv`, the `*_script` functions), unit-tested, from the config,
//! the validated host and a `ReleaseId` — never from Asana text or commit
//! messages. Scripts sent to a remote shell quote every word.
//!
//! It does not decide how many failures are too many: it reports each
//! host's result and the caller (the push) decides.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::adapters::process::{self, ChildEnv};
use crate::config::{HostKeyPolicy, SyncSettings};
use crate::domain::model::{Host, HostReleases, ReleaseId};
use crate::domain::text::{bytes, printable};

/// How ssh is started: from `[sync]`.
#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    pub config: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    /// Where the control sockets of one ssh connection per host live
    /// (`ControlMaster`): a push's probe, rsync and switch share one
    /// connection instead of making three. `None`: no sharing.
    pub control_dir: Option<PathBuf>,
}

impl SshOptions {
    pub fn from_settings(s: &SyncSettings) -> SshOptions {
        SshOptions {
            config: s.ssh_config.clone(),
            identity: s.ssh_identity.clone(),
            known_hosts: s.known_hosts.clone(),
            accept_new_host_keys: s.host_key_policy == HostKeyPolicy::AcceptNew,
            control_dir: mux_dir().map(Path::to_owned),
        }
    }
}

/// A control socket's path is `DIR/<40 hex>`; a Unix socket's path must fit
/// in 108 bytes.
const MAX_CONTROL_DIR: usize = 100 - 41;

/// This process's directory for ssh control sockets: private (0700), in
/// the temp directory, made on first use. `None` if it cannot be made or
/// its path is too long for a socket: ssh then connects once per command.
static MUX_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

pub fn mux_dir() -> Option<&'static Path> {
    MUX_DIR
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("pushgate-ssh-")
                .tempdir()
                .ok()?
                .keep();
            if dir.as_os_str().len() > MAX_CONTROL_DIR {
                let _ = std::fs::remove_dir(&dir);
                return None;
            }
            Some(dir)
        })
        .as_deref()
}

/// Removes this process's control-socket directory (at exit, after the
/// masters were told to stop).
pub fn remove_mux_dir() {
    if let Some(Some(d)) = MUX_DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A word for a POSIX shell: single-quoted, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `ssh` and its options, without the host: shared by `ssh_argv` and
/// rsync's `-e`.
pub fn ssh_command(opts: &SshOptions, port: Option<u16>) -> Vec<String> {
    let mut v: Vec<String> = vec!["ssh".into()];
    let mut o = |k: &str, val: String| {
        v.push("-o".into());
        v.push(format!("{k}={val}"));
    };
    o("BatchMode", "yes".into());
    o("ConnectTimeout", "15".into());
    o("ServerAliveInterval", "15".into());
    o("ServerAliveCountMax", "4".into());
    o(
        "StrictHostKeyChecking",
        if opts.accept_new_host_keys {
            "accept-new"
        } else {
            "yes"
        }
        .into(),
    );
    if let Some(k) = &opts.known_hosts {
        o("UserKnownHostsFile", k.display().to_string());
    }
    if let Some(id) = &opts.identity {
        o("IdentitiesOnly", "yes".into());
        v.push("-i".into());
        v.push(id.display().to_string());
    }
    if let Some(cfg) = &opts.config {
        v.push("-F".into());
        v.push(cfg.display().to_string());
    }
    if let Some(p) = port {
        v.push("-p".into());
        v.push(p.to_string());
    }
    if let Some(dir) = &opts.control_dir {
        v.push("-o".into());
        v.push("ControlMaster=auto".into());
        v.push("-o".into());
        v.push(format!("ControlPath={}/%C", dir.display()));
        // A bound, should pushgate die before it closes the master.
        v.push("-o".into());
        v.push("ControlPersist=60".into());
    }
    v
}

/// `ssh [options] [-l user]` for an ssh host, and its hostname (which
/// `Host::parse` validated: it cannot start with `-`); `None` for `local:`.
fn ssh_to<'h>(opts: &SshOptions, host: &'h Host) -> Option<(Vec<OsString>, &'h str)> {
    let Host::Ssh {
        user,
        hostname,
        port,
    } = host
    else {
        return None;
    };
    let mut v: Vec<OsString> = ssh_command(opts, *port)
        .into_iter()
        .map(Into::into)
        .collect();
    if let Some(u) = user {
        v.push("-l".into());
        v.push(u.into());
    }
    Some((v, hostname))
}

/// `ssh [options] [-l user] -O exit -- host`: stops the host's shared
/// connection (`None` for a `local:` host or without a control directory).
pub fn close_argv(opts: &SshOptions, host: &Host) -> Option<Vec<OsString>> {
    opts.control_dir.as_ref()?;
    let (mut v, hostname) = ssh_to(opts, host)?;
    v.extend(["-O".into(), "exit".into(), "--".into(), hostname.into()]);
    Some(v)
}

/// `ssh [options] [-l user] -- host SCRIPT`; `--` ends ssh's options
/// whatever the host is called.
pub fn ssh_argv(opts: &SshOptions, host: &Host, script: &str) -> Vec<OsString> {
    let Some((mut v, hostname)) = ssh_to(opts, host) else {
        return Vec::new();
    };
    v.extend(["--".into(), hostname.into(), script.into()]);
    v
}

/// Where a release is staged on a host.
pub fn release_dir(place: &Place<'_>, release: &ReleaseId) -> PathBuf {
    place.target().join("releases").join(release.as_str())
}

/// rsync of the artifact's contents into the release directory, hard-linking
/// files unchanged since `link_dest` (the host's current release) so that
/// only changed files travel.
pub fn rsync_argv(
    opts: &SshOptions,
    artifact: &Path,
    place: &Place<'_>,
    release: &ReleaseId,
    link_dest: Option<&ReleaseId>,
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "rsync".into(),
        "--archive".into(),
        "--delete".into(),
        "--stats".into(),
        // Compare modification times to the nanosecond: with whole seconds,
        // a same-size file rebuilt within the second would look unchanged
        // and be hard-linked from the old release.
        "--modify-window=-1".into(),
    ];
    if let Some(l) = link_dest {
        // Relative to the destination directory: TARGET/releases/<old>.
        v.push(format!("--link-dest=../{l}").into());
    }
    let mut src = artifact.as_os_str().to_owned();
    src.push("/");
    let dest = release_dir(place, release);
    match place {
        Place::Local { .. } => {
            v.push(src);
            let mut d = dest.into_os_string();
            d.push("/");
            v.push(d);
        }
        Place::Remote { host, .. } => {
            let Host::Ssh {
                user,
                hostname,
                port,
            } = host
            else {
                return Vec::new();
            };
            // rsync splits -e on spaces and honours single quotes.
            let rsh: Vec<String> = ssh_command(opts, *port)
                .iter()
                .map(|w| {
                    if w.contains([' ', '"', '\\']) {
                        format!("'{w}'")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            v.push("-e".into());
            v.push(rsh.join(" ").into());
            // The remote path travels as one argument, not through the
            // remote shell.
            v.push("--protect-args".into());
            v.push(src);
            let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
            v.push(format!("{user}{hostname}:{}/", dest.display()).into());
        }
    }
    v
}

/// Reads the host's current release and its releases, creating
/// `TARGET/releases` on the way. Output: `current=<link>` then one name per line.
pub fn probe_script(target: &Path) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "mkdir -p -- {t}/releases && cd -- {t} && printf 'current=%s\\n' \"$(readlink current 2>/dev/null)\" && ls -1 releases"
    )
}

/// Points `TARGET/current` at the release: a new symlink renamed over the
/// old one, so the link is always whole.
pub fn switch_script(target: &Path, release: &ReleaseId) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "cd -- {t} && test -d releases/{release} && ln -sfn releases/{release} .current.{release} && mv -Tf .current.{release} current"
    )
}

/// Removes `current` if it points at `release` (undoing a first push).
pub fn unset_script(target: &Path, release: &ReleaseId) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "cd -- {t} && if [ \"$(readlink current 2>/dev/null)\" = releases/{release} ]; then rm -f current; fi"
    )
}

/// Deletes these releases (only names that parse as release ids reach here).
pub fn remove_script(target: &Path, releases: &[ReleaseId]) -> String {
    let t = shell_quote(&target.display().to_string());
    let names: Vec<&str> = releases.iter().map(ReleaseId::as_str).collect();
    format!("cd -- {t}/releases && rm -rf -- {}", names.join(" "))
}

/// `sync.after_switch`, run in the target directory, each word quoted.
pub fn after_switch_script(target: &Path, argv: &[String]) -> String {
    let t = shell_quote(&target.display().to_string());
    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
    format!("cd -- {t} && {}", words.join(" "))
}

/// What `check` asks of a host: create `TARGET/releases`, write and remove
/// a file there, and say which rsync it has.
pub fn check_script(target: &Path) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "mkdir -p -- {t}/releases && f={t}/releases/.pushgate-check.$$ && : > \"$f\" && rm -f -- \"$f\" && rsync --version | head -n 1"
    )
}

/// The oldest rsync pushgate works with: `--modify-window=-1` (nanosecond
/// times) needs 3.1.3.
pub const MIN_RSYNC: (u32, u32, u32) = (3, 1, 3);

/// "rsync  version 3.2.7  protocol version 31" → (3, 2, 7).
pub fn rsync_version(first_line: &str) -> Option<(u32, u32, u32)> {
    let mut words = first_line.split_whitespace();
    words.find(|w| *w == "version")?;
    let v = words.next()?;
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Whether an rsync version line is new enough; the error says why not.
pub fn check_rsync(first_line: &str) -> Result<String, String> {
    match rsync_version(first_line) {
        Some(v) if v >= MIN_RSYNC => Ok(format!("rsync {}.{}.{}", v.0, v.1, v.2)),
        Some(v) => Err(format!(
            "rsync {}.{}.{} is older than 3.1.3 (pushgate compares file times to the nanosecond)",
            v.0, v.1, v.2
        )),
        None => Err(format!(
            "cannot tell the rsync version from `{}`",
            crate::domain::text::printable(first_line.trim(), 80)
        )),
    }
}

/// Which releases to delete so that `keep` remain: the oldest first, never
/// `current` or `previous`.
pub fn prune_list(
    releases: &[ReleaseId],
    keep: usize,
    current: Option<&ReleaseId>,
    previous: Option<&ReleaseId>,
) -> Vec<ReleaseId> {
    let mut sorted: Vec<&ReleaseId> = releases.iter().collect();
    sorted.sort();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(keep);
    sorted
        .into_iter()
        .filter(|r| Some(*r) != current && Some(*r) != previous)
        .take(excess)
        .cloned()
        .collect()
}

/// A host and its target directory.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    Local { path: &'a Path },
    Remote { host: &'a Host, target: &'a Path },
}

impl<'a> Place<'a> {
    /// `None` for an ssh host when the cluster has no `target`.
    pub fn of(host: &'a Host, target: Option<&'a Path>) -> Option<Place<'a>> {
        match host {
            Host::Local { path } => Some(Place::Local { path }),
            Host::Ssh { .. } => target.map(|target| Place::Remote { host, target }),
        }
    }
    pub fn target(&self) -> &'a Path {
        match self {
            Place::Local { path } => path,
            Place::Remote { target, .. } => target,
        }
    }
}

/// Parses `probe_script`'s output. Names that are not release ids are ignored.
pub fn parse_probe(out: &str) -> HostReleases {
    let mut lines = out.lines();
    let current = lines
        .next()
        .and_then(|l| l.strip_prefix("current="))
        .and_then(|l| l.trim().strip_prefix("releases/"))
        .and_then(|l| ReleaseId::parse(l.trim_end_matches('/')));
    let mut releases: Vec<ReleaseId> = lines.filter_map(|l| ReleaseId::parse(l.trim())).collect();
    releases.sort();
    HostReleases { current, releases }
}

/// "Total bytes sent: 1,234" from rsync's `--stats`.
pub fn parse_bytes_sent(stats: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Total bytes sent:")?;
        rest.trim().replace(',', "").parse().ok()
    })
}

/// What went wrong on a host, by the words ssh, rsync and the remote shell
/// use for it: the cause people act on, first in every host error. Checked
/// in this order, so that ssh's "Permission denied (publickey)" is an
/// authentication failure and not a file permission.
const CAUSES: &[(&str, &[&str])] = &[
    (
        "ssh authentication failed",
        &[
            "Permission denied (publickey",
            "Too many authentication failures",
        ],
    ),
    (
        "host key not trusted",
        &[
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "host key is known for",
        ],
    ),
    (
        "unknown host",
        &[
            "Could not resolve hostname",
            "Name or service not known",
            "Temporary failure in name resolution",
        ],
    ),
    ("unreachable: connection refused", &["Connection refused"]),
    (
        "unreachable: no route to host",
        &["No route to host", "Network is unreachable"],
    ),
    (
        "unreachable: connection timed out",
        &["Connection timed out", "Operation timed out"],
    ),
    (
        "connection lost",
        &[
            "Connection reset",
            "Connection closed by",
            "Broken pipe",
            "Timeout, server",
        ],
    ),
    (
        "disk full",
        &["No space left on device", "Disk quota exceeded"],
    ),
    ("read-only file system", &["Read-only file system"]),
    (
        "permission denied",
        &["Permission denied", "Operation not permitted"],
    ),
    (
        "rsync is not installed on the host",
        &["rsync: command not found", "rsync: not found"],
    ),
];

/// The cause of a failure and the line of output that shows it, if the
/// output names one of [`CAUSES`].
pub fn cause_of(output: &str) -> Option<(&'static str, &str)> {
    CAUSES.iter().find_map(|(cause, needles)| {
        output
            .lines()
            .find(|l| needles.iter().any(|n| l.contains(n)))
            .map(|l| (*cause, l.trim()))
    })
}

/// A failed child's error for a host's result: the cause, the line that
/// shows it (rsync's last line is only "rsync error: ... (code 11)"), and
/// how the program ended. A child killed at its timeout is a timeout.
pub fn describe_failure(out: &process::ChildOutput, timeout: Duration) -> String {
    let Some(status) = out.status else {
        return format!("{}; {} was killed", timed_out(timeout), out.program);
    };
    let ended = match (status.code(), rsync_status(&out.program, status.code())) {
        (Some(c), Some(m)) => format!("{} exited with status {c}: {m}", out.program),
        (Some(c), None) => format!("{} exited with status {c}", out.program),
        (None, _) => format!("{} was killed by a signal", out.program),
    };
    let text = format!("{}\n{}", out.stderr, out.stdout);
    match cause_of(&text) {
        Some((cause, line)) => format!("{cause}: {} ({ended})", printable(line, 300)),
        None => {
            // rsync's own first complaint says more than its summary line.
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("rsync:") || l.starts_with("ssh:"));
            match first {
                Some(l) => format!("{ended}: {}", printable(l, 300)),
                None => ended,
            }
        }
    }
}

/// What rsync's exit status means (rsync(1), EXIT VALUES), for the
/// statuses a push meets.
fn rsync_status(program: &str, code: Option<i32>) -> Option<&'static str> {
    if program != "rsync" {
        return None;
    }
    Some(match code? {
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files or directories",
        5 => "error starting the client-server protocol",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in the rsync protocol data stream",
        23 => "partial transfer due to error",
        24 => "partial transfer: source files vanished",
        30 => "timeout in data send/receive",
        255 => "the ssh connection failed",
        _ => return None,
    })
}

/// Free space and write access where releases go: asked after rsync failed
/// without naming a cause (a remote receiver that dies on a full disk often
/// takes its message with it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    pub free_bytes: Option<u64>,
    /// Why a file cannot be created in `TARGET/releases`, if it cannot.
    pub unwritable: Option<String>,
}

/// Reads [`Room`] on a remote host: `df -Pk` of `TARGET/releases`, then
/// whether an empty file can be created there (and the shell's error if not).
pub fn room_script(target: &Path) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "cd -- {t}/releases && df -Pk . | tail -n 1 && {{ e=$( {{ : > .pushgate-write-test; }} 2>&1 ) && rm -f .pushgate-write-test && echo writable || printf 'unwritable: %s\\n' \"$e\"; }}"
    )
}

/// Parses `room_script`'s output.
pub fn parse_room(out: &str) -> Room {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let free_bytes = lines
        .next()
        .and_then(|df| df.split_whitespace().nth(3))
        .and_then(|kib| kib.parse::<u64>().ok())
        .and_then(|kib| kib.checked_mul(1024));
    let unwritable = lines
        .next()
        .and_then(|l| l.strip_prefix("unwritable:"))
        .map(|e| e.trim().to_owned());
    Room {
        free_bytes,
        unwritable,
    }
}

/// The cause rsync did not name, from the room on the host: no write
/// access, or less free space than the artifact's size.
pub fn room_cause(room: &Room, artifact_bytes: u64, releases: &Path) -> Option<String> {
    if let Some(e) = &room.unwritable {
        let cause = cause_of(e).map_or("cannot write", |(c, _)| c);
        return Some(format!(
            "{cause}: cannot create files in {}: {}",
            releases.display(),
            printable(e, 200)
        ));
    }
    let free = room.free_bytes?;
    (free < artifact_bytes).then(|| {
        format!(
            "disk full: {} has {} free, the artifact is {}",
            releases.display(),
            bytes(free),
            bytes(artifact_bytes)
        )
    })
}

/// The bytes of the regular files under `dir` (symlinks not followed).
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.path().symlink_metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Deletes these releases under a `local:` host's `releases/`; one that is
/// already gone is not an error.
fn remove_local(releases: &Path, names: &[ReleaseId]) -> Result<(), String> {
    for r in names {
        let d = releases.join(r.as_str());
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_failure(format_args!("remove {}", d.display()), &e)),
        }
    }
    Ok(())
}

/// A host operation that ran past `sync.host_timeout`.
pub fn timed_out(timeout: Duration) -> String {
    format!(
        "timed out after {} (sync.host_timeout)",
        humantime::format_duration(timeout)
    )
}

/// An IO error on a `local:` host, with the cause first like a remote one.
fn io_failure(doing: impl std::fmt::Display, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let cause = match e.kind() {
        K::PermissionDenied => Some("permission denied"),
        K::StorageFull | K::QuotaExceeded => Some("disk full"),
        K::ReadOnlyFilesystem => Some("read-only file system"),
        _ => None,
    };
    match cause {
        Some(c) => format!("{c}: cannot {doing}: {e}"),
        None => format!("cannot {doing}: {e}"),
    }
}

/// The error of a host an operation was not asked to touch.
pub const SKIPPED: &str = "skipped";

/// One host's result of one stage.
#[derive(Clone, Debug)]
pub struct HostResult<T> {
    pub host: Host,
    pub outcome: Result<T, String>,
    pub attempts: usize,
    pub duration: Duration,
}

/// A staged release on one host.
#[derive(Clone, Debug)]
pub struct Staged {
    /// The release `current` pointed at before (the previous release).
    pub before: HostReleases,
    pub bytes_sent: Option<u64>,
}

/// The cluster's hosts and how to reach them.
pub struct Fleet<'a> {
    pub hosts: &'a [Host],
    pub target: Option<&'a Path>,
    pub settings: &'a SyncSettings,
    pub ssh: SshOptions,
    pub env: &'a ChildEnv,
}

impl Fleet<'_> {
    fn place<'h>(&'h self, host: &'h Host) -> Result<Place<'h>, String> {
        Place::of(host, self.target).ok_or_else(|| {
            format!("{host}: an ssh host needs the cluster's `target` directory in the config")
        })
    }

    /// Runs `op` on every host, at most `parallelism` at once, each within
    /// `host_timeout` per attempt and retried `retries` times. Results come
    /// back in the hosts' order.
    async fn each<'s, T, F, Fut>(&'s self, retry: bool, op: F) -> Vec<HostResult<T>>
    where
        F: Fn(usize, Place<'s>) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        self.each_observed(retry, op, |_| {}).await
    }

    /// `each`, calling `done` with each host's result as soon as it has one.
    async fn each_observed<'s, T, F, Fut, D>(
        &'s self,
        retry: bool,
        op: F,
        done: D,
    ) -> Vec<HostResult<T>>
    where
        F: Fn(usize, Place<'s>) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
        D: Fn(&HostResult<T>),
    {
        let done = &done;
        let attempts = if retry { 1 + self.settings.retries } else { 1 };
        let op = &op;
        let mut results: Vec<(usize, HostResult<T>)> = stream::iter(self.hosts.iter().enumerate())
            .map(|(i, host)| async move {
                let started = Instant::now();
                let mut outcome = Err(String::new());
                let mut tried = 0;
                for attempt in 0..attempts {
                    tried = attempt + 1;
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
                    }
                    let place = match self.place(host) {
                        Ok(p) => p,
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    };
                    outcome = match tokio::time::timeout(self.settings.host_timeout, op(i, place)).await
                    {
                        Ok(r) => r,
                        Err(_) => Err(timed_out(self.settings.host_timeout)),
                    };
                    match &outcome {
                        Ok(_) => break,
                        Err(e) => tracing::warn!(%host, attempt = tried, error = %e, "host operation failed"),
                    }
                }
                let result = HostResult {
                    host: host.clone(),
                    outcome,
                    attempts: tried,
                    duration: started.elapsed(),
                };
                done(&result);
                (i, result)
            })
            .buffer_unordered(self.settings.parallelism.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    async fn ssh(&self, host: &Host, script: &str) -> Result<String, String> {
        let argv = ssh_argv(&self.ssh, host, script);
        let out = process::run(&argv, None, self.settings.host_timeout, self.env)
            .await
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(describe_failure(&out, self.settings.host_timeout))
        }
    }

    /// What the host runs and keeps; creates `TARGET/releases`.
    async fn probe(&self, place: Place<'_>) -> Result<HostReleases, String> {
        match place {
            Place::Local { path } => {
                let releases = path.join("releases");
                std::fs::create_dir_all(&releases)
                    .map_err(|e| io_failure(format_args!("create {}", releases.display()), &e))?;
                let current = std::fs::read_link(path.join("current")).ok().and_then(|l| {
                    l.strip_prefix("releases")
                        .ok()
                        .and_then(|n| n.to_str())
                        .and_then(ReleaseId::parse)
                });
                let mut names: Vec<ReleaseId> = std::fs::read_dir(&releases)
                    .map_err(|e| io_failure(format_args!("list {}", releases.display()), &e))?
                    .filter_map(|e| e.ok()?.file_name().to_str().and_then(ReleaseId::parse))
                    .collect();
                names.sort();
                Ok(HostReleases {
                    current,
                    releases: names,
                })
            }
            Place::Remote { host, target } => {
                Ok(parse_probe(&self.ssh(host, &probe_script(target)).await?))
            }
        }
    }

    /// For `check`: every host reached, its target writable (created if
    /// missing, as a push would), and, over ssh, its rsync new enough.
    /// One attempt per host within `host_timeout`.
    pub async fn check(&self) -> Vec<HostResult<String>> {
        self.each(false, |_, place| async move {
            match place {
                Place::Local { path } => {
                    let releases = path.join("releases");
                    std::fs::create_dir_all(&releases)
                        .map_err(|e| format!("cannot create {}: {e}", releases.display()))?;
                    let probe = releases.join(format!(".pushgate-check.{}", std::process::id()));
                    std::fs::write(&probe, b"")
                        .map_err(|e| format!("cannot write in {}: {e}", releases.display()))?;
                    let _ = std::fs::remove_file(&probe);
                    Ok(format!("{} is writable", path.display()))
                }
                Place::Remote { host, target } => {
                    let out = self.ssh(host, &check_script(target)).await?;
                    let rsync = check_rsync(out.lines().next().unwrap_or(""))?;
                    Ok(format!("{} is writable; {rsync}", target.display()))
                }
            }
        })
        .await
    }

    /// Reads every host's releases (for rollback and status).
    pub async fn releases(&self) -> Vec<HostResult<HostReleases>> {
        self.each(true, |_, place| self.probe(place)).await
    }

    /// [`Room`] in the host's `TARGET/releases`; `None` if it cannot be read.
    async fn room(&self, place: Place<'_>) -> Option<Room> {
        match place {
            Place::Local { path } => {
                let releases = path.join("releases");
                let st = rustix::fs::statvfs(&releases).ok()?;
                let unwritable = rustix::fs::access(&releases, rustix::fs::Access::WRITE_OK)
                    .err()
                    .map(|e| std::io::Error::from(e).to_string());
                Some(Room {
                    free_bytes: st.f_bavail.checked_mul(st.f_frsize),
                    unwritable,
                })
            }
            Place::Remote { host, target } => {
                let out = self.ssh(host, &room_script(target)).await.ok()?;
                Some(parse_room(&out))
            }
        }
    }

    /// Copies the artifact into `TARGET/releases/RELEASE/` on every host.
    /// `done` hears of each host as soon as it is done.
    pub async fn stage(
        &self,
        artifact: &Path,
        release: &ReleaseId,
        done: &(dyn Fn(&HostResult<Staged>) + Sync),
    ) -> Vec<HostResult<Staged>> {
        self.each_observed(
            true,
            |_, place| async move {
                let before = self.probe(place).await?;
                if before.current.as_ref() == Some(release) {
                    return Err(format!(
                    "release {release} is this host's current release; refusing to stage over it"
                ));
                }
                let link = before.current.as_ref().filter(|c| *c != release);
                let argv = rsync_argv(&self.ssh, artifact, &place, release, link);
                let out = process::run(&argv, None, self.settings.host_timeout, self.env)
                    .await
                    .map_err(|e| e.to_string())?;
                if !out.success() {
                    let err = describe_failure(&out, self.settings.host_timeout);
                    let named = cause_of(&format!("{}\n{}", out.stderr, out.stdout)).is_some();
                    if named || out.status.is_none() {
                        return Err(err);
                    }
                    // Only now, on a failure: a walk of the whole
                    // artifact is not worth its time on every push.
                    let artifact_bytes = {
                        let a = artifact.to_owned();
                        tokio::task::spawn_blocking(move || tree_bytes(&a))
                            .await
                            .unwrap_or(0)
                    };
                    let releases = place.target().join("releases");
                    return Err(
                        match self
                            .room(place)
                            .await
                            .and_then(|r| room_cause(&r, artifact_bytes, &releases))
                        {
                            Some(cause) => format!("{cause} ({err})"),
                            None => err,
                        },
                    );
                }
                crate::adapters::failpoint::hit("stage:host");
                Ok(Staged {
                    bytes_sent: parse_bytes_sent(&out.stdout),
                    before,
                })
            },
            done,
        )
        .await
    }

    /// Points `current` at `release` on the hosts whose index is in `which`,
    /// then runs `after_switch` there. `Ok(Some(error))`: switched, but
    /// `after_switch` failed.
    pub async fn switch(
        &self,
        release: &ReleaseId,
        which: &[bool],
    ) -> Vec<HostResult<Option<String>>> {
        self.each(false, |i, place| async move {
            if !which.get(i).copied().unwrap_or(false) {
                return Err(SKIPPED.to_owned());
            }
            self.switch_one(place, release).await?;
            crate::adapters::failpoint::hit("switch:host");
            match &self.settings.after_switch {
                Some(argv) => Ok(self.after_switch(place, argv).await.err()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn switch_one(&self, place: Place<'_>, release: &ReleaseId) -> Result<(), String> {
        match place {
            Place::Local { path } => {
                let rel = Path::new("releases").join(release.as_str());
                if !path.join(&rel).is_dir() {
                    return Err(format!("{} does not exist", path.join(&rel).display()));
                }
                let tmp = path.join(format!(".current.{release}"));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&rel, &tmp)
                    .map_err(|e| io_failure(format_args!("create {}", tmp.display()), &e))?;
                std::fs::rename(&tmp, path.join("current")).map_err(|e| {
                    io_failure(format_args!("rename {} over current", tmp.display()), &e)
                })?;
                if let Ok(d) = std::fs::File::open(path) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Place::Remote { host, target } => self
                .ssh(host, &switch_script(target, release))
                .await
                .map(drop),
        }
    }

    async fn after_switch(&self, place: Place<'_>, argv: &[String]) -> Result<(), String> {
        match place {
            Place::Local { path } => {
                let argv: Vec<OsString> = argv.iter().map(Into::into).collect();
                let out = process::run(&argv, Some(path), self.settings.host_timeout, self.env)
                    .await
                    .map_err(|e| e.to_string())?;
                if out.success() {
                    Ok(())
                } else {
                    Err(describe_failure(&out, self.settings.host_timeout))
                }
            }
            Place::Remote { host, target } => self
                .ssh(host, &after_switch_script(target, argv))
                .await
                .map(drop),
        }
    }

    /// Switches the hosts in `to` (index → release) back; for undoing a
    /// partial switch.
    pub async fn switch_each(&self, to: &[Option<ReleaseId>]) -> Vec<HostResult<()>> {
        self.each(false, |i, place| async move {
            match to.get(i).cloned().flatten() {
                Some(r) => {
                    self.switch_one(place, &r).await?;
                    crate::adapters::failpoint::hit("revert:host");
                    // The app must reload what it runs again, too.
                    if let Some(argv) = &self.settings.after_switch {
                        if let Err(e) = self.after_switch(place, argv).await {
                            tracing::error!(host = %place.target().display(), error = %e, "after_switch failed after switching back");
                        }
                    }
                    Ok(())
                }
                None => Err(SKIPPED.to_owned()),
            }
        })
        .await
    }

    /// Stops the shared ssh connection to every host, so that nothing of
    /// this run stays connected (a host whose sshd stopped is unreachable
    /// to the next run, as it should be).
    pub async fn close(&self) {
        // No control socket: no master to stop (a dry run, a held run, a
        // cluster of `local:` hosts), so no ssh to start per host.
        let Some(dir) = &self.ssh.control_dir else {
            return;
        };
        if std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none()) {
            return;
        }
        let runs = self.hosts.iter().filter_map(|h| {
            let argv = close_argv(&self.ssh, h)?;
            Some(async move {
                let _ = process::run(&argv, None, Duration::from_secs(10), self.env).await;
            })
        });
        futures_util::future::join_all(runs).await;
    }

    /// Removes `current` on the hosts given per index, where it points at
    /// that release.
    pub async fn unset(&self, which: &[Option<ReleaseId>]) -> Vec<HostResult<()>> {
        self.each(false, |i, place| async move {
            let Some(r) = which.get(i).cloned().flatten() else {
                return Ok(());
            };
            match place {
                Place::Local { path } => {
                    let link = path.join("current");
                    let points = std::fs::read_link(&link)
                        .is_ok_and(|l| l == Path::new("releases").join(r.as_str()));
                    if points {
                        std::fs::remove_file(&link)
                            .map_err(|e| format!("cannot remove {}: {e}", link.display()))?;
                    }
                    Ok(())
                }
                Place::Remote { host, target } => {
                    self.ssh(host, &unset_script(target, &r)).await.map(drop)
                }
            }
        })
        .await
    }

    /// Deletes these releases on the hosts given per index.
    pub async fn remove(&self, which: &[Vec<ReleaseId>]) -> Vec<HostResult<()>> {
        self.each(false, |i, place| async move {
            let names = which.get(i).cloned().unwrap_or_default();
            if names.is_empty() {
                return Ok(());
            }
            match place {
                Place::Local { path } => {
                    // Off the async threads: removing a release is a walk
                    // of all its files, and every host's runs at once.
                    let releases = path.join("releases");
                    tokio::task::spawn_blocking(move || remove_local(&releases, &names))
                        .await
                        .unwrap_or_else(|e| Err(format!("cannot remove releases: {e}")))
                }
                Place::Remote { host, target } => self
                    .ssh(host, &remove_script(target, &names))
                    .await
                    .map(drop),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn rel(s: &str) -> ReleaseId {
        ReleaseId::parse(s).unwrap()
    }

    fn words(v: &[OsString]) -> String {
        v.iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    #[test]
    fn ssh_runs_in_batch_mode_with_the_configured_identity_and_host_keys() {
        let opts = SshOptions {
            config: Some("/etc/pushgate/ssh config".into()),
            identity: Some("/etc/pushgate/id_ed25519".into()),
            known_hosts: Some("/etc/pushgate/known_hosts".into()),
            accept_new_host_keys: false,
            control_dir: None,
        };
        let host = Host::parse("deploy@web-1.internal:2222").unwrap();
        let argv = ssh_argv(&opts, &host, "true");
        expect![[r#"ssh | -o | BatchMode=yes | -o | ConnectTimeout=15 | -o | ServerAliveInterval=15 | -o | ServerAliveCountMax=4 | -o | StrictHostKeyChecking=yes | -o | UserKnownHostsFile=/etc/pushgate/known_hosts | -o | IdentitiesOnly=yes | -i | /etc/pushgate/id_ed25519 | -F | /etc/pushgate/ssh config | -p | 2222 | -l | deploy | -- | web-1.internal | true"#]]
            .assert_eq(&words(&argv));
    }

    #[test]
    fn one_connection_per_host_is_shared_and_closed() {
        let opts = SshOptions {
            control_dir: Some("/tmp/pushgate-ssh-Ab12".into()),
            ..SshOptions::default()
        };
        let host = Host::parse("deploy@web-1:2222").unwrap();
        expect![[r#"ssh | -o | BatchMode=yes | -o | ConnectTimeout=15 | -o | ServerAliveInterval=15 | -o | ServerAliveCountMax=4 | -o | StrictHostKeyChecking=yes | -p | 2222 | -o | ControlMaster=auto | -o | ControlPath=/tmp/pushgate-ssh-Ab12/%C | -o | ControlPersist=60 | -l | deploy | -- | web-1 | true"#]]
            .assert_eq(&words(&ssh_argv(&opts, &host, "true")));
        expect![[r#"ssh | -o | BatchMode=yes | -o | ConnectTimeout=15 | -o | ServerAliveInterval=15 | -o | ServerAliveCountMax=4 | -o | StrictHostKeyChecking=yes | -p | 2222 | -o | ControlMaster=auto | -o | ControlPath=/tmp/pushgate-ssh-Ab12/%C | -o | ControlPersist=60 | -l | deploy | -O | exit | -- | web-1"#]]
            .assert_eq(&words(&close_argv(&opts, &host).unwrap()));
        let local = Host::parse("local:/srv/h1").unwrap();
        assert!(close_argv(&opts, &local).is_none());
        assert!(close_argv(&SshOptions::default(), &host).is_none());
    }

    #[test]
    fn rsync_links_against_the_current_release_and_quotes_the_ssh_command() {
        let opts = SshOptions {
            identity: Some("/keys/my key".into()),
            accept_new_host_keys: true,
            ..SshOptions::default()
        };
        let host = Host::parse("web-1:2222").unwrap();
        let place = Place::of(&host, Some(Path::new("/srv/app"))).unwrap();
        let argv = rsync_argv(
            &opts,
            Path::new("/var/lib/pushgate/artifacts/abc"),
            &place,
            &rel("20261122T101500Z-3f2a9c13f2a9"),
            Some(&rel("20261121T101500Z-0123456789ab")),
        );
        expect![[r#"rsync | --archive | --delete | --stats | --modify-window=-1 | --link-dest=../20261121T101500Z-0123456789ab | -e | ssh -o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes -i '/keys/my key' -p 2222 | --protect-args | /var/lib/pushgate/artifacts/abc/ | web-1:/srv/app/releases/20261122T101500Z-3f2a9c13f2a9/"#]]
            .assert_eq(&words(&argv));

        let local = Host::parse("local:/tmp/h1").unwrap();
        let place = Place::of(&local, None).unwrap();
        let argv = rsync_argv(
            &opts,
            Path::new("/a"),
            &place,
            &rel("20261122T101500Z-3f2a9c13f2a9"),
            None,
        );
        expect![[r#"rsync | --archive | --delete | --stats | --modify-window=-1 | /a/ | /tmp/h1/releases/20261122T101500Z-3f2a9c13f2a9/"#]]
            .assert_eq(&words(&argv));
    }

    #[test]
    fn remote_scripts_quote_the_target_and_after_switch_words() {
        let t = Path::new("/srv/it's app");
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        expect![[r#"cd -- '/srv/it'\''s app' && test -d releases/20261122T101500Z-3f2a9c13f2a9 && ln -sfn releases/20261122T101500Z-3f2a9c13f2a9 .current.20261122T101500Z-3f2a9c13f2a9 && mv -Tf .current.20261122T101500Z-3f2a9c13f2a9 current"#]]
            .assert_eq(&switch_script(t, &r));
        expect![[r#"cd -- '/srv/it'\''s app' && 'sudo' 'systemctl' 'reload' '$(reboot); app'"#]]
            .assert_eq(&after_switch_script(
                t,
                &[
                    "sudo".into(),
                    "systemctl".into(),
                    "reload".into(),
                    "$(reboot); app".into(),
                ],
            ));
        expect![[r#"mkdir -p -- '/srv/it'\''s app'/releases && cd -- '/srv/it'\''s app' && printf 'current=%s\n' "$(readlink current 2>/dev/null)" && ls -1 releases"#]]
            .assert_eq(&probe_script(t));
    }

    #[test]
    fn probe_output_ignores_names_that_are_not_releases() {
        let out = "current=releases/20261122T101500Z-3f2a9c13f2a9\n20261122T101500Z-3f2a9c13f2a9\n$(reboot)\n20261121T101500Z-0123456789ab\n.current.x\n";
        let h = parse_probe(out);
        assert_eq!(h.current, Some(rel("20261122T101500Z-3f2a9c13f2a9")));
        assert_eq!(
            h.releases,
            vec![
                rel("20261121T101500Z-0123456789ab"),
                rel("20261122T101500Z-3f2a9c13f2a9")
            ]
        );
        assert_eq!(parse_probe("current=\n"), HostReleases::default());
        assert_eq!(parse_probe("current=/elsewhere\n").current, None);
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_current_or_previous() {
        let all: Vec<ReleaseId> = (1..=7)
            .map(|d| rel(&format!("2026112{d}T101500Z-3f2a9c13f2a9")))
            .collect();
        // Keep 3: delete the 4 oldest, but the oldest is `previous` (a rollback target).
        let gone = prune_list(&all, 3, Some(&all[6]), Some(&all[0]));
        assert_eq!(gone, all[1..5].to_vec());
        assert_eq!(
            prune_list(&all[..2], 3, None, None),
            Vec::<ReleaseId>::new()
        );
        // After a rollback, current is old: it is kept too.
        let gone = prune_list(&all, 2, Some(&all[1]), Some(&all[6]));
        assert_eq!(
            gone,
            vec![
                all[0].clone(),
                all[2].clone(),
                all[3].clone(),
                all[4].clone(),
                all[5].clone()
            ]
        );
    }

    #[test]
    fn the_host_check_writes_in_the_quoted_target_and_wants_rsync_3_1_3() {
        expect![[r#"mkdir -p -- '/srv/it'\''s app'/releases && f='/srv/it'\''s app'/releases/.pushgate-check.$$ && : > "$f" && rm -f -- "$f" && rsync --version | head -n 1"#]]
            .assert_eq(&check_script(Path::new("/srv/it's app")));
        assert_eq!(
            check_rsync("rsync  version 3.2.7  protocol version 31"),
            Ok("rsync 3.2.7".into())
        );
        assert_eq!(
            check_rsync("rsync version v3.1.3 protocol version 31").unwrap(),
            "rsync 3.1.3"
        );
        assert!(check_rsync("rsync  version 3.1.2  protocol version 31")
            .unwrap_err()
            .contains("older than 3.1.3"));
        assert!(check_rsync("sh: rsync: not found").is_err());
    }

    #[test]
    fn rsync_statistics_give_the_bytes_sent() {
        let stats =
            "Number of files: 2,001\nTotal bytes sent: 1,234,567\nTotal bytes received: 12\n";
        assert_eq!(parse_bytes_sent(stats), Some(1_234_567));
        assert_eq!(parse_bytes_sent("nothing"), None);
    }

    fn failed(program: &str, code: Option<i32>, stderr: &str) -> process::ChildOutput {
        use std::os::unix::process::ExitStatusExt;
        process::ChildOutput {
            program: program.into(),
            status: code.map(|c| std::process::ExitStatus::from_raw(c << 8)),
            stdout: String::new(),
            stderr: stderr.into(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn host_errors_name_the_cause_and_the_line_that_shows_it() {
        let t = Duration::from_secs(20);
        let cases = [
            (
                "rsync",
                Some(11),
                "rsync: [receiver] write failed on \"/srv/app/releases/20261122T101500Z-3f2a9c13f2a9/big.bin\": No space left on device (28)\nrsync error: error in file IO (code 11) at receiver.c(380) [receiver=3.2.7]\n",
            ),
            (
                "rsync",
                Some(23),
                "rsync: [Receiver] mkdir \"/srv/app/releases/20261122T101500Z-3f2a9c13f2a9\" failed: Permission denied (13)\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]\n",
            ),
            ("ssh", Some(255), "ssh: connect to host 10.213.7.2 port 22: Connection refused\n"),
            (
                "rsync",
                Some(255),
                "ssh: connect to host 10.213.7.6 port 22: Network is unreachable\r\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n",
            ),
            ("ssh", Some(255), "root@10.213.7.2: Permission denied (publickey).\n"),
            ("ssh", Some(255), "No ED25519 host key is known for 10.213.7.2 and you have requested strict checking.\nHost key verification failed.\n"),
            ("ssh", Some(1), "mkdir: cannot create directory '/srv/app/releases': Read-only file system\n"),
            ("rsync", Some(12), "sh: 1: rsync: not found\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"),
            ("rsync", Some(5), "rsync: [sender] change_dir \"/nowhere\" failed: No such file or directory (2)\nrsync error: some files/attrs were not transferred (code 23)\n"),
            ("ssh", Some(3), ""),
            ("ssh", None, "half a line"),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(p, c, e)| describe_failure(&failed(p, *c, e), t))
            .collect();
        expect![[r#"
            disk full: rsync: [receiver] write failed on "/srv/app/releases/20261122T101500Z-3f2a9c13f2a9/big.bin": No space left on device (28) (rsync exited with status 11: error in file I/O)
            permission denied: rsync: [Receiver] mkdir "/srv/app/releases/20261122T101500Z-3f2a9c13f2a9" failed: Permission denied (13) (rsync exited with status 23: partial transfer due to error)
            unreachable: connection refused: ssh: connect to host 10.213.7.2 port 22: Connection refused (ssh exited with status 255)
            unreachable: no route to host: ssh: connect to host 10.213.7.6 port 22: Network is unreachable (rsync exited with status 255: the ssh connection failed)
            ssh authentication failed: root@10.213.7.2: Permission denied (publickey). (ssh exited with status 255)
            host key not trusted: No ED25519 host key is known for 10.213.7.2 and you have requested strict checking. (ssh exited with status 255)
            read-only file system: mkdir: cannot create directory '/srv/app/releases': Read-only file system (ssh exited with status 1)
            rsync is not installed on the host: sh: 1: rsync: not found (rsync exited with status 12: error in the rsync protocol data stream)
            rsync exited with status 5: error starting the client-server protocol: rsync: [sender] change_dir "/nowhere" failed: No such file or directory (2)
            ssh exited with status 3
            timed out after 20s (sync.host_timeout); ssh was killed"#]]
        .assert_eq(&got.join("\n"));
    }

    #[test]
    fn a_hostile_line_in_the_output_is_escaped_and_bounded() {
        let evil = format!(
            "rsync: \u{1b}[2J{}: No space left on device\n",
            "x".repeat(5000)
        );
        let e = describe_failure(&failed("rsync", Some(11), &evil), Duration::from_secs(1));
        assert!(e.starts_with("disk full: rsync: \\u{1b}[2J"), "{e}");
        assert!(!e.contains('\u{1b}') && e.chars().count() < 400, "{e}");
    }

    #[test]
    fn a_failure_rsync_did_not_explain_is_diagnosed_from_the_room_on_the_host() {
        let t = Path::new("/srv/it's app");
        expect![[r#"cd -- '/srv/it'\''s app'/releases && df -Pk . | tail -n 1 && { e=$( { : > .pushgate-write-test; } 2>&1 ) && rm -f .pushgate-write-test && echo writable || printf 'unwritable: %s\n' "$e"; }"#]].assert_eq(&room_script(t));
        let df = "Filesystem     1024-blocks  Used Available Capacity Mounted on\npushgate-it           512   500        12      98% /srv/app\n";
        let full = parse_room(&format!("{}\nwritable\n", df.lines().nth(1).unwrap()));
        assert_eq!(
            full,
            Room {
                free_bytes: Some(12 * 1024),
                unwritable: None
            }
        );
        let releases = Path::new("/srv/app/releases");
        assert_eq!(
            room_cause(&full, 1 << 20, releases).as_deref(),
            Some("disk full: /srv/app/releases has 12 KiB free, the artifact is 1.0 MiB")
        );
        assert_eq!(room_cause(&full, 1000, releases), None);
        let ro = parse_room("tmpfs 512 0 512 0% /srv/app\nunwritable: sh: 1: cannot create .pushgate-write-test: Read-only file system\n");
        assert_eq!(
            room_cause(&ro, 1, releases).as_deref(),
            Some("read-only file system: cannot create files in /srv/app/releases: sh: 1: cannot create .pushgate-write-test: Read-only file system")
        );
        // Output that is not df's says nothing, rather than something wrong.
        assert_eq!(parse_room("$(reboot)\n"), Room::default());
        assert_eq!(room_cause(&Room::default(), 1 << 40, releases), None);
        assert_eq!(crate::domain::text::bytes(1023), "1023 B");
        assert_eq!(crate::domain::text::bytes(150 * 1024 * 1024), "150 MiB");
    }
}
