//! `outdated` (day 2): which installed packages of a distro the distribution has already
//! replaced, and whether an update is a security fix. The installed side comes from the
//! package inventory ([`crate::inventory`]) of a tree, a tarball read in place, or a
//! published version fetched read-only over ssh; the distribution side from the
//! signature-verified mirror indexes ([`crate::mirror`]). Versions are compared by the
//! package manager's own rules; the "newest wins" choice is apt's (every suite at the
//! default priority, `NotAutomatic` suites such as backports left out), so the answer is
//! what `apt-get dist-upgrade` would install.
//!
//! For each pending security update of a Debian-family distro, the CVE IDs (and DSA/DLA
//! advisories) it fixes come from the candidate package's own `changelog.Debian`: the
//! entries newer than the installed version (see [`crate::mirror::changelog`]), read from
//! the `.deb` the signed index names, once per source package, a few sources at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::check::view::Tree;
use crate::inventory::{self, Ecosystem, Inventory};
use crate::lifecycle::{self, Support};
use crate::mirror::changelog;
use crate::mirror::client::{Binary, Client, Keyring};
use crate::mirror::packages::DebFile;
use crate::mirror::sources::{self, SignedBy, Source};
use crate::mirror::version;
use crate::progress::Reporter;
use crate::push::ssh::Ssh;
use crate::push::Name;
use crate::runner::Runner;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{target}: unknown distribution: {why}")]
    UnknownDistribution { target: String, why: String },
    #[error("{target}: {path}: {msg}")]
    Config {
        target: String,
        path: String,
        msg: String,
    },
    #[error("{target}: {detail}")]
    Remote { target: String, detail: String },
    #[error(transparent)]
    Mirror(#[from] crate::mirror::Error),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::Error),
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Push(#[from] crate::push::Error),
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::Error),
}

impl Error {
    /// All bad input: a distro that cannot be placed, a configuration that does not parse,
    /// a published version that is not there.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Mirror(e) => e.exit_code(),
            Error::Inventory(e) => e.exit_code(),
            Error::Runner(e) => e.exit_code(),
            Error::Push(e) => e.exit_code(),
            Error::Lifecycle(e) => e.exit_code(),
            _ => 2,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What the user may override.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The distribution's archive (Debian/Ubuntu), or the Alpine mirror root.
    pub mirror: Option<String>,
    /// Debian's or Ubuntu's security archive.
    pub security_mirror: Option<String>,
    /// The cache root (see [`crate::mirror::client::default_cache_dir`]); `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// Where the release tables and the package support lists are read.
    pub lifecycle: lifecycle::Sources,
    /// The day support is judged on (`YYYY-MM-DD`, [`lifecycle::today`]).
    pub today: String,
    /// Compare a release past its end of life with the mirror all the same (by default
    /// it is not: its updates have stopped, and its suites may be gone from the mirror).
    pub allow_eol: bool,
    /// Read the CVE IDs each security update fixes from its changelog ([`Pending::fixes`]).
    pub fixes: bool,
}

/// One pending update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub name: String,
    pub installed: String,
    pub available: String,
    /// The suite (Alpine: the repository) the available version comes from; the security
    /// suite when several carry it.
    pub suite: String,
    /// The version an upgrade installs is published in a security suite.
    pub security: bool,
    /// The installed package's purl, as the SBOMs write it ([`crate::sbom::purl`]).
    pub purl: String,
    /// The CVE IDs and DSA/DLA advisories the update fixes, sorted: those named in the
    /// candidate's changelog entries newer than the installed version. Read for security
    /// updates of Debian-family distros only ([`Options::fixes`]); `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixes: Option<Vec<String>>,
}

/// The answer: `--json` prints it as it is.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `debian-12`, `ubuntu-24.04`, `alpine-3.20.3`, `debian-sid`.
    pub distro: String,
    /// The suites (repositories) compared against, in the order they were read.
    pub suites: Vec<String>,
    pub packages: Vec<Pending>,
    /// The release's support window and the installed packages with limited or ended
    /// security support.
    pub support: Option<Support>,
}

impl Report {
    pub fn security_pending(&self) -> usize {
        self.packages.iter().filter(|p| p.security).count()
    }
}

/// One suite to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// `bookworm-security`; for Alpine the repository's tail, `v3.20/main`.
    pub name: String,
    /// The archive root (`http://deb.debian.org/debian`); for Alpine the repository URL.
    pub base: String,
    pub security: bool,
}

/// What to fetch for one distro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub distro: String,
    pub ecosystem: Ecosystem,
    pub suites: Vec<Suite>,
    pub components: Vec<String>,
    pub arches: Vec<String>,
}

/// The distro's files `outdated` reads besides the package database.
pub const APT_SOURCES: &str = "/etc/apt/sources.list";
pub const APT_SOURCES_D: &str = "/etc/apt/sources.list.d";
pub const APT_TRUSTED: &str = "/etc/apt/trusted.gpg";
pub const APT_TRUSTED_D: &str = "/etc/apt/trusted.gpg.d";
pub const PROVENANCE: &str = "/etc/build-distro.json";
pub const APK_REPOSITORIES: &str = "/etc/apk/repositories";
pub const APK_KEYS: &str = "/etc/apk/keys";

