//! The hosts' command lines and remote scripts, and what their output
//! says: pure functions of the config, a validated host and `ReleaseId`s —
//! never of Asana text or commit messages — each unit-tested. Scripts sent
//! to a remote shell quote every word. Nothing here runs anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::SshOptions;
use crate::domain::model::{Host, HostReleases, ReleaseId};

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

/// The ciphers pushgate prefers when neither the `ssh_config` nor
/// `sync.ssh_ciphers` names any: AES-GCM first where the bastion has AES
/// instructions (about two thirds of the CPU per byte of
/// chacha20-poly1305, OpenSSH's first choice: 0.63× on the sending side,
/// `docs/benchmarks.md` §10), else OpenSSH's own order.
/// `^` puts them ahead of OpenSSH's defaults, which stay as fallbacks.
pub fn default_ciphers(aes: bool) -> Option<&'static str> {
    aes.then_some("^aes128-gcm@openssh.com,aes256-gcm@openssh.com")
}

/// The ssh configuration pushgate hands ssh (`-F`) to carry a cipher
/// preference under the user's: the user's `ssh_config` (or, without one,
/// the files ssh reads by default) first — the first value ssh obtains
/// wins — then `Ciphers` for every host. `None` for a path this file
/// could not quote.
pub fn cipher_config(user: Option<&Path>, ciphers: &str) -> Option<String> {
    let include = |p: &str| -> Option<String> {
        (!p.contains(['"', '\n'])).then(|| format!("Include \"{p}\"\n"))
    };
    let mut s = String::from(
        "# written by pushgate: your configuration first (its values win), then pushgate's defaults\n",
    );
    match user {
        Some(p) => s.push_str(&include(&p.display().to_string())?),
        None => {
            s.push_str("Include ~/.ssh/config\n");
            s.push_str("Include /etc/ssh/ssh_config\n");
        }
    }
    if ciphers.contains(|c: char| c.is_whitespace() || c == '"') {
        return None;
    }
    s.push_str(&format!("Host *\n    Ciphers {ciphers}\n"));
    Some(s)
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
    let link = link_dest.map(|l| format!("../{l}"));
    rsync_words(opts, artifact, place, release, link.as_deref(), None)
}

/// The stage of an ssh host in one session: rsync whose remote side first
/// runs [`stage_prefix`] (`--rsync-path`: it makes `TARGET/releases`,
/// deletes the releases a past push left to prune, and reports what the
/// host runs and keeps on stderr), hard-linking unchanged files from the
/// host's `current` release, whatever it is (`--link-dest=../../current`,
/// relative to the release directory). `None` for a `local:` host.
pub fn stage_argv(
    opts: &SshOptions,
    artifact: &Path,
    place: &Place<'_>,
    release: &ReleaseId,
    prune: &[ReleaseId],
) -> Option<Vec<OsString>> {
    let Place::Remote { target, .. } = place else {
        return None;
    };
    let prefix = format!("{} && rsync", stage_prefix(target, release, prune));
    Some(rsync_words(
        opts,
        artifact,
        place,
        release,
        Some("../../current"),
        Some(&prefix),
    ))
}

/// What the stage's remote prefix writes before each line it reports.
pub const PROBE_MARK: &str = "pushgate-probe";

/// Run on an ssh host before its rsync receiver, in the stage's session:
/// creates `TARGET/releases`, refuses to stage over the release `current`
/// points at, deletes `prune` (never the release `current` points at),
/// then reports on stderr (stdout is rsync's) `pushgate-probe current=LINK`
/// and one `pushgate-probe release=NAME` per release kept.
pub fn stage_prefix(target: &Path, release: &ReleaseId, prune: &[ReleaseId]) -> String {
    let t = shell_quote(&target.display().to_string());
    probe_and_prune(&t, release, prune, " >&2", "rm -rf -- \"releases/$r\"")
}

/// What both transports' stage sessions begin with, in `TARGET`: make
/// `releases/`, report `current` (then refuse to stage over it), delete
/// `prune` but the release `current` points at (by `remove`, a command
/// that removes `"releases/$r"`), and report every release kept. Reports
/// go to `report` (`" >&2"` where stdout is rsync's).
fn probe_and_prune(
    t: &str,
    release: &ReleaseId,
    prune: &[ReleaseId],
    report: &str,
    remove: &str,
) -> String {
    let mut s = format!(
        "cd -- {t} && mkdir -p releases && c=\"$(readlink current 2>/dev/null)\"; printf '{PROBE_MARK} current=%s\\n' \"$c\"{report} && if [ \"$c\" = releases/{release} ]; then echo 'pushgate: release {release} is the current release of this host; refusing to stage over it' >&2; exit 1; fi"
    );
    let names: Vec<String> = prune
        .iter()
        .filter(|r| *r != release)
        .map(|r| shell_quote(r.as_str()))
        .collect();
    if !names.is_empty() {
        s.push_str(&format!(
            " && for r in {}; do [ \"$c\" = \"releases/$r\" ] || {remove}; done",
            names.join(" ")
        ));
    }
    s.push_str(&format!(
        " && ls -1 releases | sed 's/^/{PROBE_MARK} release=/'{report}"
    ));
    s
}

