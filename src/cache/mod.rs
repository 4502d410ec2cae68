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
//! entries/KEY/layer/           for a bootstrap's second step, instead of the two above:
//!                              an overlay upper directory over its base entry's tree
//!                              (a base stored by such a build has `tree/` alone)
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

use crate::source::SourceInfo;

mod blocks;
mod debs;
mod entry;
mod key;
mod prune;
mod store;

pub use blocks::Blocks;
use blocks::BLOCKS;
use entry::*;
pub use key::Key;
use prune::*;
pub use prune::{Listed, Pruned};

/// Bumped when the entry format or what goes into a key changes (3: the epoch and the
/// bootstrap program's version; 4: bootstraps in two steps, the second a layer; 5: the
/// first step keeps no apt lists, the second reads the later suites first).
pub(super) const FORMAT: u32 = 5;
const ENTRY: &str = "entry.json";
const KEY: &str = "key.json";
const TARBALL: &str = "source.tar.zst";
/// The unpacked tree beside the tarball: the lower layer of a warm build's overlay.
const TREE: &str = "tree";
/// A layer entry's directory: an overlay's upper directory (whiteouts and all) over its
/// base entry's tree, mounted above it ([`Cache::store_in_place`]).
const LAYER: &str = "layer";
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
    /// An entry stored without a tarball ([`Cache::store_in_place`]) serves only
    /// mounted: a build that cannot mount makes its tree again.
    #[error("build cache entry {id} has no tarball: it serves only mounted")]
    MountOnly { id: String },
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

/// What [`Cache::mount`] found.
pub enum Mounted {
    /// The entry's tree, mounted read-only below an overlay on the target.
    Yes(SourceInfo, crate::tree::overlay::Overlay),
    /// Not mounted, and why (not root, no unpacked tree, the kernel refused): restore it.
    No(String),
}

/// A cache opened for a build (shared lock) or for pruning (exclusive lock); the lock is
/// released when this is dropped.
pub struct Cache {
    root: PathBuf,
    _lock: File,
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
}

#[cfg(test)]
mod tests;
