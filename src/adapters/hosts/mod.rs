//! Hosts: stage a release, switch `current` to it, health-check it, prune
//! old releases, roll back — over rsync and ssh for `[user@]host[:port]`,
//! on this machine's filesystem for `local:/abs/path`.
//!
//! Every command line is built by a pure function in [`argv`] from the
//! config, the validated host and a `ReleaseId`; every failure is a typed
//! [`HostError`] ([`error`]).
//!
//! It does not decide how many failures are too many: it reports each
//! host's result and the caller asks `decide`.

pub mod argv;
mod bittorrent;
pub mod error;
pub mod torrent;

pub use argv::Place;
pub use bittorrent::Base;
pub use error::{HostError, HostErrorKind};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use self::argv::{
    after_switch_script, check_aria2c, check_bt_script, check_rsync, check_script, close_argv,
    health_script, parse_bytes_sent, parse_probe, parse_room, parse_stage_probe, probe_script,
    remove_bt_script, remove_script, room_script, rsync_argv, ssh_argv, stage_argv, switch_script,
    switch_then, switched, unset_script, Room,
};
use self::error::{cause_of, describe_failure, io_failure, room_cause};
use crate::adapters::process::{self, ChildEnv};
use crate::config::{ClusterSettings, HostKeyPolicy, SyncSettings, Transport};
use crate::domain::model::{Host, HostReleases, ReleaseId};

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
        let control_dir = mux_dir().map(Path::to_owned);
        let config = match (&control_dir, cipher_preference(s)) {
            (Some(dir), Some(ciphers)) => {
                cipher_file(dir, s.ssh_config.as_deref(), &ciphers).or(s.ssh_config.clone())
            }
            _ => s.ssh_config.clone(),
        };
        SshOptions {
            config,
            identity: s.ssh_identity.clone(),
            known_hosts: s.known_hosts.clone(),
            accept_new_host_keys: s.host_key_policy == HostKeyPolicy::AcceptNew,
            control_dir,
        }
    }
}

/// `sync.ssh_ciphers`, else pushgate's default for this bastion's CPU.
fn cipher_preference(s: &SyncSettings) -> Option<String> {
    s.ssh_ciphers
        .clone()
        .or_else(|| argv::default_ciphers(bastion_has_aes()).map(str::to_owned))
}

/// Whether this machine encrypts AES in hardware.
fn bastion_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Writes (once per process) the ssh configuration that carries the
/// cipher preference under `user`'s, in the private control directory;
/// its path. `None` if it cannot: ssh then reads `user` as it is.
fn cipher_file(dir: &Path, user: Option<&Path>, ciphers: &str) -> Option<PathBuf> {
    let text = argv::cipher_config(user, ciphers)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let name: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("ssh_config-{name}"));
    if !path.is_file() {
        let tmp = dir.join(format!(".ssh_config-{name}.{}", std::process::id()));
        std::fs::write(&tmp, text).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
    }
    Some(path)
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
fn remove_local(releases: &Path, names: &[ReleaseId]) -> Result<(), HostError> {
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

/// One host's result of one stage.
#[derive(Clone, Debug)]
pub struct HostResult<T> {
    pub host: Host,
    pub outcome: Result<T, HostError>,
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
    hosts: &'a [Host],
    target: Option<&'a Path>,
    settings: &'a SyncSettings,
    ssh: SshOptions,
    env: &'a ChildEnv,
}

impl<'a> Fleet<'a> {
    /// The one way a cluster's fleet is made: its hosts (read once per
    /// run), its `target`, `[sync]`, and the children's environment.
    pub fn new(
        hosts: &'a [Host],
        cluster: &'a ClusterSettings,
        sync: &'a SyncSettings,
        env: &'a ChildEnv,
    ) -> Fleet<'a> {
        Fleet {
            hosts,
            target: cluster.target.as_deref(),
            settings: sync,
            ssh: SshOptions::from_settings(sync),
            env,
        }
    }

    pub fn hosts(&self) -> &[Host] {
        self.hosts
    }

    /// Whether releases go out over bittorrent (`sync.transport`).
    pub fn bittorrent(&self) -> bool {
        matches!(self.settings.transport, Transport::BitTorrent { .. })
    }
}

