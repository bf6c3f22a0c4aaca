//! A release as a BitTorrent swarm sees it: the artifact's regular files
//! in one multi-file torrent named after the release (so that a host's
//! `aria2c --dir=TARGET/releases` writes `TARGET/releases/RELEASE/…`),
//! files unchanged since the deployed release first and the changed ones
//! last, so that a host that runs the deployed release fetches only the
//! pieces of the changed files (`--select-file`), and at most one piece
//! that straddles the two.
//!
//! What a torrent cannot say — directories, symlinks, empty files, modes
//! and modification times — travels in the stage's bundle as a skeleton
//! (see `bittorrent.rs`). Pure but for [`scan`], [`hash_pieces`] and the
//! skeleton writer, which read and write the bastion's disk; nothing here
//! runs a program or talks to a host.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One entry of an artifact, relative to its root, `/`-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File { size: u64 },
    Dir,
    Symlink { target: PathBuf },
}

/// Why an artifact cannot go out as a torrent. Paths are shown through
/// `printable`: they come from the build, and reach terminals and Asana.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    #[error("cannot read {}: {error}", shown(path))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: the bittorrent transport cannot carry this name (not UTF-8, or a control character in it, which aria2c refuses); sync.transport = \"rsync\" can", shown(.0))]
    Path(PathBuf),
}

fn shown(p: &Path) -> String {
    crate::domain::text::printable(&p.to_string_lossy(), 300)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TorrentError + '_ {
    move |error| TorrentError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Every entry under `root`, sorted by path (symlinks not followed).
pub fn scan(root: &Path) -> Result<Vec<Entry>, TorrentError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let rel_path = rel.join(e.file_name());
            let full = root.join(&rel_path);
            let m = fs::symlink_metadata(&full).map_err(io(&full))?;
            let path = match rel_path.to_str() {
                Some(p) if !p.contains(|c: char| c.is_ascii_control()) => p.to_owned(),
                _ => return Err(TorrentError::Path(rel_path)),
            };
            let kind = if m.file_type().is_symlink() {
                Kind::Symlink {
                    target: fs::read_link(&full).map_err(io(&full))?,
                }
            } else if m.is_dir() {
                stack.push(rel_path.clone());
                Kind::Dir
            } else if m.is_file() {
                Kind::File { size: m.len() }
            } else {
                continue;
            };
            out.push(Entry {
                path,
                kind,
                mode: m.permissions().mode() & 0o7777,
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The torrent's files, in order: `(path, size)`, and how many of the
/// first are unchanged since the base (the deployed release's artifact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub files: Vec<(String, u64)>,
    pub unchanged: usize,
}

impl Layout {
    /// The changed files as `aria2c --select-file` counts them (1-based,
    /// inclusive); `None` when nothing changed.
    pub fn changed_range(&self) -> Option<(usize, usize)> {
        (self.unchanged < self.files.len()).then(|| (self.unchanged + 1, self.files.len()))
    }

    /// The unchanged files' paths, NUL-separated: what a host on the base
    /// release hard-links instead of fetching.
    pub fn reuse_list(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (p, _) in &self.files[..self.unchanged] {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    pub fn total(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }
}

/// The non-empty regular files of `new`, those equal to `base` (same
/// path, size, mode and modification time: rsync's quick check) first.
/// Empty files come with the skeleton: a torrent has no piece for them.
pub fn layout(new: &[Entry], base: Option<&[Entry]>) -> Layout {
    let same = |e: &Entry| {
        base.is_some_and(|b| {
            b.binary_search_by(|x| x.path.as_str().cmp(&e.path))
                .ok()
                .is_some_and(|i| b[i] == *e)
        })
    };
    let (mut kept, mut changed) = (Vec::new(), Vec::new());
    for e in new {
        if let Kind::File { size } = e.kind {
            if size == 0 {
                continue;
            }
            if same(e) {
                kept.push((e.path.clone(), size));
            } else {
                changed.push((e.path.clone(), size));
            }
        }
    }
    let unchanged = kept.len();
    kept.extend(changed);
    Layout {
        files: kept,
        unchanged,
    }
}

/// A piece length for `total` bytes: a power of two near a thousand
/// pieces, from 64 KiB to 4 MiB.
pub fn piece_length(total: u64) -> u64 {
    (total / 1000)
        .max(1)
        .next_power_of_two()
        .clamp(64 << 10, 4 << 20)
}

/// SHA-1 of every piece of the files laid end to end (the torrent's
/// `pieces`), reading them from `root`.
pub fn hash_pieces(root: &Path, layout: &Layout, piece: u64) -> Result<Vec<u8>, TorrentError> {
    use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
    let mut out = Vec::new();
    let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    let mut filled = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (p, _) in &layout.files {
        let path = root.join(p);
        let mut f = fs::File::open(&path).map_err(io(&path))?;
        loop {
            let want = (piece - filled).min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want]).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            filled += n as u64;
            if filled == piece {
                out.extend_from_slice(
                    std::mem::replace(&mut ctx, Context::new(&SHA1_FOR_LEGACY_USE_ONLY))
                        .finish()
                        .as_ref(),
                );
                filled = 0;
            }
        }
    }
    if filled > 0 {
        out.extend_from_slice(ctx.finish().as_ref());
    }
    Ok(out)
}

/// Bencoding, for the few shapes a torrent has.
enum B<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    List(Vec<B<'a>>),
    /// Keys must come sorted (the info hash depends on it).
    Dict(Vec<(&'a str, B<'a>)>),
}

fn bencode(b: &B<'_>, out: &mut Vec<u8>) {
    match b {
        B::Int(i) => out.extend(format!("i{i}e").bytes()),
        B::Bytes(s) => {
            out.extend(format!("{}:", s.len()).bytes());
            out.extend_from_slice(s);
        }
        B::List(v) => {
            out.push(b'l');
            for x in v {
                bencode(x, out);
            }
            out.push(b'e');
        }
        B::Dict(kv) => {
            debug_assert!(kv.windows(2).all(|w| w[0].0 < w[1].0));
            out.push(b'd');
            for (k, v) in kv {
                bencode(&B::Bytes(k.as_bytes()), out);
                bencode(v, out);
            }
            out.push(b'e');
        }
    }
}

/// A torrent: its file's bytes and its info hash (hex, as a tracker's
/// whitelist lists it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torrent {
    pub bytes: Vec<u8>,
    pub info_hash: String,
}

/// The metainfo of `layout` named `name`, announcing to `announce`.
/// Private (BEP 27): its peers come from the tracker only.
pub fn metainfo(name: &str, announce: &str, layout: &Layout, piece: u64, pieces: &[u8]) -> Torrent {
    let files: Vec<B<'_>> = layout
        .files
        .iter()
        .map(|(p, size)| {
            B::Dict(vec![
                ("length", B::Int(*size)),
                (
                    "path",
                    B::List(p.split('/').map(|c| B::Bytes(c.as_bytes())).collect()),
                ),
            ])
        })
        .collect();
    let info = B::Dict(vec![
        ("files", B::List(files)),
        ("name", B::Bytes(name.as_bytes())),
        ("piece length", B::Int(piece)),
        ("pieces", B::Bytes(pieces)),
        ("private", B::Int(1)),
    ]);
    let mut info_bytes = Vec::new();
    bencode(&info, &mut info_bytes);
    let hash = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &info_bytes);
    let info_hash = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut bytes = Vec::new();
    bytes.extend(b"d8:announce");
    bencode(&B::Bytes(announce.as_bytes()), &mut bytes);
    bytes.extend(b"4:info");
    bytes.extend(info_bytes);
    bytes.push(b'e');
    Torrent { bytes, info_hash }
}

