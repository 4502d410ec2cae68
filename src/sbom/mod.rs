//! SBOMs (after pack in `build`, and `build-distro sbom TARGET`): what a distro is made
//! of, for scanners such as Trivy and Grype. Every installed package from the
//! [inventory] with a purl, the operating system from os-release, and
//! the files build-distro adds itself (uWSGI, the NSS module, `shortcuts.ini`) with their
//! hashes; written as SPDX 2.3 ([`spdx`]) or CycloneDX 1.6 ([`cyclonedx`]) JSON.
//!
//! The same distro always gives the same bytes: the time is the newest modification time
//! in the distro as packed (never the clock), and the document namespace and serial
//! number are derived from the content id.

pub mod cyclonedx;
pub mod spdx;

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::check::view::{Kind, Tree};
use crate::finish::{UWSGI_BINARY, UWSGI_SHORTCUTS};
use crate::inventory::{self, Ecosystem, OsRelease, Package};

/// The formats `sbom --format` writes; `build` writes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// SPDX 2.3 JSON (`NAME.spdx.json`).
    SpdxJson,
    /// CycloneDX 1.6 JSON (`NAME.cdx.json`).
    CyclonedxJson,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::SpdxJson, Format::CyclonedxJson];

    /// What `build` appends to the distro's name.
    pub fn extension(self) -> &'static str {
        match self {
            Format::SpdxJson => ".spdx.json",
            Format::CyclonedxJson => ".cdx.json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
}

const PROVENANCE_PATH: &str = "/etc/build-distro.json";

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Inventory(e) => e.exit_code(),
        }
    }
}

/// What the caller knows better than the tree (in `build`: the tarball's content id,
/// which a tree packed to a tarball does not hold, and the pack clamp).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The document's name (default: the provenance's, else the target's file name).
    pub name: Option<String>,
    /// `sha256:…` (default: the provenance's, else a digest of what the SBOM lists).
    pub content_id: Option<String>,
    /// An upper bound for the creation time, as pack clamps mtimes (`SOURCE_DATE_EPOCH`).
    pub clamp: Option<u64>,
    /// Describe a distro without a package database (a busybox tree, a `scratch` image)
    /// by its files alone, with [`Sbom::note`] saying why, instead of refusing it.
    pub allow_no_packages: bool,
}

/// A file build-distro put into the distro, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedFile {
    /// Absolute path inside the distro.
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

/// One installed package and its purl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub package: Package,
    pub purl: String,
}

/// What an SBOM says, in either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    pub name: String,
    /// `sha256:…`
    pub content_id: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// `None` for a distro without a package database.
    pub ecosystem: Option<Ecosystem>,
    /// `None` for a distro without os-release.
    pub os: Option<OsRelease>,
    /// Sorted by name then architecture.
    pub components: Vec<Component>,
    /// Sorted by path.
    pub files: Vec<AddedFile>,
    /// Why the packages are missing (with [`Options::allow_no_packages`]).
    pub note: Option<String>,
}

impl Sbom {
    /// The document in `format`, pretty JSON ending with a newline.
    pub fn render(&self, format: Format) -> Vec<u8> {
        let doc = match format {
            Format::SpdxJson => spdx::document(self),
            Format::CyclonedxJson => cyclonedx::document(self),
        };
        let mut v = serde_json::to_vec_pretty(&doc).expect("serializable");
        v.push(b'\n');
        v
    }

    /// A UUID (version 5) named by the content id: the same distro, the same UUID.
    pub fn uuid(&self, salt: &str) -> uuid::Uuid {
        uuid_named(format!("{salt}:{}:{}", self.name, self.content_id).as_bytes())
    }
}

/// A UUID (version 5) in build-distro's namespace, named by `name`: what a document's
/// serial number is derived from, so the same content gets the same one.
pub fn uuid_named(name: &[u8]) -> uuid::Uuid {
    uuid::Uuid::new_v5(&NAMESPACE, name)
}

/// The UUID namespace of build-distro's SBOM identifiers (fixed forever: changing it
/// changes every serial number).
const NAMESPACE: uuid::Uuid = uuid::uuid!("5f0c7a1e-3b7d-5c2a-9e41-6a8d2b1f0c93");

/// The SBOM of a distro directory or `.tar`/`.tar.gz` archive, read in place.
pub fn read(target: &Path, opts: &Options) -> Result<Sbom, Error> {
    let tree = Tree::open(target).map_err(inventory::Error::from)?;
    collect(&tree, &target.display().to_string(), opts)
}

