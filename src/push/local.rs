//! The local transport (`local:DIR`): the tool runs on the server itself (or in a test),
//! DIR holds the containers' homes and the storage container's distros are in
//! `DIR/UID/distros/`. The same steps as over ssh, with the filesystem calls made here.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Distro, Error, Listed, Measure, Name, Payload, Result, Transport};
use crate::finish::PROVENANCE;
use crate::progress::Bar;
use crate::tree::{unpack, UnpackOptions};

pub struct Local {
    pub home: PathBuf,
}

/// Counts what is read through it.
struct CountingRead<'a, R> {
    inner: R,
    count: &'a mut u64,
    bar: &'a Bar<'a>,
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl Local {
    pub fn new(home: PathBuf) -> Local {
        Local { home }
    }

    fn distros(&self) -> PathBuf {
        self.home.join("distros")
    }

    fn at(&self, n: &Name) -> PathBuf {
        self.distros().join(n.as_str())
    }

    fn io(&self, path: &Path, e: std::io::Error) -> Error {
        Error::Io {
            target: self.describe(),
            path: path.display().to_string(),
            source: e,
        }
    }

    /// An error under `distros/`, naming the missing `distros/` itself when that is why.
    fn io_in_distros(&self, path: &Path, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound && !self.distros().is_dir() {
            return Error::Remote {
                target: self.describe(),
                detail: "no distros/ directory in the home: not a storage container".into(),
            };
        }
        self.io(path, e)
    }

    fn exists(p: &Path) -> bool {
        p.symlink_metadata().is_ok()
    }
}

impl Transport for Local {
    fn describe(&self) -> String {
        format!("local:{}", self.home.display())
    }

