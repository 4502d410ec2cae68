//! Reader of a Debian `changelog.Debian` (the text, decompressed): its entries, newest
//! first, each with its version and text, and the security IDs an entry names (CVE IDs,
//! Debian's DSA and DLA advisories). `outdated` keeps the entries an upgrade brings in
//! (newer than the installed version, at most the candidate) and lists their IDs as the
//! update's fixes. Bytes in, data out: the client fetches the package it comes from.

use std::cmp::Ordering;
use std::sync::LazyLock;

use crate::inventory::Ecosystem;

/// One entry: `openssl (3.0.17-1~deb12u3) bookworm-security; urgency=medium`, its
/// indented lines and its trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: String,
    /// The header line and everything up to the next header.
    pub text: String,
}

/// The entries of a changelog, in file order (newest first). A line at column 0 of the
/// form `NAME (VERSION) …` starts an entry (deb-changelog(5)); anything before the first
/// is ignored, and the "Old Changelog:" part some packages keep at the end is not read
/// (its versions predate anything installed, and its format is free).
pub fn entries(bytes: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<Entry> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Old Changelog:") {
            break;
        }
        if let Some(version) = header_version(line) {
            out.push(Entry {
                version: version.to_string(),
                text: String::new(),
            });
        }
        if let Some(e) = out.last_mut() {
            e.text.push_str(line);
            e.text.push('\n');
        }
    }
    out
}

/// The version of an entry's header line, `None` for any other line.
fn header_version(line: &str) -> Option<&str> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (name, rest) = line.split_once(' ')?;
    if name.is_empty() || name.contains(['(', ')']) {
        return None;
    }
    let rest = rest.strip_prefix('(')?;
    let (version, _) = rest.split_once(')')?;
    (!version.is_empty() && !version.contains(char::is_whitespace)).then_some(version)
}

/// The IDs named in the entries an upgrade from `installed` to `candidate` brings: those
/// newer than `installed` and not newer than `candidate`, in dpkg's version order.
/// Deduplicated and sorted (kind, then year and number as numbers).
pub fn fixes(entries: &[Entry], installed: &str, candidate: &str) -> Vec<String> {
    let deb = |a: &str, b: &str| super::version::compare(Ecosystem::Deb, a, b);
    let mut out: Vec<String> = entries
        .iter()
        .filter(|e| {
            deb(&e.version, installed) == Ordering::Greater
                && deb(&e.version, candidate) != Ordering::Greater
        })
        .flat_map(|e| ids(&e.text))
        .collect();
    sort_ids(&mut out);
    out
}

/// `CVE-2024-12345`, `DSA-5678-1`, `DLA-3456-1`, each standing alone (not part of a
/// longer word or number), in the order they appear.
pub fn ids(text: &str) -> Vec<String> {
    static ID: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\b(?:CVE-[0-9]{4}-[0-9]{4,}|DSA-[0-9]+-[0-9]+|DLA-[0-9]+-[0-9]+)\b")
            .expect("a valid pattern")
    });
    ID.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// Sort and deduplicate IDs: by kind, then each number as a number (`CVE-2024-9999`
