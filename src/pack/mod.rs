//! Pack stage: the canonical tar of a tree. Entries in sorted order, numeric owner 0:0 and
//! no user or group names, modes kept exactly, mtimes clamped to `SOURCE_DATE_EPOCH` when
//! set, hard links kept as links; the gzip header has no name and no time. The same tree
//! always packs to the same bytes.
//!
//! The provenance file (`/etc/build-distro.json`) is left out of the walk and appended
//! last, after the content id is known: the **content id** is the sha256 of the
//! canonical tar of every other entry (without the end-of-archive blocks), so it names
//! the distro's content whatever recipe or source produced it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::finish::PROVENANCE;

mod gzip;
pub use crate::tree::HashingReader;
pub use gzip::{BlockStore, GzipPieces};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: a mount point inside the tree; unmount it before packing (the archive must hold the distro, not what is mounted on it)")]
    MountPoint { path: String },
    /// Ctrl-C while packing: the partial output is removed.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        1
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Output formats of `build --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[value(name = "tar.gz")]
    #[serde(rename = "tar.gz")]
    TarGz,
    Tar,
    Dir,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::TarGz => ".tar.gz",
            Format::Tar => ".tar",
            Format::Dir => "",
        }
    }
}

/// Knobs of the canonical form.
#[derive(Debug, Clone, Copy)]
pub struct PackOptions {
    /// Clamp every mtime to this (the build's `SOURCE_DATE_EPOCH`, as the caller resolved
    /// it: see [`crate::build_inputs::Epoch`]).
    pub clamp_mtime: Option<u64>,
    /// gzip level (1-9).
    pub level: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            clamp_mtime: None,
            level: 6,
        }
    }
}

/// One manifest line: sha256 of a regular file's content and its path (`/etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub sha256: String,
    pub path: String,
}

/// What packing produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Packed {
    /// `sha256:…` of the canonical tar of the content (see the module docs).
    pub content_id: String,
    /// Tar entries, provenance included.
    pub entries: u64,
    /// Regular files (hard links counted once).
    pub files: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
    /// Every regular file, in archive order (hard links listed under each name).
    #[serde(skip)]
    pub manifest: Vec<ManifestEntry>,
}

impl Packed {
    /// The first 12 hex digits of the content id (versioned paths use it).
    pub fn id12(&self) -> &str {
        let hex = self.content_id.trim_start_matches("sha256:");
        &hex[..12.min(hex.len())]
    }
}

