//! `rootfs` backend: an existing directory (copied, never changed) or a tar / tar.gz.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{decompressed, Error, SourceCtx, SourceInfo};
use crate::recipe::RootfsSource;
use crate::runner::Cmd;
use crate::tree::{unpack, Root, UnpackOptions};

/// Reads through a file while hashing it, so the provenance gets the archive's sha256
/// without a second pass.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub fn run(r: &RootfsSource, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    let input = |p: &Path, msg: String| Error::Input {
        path: p.display().to_string(),
        msg,
    };
    if let Some(dir) = &r.dir {
        if !dir.is_dir() {
            return Err(input(
                dir,
                "not a directory; fix [source] dir in the recipe".into(),
            ));
        }
        // cp -a keeps hardlinks, modes, times, xattrs and special files exactly.
        let mut src = dir.as_os_str().to_os_string();
        src.push("/.");
        ctx.runner.run(
            &Cmd::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(src)
                .arg(target),
        )?;
        return Ok(SourceInfo {
            kind: "rootfs".into(),
            reference: dir.display().to_string(),
            digest: None,
        });
    }
    let tar = r.tar.as_ref().expect("validated: dir or tar");
    let file = std::fs::File::open(tar).map_err(|e| input(tar, format!("cannot open: {e}")))?;
    let mut hashing = HashingReader {
        inner: file,
        hasher: Sha256::new(),
    };
    let root = Root::open(target)?;
    let reader = decompressed(&mut hashing).map_err(|e| input(tar, format!("cannot read: {e}")))?;
    let opts = UnpackOptions {
        label: tar.display().to_string(),
        max_bytes: ctx.max_unpack_bytes,
        ..Default::default()
    };
    let stats = unpack(reader, &root, &opts)?;
    // Drain what the tar reader left (end-of-archive padding) so the hash covers the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| input(tar, e.to_string()))?;
    if stats.skipped_special > 0 {
        ctx.reporter.info(&format!(
            "rootfs: dropped {} device nodes / FIFOs",
            stats.skipped_special
        ));
    }
    Ok(SourceInfo {
        kind: "rootfs".into(),
        reference: tar.display().to_string(),
        digest: Some(format!("sha256:{}", hex::encode(hashing.hasher.finalize()))),
    })
}
