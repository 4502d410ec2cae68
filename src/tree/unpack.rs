//! Tar ingest for every source that arrives as a tar stream: rootfs tarballs, Docker
//! export streams, image-archive layers. Unlike `tar::Archive::unpack`, every path is
//! resolved inside the root (see [`Root`]), device nodes and FIFOs are dropped (the
//! platform binds the host `/dev` over the distro's, and unprivileged extraction on the
//! server would fail on them), and set-uid/set-gid bits are cleared (containers mount
//! everything nosuid). Layer whiteouts are applied when asked.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use tar::EntryType;

use super::{Error, Root};

/// How to read the stream.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Apply OCI/Docker whiteouts (`.wh.NAME`, `.wh..wh..opq`) instead of extracting them.
    pub whiteouts: bool,
    /// Refuse streams whose entries add up to more than this many bytes (0: no limit).
    pub max_bytes: u64,
    /// Name of the stream for messages ("layer sha256:…", "rootfs.tar").
    pub label: String,
}

/// What an unpack did, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes and FIFOs dropped.
    pub skipped_special: u64,
    /// Files whose set-uid/set-gid bits were cleared.
    pub cleared_setid: u64,
    pub whiteouts: u64,
}

/// The entry's name as a clean relative path, or why it is refused.
fn clean_name(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            // An absolute name is read relative to the root, as GNU tar does.
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => return Err("name has a `..` component".into()),
            Component::Prefix(_) => return Err("name has a prefix".into()),
        }
    }
    Ok(out)
}

fn ts(secs: u64) -> Timespec {
    Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    }
}

/// Directories this unpack made sure of, and an open descriptor of the last one used:
/// most entries land next to the previous one, so resolving and creating their parent
/// again (an `openat2` and a `stat` per path component) is wasted work. Whenever an
/// existing directory or symlink is removed or replaced, a cached directory might now
/// be gone or reached differently, so the cache is dropped and paths are resolved anew.
#[derive(Default)]
struct Dirs {
    known: HashSet<PathBuf>,
    last: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

impl Dirs {
    fn clear(&mut self) {
        self.known.clear();
        self.last = None;
    }

    /// Forget everything if `replaced` (what was at a path about to change) could be a
    /// component of a cached directory's path.
    fn replacing(&mut self, replaced: Option<FileType>) {
        if matches!(replaced, Some(FileType::Directory | FileType::Symlink)) {
            self.clear();
        }
    }

    /// The directory `dir` (created like `mkdir -p` when missing), opened.
    fn open(&mut self, root: &Root, dir: &Path) -> Result<&std::os::fd::OwnedFd, Error> {
        if self.last.as_ref().is_none_or(|(p, _)| p != dir) {
            if !self.known.contains(dir) {
                root.create_dir_all(dir, 0o755)?;
                let mut cur = PathBuf::new();
                for c in dir.components() {
                    cur.push(c);
                    self.known.insert(cur.clone());
                }
            }
            let fd = root
                .open_at(dir, OFlags::PATH | OFlags::DIRECTORY, 0)
                .map_err(|e| Error::io(root.host_path(dir), e))?;
            self.last = Some((dir.to_path_buf(), fd));
        }
        Ok(&self.last.as_ref().expect("just set").1)
    }
}

/// What is at `name` in `dir`, not following a symlink.
fn type_at(
    dir: &std::os::fd::OwnedFd,
    name: &OsStr,
    host: &Path,
) -> Result<Option<FileType>, Error> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::io(host, e)),
    }
}