/// Parses what [`stage_prefix`] reported (on rsync's stderr, among
/// rsync's own lines); `None` if it reported nothing (it did not run).
pub fn parse_stage_probe(stderr: &str) -> Option<HostReleases> {
    let mut current = None;
    let mut seen = false;
    let mut releases = Vec::new();
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix(PROBE_MARK).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        if let Some(c) = rest.strip_prefix("current=") {
            seen = true;
            current = c
                .trim()
                .strip_prefix("releases/")
                .and_then(|l| ReleaseId::parse(l.trim_end_matches('/')));
        } else if let Some(r) = rest
            .strip_prefix("release=")
            .and_then(|r| ReleaseId::parse(r.trim()))
        {
            releases.push(r);
        }
    }
    releases.sort();
    seen.then_some(HostReleases { current, releases })
}

fn rsync_words(
    opts: &SshOptions,
    artifact: &Path,
    place: &Place<'_>,
    release: &ReleaseId,
    link_dest: Option<&str>,
    rsync_path: Option<&str>,
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
        // Relative to the destination directory TARGET/releases/NEW.
        v.push(format!("--link-dest={l}").into());
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
            if let Some(p) = rsync_path {
                v.push(format!("--rsync-path={p}").into());
            }
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

/// What a host's stage prints once its release is whole, over bittorrent.
pub const STAGED_MARK: &str = "pushgate-staged";

/// `aria2c`'s options on a host and on the bastion: no DHT or local peer
/// discovery (the tracker names every peer), files written as they come;
/// on a host, the whole run bounded by `stop_secs` whatever the peers do
/// (the bastion's seeder has no bound of its own: it lives as long as
/// the stage).
fn aria2c_common(stop_secs: Option<u64>) -> String {
    let mut s = String::from(
        "--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --file-allocation=none --allow-overwrite=true --auto-file-renaming=false --summary-interval=0 --console-log-level=error --download-result=hide",
    );
    if let Some(secs) = stop_secs {
        s.push_str(&format!(" --stop={secs}"));
    }
    s
}

/// The host's shell functions for a release's scratch directory:
/// `stop_seed DIR` kills every aria2c (and the `timeout` around one) that
/// fetches or seeds DIR's torrent from this target, whatever its pid
/// file says — a fetch whose ssh client is gone included — and only in
/// this mount namespace: a container beside it with the same target path
/// is another host. It reads the
/// command line and directory only of the processes `pgrep -f` names
/// (a host without procps: of every process, two forks each, which on a
/// busy host costs a second or more per switch); `rmw PATH…`
/// removes paths whose directories may be read-only (an artifact's 0555
/// directory), which a non-root user could not empty otherwise.
const STOP_SEEDER: &str = "stop_seed() { [ -d \"$1\" ] || return 0; d=$(cd -- \"$1/../..\" && pwd -P) || return 0; n=${1##*/}; if command -v pgrep >/dev/null 2>&1; then ps=$(pgrep -f \"releases/$n/meta/t.torrent\"); else ps=$(cd /proc && echo [0-9]*); fi; for p in $ps; do p=/proc/$p; case \"$(tr '\\000' ' ' < \"$p/cmdline\" 2>/dev/null)\" in aria2c\\ *\"releases/$n/meta/t.torrent\"*|timeout\\ *\"releases/$n/meta/t.torrent\"*) [ \"$(readlink \"$p/cwd\" 2>/dev/null)\" = \"$d\" ] && [ \"$(readlink \"$p/ns/mnt\" 2>/dev/null)\" = \"$(readlink /proc/$$/ns/mnt 2>/dev/null)\" ] && kill -9 \"${p#/proc/}\" 2>/dev/null ;; esac; done; return 0; }; rmw() { chmod -R u+w -- \"$@\" 2>/dev/null; rm -rf -- \"$@\"; }";

/// How a host fetches a release over bittorrent (see [`bt_stage_script`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtStage<'a> {
    pub release: &'a ReleaseId,
    pub prune: &'a [ReleaseId],
    /// The release whose files the torrent lists first as unchanged.
    pub base: Option<&'a ReleaseId>,
    /// The changed files (`--select-file`, 1-based), for a host on `base`.
    pub changed: Option<(usize, usize)>,
    /// Whether the torrent has any file at all.
    pub files: bool,
    /// `host_timeout`, in seconds: the longest a host's aria2c runs (its
    /// fetch is stopped by `timeout` a little earlier, where the host has
    /// coreutils' `timeout`, so that it ends with the session).
    pub stop_secs: u64,
}