/// The SBOM of an indexed distro; `target` names it in errors and, when nothing better is
/// known, gives the document its name.
pub fn collect(tree: &Tree, target: &str, opts: &Options) -> Result<Sbom, Error> {
    let (inv, note) = match inventory::read_tree(tree, target) {
        Ok(inv) => (Some(inv), None),
        Err(
            e @ (inventory::Error::NotADistro { .. }
            | inventory::Error::NoPackageDatabase { .. }
            | inventory::Error::UnknownDistribution { .. }),
        ) if opts.allow_no_packages => (None, Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let os = match &inv {
        Some(inv) => Some(inv.os.clone()),
        None => inventory::os_release(&mut |p: &str| inventory::tree_file(tree, p))?
            .filter(|os| !os.id.is_empty()),
    };
    let prov = provenance(tree)?;
    let files = added_files(tree)?;
    let name = opts
        .name
        .clone()
        .or_else(|| prov.as_ref().map(|p| p.name.clone()))
        .unwrap_or_else(|| default_name(target));
    let created = created(tree, opts.clamp);
    let components: Vec<Component> = inv
        .iter()
        .flat_map(|inv| {
            inv.packages.iter().map(|p| Component {
                purl: purl(inv.ecosystem, &inv.os, p),
                package: p.clone(),
            })
        })
        .collect();
    let content_id = match opts
        .content_id
        .clone()
        .or_else(|| prov.map(|p| p.content_id))
    {
        Some(id) => id,
        None => listed_digest(&components, &files),
    };
    Ok(Sbom {
        name,
        content_id,
        created,
        ecosystem: inv.map(|i| i.ecosystem),
        os,
        components,
        files,
        note,
    })
}

#[derive(Deserialize)]
struct ProvenanceFields {
    name: String,
    content_id: String,
}

/// The provenance build-distro wrote into the distro, if it is there. One that does not
/// parse is treated as absent: the SBOM then describes the tree as it is (and `build`
/// replaces the file anyway).
fn provenance(tree: &Tree) -> Result<Option<ProvenanceFields>, Error> {
    Ok(inventory::tree_file(tree, PROVENANCE_PATH)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// `dist/web.tar.gz` → `web`.
fn default_name(target: &str) -> String {
    let base = Path::new(target.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "distro".to_string());
    [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(&base)
        .to_string()
}

/// The newest modification time in the distro, clamped like pack clamps: the moment the
/// distro was made, the same for a tree and for its tarball. The provenance file is left
/// out: `build --format dir` writes it last, at the wall-clock time.
fn created(tree: &Tree, clamp: Option<u64>) -> u64 {
    let newest = tree
        .entries()
        .filter(|(p, _)| p.as_str() != PROVENANCE_PATH)
        .map(|(_, e)| e.mtime)
        .max()
        .unwrap_or(0);
    clamp.map_or(newest, |c| newest.min(c))
}

/// The files build-distro adds (those present), hashed. The NSS module is wherever the
/// tree's dynamic loader finds it, as `check` looks for it.
fn added_files(tree: &Tree) -> Result<Vec<AddedFile>, Error> {
    let mut wanted: Vec<String> = Vec::new();
    let mut real: Vec<String> = Vec::new();
    let mut consider = |path: &str, real_path: Option<String>| {
        if let Some(r) = real_path {
            if !real.contains(&r) {
                wanted.push(path.to_string());
                real.push(r);
            }
        }
    };
    let regular = |path: &str| -> Option<String> {
        let r = tree.resolve(path).ok()?;
        (tree.get(&r)?.kind == Kind::File).then_some(r)
    };
    consider(UWSGI_BINARY, regular(UWSGI_BINARY));
    let nss = crate::check::ldd::Resolver::new(tree)
        .find_system_library(crate::finish::nss::MODULE_NAME)
        .map_err(inventory::Error::from)?;
    if let Some(m) = nss {
        consider(&m, regular(&m));
    }
    consider(UWSGI_SHORTCUTS, regular(UWSGI_SHORTCUTS));
    let refs: Vec<&str> = real.iter().map(String::as_str).collect();
    let data = tree.read_all(&refs).map_err(inventory::Error::from)?;
    let mut files: Vec<AddedFile> = wanted
        .into_iter()
        .zip(data)
        .map(|(path, bytes)| AddedFile {
            path,
            sha1: sha1_smol::Sha1::from(bytes.as_slice()).digest().to_string(),
            sha256: hex::encode(Sha256::digest(bytes.as_slice())),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// For a distro without a recorded content id: a digest of everything the SBOM lists, so
/// the identifiers still change exactly when the listed content does.
fn listed_digest(components: &[Component], files: &[AddedFile]) -> String {
    let mut h = Sha256::new();
    for c in components {
        h.update(c.purl.as_bytes());
        h.update(b"\n");
    }
    for f in files {
        h.update(format!("{} {}\n", f.sha256, f.path).as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `2024-05-01T12:00:00Z`.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// `debian-12`, `ubuntu-24.04`, `alpine-3.20.3`; `debian-trixie` without a VERSION_ID.
pub fn distro_qualifier(os: &OsRelease) -> String {
    match os.version_id.as_ref().or(os.version_codename.as_ref()) {
        Some(v) => format!("{}-{v}", os.id),
        None => os.id.clone(),
    }
}

/// The package's purl as Trivy and Grype match it:
/// `pkg:deb/debian/libc6@2.36-9+deb12u7?arch=amd64&distro=debian-12&upstream=glibc`
/// (with `+` encoded, qualifiers sorted, `upstream=SOURCE@VERSION` when the source
/// version differs too), `pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3`.
pub fn purl(ecosystem: Ecosystem, os: &OsRelease, p: &Package) -> String {
    let ty = match ecosystem {
        Ecosystem::Deb => "deb",
        Ecosystem::Apk => "apk",
    };
    let mut u =
        packageurl::PackageUrl::new(ty, p.name.as_str()).expect("deb and apk are valid purl types");
    let namespace = os.id.to_ascii_lowercase();
    let distro = distro_qualifier(os);
    u.with_namespace(namespace.as_str())
        .and_then(|u| u.with_version(p.version.as_str()))
        .and_then(|u| u.add_qualifier("arch", p.arch.as_str()))
        .and_then(|u| u.add_qualifier("distro", distro.as_str()))
        .expect("fixed qualifier keys are valid");
    let upstream = match (&p.source, &p.source_version) {
        (None, None) => None,
        (src, None) => src.clone(),
        (src, Some(v)) => Some(format!("{}@{v}", src.as_deref().unwrap_or(&p.name))),
    };
    if let Some(up) = upstream {
        u.add_qualifier("upstream", up)
            .expect("a fixed qualifier key is valid");
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> OsRelease {
        OsRelease {
            id: "debian".into(),
            version_id: Some("12".into()),
            version_codename: Some("bookworm".into()),
            pretty_name: None,
            id_like: vec![],
        }
    }

    fn pkg(name: &str, version: &str, arch: &str, src: Option<&str>, sv: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            source: src.map(Into::into),
            source_version: sv.map(Into::into),
            license: None,
        }
    }

    #[test]
    fn deb_purls() {
        let os = debian();
        assert_eq!(
            purl(
                Ecosystem::Deb,
                &os,
                &pkg("libc6", "2.36-9+deb12u7", "amd64", Some("glibc"), None)
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12&upstream=glibc"
        );
        // The epoch's colon stays as it is (the purl spec never encodes `:`).
        assert_eq!(
            purl(Ecosystem::Deb, &os, &pkg("libstdc++6", "1:12.2.0-14", "amd64", Some("gcc-12"), Some("12.2.0-14"))),
            "pkg:deb/debian/libstdc%2B%2B6@1:12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12%4012.2.0-14"
        );
        // A binNMU: same source name, another version.
        assert_eq!(
            purl(Ecosystem::Deb, &os, &pkg("bash", "5.2.15-2+b2", "amd64", None, Some("5.2.15-2"))),
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2"
        );
        let ubuntu = OsRelease {
            id: "ubuntu".into(),
            version_id: Some("24.04".into()),
            ..OsRelease::default()
        };
        assert_eq!(
            purl(
                Ecosystem::Deb,
                &ubuntu,
                &pkg("tzdata", "2024a-3ubuntu1.1", "all", None, None)
            ),
            "pkg:deb/ubuntu/tzdata@2024a-3ubuntu1.1?arch=all&distro=ubuntu-24.04"
        );
        let sid = OsRelease {
            id: "debian".into(),
            version_codename: Some("trixie".into()),
            ..OsRelease::default()
        };
        assert_eq!(distro_qualifier(&sid), "debian-trixie");
    }

    #[test]
    fn apk_purls() {
        let os = OsRelease {
            id: "alpine".into(),
            version_id: Some("3.20.3".into()),
            ..OsRelease::default()
        };
        assert_eq!(
            purl(
                Ecosystem::Apk,
                &os,
                &pkg("libcrypto3", "3.3.2-r0", "x86_64", Some("openssl"), None)
            ),
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl"
        );
    }

    #[test]
    fn default_names() {
        assert_eq!(default_name("dist/web.tar.gz"), "web");
        assert_eq!(default_name("/srv/trees/web/"), "web");
        assert_eq!(default_name("x.tar"), "x");
    }
}
