//! `rootfs` backend: an existing directory (copied, never changed) or a tar / tar.gz.
//! When nothing but finish will write into the tree and we are root, the directory is
//! not copied at all: an overlay mount puts finish's few changes in the build directory
//! ([`overlay`]), so packing reads the source in place.

use std::path::Path;

use super::{decompressed, Error, SourceCtx, SourceInfo};
use crate::pack::HashingReader;
use crate::recipe::RootfsSource;
use crate::runner::Cmd;
use crate::tree::{unpack, Root, UnpackOptions};

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
    Ok(SourceInfo {
        kind: "rootfs".into(),
        reference: tar.display().to_string(),
        digest: Some(format!("sha256:{}", hashing.hex())),
    })
}

/// A read-only-below overlay mount on the build tree; unmounted when dropped (before the
/// build directory is removed, which never crosses a mount point).
pub struct Overlay {
    target: std::path::PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.target,
            nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
        );
    }
}

/// Mount `dir` as the lower layer of an overlay on `target`, with the upper and work
/// directories under `scratch`, instead of copying it. `None` (copy instead) unless we
/// are root, the kernel mounts it, and the path needs no escaping in mount options.
/// `index=on` keeps hard links whole when finish changes one of their names (a chmod
/// copies the inode up once, for every name), so the packed tree is the one a copy gives.
/// `BUILD_DISTRO_COPY_ROOTFS=1` always copies (tests compare both ways).
pub fn overlay(
    r: &RootfsSource,
    target: &Path,
    scratch: &Path,
    ctx: &SourceCtx,
) -> Result<Option<(SourceInfo, Overlay)>, Error> {
    let Some(dir) = &r.dir else { return Ok(None) };
    if !rustix::process::geteuid().is_root()
        || std::env::var_os("BUILD_DISTRO_COPY_ROOTFS").is_some_and(|v| v == "1")
        || !dir.is_dir()
    {
        return Ok(None);
    }
    let Ok(lower) = dir.canonicalize() else {
        return Ok(None);
    };
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let plain = |p: &Path| {
        let s = p.to_string_lossy();
        !s.is_empty() && !s.contains([',', ':', '\\', '=']) && !s.chars().any(char::is_whitespace)
    };
    if !plain(&lower) || !plain(&upper) || !plain(&work) {
        return Ok(None);
    }
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| Error::Input {
            path: d.display().to_string(),
            msg: format!("cannot create: {e}"),
        })?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=on",
        lower.display(),
        upper.display(),
        work.display()
    );
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(data.as_str()),
    ) {
        ctx.reporter.debug(&format!(
            "rootfs: no overlay mount ({e}), copying {}",
            dir.display()
        ));
        return Ok(None);
    }
    ctx.reporter.debug(&format!(
        "rootfs: {} mounted read-only below an overlay, not copied",
        dir.display()
    ));
    Ok(Some((
        SourceInfo {
            kind: "rootfs".into(),
            reference: dir.display().to_string(),
            digest: None,
        },
        Overlay {
            target: target.to_path_buf(),
        },
    )))
}