/// Counts and hashes what goes through it while `hashing` is on.
struct Tee<W> {
    inner: W,
    hasher: Sha256,
    hashing: bool,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.hashing {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How many files ahead of the tar writer [`prefetch`] may ask the kernel to read.
const PREFETCH_FILES: usize = 256;

/// Sets the flag when dropped, on every way out of the packing loop.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Ask the kernel to start reading the files the tar writer will need next
/// (`POSIX_FADV_WILLNEED`), a bounded number ahead of it: on a cold cache the writer
/// otherwise waits for the disk file by file while the compressors idle. Only hints:
/// a file that cannot be opened here is the writer's to report.
fn prefetch(files: &[(usize, &Path)], done: &AtomicUsize, stop: &AtomicBool) {
    for (n, (_, path)) in files.iter().enumerate() {
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // Files the writer has reached: those up to its current entry.
            let reached = files.partition_point(|(i, _)| *i <= done.load(Ordering::Relaxed));
            if n < reached + PREFETCH_FILES {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if let Ok(f) = File::open(path) {
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
        }
    }
}

fn header(kind: EntryType, mode: u32, mtime: u64, size: u64) -> Header {
    owned_header(kind, mode, mtime, size, (0, 0))
}

fn owned_header(kind: EntryType, mode: u32, mtime: u64, size: u64, owner: (u32, u32)) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(owner.0 as u64);
    h.set_gid(owner.1 as u64);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// Write the canonical tar of the tree at `dir` into `out`. `provenance` receives the
/// content id and returns the bytes of `/etc/build-distro.json`, appended last.
pub fn write_tar<W: Write>(
    dir: &Path,
    out: W,
    opts: &PackOptions,
    provenance: impl FnOnce(&str) -> Vec<u8>,
) -> Result<(Packed, W)> {
    write_tar_as(dir, out, opts, false, Some(provenance), |_, _| Ok(()))
}

/// The same walk as [`write_tar`] for the build cache: owners kept (customize must see
/// the tree as the source made it), mtimes as they are, no provenance entry. The
/// unpacker ([`crate::tree::unpack`]) restores it.
pub fn write_cache_tar<W: Write>(dir: &Path, out: W) -> Result<(Packed, W)> {
    let opts = PackOptions {
        clamp_mtime: None,
        level: 0,
    };
    write_tar_as(
        dir,
        out,
        &opts,
        true,
        None::<fn(&str) -> Vec<u8>>,
        |_, _| Ok(()),
    )
}

/// `entry_starts` is called with the writer before each entry (the gzip writer cuts its
/// pieces there).
fn write_tar_as<W: Write>(
    dir: &Path,
    out: W,
    opts: &PackOptions,
    owners: bool,
    provenance: Option<impl FnOnce(&str) -> Vec<u8>>,
    mut entry_starts: impl FnMut(&mut W, &Path) -> std::io::Result<()>,
) -> Result<(Packed, W)> {
    let mut tee = Tee {
        inner: out,
        hasher: Sha256::new(),
        hashing: true,
    };
    let mut packed = Packed::default();
    let mtime_of = |m: i64| -> u64 {
        let m = m.max(0) as u64;
        opts.clamp_mtime.map_or(m, |c| m.min(c))
    };
    let mut b = tar::Builder::new(&mut tee);
    b.follow_symlinks(false);
    let canonical = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let dir = canonical.as_path();
    let walked: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    let files: Vec<(usize, &Path)> = walked
        .iter()
        .enumerate()
        .filter(|(_, e)| e.file_type().is_file())
        .map(|(i, e)| (i, e.path()))
        .collect();
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| prefetch(&files, &done, &stop));
        let _stop = StopOnDrop(&stop);
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        // Mount points below the tree (the tree itself may be an overlay mount).
        let mounts = crate::tree::mount_points_under(dir);
        let dev = dir.metadata().map_err(|e| Error::io(dir, e))?.dev();
        let mnt_id = crate::tree::mount_id_of(dir);
        for (i, e) in walked.iter().enumerate() {
            done.store(i, Ordering::Relaxed);
            crate::interrupt::check_interrupted().map_err(|_| Error::Interrupted)?;
            let rel = e.path().strip_prefix(dir).expect("below dir").to_path_buf();
            if rel == Path::new(PROVENANCE) {
                continue;
            }
            let md = e
                .path()
                .symlink_metadata()
                .map_err(|er| Error::io(e.path(), er))?;
            let ft = md.file_type();
            // Never read what a leaked mount shows (the host's /proc, a bind of /home):
            // walkdir does not follow symlinks, but it does cross mount points.
            // The walk starts at the canonical `dir` and never follows a symlink, so its
            // paths compare with mountinfo's as they are.
            // A device of its own is another mount unless the mount id says otherwise: an
            // overlay whose layers span filesystems gives each layer's files its st_dev.
            let crossed = md.dev() != dev
                && (mnt_id.is_none() || crate::tree::mount_id_of(e.path()) != mnt_id);
            if crossed || mounts.contains(e.path()) {
                return Err(Error::MountPoint {
                    path: e.path().display().to_string(),
                });
            }
            let mtime = mtime_of(md.mtime());
            let owner = if owners { (md.uid(), md.gid()) } else { (0, 0) };
            let header = |kind, mode, mtime, size| owned_header(kind, mode, mtime, size, owner);
            let io = |er| Error::io(e.path(), er);
            if ft.is_dir() || ft.is_symlink() || ft.is_file() {
                entry_starts(&mut b.get_mut().inner, &rel).map_err(io)?;
            }
            if ft.is_dir() {
                let mut h = header(EntryType::Directory, md.mode(), mtime, 0);
                b.append_data(&mut h, &rel, std::io::empty()).map_err(io)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(e.path()).map_err(io)?;
                let mut h = header(EntryType::Symlink, md.mode(), mtime, 0);
                b.append_link(&mut h, &rel, &target).map_err(io)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = links.get(&(md.dev(), md.ino())) {
                        let mut h = header(EntryType::Link, md.mode(), mtime, 0);
                        b.append_link(&mut h, &rel, first).map_err(io)?;
                        let sha = packed
                            .manifest
                            .iter()
                            .find(|m| Path::new(&m.path[1..]) == first)
                            .map(|m| m.sha256.clone())
                            .unwrap_or_default();
                        packed.manifest.push(ManifestEntry {
                            sha256: sha,
                            path: format!("/{}", rel.display()),
                        });
                        packed.entries += 1;
                        continue;
                    }
                    links.insert((md.dev(), md.ino()), rel.clone());
                }
                // O_NOFOLLOW: the name was a regular file when walked; if it is a
                // symlink now, fail rather than read whatever it points at.
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(e.path())
                    .map_err(io)?;
                let mut hr = HashingReader::new(f);
                let mut h = header(EntryType::Regular, md.mode(), mtime, md.len());
                b.append_data(&mut h, &rel, &mut hr).map_err(io)?;
                packed.files += 1;
                packed.bytes += md.len();
                packed.manifest.push(ManifestEntry {
                    sha256: hr.hex(),
                    path: format!("/{}", rel.display()),
                });
            } else {
                // Device nodes, FIFOs, sockets: finish removed them; a tree packed
                // without finishing still gets none (the platform cannot use them).
                continue;
            }
            packed.entries += 1;
        }
        Ok(())
    })?;
    // One builder for the whole stream: dropping a builder writes the end-of-archive
    // blocks, and the provenance entry must come before them.
    let t = b.get_mut();
    t.flush().map_err(|e| Error::io(dir, e))?;
    t.hashing = false;
    packed.content_id = format!(
        "sha256:{}",
        hex::encode(std::mem::take(&mut t.hasher).finalize())
    );
    let Some(provenance) = provenance else {
        b.finish().map_err(|e| Error::io(dir, e))?;
        drop(b);
        return Ok((packed, tee.inner));
    };
    let prov = provenance(&packed.content_id);
    entry_starts(&mut b.get_mut().inner, Path::new(PROVENANCE))
        .map_err(|e| Error::io(PROVENANCE, e))?;
    let mut h = header(
        EntryType::Regular,
        0o644,
        opts.clamp_mtime.unwrap_or(0),
        prov.len() as u64,
    );
    b.append_data(&mut h, PROVENANCE, prov.as_slice())
        .map_err(|e| Error::io(PROVENANCE, e))?;
    b.finish().map_err(|e| Error::io(dir, e))?;
    drop(b);
    packed.entries += 1;
    packed.manifest.push(ManifestEntry {
        sha256: hex::encode(Sha256::digest(&prov)),
        path: format!("/{PROVENANCE}"),
    });
    Ok((packed, tee.inner))
}

