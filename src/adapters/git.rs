//! The git adapter: a bare mirror of `repo.url` in `state_dir/repo`, the
//! candidate commit, changelogs, ancestry, and work trees for the build.
//!
//! Everything here is synchronous (git2); async callers go through
//! `tokio::task::spawn_blocking`. It never runs the `git` program, so no
//! revision, branch or message ever reaches a command line. It decides
//! nothing: which commit to push is `decide`'s business.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, FetchPrune, Oid, RemoteCallbacks, Repository, Sort};

use crate::domain::model::{is_fix_shaped, ChangeEntry, Changelog, CommitId, Fix};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot open or create the repository mirror at {path}")]
    Mirror {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// `url` and `message` have any password in the URL replaced by `***`.
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    /// A revision that names no commit, or more than one.
    #[error("`{rev}` is not a commit of the repository: {why}")]
    BadRevision { rev: String, why: String },
    #[error("git: {context}")]
    Other {
        context: String,
        #[source]
        source: git2::Error,
    },
}

impl GitError {
    /// A failed fetch or listing, with no password of the URL in it.
    fn fetch(url: &str, e: &git2::Error) -> GitError {
        let shown = redact_url(url);
        let mut message = e.message().to_owned();
        if url != shown {
            message = message.replace(url, &shown);
        }
        if let Some(pw) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
        {
            message = message.replace(&pw, "***");
        }
        GitError::Fetch {
            url: shown,
            message,
        }
    }
    fn other(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
        let context = context.into();
        move |source| GitError::Other { context, source }
    }
}

/// The mirror: a bare repository whose branches and tags follow the remote's.
pub struct Mirror {
    repo: Repository,
}

/// How to authenticate an ssh fetch: a key file, else the ssh agent.
#[derive(Clone, Debug, Default)]
pub struct FetchAuth {
    pub ssh_key: Option<PathBuf>,
}

