//! Package inventory (read side of day 2): which packages a distro has installed and
//! which OS it is, read from dpkg's status file or apk's installed database, in a tree
//! directory or straight from a tarball (never extracted). `outdated` compares it with
//! the mirror indices; `sbom` lists it. The format readers return plain data and do no
//! I/O beyond the bytes they are given.

use serde::Serialize;

/// Which package manager's database the inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// dpkg (`/var/lib/dpkg/status`): Debian, Ubuntu and their derivatives.
    Deb,
    /// apk (`/lib/apk/db/installed`): Alpine.
    Apk,
}

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

/// The fields of `/etc/os-release` (or `/usr/lib/os-release`) that identify the distro.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `debian`, `ubuntu`, `alpine`.
    pub id: String,
    /// `12`, `24.04`, `3.20.3`; absent on testing/unstable.
    pub version_id: Option<String>,
    /// `bookworm`, `noble`.
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
    pub id_like: Vec<String>,
}

/// What a distro has installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub ecosystem: Ecosystem,
    pub os: OsRelease,
    /// Installed packages only (dpkg `install ok installed`), sorted by name then arch.
    pub packages: Vec<Package>,
}
