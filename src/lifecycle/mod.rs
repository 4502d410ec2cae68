//! Support windows (day 2): whether a distro's release still gets security updates, and
//! which of its installed packages Debian supports only in part or no longer. "No update
//! pending" says nothing about either: a release leaves security support on a date, and a
//! package can lose it before its release does.
//!
//! The facts are Debian's own data, never constants of ours: release dates from
//! distro-info-data's tables (the host's `/usr/share/distro-info/`, else the copy shipped
//! in this module, dated by [`SHIPPED_FROM`]), package support from
//! `debian-security-support`'s lists. Readers of the two formats are in
//! [`distro_info`] and [`security_support`]; this module finds the data, reads it, and
//! judges an [`Inventory`] against it on a given day. A table or list that is missing
//! where it was asked for, or does not parse, is an error naming the file — never
//! "supported".

pub mod distro_info;
pub mod security_support;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::inventory::Inventory;
use distro_info::Release;
use security_support::{Entry, Kind};

/// The copy of distro-info-data's tables used when the host has none.
pub const SHIPPED_DEBIAN: &str = include_str!("distro-info/debian.csv");
pub const SHIPPED_UBUNTU: &str = include_str!("distro-info/ubuntu.csv");
/// Where the shipped copy comes from, and its date: said whenever it is used.
pub const SHIPPED_FROM: &str = "distro-info-data 0.66+deb13u2 of 2026-04-25";
/// Debian's packages install their data here.
pub const HOST_DISTRO_INFO: &str = "/usr/share/distro-info";
pub const HOST_SECURITY_SUPPORT: &str = "/usr/share/debian-security-support";
/// The package holding the lists, and where in it (`outdated` reads the release's own
/// from the mirror).
pub const LISTS_PACKAGE: &str = "debian-security-support";
pub const LISTS_DIR: &str = "usr/share/debian-security-support";

pub(crate) const FIX_DISTRO_INFO: &str =
    "reinstall distro-info-data (apt-get install --reinstall distro-info-data) or name a good file";
pub(crate) const FIX_SECURITY_SUPPORT: &str = "reinstall debian-security-support (apt-get install --reinstall debian-security-support) or name a good directory";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}:{line}: {msg}; {fix}")]
    Malformed {
        file: String,
        line: u64,
        msg: String,
        fix: &'static str,
    },
    #[error("{file}: {source}; {fix}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
        fix: &'static str,
    },
}

impl Error {
    /// Bad data is bad input.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the data comes from. `None`: the host's, as Debian's packages install it.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A directory holding `debian.csv` and `ubuntu.csv`. Named, a missing table is an
    /// error; the host's missing, the shipped copy is used.
    pub distro_info: Option<PathBuf>,
    /// A directory holding `debian-security-support`'s lists. Named, a missing list is an
    /// error; the host's lacking the release's list, packages are reported not checked.
    pub security_support: Option<PathBuf>,
    /// The lists out of the release's own package (read by `outdated` from the mirror):
    /// used instead of the host's, never instead of a named directory.
    pub packaged: Option<Lists>,
}

/// debian-security-support's lists as one package holds them.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// Where the package came from, for messages (its URL).
    pub origin: String,
    /// File name (`security-support.deb13`) and text.
    pub files: Vec<(String, String)>,
}

/// Where a release stands on the day asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Regular security support.
    Supported,
    /// Debian LTS: past the regular support; covers only part of the archive.
    Lts,
    /// No security support from the distribution any more.
    EndOfLife,
    /// Testing or unstable: fixes arrive as new versions, no security support.
    Development,
    /// The table does not know the release, or there is no table for the distribution.
    Unknown,
}

/// The release's support window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSupport {
    /// `debian 12 (bookworm)`.
    pub release: String,
    pub state: State,
    /// When the current state began (LTS, end of life).
    pub since: Option<String>,
    /// When the current state ends (supported, LTS).
    pub until: Option<String>,
    /// The table read: a path, or the shipped copy and its date.
    pub data: String,
    /// One line for people.
    pub message: String,
}

/// What a list says of one installed package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageState {
    /// Outside the regular security support (see `details`).
    Limited,
    /// Support ended on `date`.
    Ended,
    /// Support ends on `date`, before the release's.
    Ends,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSupport {
    pub package: String,
    pub version: String,
    pub source: String,
    pub status: PackageState,
    pub date: Option<String>,
    pub details: String,
}

/// The installed packages the lists name, or why none could be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageCheck {
    /// The lists read; empty when not checked.
    pub lists: Vec<String>,
    /// Why the packages were not checked (no list for this release).
    pub not_checked: Option<String>,
    pub packages: Vec<PackageSupport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    pub release: ReleaseSupport,
    pub packages: PackageCheck,
}

