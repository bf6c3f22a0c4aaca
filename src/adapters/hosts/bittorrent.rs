//! The bittorrent transport's stage (`sync.transport = "bittorrent"`): the
//! bastion makes a torrent of the release ([`super::torrent`]), runs
//! Debian's `opentracker` for it (unless `run_tracker = false`) and seeds
//! it with `aria2c`; each ssh host fetches it with `aria2c` in one session
//! ([`super::argv::bt_stage_script`]), reuses the files unchanged since the
//! release it runs, and reports done. The tracker and the seeder live
//! exactly as long as the stage, however many rounds of
//! `sync.parallelism` hosts it takes: they are children of this future,
//! killed with their process group when it ends (no bound of their own),
//! and registered so that a run killed outright leaves nothing a later
//! run does not stop. A tracker that stops, or never listens, fails the
//! stage at once. Two stages that would run a tracker on one port (the
//! daemon's concurrent pushes) take turns: a lock on the port, for the
//! whole bastion, held for the stage.
//!
//! It decides nothing: how many failures are too many, and what the
//! switch does, are the caller's, as for rsync.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::argv::{
    bt_seeder_argv, bt_stage_script, parse_stage_probe, ssh_argv, tracker_config, BtStage, Place,
    HOST_TIMED_OUT, STAGED_MARK,
};
use super::error::describe_failure;
use super::torrent::{self, Layout};
use super::{Fleet, HostError, HostResult, Staged};
use crate::adapters::process;
use crate::domain::model::ReleaseId;

/// The release the torrent lists unchanged files of: the deployed
/// release, and its artifact on the bastion.
#[derive(Clone, Copy, Debug)]
pub struct Base<'a> {
    pub release: &'a ReleaseId,
    pub artifact: &'a Path,
}

/// What the bastion made for one stage, under its scratch directory.
struct Prepared {
    layout: Layout,
    bundle: Vec<u8>,
    torrent: PathBuf,
    seed: PathBuf,
    tracker_conf: PathBuf,
}

fn other(e: impl std::fmt::Display) -> HostError {
    HostError::other(e.to_string())
}

