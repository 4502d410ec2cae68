//! A tree read in place: an overlay mount whose lower layers are directories we never
//! write (a rootfs directory, the layers of a Docker image) and whose upper layer, in the
//! build directory, takes whatever later stages change. Nothing is copied, so packing
//! reads the source where it lies.

use std::path::{Path, PathBuf};

/// The mount on the build tree; unmounted when dropped (before the build directory is
/// removed, which never crosses a mount point).
#[derive(Debug)]
pub struct Overlay {
    target: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(
            &self.target,
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
        );
    }
}

/// The kernel's limit on the option string of `mount(2)` (one page).
const MAX_OPTIONS: usize = 4000;

/// Mount `lowers` (topmost first) below an overlay on `target`, with the upper and work
/// directories created under `scratch`. `Err` says why not (not root, a path that needs
/// escaping in mount options, the kernel refused), and the caller copies instead.
///
/// The layers go into one `mount(2)` option string when they fit in it; an image of many
/// layers is mounted through the new mount API instead, one `lowerdir+` at a time (Linux
/// 6.8 and later), as the string is limited to a page.
///
/// `index=on` keeps hard links whole when a later stage changes one of their names (a
/// chmod copies the inode up once, for every name), so the tree is the one a copy gives.
/// `redirect_dir=off` and `metacopy=off`, whatever the kernel's defaults: the upper
/// directory then holds whole files, whiteouts and opaque directories only, so it can be
/// kept as a layer of its own (the build cache does) and read by any kernel.
pub fn mount(lowers: &[PathBuf], target: &Path, scratch: &Path) -> Result<Overlay, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("mounting needs root".into());
    }
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let plain = |p: &Path| {
        let s = p.to_string_lossy();
        !s.is_empty() && !s.contains([',', ':', '\\', '=']) && !s.chars().any(char::is_whitespace)
    };
    if lowers.is_empty() {
        return Err("no layer to mount".into());
    }
    if let Some(p) = lowers.iter().chain([&upper, &work]).find(|p| !plain(p)) {
        return Err(format!(
            "{} would need escaping in the mount options",
            p.display()
        ));
    }
    let lowerdir = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},index=on,redirect_dir=off,metacopy=off",
        upper.display(),
        work.display()
    );
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    if data.len() <= MAX_OPTIONS {
        let data =
            std::ffi::CString::new(data).map_err(|_| "a layer path has a NUL byte".to_string())?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        )
        .map_err(|e| format!("the kernel refused the overlay mount: {e}"))?;
    } else {
        mount_layer_by_layer(lowers, &upper, &work, target).map_err(|e| {
            format!(
                "{} layers do not fit in one mount option string, and the kernel refused them one by one (lowerdir+ needs Linux 6.8): {e}",
                lowers.len()
            )
        })?;
    }
    Ok(Overlay {
        target: target.to_path_buf(),
    })
}

/// While the overlay on `target` is mounted, with `upper` its upper directory: give
/// every file copied up from a hard-linked lower file all of its names in `upper`. With
/// `index=on` the mount shows the copy under every name, but `upper` holds only the
/// names that were written; mounted later as a plain lower layer it would show the
/// other names' old lower copy. Chowning a name to its own owner copies it up, linked
/// (through the index) to the same copy, and changes nothing else an archive keeps.
pub fn link_copied_up(target: &Path, upper: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let files = |dir: &Path| {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .same_file_system(true)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| Some((e.metadata().ok()?, e.into_path())))
            .filter(|(m, _)| m.nlink() > 1)
    };
    // The overlay's inode numbers of the copies with more than one link (the index's
    // counts as one).
    let copied: std::collections::HashSet<u64> = files(upper)
        .filter_map(|(_, p)| {
            let rel = p.strip_prefix(upper).ok()?;
            Some(std::fs::symlink_metadata(target.join(rel)).ok()?.ino())
        })
        .collect();
    if copied.is_empty() {
        return Ok(());
    }
    for (m, p) in files(target).filter(|(m, _)| copied.contains(&m.ino())) {
        let Ok(rel) = p.strip_prefix(target) else {
            continue;
        };
        if std::fs::symlink_metadata(upper.join(rel)).is_err() {
            std::os::unix::fs::lchown(&p, Some(m.uid()), Some(m.gid()))?;
        }
    }
    Ok(())
}

/// The upper directory of an overlay that [`mount`] made with `scratch` and that is
/// unmounted now, made ready to be kept on its own (as a lower layer of later mounts):
/// the work directory goes first. It holds hard links to the upper directory's
/// whiteouts and to files copied up from hard-linked ones (`index=on`), so removing it
/// later would change their link counts and ctimes under whoever fingerprinted them.
pub fn take_upper(scratch: &Path) -> Result<PathBuf, super::Error> {
    super::remove_tree(&scratch.join("work"))?;
    Ok(scratch.join("upper"))
}

/// The same overlay through `fsopen`/`fsconfig`/`fsmount`/`move_mount`, which take each
/// lower layer as its own parameter.
fn mount_layer_by_layer(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> rustix::io::Result<()> {
    use rustix::mount::*;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l)?;
    }
    fsconfig_set_string(&fs, "upperdir", upper)?;
    fsconfig_set_string(&fs, "workdir", work)?;
    fsconfig_set_string(&fs, "index", "on")?;
    fsconfig_set_string(&fs, "redirect_dir", "off")?;
    fsconfig_set_string(&fs, "metacopy", "off")?;
    fsconfig_create(&fs)?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}
