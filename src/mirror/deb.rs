//! Reader of a binary package (`.deb`) for `outdated`'s CVE IDs: the `ar` container's
//! `data.tar.*` member, decompressed as its name says, searched for the package's
//! `usr/share/doc/PACKAGE/changelog.Debian.gz` (`changelog.gz` for a native package,
//! whose Debian changelog is its only one, as Debian policy 12.7 names them). Packages built from one source often ship
//! their doc directory as a symlink to a sibling's (`dh_installdocs --link-doc`); the
//! answer then names the sibling, whose package holds the changelog. Bytes in, data out:
//! the client fetches and verifies the package.

use std::io::Read;

use super::Error;

/// What a package says about its changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    /// The changelog as stored (gzip; the caller decompresses and caches it).
    Changelog(Vec<u8>),
    /// The doc directory (or the changelog) links to this package's.
    Link(String),
    /// Neither.
    Missing,
}

/// The name of a package's Debian changelog in its doc directory: `changelog.gz` when
/// the source is native (its version has no Debian revision), else `changelog.Debian.gz`.
pub fn changelog_name(source_version: &str) -> &'static str {
    if source_version.contains('-') {
        "changelog.Debian.gz"
    } else {
        "changelog.gz"
    }
}

/// Find `package`'s changelog, named `name` (see [`changelog_name`]), in the `.deb`
/// `deb`; `what` names it in errors (its URL).
pub fn changelog(what: &str, deb: &[u8], package: &str, name: &str) -> Result<Doc, Error> {
    data_tar(what, deb, |reader| find(reader, package, name))
}

/// The regular files directly in the directory `dir` (`usr/share/debian-security-support`)
/// of the `.deb` `deb`, by file name; `what` names it in errors.
pub fn files_in(what: &str, deb: &[u8], dir: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    data_tar(what, deb, |reader| {
        let mut out = Vec::new();
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./");
            let Some(name) = path.strip_prefix(dir).and_then(|p| p.strip_prefix('/')) else {
                continue;
            };
            if name.is_empty() || name.contains('/') || !entry.header().entry_type().is_file() {
                continue;
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            out.push((name.to_string(), bytes));
        }
        Ok(out)
    })
}

/// `read` over the decompressed `data.tar.*` member of the `.deb` `deb`.
fn data_tar<T>(
    what: &str,
    deb: &[u8],
    read: impl FnOnce(Box<dyn Read + '_>) -> std::io::Result<T>,
) -> Result<T, Error> {
    let bad = |msg: String| Error::Parse {
        what: what.to_string(),
        msg,
    };
    let mut ar = ar::Archive::new(deb);
    while let Some(member) = ar.next_entry() {
        let member = member.map_err(|e| bad(format!("not a .deb (ar archive): {e}")))?;
        let member_name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        let Some(compression) = member_name.strip_prefix("data.tar") else {
            continue;
        };
        let reader: Box<dyn Read + '_> = match compression {
            ".xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(member)),
            ".zst" => Box::new(
                zstd::stream::read::Decoder::new(member)
                    .map_err(|e| bad(format!("{member_name}: {e}")))?,
            ),
            ".gz" => Box::new(flate2::read::MultiGzDecoder::new(member)),
            "" => Box::new(member),
            other => return Err(bad(format!("{member_name}: unknown compression {other:?}"))),
        };
        return read(reader).map_err(|e| bad(format!("{member_name}: {e}")));
    }
    Err(bad("no data.tar member: not a binary package".into()))
}

/// Walk the data tar for the doc directory of `package`.
fn find(reader: impl Read, package: &str, name: &str) -> std::io::Result<Doc> {
    let dir = format!("usr/share/doc/{package}");
    let file = format!("{dir}/{name}");
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").trim_matches('/');
        if path != dir && path != file {
            continue;
        }
        if entry.header().entry_type().is_symlink() {
            let target = entry
                .link_name()?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(other) = linked_package(path == dir, &target, name) {
                if other != package {
                    return Ok(Doc::Link(other));
                }
            }
        } else if path == file && entry.header().entry_type().is_file() {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            return Ok(Doc::Changelog(bytes));
        }
    }
    Ok(Doc::Missing)
}

