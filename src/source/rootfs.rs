//! `rootfs` backend: an existing directory (copied, never changed) or a tar / tar.gz.
//! When nothing but finish will write into the tree and we are root, the directory is
//! not copied at all: an overlay mount puts finish's few changes in the build directory
//! (`tree::overlay`), so packing reads the source in place.

use std::path::Path;

use super::{Error, InPlace, SourceCtx, SourceInfo};
use crate::recipe::RootfsSource;
use crate::runner::Cmd;
use crate::tree::{decompressed, HashingReader};
use crate::tree::{unpack, Root, UnpackOptions};

pub fn run<'a>(
    r: &RootfsSource,
    target: &Path,
    ctx: &SourceCtx<'a>,
) -> Result<(SourceInfo, Option<InPlace<'a>>), Error> {
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
        let info = SourceInfo {
            kind: "rootfs".into(),
            reference: dir.display().to_string(),
            digest: None,
            created: None,
            ..Default::default()
        };
        if let Some(mounted) = overlay(dir, target, ctx) {
            return Ok((info, Some(mounted)));
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
        return Ok((info, None));
    }
    let tar = r.tar.as_ref().expect("validated: dir or tar");
    let file = std::fs::File::open(tar).map_err(|e| input(tar, format!("cannot open: {e}")))?;
    // Hashed as it is read, so the provenance gets the archive's sha256 without a second pass.
    let mut hashing = HashingReader::new(file);
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
    let info = SourceInfo {
        kind: "rootfs".into(),
        reference: tar.display().to_string(),
        digest: Some(format!("sha256:{}", hashing.hex())),
        created: None,
        ..Default::default()
    };
    Ok((info, None))
}

/// `dir` as the lower layer of an overlay on `target` (see [`crate::tree::overlay`])
/// instead of a copy, when `ctx.in_place` allows and the overlay can be mounted here.
/// `BUILD_DISTRO_COPY_ROOTFS=1` always copies (tests compare both ways).
fn overlay<'a>(dir: &Path, target: &Path, ctx: &SourceCtx<'a>) -> Option<InPlace<'a>> {
    let scratch = ctx.in_place?;
    if std::env::var_os("BUILD_DISTRO_COPY_ROOTFS").is_some_and(|v| v == "1") {
        return None;
    }
    let lower = dir.canonicalize().ok()?;
    match crate::tree::overlay::mount(&[lower], target, scratch) {
        Ok(overlay) => {
            ctx.reporter.debug(&format!(
                "rootfs: {} mounted read-only below an overlay, not copied",
                dir.display()
            ));
            Some(InPlace::new(overlay, None))
        }
        Err(why) => {
            ctx.reporter
                .debug(&format!("rootfs: {why}; copying {}", dir.display()));
            None
        }
    }
}
