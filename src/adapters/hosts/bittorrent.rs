//! The bittorrent transport's stage (`sync.transport = "bittorrent"`): the
//! bastion makes a torrent of the release ([`super::torrent`]), runs
//! Debian's `opentracker` for it (unless `run_tracker = false`) and seeds
//! it with `aria2c`; each ssh host fetches it with `aria2c` in one session
//! ([`super::argv::bt_stage_script`]), reuses the files unchanged since the
//! release it runs, and reports done. The tracker and the seeder live
//! exactly as long as the stage: they are children of this future, killed
//! with their process group when it ends, and registered so that a run
//! killed outright leaves nothing a later run does not stop.
//!
//! It decides nothing: how many failures are too many, and what the
//! switch does, are the caller's, as for rsync.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::argv::{
    bt_seeder_argv, bt_stage_script, parse_stage_probe, ssh_argv, tracker_config, BtStage, Place,
    STAGED_MARK,
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
    let port = announce.port().unwrap_or(6969);
    let made = tokio::task::spawn_blocking(move || -> Result<(Layout, PathBuf), String> {
        let s = &scratch_dir;
        let _ = std::fs::remove_dir_all(s);
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

/// Waits (a few seconds at most) until something accepts connections on
/// `port` here: the tracker the hosts are about to announce to.
async fn listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(
        port,
        "the tracker does not accept connections; staging anyway"
    );
}

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
        // Past every host's timeout, the helpers' own bound.
        let helpers_bound = self.settings.host_timeout * 2 + Duration::from_secs(60);
        let tracker = async {
            if run_tracker {
                let argv: Vec<OsString> = vec![
                    "opentracker".into(),
                    "-f".into(),
                    prepared.tracker_conf.clone().into(),
                ];
                match process::run(&argv, None, helpers_bound, self.env).await {
                    Ok(out) if !out.success() => {
                        tracing::error!(error = %out.failure(), "opentracker stopped")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot run opentracker"),
                    Ok(_) => {}
                }
            }
            std::future::pending::<()>().await;
        };
        let seeder = async {
            if run_tracker {
                listening(announce.port().unwrap_or(6969)).await;
            }
            let argv = bt_seeder_argv(&prepared.torrent, &prepared.seed);
            match process::run(&argv, None, helpers_bound, self.env).await {
                Ok(out) if !out.success() => {
                    tracing::error!(error = %out.failure(), "the bastion's aria2c stopped seeding")
                }
                Err(e) => tracing::error!(error = %e, "cannot run aria2c on the bastion"),
                Ok(_) => {}
            }
            std::future::pending::<()>().await;
        };
        let layout = &prepared.layout;
        let bundle = &prepared.bundle;
        let hosts = self.each_with(
            1,
            self.settings.host_timeout,
            |i, place| async move {
                let Place::Remote { host, target } = place else {
                    return self.stage_rsync_one(artifact, release, &[], i, place).await;
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
                let out = process::run_input(
                    &argv,
                    None,
                    self.settings.host_timeout,
                    self.env,
                    Some(bundle),
                )
                .await
                .map_err(other)?;
                if !out.success() || !out.stdout.lines().any(|l| l.trim() == STAGED_MARK) {
                    return Err(describe_failure(&out, self.settings.host_timeout));
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
            done,
        );
        let results = tokio::select! {
            r = hosts => r,
            () = async { tokio::join!(tracker, seeder); } => unreachable!("the helpers never end by themselves"),
        };
        let _ = tokio::fs::remove_dir_all(scratch).await;
        results
    }
}
