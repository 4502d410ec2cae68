//! The build cache, between `source` and `customize`: a bootstrap's result is kept under a
//! key naming everything that decides it, so an unchanged recipe on an unchanged mirror
//! skips the bootstrap; customize, finish, check and pack always rerun on top. Downloaded
//! `.deb` files are kept too, so a bootstrap that does run (a new security upload changed
//! a key) fetches only what changed, and so are the compressed pieces of `.tar.gz`
//! outputs ([`Blocks`]), so a rerun pack compresses only the pieces that changed.
//!
//! A registry source's tree is kept too, under a key of the `[source]` table, the
//! platform (`linux/amd64` unless the recipe names one) and the digest of the image
//! manifest the registry resolved the reference to. The digest is asked of the registry
//! on every build (one or two small requests; a tag may move), so an unreachable
//! registry fails the build rather than serving an entry; only the layers are skipped.
//! Docker, image-archive and rootfs sources are not cached: they are local copies already.
//!
//! Layout under the cache root ([`crate::mirror::client::default_cache_dir`], shared with
//! the mirror client's `indexes/`):
//!
//! ```text
//! lock                         flock: shared while a build uses the cache, exclusive to prune
//! debs/NAME.deb                downloaded packages (added by rename only, never rewritten)
//! entries/KEY/key.json         what the key is made of, for `cache ls` and humans
//! entries/KEY/source.tar.zst   the source tree
//! entries/KEY/tree/            the same tree unpacked (when stored as root): read in place
//! entries/KEY/entry.json       the tarball's size and SHA-256, the tree's metadata hash:
//!                              written last (the fingerprint)
//! blocks/KEY                   compressed pieces of `.tar.gz` outputs ([`Blocks`])
//! entries/.trash-*/            damaged entries set aside ([`TRASH`])
//! ```
//!
//! An entry is written in a temporary directory and renamed into place, and it is trusted
//! only when `entry.json` exists and the tarball (or the tree, when it is mounted)
//! matches it; anything else is a miss, and
//! a damaged entry is set aside and rebuilt with a warning: moved, not removed, because
//! another build may have its tree mounted or its tarball open. Whatever is set aside or
//! half-written (a killed build's temporary files) is removed by the first build that
//! finds itself alone with the cache (a non-blocking exclusive lock, then shared) and by
//! `cache prune`. A failed write (a full disk) fails the cache write, never the build.
//!
//! Why this storage format: an entry holds the source tree twice. `source.tar.zst` is
//! the tree as one zstd-compressed tar, written by pack's walker (sorted, owners kept) and
//! restored by the same hostile-input-safe unpacker every other archive goes through: one
//! file, cheap to checksum, about a third of the tree (the default recipe: 125 MiB of
//! files, a 42 MiB entry); it serves whoever cannot mount (not root, `--format dir`, whose
//! output is the tree itself and cannot be moved off a mount, a kernel that refuses).
//! `tree/` is the tree itself: a cold build that can read an entry in place moves its
//! fresh tree in ([`Cache::store_moving`]) and reads it from there like any hit, so
//! storing writes only the tarball (the registry source's 334 MiB bench image: a cold
//! build with the cache takes about a second more than one without, where unpacking a
//! second copy took five more); otherwise it is the tarball unpacked once, by the same
//! unpacker. Either way a restore gives the same archive (the unpacker changes nothing
//! an archive keeps; tests compare cold, warm and restored archives byte for byte). A
//! warm build mounts it read-only as the lower layer
//! of an overlay ([`crate::tree::overlay`], as rootfs directories and Docker layers are
//! read) and customize, finish and pack work on top, writing only the build's upper
//! directory. Restoring meant writing every file again, most of a warm build on a slow
//! disk; mounting writes nothing.
//!
//! How `tree/` is trusted: `entry.json` records its entry count, byte count and a SHA-256
//! over every entry's path, type, mode, owner, size, mtime, ctime, link count and link
//! target (walked in name order), and the tree is compared before each mount. That is a
//! listing, not a read of 200+ MiB: it catches whatever changes a directory nobody writes
//! (the kernel never writes a lower layer) through the filesystem: a hand edit, a
//! truncation, a partial delete, a chmod, and a content edit whose mtime was set back
//! (every write sets the ctime, which only the clock or the raw device can set back).
//! What passes is a change below the filesystem (bit rot, a raw device write); hashing
//! every byte on every build would cost what the restore cost. Hard-link farms were rejected:
//! they share inodes between the cache and a tree that customize writes into.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::source::{ReleaseRef, SourceInfo};

