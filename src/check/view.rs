//! A read-only view of a distro given as a directory or as a `.tar`/`.tar.gz` read in
//! place (never extracted): an in-memory index of every entry (type, mode, size, link
//! target) plus the bytes of the few files the rules and the package inventory parse.
//! Symlinks are resolved against the index the way `RESOLVE_IN_ROOT` would, so an
//! absolute or `..` link never leads out of the tree. Nothing in the tree is ever executed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::elf::{self, Parsed};
use super::Error;
use crate::tree::Root;

/// What an index entry is. Tar hard links are folded into the file they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits with set-uid/set-gid/sticky (`0o7777`).
    pub mode: u32,
    /// Content bytes (regular files), counted once per hard-linked inode in [`Tree::bytes`].
    pub size: u64,
    /// A symlink's target, as stored.
    pub target: Option<String>,
    /// A tar hard link: the path whose data it shares.
    pub data_of: Option<String>,
    /// Modification time, seconds since the epoch (0 when before it or unknown).
    pub mtime: u64,
}

/// Why a path does not resolve to an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// This path (a prefix of the one asked, after following links) does not exist.
    Missing(String),
    /// This path is used as a directory but is not one.
    NotDir(String),
    /// More than 40 symlinks (the kernel's limit).
    Loop(String),
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::Missing(p) if p.is_empty() => write!(f, "not in the tree"),
            Unresolved::Missing(p) => write!(f, "{p} is not in the tree"),
            Unresolved::NotDir(p) => write!(f, "{p} is not a directory"),
            Unresolved::Loop(p) => write!(f, "too many levels of symlinks at {p}"),
        }
    }
}

/// Where the content comes from.
enum Source {
    Dir(Root),
    Tar(PathBuf),
}

/// The kind of input, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    Dir,
    Tar,
    TarGz,
}

/// Files whose bytes a tar pass keeps (the configuration the rules read): small non-ELF
/// files under these prefixes. Anything else is fetched by a second pass if asked for.
const KEEP_PREFIXES: &[&str] = &["/etc/", "/opt/unbit/"];
const KEEP_MAX: u64 = 1 << 20;
/// Files kept whatever their size: what the package inventory (`outdated`, `sbom`) reads,
/// so reading a tarball's inventory takes one pass. A big dpkg status is a few MB.
const KEEP_FILES: &[&str] = &[
    "/var/lib/dpkg/status",
    "/lib/apk/db/installed",
    "/usr/lib/apk/db/installed",
    "/usr/lib/os-release",
];
const KEEP_FILES_MAX: u64 = 256 << 20;

/// A distro, indexed.
pub struct Tree {
    source: Source,
    pub kind: InputKind,
    index: BTreeMap<String, Entry>,
    bytes: u64,
    kept: RefCell<HashMap<String, Rc<Vec<u8>>>>,
    elves: RefCell<HashMap<String, Rc<Parsed>>>,
}

const MAX_LINKS: usize = 40;