/// The package a doc-dir symlink points to: `openssl`, `../openssl`,
/// `/usr/share/doc/openssl` for the directory; `../openssl/changelog.Debian.gz` for the
/// file. Anything else (a path out of the doc tree) is no sibling.
fn linked_package(is_dir: bool, target: &str, name: &str) -> Option<String> {
    let t = target
        .strip_prefix("/usr/share/doc/")
        .or_else(|| target.strip_prefix("../"))
        .unwrap_or(target)
        .trim_end_matches('/');
    let name = if is_dir {
        t
    } else {
        t.strip_suffix(name)?.strip_suffix('/')?
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "changelog.Debian.gz";

    /// A .deb built in memory: debian-binary, control.tar.gz, data.tar.xz of `files`
    /// (`(path, Some(bytes))` a file, `(path, None)` given a symlink target in `links`).
    fn deb(files: &[(&str, &[u8])], links: &[(&str, &str)], data_name: &str) -> Vec<u8> {
        let mut data = tar::Builder::new(Vec::new());
        for (p, b) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(b.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            data.append_data(&mut h, p, *b).unwrap();
        }
        for (p, t) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            data.append_link(&mut h, p, t).unwrap();
        }
        let data = data.into_inner().unwrap();
        let data = match data_name {
            "data.tar.xz" => {
                let mut out = Vec::new();
                liblzma::read::XzEncoder::new(&data[..], 1)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            "data.tar.zst" => zstd::encode_all(&data[..], 1).unwrap(),
            _ => data,
        };
        let mut ar = ar::Builder::new(Vec::new());
        for (name, bytes) in [
            ("debian-binary", &b"2.0\n"[..]),
            ("control.tar", &b""[..]),
            (data_name, &data[..]),
        ] {
            ar.append(
                &ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64),
                bytes,
            )
            .unwrap();
        }
        ar.into_inner().unwrap()
    }

    #[test]
    fn the_changelog_of_the_package_itself() {
        for data in ["data.tar.xz", "data.tar.zst", "data.tar"] {
            let d = deb(
                &[
                    ("./usr/share/doc/other/changelog.Debian.gz", b"no"),
                    ("./usr/share/doc/openssl/changelog.Debian.gz", b"gz bytes"),
                ],
                &[],
                data,
            );
            assert_eq!(
                changelog("u", &d, "openssl", D).unwrap(),
                Doc::Changelog(b"gz bytes".to_vec()),
                "{data}"
            );
            assert_eq!(changelog("u", &d, "nothere", D).unwrap(), Doc::Missing);
        }
        // A native package: changelog.gz is its Debian changelog.
        let d = deb(
            &[("./usr/share/doc/apt/changelog.gz", b"native")],
            &[],
            "data.tar.xz",
        );
        assert_eq!(changelog_name("2.6.2"), "changelog.gz");
        assert_eq!(changelog_name("1:3.0.17-1~deb12u3"), D);
        assert_eq!(
            changelog("u", &d, "apt", changelog_name("2.6.2")).unwrap(),
            Doc::Changelog(b"native".to_vec())
        );
        assert_eq!(changelog("u", &d, "apt", D).unwrap(), Doc::Missing);
    }

    #[test]
    fn a_linked_doc_directory_names_the_sibling() {
        let d = deb(
            &[("./usr/share/doc/libssl3/README", b"x")],
            &[
                ("./usr/share/doc/libssl-dev", "libssl3"),
                ("./usr/share/doc/libfoo", "../openssl"),
                (
                    "./usr/share/doc/libbar/changelog.Debian.gz",
                    "../baz/changelog.Debian.gz",
                ),
                ("./usr/share/doc/evil", "/etc"),
            ],
            "data.tar.xz",
        );
        assert_eq!(
            changelog("u", &d, "libssl-dev", D).unwrap(),
            Doc::Link("libssl3".into())
        );
        assert_eq!(
            changelog("u", &d, "libfoo", D).unwrap(),
            Doc::Link("openssl".into())
        );
        assert_eq!(
            changelog("u", &d, "libbar", D).unwrap(),
            Doc::Link("baz".into())
        );
        assert_eq!(changelog("u", &d, "evil", D).unwrap(), Doc::Missing);
        assert_eq!(changelog("u", &d, "libssl3", D).unwrap(), Doc::Missing);
    }

    #[test]
    fn not_a_deb_is_an_error_naming_it() {
        let e = changelog("http://m/x.deb", b"garbage", "x", D)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http://m/x.deb: "), "{e}");
        let e = changelog("u", &deb(&[], &[], "data.tar.bz3"), "x", D)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown compression"), "{e}");
    }
}
