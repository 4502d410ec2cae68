//! Storage reclaim, the file half of `distros gc`: removing an API entry leaves its
//! directory in the storage container's `distros/`, so weekly rebuilds would fill the
//! quota. This removes, through the same transports as push, the version directories
//! (`<base>-<12 hex>`, the names versioned pushes give) that no API entry still names and
//! that are not among the newest `keep` of their base, plus uploads abandoned long ago.
//!
//! Architecture invariant: only direct children of `distros/` whose names push itself
//! makes are ever removed — a version name or a `.bd+tmp-` upload; anything else there
//! (a `replace` path, a hand-made directory, an interrupted replace's `.bd+old-`) is not
//! even listed. A name an API entry keeps is never removed (containers use distros through
//! API entries), nor is anything younger than [`GRACE_SECS`]: a push in progress, or one
//! between its rename and its registration. The grace does not hold a version whose entry
//! this gc run removed: no push is waiting to register it, and gc's own pass would
//! otherwise never free anything on the day it runs. A file hard-linked into a kept
//! version (rsync's link-dest) survives: only the removed directory's link goes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::lock::{LockOptions, StorageLock};
use super::{Listed, Name, Stale, StorageTarget, Transport, TransportSpec};
use crate::progress::Reporter;
use crate::runner::Runner;

/// How old an upload, or a version that no API entry names and this run did not
/// unregister, must be before reclaim may remove it.
pub const GRACE_SECS: f64 = 24.0 * 3600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirAction {
    Keep,
    Remove,
}

/// Why a directory is kept or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// An API entry that stays names it (containers use distros through API entries).
    Registered,
    /// Among the newest `keep` versions of its base.
    Newest,
    /// Younger than the grace period: a push may be about to register it.
    Recent,
    /// An upload younger than the grace period: a push may be writing it.
    Uploading,
    /// No API entry names it and newer versions exist.
    Unused,
    /// This run removed (a dry run: would remove) the API entry that named it, and newer
    /// versions exist; however young, it is no push's to register.
    Unregistered,
    /// An upload abandoned more than the grace period ago.
    AbandonedUpload,
}

/// One directory under `distros/` that reclaim looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirPlan {
    pub name: String,
    pub action: DirAction,
    pub why: Why,
    /// Disk usage; for a directory to remove, only what no kept directory shares (what
    /// removing it frees). `None` when it could not be measured.
    pub bytes: Option<u64>,
    /// With `--yes`: whether it is gone.
    pub removed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The paths API entries name in one storage container, as gc leaves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// Named by entries that stay.
    pub registered: BTreeSet<String>,
    /// Named by the entries this run removed (a dry run: would remove); an entry whose
    /// removal failed stays in `registered`.
    pub unregistered: BTreeSet<String>,
}

