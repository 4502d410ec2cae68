//! Reader of a Debian archive's `InRelease` (or `Release`) file: who published the suite
//! (Origin, Suite, Codename), when (Date, Valid-Until), and the SHA-256 and size of every
//! index file it vouches for. Plain data from the bytes it is given; verifying the
//! signature is the client's job ([`super::client`]), which hands this reader the text
//! gpgv says was signed.

use super::Error;

/// One index file the release lists (`main/binary-amd64/Packages.xz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    /// Relative to the suite's `dists/SUITE/` directory.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The parsed release file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub version: Option<String>,
    /// As written (RFC 2822 date, UTC).
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// The mirror serves index files under `by-hash/SHA256/<hash>` too.
    pub acquire_by_hash: bool,
    /// `NotAutomatic: yes` (experimental, backports): apt never upgrades to it by itself.
    pub not_automatic: bool,
    pub sha256: Vec<FileHash>,
}

impl Release {
    /// The entry for `path`, if the release lists it.
    pub fn file(&self, path: &str) -> Option<&FileHash> {
        self.sha256.iter().find(|f| f.path == path)
    }

    /// `Valid-Until` as seconds since the epoch (`None` when absent or unreadable).
    pub fn valid_until_epoch(&self) -> Option<i64> {
        self.valid_until.as_deref().and_then(parse_date)
    }
}

/// The signed text of a clear-signed message (dash-escaping undone); the input itself when
/// it is not clear-signed (a plain `Release`, or gpgv's verified output).
pub fn signed_text(text: &str) -> Result<String, Error> {
    const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.trim_end() == BEGIN => {}
        _ => return Ok(text.to_string()),
    }
    // Armor headers ("Hash: SHA512") end at the first empty line.
    for l in lines.by_ref() {
        if l.trim_end().is_empty() {
            break;
        }
    }
    let mut out = String::with_capacity(text.len());
    for l in lines {
        if l.trim_end() == "-----BEGIN PGP SIGNATURE-----" {
            return Ok(out);
        }
        out.push_str(l.strip_prefix("- ").unwrap_or(l));
        out.push('\n');
    }
    Err(Error::Parse {
        what: "InRelease".into(),
        msg: "clear-signed message without a signature block".into(),
    })
}

/// Parse a release file (clear-signed or not).
pub fn parse(bytes: &[u8]) -> Result<Release, Error> {
    let bad = |msg: String| Error::Parse {
        what: "InRelease".into(),
        msg,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let text = signed_text(text)?;
    let doc: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e| bad(format!("not a deb822 document: {e}")))?;
    let p = doc.iter().next().ok_or_else(|| bad("no fields".into()))?;
    let get = |k: &str| {
        p.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let words = |k: &str| -> Vec<String> {
        get(k)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let yes = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let mut sha256 = Vec::new();
    for line in p.get("SHA256").unwrap_or("").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => continue,
            [hash, size, path] => {
                let size = size
                    .parse()
                    .map_err(|_| bad(format!("SHA256 line {line:?}: size is not a number")))?;
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!("SHA256 line {line:?}: not a SHA-256 digest")));
                }
                sha256.push(FileHash {
                    path: path.to_string(),
                    size,
                    sha256: hash.to_ascii_lowercase(),
                });
            }
            _ => {
                return Err(bad(format!(
                    "SHA256 line {line:?}: expected HASH SIZE PATH"
                )))
            }
        }
    }
    if sha256.is_empty() {
        return Err(bad("no SHA256 file list".into()));
    }
    Ok(Release {
        origin: get("Origin"),
        label: get("Label"),
        suite: get("Suite"),
        codename: get("Codename"),
        version: get("Version"),
        date: get("Date"),
        valid_until: get("Valid-Until"),
        components: words("Components"),
        architectures: words("Architectures"),
        acquire_by_hash: yes("Acquire-By-Hash"),
        not_automatic: yes("NotAutomatic"),
        sha256,
    })
}