impl Mirror {
    /// Opens the mirror at `path`, creating an empty bare repository there
    /// the first time.
    pub fn open(path: &Path) -> Result<Mirror, GitError> {
        let repo = match Repository::open_bare(path) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(path).map_err(|source| GitError::Mirror {
                path: path.to_owned(),
                source,
            })?,
        };
        Ok(Mirror { repo })
    }

    /// Fetches every branch and tag of `url` into the mirror, dropping
    /// branches the remote no longer has. One fetch at a time, across
    /// processes (a `flock` on `pushgate-fetch.lock` in the mirror, waited
    /// for): libgit2 refuses a ref whose lock file another fetch holds, so
    /// `status` or the on-call page fetching while a push fetches would
    /// fail the push. Callers are off the async runtime.
    pub fn fetch(&self, url: &str, auth: &FetchAuth) -> Result<(), GitError> {
        let _one_at_a_time = self.fetch_lock();
        let fetch_err = |e: git2::Error| GitError::fetch(url, &e);
        let mut remote = self.repo.remote_anonymous(url).map_err(fetch_err)?;
        let callbacks = credentials(auth);
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks)
            .prune(FetchPrune::On)
            .download_tags(git2::AutotagOption::All);
        remote
            .fetch(
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                Some(&mut options),
                None,
            )
            .map_err(fetch_err)
    }

    /// The mirror's fetch lock, held until the file is dropped; `None` if
    /// it cannot be had (then the fetch goes on as before: a lock is a
    /// courtesy between fetches, not a condition of one).
    fn fetch_lock(&self) -> Option<std::fs::File> {
        use std::os::fd::AsFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.repo.path().join("pushgate-fetch.lock"))
            .ok()?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive).ok()?;
        Some(file)
    }

    /// The tip of `branch`.
    pub fn branch_tip(&self, branch: &str) -> Result<CommitId, GitError> {
        let reference = self
            .repo
            .find_reference(&format!("refs/heads/{branch}"))
            .map_err(|e| GitError::BadRevision {
                rev: branch.to_owned(),
                why: format!("no branch of that name in the repository ({})", e.message()),
            })?;
        let commit = reference
            .peel_to_commit()
            .map_err(GitError::other(format!("branch {branch}")))?;
        Ok(commit_id(commit.id()))
    }

    /// A full or unambiguous short sha, a branch or a tag, as one commit.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, GitError> {
        let bad = |why: &str| GitError::BadRevision {
            rev: rev.escape_debug().to_string(),
            why: why.to_owned(),
        };
        if rev.is_empty()
            || rev.len() > 255
            || rev.starts_with('-')
            || rev.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("not a revision"));
        }
        let object = match self.repo.revparse_single(rev) {
            Ok(o) => o,
            Err(e) if e.code() == git2::ErrorCode::Ambiguous => {
                return Err(bad(
                    "ambiguous: more than one object starts with it; give more digits",
                ))
            }
            Err(_) => return Err(bad("not found")),
        };
        let commit = object
            .peel_to_commit()
            .map_err(|_| bad("names an object that is not a commit"))?;
        Ok(commit_id(commit.id()))
    }

    /// Whether `tip` contains `x`: `x` is `tip` or one of its ancestors.
    /// The one answer to "has X shipped" that every caller uses.
    pub fn contains(&self, tip: &CommitId, x: &CommitId) -> Result<bool, GitError> {
        if tip == x {
            return Ok(true);
        }
        let (t, x) = (oid(tip)?, oid(x)?);
        self.repo
            .graph_descendant_of(t, x)
            .map_err(GitError::other("ancestry"))
    }

    /// Commits in `to` that are not in `from` (all of `to`'s history when
    /// nothing was deployed), newest first, at most `max` entries.
    pub fn changelog(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Changelog, GitError> {
        let mut walk = self.repo.revwalk().map_err(GitError::other("revwalk"))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(GitError::other("revwalk"))?;
        walk.push(oid(to)?).map_err(GitError::other("revwalk"))?;
        if let Some(from) = from {
            // A deployed commit the mirror no longer has (history rewritten)
            // hides nothing; the log then shows the candidate's history.
            let _ = walk.hide(oid(from)?);
        }
        let mut log = Changelog::default();
        for id in walk {
            let id = id.map_err(GitError::other("revwalk"))?;
            if log.entries.len() == max {
                log.more += 1;
                continue;
            }
            let commit = self
                .repo
                .find_commit(id)
                .map_err(GitError::other("reading a commit"))?;
            let subject =
                String::from_utf8_lossy(commit.summary_bytes().unwrap_or(b"")).into_owned();
            let author = String::from_utf8_lossy(commit.author().name_bytes()).into_owned();
            log.entries.push(ChangeEntry {
                commit: commit_id(id),
                subject,
                author,
            });
        }
        Ok(log)
    }

    /// The author e-mail of every commit in `from..to` (all of them, not
    /// cut like the changelog): whom the approval gate must not let
    /// approve their own commits. Untrusted text, only compared.
    pub fn authors(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
    ) -> Result<Vec<(CommitId, String)>, GitError> {
        let mut walk = self.repo.revwalk().map_err(GitError::other("revwalk"))?;
        walk.push(oid(to)?).map_err(GitError::other("revwalk"))?;
        if let Some(from) = from {
            let _ = walk.hide(oid(from)?);
        }
        let mut out = Vec::new();
        for id in walk {
            let id = id.map_err(GitError::other("revwalk"))?;
            let commit = self
                .repo
                .find_commit(id)
                .map_err(GitError::other("reading a commit"))?;
            let email = String::from_utf8_lossy(commit.author().email_bytes()).into_owned();
            out.push((commit_id(id), email));
        }
        Ok(out)
    }

    /// Writes the tree of `commit` into `dir`, which must be empty or absent.
    pub fn checkout(&self, commit: &CommitId, dir: &Path) -> Result<(), GitError> {
        let c = self
            .repo
            .find_commit(oid(commit)?)
            .map_err(GitError::other(format!("commit {commit}")))?;
        let tree = c.tree().map_err(GitError::other("tree"))?;
        let mut co = git2::build::CheckoutBuilder::new();
        co.target_dir(dir).force().recreate_missing(true);
        self.repo
            .checkout_tree(tree.as_object(), Some(&mut co))
            .map_err(GitError::other(format!("checking out {commit}")))
    }

    /// Checks a fix value (SPEC §5) against the repository and `tip`.
    pub fn check_fix(&self, value: &str, tip: &CommitId) -> Fix {
        match self.resolve_fix(value) {
            Err(why) => Fix::Invalid {
                value: value.to_owned(),
                why,
            },
            Ok(commit) => {
                let shipped = self.contains(tip, &commit).unwrap_or(false);
                Fix::Valid { commit, shipped }
            }
        }
    }

    /// A fix value as a commit: 7 to 40 hex digits naming exactly one
    /// commit. The error says why not, for the task's comment.
    ///
    /// Looked up as an object id prefix only, never as a revision: a branch
    /// or tag someone named `deadbee` must not stand in for a commit id
    /// (it would unlock the gate with whatever it points at).
    pub fn resolve_fix(&self, value: &str) -> Result<CommitId, String> {
        if !is_fix_shaped(value) {
            return Err("not a commit id (7 to 40 hex digits)".into());
        }
        match self
            .repo
            .find_object_by_prefix(&value.to_ascii_lowercase(), None)
        {
            Ok(o) => match o.kind() {
                Some(git2::ObjectType::Commit) => Ok(commit_id(o.id())),
                _ => Err("not a commit of the repository (it names another kind of object)".into()),
            },
            Err(e) if e.code() == git2::ErrorCode::Ambiguous => {
                Err("ambiguous: more than one object starts with it; give more digits".into())
            }
            Err(_) => Err("not a commit of the repository".into()),
        }
    }

    /// Which of `wanted` `tip` contains, in one walk of `tip`'s history
    /// that stops as soon as every wanted commit has been seen.
    pub fn contained(
        &self,
        tip: &CommitId,
        wanted: &std::collections::HashSet<CommitId>,
    ) -> Result<std::collections::HashSet<CommitId>, GitError> {
        let mut found = std::collections::HashSet::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let want: std::collections::HashMap<Oid, &CommitId> = wanted
            .iter()
            .filter_map(|c| Oid::from_str(c.as_str()).ok().map(|o| (o, c)))
            .collect();
        let mut walk = self.repo.revwalk().map_err(GitError::other("revwalk"))?;
        walk.push(oid(tip)?).map_err(GitError::other("revwalk"))?;
        for id in walk {
            let id = id.map_err(GitError::other("revwalk"))?;
            if let Some(c) = want.get(&id) {
                found.insert((*c).clone());
                if found.len() == want.len() {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The commit's date, for status lines.
    pub fn commit_time(&self, commit: &CommitId) -> Option<chrono::DateTime<chrono::Utc>> {
        let c = self.repo.find_commit(oid(commit).ok()?).ok()?;
        chrono::DateTime::from_timestamp(c.time().seconds(), 0)
    }
}

fn oid(c: &CommitId) -> Result<Oid, GitError> {
    Oid::from_str(c.as_str()).map_err(GitError::other("commit id"))
}

fn commit_id(oid: Oid) -> CommitId {
    CommitId::parse(&oid.to_string()).expect("git2 formats oids as 40 lowercase hex digits")
}

/// A repository URL for people and logs: a password (or token) in its user
/// part replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// libgit2's credential callback: the configured ssh key, else the ssh
/// agent; two tries, then stop (libgit2 asks again after a refusal).
fn credentials(auth: &FetchAuth) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |_url, username, allowed| {
        tries += 1;
        if tries > 2 {
            return Err(git2::Error::from_str("ssh authentication failed"));
        }
        let user = username.unwrap_or("git");
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            match &auth.ssh_key {
                Some(key) => git2::Cred::ssh_key(user, None, key, None),
                None => git2::Cred::ssh_key_from_agent(user),
            }
        } else if allowed.contains(git2::CredentialType::USERNAME) {
            git2::Cred::username(user)
        } else {
            Err(git2::Error::from_str(
                "the remote asks for credentials pushgate does not have (only ssh keys are supported)",
            ))
        }
    });
    callbacks
}

/// `git ls-remote` without git and without a repository: connects to
/// `url` as a fetch would (same credentials) and lists its branches and
/// tags with their commits. Fetches nothing.
pub fn ls_remote(url: &str, auth: &FetchAuth) -> Result<Vec<(String, String)>, GitError> {
    let fetch_err = |e: git2::Error| GitError::fetch(url, &e);
    let mut remote = git2::Remote::create_detached(url).map_err(fetch_err)?;
    let connection = remote
        .connect_auth(git2::Direction::Fetch, Some(credentials(auth)), None)
        .map_err(fetch_err)?;
    let heads = connection.list().map_err(fetch_err)?;
    Ok(heads
        .iter()
        .filter(|h| h.name().starts_with("refs/heads/") || h.name().starts_with("refs/tags/"))
        .map(|h| (h.name().to_owned(), h.oid().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `n` commits on main, each changing one file; and
    /// its mirror, fetched. Returns the commits oldest first.
    fn fixture(n: usize) -> (tempfile::TempDir, Mirror, Vec<CommitId>) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let repo = Repository::init_opts(
            &src,
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .unwrap();
        let sig = git2::Signature::now("Ada", "ada@example.com").unwrap();
        let mut ids = Vec::new();
        let mut parent: Option<Oid> = None;
        for i in 0..n {
            std::fs::write(src.join("f.txt"), format!("{i}\n")).unwrap();
            let mut index = repo.index().unwrap();
            index.add_path(Path::new("f.txt")).unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            let msg = if i == 1 {
                "caf\u{e9} change".to_owned()
            } else {
                format!("change {i}")
            };
            let id = repo
                .commit(Some("HEAD"), &sig, &sig, &msg, &tree, &refs)
                .unwrap();
            parent = Some(id);
            ids.push(commit_id(id));
        }
        repo.tag_lightweight(
            "v1",
            &repo.find_object(parent.unwrap(), None).unwrap(),
            false,
        )
        .unwrap();
        let mirror = Mirror::open(&dir.path().join("mirror")).unwrap();
        mirror
            .fetch(src.to_str().unwrap(), &FetchAuth::default())
            .unwrap();
        (dir, mirror, ids)
    }

    #[test]
    fn ls_remote_lists_branches_and_tags_without_fetching() {
        let (dir, _, ids) = fixture(2);
        let src = dir.path().join("src");
        let mut refs = ls_remote(src.to_str().unwrap(), &FetchAuth::default()).unwrap();
        refs.sort();
        let tip = ids[1].to_string();
        assert_eq!(
            refs,
            vec![
                ("refs/heads/main".to_owned(), tip.clone()),
                ("refs/tags/v1".to_owned(), tip)
            ]
        );
        let err = ls_remote(
            dir.path().join("nowhere").to_str().unwrap(),
            &FetchAuth::default(),
        )
        .unwrap_err();
        assert!(matches!(err, GitError::Fetch { .. }), "{err}");
    }

    #[test]
    fn contains_follows_ancestry_only() {
        let (_d, m, ids) = fixture(3);
        assert!(m.contains(&ids[2], &ids[0]).unwrap());
        assert!(m.contains(&ids[1], &ids[1]).unwrap());
        assert!(!m.contains(&ids[0], &ids[2]).unwrap());
    }

    #[test]
    fn revisions_resolve_by_branch_tag_and_short_sha_and_refuse_the_rest() {
        let (_d, m, ids) = fixture(3);
        assert_eq!(m.branch_tip("main").unwrap(), ids[2]);
        assert_eq!(m.resolve("main").unwrap(), ids[2]);
        assert_eq!(m.resolve("v1").unwrap(), ids[2]);
        assert_eq!(m.resolve(&ids[0].as_str()[..8]).unwrap(), ids[0]);
        for bad in ["nope", "--upload-pack=x", "$(reboot)", "a b", ""] {
            let e = m.resolve(bad).unwrap_err();
            assert!(matches!(e, GitError::BadRevision { .. }), "{bad}: {e}");
        }
        assert!(m.branch_tip("no-such-branch").is_err());
    }

    #[test]
    fn an_ambiguous_short_sha_is_refused_as_such() {
        // libgit2 takes 4+ digits; among 1,200 commits two share a 4-digit
        // prefix with probability 1 - e^-11.
        let (_d, m, ids) = fixture(1200);
        let mut seen = std::collections::HashMap::new();
        let shared = ids.iter().find_map(|c| {
            let p = &c.as_str()[..4];
            seen.insert(p.to_owned(), ()).map(|_| p.to_owned())
        });
        let p = shared.expect("two commits share a 4-digit prefix");
        let e = m.resolve(&p).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
    }

    #[test]
    fn the_changelog_lists_new_commits_newest_first_and_counts_the_rest() {
        let (_d, m, ids) = fixture(5);
        let log = m.changelog(Some(&ids[1]), &ids[4], 2).unwrap();
        let subjects: Vec<&str> = log.entries.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(subjects, ["change 4", "change 3"]);
        assert_eq!(log.more, 1);
        assert_eq!(log.entries[0].author, "Ada");
        let all = m.changelog(None, &ids[4], 50).unwrap();
        assert_eq!(all.len(), 5);
        assert!(m.changelog(Some(&ids[4]), &ids[4], 50).unwrap().is_empty());
    }

    #[test]
    fn fix_values_are_checked_for_shape_existence_and_shipping() {
        let (_d, m, ids) = fixture(3);
        let short = &ids[1].as_str()[..9];
        assert_eq!(
            m.check_fix(short, &ids[2]),
            Fix::Valid {
                commit: ids[1].clone(),
                shipped: true
            }
        );
        assert_eq!(
            m.check_fix(&ids[2].as_str().to_uppercase(), &ids[1]),
            Fix::Valid {
                commit: ids[2].clone(),
                shipped: false
            }
        );
        for (bad, why) in [
            ("main", "not a commit id"),
            ("$(reboot)", "not a commit id"),
            ("abc12", "not a commit id"),
            ("0000000", "not a commit of the repository"),
        ] {
            match m.check_fix(bad, &ids[2]) {
                Fix::Invalid { why: w, .. } => assert!(w.starts_with(why), "{bad}: {w}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let wanted = ids.iter().cloned().collect();
        let found = m.contained(&ids[1], &wanted).unwrap();
        assert_eq!(found, ids[..2].iter().cloned().collect());
    }

    #[test]
    fn checkout_writes_the_commit_tree_into_an_empty_directory() {
        let (d, m, ids) = fixture(2);
        let dir = d.path().join("tree");
        m.checkout(&ids[0], &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "0\n");
        assert!(!dir.join(".git").exists());
    }

    /// Two blob contents whose ids share their first 7 hex digits: found
    /// by the birthday bound in about 20,000 hashes, the same pair every time.
    pub(crate) fn colliding_blobs() -> (String, String, String) {
        let mut seen = std::collections::HashMap::new();
        for i in 0u32.. {
            let body = format!("collide {i}\n");
            let id = Oid::hash_object(git2::ObjectType::Blob, body.as_bytes()).unwrap();
            let prefix = id.to_string()[..7].to_owned();
            if let Some(other) = seen.insert(prefix.clone(), body.clone()) {
                return (prefix, other, body);
            }
        }
        unreachable!()
    }

    #[test]
    fn a_fix_value_is_an_object_id_never_a_branch_or_an_ambiguous_prefix() {
        let (d, m, ids) = fixture(2);
        let src = Repository::open(d.path().join("src")).unwrap();
        // A branch named like a sha, pointing at a commit the value is not.
        let first = src
            .find_commit(Oid::from_str(ids[0].as_str()).unwrap())
            .unwrap();
        let fake = if ids[0].as_str().starts_with("deadbee") {
            "beefdea"
        } else {
            "deadbee"
        };
        src.branch(fake, &first, false).unwrap();
        // Two files whose blobs share 7 hex digits.
        let (prefix, a, b) = colliding_blobs();
        std::fs::write(d.path().join("src/a.txt"), &a).unwrap();
        std::fs::write(d.path().join("src/b.txt"), &b).unwrap();
        let mut index = src.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.add_path(Path::new("b.txt")).unwrap();
        let tree = src.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Ada", "ada@example.com").unwrap();
        let head = src.head().unwrap().peel_to_commit().unwrap();
        src.commit(Some("HEAD"), &sig, &sig, "two blobs", &tree, &[&head])
            .unwrap();
        m.fetch(
            d.path().join("src").to_str().unwrap(),
            &FetchAuth::default(),
        )
        .unwrap();

        // As a revision the branch resolves; as a fix value it does not.
        assert_eq!(m.resolve(fake).unwrap(), ids[0]);
        assert_eq!(
            m.resolve_fix(fake).unwrap_err(),
            "not a commit of the repository"
        );
        assert!(matches!(m.check_fix(fake, &ids[1]), Fix::Invalid { .. }));
        let e = m.resolve_fix(&prefix).unwrap_err();
        assert!(e.starts_with("ambiguous"), "{prefix}: {e}");
        assert!(m
            .resolve(&prefix)
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        // A blob's full id names no commit.
        let blob = Oid::hash_object(git2::ObjectType::Blob, a.as_bytes()).unwrap();
        let e = m.resolve_fix(&blob.to_string()).unwrap_err();
        assert!(e.contains("another kind of object"), "{e}");
        // The real thing still works, in upper case too.
        assert_eq!(
            m.resolve_fix(&ids[1].as_str()[..7].to_uppercase()).unwrap(),
            ids[1]
        );
    }

    #[test]
    fn a_commit_message_that_is_not_utf8_reads_lossily() {
        let (d, m, ids) = fixture(1);
        let src = Repository::open(d.path().join("src")).unwrap();
        let head = src.head().unwrap().peel_to_commit().unwrap();
        let mut raw = format!("tree {}\nparent {}\n", head.tree_id(), ids[0]).into_bytes();
        raw.extend_from_slice(b"author Bad \xff\xfe Name <x@example.com> 1700000000 +0000\n");
        raw.extend_from_slice(b"committer C <c@example.com> 1700000000 +0000\n\n");
        raw.extend_from_slice(b"caf\xe9 \xc3\x28 \x1b[31mred\n\nbody \xff\n");
        let id = src
            .odb()
            .unwrap()
            .write(git2::ObjectType::Commit, &raw)
            .unwrap();
        src.reference("refs/heads/main", id, true, "a raw commit")
            .unwrap();
        m.fetch(
            d.path().join("src").to_str().unwrap(),
            &FetchAuth::default(),
        )
        .unwrap();
        let tip = m.branch_tip("main").unwrap();
        let log = m.changelog(Some(&ids[0]), &tip, 10).unwrap();
        assert_eq!(log.entries.len(), 1);
        assert_eq!(
            log.entries[0].subject,
            "caf\u{fffd} \u{fffd}( \u{1b}[31mred"
        );
        assert_eq!(log.entries[0].author, "Bad \u{fffd}\u{fffd} Name");
        assert!(m.commit_time(&tip).is_some());
    }
}