mod blocks;
pub use blocks::Blocks;
use blocks::BLOCKS;

/// Bumped when the entry format or what goes into a key changes.
const FORMAT: u32 = 2;
const ENTRY: &str = "entry.json";
const KEY: &str = "key.json";
const TARBALL: &str = "source.tar.zst";
/// The unpacked tree beside the tarball: the lower layer of a warm build's overlay.
const TREE: &str = "tree";
/// zstd level of entries: fast to write, a third of the size.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build cache {path}: {source}; set BUILD_DISTRO_CACHE_DIR to a writable directory or build with --no-cache")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("build cache entry {id}: {msg}")]
    Corrupt { id: String, msg: String },
    #[error("no cache directory: set BUILD_DISTRO_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoDir,
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Pack(#[from] crate::pack::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoDir => 2,
            _ => 1,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that decides a source tree. Serialized (fields in this order, the recipe's
/// source table as the recipe type serializes it) and hashed into the entry's name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Key {
    pub format: u32,
    pub tool_version: String,
    /// The recipe's `[source]` table, `type` included.
    pub source: serde_json::Value,
    /// The Debian architecture built for; for an image, the platform (`OS/ARCH[/VARIANT]`).
    pub arch: String,
    /// Every `InRelease` read, with its SHA-256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRef>,
    /// An image's manifest digest (of the platform's manifest, not of an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The `[slim]` dpkg rules a bootstrap ran with: they decide which files the tree
    /// holds. (A registry tree is stored as pulled and slimmed after the cache.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slim: Option<String>,
}

impl Key {
    pub fn new(
        source: &crate::recipe::SourceSpec,
        arch: &str,
        releases: &[ReleaseRef],
        digest: Option<String>,
    ) -> Key {
        Key {
            format: FORMAT,
            tool_version: crate::VERSION.to_string(),
            source: serde_json::to_value(source).expect("serializable"),
            arch: arch.to_string(),
            // The date is read from the bytes the hash covers; leaving it out keeps the
            // key to what identifies the input.
            releases: releases
                .iter()
                .map(|r| ReleaseRef {
                    date: None,
                    ..r.clone()
                })
                .collect(),
            digest,
            slim: None,
        }
    }

    /// This key for a tree bootstrapped with `slim`'s rules.
    pub fn with_slim(mut self, slim: Option<&crate::recipe::Slim>) -> Key {
        self.slim = slim.map(crate::slim::dpkg_text);
        self
    }

    /// The entry's name: SHA-256 of the key's JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("serializable");
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json))
    }
}

/// The Debian name of the host's architecture (what a bootstrap without `arch` builds).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        other => other,
    }
}

/// The fingerprint, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntryFile {
    format: u32,
    id: String,
    tar_bytes: u64,
    tar_sha256: String,
    /// Bytes of file content in the tree.
    tree_bytes: u64,
    /// Seconds since the epoch.
    created: u64,
    source: SourceInfo,
    /// The source's `created` (skipped in [`SourceInfo`]'s JSON).
    #[serde(default)]
    source_created: Option<u64>,
    /// What `tree/` held when it was stored; absent when the entry has no unpacked tree
    /// (stored without root, or by an older version): then only the tarball serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tree: Option<TreeSum>,
}

/// A summary of an unpacked tree's metadata, compared before the tree is mounted: every
/// entry's path, type, mode, owner, size, mtime and link target, hashed in walk order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct TreeSum {
    entries: u64,
    bytes: u64,
    meta_sha256: String,
}