/// A host's stage over bittorrent, in one session whose stdin is the
/// bundle (a gzipped tar: `meta/t.torrent`, `meta/reuse` and the
/// skeleton under `tree/`). Like [`stage_prefix`] it makes
/// `TARGET/releases`, refuses to stage over `current`, prunes and
/// reports (on stdout here); it stops and removes what an earlier stage
/// left in `releases/.*.bt`; then `aria2c` fetches into `releases/NEW/`
/// (every piece verified) — only the changed files on a host whose
/// `current` is the base, whose unchanged files are hard-linked from it
/// instead — the skeleton gives directories, symlinks, empty files,
/// modes and times (`cp --attributes-only`, never on the linked files),
/// and a seeder stays behind for the others until the switch (or its
/// bound) stops it. Every word from the config is quoted.
pub fn bt_stage_script(target: &Path, bt: &BtStage<'_>) -> String {
    let release = bt.release;
    let t = shell_quote(&target.display().to_string());
    let w = format!("releases/.{release}.bt");
    let opts = aria2c_common(Some(bt.stop_secs));
    // Bounded on the host a little below host_timeout (TERM, then KILL
    // `kill` seconds later, all within host_timeout: a twentieth of it, at
    // most HOST_KILL_AFTER): a fetch never outlives its session by long.
    let kill = (bt.stop_secs / 20).clamp(1, HOST_KILL_AFTER.as_secs());
    let fetch_secs = bt.stop_secs.saturating_sub(kill).max(1);
    let seed = format!(
        "--bt-seed-unverified=true --seed-ratio=0.0 --seed-time={}",
        bt.stop_secs.div_ceil(60).max(1)
    );
    // A host that fetches every file goes on seeding them from the same
    // aria2c (see [`fetch_then_seed`]).
    let all = if bt.files {
        fetch_then_seed(&opts, &seed)
    } else {
        ":".into()
    };
    // A host on the base fetches only the changed files (a range of the
    // torrent's), then a separate seeder serves them.
    let on_base = match bt.changed {
        Some((a, b)) => format!(
            "$to aria2c -T \"$w/meta/t.torrent\" --dir=releases --seed-time=0 {opts} --select-file={a}-{b} 1>&2"
        ),
        None => ":".into(),
    };
    let mut s = format!(
        "{STOP_SEEDER}; {}",
        probe_and_prune(
            &t,
            release,
            bt.prune,
            "",
            "{ stop_seed \"releases/.$r.bt\"; rmw \"releases/$r\" \"releases/.$r.bt\"; }"
        )
    );
    // A scratch directory an earlier stage left that cannot be removed
    // is reported, and does not fail this stage: it is not this release's.
    s.push_str(&format!(
        " && for d in releases/.*.bt; do [ -d \"$d\" ] || continue; stop_seed \"$d\"; rmw \"$d\" || echo \"pushgate: cannot remove $d; staging anyway\" >&2; done && rm -f -- releases/*.aria2 && w={w} && rmw releases/{release} && mkdir -p -- \"$w\" releases/{release} && tar -xzpf - --no-same-owner -C \"$w\""
    ));
    s.push_str(&format!(
        " && if command -v timeout >/dev/null 2>&1; then to=\"timeout -k {kill} {fetch_secs}\"; else to=; fi && a="
    ));
    let on = match bt.base {
        Some(b) => format!(" && if [ \"$c\" = releases/{b} ]; then on=1; else on=; fi"),
        None => " && on=".into(),
    };
    s.push_str(&on);
    s.push_str(&format!(
        " && if [ -n \"$on\" ]; then {on_base}; else {all}; fi && rm -f -- releases/{release}.aria2"
    ));
    // The skeleton's read-only directories are made writable while files
    // are taken out of them, and read-only again in the release.
    s.push_str(" && (cd \"$w/tree\" && find . -type d ! -perm -u+w -print0 > ../ro && xargs -0 -r chmod u+w -- < ../ro)");
    if let Some(b) = bt.base {
        s.push_str(&format!(
            " && if [ -n \"$on\" ]; then (cd releases/{b} && xargs -0 -r cp -l -f --parents -t ../{release} -- < ../.{release}.bt/meta/reuse) && (cd \"$w/tree\" && xargs -0 -r rm -f -- < ../meta/reuse); fi"
        ));
    }
    s.push_str(&format!(
        " && cp -R -P --attributes-only --preserve=mode,timestamps -- \"$w/tree/.\" releases/{release}/ && (cd releases/{release} && xargs -0 -r chmod u-w -- < ../.{release}.bt/ro) && rmw \"$w/tree\" && if [ -n \"$a\" ]; then echo \"$a\" > \"$w/seed.pid\"; else (setsid aria2c -T \"$w/meta/t.torrent\" --dir=releases {seed} {opts} > /dev/null 2>&1 < /dev/null & echo $! > \"$w/seed.pid\"); fi && echo {STAGED_MARK}"
    ));
    s
}