/// The torrent, the hosts' bundle, the seed directory and the tracker's
/// files, in `scratch` (emptied first).
async fn prepare(
    artifact: &Path,
    release: &ReleaseId,
    base: Option<Base<'_>>,
    announce: &reqwest::Url,
    scratch: &Path,
    env: &process::ChildEnv,
) -> Result<Prepared, HostError> {
    let (artifact, scratch_dir) = (artifact.to_owned(), scratch.to_owned());
    let base_dir = base.map(|b| b.artifact.to_owned());
    let (name, url) = (release.to_string(), announce.to_string());
    let port = announce.port_or_known_default().unwrap_or(80);
    let made = tokio::task::spawn_blocking(move || -> Result<(Layout, PathBuf), String> {
        let s = &scratch_dir;
        remove_scratch(s);
        for d in ["bundle/meta", "bundle/tree", "seed", "tracker"] {
            std::fs::create_dir_all(s.join(d))
                .map_err(|e| format!("create {}: {e}", s.display()))?;
        }
        let entries = torrent::scan(&artifact).map_err(|e| e.to_string())?;
        let base_entries = base_dir
            .filter(|d| d.is_dir())
            .and_then(|d| torrent::scan(&d).ok());
        let layout = torrent::layout(&entries, base_entries.as_deref());
        let piece = torrent::piece_length(layout.total());
        let pieces = torrent::hash_pieces(&artifact, &layout, piece).map_err(|e| e.to_string())?;
        let t = torrent::metainfo(&name, &url, &layout, piece, &pieces);
        let write = |p: PathBuf, b: &[u8]| {
            std::fs::write(&p, b).map_err(|e| format!("write {}: {e}", p.display()))
        };
        write(s.join("bundle/meta/t.torrent"), &t.bytes)?;
        write(s.join("t.torrent"), &t.bytes)?;
        write(s.join("bundle/meta/reuse"), &layout.reuse_list())?;
        torrent::write_skeleton(&s.join("bundle/tree"), &entries).map_err(|e| e.to_string())?;
        torrent::link_seed(&artifact, &s.join("seed").join(&name), &layout)
            .map_err(|e| e.to_string())?;
        // opentracker chroots here and reads the whitelist as nobody.
        use std::os::unix::fs::PermissionsExt;
        let tr = s.join("tracker");
        write(
            tr.join("whitelist"),
            format!("{}\n", t.info_hash).as_bytes(),
        )?;
        std::fs::set_permissions(tr.join("whitelist"), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&tr, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let conf = s.join("opentracker.conf");
        write(conf.clone(), tracker_config(&tr, port).as_bytes())?;
        Ok((layout, conf))
    })
    .await
    .map_err(other)?
    .map_err(HostError::other)?;
    let (layout, tracker_conf) = made;
    let tgz = scratch.join("bundle.tgz");
    let argv: Vec<OsString> = vec![
        "tar".into(),
        "--format=posix".into(),
        "-czf".into(),
        tgz.clone().into(),
        "-C".into(),
        scratch.join("bundle").into(),
        "meta".into(),
        "tree".into(),
    ];
    let out = process::run(&argv, None, Duration::from_secs(300), env)
        .await
        .map_err(other)?;
    if !out.success() {
        return Err(HostError::other(format!(
            "cannot bundle the release's skeleton: {}",
            out.failure()
        )));
    }
    let bundle = tokio::fs::read(&tgz).await.map_err(other)?;
    Ok(Prepared {
        layout,
        bundle,
        torrent: scratch.join("t.torrent"),
        seed: scratch.join("seed"),
        tracker_conf,
    })
}

/// Removes the bastion's scratch directory, its read-only directories
/// (an artifact's 0555 ones, in the skeleton and the seed) made writable
/// first.
fn remove_scratch(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let mode = m.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.filter_map(|e| Some(e.ok()?.path())));
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the bittorrent stage's scratch directory");
        }
    }
}

/// How long the stage waits for its tracker to accept connections.
const TRACKER_START: Duration = Duration::from_secs(5);

