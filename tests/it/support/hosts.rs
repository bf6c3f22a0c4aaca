//! Real hosts for the ssh tests: each one a network namespace with its own
//! address on a veth pair, running OpenSSH's sshd with a generated host key
//! and accepting a generated client key for root.
//!
//! Network namespaces share the filesystem, so each sshd also gets its own
//! mount namespace in which the host's private directory is bind-mounted
//! over the cluster's `target`: every ssh session and rsync on host N sees
//! its own TARGET, and the test reads it through `Hosts::dir(N)`.
//!
//! Hosts can be made broken, for real (`Kind` at start, then `stop_sshd`,
//! `unplug`, `stall`, `deny_writes`): a tmpfs too small for the artifact
//! as TARGET, a non-root ssh user whose TARGET it cannot write, no route to
//! the address, an sshd whose rsync sessions block on a FIFO.
//!
//! Needs root, `ip`, `unshare`, `mount`, `sshd`, `ssh`, `ssh-keygen`,
//! `rsync` and `useradd`; `unavailable` says what is missing. Everything is
//! removed on drop: stalled sessions are released, sshd is killed, routes,
//! the veth pairs and the namespaces deleted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// How long sshd may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Hosts made by this process so far: part of every namespace and veth name.
static HOST_SEQ: AtomicU32 = AtomicU32::new(0);
/// Subnets taken by this process so far.
static SUBNET_SEQ: AtomicU32 = AtomicU32::new(0);

/// A program's absolute path: on `PATH`, or in the sbin directories that a
/// non-root `PATH` often lacks.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Why real hosts cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("network namespaces and sshd need root".into());
    }
    let missing: Vec<&str> = [
        "ip",
        "unshare",
        "mount",
        "sshd",
        "ssh",
        "ssh-keygen",
        "rsync",
        "useradd",
    ]
    .into_iter()
    .filter(|p| find(p).is_none())
    .collect();
    (!missing.is_empty()).then(|| format!("not installed: {}", missing.join(", ")))
}

/// Runs a command to completion; its stderr in the error.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(find(program).unwrap_or_else(|| program.into()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) {
    run("ip", args).unwrap_or_else(|e| panic!("{e}"));
}

/// A /24 of 10.213.0.0/16 that no interface uses, starting from one
/// derived from the process id so that concurrent runs pick different ones.
fn free_subnet() -> u32 {
    let used = run("ip", &["-o", "-4", "addr", "show"]).unwrap_or_default();
    let start = std::process::id() + SUBNET_SEQ.fetch_add(1, Ordering::Relaxed);
    (0..250)
        .map(|k| (start + k) % 250 + 1)
        .find(|s| !used.contains(&format!(" 10.213.{s}.")))
        .expect("a free 10.213.x.0/24")
}

/// How a host is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// root over ssh, TARGET a directory of the test's.
    #[default]
    Plain,
    /// TARGET is a tmpfs of this many KiB, in the host's mount namespace:
    /// an artifact larger than that fills the disk.
    Tmpfs { kib: u32 },
    /// Reached as [`DEPLOY_USER`] (not root), who owns TARGET until
    /// `deny_writes`.
    Deploy,
}

/// The non-root ssh user of `Kind::Deploy` hosts, made once per machine.
pub const DEPLOY_USER: &str = "pushgate-it";

/// Makes `DEPLOY_USER` unless it exists: a system user without a home, a
/// usable shell and a password field ("*") that sshd does not read as
/// locked. Several test processes may race; whoever loses finds the user.
fn ensure_deploy_user() -> (u32, u32) {
    static MADE: Mutex<()> = Mutex::new(());
    let _one = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let ids = || -> Option<(u32, u32)> {
        let uid = run("id", &["-u", DEPLOY_USER]).ok()?.trim().parse().ok()?;
        let gid = run("id", &["-g", DEPLOY_USER]).ok()?.trim().parse().ok()?;
        Some((uid, gid))
    };
    if let Some(ids) = ids() {
        return ids;
    }
    let made = run(
        "useradd",
        &[
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/bin/sh",
            "--password",
            "*",
            DEPLOY_USER,
        ],
    );
    ids().unwrap_or_else(|| panic!("cannot make the user {DEPLOY_USER}: {made:?}"))
}

/// One host: a namespace, a veth pair, an sshd.
pub struct Host {
    ns: String,
    veth: String,
    /// The host's address, in its namespace.
    pub addr: String,
    /// What this host sees as the cluster's `target`.
    pub dir: PathBuf,
    config: PathBuf,
    kind: Kind,
    sshd: Option<tokio::process::Child>,
    /// What every sshd of this host has logged.
    log: Arc<Mutex<String>>,
    /// `stall`: the FIFO every session of this host blocks on.
    fifo: Option<PathBuf>,
    /// `unplug`: the address has an `unreachable` route.
    unplugged: bool,
}