    fn storage(&self) -> String {
        self.home
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.home.display().to_string())
    }

    fn free_space(&self) -> Result<Option<u64>> {
        let d = self.distros();
        let st = rustix::fs::statvfs(&d).map_err(|e| self.io(&d, e.into()))?;
        Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let d = self.distros();
        let rd = std::fs::read_dir(&d).map_err(|e| self.io_in_distros(&d, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|er| self.io(&d, er))?;
            let md = e
                .path()
                .symlink_metadata()
                .map_err(|er| self.io(&e.path(), er))?;
            out.push(Listed {
                name: e.file_name().to_string_lossy().into_owned(),
                mtime: md.mtime() as f64 + md.mtime_nsec() as f64 / 1e9,
            });
        }
        Ok(out)
    }

    fn content_id(&self, name: &Name) -> Result<Option<String>> {
        match std::fs::read(self.at(name).join(PROVENANCE)) {
            Ok(b) => Ok(super::provenance_content_id(&b)),
            Err(_) => Ok(None),
        }
    }

    fn upload(&self, d: &Distro, tmp: &Name, _prev: Option<&Name>, bar: &Bar) -> Result<u64> {
        let dir = self.at(tmp);
        std::fs::create_dir(&dir).map_err(|e| self.io(&dir, e))?;
        let root = crate::tree::Root::open(&dir)?;
        let opts = UnpackOptions {
            label: self.describe(),
            ..Default::default()
        };
        let mut sent = 0u64;
        match &d.payload {
            Payload::Archive { file, gzip } => {
                let f = std::fs::File::open(file).map_err(|e| self.io(file, e))?;
                let r = CountingRead {
                    inner: std::io::BufReader::with_capacity(1 << 20, f),
                    count: &mut sent,
                    bar,
                };
                if *gzip {
                    unpack(flate2::read::GzDecoder::new(r), &root, &opts)?;
                } else {
                    unpack(r, &root, &opts)?;
                }
            }
            Payload::Tree(_) => {
                // The tar the ssh transport sends (uncompressed: no network), through a pipe.
                let (reader, mut writer) = std::io::pipe().map_err(|e| self.io(&dir, e))?;
                std::thread::scope(|s| -> Result<()> {
                    let producer = s.spawn(move || d.write_stream(&mut writer, false));
                    let r = CountingRead {
                        inner: reader,
                        count: &mut sent,
                        bar,
                    };
                    let res = unpack(r, &root, &opts);
                    let produced = producer.join().expect("tar producer");
                    res?;
                    produced.map_err(|e| self.io(&dir, e))
                })?;
            }
        }
        Ok(sent)
    }

    fn measure(&self, name: &Name) -> Result<Measure> {
        let dir = self.at(name);
        let mut m = Measure {
            entries: 1,
            bytes: 0,
        };
        let mut inodes = HashSet::new();
        for e in walkdir::WalkDir::new(&dir).min_depth(1) {
            let e = e.map_err(|er| self.io(&dir, std::io::Error::other(er.to_string())))?;
            if e.path() == dir.join(PROVENANCE) {
                continue;
            }
            let md = e
                .path()
                .symlink_metadata()
                .map_err(|er| self.io(e.path(), er))?;
            m.entries += 1;
            if md.is_file() && inodes.insert((md.dev(), md.ino())) {
                m.bytes += md.len();
            }
        }
        Ok(m)
    }

    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        let dir = self.at(name);
        let mut out = BTreeMap::new();
        for e in walkdir::WalkDir::new(&dir).min_depth(1) {
            let e = e.map_err(|er| self.io(&dir, std::io::Error::other(er.to_string())))?;
            if !e.file_type().is_file() {
                continue;
            }
            let mut f = std::fs::File::open(e.path()).map_err(|er| self.io(e.path(), er))?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(|er| self.io(e.path(), er))?;
            let rel = e.path().strip_prefix(&dir).expect("below dir");
            out.insert(format!("/{}", rel.display()), hex::encode(h.finalize()));
        }
        Ok(out)
    }

    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()> {
        let (t, d) = (self.at(tmp), self.at(dest));
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| self.io(&t, e))?;
        match aside {
            None => {
                if Local::exists(&d) {
                    return Err(Error::Remote {
                        target: self.describe(),
                        detail: format!("distros/{dest} exists already"),
                    });
                }
                std::fs::rename(&t, &d).map_err(|e| self.io(&d, e))
            }
            Some(a) => {
                let a = self.at(a);
                let moved = Local::exists(&d);
                if moved {
                    std::fs::rename(&d, &a).map_err(|e| self.io(&d, e))?;
                }
                std::fs::rename(&t, &d).map_err(|e| {
                    if moved {
                        let _ = std::fs::rename(&a, &d);
                    }
                    self.io(&d, e)
                })
            }
        }
    }

    fn restore(&self, from: &Name, to: &Name) -> Result<()> {
        let (f, t) = (self.at(from), self.at(to));
        if Local::exists(&t) {
            return Ok(());
        }
        std::fs::rename(&f, &t).map_err(|e| self.io(&t, e))
    }

    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>> {
        // du's rule: blocks of an inode reached once, under the first name that reaches it.
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let dir = self.at(n);
            let mut bytes = 0u64;
            for e in walkdir::WalkDir::new(&dir) {
                let e = e.map_err(|er| self.io(&dir, std::io::Error::other(er.to_string())))?;
                let md = e
                    .path()
                    .symlink_metadata()
                    .map_err(|er| self.io(e.path(), er))?;
                if seen.insert((md.dev(), md.ino())) {
                    bytes += md.blocks() * 512;
                }
            }
            out.push(bytes);
        }
        Ok(out)
    }

    fn remove(&self, name: &Name) -> Result<()> {
        let p = self.at(name);
        let skipped = crate::tree::remove_tree(&p)?;
        if let Some(s) = skipped.first() {
            return Err(Error::Remote {
                target: self.describe(),
                detail: format!("left {s} in place: it is a mount point"),
            });
        }
        Ok(())
    }

    fn lock_try(&self, owner: &str) -> Result<super::lock::LockTry> {
        let dir = self.distros().join(super::lock::LOCK_DIR);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let f = dir.join("owner");
                if let Err(e) = std::fs::write(&f, format!("{owner}\n")) {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(self.io(&f, e));
                }
                Ok(super::lock::LockTry::Acquired)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let now = std::time::SystemTime::now();
                let age = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .map_or(0, |d| d.as_secs());
                Ok(super::lock::LockTry::Held {
                    owner: std::fs::read_to_string(dir.join("owner"))
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    age,
                    now: now
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                })
            }
            Err(e) => Err(self.io_in_distros(&dir, e)),
        }
    }

    fn lock_remove(&self, only_if: Option<&str>) -> Result<()> {
        let dir = self.distros().join(super::lock::LOCK_DIR);
        if let Some(o) = only_if {
            let text = std::fs::read_to_string(dir.join("owner")).unwrap_or_default();
            if text.trim() != o.trim() {
                return Ok(());
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&dir, e)),
            _ => Ok(()),
        }
    }
}

