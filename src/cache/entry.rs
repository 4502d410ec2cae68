//! An entry's fingerprint (`entry.json`, written last), the metadata summary of its unpacked
//! tree, and what happens to a damaged one (set aside, never removed under a build).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::source::SourceInfo;

use super::{Error, ENTRY};

/// The fingerprint, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EntryFile {
    pub(super) format: u32,
    pub(super) id: String,
    pub(super) tar_bytes: u64,
    pub(super) tar_sha256: String,
    /// Bytes of file content in the tree.
    pub(super) tree_bytes: u64,
    /// Seconds since the epoch.
    pub(super) created: u64,
    pub(super) source: SourceInfo,
    /// The source's `created` (skipped in [`SourceInfo`]'s JSON).
    #[serde(default)]
    pub(super) source_created: Option<u64>,
    /// What `tree/` held when it was stored; absent when the entry has no unpacked tree
    /// (stored without root, or by an older version): then only the tarball serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tree: Option<TreeSum>,
    /// A layer entry's base entry id: then `tree` sums `layer/`, and there is no tarball.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) base: Option<String>,
}

/// A summary of an unpacked tree's metadata, compared before the tree is mounted: every
/// entry's path, type, mode, owner, size, mtime and link target, hashed in walk order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct TreeSum {
    pub(super) entries: u64,
    pub(super) bytes: u64,
    pub(super) meta_sha256: String,
}

/// Walk `dir` (sorted, links not followed) and summarize it. Reads metadata only: as
/// cheap as listing the tree, a fraction of reading it.
pub(super) fn tree_sum(dir: &Path) -> std::io::Result<TreeSum> {
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

/// Damaged entries are moved aside under this prefix in `entries/`, not removed: another
/// build may have the tree mounted or the tarball open. They go when no build uses the
/// cache ([`Cache::sweep`]).
pub(super) const TRASH: &str = ".trash-";

/// Move the damaged entry at `dir` aside (see [`TRASH`]) and say why. Removed at once
/// only when it cannot be moved.
pub(super) fn corrupt(dir: &Path, id: &str, msg: String) -> Error {
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
pub(super) fn used(dir: &Path, entry: EntryFile) -> SourceInfo {
    if let Ok(f) = File::options().append(true).open(dir.join(ENTRY)) {
        let _ = f.set_modified(SystemTime::now());
    }
    let mut info = entry.source;
    info.created = entry.source_created;
    info
}

/// A writer that hashes what it writes.
pub(super) struct HashingWriter<W> {
    pub(super) inner: W,
    pub(super) hasher: sha2::Sha256,
    pub(super) bytes: u64,
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
