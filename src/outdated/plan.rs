//! What to fetch for a distro: its suites (release, `-updates`, `-security`, or Alpine's
//! repositories), components, architectures and the keyrings its package manager trusts.

use super::*;

pub(super) const NO_SECURITY: &[&str] = &["sid", "unstable", "experimental", "rc-buggy"];
/// Debian releases whose security suite was still called `CODENAME/updates`.
pub(super) const OLD_SECURITY: &[&str] = &["jessie", "stretch", "buster"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Debian,
    Ubuntu,
}

impl Family {
    pub(super) fn of(inv: &Inventory) -> Option<Family> {
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

pub(super) fn is_security_name(s: &str) -> bool {
    s.ends_with("-security") || s.ends_with("/updates")
}

/// `id-version` for the report (`debian-12`, `debian-sid`, `alpine-3.20.3`).
pub(super) fn distro_name(inv: &Inventory, fallback: &str) -> String {
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
pub(super) fn arches(inv: &Inventory) -> Vec<String> {
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
pub(super) fn keyrings(t: &Target, srcs: &[Source], family: Family) -> Result<Vec<Keyring>> {
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