/// before `CVE-2024-10000`).
pub fn sort_ids(ids: &mut Vec<String>) {
    fn key(id: &str) -> (String, Vec<u64>) {
        let mut parts = id.split('-');
        let kind = parts.next().unwrap_or_default().to_string();
        (kind, parts.map(|p| p.parse().unwrap_or(u64::MAX)).collect())
    }
    ids.sort_by_cached_key(|id| key(id));
    ids.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real security upload's changelog (versions and text invented).
    const LOG: &str = "\
openssl (3.0.17-1~deb12u3) bookworm-security; urgency=medium

  * Fix CVE-2025-9230 (out-of-bounds read) and CVE-2025-9232.
  * Debian advisory DSA-6015-1; see also CVE-2025-9230 again.
  * Not an ID: CVE-2025-12, XCVE-2025-1234, CVE-2025-12345x, DSA 1-2.

 -- Debian Security Team <team@security.debian.org>  Tue, 30 Sep 2025 20:00:00 +0200

openssl (3.0.17-1~deb12u2) bookworm; urgency=medium

  * CVE-2024-13176: timing side channel.
  * DLA-4321-1 from LTS, and CVE-2024-9143.

 -- Maintainer <m@example.org>  Sat, 01 Mar 2025 12:00:00 +0100

openssl (3.0.11-1~deb12u2) bookworm; urgency=medium

  * CVE-2023-5678: installed already.

 -- Maintainer <m@example.org>  Mon, 01 Jan 2024 12:00:00 +0100

Old Changelog:

openssl (0.1) unstable; urgency=low
  * CVE-1999-0001 is not read.
";

    #[test]
    fn entries_split_at_headers_newest_first() {
        let e = entries(LOG.as_bytes());
        let versions: Vec<&str> = e.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(
            versions,
            ["3.0.17-1~deb12u3", "3.0.17-1~deb12u2", "3.0.11-1~deb12u2"]
        );
        assert!(e[0]
            .text
            .starts_with("openssl (3.0.17-1~deb12u3) bookworm-security;"));
        assert!(e[0].text.contains("-- Debian Security Team"));
        assert!(!e[0].text.contains("deb12u2"));
        assert!(
            !e[2].text.contains("CVE-1999-0001"),
            "Old Changelog: is not read"
        );
        assert_eq!(entries(b"").len(), 0);
        assert_eq!(entries(b"  * no header\nfree text (1.0)\n").len(), 0);
    }

    #[test]
    fn strict_ids() {
        assert_eq!(
            ids(&entries(LOG.as_bytes())[0].text),
            [
                "CVE-2025-9230",
                "CVE-2025-9232",
                "DSA-6015-1",
                "CVE-2025-9230"
            ]
        );
        assert_eq!(
            ids("(CVE-2024-0727), DLA-3456-1."),
            ["CVE-2024-0727", "DLA-3456-1"]
        );
        assert!(ids("CVE-24-1234 CVE-2024-123 cve-2024-1234").is_empty());
    }

    #[test]
    fn fixes_are_the_entries_after_the_installed_version_up_to_the_candidate() {
        let e = entries(LOG.as_bytes());
        assert_eq!(
            fixes(&e, "3.0.11-1~deb12u2", "3.0.17-1~deb12u3"),
            [
                "CVE-2024-9143",
                "CVE-2024-13176",
                "CVE-2025-9230",
                "CVE-2025-9232",
                "DLA-4321-1",
                "DSA-6015-1"
            ]
        );
        // Older than (or equal to) the installed version: left out.
        assert_eq!(
            fixes(&e, "3.0.17-1~deb12u2", "3.0.17-1~deb12u3"),
            ["CVE-2025-9230", "CVE-2025-9232", "DSA-6015-1"]
        );
        // Newer than the candidate (a changelog read from a newer package): left out too.
        assert_eq!(
            fixes(&e, "3.0.11-1~deb12u2", "3.0.17-1~deb12u2"),
            ["CVE-2024-9143", "CVE-2024-13176", "DLA-4321-1"]
        );
        assert!(fixes(&e, "3.0.17-1~deb12u3", "3.0.17-1~deb12u3").is_empty());
    }

    #[test]
    fn ids_sort_by_number() {
        let mut v = vec![
            "DSA-10-1".to_string(),
            "CVE-2024-10000".into(),
            "CVE-2024-9999".into(),
            "CVE-2023-50000".into(),
            "CVE-2024-9999".into(),
        ];
        sort_ids(&mut v);
        assert_eq!(
            v,
            [
                "CVE-2023-50000",
                "CVE-2024-9999",
                "CVE-2024-10000",
                "DSA-10-1"
            ]
        );
    }
}
