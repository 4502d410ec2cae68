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

    fn exists(p: &Path) -> bool {
        p.symlink_metadata().is_ok()
    }
}

impl Transport for Local {
    fn describe(&self) -> String {
        format!("local:{}", self.home.display())
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let d = self.distros();
        let rd = std::fs::read_dir(&d).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Remote {
                    target: self.describe(),
                    detail: "no distros/ directory in the home: not a storage container".into(),
                }
            } else {
                self.io(&d, e)
            }
        })?;
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
}