/// A host's fetch of every file that goes on seeding them, in one
/// `aria2c`: a host that ended its fetch and then started a seeder would
/// leave the swarm meanwhile, while the others still fetch from it.
/// aria2c runs in a session of its own, its output into a FIFO the stage
/// reads, and runs `$w/done` once every piece is verified, which prints
/// [`FETCHED_MARK`] there, and seeds on. The stage copies aria2c's lines
/// to its stderr until the mark (`sed`, which then exits 7): a cause
/// reaches pushgate even when the disk is full. Then a `cat` drains the
/// FIFO for as long as aria2c lives, holding none of the session's
/// descriptors, so the session ends while aria2c seeds. The FIFO's end
/// before the mark means aria2c is gone: its exit status is the stage's.
/// `$to` bounds the wait (then aria2c is stopped, and the stage exits
/// with `timeout`'s status). Every descriptor is opened before aria2c
/// starts, so neither side can see the FIFO end early. Sets `$a` to the
/// seeder's pid.
fn fetch_then_seed(opts: &str, seed: &str) -> String {
    format!(
        "{{ mkfifo -- \"$w/ev\" && printf '#!/bin/sh\\necho {FETCHED_MARK}\\n' > \"$w/done\" && chmod +x -- \"$w/done\"; }} && {{ exec 5<>\"$w/ev\" 3>\"$w/ev\" 6<\"$w/ev\"; {{ setsid aria2c -T \"$w/meta/t.torrent\" --dir=releases --on-bt-download-complete=\"$w/done\" {seed} {opts}; }} 1>&3 2>&3 3>&- < /dev/null 5<&- 6<&- & a=$!; exec 3>&- 5<&-; $to sed -n -e '/^{FETCHED_MARK}$/q7' -e p <&6 >&2; st=$?; if [ \"$st\" -eq 7 ]; then cat <&6 > /dev/null 2>&1 & exec 6<&-; else exec 6<&-; if [ \"$st\" -eq {HOST_TIMED_OUT} ]; then stop_seed \"$w\"; else wait \"$a\"; st=$?; fi; [ \"$st\" -ne 0 ] || st=1; exit \"$st\"; fi; }}"
    )
}

/// What a host's `$w/done` prints once aria2c has every piece.
const FETCHED_MARK: &str = "pushgate-fetched";

/// What the switch of a release staged over bittorrent does first: stop
/// the host's seeder of it and remove its scratch directory.
pub fn bt_unseed(target: &Path, release: &ReleaseId) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "{STOP_SEEDER}; cd -- {t} && {{ stop_seed releases/.{release}.bt; rmw releases/.{release}.bt releases/{release}.aria2; }}"
    )
}

/// The bastion's seeder of a release: every piece, from the seed
/// directory (the artifact's files hard-linked under the release's name).
/// It has no bound of its own (`--seed-ratio=0.0` without `--seed-time`
/// seeds until stopped): it lives exactly as long as the stage, which
/// kills it, however many rounds of `sync.parallelism` hosts that takes.
pub fn bt_seeder_argv(torrent: &Path, seed_dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "aria2c".into(),
        "-T".into(),
        torrent.into(),
        {
            let mut d = OsString::from("--dir=");
            d.push(seed_dir);
            d
        },
        "--bt-seed-unverified=true".into(),
        "--seed-ratio=0.0".into(),
    ];
    v.extend(aria2c_common(None).split(' ').map(OsString::from));
    v
}