/// An RFC 2822 date as the archive writes it (`Sat, 11 Jul 2026 10:16:37 UTC`), in seconds
/// since the epoch. Only UTC/GMT/+0000 are accepted: that is what dak and reprepro write.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let f: Vec<&str> = s.split_whitespace().collect();
    let [day, month, year, time, zone] = f.as_slice() else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT" | "+0000" | "Z") {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let mut t = time.split(':').map(|x| x.parse::<i64>());
    let (h, m, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Origin: Debian
Label: Debian-Security
Suite: oldstable-security
Version: 12
Codename: bookworm-security
Date: Mon, 30 Nov 2026 00:22:33 UTC
Valid-Until: Mon, 07 Dec 2026 00:22:33 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64 i386
Components: updates/main updates/contrib
Description: Debian 12 - Security Updates
- -Odd: dash-escaped line
MD5Sum:
 d41d8cd98f00b204e9800998ecf8427e        0 main/binary-amd64/Packages
SHA256:
 f9bb50b06e18c3a5e7e3fdece5d6d351ff9a39acac205ebfa7948b56bc1e91a4  2563447 main/binary-amd64/Packages
 C49617C0B30619D7403F5E66DE60AEEB47C6488262E4327418830D0D6E83500A   383968 main/binary-amd64/Packages.xz
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEE...
-----END PGP SIGNATURE-----
";

    #[test]
    fn clear_signed_release_parses() {
        let r = parse(SIGNED.as_bytes()).unwrap();
        assert_eq!(r.origin.as_deref(), Some("Debian"));
        assert_eq!(r.label.as_deref(), Some("Debian-Security"));
        assert_eq!(r.suite.as_deref(), Some("oldstable-security"));
        assert_eq!(r.codename.as_deref(), Some("bookworm-security"));
        assert_eq!(r.version.as_deref(), Some("12"));
        assert!(r.acquire_by_hash);
        assert!(!r.not_automatic);
        assert_eq!(r.components, ["updates/main", "updates/contrib"]);
        assert_eq!(r.architectures, ["amd64", "arm64", "i386"]);
        assert_eq!(r.sha256.len(), 2);
        let xz = r.file("main/binary-amd64/Packages.xz").unwrap();
        assert_eq!(xz.size, 383968);
        assert_eq!(
            xz.sha256, "c49617c0b30619d7403f5e66de60aeeb47c6488262e4327418830d0d6e83500a",
            "hashes are normalised to lowercase"
        );
        assert_eq!(r.file("main/binary-i386/Packages"), None);
        assert_eq!(r.valid_until_epoch(), Some(1_796_602_953));
    }

    #[test]
    fn dash_escaping_is_undone_and_signature_dropped() {
        let t = signed_text(SIGNED).unwrap();
        assert!(t.starts_with("Origin: Debian\n"));
        assert!(t.contains("\n-Odd: dash-escaped line\n"));
        assert!(!t.contains("PGP"));
        let unsigned = "Origin: X\nSHA256:\n ".to_string() + &"a".repeat(64) + " 1 f\n";
        assert_eq!(signed_text(&unsigned).unwrap(), unsigned);
        assert_eq!(parse(unsigned.as_bytes()).unwrap().sha256[0].path, "f");
        let backports = format!("NotAutomatic: yes\n{}", &unsigned["Origin: X\n".len()..]);
        assert!(parse(backports.as_bytes()).unwrap().not_automatic);
    }

    #[test]
    fn broken_releases_are_refused() {
        let cut = SIGNED.split("-----BEGIN PGP SIGNATURE").next().unwrap();
        assert!(parse(cut.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("signature block"));
        assert!(parse(b"Origin: Debian\n")
            .unwrap_err()
            .to_string()
            .contains("no SHA256"));
        let bad_size = "SHA256:\n ".to_string() + &"a".repeat(64) + " big f\n";
        assert!(parse(bad_size.as_bytes()).is_err());
        let short = "SHA256:\n abc 1 f\n";
        assert!(parse(short.as_bytes()).is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        assert_eq!(
            parse_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        assert_eq!(parse_date("11 Jul 2026 10:16:37 +0200"), None);
        assert_eq!(parse_date("yesterday"), None);
    }
}