impl Support {
    /// Past the end of the distribution's security support: the gate's exit 1.
    pub fn end_of_life(&self) -> bool {
        self.release.state == State::EndOfLife
    }
}

/// Today in UTC as `YYYY-MM-DD`, the form the tables use.
pub fn today() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string()
}

/// The support of `inv`'s release and packages on `today` (`YYYY-MM-DD`).
pub fn assess(inv: &Inventory, src: &Sources, today: &str) -> Result<Support> {
    let os = &inv.os;
    let family = os.id.as_str();
    let name = match (&os.version_id, &os.version_codename) {
        (Some(v), Some(c)) => format!("{family} {v} ({c})"),
        (Some(v), None) => format!("{family} {v}"),
        (None, Some(c)) => format!("{family} {c}"),
        (None, None) => family.to_string(),
    };
    let Some((data, rows)) = table(family, src)? else {
        let release = ReleaseSupport {
            message: format!(
                "{name}: support window unknown (distro-info-data has no table for {family})"
            ),
            release: name,
            state: State::Unknown,
            since: None,
            until: None,
            data: String::new(),
        };
        let packages = not_checked(format!("no security-support lists for {family}"));
        return Ok(Support { release, packages });
    };
    let row = rows.iter().find(|r| {
        os.version_codename.as_deref() == Some(r.series.as_str())
            || os.version_id.as_deref().is_some_and(|v| {
                r.version.split_whitespace().next() == Some(v)
                    || (family == "debian" && v.split('.').next() == Some(&r.version))
            })
    });
    let release = match row {
        Some(r) => window(&name, family, r, today, data),
        None => ReleaseSupport {
            message: format!("{name}: support window unknown (not in {data}; a newer distro-info-data may know it)"),
            release: name,
            state: State::Unknown,
            since: None,
            until: None,
            data,
        },
    };
    let packages = match row.filter(|_| family == "debian") {
        Some(_) if release.state == State::Development => {
            not_checked("a development release has no security support".into())
        }
        Some(r) => packages(inv, src, &r.version, today)?,
        None if family == "debian" => not_checked("the release is not in the table".into()),
        None => not_checked(format!("no security-support lists for {family}")),
    };
    Ok(Support { release, packages })
}

fn not_checked(why: String) -> PackageCheck {
    PackageCheck {
        lists: Vec::new(),
        not_checked: Some(why),
        packages: Vec::new(),
    }
}

/// The release table of `family` (`debian`, `ubuntu`): named, host's, or shipped.
fn table(family: &str, src: &Sources) -> Result<Option<(String, Vec<Release>)>> {
    let (file, shipped) = match family {
        "debian" => ("debian.csv", SHIPPED_DEBIAN),
        "ubuntu" => ("ubuntu.csv", SHIPPED_UBUNTU),
        _ => return Ok(None),
    };
    let named = src.distro_info.is_some();
    let path = src
        .distro_info
        .as_deref()
        .unwrap_or(Path::new(HOST_DISTRO_INFO))
        .join(file);
    let (data, bytes) = match std::fs::read(&path) {
        Ok(b) => (path.display().to_string(), b),
        Err(e) if named || e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Read {
                file: path.display().to_string(),
                source: e,
                fix: FIX_DISTRO_INFO,
            })
        }
        Err(_) => (
            format!("build-distro's copy of {SHIPPED_FROM} (install distro-info-data for current dates)"),
            shipped.as_bytes().to_vec(),
        ),
    };
    let rows = distro_info::parse(&data, &bytes)?;
    Ok(Some((data, rows)))
}

/// Where `r` stands on `today`.
fn window(name: &str, family: &str, r: &Release, today: &str, data: String) -> ReleaseSupport {
    let past = |d: &Option<String>| d.as_deref().is_some_and(|d| d <= today);
    let released = past(&r.release);
    // Ubuntu's regular support is the longer of the desktop's and the server's.
    let eol = match family {
        "ubuntu" => r.eol.clone().max(r.eol_server.clone()),
        _ => r.eol.clone(),
    };
    let (state, since, until) = if !released {
        (State::Development, None, None)
    } else if !past(&eol) {
        (State::Supported, None, eol.clone())
    } else if r.eol_lts.is_some() && !past(&r.eol_lts) {
        (State::Lts, eol.clone(), r.eol_lts.clone())
    } else {
        (State::EndOfLife, r.eol_lts.clone().or(eol.clone()), None)
    };
    let (vendor, commercial) = match family {
        "ubuntu" => (
            "Ubuntu",
            r.eol_esm.as_ref().map(|d| ("ESM, part of Ubuntu Pro", d)),
        ),
        _ => (
            "Debian",
            r.eol_elts
                .as_ref()
                .map(|d| ("ELTS, a commercial offer outside Debian,", d)),
        ),
    };
    let commercial = commercial.filter(|(_, d)| d.as_str() > today);
    let message = match state {
        State::Development => format!(
            "{name}: a development release, not covered by security support (fixes arrive as new versions)"
        ),
        State::Supported => match (&until, &r.eol_lts) {
            (Some(u), Some(l)) => format!("{name}: supported until {u}, then LTS until {l}"),
            (Some(u), None) => format!("{name}: supported until {u}"),
            (None, _) => format!("{name}: supported (no end date announced yet)"),
        },
        State::Lts => format!(
            "{name}: LTS only since {}, until {} (Debian LTS covers only part of the archive; move to a supported release)",
            since.as_deref().unwrap_or("?"),
            until.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "{name}: end of life since {}: no more security updates from {vendor}{}; rebuild on a supported release",
            since.as_deref().unwrap_or("?"),
            commercial
                .map(|(what, d)| format!(" ({what} runs until {d})"))
                .unwrap_or_default()
        ),
    };
    ReleaseSupport {
        release: name.to_string(),
        state,
        since,
        until,
        data,
        message,
    }
}