impl Fleet<'_> {
    fn place<'h>(&'h self, host: &'h Host) -> Result<Place<'h>, HostError> {
        Place::of(host, self.target).ok_or_else(|| {
            HostError::other(format!(
                "{host}: an ssh host needs the cluster's `target` directory in the config"
            ))
        })
    }

    /// Runs `op` on every host, at most `parallelism` at once, each within
    /// `host_timeout` per attempt and retried `retries` times. Results come
    /// back in the hosts' order.
    async fn each<'s, T, F, Fut>(&'s self, retry: bool, op: F) -> Vec<HostResult<T>>
    where
        F: Fn(usize, Place<'s>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HostError>>,
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
        Fut: std::future::Future<Output = Result<T, HostError>>,
        D: Fn(&HostResult<T>),
    {
        let attempts = if retry { 1 + self.settings.retries } else { 1 };
        self.each_with(attempts, self.settings.host_timeout, op, done)
            .await
    }

    /// `each_observed` with its own tries and per-try timeout.
    async fn each_with<'s, T, F, Fut, D>(
        &'s self,
        attempts: usize,
        timeout: Duration,
        op: F,
        done: D,
    ) -> Vec<HostResult<T>>
    where
        F: Fn(usize, Place<'s>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HostError>>,
        D: Fn(&HostResult<T>),
    {
        let done = &done;
        let op = &op;
        let mut results: Vec<(usize, HostResult<T>)> = stream::iter(self.hosts.iter().enumerate())
            .map(|(i, host)| async move {
                let started = Instant::now();
                let mut outcome = Err(HostError::other(""));
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
                    outcome = match tokio::time::timeout(timeout, op(i, place)).await {
                        Ok(r) => r,
                        Err(_) => Err(HostError::timed_out(timeout)),
                    };
                    match &outcome {
                        Ok(_) => break,
                        Err(e) if e.is(HostErrorKind::Skipped) => break,
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

    async fn ssh(&self, host: &Host, script: &str) -> Result<String, HostError> {
        let argv = ssh_argv(&self.ssh, host, script);
        let out = process::run(&argv, None, self.settings.host_timeout, self.env)
            .await
            .map_err(|e| HostError::other(e.to_string()))?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(describe_failure(&out, self.settings.host_timeout))
        }
    }

    /// What the host runs and keeps; creates `TARGET/releases`.
    async fn probe(&self, place: Place<'_>) -> Result<HostReleases, HostError> {
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
                    std::fs::create_dir_all(&releases).map_err(|e| {
                        HostError::other(format!("cannot create {}: {e}", releases.display()))
                    })?;
                    let probe = releases.join(format!(".pushgate-check.{}", std::process::id()));
                    std::fs::write(&probe, b"").map_err(|e| {
                        HostError::other(format!("cannot write in {}: {e}", releases.display()))
                    })?;
                    let _ = std::fs::remove_file(&probe);
                    Ok(format!("{} is writable", path.display()))
                }
                Place::Remote { host, target } => {
                    let bt = self.bittorrent();
                    let script = if bt {
                        check_bt_script(target)
                    } else {
                        check_script(target)
                    };
                    let out = self.ssh(host, &script).await?;
                    let mut lines = out.lines();
                    let rsync =
                        check_rsync(lines.next().unwrap_or("")).map_err(HostError::other)?;
                    if !bt {
                        return Ok(format!("{} is writable; {rsync}", target.display()));
                    }
                    let aria2c =
                        check_aria2c(lines.next().unwrap_or("")).map_err(HostError::other)?;
                    Ok(format!(
                        "{} is writable; {rsync}; {aria2c}",
                        target.display()
                    ))
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
    /// An ssh host does it in one session (one round trip): it deletes the
    /// releases `prune` names for it (a past push's pruning, index by
    /// index), says what it runs and keeps, and receives the release with
    /// unchanged files linked from its current one — by rsync, or from
    /// the swarm (`sync.transport = "bittorrent"`, which uses `base`, the
    /// deployed release's artifact, and `scratch`, a directory of the
    /// bastion's for the stage). `done` hears of each host as soon as it
    /// is done.
    pub async fn stage(
        &self,
        artifact: &Path,
        release: &ReleaseId,
        prune: &[Vec<ReleaseId>],
        base: Option<Base<'_>>,
        scratch: &Path,
        done: &(dyn Fn(&HostResult<Staged>) + Sync),
    ) -> Vec<HostResult<Staged>> {
        if let Transport::BitTorrent {
            tracker,
            run_tracker,
        } = &self.settings.transport
        {
            if self.hosts.iter().any(|h| matches!(h, Host::Ssh { .. })) {
                return self
                    .stage_bt(
                        artifact,
                        release,
                        prune,
                        base,
                        scratch,
                        tracker,
                        *run_tracker,
                        done,
                    )
                    .await;
            }
        }
        self.each_observed(
            true,
            |i, place| {
                let gone = prune.get(i).map_or(&[][..], Vec::as_slice);
                self.stage_rsync_one(artifact, release, gone, i, place)
            },
            done,
        )
        .await
    }

    /// One host's stage by rsync (see [`Fleet::stage`]).
    async fn stage_rsync_one(
        &self,
        artifact: &Path,
        release: &ReleaseId,
        gone: &[ReleaseId],
        _i: usize,
        place: Place<'_>,
    ) -> Result<Staged, HostError> {
        let (argv, probed) = match place {
            Place::Local { .. } => {
                let before = self.probe(place).await?;
                if before.current.as_ref() == Some(release) {
                    return Err(HostError::other(format!(
                                "release {release} is this host's current release; refusing to stage over it"
                            )));
                }
                let link = before.current.as_ref().filter(|c| *c != release);
                (
                    rsync_argv(&self.ssh, artifact, &place, release, link),
                    Some(before),
                )
            }
            Place::Remote { .. } => (
                stage_argv(&self.ssh, artifact, &place, release, gone).unwrap_or_default(),
                None,
            ),
        };
        let out = process::run(&argv, None, self.settings.host_timeout, self.env)
            .await
            .map_err(|e| HostError::other(e.to_string()))?;
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
                    Some(cause) => HostError::new(cause.kind, format!("{} ({err})", cause.message)),
                    None => err,
                },
            );
        }
        let before = match probed {
                    Some(b) => b,
                    // Without it a later undo could not tell where the
                    // host goes back to: no report, no stage.
                    None => parse_stage_probe(&out.stderr).ok_or_else(|| {
                        HostError::other(
                            "rsync succeeded but the host did not report the release it runs (no `pushgate-probe` line)",
                        )
                    })?,
                };
        crate::adapters::failpoint::hit("stage:host");
        Ok(Staged {
            bytes_sent: parse_bytes_sent(&out.stdout),
            before,
        })
    }

    /// Points `current` at `release` on the hosts whose index is in `which`,
    /// then runs `after_switch` there. `Ok(Some(error))`: switched, but
    /// `after_switch` failed.
    pub async fn switch(
        &self,
        release: &ReleaseId,
        which: &[bool],
    ) -> Vec<HostResult<Option<HostError>>> {
        self.each(false, |i, place| async move {
            if !which.get(i).copied().unwrap_or(false) {
                return Err(HostError::skipped());
            }
            let r = self.switch_and_after(place, release).await;
            if r.is_ok() {
                crate::adapters::failpoint::hit("switch:host");
            }
            r
        })
        .await
    }

    /// Points `current` at `release` and runs `after_switch`: on an ssh
    /// host in one session. `Ok(Some(error))`: switched, but
    /// `after_switch` failed.
    async fn switch_and_after(
        &self,
        place: Place<'_>,
        release: &ReleaseId,
    ) -> Result<Option<HostError>, HostError> {
        match place {
            Place::Local { .. } => {
                self.switch_one(place, release).await?;
                match &self.settings.after_switch {
                    Some(argv) => Ok(self.after_switch(place, argv).await.err()),
                    None => Ok(None),
                }
            }
            Place::Remote { host, target } => {
                let script = switch_then(
                    target,
                    release,
                    self.settings.after_switch.as_deref(),
                    self.bittorrent(),
                );
                let argv = ssh_argv(&self.ssh, host, &script);
                let out = process::run(&argv, None, self.settings.host_timeout, self.env)
                    .await
                    .map_err(|e| HostError::other(e.to_string()))?;
                if out.success() {
                    Ok(None)
                } else if switched(&out.stdout) {
                    Ok(Some(describe_failure(&out, self.settings.host_timeout)))
                } else {
                    Err(describe_failure(&out, self.settings.host_timeout))
                }
            }
        }
    }

    /// Deletes `which` (per host index) where that costs no round trip
    /// (`local:` hosts) and returns, per index, what is left for each ssh
    /// host's next stage session to delete (see [`Fleet::stage`]).
    pub async fn prune(&self, which: &[Vec<ReleaseId>]) -> Vec<Vec<ReleaseId>> {
        let now: Vec<Vec<ReleaseId>> = self
            .hosts
            .iter()
            .zip(which)
            .map(|(h, w)| match h {
                Host::Local { .. } => w.clone(),
                Host::Ssh { .. } => Vec::new(),
            })
            .collect();
        if now.iter().any(|w| !w.is_empty()) {
            for r in self.remove(&now).await {
                if let Err(e) = r.outcome {
                    tracing::warn!(host = %r.host, error = %e, "cannot prune old releases");
                }
            }
        }
        self.hosts
            .iter()
            .zip(which)
            .map(|(h, w)| match h {
                Host::Local { .. } => Vec::new(),
                Host::Ssh { .. } => w.clone(),
            })
            .collect()
    }

    async fn switch_one(&self, place: Place<'_>, release: &ReleaseId) -> Result<(), HostError> {
        match place {
            Place::Local { path } => {
                let rel = Path::new("releases").join(release.as_str());
                if !path.join(&rel).is_dir() {
                    return Err(HostError::other(format!(
                        "{} does not exist",
                        path.join(&rel).display()
                    )));
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

    async fn after_switch(&self, place: Place<'_>, argv: &[String]) -> Result<(), HostError> {
        match place {
            Place::Local { path } => {
                let argv: Vec<OsString> = argv.iter().map(Into::into).collect();
                let out = process::run(&argv, Some(path), self.settings.host_timeout, self.env)
                    .await
                    .map_err(|e| HostError::other(e.to_string()))?;
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

    /// Runs the health check `argv` on the hosts marked in `which`, in
    /// their `TARGET` (so `current/…` names the release), each try within
    /// `timeout` and `1 + retries` tries, 0.5 s, 1 s, … apart. `Ok`: it
    /// exited 0; an error names how it ended and keeps the output's last
    /// lines.
    pub async fn health(
        &self,
        argv: &[String],
        timeout: Duration,
        retries: usize,
        which: &[bool],
    ) -> Vec<HostResult<()>> {
        // The child's own timeout names the key; this one only bounds a
        // child that would not die. On an ssh host the check is stopped
        // there first (`timeout`, then KILL): ssh waits a little longer.
        let over_ssh = timeout + argv::HOST_KILL_AFTER + Duration::from_secs(3);
        let bound = over_ssh + Duration::from_secs(10);
        self.each_with(
            1 + retries,
            bound,
            |i, place| async move {
                if !which.get(i).copied().unwrap_or(false) {
                    return Err(HostError::skipped());
                }
                let remote = matches!(place, Place::Remote { .. });
                let out = match place {
                    Place::Local { path } => {
                        let argv: Vec<OsString> = argv.iter().map(Into::into).collect();
                        process::run(&argv, Some(path), timeout, self.env).await
                    }
                    Place::Remote { host, target } => {
                        let argv = ssh_argv(&self.ssh, host, &health_script(target, argv, timeout));
                        process::run(&argv, None, over_ssh, self.env).await
                    }
                }
                .map_err(|e| HostError::other(e.to_string()))?;
                crate::adapters::failpoint::hit("health:host");
                if out.success() {
                    return Ok(());
                }
                let err = match out.status {
                    None => HostError::new(
                        HostErrorKind::TimedOut,
                        format!(
                            "timed out after {} (health_timeout); {} was killed",
                            humantime::format_duration(timeout),
                            out.program
                        ),
                    ),
                    Some(s) if remote && s.code() == Some(argv::HOST_TIMED_OUT) => HostError::new(
                        HostErrorKind::TimedOut,
                        format!(
                            "timed out after {} (health_timeout); stopped on the host",
                            humantime::format_duration(timeout)
                        ),
                    ),
                    Some(_) => describe_failure(&out, timeout),
                };
                Err(err.with_tail(out.tail(5)))
            },
            |_| {},
        )
        .await
    }

    /// Switches the hosts in `to` (index → release) back; for undoing a
    /// partial switch.
    pub async fn switch_each(&self, to: &[Option<ReleaseId>]) -> Vec<HostResult<()>> {
        self.each(false, |i, place| async move {
            match to.get(i).cloned().flatten() {
                Some(r) => {
                    // The app must reload what it runs again, too.
                    let after = self.switch_and_after(place, &r).await?;
                    crate::adapters::failpoint::hit("revert:host");
                    if let Some(e) = after {
                        tracing::error!(host = %place.target().display(), error = %e, "after_switch failed after switching back");
                    }
                    Ok(())
                }
                None => Err(HostError::skipped()),
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
                        std::fs::remove_file(&link).map_err(|e| {
                            HostError::other(format!("cannot remove {}: {e}", link.display()))
                        })?;
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
                        .unwrap_or_else(|e| {
                            Err(HostError::other(format!("cannot remove releases: {e}")))
                        })
                }
                Place::Remote { host, target } => {
                    let script = if self.bittorrent() {
                        remove_bt_script(target, &names)
                    } else {
                        remove_script(target, &names)
                    };
                    self.ssh(host, &script).await.map(drop)
                }
            }
        })
        .await
    }
}