/// The distro, indexed (a tree, a tarball, or the few files fetched over ssh).
pub struct Target {
    /// For messages: the path, or `UID@HOST:distros/P`.
    pub name: String,
    tree: Tree,
    /// The fetched tarball of a remote target, removed on drop.
    _tmp: Option<tempfile::TempDir>,
}

impl Target {
    /// A tree directory or a `.tar`/`.tar.gz` distro, read in place.
    pub fn open(path: &Path) -> Result<Target> {
        Ok(Target {
            name: path.display().to_string(),
            tree: Tree::open(path).map_err(inventory::Error::from)?,
            _tmp: None,
        })
    }

    /// A published version, `distros/PATH` of the storage container `ssh` logs into:
    /// the files outdated needs come over as one small tar stream (`cat`-like, read-only)
    /// and are read like a tarball.
    pub fn remote(ssh: &Ssh, path: &Name) -> Result<Target> {
        let name = format!("{}:distros/{}", ssh.destination(), path);
        let script = crate::push::ssh::files_script(path, REMOTE_FILES);
        let out = ssh
            .runner
            .run(&ssh.command(&script))
            .map_err(|e| match &e {
                crate::runner::Error::Failed { status, .. } if status == "exit code 4" => {
                    Error::Remote {
                        target: name.clone(),
                        detail: format!(
                            "no distros/{path} on storage container {}: is --path right? (build-distro distros list)",
                            ssh.uid
                        ),
                    }
                }
                _ => ssh.error(e).into(),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("build-distro-outdated.")
            .tempdir()
            .map_err(|e| remote_io(&name, e))?;
        let tar = dir.path().join("files.tar");
        std::fs::write(&tar, &out.stdout).map_err(|e| remote_io(&name, e))?;
        let tree = Tree::open(&tar).map_err(|e| Error::Remote {
            target: name.clone(),
            detail: format!("the files sent back are not a tar stream: {e}"),
        })?;
        Ok(Target {
            name,
            tree,
            _tmp: Some(dir),
        })
    }

    /// The regular file at `path` (symlinks followed inside the distro), if any.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(inventory::tree_file(&self.tree, path)?)
    }

    /// Names directly in the directory `dir` (symlinks followed), sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let Ok(real) = self.tree.resolve(dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = self
            .tree
            .children(&real)
            .into_iter()
            .map(|n| crate::check::view::join(dir, n))
            .collect();
        v.sort();
        v
    }

    /// Several files at once (a tarball is read again at most once for all of them).
    pub fn read_many(&self, paths: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut real = Vec::new();
        for p in paths {
            if let Ok(r) = self.tree.resolve(p) {
                if self
                    .tree
                    .get(&r)
                    .is_some_and(|e| e.kind == crate::check::view::Kind::File)
                {
                    real.push((p.clone(), r));
                }
            }
        }
        let refs: Vec<&str> = real.iter().map(|(_, r)| r.as_str()).collect();
        let data = self.tree.read_all(&refs).map_err(inventory::Error::from)?;
        Ok(real
            .into_iter()
            .zip(data)
            .map(|((p, _), d)| (p, d.as_ref().clone()))
            .collect())
    }

    pub fn inventory(&self) -> Result<Inventory> {
        Ok(inventory::read_tree(&self.tree, &self.name)?)
    }
}

fn remote_io(target: &str, e: std::io::Error) -> Error {
    Error::Remote {
        target: target.to_string(),
        detail: format!("keep the fetched files: {e}"),
    }
}

/// What a published version sends back (relative to its root); missing ones are skipped.
pub const REMOTE_FILES: &[&str] = &[
    "etc/os-release",
    "usr/lib/os-release",
    "etc/build-distro.json",
    "etc/apt",
    "etc/apk",
    "usr/share/keyrings",
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "usr/lib/apk/db/installed",
];

