//! Domain nouns shared by every layer: ids as newtypes (a task gid and a
//! project gid cannot be swapped), clusters, hosts and lock tasks.
//!
//! Plain data only: no serde (DTOs live in `asana/`, raw config in
//! `config.rs`), no IO.

use std::fmt;

/// Asana ids are strings of decimal digits.
fn is_gid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! gid_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Accepts only what Asana uses for ids: 1 to 40 decimal digits.
            pub fn parse(s: &str) -> Option<Self> {
                is_gid(s).then(|| Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

gid_type!(
    /// The gid of an Asana task.
    TaskGid
);
gid_type!(
    /// The gid of an Asana project.
    ProjectGid
);
gid_type!(
    /// The gid of an Asana workspace.
    WorkspaceGid
);

/// A cluster's name as written under `[clusters.NAME]`: lowercase letters,
/// digits, `-` and `_`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn parse(s: &str) -> Option<Self> {
        let mut bytes = s.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        (first_ok && rest_ok).then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An app's name as written under `[apps.NAME]` (spelled as cluster names
/// are), or, for a config without apps, the one derived from its
/// repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    pub fn parse(s: &str) -> Option<Self> {
        ClusterName::parse(s).map(|c| AppName(c.0))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the one app of a config without `[apps]`: the last path
    /// segment of its repository URL (`git@host:org/web.git` → `web`),
    /// made into a valid name; `app` when nothing is left of it.
    pub fn from_repo_url(url: &str) -> AppName {
        let last = url
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("");
        let stem = last.strip_suffix(".git").unwrap_or(last);
        let mut name: String = stem
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .skip_while(|c| !c.is_ascii_lowercase())
            .take(32)
            .collect();
        while name.ends_with('-') {
            name.pop();
        }
        AppName::parse(&name).unwrap_or_else(|| AppName("app".into()))
    }
}

/// A pushgate command line for people to run, as they must type it: with
/// `--app NAME` when the config has several apps.
pub fn cli(app: Option<&AppName>, args: &str) -> String {
    match app {
        Some(a) => format!("pushgate --app {a} {args}"),
        None => format!("pushgate {args}"),
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Untrusted text for an error message: control characters escaped, at
/// most 100 characters.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(100)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// Where one host of a cluster lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// `local:/abs/path`: the target directory on this machine.
    Local { path: std::path::PathBuf },
    /// `[user@]hostname[:port]`, reached with ssh and rsync.
    Ssh {
        user: Option<String>,
        hostname: String,
        port: Option<u16>,
    },
}

impl Host {
    /// Parses one host as written in `hosts` or a `hosts_file` line.
    /// Refuses anything that could be read as an option by ssh or rsync.
    pub fn parse(s: &str) -> Result<Self, String> {
        // Errors quote the text: escaped and bounded, it prints on one line.
        let quoted = shown(s);
        if let Some(path) = s.strip_prefix("local:") {
            if path.contains(char::is_control) {
                return Err(format!(
                    "`{quoted}`: a local host path may not contain control characters"
                ));
            }
            let path = std::path::Path::new(path);
            if !path.is_absolute() {
                return Err(format!("`{quoted}`: a local host needs an absolute path"));
            }
            if path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "`{quoted}`: a local host path may not contain `..`"
                ));
            }
            return Ok(Host::Local {
                path: path.to_owned(),
            });
        }
        if s.starts_with('-') {
            return Err(format!(
                "`{quoted}`: a host may not start with `-` (it would be read as an option)"
            ));
        }
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        let (hostname, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 =
                    p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("`{quoted}`: `{}` is not a port number", shown(p))
                    })?;
                (h, Some(port))
            }
            None => (rest, None),
        };
        let name_ok = |t: &str| {
            !t.is_empty()
                && !t.starts_with('-')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        if let Some(u) = user {
            if !name_ok(u) {
                return Err(format!(
                    "`{quoted}`: `{}` is not a valid user name",
                    shown(u)
                ));
            }
        }
        if !name_ok(hostname) {
            return Err(format!(
                "`{quoted}`: a host name may hold only letters, digits, `.`, `-` and `_`"
            ));
        }
        Ok(Host::Ssh {
            user: user.map(str::to_owned),
            hostname: hostname.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Local { path } => write!(f, "local:{}", path.display()),
            Host::Ssh {
                user,
                hostname,
                port,
            } => {
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                f.write_str(hostname)?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// A task read from a lock project, reduced to what the gate and the
/// operator need. Its text is untrusted: it is only ever printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockTask {
    pub gid: TaskGid,
    pub name: String,
    pub assignee: Option<String>,
    pub link: String,
    pub completed: bool,
    /// The fix commit (custom field, else the last `Fixed-in:` notes line).
    pub fix: Fix,
}

/// A task's fix commit (SPEC §5), as far as it has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// The task carries no fix value.
    None,
    /// A value read from Asana, not yet checked against the repository.
    Unchecked(String),
    /// A value that names no single commit: not 7–40 hex digits, not a
    /// commit of the repository, or ambiguous. It never unlocks anything.
    Invalid { value: String, why: String },
    /// A commit of the repository; `shipped`: the candidate (or the
    /// deployed commit, for closing) contains it.
    Valid { commit: CommitId, shipped: bool },
}

impl Fix {
    /// The value as written in Asana, if any.
    pub fn raw(&self) -> Option<&str> {
        match self {
            Fix::None => None,
            Fix::Unchecked(v) | Fix::Invalid { value: v, .. } => Some(v),
            Fix::Valid { commit, .. } => Some(commit.as_str()),
        }
    }
}

/// Whether `s` has the shape of a fix commit: 7 to 40 hex digits.
pub fn is_fix_shaped(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_and_refuse_option_lookalikes() {
        assert_eq!(
            Host::parse("deploy@web-1.internal:2222")
                .unwrap()
                .to_string(),
            "deploy@web-1.internal:2222"
        );
        assert!(matches!(
            Host::parse("local:/srv/a").unwrap(),
            Host::Local { .. }
        ));
        for bad in [
            "-oProxyCommand=touch /tmp/x",
            "local:relative",
            "local:/a/../b",
            "a b",
            "host:0",
            "host:99999",
            "us$er@host",
            "@host",
            "",
            "x@-o",
            "local:/srv/a\n/b",
            "local:/srv/\u{0}",
            "a@b@c",
            "host:22:22",
            "host;reboot",
            "$(reboot)",
            "h\u{1b}[2J",
        ] {
            let e = Host::parse(bad).expect_err(bad);
            assert!(!e.contains(char::is_control), "{e:?}");
        }
        let long = format!("-{}", "x".repeat(10_000));
        assert!(Host::parse(&long).unwrap_err().len() < 300);
    }

    #[test]
    fn gids_are_digits_only() {
        assert!(TaskGid::parse("1200000000000001").is_some());
        for bad in ["", "12a", "-1", "1 2", "$(reboot)"] {
            assert!(TaskGid::parse(bad).is_none(), "{bad:?}");
        }
        assert!(ClusterName::parse("beta").is_some());
        assert!(ClusterName::parse("Beta").is_none());
        assert!(ClusterName::parse("1beta").is_none());
    }

    #[test]
    fn a_config_without_apps_names_its_app_after_its_repository() {
        for (url, name) in [
            ("git@example.com:org/web.git", "web"),
            (
                "https://git.example.com/org/Billing-API.git/",
                "billing-api",
            ),
            ("/srv/git/app", "app"),
            ("repo", "repo"),
            ("../2024 Site", "site"),
            ("", "app"),
            ("///", "app"),
        ] {
            assert_eq!(AppName::from_repo_url(url).as_str(), name, "{url}");
        }
    }
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(String);

impl CommitId {
    pub fn parse(s: &str) -> Option<Self> {
        ((s.len() == 40 || s.len() == 64)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The 7-digit form people read in task names and logs.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release directory's name: `YYYYMMDDTHHMMSSZ-<12-hex commit>`, the UTC
/// time its push started. Names sort by time, so the newest is the greatest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(String);

impl ReleaseId {
    pub fn new(started: chrono::DateTime<chrono::Utc>, commit: &CommitId) -> Self {
        Self(format!(
            "{}-{}",
            started.format("%Y%m%dT%H%M%SZ"),
            &commit.as_str()[..12]
        ))
    }

    /// A new release's id, later than `latest` (the newest release this
    /// cluster has had): two pushes within one second, or a clock that
    /// stepped back, still get ids that sort in push order.
    pub fn after(
        now: chrono::DateTime<chrono::Utc>,
        commit: &CommitId,
        latest: Option<&ReleaseId>,
    ) -> Self {
        let floor = latest
            .and_then(|l| chrono::NaiveDateTime::parse_from_str(&l.0[..16], "%Y%m%dT%H%M%SZ").ok())
            .map(|t| t.and_utc() + chrono::Duration::seconds(1));
        match floor {
            Some(f) if f > now => Self::new(f, commit),
            _ => Self::new(now, commit),
        }
    }

    /// Only names of exactly this shape are releases; anything else found in
    /// a `releases/` directory is left alone.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let shape = b.len() == 29
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        shape.then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The 12-hex commit prefix in the name.
    pub fn commit_prefix(&self) -> &str {
        &self.0[17..]
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    #[test]
    fn release_ids_round_trip_and_refuse_other_names() {
        let c = CommitId::parse(&"3f2a9c1".repeat(6)[..40]).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:00Z")
            .unwrap()
            .to_utc();
        let id = ReleaseId::new(at, &c);
        assert_eq!(id.as_str(), "20261122T101500Z-3f2a9c13f2a9");
        assert_eq!(ReleaseId::parse(id.as_str()), Some(id.clone()));
        for bad in [
            "",
            "..",
            "current",
            "20261122T101500Z-3f2a9c13f2a",
            "20261122T101500Z-3f2a9c13f2aG",
            "../20261122T101500Z-3f2a9c13f2a9",
        ] {
            assert_eq!(ReleaseId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            CommitId::parse("3F2A9C13F2A93F2A9C13F2A93F2A9C13F2A93F2A"),
            None
        );
    }
}

/// One line of a changelog. Text is from commit messages: untrusted, only
/// ever printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEntry {
    pub commit: CommitId,
    pub subject: String,
    pub author: String,
}

/// The commits between the deployed and the candidate commit, newest
/// first, cut at `max` with the count of the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changelog {
    pub entries: Vec<ChangeEntry>,
    pub more: usize,
}

impl Changelog {
    pub fn len(&self) -> usize {
        self.entries.len() + self.more
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a host runs and keeps, read before staging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostReleases {
    pub current: Option<ReleaseId>,
    pub releases: Vec<ReleaseId>,
}

/// What a run was, in the history and the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunKind {
    Push,
    Rollback,
}

impl RunKind {
    /// The word the state files and `--json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Push => "push",
            RunKind::Rollback => "rollback",
        }
    }
    pub fn parse(s: &str) -> Option<RunKind> {
        [RunKind::Push, RunKind::Rollback]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a finished run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunOutcome {
    Success,
    Failed,
    /// A push whose wave failed a check: every switched host went back,
    /// the cluster was locked and the commit marked bad (`rolled-back`).
    RolledBack,
}

impl RunOutcome {
    /// The word the state files, metrics labels and `--json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::RolledBack => "rolled-back",
        }
    }
    pub fn parse(s: &str) -> Option<RunOutcome> {
        RunOutcome::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Every outcome, for metrics that list them all from the start.
    pub const ALL: [RunOutcome; 3] = [
        RunOutcome::Success,
        RunOutcome::Failed,
        RunOutcome::RolledBack,
    ];
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