/// The storage lock ([`super::lock`]) on a local `distros/`: the lock's rules, tested
/// here so that `lock` needs no transport of its own.
#[cfg(test)]
mod lock_tests {
    use super::super::lock::*;
    use super::Local;
    use crate::push::Transport;
    use std::time::Duration;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn opts(wait_ms: u64) -> LockOptions {
        LockOptions {
            wait: Duration::from_millis(wait_ms),
            owner: "test".into(),
            ..Default::default()
        }
    }

    fn storage() -> (tempfile::TempDir, Local) {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("30003");
        std::fs::create_dir_all(home.join("distros")).unwrap();
        (d, Local::new(home))
    }

    fn plant(tr: &Local, h: &Holder) {
        let dir = tr.home.join("distros").join(LOCK_DIR);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("owner"), serde_json::to_string(h).unwrap()).unwrap();
    }

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let (_d, tr) = storage();
        let lock = StorageLock::acquire(&tr, &opts(0), &|_| {}).unwrap();
        let owner: Holder = serde_json::from_str(
            &std::fs::read_to_string(tr.home.join("distros/.bd+lock/owner")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (owner.pid, owner.owner.as_str()),
            (std::process::id(), "test")
        );
        let waited = std::cell::Cell::new(false);
        let e = StorageLock::acquire(&tr, &opts(0), &|_| waited.set(true)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("storage 30003 is locked by test (host "),
            "{msg}"
        );
        assert!(msg.contains("--force-unlock"), "{msg}");
        assert_eq!(e.exit_code(), 1);
        drop(lock);
        assert!(!tr.home.join("distros/.bd+lock").exists());
        StorageLock::acquire(&tr, &opts(0), &|_| {})
            .unwrap()
            .release()
            .unwrap();
        assert!(!tr.home.join("distros/.bd+lock").exists());
    }

    #[test]
    fn stale_and_dead_locks_are_taken_over_live_ones_only_forced() {
        let (_d, tr) = storage();
        let other = |host: &str, pid: u32, time: u64| Holder {
            owner: "build-distro push other".into(),
            host: host.into(),
            pid,
            time,
            token: "t".into(),
        };
        // A live job elsewhere: waited for, then refused naming it.
        plant(&tr, &other("ci-runner-7", 1, now()));
        let e = StorageLock::acquire(&tr, &opts(50), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("ci-runner-7"), "{e}");
        // ...unless forced.
        let forced = LockOptions {
            force_unlock: true,
            ..opts(0)
        };
        StorageLock::acquire(&tr, &forced, &|_| {})
            .unwrap()
            .release()
            .unwrap();
        // A dead job on this host: taken over at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        plant(&tr, &other(&hostname(), dead, now()));
        StorageLock::acquire(&tr, &opts(0), &|_| {})
            .unwrap()
            .release()
            .unwrap();
        // An old lock: stale.
        plant(&tr, &other("elsewhere", 1, 0));
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::open(tr.home.join("distros/.bd+lock"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        StorageLock::acquire(&tr, &opts(0), &|_| {})
            .unwrap()
            .release()
            .unwrap();
        assert!(!tr.home.join("distros/.bd+lock").exists());
    }

    #[test]
    fn release_leaves_a_lock_that_is_no_longer_ours() {
        let (_d, tr) = storage();
        let lock = StorageLock::acquire(&tr, &opts(0), &|_| {}).unwrap();
        // Someone forced it and took it meanwhile.
        tr.lock_remove(None).unwrap();
        let theirs = StorageLock::acquire(&tr, &opts(0), &|_| {}).unwrap();
        drop(lock);
        assert!(
            tr.home.join("distros/.bd+lock").exists(),
            "not ours to remove"
        );
        drop(theirs);
        assert!(!tr.home.join("distros/.bd+lock").exists());
    }
}