/// What to do with each directory of one `distros/` listing. `now` and the listing's
/// mtimes in seconds since the epoch.
pub fn plan(listed: &[Listed], entries: &Entries, keep: usize, now: f64) -> Vec<DirPlan> {
    let young = |l: &Listed| now - l.mtime < GRACE_SECS;
    let dir = |l: &Listed, action, why| DirPlan {
        name: l.name.clone(),
        action,
        why,
        bytes: None,
        removed: false,
        error: None,
    };
    let mut out = Vec::new();
    let versions: Vec<(&Listed, &str)> = listed
        .iter()
        .filter(|l| Name::distro(&l.name).is_ok())
        .filter_map(|l| Some((l, crate::api::versioned_base(&l.name)?)))
        .collect();
    // Newest by mtime (in milliseconds, so that the rule can order them; the name breaks
    // a tie so that the plan never depends on the listing's order).
    let newest = crate::api::newest_per_group(
        &versions,
        |(_, base)| *base,
        |(l, _)| ((l.mtime * 1000.0) as i64, l.name.as_str()),
        keep,
    );
    for ((l, _), newest) in versions.iter().zip(newest) {
        out.push(if entries.registered.contains(&l.name) {
            dir(l, DirAction::Keep, Why::Registered)
        } else if newest {
            dir(l, DirAction::Keep, Why::Newest)
        } else if entries.unregistered.contains(&l.name) {
            dir(l, DirAction::Remove, Why::Unregistered)
        } else if young(l) {
            dir(l, DirAction::Keep, Why::Recent)
        } else {
            dir(l, DirAction::Remove, Why::Unused)
        });
    }
    for l in listed {
        if let Some(Stale::Tmp(_)) = Name::stale(&l.name) {
            out.push(if young(l) {
                dir(l, DirAction::Keep, Why::Uploading)
            } else {
                dir(l, DirAction::Remove, Why::AbandonedUpload)
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One storage container's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReport {
    pub uid: u32,
    /// Where it was reached: `30001@host`, `local:/containers/30001`.
    pub target: String,
    pub dirs: Vec<DirPlan>,
    /// What the removals freed (a dry run: would free), in bytes.
    pub freed_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StorageReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.dirs.iter().all(|d| d.error.is_none())
    }
}

/// Plan, measure and (with `remove`) remove in one storage container.
pub fn reclaim_one(
    tr: &dyn Transport,
    uid: u32,
    entries: &Entries,
    keep: usize,
    remove: bool,
    now: f64,
) -> StorageReport {
    let mut r = StorageReport {
        uid,
        target: tr.describe(),
        dirs: Vec::new(),
        freed_bytes: 0,
        error: None,
    };
    // Held while listing and removing, so nothing another job is staging or about to
    // register can go; a dry run changes nothing and takes no lock.
    let _lock = if remove {
        let opts = LockOptions {
            owner: "build-distro distros gc".into(),
            ..LockOptions::default()
        };
        match StorageLock::acquire(tr, &opts, &|_| {}) {
            Ok(lock) => Some(lock),
            Err(e) => {
                r.error = Some(e.to_string());
                return r;
            }
        }
    } else {
        None
    };
    let listed = match tr.list() {
        Ok(l) => l,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    r.dirs = plan(&listed, entries, keep, now);
    // Kept first: a removed directory's size is then only what it does not share.
    let mut order: Vec<usize> = (0..r.dirs.len()).collect();
    order.sort_by_key(|&i| r.dirs[i].action == DirAction::Remove);
    let names: Vec<Name> = order
        .iter()
        .filter_map(|&i| dir_name(&r.dirs[i].name))
        .collect();
    match tr.disk_usage(&names) {
        Ok(sizes) => {
            for (&i, size) in order.iter().zip(sizes) {
                r.dirs[i].bytes = Some(size);
            }
        }
        Err(e) => r.error = Some(format!("measure: {e}")),
    }
    for d in r.dirs.iter_mut().filter(|d| d.action == DirAction::Remove) {
        if remove {
            if crate::interrupt::interrupted() {
                d.error = Some("interrupted".into());
                continue;
            }
            let Some(n) = dir_name(&d.name) else { continue };
            match tr.remove(&n) {
                Ok(()) => d.removed = true,
                Err(e) => {
                    d.error = Some(e.to_string());
                    continue;
                }
            }
        }
        r.freed_bytes += d.bytes.unwrap_or(0);
    }
    r
}

/// A planned name as a [`Name`]: plans hold only version names and uploads.
fn dir_name(s: &str) -> Option<Name> {
    match Name::stale(s) {
        Some(Stale::Tmp(n)) => Some(n),
        Some(Stale::Old { .. }) => None,
        None => Name::distro(s).ok(),
    }
}

/// What reclaim did in every storage container.
#[derive(Debug, Clone, Serialize)]
pub struct ReclaimReport {
    pub keep: usize,
    pub dry_run: bool,
    pub storages: Vec<StorageReport>,
    pub freed_bytes: u64,
}

impl ReclaimReport {
    pub fn ok(&self) -> bool {
        self.storages.iter().all(StorageReport::ok)
    }
}

/// Reclaim in each storage container of `targets`. `entries`: per storage uid, the paths
/// API entries name. Without `remove`, a dry run that measures only.
pub fn reclaim(
    targets: &[StorageTarget],
    entries: &BTreeMap<u32, Entries>,
    keep: usize,
    remove: bool,
    transport: &TransportSpec,
    runner: Arc<dyn Runner>,
    reporter: &Reporter,
) -> ReclaimReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let empty = Entries::default();
    let mut storages = Vec::new();
    for t in targets {
        let address = (!t.address.is_empty()).then_some(t.address.as_str());
        let report = match transport.connect(t.uid, address, runner.clone()) {
            Ok(tr) => {
                reporter.info(&format!("reclaim: looking at {}", tr.describe()));
                let names = entries.get(&t.uid).unwrap_or(&empty);
                reclaim_one(&tr, t.uid, names, keep, remove, now)
            }
            Err(e) => StorageReport {
                uid: t.uid,
                target: String::new(),
                dirs: Vec::new(),
                freed_bytes: 0,
                error: Some(e.to_string()),
            },
        };
        storages.push(report);
    }
    ReclaimReport {
        keep,
        dry_run: !remove,
        freed_bytes: storages.iter().map(|s| s.freed_bytes).sum(),
        storages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::local::Local;
    use std::os::unix::fs::MetadataExt;

    const NOW: f64 = 2_000_000_000.0;
    const DAY: f64 = 86_400.0;

    fn l(name: &str, days_ago: f64) -> Listed {
        Listed {
            name: name.into(),
            mtime: NOW - days_ago * DAY,
        }
    }

    fn actions(p: &[DirPlan]) -> Vec<(&str, DirAction, Why)> {
        p.iter()
            .map(|d| (d.name.as_str(), d.action, d.why))
            .collect()
    }

    #[test]
    fn keeps_registered_newest_and_recent_removes_the_rest() {
        let listed = [
            l("web-000000000001", 40.0),
            l("web-000000000002", 30.0),
            l("web-000000000003", 20.0),
            l("web-000000000004", 10.0),
            l("web-000000000005", 0.1),
            l("db-00000000000a", 50.0),
            l("plain", 99.0),
            l("web-0000000000XY", 99.0),
            l(".bd+tmp-0123456789ab-7", 0.01),
            l(".bd+tmp-0123456789ab-8", 3.0),
            l(".bd+old-9-web", 3.0),
            l("notes.txt", 99.0),
        ];
        let entries = Entries {
            registered: ["web-000000000001".to_string()].into(),
            ..Entries::default()
        };
        use DirAction::*;
        use Why::*;
        assert_eq!(
            actions(&plan(&listed, &entries, 2, NOW)),
            [
                (".bd+tmp-0123456789ab-7", Keep, Uploading),
                (".bd+tmp-0123456789ab-8", Remove, AbandonedUpload),
                ("db-00000000000a", Keep, Newest),
                ("web-000000000001", Keep, Registered),
                ("web-000000000002", Remove, Unused),
                ("web-000000000003", Remove, Unused),
                ("web-000000000004", Keep, Newest),
                ("web-000000000005", Keep, Newest),
            ]
        );
        // keep 0: the newest is still safe while young.
        let p = plan(&listed, &Entries::default(), 0, NOW);
        let w5 = p.iter().find(|d| d.name == "web-000000000005").unwrap();
        assert_eq!((w5.action, w5.why), (Keep, Recent));
    }

    #[test]
    fn versions_this_run_unregistered_go_however_young_and_the_grace_holds_the_rest() {
        let listed = [
            l("web-000000000001", 0.03),
            l("web-000000000002", 0.02),
            l("web-000000000003", 0.01),
            l("web-000000000004", 0.015),
            l("web-000000000005", 9.0),
            l(".bd+tmp-0123456789ab-7", 0.0),
        ];
        // 1 is assigned (its entry stays), 2 and 5 were unregistered by this run, 3 is the
        // newest, 4 was staged by a push that has not registered it yet.
        let entries = Entries {
            registered: ["web-000000000001".to_string(), "web-000000000003".into()].into(),
            unregistered: ["web-000000000002".to_string(), "web-000000000005".into()].into(),
        };
        use DirAction::*;
        use Why::*;
        assert_eq!(
            actions(&plan(&listed, &entries, 1, NOW)),
            [
                (".bd+tmp-0123456789ab-7", Keep, Uploading),
                ("web-000000000001", Keep, Registered),
                ("web-000000000002", Remove, Unregistered),
                ("web-000000000003", Keep, Registered),
                ("web-000000000004", Keep, Recent),
                ("web-000000000005", Remove, Unregistered),
            ]
        );
        // Among the newest N by time, an unregistered version still stays.
        let p = plan(&listed, &entries, 5, NOW);
        let w2 = p.iter().find(|d| d.name == "web-000000000002").unwrap();
        assert_eq!((w2.action, w2.why), (Keep, Newest));
    }

    #[test]
    fn hard_linked_files_of_a_kept_version_survive_and_are_not_counted_as_freed() {
        let td = tempfile::tempdir().unwrap();
        let d = td.path().join("30001/distros");
        let (old, new) = (d.join("web-000000000001"), d.join("web-000000000002"));
        std::fs::create_dir_all(old.join("etc")).unwrap();
        std::fs::create_dir_all(new.join("etc")).unwrap();
        std::fs::write(old.join("etc/shared"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(old.join("etc/shared"), new.join("etc/shared")).unwrap();
        std::fs::write(old.join("etc/only-old"), vec![1u8; 32 * 1024]).unwrap();
        // Old enough to go.
        set_mtime(&old, NOW - 10.0 * DAY);
        set_mtime(&new, NOW - 9.0 * DAY);
        let tr = Local::new(td.path().join("30001"));
        let r = reclaim_one(&tr, 30001, &Entries::default(), 1, true, NOW);
        assert!(r.ok(), "{r:?}");
        assert!(!old.exists());
        assert_eq!(
            std::fs::read(new.join("etc/shared")).unwrap(),
            vec![7u8; 64 * 1024]
        );
        assert_eq!(new.join("etc/shared").metadata().unwrap().nlink(), 1);
        // Freed: the old-only file and the old directories, not the shared file.
        assert!(
            r.freed_bytes >= 32 * 1024 && r.freed_bytes < 64 * 1024,
            "{r:?}"
        );
    }

    fn set_mtime(p: &std::path::Path, t: f64) {
        let ts = rustix::fs::Timespec {
            tv_sec: t as i64,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::empty()).unwrap();
    }
}