/// How the hosts are wired to this machine (the bastion).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Net {
    /// A veth pair per host, each its own /30 (the default): the hosts
    /// reach the bastion only.
    #[default]
    Point,
    /// One Linux bridge, in a namespace of its own, with every host and
    /// the bastion on one /24: the hosts reach each other directly (a
    /// swarm), and the bastion at [`Hosts::bastion_addr`] through one
    /// veth whose egress can be limited (`tc tbf`, e.g. `"100mbit"`);
    /// each host's egress can be delayed (`tc netem`, e.g. `"20ms"`).
    Switch {
        bastion_rate: Option<String>,
        host_delay: Option<String>,
    },
}

/// Hosts for one test, with the keys and files that reach them.
pub struct Hosts {
    hosts: Vec<Host>,
    /// `Net::Switch`: the bridge's namespace, the bastion's veth (its end
    /// here) and its address.
    switch: Option<(String, String, String)>,
    sshd: PathBuf,
    /// The cluster's `target`: an empty directory here, the host's own
    /// directory inside each sshd's mount namespace.
    pub target: PathBuf,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    /// An empty ssh client configuration: the test does not depend on
    /// `~/.ssh/config` or `/etc/ssh/ssh_config`.
    pub ssh_config: PathBuf,
    /// Removed last, after `Drop` stopped every sshd.
    tmp: tempfile::TempDir,
}

