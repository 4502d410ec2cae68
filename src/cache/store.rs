//! Storing an entry (a copy, or the cold build's tree moved in) and serving one: restored
//! by unpacking its tarball, or its tree checked and mounted below an overlay.

use std::fs::File;
use std::path::{Path, PathBuf};

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
        let tmp = self.begin_entry(key)?;
        let dir = &tmp.path().to_path_buf();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| Error::io(&p, e)
        };
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
            base: None,
        };
        Ok(self.commit(tmp, &entry, &put_back)? && moved)
    }

    /// Store `tree` as the entry for `key` as it lies: moved in, never copied, and with
    /// no tarball, so it serves only mounted ([`Cache::mount`]); a build that cannot
    /// mount makes it again. With `base`, `tree` is the upper directory of an overlay
    /// over that entry's tree, unmounted and without its work directory
    /// ([`crate::tree::overlay::take_upper`]), and is mounted above it. Root only (the
    /// whiteouts are device nodes). Whether ours or a concurrent build's entry landed,
    /// `Ok` means the entry is there; on an error `tree` is back in its place.
    pub fn store_in_place(
        &self,
        key: &Key,
        tree: &Path,
        base: Option<&Key>,
        info: &SourceInfo,
    ) -> Result<()> {
        let id = key.id();
        let tmp = self.begin_entry(key)?;
        let dir = tmp.path().to_path_buf();
        let moved = dir.join(if base.is_some() { LAYER } else { TREE });
        std::fs::rename(tree, &moved).map_err(|e| Error::io(tree, e))?;
        let put_back = || {
            let _ = std::fs::rename(&moved, tree);
        };
        // Summed after the move: the rename sets the directory's ctime.
        let sum = tree_sum(&moved).map_err(|e| {
            put_back();
            Error::io(&moved, e)
        })?;
        let entry = EntryFile {
            format: FORMAT,
            id,
            tar_bytes: 0,
            tar_sha256: String::new(),
            tree_bytes: sum.bytes,
            created: now_secs(),
            source: info.clone(),
            source_created: info.created,
            tree: Some(sum),
            base: base.map(Key::id),
        };
        self.commit(tmp, &entry, &put_back).map(|_| ())
    }

    /// A temporary entry for `key` (removed when dropped) holding its `key.json`.
    fn begin_entry(&self, key: &Key) -> Result<tempfile::TempDir> {
        let entries = self.root.join("entries");
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&entries)
            .map_err(|e| Error::io(&entries, e))?;
        let path = tmp.path().join(KEY);
        let mut key_json = serde_json::to_vec_pretty(key).expect("serializable");
        key_json.push(b'\n');
        std::fs::write(&path, &key_json).map_err(|e| Error::io(&path, e))?;
        Ok(tmp)
    }

    /// Write `entry`'s fingerprint into the temporary entry `tmp` and rename it into
    /// place. `Ok(false)`: a concurrent build stored the same key first, and its entry
    /// serves (ours is dropped). On `Ok(false)` and on an error `put_back` has run.
    fn commit(
        &self,
        tmp: tempfile::TempDir,
        entry: &EntryFile,
        put_back: &dyn Fn(),
    ) -> Result<bool> {
        let mut json = serde_json::to_vec_pretty(entry).expect("serializable");
        json.push(b'\n');
        let ep = tmp.path().join(ENTRY);
        let written = File::create(&ep).and_then(|mut f| {
            f.write_all(&json)?;
            f.sync_all()
        });
        if let Err(e) = written {
            put_back();
            return Err(Error::io(&ep, e));
        }
        let dest = self.entry_dir(&entry.id);
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
        Ok(true)
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
        if entry.base.is_some() || entry.tar_sha256.is_empty() {
            return Err(Error::MountOnly {
                id: id[..12].to_string(),
            });
        }
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
        if let Err(why) = self.mountable() {
            return Ok(Mounted::No(why));
        }
        let id = key.id();
        let entry = self.read_entry(&id)?;
        let Some(mut lowers) = self.checked_tree(&id, &entry)? else {
            return Ok(Mounted::No("the entry has no unpacked tree".into()));
        };
        if let Some(base) = &entry.base {
            lowers.extend(self.base_tree(&id, base)?);
        }
        self.mount_lowers(&lowers, target, scratch, entry)
    }

    /// Mount `layer` (an overlay upper directory that could not be stored) above the
    /// tree of entry `base`, as [`Cache::mount`] mounts a layer entry; `None` when the
    /// base has no unpacked tree or the kernel refuses.
    pub fn mount_over(
        &self,
        base: &Key,
        layer: &Path,
        target: &Path,
        scratch: &Path,
    ) -> Result<Option<crate::tree::overlay::Overlay>> {
        let id = base.id();
        let entry = self.read_entry(&id)?;
        let Some(mut lowers) = self.checked_tree(&id, &entry)? else {
            return Ok(None);
        };
        lowers.insert(0, layer.to_path_buf());
        match self.mount_lowers(&lowers, target, scratch, entry)? {
            Mounted::Yes(_, overlay) => Ok(Some(overlay)),
            Mounted::No(_) => Ok(None),
        }
    }

    fn mount_lowers(
        &self,
        lowers: &[PathBuf],
        target: &Path,
        scratch: &Path,
        entry: EntryFile,
    ) -> Result<Mounted> {
        match crate::tree::overlay::mount(lowers, target, scratch) {
            Ok(overlay) => Ok(Mounted::Yes(
                used(&self.entry_dir(&entry.id), entry),
                overlay,
            )),
            Err(why) => Ok(Mounted::No(why)),
        }
    }

    /// The tree of entry `id` (`layer/` for a layer entry), checked against `entry`'s
    /// fingerprint; `None` when it has none. A tree that does not match is damage
    /// ([`Error::Corrupt`], the entry is set aside).
    fn checked_tree(&self, id: &str, entry: &EntryFile) -> Result<Option<Vec<PathBuf>>> {
        let Some(want) = &entry.tree else {
            return Ok(None);
        };
        let dir = self.entry_dir(id);
        let name = if entry.base.is_some() { LAYER } else { TREE };
        let tree = dir.join(name);
        match tree_sum(&tree) {
            Ok(found) if found == *want => Ok(Some(vec![tree])),
            Ok(found) => Err(corrupt(
                &dir,
                id,
                format!(
                    "{name}/ has {} entries and {} bytes with metadata sha256 {}, the fingerprint says {} entries and {} bytes with {}",
                    found.entries, found.bytes, found.meta_sha256, want.entries, want.bytes, want.meta_sha256
                ),
            )),
            Err(e) => Err(corrupt(&dir, id, format!("{name}/: {e}"))),
        }
    }

    /// The checked tree of layer `id`'s base entry `base`, marked used (prune goes by last
    /// use, and the layer needs it). A base that is gone or damaged leaves the layer
    /// useless: it is set aside too.
    fn base_tree(&self, id: &str, base: &str) -> Result<Vec<PathBuf>> {
        let gone = |e: Error| corrupt(&self.entry_dir(id), id, format!("its base entry: {e}"));
        let unusable = |msg: &str| {
            gone(Error::Corrupt {
                id: base[..12.min(base.len())].to_string(),
                msg: msg.into(),
            })
        };
        if !self.entry_dir(base).join(ENTRY).is_file() {
            return Err(unusable("no longer in the cache"));
        }
        let entry = self.read_entry(base).map_err(gone)?;
        let tree = self
            .checked_tree(base, &entry)
            .map_err(gone)?
            .ok_or_else(|| unusable("has no unpacked tree"))?;
        used(&self.entry_dir(base), entry);
        Ok(tree)
    }

    /// Whether this process may read entries in place (then [`Cache::mount`] fails only
    /// when the kernel refuses): root, and not `BUILD_DISTRO_CACHE_UNPACK=1`.
    pub fn can_mount(&self) -> bool {
        self.mountable().is_ok()
    }

    fn mountable(&self) -> std::result::Result<(), String> {
        if std::env::var_os("BUILD_DISTRO_CACHE_UNPACK").is_some_and(|v| v == "1") {
            return Err("BUILD_DISTRO_CACHE_UNPACK=1".into());
        }
        if !rustix::process::geteuid().is_root() {
            return Err("mounting needs root".into());
        }
        Ok(())
    }

    /// A second handle on this cache's lock: while it is open, no prune runs (a tree read
    /// in place must outlive the build's use of it).
    pub fn pin(&self) -> Result<File> {
        self._lock
            .try_clone()
            .map_err(|e| Error::io(&self.root.join("lock"), e))
    }
}