/// Walk `dir` (sorted, links not followed) and summarize it. Reads metadata only: as
/// cheap as listing the tree, a fraction of reading it.
fn tree_sum(dir: &Path) -> std::io::Result<TreeSum> {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut h = sha2::Sha256::new();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(std::io::Error::other)?;
        let m = e.metadata().map_err(std::io::Error::other)?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let link = if m.file_type().is_symlink() {
            std::fs::read_link(e.path())?
        } else {
            PathBuf::new()
        };
        let size = if m.is_file() { m.len() } else { 0 };
        h.update(rel.as_os_str().as_bytes());
        h.update([0]);
        h.update(link.as_os_str().as_bytes());
        h.update([0]);
        for n in [
            u64::from(m.mode()),
            u64::from(m.uid()),
            u64::from(m.gid()),
            size,
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            // Any write, chmod or touch since the tree was stored sets the ctime, which
            // nothing short of the clock or the raw device can set back.
            m.ctime() as u64,
            m.ctime_nsec() as u64,
            m.nlink(),
        ] {
            h.update(n.to_le_bytes());
        }
        entries += 1;
        bytes += size;
    }
    Ok(TreeSum {
        entries,
        bytes,
        meta_sha256: hex::encode(h.finalize()),
    })
}

/// What [`Cache::mount`] found.
pub enum Mounted {
    /// The entry's tree, mounted read-only below an overlay on the target.
    Yes(SourceInfo, crate::tree::overlay::Overlay),
    /// Not mounted, and why (not root, no unpacked tree, the kernel refused): restore it.
    No(String),
}

/// One line of `cache ls`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `entry` or `debs`.
    pub kind: String,
    pub id: String,
    /// What the entry is of (`mmdebstrap bookworm minbase http://…`); for `debs`, how many.
    pub summary: String,
    pub bytes: u64,
    /// Seconds since written.
    pub age_secs: u64,
    /// Seconds since a build last used it.
    pub unused_secs: u64,
    /// The key's `InRelease` hashes, shortened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// False when the fingerprint is missing or unreadable (a half-written entry).
    pub complete: bool,
}

/// What `cache prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
}

/// A cache opened for a build (shared lock) or for pruning (exclusive lock); the lock is
/// released when this is dropped.
pub struct Cache {
    root: PathBuf,
    _lock: File,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs())
}

/// Disk usage of a file or a directory tree (apparent sizes).
fn size_of(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The files of a flat cache directory (`debs/`, `blocks/`), temporary ones left out:
/// (path, size, last use). A package's last use is its last read; a piece's is its
/// mtime, which each use sets.
fn flat_files(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            let used = m.accessed().or_else(|_| m.modified()).ok()?;
            Some((e.path(), m.len(), used.max(m.modified().ok()?)))
        })
        .collect()
}

/// The `cache ls` line of a flat directory.
fn files_listed(kind: &str, dir: &Path, what: &str) -> Listed {
    let files = flat_files(dir);
    Listed {
        kind: kind.into(),
        id: kind.into(),
        summary: format!("{} {what}", files.len()),
        bytes: files.iter().map(|f| f.1).sum(),
        age_secs: dir
            .metadata()
            .and_then(|m| m.created())
            .map_or(0, secs_since),
        unused_secs: files.iter().map(|f| f.2).max().map_or(0, secs_since),
        releases: Vec::new(),
        complete: true,
    }
}

/// Damaged entries are moved aside under this prefix in `entries/`, not removed: another
/// build may have the tree mounted or the tarball open. They go when no build uses the
/// cache ([`Cache::sweep`]).
const TRASH: &str = ".trash-";

/// Move the damaged entry at `dir` aside (see [`TRASH`]) and say why. Removed at once
/// only when it cannot be moved.
fn corrupt(dir: &Path, id: &str, msg: String) -> Error {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let aside = tempfile::Builder::new()
        .prefix(TRASH)
        .tempdir_in(parent)
        .and_then(|t| std::fs::rename(dir, t.path().join("entry")).map(|()| t.keep()));
    if aside.is_err() {
        let _ = crate::tree::remove_tree(dir);
    }
    Error::Corrupt {
        id: id[..12.min(id.len())].to_string(),
        msg,
    }
}

