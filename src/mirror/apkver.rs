//! Alpine's version order (apk-tools), written from its documented rules since no
//! maintained crate implements it. A version is
//! `NUMBER(.NUMBER)*[letter](_SUFFIX[NUMBER])*[~HASH][-rREVISION]`, compared part by part:
//!
//! - numbers numerically, left to right; more numbers win (`1.0.1 > 1.0`). A number after
//!   the first that starts with `0` compares as a decimal fraction, by its digits
//!   (`1.01 < 1.1`), as apk does;
//! - then the optional letter (`1.0a > 1.0`, `1.0b > 1.0a`);
//! - then the suffixes: `_alpha < _beta < _pre < _rc` are pre-releases, older than the
//!   plain version; `_cvs < _svn < _git < _hg < _p` are post-releases, newer; a suffix's
//!   number breaks ties (`_rc1 < _rc2`, `_p < _p0`); an extra suffix makes a version
//!   older when it is a pre-release and newer otherwise;
//! - then the commit hash's presence, then the package revision `-rN` (`-r10 > -r9`;
//!   any revision beats none).
//!
//! Each step only runs when all earlier parts are equal, so `1.0_p1-r0 > 1.0-r5`.

use std::cmp::Ordering;

/// Pre-release suffixes, oldest first, then post-release ones.
const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// A parsed apk version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: Vec<String>,
    letter: Option<u8>,
    /// (rank, number): rank < 0 for pre-release suffixes.
    suffixes: Vec<(i8, Option<String>)>,
    hash: Option<String>,
    revision: Option<String>,
}