/// Writes the skeleton of `entries` under `dir`: every directory and
/// symlink, and every regular file empty, with its mode and modification
/// time. Shipped as a tar, it gives a host's release what the torrent
/// cannot (`cp --attributes-only` from it).
pub fn write_skeleton(dir: &Path, entries: &[Entry]) -> Result<(), TorrentError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let time = |ns: i128| {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        std::time::UNIX_EPOCH
            + std::time::Duration::new(secs.max(0) as u64, if secs < 0 { 0 } else { nanos })
    };
    for e in entries {
        let p = dir.join(&e.path);
        match &e.kind {
            Kind::Dir => fs::create_dir_all(&p).map_err(io(&p))?,
            Kind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &p).map_err(io(&p))?;
            }
            Kind::File { .. } => {
                let f = fs::File::create(&p).map_err(io(&p))?;
                f.set_permissions(fs::Permissions::from_mode(e.mode))
                    .map_err(io(&p))?;
                f.set_modified(time(e.mtime_ns)).map_err(io(&p))?;
            }
        }
    }
    // Directories last, deepest first: creating their entries moved
    // their times.
    for e in entries.iter().rev() {
        if e.kind == Kind::Dir {
            let p = dir.join(&e.path);
            fs::set_permissions(&p, fs::Permissions::from_mode(e.mode)).map_err(io(&p))?;
            let f = fs::File::open(&p).map_err(io(&p))?;
            f.set_modified(time(e.mtime_ns)).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Hard-links the torrent's files from `artifact` into `dir` (the
/// bastion's seed: the torrent's name is the release, the artifact's
/// directory is named after its commit), copying where a link cannot be made.
pub fn link_seed(artifact: &Path, dir: &Path, layout: &Layout) -> Result<(), TorrentError> {
    for (p, _) in &layout.files {
        let (from, to) = (artifact.join(p), dir.join(p));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, mtime_ns: i128) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File { size },
            mode: 0o644,
            mtime_ns,
        }
    }

    #[test]
    fn unchanged_files_come_first_and_empty_files_stay_out_of_the_torrent() {
        let base = vec![file("a", 10, 1), file("b", 10, 1), file("c", 10, 1)];
        let new = vec![
            file("a", 10, 1),
            file("b", 11, 2),
            file("c", 10, 1),
            file("d", 0, 3),
            file("e", 5, 3),
        ];
        let l = layout(&new, Some(&base));
        assert_eq!(
            l.files,
            vec![
                ("a".into(), 10),
                ("c".into(), 10),
                ("b".into(), 11),
                ("e".into(), 5)
            ]
        );
        assert_eq!(l.unchanged, 2);
        assert_eq!(l.changed_range(), Some((3, 4)));
        assert_eq!(l.reuse_list(), b"a\0c\0".to_vec());
        let first = layout(&new, None);
        assert_eq!(first.unchanged, 0);
        assert_eq!(first.changed_range(), Some((1, 4)));
        let same = layout(&base, Some(&base));
        assert_eq!(same.changed_range(), None);
        // A mode change is a change: the file is fetched again.
        let mut x = base.clone();
        x[0].mode = 0o755;
        assert_eq!(layout(&x, Some(&base)).unchanged, 2);
    }

    #[test]
    fn pieces_are_hashed_across_file_boundaries_and_the_info_hash_follows_the_bencoding() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 70_000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![2u8; 70_000]).unwrap();
        let l = Layout {
            files: vec![("a".into(), 70_000), ("b".into(), 70_000)],
            unchanged: 0,
        };
        let piece = piece_length(l.total());
        assert_eq!(piece, 64 << 10);
        let pieces = hash_pieces(dir.path(), &l, piece).unwrap();
        assert_eq!(pieces.len(), 3 * 20, "140,000 bytes in 65,536-byte pieces");
        let mut all = vec![1u8; 70_000];
        all.extend(vec![2u8; 70_000]);
        let second = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &all[65_536..131_072],
        );
        assert_eq!(&pieces[20..40], second.as_ref());
        let t = metainfo("R1", "http://10.0.0.1:6969/announce", &l, piece, &pieces);
        let text = String::from_utf8_lossy(&t.bytes);
        assert!(text.starts_with(
            "d8:announce29:http://10.0.0.1:6969/announce4:infod5:filesld6:lengthi70000e4:pathl1:aeed6:lengthi70000e4:pathl1:beee4:name2:R112:piece lengthi65536e6:pieces60:"
        ));
        assert!(text.ends_with("7:privatei1eee"));
        assert_eq!(t.info_hash.len(), 40);
        assert_eq!(piece_length(200 << 20), 256 << 10);
        assert_eq!(piece_length(1 << 40), 4 << 20);
    }

    #[test]
    fn the_skeleton_keeps_modes_times_links_and_empty_files() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("bin/empty-dir")).unwrap();
        std::fs::write(src.path().join("bin/app"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.path().join("bin/app"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(src.path().join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("bin/app", src.path().join("run")).unwrap();
        let entries = scan(src.path()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            vec!["bin", "bin/app", "bin/empty-dir", "empty", "run"]
        );
        let out = tempfile::tempdir().unwrap();
        write_skeleton(out.path(), &entries).unwrap();
        let again = scan(out.path()).unwrap();
        for (a, b) in entries.iter().zip(&again) {
            assert_eq!(a.path, b.path);
            assert_eq!(a.mode, b.mode, "{}", a.path);
            if let Kind::File { .. } = a.kind {
                assert_eq!(a.mtime_ns, b.mtime_ns, "{}", a.path);
                assert_eq!(b.kind, Kind::File { size: 0 });
            } else {
                assert_eq!(a.kind, b.kind);
            }
        }
    }

    #[test]
    fn a_name_with_a_control_character_is_refused_and_shown_escaped() {
        for name in ["tab\there", "cr\r", "esc\u{1b}[31m", "del\u{7f}", "nl\n"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("sub")).unwrap();
            std::fs::write(dir.path().join("sub").join(name), b"x").unwrap();
            let e = scan(dir.path()).unwrap_err().to_string();
            assert!(!e.contains(|c: char| c.is_control()), "{e:?}");
            assert!(e.starts_with("sub/"), "{e}");
            assert!(
                e.contains("the bittorrent transport cannot carry this name")
                    && e.contains("sync.transport = \"rsync\" can"),
                "{e}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("caf\u{e9} \u{2014} ok"), b"x").unwrap();
        assert_eq!(scan(dir.path()).unwrap().len(), 1);
        let e = scan(&dir.path().join("gone\u{1b}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read ") && !e.contains('\u{1b}'),
            "{e}"
        );
    }
}
