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

use crate::config::{HostKeyPolicy, SyncSettings};
use crate::model::{Host, ReleaseId};
use crate::process::{self, ChildEnv};

/// How ssh is started: from `[sync]`.
#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    pub config: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: bool,
}

impl SshOptions {
    pub fn from_settings(s: &SyncSettings) -> SshOptions {
        SshOptions {
            config: s.ssh_config.clone(),
            identity: s.ssh_identity.clone(),
            known_hosts: s.known_hosts.clone(),
            accept_new_host_keys: s.host_key_policy == HostKeyPolicy::AcceptNew,
        }
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
    v
}

/// `ssh [options] [-l user] -- host SCRIPT`. The host was validated by
/// `Host::parse` (it cannot start with `-`), and `--` ends ssh's options anyway.
pub fn ssh_argv(opts: &SshOptions, host: &Host, script: &str) -> Vec<OsString> {
    let Host::Ssh {
        user,
        hostname,
        port,
    } = host
    else {
        return Vec::new();
    };
    let mut v: Vec<OsString> = ssh_command(opts, *port)
        .into_iter()
        .map(Into::into)
        .collect();
    if let Some(u) = user {
        v.push("-l".into());
        v.push(u.into());
    }
    v.push("--".into());
    v.push(hostname.into());
    v.push(script.into());
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
            crate::plan::printable(first_line.trim(), 80)
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

/// What a host runs and keeps, read before staging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostReleases {
    pub current: Option<ReleaseId>,
    pub releases: Vec<ReleaseId>,
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
                        Err(_) => Err(format!(
                            "timed out after {}",
                            humantime::format_duration(self.settings.host_timeout)
                        )),
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
            Err(out.failure())
        }
    }

    /// What the host runs and keeps; creates `TARGET/releases`.
    async fn probe(&self, place: Place<'_>) -> Result<HostReleases, String> {
        match place {
            Place::Local { path } => {
                let releases = path.join("releases");
                std::fs::create_dir_all(&releases)
                    .map_err(|e| format!("cannot create {}: {e}", releases.display()))?;
                let current = std::fs::read_link(path.join("current")).ok().and_then(|l| {
                    l.strip_prefix("releases")
                        .ok()
                        .and_then(|n| n.to_str())
                        .and_then(ReleaseId::parse)
                });
                let mut names: Vec<ReleaseId> = std::fs::read_dir(&releases)
                    .map_err(|e| format!("cannot list {}: {e}", releases.display()))?
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

    /// Copies the artifact into `TARGET/releases/RELEASE/` on every host.
    pub async fn stage(&self, artifact: &Path, release: &ReleaseId) -> Vec<HostResult<Staged>> {
        let watch = crate::observe::stage(self.hosts.len());
        let done = |r: &HostResult<Staged>| {
            let bytes = r.outcome.as_ref().ok().and_then(|s| s.bytes_sent);
            watch.host_done(r.outcome.is_ok(), bytes);
        };
        let results = self
            .each_observed(
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
                        return Err(out.failure());
                    }
                    crate::failpoint::hit("stage:host");
                    Ok(Staged {
                        bytes_sent: parse_bytes_sent(&out.stdout),
                        before,
                    })
                },
                done,
            )
            .await;
        watch.finish();
        results
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
            crate::failpoint::hit("switch:host");
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
                    .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, path.join("current"))
                    .map_err(|e| format!("cannot rename {} over current: {e}", tmp.display()))?;
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
                    Err(out.failure())
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
                    crate::failpoint::hit("revert:host");
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
                    for r in &names {
                        let d = path.join("releases").join(r.as_str());
                        match std::fs::remove_dir_all(&d) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(format!("cannot remove {}: {e}", d.display())),
                        }
                    }
                    Ok(())
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
        };
        let host = Host::parse("deploy@web-1.internal:2222").unwrap();
        let argv = ssh_argv(&opts, &host, "true");
        expect![[r#"ssh | -o | BatchMode=yes | -o | ConnectTimeout=15 | -o | ServerAliveInterval=15 | -o | ServerAliveCountMax=4 | -o | StrictHostKeyChecking=yes | -o | UserKnownHostsFile=/etc/pushgate/known_hosts | -o | IdentitiesOnly=yes | -i | /etc/pushgate/id_ed25519 | -F | /etc/pushgate/ssh config | -p | 2222 | -l | deploy | -- | web-1.internal | true"#]]
            .assert_eq(&words(&argv));
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
}