/// Extract a tar stream into `root`.
pub fn unpack<R: Read>(reader: R, root: &Root, opts: &UnpackOptions) -> Result<UnpackStats, Error> {
    let mut archive = tar::Archive::new(reader);
    let label = if opts.label.is_empty() {
        "tar"
    } else {
        &opts.label
    };
    let refuse = |entry: &str, reason: String| Error::Refused {
        entry: format!("{label}: {entry}"),
        reason,
    };
    let mut stats = UnpackStats::default();
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let mut dirs = Dirs::default();
    let is_root = rustix::process::geteuid().is_root();

    let entries = archive
        .entries()
        .map_err(|e| refuse("stream", format!("not a tar archive: {e}")))?;
    for entry in entries {
        crate::error::check_interrupted().map_err(|_| refuse("stream", "interrupted".into()))?;
        let mut entry =
            entry.map_err(|e| refuse("stream", format!("corrupt or truncated: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| refuse("entry", format!("unreadable name: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = clean_name(&raw).map_err(|r| refuse(&shown, r))?;
        stats.entries += 1;
        let header = entry.header().clone();
        let size = entry.size();
        stats.bytes += size;
        if opts.max_bytes > 0 && stats.bytes > opts.max_bytes {
            return Err(refuse(
                &shown,
                format!("archive expands past the limit of {} bytes", opts.max_bytes),
            ));
        }

        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if opts.whiteouts && name.starts_with(".wh.") {
            stats.whiteouts += 1;
            dirs.clear();
            let dir = rel.parent().unwrap_or(Path::new(""));
            if name == ".wh..wh..opq" {
                // Opaque: hide what lower layers put in `dir`, keep what this layer added.
                if let Ok(fd) = root.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
                    let children: Vec<PathBuf> = rustix::fs::Dir::read_from(&fd)
                        .map_err(|e| Error::io(root.host_path(dir), e))?
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        // Filter before joining: `dir/..` has no file name to compare.
                        .filter(|n| n != "." && n != "..")
                        .map(|n| dir.join(n))
                        .collect();
                    for c in children.into_iter().filter(|c| !created.contains(c)) {
                        root.remove(&c)?;
                    }
                }
            } else {
                root.remove(&dir.join(&name[4..]))?;
            }
            continue;
        }
        if rel.as_os_str().is_empty() {
            // The root directory itself: nothing to create.
            continue;
        }

        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        if mode & 0o6000 != 0 && kind == EntryType::Regular {
            stats.cleared_setid += 1;
        }
        mode &= !0o6000;
        let owner = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );

        match kind {
            EntryType::Directory => {
                let host = root.host_path(&rel);
                let parent = rel.parent().unwrap_or(Path::new(""));
                let fname = rel.file_name().expect("not the root");
                let dir = dirs.open(root, parent)?;
                let m = Mode::from_raw_mode(mode);
                match type_at(dir, fname, &host)? {
                    // A real directory (checked without following): chmod cannot leave the root.
                    Some(FileType::Directory) => {}
                    None => rustix::fs::mkdirat(dir, fname, m).map_err(|e| Error::io(&host, e))?,
                    Some(t) => {
                        dirs.replacing(Some(t));
                        root.remove(&rel)?;
                        let dir = dirs.open(root, parent)?;
                        rustix::fs::mkdirat(dir, fname, m).map_err(|e| Error::io(&host, e))?;
                    }
                }
                let dir = dirs.open(root, parent)?;
                rustix::fs::chmodat(dir, fname, m, AtFlags::empty())
                    .map_err(|e| Error::io(&host, e))?;
                dirs.known.insert(rel.clone());
                dir_times.push((rel.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let host = root.host_path(&rel);
                let parent = rel.parent().unwrap_or(Path::new(""));
                let fname = rel.file_name().expect("not the root");
                let dir = dirs.open(root, parent)?;
                match type_at(dir, fname, &host)? {
                    None => {}
                    Some(FileType::RegularFile) => {
                        rustix::fs::unlinkat(dir, fname, AtFlags::empty())
                            .map_err(|e| Error::io(&host, e))?
                    }
                    Some(t) => {
                        dirs.replacing(Some(t));
                        root.remove(&rel)?;
                    }
                }
                let dir = dirs.open(root, parent)?;
                let fd = rustix::fs::openat(
                    dir,
                    fname,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| Error::io(&host, e))?;
                let mut f = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut f)
                    .map_err(|e| refuse(&shown, format!("corrupt or truncated: {e}")))?;
                if is_root {
                    let _ = rustix::fs::fchown(
                        f.as_fd(),
                        Some(rustix::fs::Uid::from_raw(owner.0)),
                        Some(rustix::fs::Gid::from_raw(owner.1)),
                    );
                }
                rustix::fs::fchmod(f.as_fd(), Mode::from_raw_mode(mode))
                    .map_err(|e| Error::io(&host, e))?;
                let t = ts(mtime);
                let _ = rustix::fs::futimens(
                    f.as_fd(),
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                );
            }
            EntryType::Symlink => {
                let target = header
                    .link_name()
                    .map_err(|e| refuse(&shown, format!("unreadable link target: {e}")))?
                    .ok_or_else(|| refuse(&shown, "symlink without a target".into()))?;
                dirs.replacing(root.file_type(&rel)?);
                root.symlink(&target, &rel)?;
                let (dir, fname) = root
                    .parent(&rel)
                    .map_err(|e| Error::io(root.host_path(&rel), e))?;
                if is_root {
                    let _ = rustix::fs::chownat(
                        &dir,
                        &fname,
                        Some(rustix::fs::Uid::from_raw(owner.0)),
                        Some(rustix::fs::Gid::from_raw(owner.1)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                }
                let t = ts(mtime);
                let _ = rustix::fs::utimensat(
                    &dir,
                    &fname,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            EntryType::Link => {
                let target = header
                    .link_name()
                    .map_err(|e| refuse(&shown, format!("unreadable link target: {e}")))?
                    .ok_or_else(|| refuse(&shown, "hardlink without a target".into()))?;
                let target = clean_name(&target)
                    .map_err(|r| refuse(&shown, format!("hardlink target: {r}")))?;
                match root.file_type(&target)? {
                    Some(FileType::Directory) => {
                        return Err(refuse(&shown, "hardlink to a directory".into()))
                    }
                    None => {
                        return Err(refuse(
                            &shown,
                            format!(
                                "hardlink to {} which is not in the archive",
                                target.display()
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                if target == rel {
                    continue;
                }
                if let Some(parent) = rel.parent() {
                    root.create_dir_all(parent, 0o755)?;
                }
                dirs.replacing(root.file_type(&rel)?);
                root.hard_link(&target, &rel)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                stats.skipped_special += 1;
                continue;
            }
            // Extended headers are consumed by the tar crate; anything else is unknown.
            other => {
                return Err(refuse(&shown, format!("unsupported entry type {other:?}")));
            }
        }
        created.insert(rel);
    }

    // Directory times last: creating entries inside a directory bumps its mtime.
    dir_times.sort_by(|a, b| b.0.components().count().cmp(&a.0.components().count()));
    for (rel, mtime) in dir_times {
        let t = ts(mtime);
        if let Ok(fd) = root.open_at(
            &rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            0,
        ) {
            let _ = rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
            );
        }
    }
    Ok(stats)
}
