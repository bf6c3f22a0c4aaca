//! Real hosts for the ssh tests: each one a network namespace with its own
//! address on a veth pair, running OpenSSH's sshd with a generated host key
//! and accepting a generated client key for root.
//!
//! Network namespaces share the filesystem, so each sshd also gets its own
//! mount namespace in which the host's private directory is bind-mounted
//! over the cluster's `target`: every ssh session and rsync on host N sees
//! its own TARGET, and the test reads it through `Hosts::dir(N)`.
//!
//! Needs root, `ip`, `unshare`, `mount`, `sshd`, `ssh`, `ssh-keygen` and
//! `rsync`; `unavailable` says what is missing. Everything is removed on
//! drop: sshd is killed, the veth pairs and the namespaces deleted.

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

/// One host: a namespace, a veth pair, an sshd.
pub struct Host {
    ns: String,
    veth: String,
    /// The host's address, in its namespace.
    pub addr: String,
    /// What this host sees as the cluster's `target`.
    pub dir: PathBuf,
    config: PathBuf,
    sshd: Option<tokio::process::Child>,
    /// What every sshd of this host has logged.
    log: Arc<Mutex<String>>,
}

/// Hosts for one test, with the keys and files that reach them.
pub struct Hosts {
    hosts: Vec<Host>,
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
        assert!(n <= 63, "one /30 per host in a /24");
        let sshd = find("sshd").expect("sshd is installed");
        // sshd's privilege separation directory; packages create it at boot.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("pushgate-ssh-")
            .tempdir()
            .unwrap();
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
            let (outer, inner) = (
                format!("10.213.{subnet}.{}", 4 * i + 1),
                format!("10.213.{subnet}.{}", 4 * i + 2),
            );
            hosts.hosts.push(Host {
                ns: ns.clone(),
                veth: veth.clone(),
                addr: inner.clone(),
                dir: root,
                config: host_dir.join("sshd_config"),
                sshd: None,
                log: Arc::default(),
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &ns,
            ]);
            ip(&["addr", "add", &format!("{outer}/30"), "dev", &veth]);
            ip(&["link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{inner}/30"),
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
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     AuthorizedKeysFile {authorized}\n\
                     StrictModes no\n\
                     PrintMotd no\n\
                     LogLevel INFO\n",
                    host_key = host_key.display(),
                    authorized = authorized_keys.display(),
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
        let mut child = tokio::process::Command::new(find("ip").unwrap())
            .arg("netns")
            .arg("exec")
            .arg(&h.ns)
            .arg(find("unshare").unwrap())
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && exec "$3" -D -e -f "$4""#)
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

    /// `root@ADDRESS` for each host, as written in a cluster's `hosts`.
    pub fn specs(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| format!("root@{}", h.addr))
            .collect()
    }

    /// `[sync]` lines that reach the hosts: this client key, these host
    /// keys (checked strictly, the default), a short `host_timeout`.
    pub fn sync_toml(&self) -> String {
        format!(
            "host_timeout = \"20s\"\nssh_identity = {:?}\nknown_hosts = {:?}\nssh_config = {:?}\n",
            self.identity.display().to_string(),
            self.known_hosts.display().to_string(),
            self.ssh_config.display().to_string(),
        )
    }

    /// The cluster's `target = "..."` line.
    pub fn cluster_toml(&self) -> String {
        format!("target = {:?}\n", self.target.display().to_string())
    }

    /// What host `i` (0-based) sees as TARGET.
    pub fn dir(&self, i: usize) -> &Path {
        &self.hosts[i].dir
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
            if let Some(sshd) = &mut h.sshd {
                let _ = sshd.start_kill();
            }
            // Deleting one end deletes the pair at once; a namespace's
            // devices otherwise go only when the kernel gets to it.
            let _ = run("ip", &["link", "del", &h.veth]);
            let _ = run("ip", &["netns", "del", &h.ns]);
        }
    }
}