/// `/a/./b//c/` → `/a/b/c`; `None` for a path with `..` (a tar entry must not climb).
fn normalize(p: &Path) -> Option<String> {
    let mut out = String::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                out.push('/');
                out.push_str(&n.to_string_lossy());
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// The directory part of an absolute normalized path (`/` for top-level names).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `dir` joined with a name (no normalization of `name`).
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn root_entry() -> Entry {
    Entry {
        kind: Kind::Dir,
        mode: 0o755,
        size: 0,
        target: None,
        data_of: None,
        mtime: 0,
    }
}

fn interrupted() -> Result<(), Error> {
    if crate::error::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

impl Tree {
    /// Index a directory or a tar archive (plain or gzip, told apart by content).
    pub fn open(input: &Path) -> Result<Tree, Error> {
        let md = std::fs::metadata(input).map_err(|e| Error::read(input, e))?;
        if md.is_dir() {
            Tree::from_dir(input)
        } else {
            Tree::from_tar(input)
        }
    }

    fn from_dir(dir: &Path) -> Result<Tree, Error> {
        let root = Root::open(dir).map_err(|e| Error::Input {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut index = BTreeMap::new();
        index.insert("/".to_string(), root_entry());
        let mut bytes = 0;
        let mut inodes = HashSet::new();
        let walked = root.walk().map_err(|e| Error::Input {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        for (rel, md) in walked {
            interrupted()?;
            let path = normalize(&rel).expect("walk yields plain names");
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_char_device() {
                Kind::CharDevice
            } else if ft.is_block_device() {
                Kind::BlockDevice
            } else if ft.is_fifo() {
                Kind::Fifo
            } else {
                Kind::Socket
            };
            let target = if kind == Kind::Symlink {
                root.read_link(&rel)
                    .map_err(|e| Error::Input {
                        path: dir.display().to_string(),
                        msg: e.to_string(),
                    })?
                    .map(|t| t.to_string_lossy().into_owned())
            } else {
                None
            };
            let size = if kind == Kind::File { md.len() } else { 0 };
            if kind == Kind::File && (md.nlink() < 2 || inodes.insert((md.dev(), md.ino()))) {
                bytes += size;
            }
            index.insert(
                path,
                Entry {
                    kind,
                    mode: md.mode() & 0o7777,
                    size,
                    target,
                    data_of: None,
                    mtime: md.mtime().max(0) as u64,
                },
            );
        }
        Ok(Tree {
            source: Source::Dir(root),
            kind: InputKind::Dir,
            index,
            bytes,
            kept: RefCell::default(),
            elves: RefCell::default(),
        })
    }

    /// Open the archive as a stream of tar bytes, gunzipping when it starts with the gzip magic.
    fn tar_stream(path: &Path) -> Result<(Box<dyn Read>, InputKind), Error> {
        let mut f =
            BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::read(path, e))?);
        let magic = std::io::BufRead::fill_buf(&mut f).map_err(|e| Error::read(path, e))?;
        if magic.starts_with(&[0x1f, 0x8b]) {
            Ok((
                Box::new(flate2::bufread::MultiGzDecoder::new(f)),
                InputKind::TarGz,
            ))
        } else {
            Ok((Box::new(f), InputKind::Tar))
        }
    }

    fn from_tar(input: &Path) -> Result<Tree, Error> {
        let (stream, kind) = Tree::tar_stream(input)?;
        let mut ar = tar::Archive::new(stream);
        let bad = |msg: String| Error::Input {
            path: input.display().to_string(),
            msg,
        };
        let mut index = BTreeMap::new();
        index.insert("/".to_string(), root_entry());
        let mut kept = HashMap::new();
        let mut elves = HashMap::new();
        let mut bytes = 0;
        let entries = ar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for e in entries {
            interrupted()?;
            let mut e = e.map_err(|e| bad(format!("not a readable tar archive: {e}")))?;
            let raw = e.path().map_err(|e| bad(e.to_string()))?.into_owned();
            let path = normalize(&raw)
                .ok_or_else(|| bad(format!("entry {} has a `..` component", raw.display())))?;
            let h = e.header();
            let mode = h.mode().unwrap_or(0) & 0o7777;
            let mtime = h.mtime().unwrap_or(0);
            let link = || -> Result<String, Error> {
                let t = e
                    .link_name()
                    .map_err(|er| bad(er.to_string()))?
                    .ok_or_else(|| bad(format!("link {path} has no target")))?;
                Ok(t.to_string_lossy().into_owned())
            };
            use tar::EntryType as T;
            let entry = match h.entry_type() {
                T::Directory => Entry {
                    kind: Kind::Dir,
                    mode,
                    size: 0,
                    target: None,
                    data_of: None,
                    mtime,
                },
                T::Symlink => Entry {
                    kind: Kind::Symlink,
                    mode,
                    size: 0,
                    target: Some(link()?),
                    data_of: None,
                    mtime,
                },
                T::Link => {
                    let t = link()?;
                    let of = normalize(Path::new(&t))
                        .ok_or_else(|| bad(format!("hard link {path} -> {t} climbs with `..`")))?;
                    let first = index.get(&of).cloned().ok_or_else(|| {
                        bad(format!(
                            "hard link {path} -> {t}: the target is not earlier in the archive"
                        ))
                    })?;
                    let first: Entry = first;
                    Entry {
                        data_of: Some(first.data_of.clone().unwrap_or(of)),
                        ..first
                    }
                }
                T::Char => Entry {
                    kind: Kind::CharDevice,
                    mode,
                    size: 0,
                    target: None,
                    data_of: None,
                    mtime,
                },
                T::Block => Entry {
                    kind: Kind::BlockDevice,
                    mode,
                    size: 0,
                    target: None,
                    data_of: None,
                    mtime,
                },
                T::Fifo => Entry {
                    kind: Kind::Fifo,
                    mode,
                    size: 0,
                    target: None,
                    data_of: None,
                    mtime,
                },
                T::Regular | T::Continuous | T::GNUSparse => {
                    let size = e.size();
                    bytes += size;
                    let mut head = [0u8; 4];
                    let mut got = 0;
                    while got < 4 {
                        let n = e
                            .read(&mut head[got..])
                            .map_err(|er| Error::read(input, er))?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    let is_elf = got == 4 && head == *b"\x7fELF";
                    let keep = !is_elf
                        && ((size <= KEEP_MAX
                            && KEEP_PREFIXES.iter().any(|p| path.starts_with(p)))
                            || (size <= KEEP_FILES_MAX && KEEP_FILES.contains(&path.as_str())));
                    if is_elf || keep {
                        let mut buf = Vec::with_capacity(size as usize);
                        buf.extend_from_slice(&head[..got]);
                        e.read_to_end(&mut buf)
                            .map_err(|er| Error::read(input, er))?;
                        if is_elf {
                            elves.insert(path.clone(), Rc::new(elf::parse(&buf)));
                        } else {
                            kept.insert(path.clone(), Rc::new(buf));
                        }
                    }
                    Entry {
                        kind: Kind::File,
                        mode,
                        size,
                        target: None,
                        data_of: None,
                        mtime,
                    }
                }
                // Pax/GNU metadata records are consumed by the tar reader; anything else
                // (e.g. a socket stored by some tool) cannot exist on disk after extraction.
                _ => continue,
            };
            if path == "/" {
                continue;
            }
            index.insert(path, entry);
        }
        Ok(Tree {
            source: Source::Tar(input.to_path_buf()),
            kind,
            index,
            bytes,
            kept: RefCell::new(kept),
            elves: RefCell::new(elves),
        })
    }

    /// Entries below the root (the root itself is not counted).
    pub fn entry_count(&self) -> u64 {
        self.index.len() as u64 - 1
    }

    /// Bytes of regular-file content, each hard-linked inode once.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every entry, sorted by path (the root `/` first).
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.index.iter()
    }

    /// The entry at `path`, not following a final symlink.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.index.get(path)
    }

    /// Names directly inside the directory `dir` (which must be a resolved path).
    pub fn children(&self, dir: &str) -> Vec<&str> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.index
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| &k[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .collect()
    }

    /// Follow every symlink in `path` inside the tree (absolute targets start again at the
    /// tree's root, `..` stops at it). Returns the path of the existing final entry.
    pub fn resolve(&self, path: &str) -> Result<String, Unresolved> {
        let mut todo: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0;
        let joined = |cur: &[String]| -> String {
            if cur.is_empty() {
                "/".to_string()
            } else {
                format!("/{}", cur.join("/"))
            }
        };
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(c);
            let p = joined(&cur);
            let Some(e) = self.index.get(&p) else {
                return Err(Unresolved::Missing(p));
            };
            match e.kind {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Unresolved::Loop(p));
                    }
                    cur.pop();
                    let t = e.target.as_deref().unwrap_or("");
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(
                        t.split('/')
                            .rev()
                            .filter(|c| !c.is_empty())
                            .map(str::to_string),
                    );
                }
                Kind::Dir => {}
                _ if !todo.is_empty() => return Err(Unresolved::NotDir(p)),
                _ => {}
            }
        }
        Ok(joined(&cur))
    }

    /// The path holding the data of the regular file at `path` (tar hard links).
    fn data_path(&self, path: &str) -> String {
        self.index
            .get(path)
            .and_then(|e| e.data_of.clone())
            .unwrap_or_else(|| path.to_string())
    }

    /// The content of the regular file at the resolved `path`.
    pub fn read(&self, path: &str) -> Result<Rc<Vec<u8>>, Error> {
        Ok(self.read_all(&[path])?.remove(0))
    }

    /// The contents of the regular files at the resolved `paths`, in order. A tarball is
    /// read again at most once for all the files its first pass did not keep.
    pub fn read_all(&self, paths: &[&str]) -> Result<Vec<Rc<Vec<u8>>>, Error> {
        let paths: Vec<String> = paths.iter().map(|p| self.data_path(p)).collect();
        let missing: HashSet<&str> = paths
            .iter()
            .filter(|p| !self.kept.borrow().contains_key(p.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let fetched = match &self.source {
                Source::Dir(root) => missing
                    .iter()
                    .map(|p| {
                        let data = root.read(Path::new(p)).map_err(|e| Error::Input {
                            path: root.host_path(p).display().to_string(),
                            msg: e.to_string(),
                        })?;
                        Ok((p.to_string(), data))
                    })
                    .collect::<Result<Vec<_>, Error>>()?,
                Source::Tar(file) => self.fetch(file, &missing)?,
            };
            let mut kept = self.kept.borrow_mut();
            for (p, data) in fetched {
                kept.insert(p, Rc::new(data));
            }
        }
        let kept = self.kept.borrow();
        Ok(paths.iter().map(|p| kept[p].clone()).collect())
    }

    /// A second pass over the archive for files the first pass did not keep.
    fn fetch(&self, file: &Path, want: &HashSet<&str>) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let (stream, _) = Tree::tar_stream(file)?;
        let mut ar = tar::Archive::new(stream);
        let mut found = HashMap::new();
        for e in ar.entries().map_err(|e| Error::read(file, e))? {
            interrupted()?;
            let mut e = e.map_err(|e| Error::read(file, e))?;
            let Some(p) = e.path().ok().and_then(|p| normalize(&p)) else {
                continue;
            };
            if want.contains(p.as_str()) && e.header().entry_type().is_file() {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf)
                    .map_err(|er| Error::read(file, er))?;
                // Later entries with the same name replace earlier ones on extraction.
                found.insert(p, buf);
            }
        }
        want.iter()
            .map(|w| {
                let data = found.remove(*w).ok_or_else(|| Error::Input {
                    path: file.display().to_string(),
                    msg: format!("{w} vanished from the archive between two reads"),
                })?;
                Ok((w.to_string(), data))
            })
            .collect()
    }

    /// The ELF summary of the regular file at the resolved `path` (cached).
    pub fn elf(&self, path: &str) -> Result<Rc<Parsed>, Error> {
        let path = self.data_path(path);
        if let Some(p) = self.elves.borrow().get(&path) {
            return Ok(p.clone());
        }
        let parsed = match &self.source {
            // The tar pass summarised every ELF file it met; anything else is not one.
            Source::Tar(_) => Parsed::NotElf,
            Source::Dir(_) => elf::parse(&self.read(&path)?),
        };
        let parsed = Rc::new(parsed);
        self.elves.borrow_mut().insert(path.clone(), parsed.clone());
        // Library bytes are only needed once: keep the summary, drop the content.
        if matches!(*parsed, Parsed::Elf(_)) {
            self.kept.borrow_mut().remove(&path);
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Kind, Option<&str>)]) -> Tree {
        let mut index = BTreeMap::new();
        index.insert("/".to_string(), root_entry());
        for (p, k, t) in entries {
            index.insert(
                p.to_string(),
                Entry {
                    kind: *k,
                    mode: 0o755,
                    size: 0,
                    target: t.map(str::to_string),
                    data_of: None,
                    mtime: 0,
                },
            );
        }
        Tree {
            source: Source::Tar(PathBuf::from("/nonexistent")),
            kind: InputKind::Tar,
            index,
            bytes: 0,
            kept: RefCell::default(),
            elves: RefCell::default(),
        }
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        use Kind::*;
        let t = tree(&[
            ("/bin", Symlink, Some("usr/bin")),
            ("/usr", Dir, None),
            ("/usr/bin", Dir, None),
            ("/usr/bin/busybox", File, None),
            ("/usr/bin/sh", Symlink, Some("busybox")),
            ("/usr/bin/up", Symlink, Some("../../../../usr/bin/busybox")),
            ("/usr/bin/abs", Symlink, Some("/bin/sh")),
            ("/usr/bin/loop", Symlink, Some("loop")),
            ("/usr/bin/dangling", Symlink, Some("/nowhere/x")),
        ]);
        assert_eq!(t.resolve("/bin/sh").unwrap(), "/usr/bin/busybox");
        assert_eq!(t.resolve("/usr/bin/up").unwrap(), "/usr/bin/busybox");
        assert_eq!(t.resolve("/bin/abs").unwrap(), "/usr/bin/busybox");
        assert_eq!(t.resolve("/bin/../bin/sh").unwrap(), "/usr/bin/busybox");
        assert_eq!(
            t.resolve("/usr/bin/loop"),
            Err(Unresolved::Loop("/usr/bin/loop".into()))
        );
        assert_eq!(
            t.resolve("/usr/bin/dangling"),
            Err(Unresolved::Missing("/nowhere".into()))
        );
        assert_eq!(
            t.resolve("/usr/bin/busybox/x"),
            Err(Unresolved::NotDir("/usr/bin/busybox".into()))
        );
        assert_eq!(t.children("/usr/bin").len(), 6);
        assert_eq!(t.children("/"), ["bin", "usr"]);
    }
}
