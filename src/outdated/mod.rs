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
use crate::push::ssh::{Ssh, SshConfig};
use crate::push::Name;
use crate::runner::Runner;

mod compare;
mod fixes;
mod plan;
mod target;

pub use compare::compare;
use compare::*;
use fixes::*;
use plan::*;
pub use plan::{apk_plan, deb_plan};
pub use target::{
    apt_sources, provenance_suite, Target, APK_KEYS, APK_REPOSITORIES, APT_SOURCES, APT_SOURCES_D,
    APT_TRUSTED, APT_TRUSTED_D, PROVENANCE, REMOTE_FILES,
};

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

#[cfg(test)]
mod tests;