/// The manifest as `sha256sum` lines (`sha256sum -c` works on an extracted tree).
pub fn manifest_text(packed: &Packed) -> String {
    let mut s = String::new();
    for m in &packed.manifest {
        s.push_str(&format!("{}  .{}\n", m.sha256, m.path));
    }
    s
}

/// Parse [`manifest_text`] back.
pub fn parse_manifest(text: &str) -> Vec<ManifestEntry> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, p)| ManifestEntry {
            sha256: h.to_string(),
            path: p.trim_start_matches('.').to_string(),
        })
        .collect()
}

/// A file written under a temporary name in its final directory and renamed into place
/// by [`Staged::commit`]; dropped uncommitted, it disappears.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    pub fn new(dest: &Path) -> Self {
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dest.with_file_name(format!(".{name}.partial.{}", std::process::id()));
        Staged {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn create(&self) -> Result<BufWriter<File>> {
        let f = File::create(&self.tmp).map_err(|e| Error::io(&self.tmp, e))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    }

    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// How many threads compress: every core (`BUILD_DISTRO_THREADS` overrides). The output
/// is the same bytes whatever the count.
pub fn compression_threads() -> usize {
    std::env::var("BUILD_DISTRO_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Pack `dir` into `dest` (`.tar` or `.tar.gz` by `format`), atomically.
pub fn pack_to_file(
    dir: &Path,
    dest: &Path,
    format: Format,
    opts: &PackOptions,
    provenance: impl FnOnce(&str) -> Vec<u8>,
) -> Result<Packed> {
    pack_to_file_with(dir, dest, format, opts, None, provenance)
}

/// [`pack_to_file`], with a store of compressed pieces to reuse and fill (see
/// [`GzipPieces`]): the same bytes, compressed only where the store has nothing.
pub fn pack_to_file_with(
    dir: &Path,
    dest: &Path,
    format: Format,
    opts: &PackOptions,
    blocks: Option<&dyn BlockStore>,
    provenance: impl FnOnce(&str) -> Vec<u8>,
) -> Result<Packed> {
    let staged = Staged::new(dest);
    let out = staged.create()?;
    let packed = match format {
        Format::TarGz => std::thread::scope(|s| -> Result<Packed> {
            let io = |e| Error::io(staged.path(), e);
            let gz =
                GzipPieces::new(s, out, opts.level, compression_threads(), blocks).map_err(io)?;
            let (packed, gz) = write_tar_as(dir, gz, opts, false, Some(provenance), |gz, p| {
                gz.entry_starts(p)
            })?;
            gz.finish().map_err(io)?.flush().map_err(io)?;
            Ok(packed)
        })?,
        Format::Tar | Format::Dir => {
            let (packed, mut out) = write_tar(dir, out, opts, provenance)?;
            out.flush().map_err(|e| Error::io(staged.path(), e))?;
            packed
        }
    };
    staged.commit()?;
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::create_dir_all(p.join("usr/bin")).unwrap();
        std::fs::write(p.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(p.join("usr/bin/a"), b"binary").unwrap();
        std::fs::hard_link(p.join("usr/bin/a"), p.join("usr/bin/b")).unwrap();
        std::os::unix::fs::symlink("/proc/self/mounts", p.join("etc/mtab")).unwrap();
        t
    }

    fn pack(dir: &Path) -> (Packed, Vec<u8>) {
        let opts = PackOptions {
            clamp_mtime: None,
            level: 6,
        };
        let (p, out) = write_tar(dir, Vec::new(), &opts, |id| {
            format!("{{\"content_id\":\"{id}\"}}").into_bytes()
        })
        .unwrap();
        (p, out)
    }

    #[test]
    fn same_tree_same_bytes_and_owner_zero() {
        let t = tree();
        let (a, bytes_a) = pack(t.path());
        let (b, bytes_b) = pack(t.path());
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(a.content_id, b.content_id);
        let mut ar = tar::Archive::new(bytes_a.as_slice());
        let names: Vec<(String, EntryType, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().uid().unwrap(), 0);
                assert_eq!(e.header().username().unwrap(), Some(""));
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.header().gid().unwrap(),
                )
            })
            .collect();
        let paths: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/mtab",
                "etc/passwd",
                "usr",
                "usr/bin",
                "usr/bin/a",
                "usr/bin/b",
                PROVENANCE
            ]
        );
        assert_eq!(names[6].1, EntryType::Link);
        assert_eq!(a.files, 2);
        assert_eq!(a.manifest.len(), 4);
        assert_eq!(a.manifest[1].sha256, a.manifest[2].sha256);
    }

    #[test]
    fn content_id_ignores_provenance_but_not_content() {
        let t = tree();
        let (a, _) = pack(t.path());
        std::fs::write(t.path().join(PROVENANCE), b"{\"other\":1}").unwrap();
        let (b, _) = pack(t.path());
        assert_eq!(a.content_id, b.content_id);
        std::fs::write(t.path().join("etc/passwd"), b"changed").unwrap();
        let (c, _) = pack(t.path());
        assert_ne!(a.content_id, c.content_id);
    }

    #[test]
    fn staged_file_vanishes_unless_committed() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("x.tar");
        {
            let s = Staged::new(&dest);
            s.create().unwrap();
            assert!(s.path().exists());
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn packing_refuses_a_mount_point_and_never_follows_links() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to bind-mount");
            return;
        }
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), b"host").unwrap();
        let t = tree();
        std::os::unix::fs::symlink(host.path().join("secret"), t.path().join("etc/secret"))
            .unwrap();
        let (_, bytes) = pack(t.path());
        assert!(
            !bytes.windows(4).any(|w| w == b"host"),
            "followed a symlink"
        );
        std::fs::create_dir(t.path().join("mnt")).unwrap();
        rustix::mount::mount_bind(host.path(), t.path().join("mnt")).unwrap();
        let r = write_tar(t.path(), Vec::new(), &PackOptions::default(), |_| {
            Vec::new()
        });
        rustix::mount::unmount(t.path().join("mnt"), rustix::mount::UnmountFlags::DETACH).unwrap();
        let e = r.map(|_| ()).expect_err("packed a mount point").to_string();
        assert!(e.contains("mnt: a mount point inside the tree"), "{e}");
    }

    #[test]
    fn manifest_round_trips() {
        let t = tree();
        let (p, _) = pack(t.path());
        assert_eq!(parse_manifest(&manifest_text(&p)), p.manifest);
    }
}
