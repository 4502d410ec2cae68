//! `blocks/`: the compressed pieces of `.tar.gz` outputs ([`crate::pack::BlockStore`]),
//! so a warm rebuild hashes its archive instead of compressing it again.
//!
//! Each file `blocks/KEY` holds a piece's raw deflate followed by the SHA-256 of those
//! bytes; it is written under a temporary name and renamed, and read back only when the
//! hash matches. A damaged file is removed and counted, and the piece is compressed
//! again. A failed write (a full disk) is remembered for one warning; the build goes on.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The directory under the cache root.
pub(super) const BLOCKS: &str = "blocks";

/// The block store of one build; see the module docs.
pub struct Blocks {
    dir: PathBuf,
    damaged: AtomicUsize,
    reused: AtomicUsize,
    write_error: Mutex<Option<String>>,
}

impl Blocks {
    pub(super) fn new(dir: PathBuf) -> Blocks {
        Blocks {
            dir,
            damaged: AtomicUsize::new(0),
            reused: AtomicUsize::new(0),
            write_error: Mutex::new(None),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Pieces read from the store so far.
    pub fn reused(&self) -> usize {
        self.reused.load(Ordering::Relaxed)
    }

    /// What went wrong, for one warning after packing: damaged pieces found (removed
    /// and compressed again) and the first failed write.
    pub fn trouble(&self) -> Vec<String> {
        let mut out = Vec::new();
        let damaged = self.damaged.load(Ordering::Relaxed);
        if damaged > 0 {
            out.push(format!(
                "build cache {}: {damaged} damaged compressed pieces were removed and compressed again",
                self.dir.display()
            ));
        }
        if let Some(e) = self.write_error.lock().ok().and_then(|e| e.clone()) {
            out.push(format!(
                "build cache {}: could not store compressed pieces ({e}); the next build compresses them again",
                self.dir.display()
            ));
        }
        out
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        // Pruning goes by last use.
        let _ = f.set_modified(SystemTime::now());
        Ok(bytes)
    }

    fn write(&self, key: &str, deflated: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(deflated)?;
        tmp.write_all(&Sha256::digest(deflated))?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

impl crate::pack::BlockStore for Blocks {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let mut bytes = self.read(&path).ok()?;
        let body = bytes.len().checked_sub(32);
        match body {
            Some(n) if Sha256::digest(&bytes[..n]).as_slice() == &bytes[n..] => {
                bytes.truncate(n);
                self.reused.fetch_add(1, Ordering::Relaxed);
                Some(bytes)
            }
            _ => {
                self.damaged.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn put(&self, key: &str, deflated: &[u8]) {
        if let Err(e) = self.write(key, deflated) {
            if let Ok(mut first) = self.write_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlockStore;

    #[test]
    fn stored_pieces_come_back_and_damaged_ones_are_misses() {
        let d = tempfile::tempdir().unwrap();
        let b = Blocks::new(d.path().to_path_buf());
        assert_eq!(b.get("k1"), None);
        b.put("k1", b"deflated bytes");
        assert_eq!(b.get("k1").as_deref(), Some(&b"deflated bytes"[..]));
        assert_eq!(b.reused(), 1);
        assert!(b.trouble().is_empty());
        // A flipped byte: a miss, the file removed, one warning.
        let p = d.path().join("k1");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(b.get("k1"), None);
        assert!(!p.exists());
        // A truncated file too.
        b.put("k2", b"more");
        std::fs::write(d.path().join("k2"), b"mo").unwrap();
        assert_eq!(b.get("k2"), None);
        let t = b.trouble();
        assert_eq!(t.len(), 1);
        assert!(t[0].contains("2 damaged compressed pieces"), "{t:?}");
        // A store that cannot be written: no panic, one warning naming the cause.
        let gone = Blocks::new(d.path().join("missing"));
        gone.put("k3", b"x");
        assert!(
            gone.trouble()[0].contains("could not store"),
            "{:?}",
            gone.trouble()
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
