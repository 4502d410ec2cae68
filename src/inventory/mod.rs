//! Package inventory (read side of day 2): which packages a distro has installed and
//! which OS it is, read from dpkg's status file or apk's installed database, in a tree
//! directory or straight from a tarball (never extracted). `outdated` compares it with
//! the mirror indices; `sbom` lists it. The format readers return plain data and do no
//! I/O beyond the bytes they are given.

pub mod apk;
pub mod dpkg;

use std::path::Path;

use serde::Serialize;

use crate::check::view::{Kind, Tree};
pub use crate::mirror::version::Ecosystem;
pub use crate::os_release::OsRelease;

/// One installed binary package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    /// The version exactly as the database records it (`1:2.3-4+deb12u1`, `3.1.4-r5`).
    pub version: String,
    /// `amd64`, `all` (dpkg); `x86_64`, `noarch` (apk).
    pub arch: String,
    /// The source package (dpkg `Source:`, apk `o:` origin) when it differs from `name`.
    pub source: Option<String>,
    /// The source version when it differs from `version` (dpkg `Source: name (version)`).
    pub source_version: Option<String>,
    /// The license when the database records one (apk `L:`; dpkg does not).
    pub license: Option<String>,
}

/// What a distro has installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub ecosystem: Ecosystem,
    pub os: OsRelease,
    /// Installed packages only (dpkg `install ok installed`), sorted by name then arch.
    pub packages: Vec<Package>,
}

impl Inventory {
    /// The installed package called `name` (the first architecture when several are).
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}

/// Why a target's inventory could not be read. The message names the target (and the file
/// inside it) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target could not be opened or indexed (unreadable, not a tar archive, a
    /// truncated tarball).
    #[error(transparent)]
    Target(#[from] crate::check::Error),
    #[error("{target}: not a distro (no {OS_RELEASE}, no {DPKG_STATUS}, no {APK_INSTALLED}); give a tree directory or a distro tarball")]
    NotADistro { target: String },
    #[error("{target}: no package database ({DPKG_STATUS} or {APK_INSTALLED}): the distro has no dpkg or apk, so its packages cannot be listed")]
    NoPackageDatabase { target: String },
    #[error("{target}: unknown distribution: {why}")]
    UnknownDistribution { target: String, why: String },
    /// A database that does not parse: truncated, or not what its name says.
    #[error("{target}: {path}: {msg}")]
    Corrupt {
        target: String,
        path: String,
        msg: String,
    },
    /// A file reader given to [`from_files`] failed (e.g. the ssh transport of `outdated`).
    #[error("{target}: read {path}: {msg}")]
    Read {
        target: String,
        path: String,
        msg: String,
    },
}

impl Error {
    /// 2 for a target that is not a readable distro; 1 when reading it failed midway
    /// (a transport error, Ctrl-C).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Target(e) => e.exit_code(),
            Error::Read { .. } => 1,
            Error::NotADistro { .. }
            | Error::NoPackageDatabase { .. }
            | Error::UnknownDistribution { .. }
            | Error::Corrupt { .. } => 2,
        }
    }
}

/// A format reader's complaint about the bytes it was given; the caller adds which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where os-release lives: `/etc/os-release` (usually a symlink to the second), else
/// `/usr/lib/os-release`.
pub const OS_RELEASE: &str = "/etc/os-release";
pub const OS_RELEASE_FALLBACK: &str = "/usr/lib/os-release";
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
pub const APK_INSTALLED: &str = "/lib/apk/db/installed";
/// Where a /usr-merged Alpine keeps the same database when `/lib` is not a symlink.
pub const APK_INSTALLED_USR: &str = "/usr/lib/apk/db/installed";

/// The inventory of a tree directory or a `.tar`/`.tar.gz` distro archive, read in place.
pub fn read(target: &Path) -> Result<Inventory, Error> {
    let tree = Tree::open(target)?;
    read_tree(&tree, &target.display().to_string())
}

/// The inventory of a distro already indexed (`target` names it in errors).
pub fn read_tree(tree: &Tree, target: &str) -> Result<Inventory, Error> {
    from_files(target, |path| tree_file(tree, path))
}

/// The bytes of the regular file at `path` inside `tree`, symlinks followed inside the
/// root; `None` when nothing (or not a regular file) is there.
pub fn tree_file(tree: &Tree, path: &str) -> Result<Option<Vec<u8>>, Error> {
    let Ok(real) = tree.resolve(path) else {
        return Ok(None);
    };
    match tree.get(&real) {
        Some(e) if e.kind == Kind::File => Ok(Some(tree.read(&real)?.as_ref().clone())),
        _ => Ok(None),
    }
}

/// The distro's os-release, if it has one (`read_file` as for [`from_files`]).
pub fn os_release<F>(read_file: &mut F) -> Result<Option<OsRelease>, Error>
where
    F: FnMut(&str) -> Result<Option<Vec<u8>>, Error>,
{
    let bytes = match read_file(OS_RELEASE)? {
        Some(b) => Some(b),
        None => read_file(OS_RELEASE_FALLBACK)?,
    };
    Ok(bytes.map(|b| crate::os_release::parse(&String::from_utf8_lossy(&b))))
}

/// The inventory of a distro whose files `read_file` gives: called with an absolute path
/// inside the distro, it returns the file's bytes (symlinks followed inside the distro's
/// root) or `None` when there is no such file. `target` names the distro in errors. One
/// parser serves a tree, a tarball and a published version read over ssh.
pub fn from_files<F>(target: &str, mut read_file: F) -> Result<Inventory, Error>
where
    F: FnMut(&str) -> Result<Option<Vec<u8>>, Error>,
{
    let os = os_release(&mut read_file)?;
    let corrupt = |path: &str, e: ParseError| Error::Corrupt {
        target: target.to_string(),
        path: path.to_string(),
        msg: e.0,
    };
    let (ecosystem, packages) = if let Some(b) = read_file(DPKG_STATUS)? {
        let text = String::from_utf8_lossy(&b);
        let pkgs = dpkg::parse_status(&text).map_err(|e| corrupt(DPKG_STATUS, e))?;
        (Ecosystem::Deb, pkgs)
    } else {
        let mut found = None;
        for path in [APK_INSTALLED, APK_INSTALLED_USR] {
            if let Some(b) = read_file(path)? {
                let text = String::from_utf8_lossy(&b);
                found = Some(apk::parse_installed(&text).map_err(|e| corrupt(path, e))?);
                break;
            }
        }
        match (found, &os) {
            (Some(pkgs), _) => (Ecosystem::Apk, pkgs),
            (None, None) => {
                return Err(Error::NotADistro {
                    target: target.to_string(),
                })
            }
            (None, Some(_)) => {
                return Err(Error::NoPackageDatabase {
                    target: target.to_string(),
                })
            }
        }
    };
    let os = os.ok_or_else(|| Error::UnknownDistribution {
        target: target.to_string(),
        why: format!("neither {OS_RELEASE} nor {OS_RELEASE_FALLBACK} is in it"),
    })?;
    if os.id.is_empty() {
        return Err(Error::UnknownDistribution {
            target: target.to_string(),
            why: format!("{OS_RELEASE} has no ID="),
        });
    }
    let mut packages = packages;
    packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    Ok(Inventory {
        ecosystem,
        os,
        packages,
    })
}
