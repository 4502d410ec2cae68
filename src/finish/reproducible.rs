//! Drop what records when a tree was built, so the same inputs give the same archive:
//! the files mmdebstrap's reproducible mode removes (it only does so for its own run, and
//! customize's apt and ldconfig write them again), debootstrap's log, and an empty
//! `/etc/machine-id` (a container's first start makes its own).

use std::path::Path;

use super::Result;
use crate::tree::Root;

/// Logs and caches that hold the build's time (and nothing a running container needs).
pub const BUILD_RECORDS: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dbus/machine-id",
];

/// Remove [`BUILD_RECORDS`] and empty `/etc/machine-id`; how many files that changed.
pub fn drop_build_records(root: &Root) -> Result<u64> {
    let mut n = 0;
    for rel in BUILD_RECORDS {
        let rel = Path::new(rel);
        if root.lstat(rel)?.is_some() {
            root.remove(rel)?;
            n += 1;
        }
    }
    let id = Path::new("etc/machine-id");
    if root.file_type(id)? == Some(rustix::fs::FileType::RegularFile) && !root.read(id)?.is_empty()
    {
        root.write_file(id, b"", 0o444)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_and_machine_id_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.create_dir_all(Path::new("var/log/apt"), 0o755)
            .unwrap();
        root.create_dir_all(Path::new("etc"), 0o755).unwrap();
        root.write_file(Path::new("var/log/dpkg.log"), b"2026-12-01 install", 0o644)
            .unwrap();
        root.write_file(Path::new("var/log/apt/history.log"), b"Start-Date", 0o644)
            .unwrap();
        root.write_file(Path::new("etc/machine-id"), b"0123abcd\n", 0o444)
            .unwrap();
        root.write_file(Path::new("var/log/keep.log"), b"x", 0o644)
            .unwrap();
        assert_eq!(drop_build_records(&root).unwrap(), 3);
        assert!(!dir.path().join("var/log/dpkg.log").exists());
        assert!(!dir.path().join("var/log/apt/history.log").exists());
        assert!(dir.path().join("var/log/keep.log").exists());
        assert_eq!(
            std::fs::read(dir.path().join("etc/machine-id")).unwrap(),
            b""
        );
        assert_eq!(drop_build_records(&root).unwrap(), 0, "idempotent");
    }
}
