//! Reader of dpkg's status file (`/var/lib/dpkg/status`): deb822 paragraphs, one per
//! package dpkg knows of. Only packages whose files are on disk count as installed
//! (`Status: … ok installed`); removed packages that left their configuration behind and
//! half-installed ones do not. Plain data from bytes; the caller finds the file.

use deb822_fast::Deb822;

use super::{Package, ParseError};

/// The installed packages of a dpkg status file, in file order. A `Foreign` and a native
/// package of the same name (multi-arch) are two entries.
pub fn parse_status(text: &str) -> Result<Vec<Package>, ParseError> {
    // dpkg ends every paragraph with a newline: a file that stops mid-line was cut short,
    // and its last package would come out with a wrong version.
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ParseError(
            "ends in the middle of a line: the file is truncated".into(),
        ));
    }
    let doc: Deb822 = text
        .parse()
        .map_err(|e| ParseError(format!("not a dpkg status file: {e}")))?;
    let mut out = Vec::new();
    for (i, para) in doc.iter().enumerate() {
        let field = |name: &str| para.get(name).map(str::trim).filter(|v| !v.is_empty());
        let what = || match field("Package") {
            Some(p) => format!("package {p}"),
            None => format!("paragraph {}", i + 1),
        };
        let need = |name: &str| {
            field(name).ok_or_else(|| {
                ParseError(format!(
                    "{} has no {name} field: the file is truncated or not a dpkg status file",
                    what()
                ))
            })
        };
        let name = need("Package")?;
        let status = need("Status")?;
        if !is_installed(status) {
            continue;
        }
        let version = need("Version")?;
        let arch = need("Architecture")?;
        let (source, source_version) = match field("Source") {
            Some(s) => parse_source(s).map_err(|e| ParseError(format!("{}: {}", what(), e.0)))?,
            None => (name, None),
        };
        out.push(Package {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            source: (source != name).then(|| source.to_string()),
            source_version: source_version.filter(|v| *v != version).map(str::to_string),
            license: None,
        });
    }
    Ok(out)
}

/// `Status: WANT FLAG STATE`: the files are on disk when the state is `installed` and no
/// error flag is set (`install ok installed`, or `hold ok installed` for a held package).
fn is_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), [_, "ok", "installed"])
}

/// `Source: NAME` or `Source: NAME (VERSION)` (the latter when a binNMU or a package built
/// from a differently versioned source gives the binary another version).
fn parse_source(s: &str) -> Result<(&str, Option<&str>), ParseError> {
    match s.split_once('(') {
        None if !s.contains(char::is_whitespace) => Ok((s, None)),
        Some((name, rest)) if rest.ends_with(')') => {
            let name = name.trim();
            let version = rest[..rest.len() - 1].trim();
            if name.is_empty() || name.contains(char::is_whitespace) || version.is_empty() {
                return Err(ParseError(format!("bad Source field {s:?}")));
            }
            Ok((name, Some(version)))
        }
        _ => Err(ParseError(format!("bad Source field {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u7
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 A continuation paragraph.

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u7

Package: perl-base
Status: hold ok installed
Architecture: amd64
Source: perl
Version: 5.36.0-7+deb12u1

Package: old-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14

Package: libbinnmu1
Status: install ok installed
Architecture: amd64
Source: binnmu (1:2.0-3)
Version: 1:2.0-3+b1

Package: bash
Status: install ok half-configured
Architecture: amd64
Version: 5.2.15-2+b2

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
";

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
    fn installed_packages_with_sources_and_both_arches() {
        let got = parse_status(STATUS).unwrap();
        assert_eq!(
            got,
            vec![
                pkg("libc6", "2.36-9+deb12u7", "amd64", Some("glibc"), None),
                pkg("libc6", "2.36-9+deb12u7", "i386", Some("glibc"), None),
                pkg("perl-base", "5.36.0-7+deb12u1", "amd64", Some("perl"), None),
                // Same version as the binary: nothing to record.
                pkg("libgcc-s1", "12.2.0-14", "amd64", Some("gcc-12"), None),
                // A binNMU: same source name, another version.
                pkg(
                    "libbinnmu1",
                    "1:2.0-3+b1",
                    "amd64",
                    Some("binnmu"),
                    Some("1:2.0-3")
                ),
                pkg("tzdata", "2024a-0+deb12u1", "all", None, None),
            ]
        );
    }

    #[test]
    fn empty_file_has_no_packages() {
        assert_eq!(parse_status("").unwrap(), vec![]);
    }

    #[test]
    fn truncated_file_is_refused() {
        // Cut inside the last paragraph's Version line.
        let cut = &STATUS[..STATUS.rfind("2024a").unwrap() + 2];
        let e = parse_status(cut).unwrap_err();
        assert!(e.0.contains("truncated"), "{e}");
        // Cut at a line end, before the Version field.
        let cut = &STATUS[..STATUS.rfind("Version: 2024a").unwrap()];
        let e = parse_status(cut).unwrap_err();
        assert_eq!(
            e.0,
            "package tzdata has no Version field: the file is truncated or not a dpkg status file"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let e = parse_status("\x7fELF\x02\x01\x01\0\0\0\n\0\0garbage\n").unwrap_err();
        assert!(e.0.starts_with("not a dpkg status file"), "{e}");
        let e = parse_status("Package: x\n").unwrap_err();
        assert!(e.0.contains("package x has no Status field"), "{e}");
        let e = parse_status("Package: x\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nSource: a b c\n").unwrap_err();
        assert!(e.0.contains("bad Source field"), "{e}");
    }
}
