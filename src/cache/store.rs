//! Storing an entry (a copy, or the cold build's tree moved in) and serving one: restored
//! by unpacking its tarball, or its tree checked and mounted below an overlay.

use std::fs::File;
use std::path::Path;

use crate::source::SourceInfo;

use super::*;

impl Cache {
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

    pub(super) fn store_as(
        &self,
        key: &Key,
        tree: &Path,
        info: &SourceInfo,
        moving: bool,
    ) -> Result<bool> {
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
        let mut hr = crate::tree::HashingReader::new(f);
        let opts = crate::tree::UnpackOptions {
            whiteouts: false,
            max_bytes,
            label: format!("cache entry {}", &id[..12]),
        };
        let unpacked = crate::tree::decompressed(&mut hr)
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
    pub(super) fn read_entry(&self, id: &str) -> Result<EntryFile> {
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
    pub(super) fn unpack_tree(&self, tar: &Path, tree: &Path, id: &str) -> Result<TreeSum> {
        std::fs::create_dir(tree).map_err(|e| Error::io(tree, e))?;
        let root = crate::tree::Root::open(tree)?;
        let f = File::open(tar).map_err(|e| Error::io(tar, e))?;
        let opts = crate::tree::UnpackOptions {
            whiteouts: false,
            max_bytes: 0,
            label: format!("cache entry {}", &id[..12]),
        };
        let r = crate::tree::decompressed(f).map_err(|e| Error::io(tar, e))?;
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
}
