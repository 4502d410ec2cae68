//! The checks of a distro after its upload, before it goes live: bytes counted on the way
//! out, entries and sizes measured on the storage side, and every file's sha256 compared
//! with the manifest (`--verify full`).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use serde::Serialize;

use crate::pack::ManifestEntry;
use crate::progress::Bar;

use super::Distro;

/// A `Write` that reports how many bytes went through it.
pub struct Counting<'a> {
    pub inner: &'a mut dyn Write,
    pub count: u64,
    pub bar: Option<&'a Bar<'a>>,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::interrupt::check_interrupted().map_err(|_| {
            // Not ErrorKind::Interrupted: write_all would retry that.
            std::io::Error::other("interrupted")
        })?;
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        if let Some(b) = self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Entry count and content size of an uploaded tree, measured the way [`Distro`] counts
/// them (provenance file out of the byte count; hard links counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Measure {
    pub entries: u64,
    pub bytes: u64,
}

impl Measure {
    /// From `find -printf '%y %i %s\n'` lines, the provenance file excluded from the
    /// listing (so one entry is added back for it).
    pub fn from_find(text: &str) -> Measure {
        let mut m = Measure {
            entries: 1,
            bytes: 0,
        };
        let mut inodes = HashSet::new();
        for line in text.lines() {
            let mut it = line.split(' ');
            let (Some(kind), Some(ino), Some(size)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            m.entries += 1;
            if kind == "f" && inodes.insert(ino.to_string()) {
                m.bytes += size.parse::<u64>().unwrap_or(0);
            }
        }
        m
    }

    /// Why `self` (remote) is not what the distro holds, if it is not.
    pub fn mismatch(&self, d: &Distro) -> Option<String> {
        (self.entries != d.entries || self.bytes != d.bytes).then(|| {
            format!(
                "the upload has {} entries and {} bytes, the distro {} entries and {} bytes",
                self.entries, self.bytes, d.entries, d.bytes
            )
        })
    }
}

/// Parse `sha256sum` output (`HASH  ./path`, names with `\` or newlines escaped and the
/// line prefixed with `\`) into path → hash, paths as in the manifest (`/etc/passwd`).
pub fn parse_sha256sum(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(l) => (true, l),
            None => (false, line),
        };
        let Some((hash, path)) = line.split_once("  ") else {
            continue;
        };
        let path = if escaped {
            let mut s = String::new();
            let mut chars = path.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some(o) => s.push(o),
                        None => {}
                    },
                    (c, false) => s.push(c),
                }
            }
            s
        } else {
            path.to_string()
        };
        out.insert(path.trim_start_matches('.').to_string(), hash.to_string());
    }
    out
}

/// Compare remote hashes with the manifest; a one-line summary of every difference.
pub fn compare_hashes(
    manifest: &[ManifestEntry],
    remote: &BTreeMap<String, String>,
) -> Option<String> {
    let mut differ = Vec::new();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for m in manifest {
        seen.insert(m.path.as_str());
        match remote.get(&m.path) {
            Some(h) if *h == m.sha256 => {}
            Some(_) => differ.push(m.path.as_str()),
            None => missing.push(m.path.as_str()),
        }
    }
    let extra: Vec<&str> = remote
        .keys()
        .map(String::as_str)
        .filter(|p| !seen.contains(p))
        .collect();
    if differ.is_empty() && missing.is_empty() && extra.is_empty() {
        return None;
    }
    let show = |v: &[&str]| -> String {
        let mut s = v.iter().take(3).copied().collect::<Vec<_>>().join(", ");
        if v.len() > 3 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    let mut parts = Vec::new();
    if !differ.is_empty() {
        parts.push(format!("content differs: {}", show(&differ)));
    }
    if !missing.is_empty() {
        parts.push(format!("missing: {}", show(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("not in the manifest: {}", show(&extra)));
    }
    Some(parts.join("; "))
}
