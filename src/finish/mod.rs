//! Finish stage: adapt any root filesystem to what the uwsgi.it platform requires
//! (`shared/platform.md`): the mount-point skeleton, uWSGI where the Emperor looks for
//! it, the vassal shortcuts, the NSS answer for container uids, the `/etc` symlinks into
//! `/run/resolvconf`, no device nodes, no Docker leftovers. Every step writes only what
//! differs, so finishing a finished tree changes nothing (not even an mtime).

pub mod nss;
pub mod reproducible;
mod uwsgi;

use std::path::Path;

use rustix::fs::FileType;
use serde::Serialize;

use crate::progress::Reporter;
use crate::recipe::Loaded;
use crate::tree::Root;

pub use uwsgi::{SHORTCUTS_INI, SHORTCUTS_OPTIONS};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{root}: no uWSGI binary found (looked for {looked}); install uwsgi-core (Debian) or uwsgi (Alpine), or set [uwsgi] binary")]
    NoUwsgi { root: String, looked: String },
    #[error("[uwsgi] {key} = {path}: {msg}")]
    Uwsgi {
        key: String,
        path: String,
        msg: String,
    },
    #[error("nss: {0}")]
    Nss(String),
    /// The recipe's `[nss]` cannot work for this tree.
    #[error("[nss] {0}")]
    NssRecipe(String),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoUwsgi { .. } | Error::Uwsgi { .. } | Error::NssRecipe(_) => 2,
            Error::Nss(_) => 1,
            Error::Tree(e) => e.exit_code(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Every directory the platform mounts onto (platform.md, "How a container boots").
pub const MOUNT_POINTS: &[&str] = &[
    "/proc",
    "/dev",
    "/containers",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/spool",
    "/usr/local",
    "/etc",
    "/.old_root",
];

/// Directories a root filesystem has although the platform mounts nothing there. Docker's
/// export always carries `/sys` (a placeholder of the engine's init layer) while an
/// image's own layers may lack it: creating it makes a distro the same whether its image
/// was exported through the engine or flattened from an archive.
pub const STANDARD_DIRS: &[&str] = &["/sys"];

/// `/etc` entries the platform provides through the home's `etc/`, bound on `/run/resolvconf`.
pub const ETC_SYMLINKS: &[(&str, &str)] = &[
    ("/etc/mtab", "/proc/self/mounts"),
    ("/etc/hosts", "/run/resolvconf/hosts"),
    ("/etc/hostname", "/run/resolvconf/hostname"),
    ("/etc/resolv.conf", "/run/resolvconf/resolv.conf"),
];

/// Where the platform's Emperor finds uWSGI inside the distro.
pub const UWSGI_BINARY: &str = "/opt/unbit/uwsgi/uwsgi";
pub const UWSGI_PLUGINS: &str = "/opt/unbit/uwsgi/plugins";
pub const UWSGI_SHORTCUTS: &str = "/opt/unbit/uwsgi/shortcuts.ini";

/// The default `/etc/rc.local` (run as the container's user at every start).
pub const RC_LOCAL: &[u8] =
    b"#!/bin/sh\n# Runs as the container's user at every container start (uwsgi.it).\nexit 0\n";

/// Where the provenance goes.
pub const PROVENANCE: &str = "etc/build-distro.json";

/// What finishing did, for the build report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinishReport {
    pub uwsgi_binary: String,
    pub plugins: Vec<String>,
    pub removed_special: u64,
    pub cleared_setid: u64,
    pub nss: String,
    /// Build-time records removed (logs, caches; see [`reproducible`]).
    pub dropped_records: u64,
}

/// Adapt the tree at `root` to the platform.
pub fn finish(root: &Root, loaded: &Loaded, reporter: &Reporter) -> Result<FinishReport> {
    let mut report = FinishReport::default();
    remove_leftovers(root, &mut report)?;
    report.dropped_records = reproducible::drop_build_records(root)?;
    for dir in MOUNT_POINTS {
        let mode = if *dir == "/tmp" { 0o1777 } else { 0o755 };
        root.create_dir_all(Path::new(dir), mode)?;
    }
    for dir in STANDARD_DIRS {
        root.create_dir_all(Path::new(dir), 0o755)?;
    }
    for (link, target) in ETC_SYMLINKS {
        root.symlink(Path::new(target), Path::new(link))?;
    }
    root.write_file(
        Path::new("usr/sbin/policy-rc.d"),
        crate::customize::POLICY_RC_D,
        0o755,
    )?;
    if root.lstat(Path::new("etc/rc.local"))?.is_none() {
        root.write_file(Path::new("etc/rc.local"), RC_LOCAL, 0o755)?;
    }
    uwsgi::install(root, &loaded.recipe.uwsgi, &mut report)?;
    report.nss = nss::apply(root, &loaded.recipe.nss, reporter)?;
    Ok(report)
}

/// Device nodes, FIFOs and sockets anywhere (the host `/dev` is bound over `/dev`, and
/// unprivileged extraction on the server fails on them), everything under `/dev` (a
/// Docker export has `/dev/console`, `/dev/pts`, `/dev/shm` placeholders there),
/// `/.dockerenv`, and set-uid/set-gid bits of files and directories (everything is
/// mounted nosuid; unpacking an archive drops them the same way). Docker's empty
/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` placeholders and its
/// `/etc/mtab` are replaced by the [`ETC_SYMLINKS`].
fn remove_leftovers(root: &Root, report: &mut FinishReport) -> Result<()> {
    root.remove(Path::new(".dockerenv"))?;
    for (rel, _) in root.walk()? {
        if rel.starts_with("dev") && rel != Path::new("dev") {
            if root.lstat(&rel)?.is_some() {
                root.remove(&rel)?;
            }
            continue;
        }
        let Some(st) = root.lstat(&rel)? else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo
            | FileType::Socket => {
                root.remove(&rel)?;
                report.removed_special += 1;
            }
            FileType::RegularFile | FileType::Directory if st.st_mode & 0o6000 != 0 => {
                root.chmod(&rel, st.st_mode & 0o1777)?;
                report.cleared_setid += 1;
            }
            _ => {}
        }
    }
    Ok(())
}
