//! `cache ls` and `cache prune`: what the cache holds, and removing the least recently
//! used until it fits.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::*;

/// One line of `cache ls`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `entry` or `debs`.
    pub kind: String,
    pub id: String,
    /// What the entry is of (`mmdebstrap bookworm minbase http://…`); for `debs`, how many.
    pub summary: String,
    pub bytes: u64,
    /// Seconds since written.
    pub age_secs: u64,
    /// Seconds since a build last used it.
    pub unused_secs: u64,
    /// The key's `InRelease` hashes, shortened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// False when the fingerprint is missing or unreadable (a half-written entry).
    pub complete: bool,
}

/// What `cache prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs())
}

/// Disk usage of a file or a directory tree (apparent sizes).
pub(super) fn size_of(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The files of a flat cache directory (`debs/`, `blocks/`), temporary ones left out:
/// (path, size, last use). A package's last use is its last read; a piece's is its
/// mtime, which each use sets.
pub(super) fn flat_files(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            let used = m.accessed().or_else(|_| m.modified()).ok()?;
            Some((e.path(), m.len(), used.max(m.modified().ok()?)))
        })
        .collect()
}

/// The `cache ls` line of a flat directory.
pub(super) fn files_listed(kind: &str, dir: &Path, what: &str) -> Listed {
    let files = flat_files(dir);
    Listed {
        kind: kind.into(),
        id: kind.into(),
        summary: format!("{} {what}", files.len()),
        bytes: files.iter().map(|f| f.1).sum(),
        age_secs: dir
            .metadata()
            .and_then(|m| m.created())
            .map_or(0, secs_since),
        unused_secs: files.iter().map(|f| f.2).max().map_or(0, secs_since),
        releases: Vec::new(),
        complete: true,
    }
}

impl Cache {
    /// Entries (newest use first) and the package directory.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        let entries = self.root.join("entries");
        for e in std::fs::read_dir(&entries).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let trash = name.starts_with(TRASH);
            let dir = e.path();
            let bytes = size_of(&dir);
            let age = |p: &Path| {
                p.metadata()
                    .and_then(|m| m.modified())
                    .map_or(0, secs_since)
            };
            let entry: Option<EntryFile> = std::fs::read(dir.join(ENTRY))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let key: Option<Key> = std::fs::read(dir.join(KEY))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push(Listed {
                kind: "entry".into(),
                id: name,
                summary: entry.as_ref().map_or_else(
                    || {
                        if trash {
                            "damaged, set aside (removed when no build uses the cache)".to_string()
                        } else {
                            "incomplete (no fingerprint)".to_string()
                        }
                    },
                    |e| match &e.base {
                        Some(b) => format!(
                            "{} {} (upgrade layer over {})",
                            e.source.kind,
                            e.source.reference,
                            &b[..12.min(b.len())]
                        ),
                        None => format!("{} {}", e.source.kind, e.source.reference),
                    },
                ),
                bytes,
                age_secs: entry
                    .as_ref()
                    .map_or_else(|| age(&dir), |e| now_secs().saturating_sub(e.created)),
                unused_secs: age(&dir.join(ENTRY)),
                releases: key
                    .map(|k| {
                        k.releases
                            .iter()
                            .map(|r| format!("{} {}", r.url, &r.sha256[..12.min(r.sha256.len())]))
                            .collect()
                    })
                    .unwrap_or_default(),
                complete: entry.is_some(),
            });
        }
        out.sort_by_key(|l| l.unused_secs);
        out.push(files_listed("debs", &self.debs_dir(), "packages"));
        out.push(files_listed(
            "blocks",
            &self.root.join(BLOCKS),
            "compressed pieces of archives",
        ));
        out
    }

    /// Remove the least recently used entries and packages until the cache holds at most
    /// `max_bytes`; half-written leftovers go first. Needs [`Cache::open_exclusive`].
    pub fn prune(&self, max_bytes: u64) -> Result<Pruned> {
        // (last use, path, bytes, name)
        let mut items: Vec<(SystemTime, PathBuf, u64, String)> = Vec::new();
        let mut pruned = Pruned::default();
        // No build runs (we hold the exclusive lock): what is half-written or set aside
        // is nobody's.
        let (swept, swept_bytes) = self.sweep()?;
        pruned.removed.extend(swept);
        pruned.freed_bytes += swept_bytes;
        let entries = self.root.join("entries");
        for e in std::fs::read_dir(&entries)
            .map_err(|er| Error::io(&entries, er))?
            .flatten()
        {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let fp = p.join(ENTRY);
            match fp.metadata().and_then(|m| m.modified()) {
                Ok(t) => items.push((t, p.clone(), size_of(&p), format!("entry {name}"))),
                // No build runs (we hold the exclusive lock): nothing is being written.
                Err(_) => {
                    pruned.freed_bytes += size_of(&p);
                    crate::tree::remove_tree(&p)?;
                    pruned.removed.push(format!("incomplete {name}"));
                }
            }
        }
        for (p, bytes, used) in flat_files(&self.debs_dir()) {
            let name = format!(
                "deb {}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            items.push((used, p, bytes, name));
        }
        for (p, bytes, used) in flat_files(&self.root.join(BLOCKS)) {
            items.push((used, p, bytes, String::new()));
        }
        items.sort_by_key(|i| i.0);
        let mut total: u64 = items.iter().map(|i| i.2).sum();
        // Pieces are many and nameless: reported as one count.
        let mut blocks = 0;
        for (_, p, bytes, name) in items {
            if total <= max_bytes {
                break;
            }
            if p.is_dir() {
                crate::tree::remove_tree(&p)?;
            } else {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            total -= bytes;
            pruned.freed_bytes += bytes;
            if name.is_empty() {
                blocks += 1;
            } else {
                pruned.removed.push(name);
            }
        }
        if blocks > 0 {
            pruned.removed.push(format!("{blocks} compressed pieces"));
        }
        // A layer whose base went (now, or before) serves nobody.
        for e in std::fs::read_dir(&entries).into_iter().flatten().flatten() {
            let p = e.path();
            let base = std::fs::read(p.join(ENTRY))
                .ok()
                .and_then(|b| serde_json::from_slice::<EntryFile>(&b).ok())
                .and_then(|entry| entry.base);
            if base.is_some_and(|b| !self.entry_dir(&b).join(ENTRY).is_file()) {
                let bytes = size_of(&p);
                crate::tree::remove_tree(&p)?;
                total = total.saturating_sub(bytes);
                pruned.freed_bytes += bytes;
                pruned.removed.push(format!(
                    "entry {} (its base is gone)",
                    e.file_name().to_string_lossy()
                ));
            }
        }
        pruned.kept_bytes = total;
        Ok(pruned)
    }
}