fn digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Integers of any length, by value.
fn cmp_int(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_opt_int(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => cmp_int(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

impl Version {
    /// `None` when `s` is not a valid apk version.
    pub fn parse(s: &str) -> Option<Version> {
        let (main, revision) = match s.rsplit_once("-r") {
            Some((m, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
                (m, Some(r.to_string()))
            }
            _ if s.contains('-') => return None,
            _ => (s, None),
        };
        let (main, hash) = match main.split_once('~') {
            Some((m, h)) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                (m, Some(h.to_string()))
            }
            Some(_) => return None,
            None => (main, None),
        };
        let mut numbers = Vec::new();
        let mut rest = main;
        loop {
            let (n, r) = digits(rest);
            if n.is_empty() {
                return None;
            }
            numbers.push(n.to_string());
            match r.strip_prefix('.') {
                Some(r) => rest = r,
                None => {
                    rest = r;
                    break;
                }
            }
        }
        let mut letter = None;
        if let Some(&c) = rest.as_bytes().first() {
            if c.is_ascii_lowercase() {
                letter = Some(c);
                rest = &rest[1..];
            }
        }
        let mut suffixes = Vec::new();
        while let Some(r) = rest.strip_prefix('_') {
            let end = r.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(r.len());
            let (name, r) = r.split_at(end);
            let rank = if let Some(i) = PRE.iter().position(|p| *p == name) {
                i as i8 - PRE.len() as i8
            } else {
                POST.iter().position(|p| *p == name)? as i8
            };
            let (n, r) = digits(r);
            suffixes.push((rank, (!n.is_empty()).then(|| n.to_string())));
            rest = r;
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Version {
            numbers,
            letter,
            suffixes,
            hash,
            revision,
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            let o = if i > 0 && (a.starts_with('0') || b.starts_with('0')) {
                // A fraction: compare the digits as written.
                a.as_str().cmp(b.as_str())
            } else {
                cmp_int(a, b)
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = self.numbers.len().cmp(&other.numbers.len());
        if o != Ordering::Equal {
            return o;
        }
        let o = match (self.letter, other.letter) {
            (Some(a), Some(b)) => a.cmp(&b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        };
        if o != Ordering::Equal {
            return o;
        }
        for (a, b) in self.suffixes.iter().zip(&other.suffixes) {
            let o = a.0.cmp(&b.0).then_with(|| cmp_opt_int(&a.1, &b.1));
            if o != Ordering::Equal {
                return o;
            }
        }
        let n = self.suffixes.len().min(other.suffixes.len());
        match (self.suffixes.get(n), other.suffixes.get(n)) {
            (Some(a), None) => {
                return if a.0 < 0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (None, Some(b)) => {
                return if b.0 < 0 {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {}
        }
        self.hash
            .is_some()
            .cmp(&other.hash.is_some())
            .then_with(|| cmp_opt_int(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        let pa = Version::parse(a).unwrap_or_else(|| panic!("{a} parses"));
        let pb = Version::parse(b).unwrap_or_else(|| panic!("{b} parses"));
        pa.cmp(&pb)
    }

    /// Every adjacent pair must be strictly ascending, and the order transitive.
    #[test]
    fn ascending_chain() {
        let chain = [
            "0.9.9",
            "1",
            "1.0_alpha",
            "1.0_alpha1",
            "1.0_alpha2_p1",
            "1.0_alpha2_p2",
            "1.0_beta",
            "1.0_pre1",
            "1.0_rc",
            "1.0_rc1",
            "1.0_rc1-r3",
            "1.0_rc2",
            "1.0_rc10",
            "1.0",
            "1.0-r0",
            "1.0-r1",
            "1.0-r9",
            "1.0-r10",
            "1.0_cvs",
            "1.0_svn",
            "1.0_git20240101",
            "1.0_hg",
            "1.0_p",
            "1.0_p0",
            "1.0_p1",
            "1.0_p1-r5",
            "1.0_p2-r0",
            "1.0a",
            "1.0b_rc1",
            "1.0b",
            "1.0z",
            "1.0.1_alpha",
            "1.0.1",
            "1.01",
            "1.1",
            "1.2.3-r4",
            "1.2.10-r0",
            "1.10",
            "2.0",
            "20240101",
            "20240102",
            "100000000000000000000000",
        ];
        for w in chain.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(cmp(w[1], w[0]), Ordering::Greater, "{} > {}", w[1], w[0]);
        }
        for (i, a) in chain.iter().enumerate() {
            for b in &chain[i + 1..] {
                assert_eq!(cmp(a, b), Ordering::Less, "{a} < {b} (transitive)");
            }
        }
    }

    #[test]
    fn equal_and_real_world_pairs() {
        assert_eq!(cmp("1.0", "1.0"), Ordering::Equal);
        assert_eq!(cmp("3.3.2-r0", "3.3.2-r0"), Ordering::Equal);
        assert_eq!(
            cmp("01.2", "1.2"),
            Ordering::Equal,
            "a first number is an integer"
        );
        assert_eq!(cmp("1.001", "1.01"), Ordering::Less);
        assert_eq!(cmp("1.0~abc123-r0", "1.0-r0"), Ordering::Greater);
        // Real Alpine security updates.
        assert_eq!(cmp("3.3.1-r0", "3.3.2-r0"), Ordering::Less);
        assert_eq!(cmp("1.36.1-r29", "1.36.1-r31"), Ordering::Less);
        assert_eq!(cmp("8.9.1-r1", "8.11.0-r0"), Ordering::Less);
        assert_eq!(cmp("1.3.1-r1", "1.3.1_p1-r0"), Ordering::Less);
        assert_eq!(
            cmp("2.40.1-r0", "2.40.1_git20240501-r0"),
            Ordering::Less,
            "a _git snapshot is newer than the release it follows"
        );
    }

    #[test]
    fn invalid_versions() {
        for bad in [
            "", "a1", "1..0", ".1", "1.", "1.0-r", "1.0-rx", "1.0_foo", "1.0ab", "1.0-1",
            "1.0_p1_", "1.0~", "1.0 ", "1.0A",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?} is not an apk version");
        }
    }
}