/// Mark the entry at `dir` used (pruning goes by the fingerprint's mtime, oldest first)
/// and give its source's description.
fn used(dir: &Path, entry: EntryFile) -> SourceInfo {
    if let Ok(f) = File::options().append(true).open(dir.join(ENTRY)) {
        let _ = f.set_modified(SystemTime::now());
    }
    let mut info = entry.source;
    info.created = entry.source_created;
    info
}

/// A writer that hashes what it writes.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Cache {
    /// The default root (see the module docs).
    pub fn default_root() -> Result<PathBuf> {
        crate::mirror::client::default_cache_dir().ok_or(Error::NoDir)
    }

    /// Open for a build: create the directories, take the shared lock.
    pub fn open(root: &Path) -> Result<Cache> {
        Cache::lock(root, false)
    }

    /// Open for pruning: waits until no build uses the cache.
    pub fn open_exclusive(root: &Path) -> Result<Cache> {
        Cache::lock(root, true)
    }

    fn lock(root: &Path, exclusive: bool) -> Result<Cache> {
        for d in [root.join("entries"), root.join("debs"), root.join(BLOCKS)] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let path = root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let cache = Cache {
            root: root.to_path_buf(),
            _lock: f,
        };
        let lock = |op| rustix::fs::flock(&cache._lock, op).map_err(|e| Error::io(&path, e.into()));
        if exclusive {
            lock(rustix::fs::FlockOperation::LockExclusive)?;
            return Ok(cache);
        }
        // A build alone with the cache clears what dead or earlier builds left (prune
        // does it under its own lock), then shares the lock.
        if lock(rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = cache.sweep();
        }
        lock(rustix::fs::FlockOperation::LockShared)?;
        Ok(cache)
    }

    /// Remove damaged entries set aside and temporary files and directories (a build
    /// that died mid-write); only while holding the lock exclusively. Returns what went
    /// and how many bytes.
    fn sweep(&self) -> Result<(Vec<String>, u64)> {
        let (mut removed, mut bytes) = (Vec::new(), 0);
        let mut partial = 0;
        for dir in [
            self.root.join("entries"),
            self.debs_dir(),
            self.root.join(BLOCKS),
        ] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let p = e.path();
                if name.starts_with(TRASH) {
                    bytes += size_of(&p);
                    crate::tree::remove_tree(&p)?;
                    removed.push(format!("damaged entry {name}"));
                } else if name.starts_with(".tmp-") {
                    bytes += size_of(&p);
                    if p.is_dir() {
                        crate::tree::remove_tree(&p)?;
                    } else {
                        std::fs::remove_file(&p).map_err(|er| Error::io(&p, er))?;
                    }
                    partial += 1;
                }
            }
        }
        if partial > 0 {
            removed.push(format!("{partial} half-written files"));
        }
        Ok((removed, bytes))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The shared package directory.
    pub fn debs_dir(&self) -> PathBuf {
        self.root.join("debs")
    }

    /// The store of compressed pieces, for packing a `.tar.gz`.
    pub fn blocks(&self) -> Blocks {
        Blocks::new(self.root.join(BLOCKS))
    }

    fn entry_dir(&self, id: &str) -> PathBuf {
        self.root.join("entries").join(id)
    }

    /// Whether a complete entry for `key` exists (not yet checksummed: [`Cache::restore`]
    /// does that).
    pub fn has(&self, key: &Key) -> bool {
        self.entry_dir(&key.id()).join(ENTRY).is_file()
    }

    /// Write a copy of the tree at `tree` as the entry for `key`: into a temporary
    /// directory, the fingerprint last, then renamed into place. Another build that
    /// stored the same key first wins; ours is dropped.
    pub fn store(&self, key: &Key, tree: &Path, info: &SourceInfo) -> Result<()> {
        self.store_as(key, tree, info, false).map(|_| ())
    }

    /// [`Cache::store`], moving `tree` into the entry as its unpacked tree instead of
    /// unpacking a copy of the tarball (as root, on the cache's filesystem): the caller
    /// then reads the entry like any hit. Returns whether `tree` moved; when it did not
    /// (another filesystem, not root), a copy was stored and `tree` is where it was. On
    /// an error `tree` is back in its place.
    pub fn store_moving(&self, key: &Key, tree: &Path, info: &SourceInfo) -> Result<bool> {
        self.store_as(key, tree, info, true)
    }

    fn store_as(&self, key: &Key, tree: &Path, info: &SourceInfo, moving: bool) -> Result<bool> {
        let id = key.id();
        let entries = self.root.join("entries");
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&entries)
            .map_err(|e| Error::io(&entries, e))?;
        let dir = &tmp.path().to_path_buf();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| Error::io(&p, e)
        };
        let mut key_json = serde_json::to_vec_pretty(key).expect("serializable");
        key_json.push(b'\n');
        std::fs::write(dir.join(KEY), &key_json).map_err(io(&dir.join(KEY)))?;
        let tar_path = dir.join(TARBALL);
        let f = File::create(&tar_path).map_err(io(&tar_path))?;
        let hw = HashingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, f),
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            bytes: 0,
        };
        let z = zstd::stream::write::Encoder::new(hw, ZSTD_LEVEL).map_err(io(&tar_path))?;
        let (packed, z) = crate::pack::write_cache_tar(tree, z)?;
        let hw = z.finish().map_err(io(&tar_path))?;
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = hw;
        let f = inner
            .into_inner()
            .map_err(|e| Error::io(&tar_path, e.into_error()))?;
        drop(f);
        let root = rustix::process::geteuid().is_root();
        // Moved in: nothing is written twice. The tree needs no round trip through the
        // unpacker to be what a restore gives: the unpacker changes nothing the finished
        // archive keeps (owners and modes are kept; device nodes and sub-second times
        // never reach an archive), and tests compare cold, warm and restored archives
        // byte for byte.
        let moved = root && moving && std::fs::rename(tree, dir.join(TREE)).is_ok();
        let put_back = || {
            if moved {
                let _ = std::fs::rename(dir.join(TREE), tree);
            }
        };
        let tree_sum = match (root, moved) {
            (false, _) => None,
            (true, true) => Some(tree_sum(&dir.join(TREE)).map_err(|e| {
                put_back();
                Error::io(&dir.join(TREE), e)
            })?),
            (true, false) => Some(self.unpack_tree(&tar_path, &dir.join(TREE), &id)?),
        };
        let entry = EntryFile {
            format: FORMAT,
            id: id.clone(),
            tar_bytes: bytes,
            tar_sha256: hex::encode(sha2::Digest::finalize(hasher)),
            tree_bytes: packed.bytes,
            created: now_secs(),
            source: info.clone(),
            source_created: info.created,
            tree: tree_sum,
        };
        let mut json = serde_json::to_vec_pretty(&entry).expect("serializable");
        json.push(b'\n');
        let ep = dir.join(ENTRY);
        let written = File::create(&ep).and_then(|mut f| {
            f.write_all(&json)?;
            f.sync_all()
        });
        if let Err(e) = written {
            put_back();
            return Err(Error::io(&ep, e));
        }
        let dest = self.entry_dir(&id);
        // A leftover without a fingerprint (a crash mid-rename cannot make one, but a
        // hand-edited cache can) is in the way of the rename.
        if dest.exists() && !dest.join(ENTRY).is_file() {
            let _ = crate::tree::remove_tree(&dest);
        }
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dest) {
            // Ours goes back (or away): a concurrent build stored it first
            // (ENOTEMPTY/EEXIST), and its entry serves; or the rename failed.
            put_back();
            let _ = crate::tree::remove_tree(&tmp_path);
            if !dest.join(ENTRY).is_file() {
                return Err(Error::io(&dest, e));
            }
            return Ok(false);
        }
        Ok(moved)
    }

    /// Unpack the entry for `key` into `root` (an empty tree), checking the tarball against
    /// its fingerprint. A damaged entry is set aside and reported as [`Error::Corrupt`]; then
    /// (and on any error) `root` holds an unknown part of it: the caller empties it and
    /// rebuilds.
    pub fn restore(
        &self,
        key: &Key,
        root: &crate::tree::Root,
        max_bytes: u64,
    ) -> Result<SourceInfo> {
        let id = key.id();
        let dir = self.entry_dir(&id);
        let corrupt = |msg: String| corrupt(&dir, &id, msg);
        let entry = self.read_entry(&id)?;
        let tar_path = dir.join(TARBALL);
        let f = match File::open(&tar_path) {
            Ok(f) => f,
            Err(e) => return Err(corrupt(format!("{TARBALL}: {e}"))),
        };
        let len = f.metadata().map_err(|e| Error::io(&tar_path, e))?.len();
        // Hashed while it is unpacked (one read): on a mismatch the caller throws the
        // unpacked tree away, so nothing from a damaged entry survives.
        let mut hr = crate::pack::HashingReader::new(f);
        let opts = crate::tree::UnpackOptions {
            whiteouts: false,
            max_bytes,
            label: format!("cache entry {}", &id[..12]),
        };
        let unpacked = crate::source::decompressed(&mut hr)
            .map_err(|e| Error::io(&tar_path, e))
            .and_then(|r| {
                Ok(crate::tree::unpack_overlapped(
                    &mut crate::source::Interruptible(r),
                    root,
                    &opts,
                )?)
            });
        if crate::interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        // The tar's end comes before the file's: the rest counts too.
        let drained = std::io::copy(&mut hr, &mut std::io::sink());
        let sha = hr.hex();
        if drained.is_err() || len != entry.tar_bytes || sha != entry.tar_sha256 {
            return Err(corrupt(format!(
                "{TARBALL} is {len} bytes with sha256 {sha}, the fingerprint says {} bytes with {}",
                entry.tar_bytes, entry.tar_sha256
            )));
        }
        unpacked?;
        Ok(used(&dir, entry))
    }

    /// The fingerprint of entry `id`; an unreadable one, or one naming another key, is
    /// damage (the entry is removed).
    fn read_entry(&self, id: &str) -> Result<EntryFile> {
        let dir = self.entry_dir(id);
        let entry: EntryFile = match std::fs::read(dir.join(ENTRY))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => return Err(corrupt(&dir, id, format!("unreadable {ENTRY}: {e}"))),
        };
        if entry.id != id || entry.format != FORMAT {
            return Err(corrupt(&dir, id, format!("{ENTRY} names another key")));
        }
        Ok(entry)
    }

    /// Unpack the tarball just written at `tar` into `tree` (created here) and summarize
    /// the result: the same unpacker as [`Cache::restore`], so a tree read in place is the
    /// tree a restore writes.
    fn unpack_tree(&self, tar: &Path, tree: &Path, id: &str) -> Result<TreeSum> {
        std::fs::create_dir(tree).map_err(|e| Error::io(tree, e))?;
        let root = crate::tree::Root::open(tree)?;
        let f = File::open(tar).map_err(|e| Error::io(tar, e))?;
        let opts = crate::tree::UnpackOptions {
            whiteouts: false,
            max_bytes: 0,
            label: format!("cache entry {}", &id[..12]),
        };
        let r = crate::source::decompressed(f).map_err(|e| Error::io(tar, e))?;
        crate::tree::unpack(crate::source::Interruptible(r), &root, &opts)?;
        if crate::interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        drop(root);
        tree_sum(tree).map_err(|e| Error::io(tree, e))
    }

    /// Mount the entry for `key`'s unpacked tree read-only below an overlay on `target`
    /// (upper and work directories under `scratch`), after checking its metadata against
    /// the fingerprint: nothing is written, later stages write into the upper directory.
    /// A tree that does not match is damage ([`Error::Corrupt`], the entry is removed);
    /// anything that only keeps the tree from being mounted here is [`Mounted::No`].
    /// `BUILD_DISTRO_CACHE_UNPACK=1` always says no (tests compare both ways).
    pub fn mount(&self, key: &Key, target: &Path, scratch: &Path) -> Result<Mounted> {
        if std::env::var_os("BUILD_DISTRO_CACHE_UNPACK").is_some_and(|v| v == "1") {
            return Ok(Mounted::No("BUILD_DISTRO_CACHE_UNPACK=1".into()));
        }
        if !rustix::process::geteuid().is_root() {
            return Ok(Mounted::No("mounting needs root".into()));
        }
        let id = key.id();
        let dir = self.entry_dir(&id);
        let entry = self.read_entry(&id)?;
        let Some(want) = &entry.tree else {
            return Ok(Mounted::No("the entry has no unpacked tree".into()));
        };
        let tree = dir.join(TREE);
        match tree_sum(&tree) {
            Ok(found) if found == *want => {}
            Ok(found) => {
                return Err(corrupt(
                    &dir,
                    &id,
                    format!(
                        "{TREE}/ has {} entries and {} bytes with metadata sha256 {}, the fingerprint says {} entries and {} bytes with {}",
                        found.entries, found.bytes, found.meta_sha256, want.entries, want.bytes, want.meta_sha256
                    ),
                ))
            }
            Err(e) => return Err(corrupt(&dir, &id, format!("{TREE}/: {e}"))),
        }
        match crate::tree::overlay::mount(&[tree], target, scratch) {
            Ok(overlay) => Ok(Mounted::Yes(used(&dir, entry), overlay)),
            Err(why) => Ok(Mounted::No(why)),
        }
    }

    /// A second handle on this cache's lock: while it is open, no prune runs (a tree read
    /// in place must outlive the build's use of it).
    pub fn pin(&self) -> Result<File> {
        self._lock
            .try_clone()
            .map_err(|e| Error::io(&self.root.join("lock"), e))
    }

    /// Entries (newest use first) and the package directory.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        let entries = self.root.join("entries");
        for e in std::fs::read_dir(&entries).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let trash = name.starts_with(TRASH);
            let dir = e.path();
            let bytes = size_of(&dir);
            let age = |p: &Path| {
                p.metadata()
                    .and_then(|m| m.modified())
                    .map_or(0, secs_since)
            };
            let entry: Option<EntryFile> = std::fs::read(dir.join(ENTRY))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let key: Option<Key> = std::fs::read(dir.join(KEY))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push(Listed {
                kind: "entry".into(),
                id: name,
                summary: entry.as_ref().map_or_else(
                    || {
                        if trash {
                            "damaged, set aside (removed when no build uses the cache)".to_string()
                        } else {
                            "incomplete (no fingerprint)".to_string()
                        }
                    },
                    |e| format!("{} {}", e.source.kind, e.source.reference),
                ),
                bytes,
                age_secs: entry
                    .as_ref()
                    .map_or_else(|| age(&dir), |e| now_secs().saturating_sub(e.created)),
                unused_secs: age(&dir.join(ENTRY)),
                releases: key
                    .map(|k| {
                        k.releases
                            .iter()
                            .map(|r| format!("{} {}", r.url, &r.sha256[..12.min(r.sha256.len())]))
                            .collect()
                    })
                    .unwrap_or_default(),
                complete: entry.is_some(),
            });
        }
        out.sort_by_key(|l| l.unused_secs);
        out.push(files_listed("debs", &self.debs_dir(), "packages"));
        out.push(files_listed(
            "blocks",
            &self.root.join(BLOCKS),
            "compressed pieces of archives",
        ));
        out
    }

    /// Remove the least recently used entries and packages until the cache holds at most
    /// `max_bytes`; half-written leftovers go first. Needs [`Cache::open_exclusive`].
    pub fn prune(&self, max_bytes: u64) -> Result<Pruned> {
        // (last use, path, bytes, name)
        let mut items: Vec<(SystemTime, PathBuf, u64, String)> = Vec::new();
        let mut pruned = Pruned::default();
        // No build runs (we hold the exclusive lock): what is half-written or set aside
        // is nobody's.
        let (swept, swept_bytes) = self.sweep()?;
        pruned.removed.extend(swept);
        pruned.freed_bytes += swept_bytes;
        let entries = self.root.join("entries");
        for e in std::fs::read_dir(&entries)
            .map_err(|er| Error::io(&entries, er))?
            .flatten()
        {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let fp = p.join(ENTRY);
            match fp.metadata().and_then(|m| m.modified()) {
                Ok(t) => items.push((t, p.clone(), size_of(&p), format!("entry {name}"))),
                // No build runs (we hold the exclusive lock): nothing is being written.
                Err(_) => {
                    pruned.freed_bytes += size_of(&p);
                    crate::tree::remove_tree(&p)?;
                    pruned.removed.push(format!("incomplete {name}"));
                }
            }
        }
        for (p, bytes, used) in flat_files(&self.debs_dir()) {
            let name = format!(
                "deb {}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            items.push((used, p, bytes, name));
        }
        for (p, bytes, used) in flat_files(&self.root.join(BLOCKS)) {
            items.push((used, p, bytes, String::new()));
        }
        items.sort_by_key(|i| i.0);
        let mut total: u64 = items.iter().map(|i| i.2).sum();
        // Pieces are many and nameless: reported as one count.
        let mut blocks = 0;
        for (_, p, bytes, name) in items {
            if total <= max_bytes {
                break;
            }
            if p.is_dir() {
                crate::tree::remove_tree(&p)?;
            } else {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            total -= bytes;
            pruned.freed_bytes += bytes;
            if name.is_empty() {
                blocks += 1;
            } else {
                pruned.removed.push(name);
            }
        }
        if blocks > 0 {
            pruned.removed.push(format!("{blocks} compressed pieces"));
        }
        pruned.kept_bytes = total;
        Ok(pruned)
    }

    /// A per-build copy of the package directory for the bootstrap to read, at
    /// `scratch/debs-in`: hard links when `link` (only for a reader that never writes into
    /// it, mmdebstrap's `sync-in`) and the filesystem allows, copies otherwise (debootstrap
    /// re-downloads a damaged file in place). See [`Cache::harvest`].
    pub fn debs_for_build(&self, scratch: &Path, link: bool) -> Result<PathBuf> {
        let dir = scratch.join("debs-in");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let shared = self.debs_dir();
        for e in std::fs::read_dir(&shared)
            .map_err(|er| Error::io(&shared, er))?
            .flatten()
        {
            let name = e.file_name();
            if !name.to_string_lossy().ends_with(".deb") {
                continue;
            }
            let to = dir.join(&name);
            if !link || std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).map_err(|er| Error::io(&to, er))?;
            }
        }
        Ok(dir)
    }

    /// Add the packages a bootstrap left in `dir` to the shared directory: each copied to a
    /// temporary name and renamed, so no build ever reads half a package.
    pub fn harvest(&self, dir: &Path) -> Result<usize> {
        let shared = self.debs_dir();
        let mut added = 0;
        for e in std::fs::read_dir(dir)
            .map_err(|er| Error::io(dir, er))?
            .flatten()
        {
            let name = e.file_name();
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() || !name.to_string_lossy().ends_with(".deb") {
                continue;
            }
            let dest = shared.join(&name);
            if dest.metadata().is_ok_and(|d| d.len() == m.len()) {
                continue;
            }
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&shared)
                .map_err(|er| Error::io(&shared, er))?;
            let mut src = File::open(e.path()).map_err(|er| Error::io(&e.path(), er))?;
            std::io::copy(&mut src, tmp.as_file_mut()).map_err(|er| Error::io(&dest, er))?;
            tmp.persist(&dest)
                .map_err(|er| Error::io(&dest, er.error))?;
            added += 1;
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests;
