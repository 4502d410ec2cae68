//! Reader of a Debian `Packages` index (the uncompressed stanzas): for each binary package
//! its name, version, architecture, source package, and where its `.deb` is with its size
//! and SHA-256 (what `outdated` verifies a fetched package against). It streams from the reader it is
//! given, one stanza at a time, so the 50 MB index of a full suite never sits in memory;
//! it opens nothing itself (the client decompresses and hands it the bytes).

use std::io::BufRead;

use super::Error;

/// One stanza of the index, the fields `outdated` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `Source:` without its optional `(version)`; `None` when it is the package's name.
    pub source: Option<String>,
    /// The `(version)` of `Source:`, when it differs from the package's (a binNMU).
    pub source_version: Option<String>,
    /// `Filename`, `Size`, `SHA256`: `None` when the stanza lacks any of them.
    pub file: Option<DebFile>,
}

/// Where a binary package is in the archive, and what the signed index says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebFile {
    /// `pool/main/o/openssl/openssl_3.0.17-1~deb12u3_amd64.deb`, under the archive root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// The stanzas of `reader`, in order. A stanza without `Package` or `Version` is an
/// error (a truncated or foreign file), not something to skip silently.
pub fn entries<R: BufRead>(reader: R) -> impl Iterator<Item = Result<Entry, Error>> {
    deb822_fast::Deb822::iter_paragraphs_from_reader(reader).map(|p| {
        let p = p.map_err(|e| Error::Parse {
            what: "Packages index".into(),
            msg: e.to_string(),
        })?;
        entry(|k| p.get(k))
    })
}

/// Build an entry from a stanza's field lookup.
fn entry<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Entry, Error> {
    let field = |k: &str| get(k).map(str::trim).filter(|v| !v.is_empty());
    let package = field("Package").ok_or_else(|| Error::Parse {
        what: "Packages index".into(),
        msg: "a stanza has no Package field".into(),
    })?;
    let version = field("Version").ok_or_else(|| Error::Parse {
        what: "Packages index".into(),
        msg: format!("package {package} has no Version field"),
    })?;
    let mut src = field("Source").unwrap_or("").split_whitespace();
    let source = src.next().filter(|s| *s != package).map(str::to_string);
    let source_version = src
        .next()
        .and_then(|v| v.strip_prefix('(')?.strip_suffix(')'))
        .filter(|v| *v != version)
        .map(str::to_string);
    let file = match (field("Filename"), field("Size"), field("SHA256")) {
        (Some(f), Some(size), Some(sha)) => size.parse().ok().map(|size| DebFile {
            filename: f.to_string(),
            size,
            sha256: sha.to_ascii_lowercase(),
        }),
        _ => None,
    };
    Ok(Entry {
        package: package.to_string(),
        version: version.to_string(),
        architecture: field("Architecture").unwrap_or("all").to_string(),
        source,
        source_version,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: libssl3
Source: openssl
Version: 3.0.17-1~deb12u3
Architecture: amd64
Filename: pool/updates/main/o/openssl/libssl3_3.0.17-1~deb12u3_amd64.deb
Size: 2032744
SHA256: 0FA1c0ffee
Description: Secure Sockets Layer toolkit
 This package is part of the OpenSSL project.
 .
 A continuation line: Version: 9 must not count.

Package: tzdata
Version: 2025b-0+deb12u1
Architecture: all

Package: libpython3.11-minimal
Source: python3.11 (3.11.2-6+deb12u6)
Version: 3.11.2-6+deb12u6+b1
Architecture: amd64
";

    #[test]
    fn stanzas_become_entries() {
        let got: Vec<Entry> = entries(INDEX.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Entry {
                package: "libssl3".into(),
                version: "3.0.17-1~deb12u3".into(),
                architecture: "amd64".into(),
                source: Some("openssl".into()),
                source_version: None,
                file: Some(DebFile {
                    filename: "pool/updates/main/o/openssl/libssl3_3.0.17-1~deb12u3_amd64.deb"
                        .into(),
                    size: 2032744,
                    sha256: "0fa1c0ffee".into(),
                }),
            }
        );
        assert_eq!(got[1].architecture, "all");
        assert_eq!(got[1].source, None);
        assert_eq!(got[1].file, None, "no Filename: no file");
        assert_eq!(
            got[2].source.as_deref(),
            Some("python3.11"),
            "version stripped"
        );
        assert_eq!(got[2].source_version.as_deref(), Some("3.11.2-6+deb12u6"));
    }

    #[test]
    fn a_stanza_without_version_is_an_error() {
        let bad = "Package: a\nVersion: 1\n\nPackage: b\nArchitecture: all\n";
        let got: Vec<_> = entries(bad.as_bytes()).collect();
        assert!(got[0].is_ok());
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("package b has no Version"), "{e}");
        let e = entries("Version: 1\n".as_bytes())
            .next()
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("no Package field"));
    }
}