/// The deb entries of the tree's apt sources (one-line and deb822).
pub fn apt_sources(t: &Target) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let mut files = vec![APT_SOURCES.to_string()];
    files.extend(t.list(APT_SOURCES_D));
    for f in files {
        let parse: fn(&str, &str) -> Result<Vec<Source>, crate::mirror::Error> =
            if f.ends_with(".list") {
                sources::parse_list
            } else if f.ends_with(".sources") {
                sources::parse_deb822
            } else {
                continue;
            };
        if let Some(b) = t.read(&f)? {
            let text = String::from_utf8_lossy(&b);
            out.extend(parse(&f, &text).map_err(|e| Error::Config {
                target: t.name.clone(),
                path: f.clone(),
                msg: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// The suite name recorded in `/etc/build-distro.json` for a debootstrap/mmdebstrap
/// build (`"reference": "bookworm minbase http://…"`).
pub fn provenance_suite(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let src = v.get("source")?;
    let kind = src.get("kind")?.as_str()?;
    if !matches!(kind, "debootstrap" | "mmdebstrap") {
        return None;
    }
    let r = src.get("reference")?.as_str()?;
    r.split_whitespace().next().map(str::to_string)
}

/// Suites that have no `-updates`/`-security` companion.
const NO_SECURITY: &[&str] = &["sid", "unstable", "experimental", "rc-buggy"];
/// Debian releases whose security suite was still called `CODENAME/updates`.
const OLD_SECURITY: &[&str] = &["jessie", "stretch", "buster"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Debian,
    Ubuntu,
}

impl Family {
    fn of(inv: &Inventory) -> Option<Family> {
        let ids =
            std::iter::once(inv.os.id.as_str()).chain(inv.os.id_like.iter().map(String::as_str));
        for id in ids {
            match id {
                "debian" => return Some(Family::Debian),
                "ubuntu" => return Some(Family::Ubuntu),
                _ => {}
            }
        }
        None
    }

    fn archive(self) -> &'static str {
        match self {
            Family::Debian => "http://deb.debian.org/debian",
            Family::Ubuntu => "http://archive.ubuntu.com/ubuntu",
        }
    }

    fn security_archive(self) -> &'static str {
        match self {
            Family::Debian => "http://deb.debian.org/debian-security",
            Family::Ubuntu => "http://security.ubuntu.com/ubuntu",
        }
    }

    fn security_suite(self, codename: &str) -> String {
        if self == Family::Debian && OLD_SECURITY.contains(&codename) {
            format!("{codename}/updates")
        } else {
            format!("{codename}-security")
        }
    }

    /// The keyring the distribution ships (in the tree, else on the host).
    fn keyring(self) -> (&'static str, &'static str) {
        match self {
            Family::Debian => (
                "/usr/share/keyrings/debian-archive-keyring.gpg",
                "debian-archive-keyring",
            ),
            Family::Ubuntu => (
                "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
                "ubuntu-keyring",
            ),
        }
    }
}

fn is_security_name(s: &str) -> bool {
    s.ends_with("-security") || s.ends_with("/updates")
}

/// `id-version` for the report (`debian-12`, `debian-sid`, `alpine-3.20.3`).
fn distro_name(inv: &Inventory, fallback: &str) -> String {
    let id = if inv.os.id.is_empty() {
        "unknown"
    } else {
        &inv.os.id
    };
    let v = inv
        .os
        .version_id
        .clone()
        .or_else(|| inv.os.version_codename.clone())
        .unwrap_or_else(|| fallback.to_string());
    format!("{id}-{v}")
}

/// The architectures of the installed packages (`all`/`noarch` aside).
fn arches(inv: &Inventory) -> Vec<String> {
    let set: BTreeSet<&str> = inv
        .packages
        .iter()
        .map(|p| p.arch.as_str())
        .filter(|a| !matches!(*a, "all" | "noarch" | ""))
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Work out the suites of a Debian-family distro: the base suite from its apt sources
/// (else the build's provenance, else os-release), and — whatever the sources say — its
/// `-updates` and `-security` suites, unless it is a rolling suite without them.
pub fn deb_plan(
    target: &str,
    inv: &Inventory,
    srcs: &[Source],
    provenance: Option<&[u8]>,
    opts: &Options,
) -> Result<Plan, Error> {
    let unknown = |why: String| Error::UnknownDistribution {
        target: target.to_string(),
        why,
    };
    let family = Family::of(inv).ok_or_else(|| {
        unknown(format!(
            "os-release ID {:?} is neither Debian nor Ubuntu, nor like them",
            inv.os.id
        ))
    })?;
    let plain = |s: &str| {
        !s.contains('/')
            && ![
                "-updates",
                "-security",
                "-backports",
                "-proposed",
                "-backports-sloppy",
            ]
            .iter()
            .any(|x| s.ends_with(x))
    };
    let from_sources = srcs
        .iter()
        .flat_map(|s| s.suites.iter())
        .find(|s| plain(s))
        .cloned();
    let base = from_sources
        .or_else(|| provenance.and_then(provenance_suite))
        .or_else(|| inv.os.version_codename.clone())
        .ok_or_else(|| {
            unknown("no suite in the apt sources, /etc/build-distro.json or os-release VERSION_CODENAME".into())
        })?;
    // Where a suite comes from: the flag, else the sources' URI for it, else the default.
    let uri_of = |pred: &dyn Fn(&str) -> bool| -> Option<String> {
        srcs.iter()
            .find(|s| s.suites.iter().any(|x| pred(x)))
            .and_then(|s| s.uris.first().cloned())
    };
    let base_uri = uri_of(&|x| x == base);
    let archive = opts
        .mirror
        .clone()
        .or_else(|| base_uri.clone())
        .unwrap_or_else(|| family.archive().to_string());
    let mut suites = vec![Suite {
        name: base.clone(),
        base: archive.clone(),
        security: false,
    }];
    let rolling = NO_SECURITY.contains(&base.as_str());
    if !rolling {
        let updates = format!("{base}-updates");
        suites.push(Suite {
            base: opts
                .mirror
                .clone()
                .or_else(|| uri_of(&|x| x == updates))
                .unwrap_or_else(|| archive.clone()),
            name: updates,
            security: false,
        });
        let sec = family.security_suite(&base);
        suites.push(Suite {
            base: opts
                .security_mirror
                .clone()
                .or_else(|| uri_of(&|x| x == sec))
                .unwrap_or_else(|| family.security_archive().to_string()),
            name: sec,
            security: true,
        });
    }
    // Other suites the sources name (backports, a vendor's repository) count as apt
    // counts them; their security flag follows their name. --mirror moves those on the
    // base suite's archive along with it.
    for s in srcs {
        let uri = s.uris.first().cloned();
        let base = match (&uri, &opts.mirror) {
            (Some(u), Some(m)) if Some(u) == base_uri.as_ref() => m.clone(),
            (Some(u), _) => u.clone(),
            (None, _) => archive.clone(),
        };
        for name in &s.suites {
            if !suites.iter().any(|x| &x.name == name) {
                suites.push(Suite {
                    name: name.clone(),
                    base: base.clone(),
                    security: is_security_name(name),
                });
            }
        }
    }
    let mut components: Vec<String> = Vec::new();
    for c in srcs.iter().flat_map(|s| s.components.iter()) {
        if !components.contains(c) {
            components.push(c.clone());
        }
    }
    if components.is_empty() {
        components.push("main".into());
    }
    let mut arches = arches(inv);
    if arches.is_empty() {
        arches.push("amd64".into());
    }
    Ok(Plan {
        distro: distro_name(inv, &base),
        ecosystem: Ecosystem::Deb,
        suites,
        components,
        arches,
    })
}

/// Work out the repositories of an Alpine distro from `/etc/apk/repositories`; with a
/// mirror given, each repository's branch and name (`v3.20/main`) are kept and the host
/// part replaced. Alpine has no separate security repository: a stable branch (`vX.Y`)
/// only takes fixes, so its updates count as security updates; `edge` ones do not.
pub fn apk_plan(
    target: &str,
    inv: &Inventory,
    repositories: Option<&[u8]>,
    opts: &Options,
) -> Result<Plan, Error> {
    let text = repositories
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let mut suites = Vec::new();
    for line in text.lines().map(str::trim) {
        // `@tag URL` repositories are pinned: apk upgrades from them only what was
        // installed with the tag, which the database does not tell us here.
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let url = line.trim_end_matches('/');
        let parts: Vec<&str> = url.rsplitn(3, '/').collect();
        let (repo, branch) = match parts.as_slice() {
            [repo, branch, _] => (*repo, *branch),
            _ => {
                return Err(Error::Config {
                    target: target.to_string(),
                    path: APK_REPOSITORIES.into(),
                    msg: format!("{line:?} is not MIRROR/BRANCH/REPOSITORY"),
                })
            }
        };
        let base = match &opts.mirror {
            Some(m) => format!("{}/{branch}/{repo}", m.trim_end_matches('/')),
            None => url.to_string(),
        };
        suites.push(Suite {
            name: format!("{branch}/{repo}"),
            base,
            security: branch.starts_with('v'),
        });
    }
    if suites.is_empty() {
        return Err(Error::Config {
            target: target.to_string(),
            path: APK_REPOSITORIES.into(),
            msg: "no repository listed: nothing to compare with".into(),
        });
    }
    let mut arches = arches(inv);
    if arches.is_empty() {
        arches.push("x86_64".into());
    }
    Ok(Plan {
        distro: distro_name(inv, "unknown"),
        ecosystem: Ecosystem::Apk,
        suites,
        components: Vec::new(),
        arches,
    })
}

/// The keyrings apt in the tree would trust: `Signed-By` keys of its sources and
/// `/etc/apt/trusted.gpg(.d)`; else the distribution's keyring in the tree (read only then:
/// in a tarball it costs a second pass); else the host's.
fn keyrings(t: &Target, srcs: &[Source], family: Family) -> Result<Vec<Keyring>> {
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for s in srcs {
        for k in &s.signed_by {
            match k {
                SignedBy::Path(p) => paths.push(p.clone()),
                SignedBy::Inline(text) => {
                    found.push(("inline Signed-By".to_string(), text.clone().into_bytes()))
                }
            }
        }
    }
    paths.push(APT_TRUSTED.into());
    paths.extend(
        t.list(APT_TRUSTED_D)
            .into_iter()
            .filter(|p| p.ends_with(".gpg") || p.ends_with(".asc")),
    );
    found.extend(t.read_many(&paths)?);
    found.retain(|(_, b)| !b.is_empty());
    if found.is_empty() {
        found.extend(t.read_many(&[family.keyring().0.to_string()])?);
    }
    let mut rings = Vec::new();
    for (name, bytes) in found {
        let bytes = crate::mirror::keyring::binary(&format!("{}:{name}", t.name), &bytes)?;
        rings.push(Keyring { name, bytes });
    }
    if rings.is_empty() {
        let (host, package) = family.keyring();
        let bytes = std::fs::read(host).map_err(|_| crate::mirror::Error::NoKeyring {
            what: t.name.clone(),
            host: host.into(),
            package: package.into(),
        })?;
        rings.push(Keyring {
            name: host.into(),
            bytes,
        });
    }
    Ok(rings)
}

/// The newest version per installed package in each suite.
type Candidates = HashMap<(String, String), Vec<(String, usize)>>;

/// Compare the installed packages with the newest versions of the plan's suites.
pub fn compare(inv: &Inventory, plan: &Plan, found: &Candidates) -> Report {
    let eco = plan.ecosystem;
    let mut pending = Vec::new();
    for p in &inv.packages {
        let key = (p.name.clone(), key_arch(eco, &p.arch));
        let Some(cands) = found.get(&key) else {
            continue;
        };
        let Some(best) = cands
            .iter()
            .map(|(v, _)| v)
            .max_by(|a, b| version::compare(eco, a, b))
        else {
            continue;
        };
        if version::compare(eco, best, &p.version) != std::cmp::Ordering::Greater {
            continue;
        }
        let from: Vec<&Suite> = cands
            .iter()
            .filter(|(v, _)| version::compare(eco, v, best) == std::cmp::Ordering::Equal)
            .map(|(_, i)| &plan.suites[*i])
            .collect();
        let security = from.iter().any(|s| s.security);
        let suite = from
            .iter()
            .find(|s| s.security == security)
            .map_or(String::new(), |s| s.name.clone());
        pending.push(Pending {
            name: p.name.clone(),
            installed: p.version.clone(),
            available: best.clone(),
            suite,
            security,
            purl: crate::sbom::purl(eco, &inv.os, p),
            fixes: None,
        });
    }
    pending.sort_by(|a, b| a.name.cmp(&b.name));
    pending.dedup();
    Report {
        distro: plan.distro.clone(),
        suites: plan.suites.iter().map(|s| s.name.clone()).collect(),
        packages: pending,
        support: None,
    }
}

/// dpkg keys packages by name and architecture; apk by name alone.
fn key_arch(eco: Ecosystem, arch: &str) -> String {
    match eco {
        Ecosystem::Deb => arch.to_string(),
        Ecosystem::Apk => String::new(),
    }
}

/// Everything: read the target, plan, fetch and verify, compare. `rep` hears which
/// suites were read (with `-v`).
pub fn run(t: &Target, opts: &Options, runner: Arc<dyn Runner>, rep: &Reporter) -> Result<Report> {
    let inv = t.inventory()?;
    let support = lifecycle::assess(&inv, &opts.lifecycle, &opts.today)?;
    // A release past its end of life gets no more updates: nothing on the mirror can
    // change the answer, and its suites may be gone from it.
    let fetch = !support.end_of_life() || opts.allow_eol;
    let client = Client::new(opts.cache_dir.clone(), runner);
    let mut found: Candidates = HashMap::new();
    let installed: BTreeMap<(String, String), ()> = inv
        .packages
        .iter()
        .map(|p| ((p.name.clone(), key_arch(inv.ecosystem, &p.arch)), ()))
        .collect();
    // Suites left out (NotAutomatic): not reported as compared against.
    let mut skip = Vec::new();
    // Every binary package of each security suite, for the changelogs of its updates.
    let mut published: Vec<Vec<Published>> = Vec::new();
    // The release's own debian-security-support packages (version, file, suite).
    let mut lists_debs: Vec<(String, DebFile, usize)> = Vec::new();
    let plan = match inv.ecosystem {
        Ecosystem::Deb => {
            let srcs = apt_sources(t)?;
            let prov = t.read(PROVENANCE)?;
            let plan = deb_plan(&t.name, &inv, &srcs, prov.as_deref(), opts)?;
            let family = Family::of(&inv).unwrap_or(Family::Debian);
            let rings = keyrings(t, &srcs, family)?;
            published.resize_with(plan.suites.len(), Vec::new);
            for (i, s) in plan.suites.iter().enumerate() {
                let keep = opts.fixes && s.security;
                if !fetch {
                    skip.push(i);
                    continue;
                }
                let rel = client.release(&s.base, &s.name, &rings)?;
                if rel.not_automatic {
                    rep.debug(&format!(
                        "{} {}: NotAutomatic (apt never upgrades to it by itself): skipped",
                        s.base, s.name
                    ));
                    skip.push(i);
                    continue;
                }
                rep.debug(&format!(
                    "{} {}: signature good, dated {}",
                    s.base,
                    s.name,
                    rel.date.as_deref().unwrap_or("-")
                ));
                for c in &plan.components {
                    for a in &plan.arches {
                        client.packages(&s.base, &s.name, &rel, c, a, &mut |e| {
                            if keep {
                                published[i].push(Published::of(&e));
                            }
                            if e.package == lifecycle::LISTS_PACKAGE {
                                if let Some(f) = &e.file {
                                    lists_debs.push((e.version.clone(), f.clone(), i));
                                }
                            }
                            let key = (e.package, e.architecture);
                            if installed.contains_key(&key) {
                                found.entry(key).or_default().push((e.version, i));
                            }
                        })?;
                    }
                }
            }
            plan
        }
        Ecosystem::Apk => {
            let repos = t.read(APK_REPOSITORIES)?;
            let plan = apk_plan(&t.name, &inv, repos.as_deref(), opts)?;
            let keys: Vec<Keyring> = t
                .read_many(&t.list(APK_KEYS))?
                .into_iter()
                .map(|(name, bytes)| Keyring { name, bytes })
                .collect();
            for (i, s) in plan.suites.iter().enumerate() {
                if !fetch {
                    skip.push(i);
                    continue;
                }
                for a in &plan.arches {
                    let index = client.apk_index(&s.base, a, &keys)?;
                    rep.debug(&format!("{} ({a}): index signed by a trusted key", s.base));
                    for e in index {
                        let key = (e.name, String::new());
                        if installed.contains_key(&key) {
                            found.entry(key).or_default().push((e.version, i));
                        }
                    }
                }
            }
            plan
        }
    };
    let mut report = compare(&inv, &plan, &found);
    report.suites = plan
        .suites
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, s)| s.name.clone())
        .collect();
    if opts.fixes && inv.ecosystem == Ecosystem::Deb {
        add_fixes(&client, &inv, &plan, &published, &mut report.packages, rep)?;
    }
    report.support = Some(match newest_lists(&lists_debs, &plan) {
        // The release's own lists, as its mirror publishes them now, unless named.
        Some((base, file)) if opts.lifecycle.security_support.is_none() => {
            let lists = lifecycle_lists(&client, base, file)?;
            let src = lifecycle::Sources {
                packaged: Some(lists),
                ..opts.lifecycle.clone()
            };
            lifecycle::assess(&inv, &src, &opts.today)?
        }
        _ => support,
    });
    Ok(report)
}

/// The newest of the debian-security-support packages the suites publish (as apt would
/// install it), and its archive.
fn newest_lists<'a>(
    debs: &'a [(String, DebFile, usize)],
    plan: &'a Plan,
) -> Option<(&'a str, &'a DebFile)> {
    debs.iter()
        .max_by(|a, b| version::compare(Ecosystem::Deb, &a.0, &b.0))
        .map(|(_, f, i)| (plan.suites[*i].base.as_str(), f))
}

/// debian-security-support's lists out of its package, fetched and verified.
fn lifecycle_lists(client: &Client, base: &str, file: &DebFile) -> Result<lifecycle::Lists> {
    let deb = client.package(base, file)?;
    let origin = format!("{}/{}", base.trim_end_matches('/'), file.filename);
    let files = crate::mirror::deb::files_in(&origin, &deb, lifecycle::LISTS_DIR)?
        .into_iter()
        .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
        .collect();
    Ok(lifecycle::Lists { origin, files })
}

/// A binary package of a security suite, as its index lists it.
struct Published {
    package: String,
    version: String,
    /// The source package's name and version (the binary's own when the index names none).
    source: String,
    source_version: String,
    file: Option<DebFile>,
}

impl Published {
    fn of(e: &crate::mirror::packages::Entry) -> Published {
        Published {
            package: e.package.clone(),
            version: e.version.clone(),
            source: e.source.clone().unwrap_or_else(|| e.package.clone()),
            source_version: e
                .source_version
                .clone()
                .unwrap_or_else(|| e.version.clone()),
            file: e.file.clone(),
        }
    }
}

/// How many changelogs are fetched at once: enough to hide the mirror's latency, few
/// enough to be polite to it.
const CHANGELOG_THREADS: usize = 4;

/// Fill [`Pending::fixes`] of the security updates: one changelog per source package and
/// version (the binaries of one source share it), fetched [`CHANGELOG_THREADS`] at a
/// time; each update's IDs are those of the entries between its installed source
/// version and the candidate's. Any error (a package that does not match the index, a
/// changelog that cannot be read) fails the whole run: an empty list must mean "none".
fn add_fixes(
    client: &Client,
    inv: &Inventory,
    plan: &Plan,
    published: &[Vec<Published>],
    pending: &mut [Pending],
    rep: &Reporter,
) -> Result<()> {
    type Key = (usize, String, String);
    let mut wants: Vec<(usize, Key, String)> = Vec::new();
    for (n, p) in pending.iter().enumerate().filter(|(_, p)| p.security) {
        let Some(si) = plan.suites.iter().position(|s| s.name == p.suite) else {
            continue;
        };
        let Some(cand) = published[si]
            .iter()
            .find(|e| e.package == p.name && e.version == p.available)
        else {
            continue;
        };
        // A binNMU's changelog.Debian is its source's: compare source versions.
        let installed = inv
            .packages
            .iter()
            .find(|q| q.name == p.name && q.version == p.installed)
            .and_then(|q| q.source_version.clone())
            .unwrap_or_else(|| p.installed.clone());
        let key = (si, cand.source.clone(), cand.source_version.clone());
        wants.push((n, key, installed));
    }
    let keys: Vec<&Key> = wants
        .iter()
        .map(|(_, k, _)| k)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let read = |&&(si, ref source, ref version): &&Key| -> Result<Vec<changelog::Entry>> {
        let suite = &plan.suites[si];
        let of_source = published[si]
            .iter()
            .filter(|e| &e.source == source && &e.source_version == version);
        let mut binaries = Vec::new();
        for e in of_source {
            let file = e.file.clone().ok_or_else(|| crate::mirror::Error::Parse {
                what: format!("{} {} Packages index", suite.base, suite.name),
                msg: format!(
                    "{} {} has no Filename, Size or SHA256: cannot fetch it to read its changelog",
                    e.package, e.version
                ),
            })?;
            binaries.push(Binary {
                package: e.package.clone(),
                file,
            });
        }
        let text = client.changelog(&suite.base, version, &binaries)?;
        rep.debug(&format!("{source} {version}: changelog read"));
        Ok(changelog::entries(&text))
    };
    let logs = parallel(&keys, CHANGELOG_THREADS, read)?;
    let by_key: HashMap<&Key, &Vec<changelog::Entry>> = keys.iter().copied().zip(&logs).collect();
    for (n, key, installed) in &wants {
        let entries = by_key[key];
        pending[*n].fixes = Some(changelog::fixes(entries, installed, &key.2));
    }
    Ok(())
}

/// `f` over `items` on at most `threads` threads, results in order; the first error (in
/// order) is returned, and no new item is started once one has failed.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    failed.fetch_or(r.is_err(), Ordering::Relaxed);
                    *slots[i].lock().expect("no panic holds it") = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        // A slot left empty was not started because another item failed: that error is
        // returned when its slot comes.
        if let Some(r) = slot.into_inner().expect("no panic holds it") {
            out.push(r?);
        }
    }
    assert_eq!(out.len(), items.len(), "an item was skipped with no error");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{OsRelease, Package};

    fn inv(id: &str, codename: Option<&str>, pkgs: &[(&str, &str, &str)]) -> Inventory {
        Inventory {
            ecosystem: if id == "alpine" {
                Ecosystem::Apk
            } else {
                Ecosystem::Deb
            },
            os: OsRelease {
                id: id.into(),
                version_id: codename.map(|_| "12".into()),
                version_codename: codename.map(str::to_string),
                pretty_name: None,
                id_like: vec![],
            },
            packages: pkgs
                .iter()
                .map(|(n, v, a)| Package {
                    name: n.to_string(),
                    version: v.to_string(),
                    arch: a.to_string(),
                    source: None,
                    source_version: None,
                    license: None,
                })
                .collect(),
        }
    }

    fn names(p: &Plan) -> Vec<(&str, &str, bool)> {
        p.suites
            .iter()
            .map(|s| (s.name.as_str(), s.base.as_str(), s.security))
            .collect()
    }

    #[test]
    fn bookworm_with_only_the_base_suite_still_gets_updates_and_security() {
        let i = inv("debian", Some("bookworm"), &[("libc6", "2.36-9", "amd64")]);
        let srcs =
            sources::parse_list("l", "deb http://deb.debian.org/debian bookworm main\n").unwrap();
        let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                ("bookworm", "http://deb.debian.org/debian", false),
                ("bookworm-updates", "http://deb.debian.org/debian", false),
                (
                    "bookworm-security",
                    "http://deb.debian.org/debian-security",
                    true
                ),
            ]
        );
        assert_eq!(p.components, ["main"]);
        assert_eq!(p.arches, ["amd64"]);
        assert_eq!(p.distro, "debian-12");
    }

    #[test]
    fn flags_and_sources_choose_the_mirrors() {
        let i = inv("debian", Some("bookworm"), &[]);
        let srcs = sources::parse_list(
            "l",
            "deb http://m.example/debian bookworm main contrib\ndeb http://s.example/sec bookworm-security main\n",
        )
        .unwrap();
        let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
        assert_eq!(p.suites[1].base, "http://m.example/debian");
        assert_eq!(p.suites[2].base, "http://s.example/sec");
        assert_eq!(p.components, ["main", "contrib"]);
        let o = Options {
            mirror: Some("http://127.0.0.1:1/d".into()),
            security_mirror: Some("http://127.0.0.1:1/s".into()),
            ..Options::default()
        };
        let p = deb_plan("t", &i, &srcs, None, &o).unwrap();
        assert_eq!(
            names(&p),
            [
                ("bookworm", "http://127.0.0.1:1/d", false),
                ("bookworm-updates", "http://127.0.0.1:1/d", false),
                ("bookworm-security", "http://127.0.0.1:1/s", true),
            ]
        );
    }

    #[test]
    fn sid_has_no_security_suite_and_buster_the_old_name() {
        let i = inv("debian", Some("trixie"), &[]);
        let srcs = sources::parse_list("l", "deb http://deb.debian.org/debian sid main\n").unwrap();
        let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
        assert_eq!(names(&p), [("sid", "http://deb.debian.org/debian", false)]);
        let p = deb_plan(
            "t",
            &inv("debian", Some("buster"), &[]),
            &[],
            None,
            &Options::default(),
        )
        .unwrap();
        assert_eq!(p.suites[2].name, "buster/updates");
        assert!(p.suites[2].security);
    }

    #[test]
    fn the_suite_comes_from_provenance_when_sources_and_os_release_are_silent() {
        let i = inv("debian", None, &[]);
        let prov = br#"{"source":{"kind":"mmdebstrap","reference":"trixie minbase http://x"}}"#;
        let p = deb_plan("t", &i, &[], Some(prov), &Options::default()).unwrap();
        assert_eq!(p.suites[0].name, "trixie");
        assert_eq!(p.distro, "debian-trixie");
        let e = deb_plan("t", &i, &[], None, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("no suite"), "{e}");
        let e = deb_plan(
            "t",
            &inv("fedora", Some("x"), &[]),
            &[],
            None,
            &Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown distribution") && e.contains("fedora"),
            "{e}"
        );
        assert_eq!(
            provenance_suite(br#"{"source":{"kind":"docker","reference":"debian:12"}}"#),
            None
        );
    }

    #[test]
    fn ubuntu_suites() {
        let mut i = inv("ubuntu", Some("noble"), &[("a", "1", "arm64")]);
        i.os.version_id = Some("24.04".into());
        let p = deb_plan("t", &i, &[], None, &Options::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                ("noble", "http://archive.ubuntu.com/ubuntu", false),
                ("noble-updates", "http://archive.ubuntu.com/ubuntu", false),
                ("noble-security", "http://security.ubuntu.com/ubuntu", true),
            ]
        );
        assert_eq!(p.arches, ["arm64"]);
        assert_eq!(p.distro, "ubuntu-24.04");
    }

    #[test]
    fn alpine_repositories() {
        let i = inv("alpine", Some("x"), &[("musl", "1.2.5-r0", "x86_64")]);
        let repos = b"https://dl-cdn.alpinelinux.org/alpine/v3.20/main\n# c\n@edge https://x/alpine/edge/testing\nhttps://dl-cdn.alpinelinux.org/alpine/edge/community/\n";
        let p = apk_plan("t", &i, Some(repos), &Options::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                (
                    "v3.20/main",
                    "https://dl-cdn.alpinelinux.org/alpine/v3.20/main",
                    true
                ),
                (
                    "edge/community",
                    "https://dl-cdn.alpinelinux.org/alpine/edge/community",
                    false
                ),
            ]
        );
        let o = Options {
            mirror: Some("http://127.0.0.1:9/alpine/".into()),
            ..Options::default()
        };
        let p = apk_plan("t", &i, Some(repos), &o).unwrap();
        assert_eq!(p.suites[0].base, "http://127.0.0.1:9/alpine/v3.20/main");
        assert!(apk_plan("t", &i, None, &o).is_err());
        assert!(apk_plan("t", &i, Some(b"nonsense\n"), &o).is_err());
    }

    #[test]
    fn newest_wins_and_security_follows_the_version_installed() {
        let i = inv(
            "debian",
            Some("bookworm"),
            &[
                ("libssl3", "3.0.11-1~deb12u2", "amd64"),
                ("tzdata", "2024a-0+deb12u1", "all"),
                ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
                ("bash", "5.2.15-2+b2", "amd64"),
                ("local", "9.9", "amd64"),
            ],
        );
        let plan = deb_plan("t", &i, &[], None, &Options::default()).unwrap();
        let mut f: Candidates = HashMap::new();
        let mut add = |n: &str, a: &str, v: &str, s: usize| {
            f.entry((n.into(), a.into()))
                .or_default()
                .push((v.into(), s))
        };
        add("libssl3", "amd64", "3.0.11-1~deb12u2", 0);
        add("libssl3", "amd64", "3.0.17-1~deb12u3", 2);
        // Same version in the point release and the security suite: a security update.
        add("zlib1g", "amd64", "1:1.2.13.dfsg-1+deb12u1", 0);
        add("zlib1g", "amd64", "1:1.2.13.dfsg-1+deb12u1", 2);
        // Newer in -updates than in -security: apt installs the -updates one.
        add("tzdata", "all", "2025a-0+deb12u1", 2);
        add("tzdata", "all", "2025b-0+deb12u1", 1);
        add("bash", "amd64", "5.2.15-2+b2", 0);
        add("local", "amd64", "1.0", 0);
        // An entry of another architecture never matches.
        add("bash", "i386", "9", 0);
        let r = compare(&i, &plan, &f);
        let got: Vec<(&str, &str, &str, bool)> = r
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.available.as_str(),
                    p.suite.as_str(),
                    p.security,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("libssl3", "3.0.17-1~deb12u3", "bookworm-security", true),
                ("tzdata", "2025b-0+deb12u1", "bookworm-updates", false),
                (
                    "zlib1g",
                    "1:1.2.13.dfsg-1+deb12u1",
                    "bookworm-security",
                    true
                ),
            ]
        );
        assert_eq!(r.security_pending(), 2);
        assert_eq!(
            r.suites,
            ["bookworm", "bookworm-updates", "bookworm-security"]
        );
    }
}