/// Debian's `opentracker` for one stage: it listens on `port`, serves only
/// the release's info hash (`whitelist`, inside `root`, where it chroots
/// before dropping to user nobody).
pub fn tracker_config(root: &Path, port: u16) -> String {
    format!(
        "# written by pushgate for one stage\nlisten.tcp 0.0.0.0:{port}\naccess.whitelist /whitelist\ntracker.rootdir {}\n",
        root.display()
    )
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

/// What the switch prints on stdout once `current` points at the release,
/// before `after_switch` runs: its absence means the switch itself failed.
pub const SWITCHED_MARK: &str = "pushgate-switched";

/// The switch and `sync.after_switch` in one session: [`switch_script`],
/// then [`SWITCHED_MARK`] on stdout, then `after_switch` in the target
/// directory, each word quoted, its stdout sent to stderr so that stdout
/// only ever holds the mark.
pub fn switch_then_script(
    target: &Path,
    release: &ReleaseId,
    after_switch: Option<&[String]>,
) -> String {
    switch_then(target, release, after_switch, false)
}

/// [`switch_then_script`]; with `unseed`, first [`bt_unseed`].
pub fn switch_then(
    target: &Path,
    release: &ReleaseId,
    after_switch: Option<&[String]>,
    unseed: bool,
) -> String {
    let mut s = if unseed {
        format!("{}; ", bt_unseed(target, release))
    } else {
        String::new()
    };
    s.push_str(&format!(
        "{} && echo {SWITCHED_MARK}",
        switch_script(target, release)
    ));
    if let Some(argv) = after_switch {
        let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
        s.push_str(&format!(" && {} >&2", words.join(" ")));
    }
    s
}

/// Whether [`switch_then_script`]'s output says `current` was switched.
pub fn switched(stdout: &str) -> bool {
    stdout.lines().any(|l| l.trim() == SWITCHED_MARK)
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

/// [`remove_script`] for releases staged over bittorrent: each one's
/// seeder stopped and scratch directory removed too.
pub fn remove_bt_script(target: &Path, releases: &[ReleaseId]) -> String {
    let t = shell_quote(&target.display().to_string());
    let mut s = format!("{STOP_SEEDER}; cd -- {t}/releases");
    for r in releases {
        s.push_str(&format!(
            " && stop_seed .{r}.bt && rmw {r} .{r}.bt {r}.aria2"
        ));
    }
    s
}

/// `sync.after_switch`, run in the target directory, each word quoted.
pub fn after_switch_script(target: &Path, argv: &[String]) -> String {
    in_target(target, argv)
}

/// A cluster's `health_check` on an ssh host, run in the target
/// directory (`current/…` is the release just switched to), each word
/// quoted, and bounded on the host by `limit`: coreutils' `timeout` (TERM,
/// then KILL [`HOST_KILL_AFTER`] later) where the host has it, so a check
/// that hangs ends there rather than outliving its ssh session. Its exit
/// status is then [`HOST_TIMED_OUT`].
pub fn health_script(target: &Path, argv: &[String], limit: Duration) -> String {
    let t = shell_quote(&target.display().to_string());
    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
    let words = words.join(" ");
    let secs = limit.as_secs_f64().ceil().max(1.0) as u64;
    let kill = HOST_KILL_AFTER.as_secs();
    format!(
        "cd -- {t} && if command -v timeout >/dev/null 2>&1; then exec timeout -k {kill} {secs} {words}; else exec {words}; fi"
    )
}

/// What `timeout` exits with when it stopped the command.
pub const HOST_TIMED_OUT: i32 = 124;

/// How long `timeout` waits after TERM before it kills.
pub const HOST_KILL_AFTER: Duration = Duration::from_secs(5);

fn in_target(target: &Path, argv: &[String]) -> String {
    let t = shell_quote(&target.display().to_string());
    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
    format!("cd -- {t} && {}", words.join(" "))
}

/// The environment of a cluster's `wave_check` (on the bastion): which
/// cluster, release and commit, which wave of how many, the hosts it
/// switched and every host switched so far (one per line, as the config
/// writes them). Built from the config and validated hosts only.
#[allow(clippy::too_many_arguments)]
pub fn wave_check_env(
    cluster: &str,
    release: &ReleaseId,
    commit: &str,
    previous: Option<&ReleaseId>,
    wave: usize,
    of: usize,
    wave_hosts: &[&Host],
    switched: &[&Host],
) -> Vec<(String, String)> {
    let lines = |hs: &[&Host]| {
        hs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    vec![
        ("PUSHGATE_CLUSTER".into(), cluster.to_owned()),
        ("PUSHGATE_RELEASE".into(), release.to_string()),
        ("PUSHGATE_COMMIT".into(), commit.to_owned()),
        (
            "PUSHGATE_PREVIOUS_RELEASE".into(),
            previous.map(ToString::to_string).unwrap_or_default(),
        ),
        ("PUSHGATE_WAVE".into(), wave.to_string()),
        ("PUSHGATE_WAVES".into(), of.to_string()),
        ("PUSHGATE_WAVE_HOSTS".into(), lines(wave_hosts)),
        ("PUSHGATE_HOSTS".into(), lines(switched)),
    ]
}

/// What `check` asks of a host: create `TARGET/releases`, write and remove
/// a file there, and say which rsync it has (and, for the bittorrent
/// transport, which aria2c: a second line, `aria2c: none` without one).
pub fn check_script(target: &Path) -> String {
    let t = shell_quote(&target.display().to_string());
    format!(
        "mkdir -p -- {t}/releases && f={t}/releases/.pushgate-check.$$ && : > \"$f\" && rm -f -- \"$f\" && rsync --version | head -n 1"
    )
}

/// [`check_script`], then aria2c's version line (`aria2c: none` without it).
pub fn check_bt_script(target: &Path) -> String {
    format!(
        "{} && {{ aria2c --version 2>/dev/null | head -n 1 | grep . || echo 'aria2c: none'; }}",
        check_script(target)
    )
}

/// Whether [`check_bt_script`]'s second line names an aria2c.
pub fn check_aria2c(second_line: &str) -> Result<String, String> {
    let l = second_line.trim();
    match l.strip_prefix("aria2 version ") {
        Some(v) => Ok(format!("aria2c {}", crate::domain::text::printable(v, 20))),
        None => Err(
            "no aria2c (sync.transport = \"bittorrent\" needs it on every host: Debian's `aria2`)"
                .into(),
        ),
    }
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
    fn the_cipher_preference_comes_after_the_users_ssh_config() {
        assert_eq!(default_ciphers(false), None);
        expect![[r#"
            # written by pushgate: your configuration first (its values win), then pushgate's defaults
            Include "/etc/pushgate/ssh config"
            Host *
                Ciphers ^aes128-gcm@openssh.com,aes256-gcm@openssh.com
        "#]]
        .assert_eq(
            &cipher_config(
                Some(Path::new("/etc/pushgate/ssh config")),
                default_ciphers(true).unwrap(),
            )
            .unwrap(),
        );
        let none = cipher_config(None, "chacha20-poly1305@openssh.com").unwrap();
        assert!(none.contains("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n"));
        assert!(cipher_config(Some(Path::new("/a\"b")), "x").is_none());
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
    fn an_ssh_hosts_stage_is_one_session_that_probes_prunes_and_links_against_current() {
        let opts = SshOptions::default();
        let host = Host::parse("deploy@web-1:2222").unwrap();
        let place = Place::of(&host, Some(Path::new("/srv/it's app"))).unwrap();
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        let old = [
            rel("20261101T101500Z-0123456789ab"),
            rel("20261102T101500Z-0123456789ab"),
            r.clone(),
        ];
        let argv = stage_argv(&opts, Path::new("/a"), &place, &r, &old).unwrap();
        expect![[r#"rsync | --archive | --delete | --stats | --modify-window=-1 | --link-dest=../../current | -e | ssh -o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o StrictHostKeyChecking=yes -p 2222 | --rsync-path=cd -- '/srv/it'\''s app' && mkdir -p releases && c="$(readlink current 2>/dev/null)"; printf 'pushgate-probe current=%s\n' "$c" >&2 && if [ "$c" = releases/20261122T101500Z-3f2a9c13f2a9 ]; then echo 'pushgate: release 20261122T101500Z-3f2a9c13f2a9 is the current release of this host; refusing to stage over it' >&2; exit 1; fi && for r in '20261101T101500Z-0123456789ab' '20261102T101500Z-0123456789ab'; do [ "$c" = "releases/$r" ] || rm -rf -- "releases/$r"; done && ls -1 releases | sed 's/^/pushgate-probe release=/' >&2 && rsync | --protect-args | /a/ | deploy@web-1:/srv/it's app/releases/20261122T101500Z-3f2a9c13f2a9/"#]]
            .assert_eq(&words(&argv));
        let local = Host::parse("local:/tmp/h1").unwrap();
        let place = Place::of(&local, None).unwrap();
        assert!(stage_argv(&opts, Path::new("/a"), &place, &r, &[]).is_none());
        // Nothing to prune: no loop.
        assert!(!stage_prefix(Path::new("/srv/app"), &r, &[]).contains("rm -rf"));
    }

    #[test]
    fn the_stage_probe_is_read_from_among_rsyncs_own_lines() {
        let err = "pushgate-probe current=releases/20261121T101500Z-0123456789ab\n--link-dest arg does not exist: x\npushgate-probe release=20261121T101500Z-0123456789ab\npushgate-probe release=$(reboot)\npushgate-probe release=20261120T101500Z-0123456789ab\n";
        let h = parse_stage_probe(err).unwrap();
        assert_eq!(h.current, Some(rel("20261121T101500Z-0123456789ab")));
        assert_eq!(
            h.releases,
            vec![
                rel("20261120T101500Z-0123456789ab"),
                rel("20261121T101500Z-0123456789ab")
            ]
        );
        assert_eq!(
            parse_stage_probe("pushgate-probe current=\n"),
            Some(HostReleases::default())
        );
        assert_eq!(
            parse_stage_probe("rsync: connection unexpectedly closed"),
            None
        );
    }

    #[test]
    fn the_switch_and_after_switch_are_one_script_whose_mark_says_the_switch_happened() {
        let t = Path::new("/srv/it's app");
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        expect![[r#"cd -- '/srv/it'\''s app' && test -d releases/20261122T101500Z-3f2a9c13f2a9 && ln -sfn releases/20261122T101500Z-3f2a9c13f2a9 .current.20261122T101500Z-3f2a9c13f2a9 && mv -Tf .current.20261122T101500Z-3f2a9c13f2a9 current && echo pushgate-switched && 'sudo' 'reload' '$(reboot)' >&2"#]]
            .assert_eq(&switch_then_script(
                t,
                &r,
                Some(&["sudo".into(), "reload".into(), "$(reboot)".into()]),
            ));
        assert!(switch_then_script(t, &r, None).ends_with("current && echo pushgate-switched"));
        assert!(switched("pushgate-switched\n"));
        assert!(!switched(""));
        assert!(!switched("xpushgate-switched\n"));
    }

    #[test]
    fn a_bittorrent_stage_fetches_only_the_changed_files_on_a_host_that_runs_the_base() {
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        let b = rel("20261121T101500Z-0123456789ab");
        let s = bt_stage_script(
            Path::new("/srv/it's app"),
            &BtStage {
                release: &r,
                prune: &[],
                base: Some(&b),
                changed: Some((4, 9)),
                files: true,
                stop_secs: 600,
            },
        );
        assert!(
            s.contains("cd -- '/srv/it'\\''s app' && mkdir -p releases"),
            "{s}"
        );
        assert!(
            s.contains("if [ \"$c\" = releases/20261121T101500Z-0123456789ab ]; then on=1"),
            "{s}"
        );
        assert!(s.contains("then $to aria2c -T \"$w/meta/t.torrent\" --dir=releases --seed-time=0 --enable-dht=false"), "{s}");
        // The fetch ends on the host a little before host_timeout.
        assert!(
            s.contains(
                "if command -v timeout >/dev/null 2>&1; then to=\"timeout -k 5 595\"; else to=; fi"
            ),
            "{s}"
        );
        assert!(
            s.contains("--stop=600 --select-file=4-9 1>&2; else { mkfifo -- \"$w/ev\""),
            "{s}"
        );
        // A host off the base fetches everything and seeds on from the
        // same aria2c; one on it seeds from a second one, started after.
        assert!(s.contains("{ setsid aria2c -T \"$w/meta/t.torrent\" --dir=releases --on-bt-download-complete=\"$w/done\" --bt-seed-unverified=true --seed-ratio=0.0 --seed-time=10 --enable-dht=false"), "{s}");
        // aria2c's output is the FIFO's, not the session's: the session
        // ends while it seeds on, a drain reading what it says after.
        assert!(
            s.contains("; } 1>&3 2>&3 3>&- < /dev/null 5<&- 6<&- & a=$!;"),
            "{s}"
        );
        assert!(s.contains("$to sed -n -e '/^pushgate-fetched$/q7' -e p <&6 >&2; st=$?; if [ \"$st\" -eq 7 ]; then cat <&6 > /dev/null 2>&1 &"), "{s}");
        assert!(
            s.contains("if [ -n \"$a\" ]; then echo \"$a\" > \"$w/seed.pid\"; else (setsid aria2c"),
            "{s}"
        );
        // A reused file named `--help` is a name, not an option.
        assert!(s.contains("(cd releases/20261121T101500Z-0123456789ab && xargs -0 -r cp -l -f --parents -t ../20261122T101500Z-3f2a9c13f2a9 -- < ../.20261122T101500Z-3f2a9c13f2a9.bt/meta/reuse)"), "{s}");
        assert!(s.contains("--seed-time=10 "), "{s}");
        assert!(s.ends_with("echo pushgate-staged"), "{s}");
        // No base: every host fetches everything, links nothing.
        let s = bt_stage_script(
            Path::new("/srv/app"),
            &BtStage {
                release: &r,
                prune: &[],
                base: None,
                changed: None,
                files: true,
                stop_secs: 60,
            },
        );
        assert!(!s.contains("cp -l") && !s.contains("--select-file"), "{s}");
        assert!(s.contains("&& on= &&"), "{s}");
    }

    #[test]
    fn a_bittorrent_stage_stops_what_it_removes_and_is_not_failed_by_a_leftover() {
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        let old = [rel("20261101T101500Z-0123456789ab")];
        let s = bt_stage_script(
            Path::new("/srv/app"),
            &BtStage {
                release: &r,
                prune: &old,
                base: None,
                changed: None,
                files: true,
                stop_secs: 3,
            },
        );
        // A pruned release's seeder is stopped before its files go.
        assert!(s.contains("for r in '20261101T101500Z-0123456789ab'; do [ \"$c\" = \"releases/$r\" ] || { stop_seed \"releases/.$r.bt\"; rmw \"releases/$r\" \"releases/.$r.bt\"; }; done"), "{s}");
        // An earlier stage's scratch that cannot go is reported, not fatal.
        assert!(
            s.contains(
                "rmw \"$d\" || echo \"pushgate: cannot remove $d; staging anyway\" >&2; done && "
            ),
            "{s}"
        );
        // Read-only directories are made writable before anything is removed.
        assert!(
            s.contains("rmw() { chmod -R u+w -- \"$@\" 2>/dev/null; rm -rf -- \"$@\"; }"),
            "{s}"
        );
        assert!(
            s.contains("&& rmw releases/20261122T101500Z-3f2a9c13f2a9 && mkdir -p"),
            "{s}"
        );
        // A short host_timeout leaves the fetch most of it.
        assert!(s.contains("to=\"timeout -k 1 2\""), "{s}");
        // Fetchers of a release are stopped wherever they came from.
        assert!(s.contains("aria2c\\ *\"releases/$n/meta/t.torrent\"*|timeout\\ *\"releases/$n/meta/t.torrent\"*"), "{s}");
        // Only the processes pgrep names are read, where there is pgrep.
        assert!(s.contains("then ps=$(pgrep -f \"releases/$n/meta/t.torrent\"); else ps=$(cd /proc && echo [0-9]*); fi; for p in $ps; do p=/proc/$p; case"), "{s}");
    }

    #[test]
    fn a_bittorrent_switch_stops_the_hosts_seeder_first() {
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        let s = switch_then(Path::new("/srv/app"), &r, None, true);
        assert!(s.starts_with("stop_seed() {"), "{s}");
        // Nothing is removed outside the target when it cannot be entered.
        assert!(s.contains("cd -- '/srv/app' && { stop_seed releases/.20261122T101500Z-3f2a9c13f2a9.bt; rmw releases/.20261122T101500Z-3f2a9c13f2a9.bt releases/20261122T101500Z-3f2a9c13f2a9.aria2; }; cd -- '/srv/app' && test -d releases/"), "{s}");
        assert_eq!(
            switch_then(Path::new("/srv/app"), &r, None, false),
            switch_then_script(Path::new("/srv/app"), &r, None)
        );
        // The bastion's seeder lives as long as the stage, not a bound of its own.
        let seeder = words(&bt_seeder_argv(
            Path::new("/s/t.torrent"),
            Path::new("/s/seed"),
        ));
        assert!(
            seeder.contains("--seed-ratio=0.0")
                && !seeder.contains("--stop")
                && !seeder.contains("--seed-time"),
            "{seeder}"
        );
        assert!(check_aria2c("aria2 version 1.36.0").is_ok());
        assert!(check_aria2c("aria2c: none")
            .unwrap_err()
            .contains("no aria2c"));
        expect![[r#"
            # written by pushgate for one stage
            listen.tcp 0.0.0.0:6969
            access.whitelist /whitelist
            tracker.rootdir /var/lib/pushgate/bt/t
        "#]]
        .assert_eq(&tracker_config(Path::new("/var/lib/pushgate/bt/t"), 6969));
    }

    #[test]
    fn the_health_check_runs_in_the_target_with_every_word_quoted_bounded_on_the_host() {
        let t = Path::new("/srv/it's app");
        expect![[r#"cd -- '/srv/it'\''s app' && if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 3 'curl' '-fsS' 'http://127.0.0.1:8080/healthz?x=$(reboot)'; else exec 'curl' '-fsS' 'http://127.0.0.1:8080/healthz?x=$(reboot)'; fi"#]]
            .assert_eq(&health_script(
                t,
                &[
                    "curl".into(),
                    "-fsS".into(),
                    "http://127.0.0.1:8080/healthz?x=$(reboot)".into(),
                ],
                Duration::from_millis(2500),
            ));
    }

    #[test]
    fn the_wave_check_is_told_the_cluster_release_and_hosts_by_its_environment() {
        let r = rel("20261122T101500Z-3f2a9c13f2a9");
        let p = rel("20261121T101500Z-0123456789ab");
        let h: Vec<Host> = ["local:/srv/a", "deploy@web-2:2222", "web-3"]
            .iter()
            .map(|h| Host::parse(h).unwrap())
            .collect();
        let env = wave_check_env(
            "beta",
            &r,
            "3f2a",
            Some(&p),
            2,
            3,
            &[&h[1], &h[2]],
            &[&h[0], &h[1], &h[2]],
        );
        let text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        expect![[r#"
            PUSHGATE_CLUSTER="beta"
            PUSHGATE_RELEASE="20261122T101500Z-3f2a9c13f2a9"
            PUSHGATE_COMMIT="3f2a"
            PUSHGATE_PREVIOUS_RELEASE="20261121T101500Z-0123456789ab"
            PUSHGATE_WAVE="2"
            PUSHGATE_WAVES="3"
            PUSHGATE_WAVE_HOSTS="deploy@web-2:2222\nweb-3"
            PUSHGATE_HOSTS="local:/srv/a\ndeploy@web-2:2222\nweb-3""#]]
        .assert_eq(&text.join("\n"));
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