/// Waits (up to [`TRACKER_START`]) until something accepts connections on
/// `port` here: the tracker the hosts are about to announce to. `false`
/// if nothing does.
async fn listening(port: u16) -> bool {
    let started = tokio::time::Instant::now();
    while started.elapsed() < TRACKER_START {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The bastion-wide lock of a tracker port: a file in `/run/lock` (or the
/// temporary directory where that cannot be written), flocked for the
/// whole stage. Not the state directory: every app of a daemon has its
/// own, and two pushgates with different ones would still share the port.
fn tracker_lock_path(port: u16) -> PathBuf {
    let name = format!("pushgate-bt-tracker-{port}.lock");
    let run = Path::new("/run/lock");
    if rustix::fs::access(run, rustix::fs::Access::WRITE_OK).is_ok() {
        run.join(name)
    } else {
        std::env::temp_dir().join(name)
    }
}

/// Takes the lock of `port` (see [`tracker_lock_path`]), waiting as long
/// as another stage holds it; released when the file is dropped (or the
/// process dies). It asks again every quarter second rather than block a
/// thread: a stage dropped while it waits leaves nothing waiting behind.
async fn lock_tracker_port(port: u16) -> Result<std::fs::File, HostError> {
    use std::os::fd::AsFd;
    let path = tracker_lock_path(port);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        // Made by another user: a lock needs only a descriptor.
        .or_else(|_| std::fs::File::open(&path))
        .map_err(|e| {
            HostError::other(format!(
                "cannot open the tracker port's lock {}: {e}",
                path.display()
            ))
        })?;
    let mut said = false;
    loop {
        match rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if !said {
                    tracing::info!(port, lock = %path.display(), "another bittorrent stage runs a tracker on this port; waiting for it to end");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(HostError::other(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// The tracker's failure, for every host not staged yet.
fn tracker_failed(port: u16, why: &str) -> String {
    format!("the bittorrent tracker (opentracker on port {port}) {why}")
}

/// No bound but the stage's: the helper is killed when the stage ends.
const WHILE_THE_STAGE_RUNS: Duration = Duration::MAX;

impl Fleet<'_> {
    /// Stages over bittorrent: ssh hosts fetch from the swarm, `local:`
    /// hosts (on the bastion) are copied to as for rsync.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stage_bt(
        &self,
        artifact: &Path,
        release: &ReleaseId,
        prune: &[Vec<ReleaseId>],
        base: Option<Base<'_>>,
        scratch: &Path,
        announce: &reqwest::Url,
        run_tracker: bool,
        done: &(dyn Fn(&HostResult<Staged>) + Sync),
    ) -> Vec<HostResult<Staged>> {
        let prepared = match prepare(artifact, release, base, announce, scratch, self.env).await {
            Ok(p) => p,
            Err(e) => {
                let e = HostError::other(format!("cannot make the release's torrent: {e}"));
                return self
                    .each_with(
                        1,
                        self.settings.host_timeout,
                        |_, _| async { Err(e.clone()) },
                        done,
                    )
                    .await;
            }
        };
        let stop_secs = self.settings.host_timeout.as_secs().max(1);
        let port = announce.port_or_known_default().unwrap_or(80);
        // Two stages' trackers on one port: the second waits for the first.
        let _port_lock = if run_tracker {
            match lock_tracker_port(port).await {
                Ok(f) => Some(f),
                Err(e) => return self.fail_all(&e, &[], done),
            }
        } else {
            None
        };
        // Ends only with the tracker's failure: it never stops by itself.
        let tracker = async {
            if !run_tracker {
                return std::future::pending::<String>().await;
            }
            let argv: Vec<OsString> = vec![
                "opentracker".into(),
                "-f".into(),
                prepared.tracker_conf.clone().into(),
            ];
            match process::run(&argv, None, WHILE_THE_STAGE_RUNS, self.env).await {
                Ok(out) => tracker_failed(port, &format!("stopped: {}", out.failure())),
                Err(e) => tracker_failed(port, &format!("cannot run: {e}")),
            }
        };
        let seeder = async {
            let argv = bt_seeder_argv(&prepared.torrent, &prepared.seed);
            match process::run(&argv, None, WHILE_THE_STAGE_RUNS, self.env).await {
                Ok(out) => {
                    tracing::error!(error = %out.failure(), "the bastion's aria2c stopped seeding")
                }
                Err(e) => tracing::error!(error = %e, "cannot run aria2c on the bastion"),
            }
            std::future::pending::<()>().await;
        };
        let layout = &prepared.layout;
        let bundle = &prepared.bundle;
        let timeout = self.settings.host_timeout;
        let retries = self.settings.retries;
        // What each host's result was, as soon as it has one: kept when
        // the tracker fails the hosts still staging.
        let reported: std::sync::Mutex<Vec<Option<HostResult<Staged>>>> =
            std::sync::Mutex::new(vec![None; self.hosts.len()]);
        let heard = |r: &HostResult<Staged>| {
            if let Some(i) = self.hosts.iter().position(|h| *h == r.host) {
                reported.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r.clone());
            }
            done(r);
        };
        let hosts = self.each_with(
            1,
            // Each try is bounded below: host_timeout each, as for rsync.
            (timeout + Duration::from_secs(1)) * (1 + retries as u32),
            |i, place| async move {
                let Place::Remote { host, target } = place else {
                    // On the bastion: copied by rsync, with rsync's retries.
                    let mut last = HostError::other("");
                    for attempt in 0..=retries {
                        if attempt > 0 {
                            tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
                        }
                        let one = self.stage_rsync_one(artifact, release, &[], i, place);
                        match tokio::time::timeout(timeout, one).await {
                            Ok(Ok(s)) => return Ok(s),
                            Ok(Err(e)) => last = e,
                            Err(_) => last = HostError::timed_out(timeout),
                        }
                        tracing::warn!(host = %self.hosts[i], attempt = attempt + 1, error = %last, "host operation failed");
                    }
                    return Err(last);
                };
                let bt = BtStage {
                    release,
                    prune: prune.get(i).map_or(&[][..], Vec::as_slice),
                    base: base.map(|b| b.release),
                    changed: layout.changed_range(),
                    files: !layout.files.is_empty(),
                    stop_secs,
                };
                let argv = ssh_argv(&self.ssh, host, &bt_stage_script(target, &bt));
                let run = process::run_input(&argv, None, timeout, self.env, Some(bundle));
                let out = tokio::time::timeout(timeout, run)
                    .await
                    .map_err(|_| HostError::timed_out(timeout))?
                    .map_err(other)?;
                if out.status.and_then(|s| s.code()) == Some(HOST_TIMED_OUT) {
                    // The host's own bound on its fetch, just below ours.
                    return Err(HostError::timed_out(timeout));
                }
                if !out.success() || !out.stdout.lines().any(|l| l.trim() == STAGED_MARK) {
                    return Err(describe_failure(&out, timeout));
                }
                for l in out.stderr.lines().filter(|l| l.starts_with("pushgate: cannot remove")) {
                    tracing::warn!(%host, "{}", crate::domain::text::printable(l, 300));
                }
                let before = parse_stage_probe(&out.stdout).ok_or_else(|| {
                    HostError::other("the host staged but did not report the release it runs")
                })?;
                crate::adapters::failpoint::hit("stage:host");
                Ok(Staged {
                    before,
                    bytes_sent: None,
                })
            },
            &heard,
        );
        let staged = async {
            if run_tracker && !listening(port).await {
                return Err(tracker_failed(
                    port,
                    &format!(
                        "does not accept connections {} after it started",
                        humantime::format_duration(TRACKER_START)
                    ),
                ));
            }
            tokio::select! {
                r = hosts => Ok(r),
                () = seeder => unreachable!("the seeder never ends by itself"),
            }
        };
        let results = tokio::select! {
            r = staged => r,
            why = tracker => Err(why),
        };
        let results = match results {
            Ok(r) => r,
            Err(why) => {
                tracing::error!(error = %why, "the bittorrent stage fails");
                let kept = std::mem::take(&mut *reported.lock().unwrap_or_else(|e| e.into_inner()));
                self.fail_all(&HostError::other(why), &kept, done)
            }
        };
        let dir = scratch.to_owned();
        let _ = tokio::task::spawn_blocking(move || remove_scratch(&dir)).await;
        results
    }

    /// Every host's result when the stage cannot go on: those in `kept`
    /// as they were, the others failed with `e` (and told to `done`).
    fn fail_all(
        &self,
        e: &HostError,
        kept: &[Option<HostResult<Staged>>],
        done: &(dyn Fn(&HostResult<Staged>) + Sync),
    ) -> Vec<HostResult<Staged>> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, host)| match kept.get(i).cloned().flatten() {
                Some(r) => r,
                None => {
                    let r = HostResult {
                        host: host.clone(),
                        outcome: Err(e.clone()),
                        attempts: 0,
                        duration: Duration::ZERO,
                    };
                    done(&r);
                    r
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Whether another descriptor could take the port's lock now.
    fn free(port: u16) -> bool {
        let f = std::fs::File::open(tracker_lock_path(port)).unwrap();
        rustix::fs::flock(
            f.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_ok()
    }

    #[tokio::test]
    async fn a_tracker_port_is_held_by_one_stage_until_it_ends() {
        // A port no test's tracker gets (they bind port 0).
        let port = 1;
        let held = lock_tracker_port(port).await.unwrap();
        assert!(!free(port), "a second stage would wait");
        drop(held);
        assert!(free(port), "the next stage goes on");
        let _again = lock_tracker_port(port).await.unwrap();
        assert!(!free(port));
    }
}