/// The installed packages that Debian `major`'s lists name.
fn packages(inv: &Inventory, src: &Sources, major: &str, today: &str) -> Result<PackageCheck> {
    let Some((lists, entries)) = lists(src, major)? else {
        let from = match &src.packaged {
            Some(l) => l.origin.clone(),
            None => HOST_SECURITY_SUPPORT.to_string(),
        };
        return Ok(not_checked(format!(
            "{from} has no list for Debian {major} (install that release's debian-security-support)"
        )));
    };
    let matchers: Vec<(regex::Regex, &Entry)> = entries
        .iter()
        .filter_map(|e| security_support::matcher(&e.pattern).ok().map(|m| (m, e)))
        .collect();
    let mut found = Vec::new();
    for p in &inv.packages {
        let source = p.source.clone().unwrap_or_else(|| p.name.clone());
        // As check-support-status: a `supported` entry is an exception that wins over
        // any pattern; otherwise the first entry naming the source decides.
        let named: Vec<&Entry> = matchers
            .iter()
            .filter(|(m, _)| m.is_match(&source))
            .map(|(_, e)| *e)
            .collect();
        if named.iter().any(|e| e.kind == Kind::Supported) {
            continue;
        }
        let Some(e) = named.first() else {
            continue;
        };
        let status = match e.kind {
            Kind::Supported => continue,
            Kind::Limited => PackageState::Limited,
            Kind::NonSupported if e.date.as_deref().is_some_and(|d| d <= today) => {
                PackageState::Ended
            }
            Kind::NonSupported => PackageState::Ends,
        };
        found.push(PackageSupport {
            package: p.name.clone(),
            version: p.version.clone(),
            source,
            status,
            date: e.date.clone(),
            details: e.details.clone(),
        });
    }
    found.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(PackageCheck {
        lists,
        not_checked: None,
        packages: found,
    })
}

/// Debian `major`'s lists in either layout, and the files read; `None` when the host's
/// directory has none for it.
fn lists(src: &Sources, major: &str) -> Result<Option<(Vec<String>, Vec<Entry>)>> {
    let named = src.security_support.is_some();
    let dir = src
        .security_support
        .as_deref()
        .unwrap_or(Path::new(HOST_SECURITY_SUPPORT));
    let read = |name: &str| -> Result<Option<(String, String)>> {
        if let (false, Some(l)) = (named, &src.packaged) {
            return Ok(l
                .files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, text)| (format!("{}:{LISTS_DIR}/{n}", l.origin), text.clone())));
        }
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some((
                path.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Read {
                file: path.display().to_string(),
                source: e,
                fix: FIX_SECURITY_SUPPORT,
            }),
        }
    };
    if let Some((file, text)) = read(&format!("security-support.deb{major}"))? {
        let entries = security_support::parse_combined(&file, &text)?;
        return Ok(Some((vec![file], entries)));
    }
    let ended = read(&format!("security-support-ended.deb{major}"))?;
    let limited = read("security-support-limited")?;
    match (ended, limited) {
        (Some((ef, et)), Some((lf, lt))) => {
            let mut entries = security_support::parse_ended(&ef, &et)?;
            entries.extend(security_support::parse_limited(&lf, &lt)?);
            Ok(Some((vec![ef, lf], entries)))
        }
        _ if named => Err(Error::Read {
            file: dir
                .join(format!("security-support.deb{major}"))
                .display()
                .to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no list for Debian {major} (neither this file nor security-support-ended.deb{major} with security-support-limited)"
                ),
            ),
            fix: FIX_SECURITY_SUPPORT,
        }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