fn keygen(path: &Path) {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "pushgate-test",
            "-f",
            &path.display().to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

impl Hosts {
    /// Makes `n` hosts and starts their sshd. `Err` only when this machine
    /// cannot make a network namespace at all (e.g. root without
    /// CAP_SYS_ADMIN in a container); any later failure panics.
    pub async fn start(n: usize) -> Result<Hosts, String> {
        Hosts::start_with(&vec![Kind::Plain; n]).await
    }

    /// Makes one host of each kind, in order, and starts their sshd.
    pub async fn start_with(kinds: &[Kind]) -> Result<Hosts, String> {
        Hosts::start_on(kinds, Net::Point).await
    }

    /// `n` plain hosts on a bridge with the bastion (see [`Net::Switch`]).
    pub async fn start_switched(
        n: usize,
        bastion_rate: Option<&str>,
        host_delay: Option<&str>,
    ) -> Result<Hosts, String> {
        Hosts::start_on(
            &vec![Kind::Plain; n],
            Net::Switch {
                bastion_rate: bastion_rate.map(str::to_owned),
                host_delay: host_delay.map(str::to_owned),
            },
        )
        .await
    }

    /// The bastion's address as the hosts reach it (`Net::Switch` only).
    pub fn bastion_addr(&self) -> Option<&str> {
        self.switch.as_ref().map(|(_, _, a)| a.as_str())
    }

    /// Makes one host of each kind, in order, wired as `net` says.
    pub async fn start_on(kinds: &[Kind], net: Net) -> Result<Hosts, String> {
        let n = kinds.len();
        assert!(n <= 63, "one /30 per host in a /24");
        let sshd = find("sshd").expect("sshd is installed");
        // sshd's privilege separation directory; packages create it at boot.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("pushgate-ssh-")
            .tempdir()
            .unwrap();
        let deploy = kinds.contains(&Kind::Deploy).then(ensure_deploy_user);
        if deploy.is_some() {
            // The deploy user walks through it to TARGET and reads
            // authorized_keys: traversable, not listable.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let identity = dir.path().join("client_key");
        keygen(&identity);
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized_keys).unwrap();
        let ssh_config = dir.path().join("ssh_config");
        std::fs::write(&ssh_config, "# empty: see tests/it/support/hosts.rs\n").unwrap();
        let known_hosts = dir.path().join("known_hosts");

        let mut hosts = Hosts {
            hosts: Vec::new(),
            switch: None,
            sshd,
            target,
            identity,
            known_hosts,
            ssh_config,
            tmp: dir,
        };
        let subnet = free_subnet();
        let pid = std::process::id();
        let mut known = String::new();
        if let Net::Switch { bastion_rate, .. } = &net {
            let k = HOST_SEQ.fetch_add(1, Ordering::Relaxed);
            let sw = format!("pg{pid}s{k}");
            let veth = format!("pg{pid}b{k}");
            let _ = run("ip", &["link", "del", &veth]);
            let _ = run("ip", &["netns", "del", &sw]);
            if let Err(e) = run("ip", &["netns", "add", &sw]) {
                return Err(format!("cannot create a network namespace: {e}"));
            }
            let addr = format!("10.213.{subnet}.1");
            hosts.switch = Some((sw.clone(), veth.clone(), addr.clone()));
            ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", "br0", "up"]);
            let peer = format!("{veth}p");
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &sw,
            ]);
            ip(&["-n", &sw, "link", "set", &peer, "master", "br0", "up"]);
            ip(&["addr", "add", &format!("{addr}/24"), "dev", &veth]);
            ip(&["link", "set", &veth, "up"]);
            if let Some(rate) = bastion_rate {
                run(
                    "tc",
                    &[
                        "qdisc", "add", "dev", &veth, "root", "tbf", "rate", rate, "burst",
                        "256kb", "latency", "100ms",
                    ],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        for i in 0..n as u32 {
            let k = HOST_SEQ.fetch_add(1, Ordering::Relaxed);
            // At most 15 bytes: an interface name's limit.
            let ns = format!("pg{pid}h{k}");
            let veth = ns.clone();
            let peer = format!("{ns}p");
            // Left over by an earlier process with this pid that was killed:
            // the names are ours.
            let _ = run("ip", &["link", "del", &veth]);
            let _ = run("ip", &["netns", "del", &ns]);
            if let Err(e) = run("ip", &["netns", "add", &ns]) {
                if hosts.hosts.is_empty() {
                    return Err(format!("cannot create a network namespace: {e}"));
                }
                panic!("{e}");
            }
            let host_dir = hosts.tmp.path().join(format!("host-{}", i + 1));
            let root = host_dir.join("root");
            std::fs::create_dir_all(&root).unwrap();
            let kind = kinds[i as usize];
            if let (Kind::Deploy, Some((uid, gid))) = (kind, deploy) {
                std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
            }
            let (outer, inner) = match &net {
                Net::Point => (
                    format!("10.213.{subnet}.{}", 4 * i + 1),
                    format!("10.213.{subnet}.{}", 4 * i + 2),
                ),
                Net::Switch { .. } => (String::new(), format!("10.213.{subnet}.{}", 10 + i)),
            };
            hosts.hosts.push(Host {
                ns: ns.clone(),
                veth: veth.clone(),
                addr: inner.clone(),
                dir: root,
                config: host_dir.join("sshd_config"),
                kind,
                sshd: None,
                log: Arc::default(),
                fifo: None,
                unplugged: false,
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &ns,
            ]);
            let prefix = match &net {
                Net::Point => {
                    ip(&["addr", "add", &format!("{outer}/30"), "dev", &veth]);
                    ip(&["link", "set", &veth, "up"]);
                    30
                }
                Net::Switch { host_delay, .. } => {
                    let (sw, _, _) = hosts.switch.clone().unwrap();
                    ip(&["link", "set", &veth, "netns", &sw]);
                    ip(&["-n", &sw, "link", "set", &veth, "master", "br0", "up"]);
                    if let Some(d) = host_delay {
                        run(
                            "tc",
                            &[
                                "-n", &ns, "qdisc", "add", "dev", &peer, "root", "netem", "delay",
                                d,
                            ],
                        )
                        .unwrap_or_else(|e| panic!("{e}"));
                    }
                    24
                }
            };
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{inner}/{prefix}"),
                "dev",
                &peer,
            ]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);

            let host_key = host_dir.join("host_key");
            keygen(&host_key);
            let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
            let mut words = public.split_whitespace();
            let (kind, key) = (words.next().unwrap(), words.next().unwrap());
            known.push_str(&format!("{inner} {kind} {key}\n"));
            std::fs::write(
                host_dir.join("sshd_config"),
                format!(
                    "ListenAddress {inner}\n\
                     Port 22\n\
                     HostKey {host_key}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowUsers root {deploy_user}\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     AuthorizedKeysFile {authorized}\n\
                     StrictModes no\n\
                     PrintMotd no\n\
                     LogLevel VERBOSE\n",
                    host_key = host_key.display(),
                    authorized = authorized_keys.display(),
                    deploy_user = DEPLOY_USER,
                ),
            )
            .unwrap();
        }
        std::fs::write(&hosts.known_hosts, known).unwrap();
        for i in 0..n {
            hosts.start_sshd(i).await;
        }
        Ok(hosts)
    }

    /// Starts host `i`'s sshd (0-based) and returns once it listens.
    pub async fn start_sshd(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        assert!(h.sshd.is_none(), "host {} already runs sshd", i + 1);
        // TARGET, in sshd's own mount namespace: the host's directory, or
        // a tmpfs that lives and dies with the namespace.
        let mount = match h.kind {
            Kind::Tmpfs { kib } => {
                format!(r#"mount -t tmpfs -o size={kib}k,mode=0755 pushgate-it "$2""#)
            }
            _ => r#"mount --bind "$1" "$2""#.to_owned(),
        };
        let mut child = tokio::process::Command::new(find("ip").unwrap())
            .arg("netns")
            .arg("exec")
            .arg(&h.ns)
            .arg(find("unshare").unwrap())
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(r#"{mount} && exec "$3" -D -e -f "$4""#))
            .arg("sh")
            .arg(&h.dir)
            .arg(&self.target)
            .arg(&self.sshd)
            .arg(&h.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sshd");
        let log = h.log.clone();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let listening = line.contains("Server listening on");
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if listening {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.start_kill();
            let status = child.wait().await;
            panic!(
                "sshd of host {} did not start listening on {} ({}): {status:?}\n{}",
                i + 1,
                h.addr,
                if ready.is_err() {
                    "timed out"
                } else {
                    "it exited"
                },
                log.lock().unwrap()
            );
        }
        // Keep reading, so that sshd never blocks on a full pipe.
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        h.sshd = Some(child);
    }

    /// Stops host `i`'s sshd (0-based): new connections are refused.
    pub async fn stop_sshd(&mut self, i: usize) {
        let mut sshd = self.hosts[i].sshd.take().expect("sshd runs");
        sshd.kill().await.expect("kill sshd");
    }

    /// No route to host `i` any more: an `unreachable` route for its
    /// address, so that a connection fails at once with "No route to host"
    /// (a link set down would send its packets to the default gateway).
    pub fn unplug(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        ip(&["route", "add", "unreachable", &format!("{}/32", h.addr)]);
        h.unplugged = true;
    }

    /// Host `i` answers ssh and runs commands, but its rsync never gets
    /// going: an rsync session blocks reading a FIFO that nobody writes
    /// until drop. A host slower than any timeout, without a sleep anywhere.
    pub async fn stall(&mut self, i: usize) {
        self.stall_matching(i, "rsync --server").await;
    }

    /// [`Hosts::stall`] for every session whose command contains `what`
    /// (`"aria2c"`: a host whose bittorrent stage never gets going).
    pub async fn stall_matching(&mut self, i: usize, what: &str) {
        assert!(!what.contains('\''), "a plain word");
        let dir = self.tmp.path().join(format!("host-{}", i + 1));
        let fifo = dir.join("stall.fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o644)).unwrap();
        let wrapper = dir.join("stall.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  *'{what}'*) exec cat '{}' ;;\nesac\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                fifo.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = std::fs::read_to_string(&self.hosts[i].config).unwrap();
        std::fs::write(
            &self.hosts[i].config,
            format!("{config}ForceCommand {}\n", wrapper.display()),
        )
        .unwrap();
        self.hosts[i].fifo = Some(fifo);
        if self.hosts[i].sshd.is_some() {
            self.stop_sshd(i).await;
        }
        self.start_sshd(i).await;
    }

    /// Host `i`'s sessions find no `program`: a shell function of that
    /// name that fails as a missing command does (127) shadows it, in
    /// every session (ForceCommand), as on a host where it is not installed.
    pub async fn without_program(&mut self, i: usize, program: &str) {
        assert!(
            program.chars().all(|c| c.is_ascii_alphanumeric()),
            "a plain name"
        );
        let wrapper = self.tmp.path().join(format!("host-{}/without.sh", i + 1));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /bin/sh -c \"{program}() {{ echo 'sh: {program}: not found' >&2; return 127; }}; $SSH_ORIGINAL_COMMAND\"\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = std::fs::read_to_string(&self.hosts[i].config).unwrap();
        std::fs::write(
            &self.hosts[i].config,
            format!("{config}ForceCommand {}\n", wrapper.display()),
        )
        .unwrap();
        if self.hosts[i].sshd.is_some() {
            self.stop_sshd(i).await;
        }
        self.start_sshd(i).await;
    }

    /// Host `i`'s deploy user may no longer write `TARGET/releases`: root
    /// owns it now (mode 0755).
    pub fn deny_writes(&self, i: usize) {
        assert_eq!(
            self.hosts[i].kind,
            Kind::Deploy,
            "host {} is reached as root",
            i + 1
        );
        std::os::unix::fs::chown(self.dir(i).join("releases"), Some(0), Some(0)).unwrap();
    }

    /// How each host is written in a cluster's `hosts`: `root@ADDRESS`, or
    /// `pushgate-it@ADDRESS` for a `Kind::Deploy` host.
    pub fn specs(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| match h.kind {
                Kind::Deploy => format!("{DEPLOY_USER}@{}", h.addr),
                _ => format!("root@{}", h.addr),
            })
            .collect()
    }

    /// `[sync]` lines that reach the hosts: this client key, these host
    /// keys (checked strictly, the default), a short `host_timeout`.
    pub fn sync_toml(&self) -> String {
        self.sync_toml_with_timeout("20s")
    }

    /// `sync_toml` with this `host_timeout`.
    pub fn sync_toml_with_timeout(&self, host_timeout: &str) -> String {
        format!(
            "host_timeout = {host_timeout:?}\nssh_identity = {:?}\nknown_hosts = {:?}\nssh_config = {:?}\n",
            self.identity.display().to_string(),
            self.known_hosts.display().to_string(),
            self.ssh_config.display().to_string(),
        )
    }

    /// The cluster's `target = "..."` line.
    pub fn cluster_toml(&self) -> String {
        format!("target = {:?}\n", self.target.display().to_string())
    }

    /// What host `i` (0-based) sees as TARGET. A tmpfs host's is inside
    /// its sshd's mount namespace: reached through `/proc/PID/root`, while
    /// that sshd runs.
    pub fn dir(&self, i: usize) -> PathBuf {
        let h = &self.hosts[i];
        match (h.kind, &h.sshd) {
            (Kind::Tmpfs { .. }, Some(sshd)) => {
                let pid = sshd.id().expect("sshd runs");
                PathBuf::from(format!("/proc/{pid}/root"))
                    .join(self.target.strip_prefix("/").unwrap())
            }
            (Kind::Tmpfs { .. }, None) => panic!("host {}'s tmpfs went with its sshd", i + 1),
            _ => h.dir.clone(),
        }
    }

    /// The host (0-based) in whose network namespace process `pid` runs.
    pub fn host_of(&self, pid: u32) -> Option<usize> {
        use std::os::unix::fs::MetadataExt;
        let its = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
        self.hosts.iter().position(|h| {
            std::fs::metadata(format!("/run/netns/{}", h.ns))
                .is_ok_and(|m| m.ino() == its.ino() && m.dev() == its.dev())
        })
    }

    /// Host `i`'s `current` link, as written (`releases/<id>`), if any.
    pub fn current(&self, i: usize) -> Option<String> {
        std::fs::read_link(self.dir(i).join("current"))
            .ok()
            .map(|p| p.display().to_string())
    }

    /// The release names kept on host `i`.
    pub fn releases(&self, i: usize) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir(i).join("releases"))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// How many sessions each host's sshd started so far (one per ssh
    /// command run there: what a push's round trips cost).
    pub fn sessions(&self) -> Vec<usize> {
        self.hosts
            .iter()
            .map(|h| {
                h.log
                    .lock()
                    .unwrap()
                    .matches("Starting session: command")
                    .count()
            })
            .collect()
    }

    /// Every sshd's log so far, for a failing assertion's message.
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "--- host {} ({}) sshd:\n{}",
                    i + 1,
                    h.addr,
                    h.log.lock().unwrap()
                )
            })
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(fifo) = &h.fifo {
                // Every session blocked opening the FIFO gets it, reads
                // end-of-file and exits; none is left behind.
                use rustix::fs::{open, Mode, OFlags};
                for _ in 0..100_000 {
                    if open(fifo, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty()).is_err() {
                        break;
                    }
                }
            }
            if h.unplugged {
                let _ = run(
                    "ip",
                    &["route", "del", "unreachable", &format!("{}/32", h.addr)],
                );
            }
            if let Some(sshd) = &mut h.sshd {
                let _ = sshd.start_kill();
            }
            // And every session sshd forked, and what they started (a
            // seeder): once the veth is gone no FIN reaches a session
            // whose client has exited, and it would wait for ever.
            if let Ok(pids) = run("ip", &["netns", "pids", &h.ns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            // Deleting one end deletes the pair at once; a namespace's
            // devices otherwise go only when the kernel gets to it.
            let _ = run("ip", &["link", "del", &h.veth]);
            let _ = run("ip", &["netns", "del", &h.ns]);
        }
        if let Some((sw, veth, _)) = &self.switch {
            let _ = run("ip", &["link", "del", veth]);
            let _ = run("ip", &["netns", "del", sw]);
        }
    }
}

/// Skips a test that needs real hosts — never under `CI=true`, where
/// `.ci/run` runs as root with every tool installed.
pub fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the ssh tests as root with OpenSSH, rsync, iproute2 and useradd: {why}"
    );
    eprintln!("skipped: {why}");
}
