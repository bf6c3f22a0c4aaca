//! Why an operation failed on a host, as a typed [`HostError`]: the cause
//! people act on first (`disk full`, `unreachable: …`, `timed out`), read
//! from what ssh, rsync and the remote shell print, then the line that
//! shows it. Callers match on [`HostErrorKind`], never on the text.

use std::path::Path;
use std::time::Duration;

use super::argv::Room;
use crate::adapters::process;
use crate::domain::text::{bytes, printable};

/// What kind of failure a host had: what callers decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostErrorKind {
    /// ssh could not connect (refused, no route, timed out): nothing was
    /// written on the host.
    Unreachable,
    AuthFailed,
    HostKeyNotTrusted,
    UnknownHost,
    ConnectionLost,
    DiskFull,
    ReadOnly,
    PermissionDenied,
    NoRsync,
    /// The operation ran past `sync.host_timeout`.
    TimedOut,
    /// The operation was not asked of this host.
    Skipped,
    /// Anything else; the message says what.
    Other,
}

/// One host's failure: its kind, and the message people read (the cause
/// first, then the line that shows it and how the program ended).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: String,
    /// The last lines of the program's output, raw (untrusted: print it
    /// through `printable`), when the caller asked for them (a health check).
    pub tail: Option<String>,
}

impl HostError {
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
            tail: None,
        }
    }

    /// The same, with the last lines of the program's output.
    pub fn with_tail(mut self, tail: String) -> HostError {
        self.tail = (!tail.trim().is_empty()).then_some(tail);
        self
    }

    /// A failure with no cause of its own to name.
    pub fn other(message: impl Into<String>) -> HostError {
        HostError::new(HostErrorKind::Other, message)
    }

    /// A host an operation was not asked to touch.
    pub fn skipped() -> HostError {
        HostError::new(HostErrorKind::Skipped, "skipped")
    }

    /// A host operation that ran past `sync.host_timeout`.
    pub fn timed_out(timeout: Duration) -> HostError {
        HostError::new(HostErrorKind::TimedOut, timed_out(timeout))
    }

    pub fn is(&self, kind: HostErrorKind) -> bool {
        self.kind == kind
    }
}

/// What went wrong on a host, by the words ssh, rsync and the remote shell
/// use for it: the cause people act on, first in every host error. Checked
/// in this order, so that ssh's "Permission denied (publickey)" is an
/// authentication failure and not a file permission.
const CAUSES: &[(&str, HostErrorKind, &[&str])] = &[
    (
        "ssh authentication failed",
        HostErrorKind::AuthFailed,
        &[
            "Permission denied (publickey",
            "Too many authentication failures",
        ],
    ),
    (
        "host key not trusted",
        HostErrorKind::HostKeyNotTrusted,
        &[
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "host key is known for",
        ],
    ),
    (
        "unknown host",
        HostErrorKind::UnknownHost,
        &[
            "Could not resolve hostname",
            "Name or service not known",
            "Temporary failure in name resolution",
        ],
    ),
    (
        "unreachable: connection refused",
        HostErrorKind::Unreachable,
        &["Connection refused"],
    ),
    (
        "unreachable: no route to host",
        HostErrorKind::Unreachable,
        &["No route to host", "Network is unreachable"],
    ),
    (
        "unreachable: connection timed out",
        HostErrorKind::Unreachable,
        &["Connection timed out", "Operation timed out"],
    ),
    (
        "connection lost",
        HostErrorKind::ConnectionLost,
        &[
            "Connection reset",
            "Connection closed by",
            "Broken pipe",
            "Timeout, server",
        ],
    ),
    (
        "disk full",
        HostErrorKind::DiskFull,
        &["No space left on device", "Disk quota exceeded"],
    ),
    (
        "read-only file system",
        HostErrorKind::ReadOnly,
        &["Read-only file system"],
    ),
    (
        "permission denied",
        HostErrorKind::PermissionDenied,
        &["Permission denied", "Operation not permitted"],
    ),
    (
        "rsync is not installed on the host",
        HostErrorKind::NoRsync,
        &["rsync: command not found", "rsync: not found"],
    ),
];

/// The cause of a failure and the line of output that shows it, if the
/// output names one of [`CAUSES`].
pub fn cause_of(output: &str) -> Option<(&'static str, HostErrorKind, &str)> {
    CAUSES.iter().find_map(|(cause, kind, needles)| {
        output
            .lines()
            .find(|l| needles.iter().any(|n| l.contains(n)))
            .map(|l| (*cause, *kind, l.trim()))
    })
}

