//! Version order of the two package managers `outdated` knows: dpkg's (epochs, `~` before
//! everything, `+debNuM` point releases) through the `debversion` crate, and apk's (see
//! [`super::apkver`]). One entry point, [`compare`], so callers never pick the rules
//! themselves.

use std::cmp::Ordering;

use serde::Serialize;

/// Which package manager's database the inventory came from (defined here, with the
/// orders, so the mirror readers need nothing of `inventory`, which re-exports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// dpkg (`/var/lib/dpkg/status`): Debian, Ubuntu and their derivatives.
    Deb,
    /// apk (`/lib/apk/db/installed`): Alpine.
    Apk,
}

/// Order two versions by the rules of `eco`'s package manager. A version the rules cannot
/// parse sorts by its bytes, so a malformed string never hides or invents an update silently
/// (the caller reports what it compared).
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    match eco {
        Ecosystem::Deb => match (deb(a), deb(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.cmp(b),
        },
        Ecosystem::Apk => match (
            super::apkver::Version::parse(a),
            super::apkver::Version::parse(b),
        ) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.cmp(b),
        },
    }
}

fn deb(v: &str) -> Option<debversion::Version> {
    v.parse()
        .ok()
        .or_else(|| debversion::Version::parse_lenient(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// Vectors of dpkg's documented order (deb-version(7)), plus the shapes Debian's
    /// point releases and security uploads actually use.
    #[test]
    fn dpkg_order() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.9", "1.10", Less),
            ("1:0.1", "9.9", Greater),
            ("2:1.0", "1:9.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("3.0.11-1~deb12u2", "3.0.17-1~deb12u3", Less),
            ("3.0.17-1~deb12u2", "3.0.17-1~deb12u3", Less),
            ("3.0.17-1~deb12u3", "3.0.17-1", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", Less),
            ("5.36.0-7+deb12u1", "5.36.0-7+deb12u2", Less),
            ("2024a-0+deb12u1", "2025b-0+deb12u1", Less),
            ("1.0-1", "1.0-1.1", Less),
            ("1.0-1+b1", "1.0-1.1", Less),
            ("9.1p1-2", "9.1p1-10", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(Ecosystem::Deb, a, b), want, "{a} vs {b}");
            assert_eq!(compare(Ecosystem::Deb, b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn unparsable_versions_fall_back_to_bytes() {
        assert_eq!(compare(Ecosystem::Deb, "", "1"), Less);
        assert_eq!(compare(Ecosystem::Apk, "x!", "y!"), Less);
    }
}