/// A failed child's error for a host's result: the cause, the line that
/// shows it (rsync's last line is only "rsync error: ... (code 11)"), and
/// how the program ended. A child killed at its timeout is a timeout.
pub fn describe_failure(out: &process::ChildOutput, timeout: Duration) -> HostError {
    let Some(status) = out.status else {
        return HostError::new(
            HostErrorKind::TimedOut,
            format!("{}; {} was killed", timed_out(timeout), out.program),
        );
    };
    let ended = match (status.code(), rsync_status(&out.program, status.code())) {
        (Some(c), Some(m)) => format!("{} exited with status {c}: {m}", out.program),
        (Some(c), None) => format!("{} exited with status {c}", out.program),
        (None, _) => format!("{} was killed by a signal", out.program),
    };
    let text = format!("{}\n{}", out.stderr, out.stdout);
    match cause_of(&text) {
        Some((cause, kind, line)) => {
            HostError::new(kind, format!("{cause}: {} ({ended})", printable(line, 300)))
        }
        None => {
            // rsync's own first complaint says more than its summary
            // line; aria2c's says why on its `Exception:` line.
            let first = text.lines().map(str::trim).find(|l| {
                l.starts_with("rsync:") || l.starts_with("ssh:") || l.starts_with("Exception:")
            });
            HostError::other(match first {
                Some(l) => format!("{ended}: {}", printable(l, 300)),
                None => ended,
            })
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

/// The cause rsync did not name, from the room on the host: no write
/// access, or less free space than the artifact's size.
pub fn room_cause(room: &Room, artifact_bytes: u64, releases: &Path) -> Option<HostError> {
    if let Some(e) = &room.unwritable {
        let (cause, kind) =
            cause_of(e).map_or(("cannot write", HostErrorKind::Other), |(c, k, _)| (c, k));
        return Some(HostError::new(
            kind,
            format!(
                "{cause}: cannot create files in {}: {}",
                releases.display(),
                printable(e, 200)
            ),
        ));
    }
    let free = room.free_bytes?;
    (free < artifact_bytes).then(|| {
        HostError::new(
            HostErrorKind::DiskFull,
            format!(
                "disk full: {} has {} free, the artifact is {}",
                releases.display(),
                bytes(free),
                bytes(artifact_bytes)
            ),
        )
    })
}

/// "timed out after 10m (sync.host_timeout)".
fn timed_out(timeout: Duration) -> String {
    format!(
        "timed out after {} (sync.host_timeout)",
        humantime::format_duration(timeout)
    )
}

/// An IO error on a `local:` host, with the cause first like a remote one.
pub fn io_failure(doing: impl std::fmt::Display, e: &std::io::Error) -> HostError {
    use std::io::ErrorKind as K;
    let cause = match e.kind() {
        K::PermissionDenied => Some(("permission denied", HostErrorKind::PermissionDenied)),
        K::StorageFull | K::QuotaExceeded => Some(("disk full", HostErrorKind::DiskFull)),
        K::ReadOnlyFilesystem => Some(("read-only file system", HostErrorKind::ReadOnly)),
        _ => None,
    };
    match cause {
        Some((c, kind)) => HostError::new(kind, format!("{c}: cannot {doing}: {e}")),
        None => HostError::other(format!("cannot {doing}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::argv::{parse_room, room_script};
    use super::*;
    use expect_test::expect;
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
            (
                "ssh",
                Some(26),
                "\n12/02 01:20:33 [ERROR] CUID#7 - Download aborted. URI=releases/.20261122T101500Z-3f2a9c13f2a9.bt/meta/t.torrent\nException: [RequestGroup.cc:1200] errorCode=26 Detected directory traversal directive in a\u{1b}b\n",
            ),
            ("ssh", None, "half a line"),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(p, c, e)| describe_failure(&failed(p, *c, e), t).to_string())
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
            ssh exited with status 26: Exception: [RequestGroup.cc:1200] errorCode=26 Detected directory traversal directive in a\u{1b}b
            timed out after 20s (sync.host_timeout); ssh was killed"#]]
        .assert_eq(&got.join("\n"));
    }

    #[test]
    fn a_hostile_line_in_the_output_is_escaped_and_bounded() {
        let evil = format!(
            "rsync: \u{1b}[2J{}: No space left on device\n",
            "x".repeat(5000)
        );
        let e =
            describe_failure(&failed("rsync", Some(11), &evil), Duration::from_secs(1)).to_string();
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
            room_cause(&full, 1 << 20, releases)
                .map(|e| e.to_string())
                .as_deref(),
            Some("disk full: /srv/app/releases has 12 KiB free, the artifact is 1.0 MiB")
        );
        assert_eq!(room_cause(&full, 1000, releases), None);
        let ro = parse_room("tmpfs 512 0 512 0% /srv/app\nunwritable: sh: 1: cannot create .pushgate-write-test: Read-only file system\n");
        assert_eq!(
            room_cause(&ro, 1, releases)
                .map(|e| e.to_string())
                .as_deref(),
            Some("read-only file system: cannot create files in /srv/app/releases: sh: 1: cannot create .pushgate-write-test: Read-only file system")
        );
        // Output that is not df's says nothing, rather than something wrong.
        assert_eq!(parse_room("$(reboot)\n"), Room::default());
        assert_eq!(room_cause(&Room::default(), 1 << 40, releases), None);
        assert_eq!(crate::domain::text::bytes(1023), "1023 B");
        assert_eq!(crate::domain::text::bytes(150 * 1024 * 1024), "150 MiB");
    }
}
