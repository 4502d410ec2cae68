//! Safe filesystem access to a distro tree. Every stage that writes into a tree (unpack,
//! customize, finish) goes through [`Root`], which resolves each path *inside* the tree
//! with `openat2(RESOLVE_IN_ROOT)`: an absolute or `..` symlink planted by an image is
//! followed as if the tree were `/`, so nothing can be created outside it.
//! [`remove_tree`] is the only recursive delete, and it never crosses a mount point.

#[doc(hidden)]
pub mod fuzz;
pub mod overlay;
mod stream;
mod unpack;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, StatxAttributes, StatxFlags,
};

pub use stream::{decompressed, HashingReader};
pub use unpack::{unpack, unpack_overlapped, UnpackOptions, UnpackStats, DEFAULT_MAX_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{entry}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("{path}: not a directory; give the distro's root directory")]
    NotADir { path: String },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused { .. } | Error::NotADir { .. } => 2,
            Error::Io { .. } => 1,
        }
    }

    pub fn io(path: impl AsRef<Path>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source: source.into(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A directory treated as `/` for every path operation.
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

/// Split `/a/b/c` into (`a/b`, `c`), refusing paths without a real final name.
fn split(rel: &Path) -> std::io::Result<(PathBuf, OsString)> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::RootDir | Component::CurDir => {}
            // `..` inside the tree is clamped by RESOLVE_IN_ROOT anyway; refusing it keeps
            // the name we act on honest.
            Component::ParentDir | Component::Prefix(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path has a `..` component",
                ))
            }
        }
    }
    let name = parts.pop().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path names the root itself",
        )
    })?;
    Ok((parts.iter().collect(), name.to_os_string()))
}

impl Root {
    /// Open an existing directory as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::NOTDIR {
                Error::NotADir {
                    path: path.display().to_string(),
                }
            } else {
                Error::io(path, e)
            }
        })?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `rel` (for messages and for tools that take paths).
    pub fn host_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.path.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    fn err(&self, rel: &Path, e: impl Into<std::io::Error>) -> Error {
        Error::io(self.host_path(rel), e)
    }

    /// Open `rel` resolving every component inside the root.
    pub fn open_at(&self, rel: &Path, flags: OFlags, mode: u32) -> std::io::Result<OwnedFd> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// The parent directory of `rel` (resolved inside the root) and the final name.
    pub fn parent(&self, rel: &Path) -> std::io::Result<(OwnedFd, OsString)> {
        let (dir, name) = split(rel)?;
        let fd = self.open_at(&dir, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        Ok((fd, name))
    }

    /// lstat inside the root; `None` when nothing is there.
    pub fn lstat(&self, rel: &Path) -> Result<Option<Stat>> {
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                return Ok(None)
            }
            Err(e) => return Err(self.err(rel, e)),
        };
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// The file type at `rel` without following a final symlink.
    pub fn file_type(&self, rel: &Path) -> Result<Option<FileType>> {
        Ok(self
            .lstat(rel)?
            .map(|st| FileType::from_raw_mode(st.st_mode)))
    }

    /// Read a file (following symlinks inside the root).
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let fd = self
            .open_at(rel, OFlags::RDONLY, 0)
            .map_err(|e| self.err(rel, e))?;
        let mut buf = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(rel, e))?;
        Ok(buf)
    }

    /// The names in the directory `rel` (resolved inside the root), sorted. Use this, not
    /// `std::fs::read_dir(host_path)`: the host would resolve a planted `/usr -> /` on
    /// the host.
    pub fn read_dir(&self, rel: &Path) -> Result<Vec<OsString>> {
        let fd = self
            .open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
            .map_err(|e| self.err(rel, e))?;
        let mut names: Vec<OsString> = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| self.err(rel, e))?
            .filter_map(|e| e.ok())
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        Ok(names)
    }

    /// The target of the symlink at `rel`, `None` if it is not a symlink.
    pub fn read_link(&self, rel: &Path) -> Result<Option<PathBuf>> {
        if self.file_type(rel)? != Some(FileType::Symlink) {
            return Ok(None);
        }
        let (dir, name) = self.parent(rel).map_err(|e| self.err(rel, e))?;
        let target =
            rustix::fs::readlinkat(&dir, &name, Vec::new()).map_err(|e| self.err(rel, e))?;
        Ok(Some(PathBuf::from(OsStr::from_bytes(target.as_bytes()))))
    }

    /// `mkdir -p` inside the root. New directories get `mode`; existing ones are left
    /// alone (and their mtimes untouched, which keeps re-finishing reproducible).
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<()> {
        let mut cur = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(p) = c else { continue };
            cur.push(p);
            match self.file_type(&cur)? {
                Some(FileType::Directory) => continue,
                Some(FileType::Symlink) => {
                    // A symlink to a directory inside the root is fine (usrmerge `/lib`).
                    match self.open_at(&cur, OFlags::PATH | OFlags::DIRECTORY, 0) {
                        Ok(_) => continue,
                        Err(_) => self.remove(&cur)?,
                    }
                }
                Some(_) => self.remove(&cur)?,
                None => {}
            }
            let (dir, name) = self.parent(&cur).map_err(|e| self.err(&cur, e))?;
            rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(mode))
                .map_err(|e| self.err(&cur, e))?;
            rustix::fs::chmodat(&dir, &name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| self.err(&cur, e))?;
        }
        Ok(())
    }

    /// Write a regular file unless it already has exactly this content and mode.
    /// Returns whether anything changed. Written to a temporary name and renamed, so a
    /// reader never sees half a file; a symlink at `rel` is replaced, never followed.
    pub fn write_file(&self, rel: &Path, data: &[u8], mode: u32) -> Result<bool> {
        if let Some(st) = self.lstat(rel)? {
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_mode & 0o7777 == mode
                && st.st_size as usize == data.len()
                && self.read(rel)? == data
            {
                return Ok(false);
            }
        }
        if let Some(parent) = rel.parent() {
            self.create_dir_all(parent, 0o755)?;
        }
        let (dir, name) = self.parent(rel).map_err(|e| self.err(rel, e))?;
        let mut tmp = OsString::from(".build-distro.");
        tmp.push(&name);
        let fd = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::CREATE | OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err(rel, e))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data).map_err(|e| self.err(rel, e))?;
        rustix::fs::fchmod(f.as_fd(), Mode::from_raw_mode(mode)).map_err(|e| self.err(rel, e))?;
        drop(f);
        if self.file_type(rel)? == Some(FileType::Directory) {
            self.remove(rel)?;
        }
        rustix::fs::renameat(&dir, &tmp, &dir, &name).map_err(|e| self.err(rel, e))?;
        Ok(true)
    }

    /// Make `rel` a symlink to `target` unless it already is one. Returns whether it changed.
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<bool> {
        if self.read_link(rel)?.as_deref() == Some(target) {
            return Ok(false);
        }
        if let Some(parent) = rel.parent() {
            self.create_dir_all(parent, 0o755)?;
        }
        if self.lstat(rel)?.is_some() {
            self.remove(rel)?;
        }
        let (dir, name) = self.parent(rel).map_err(|e| self.err(rel, e))?;
        rustix::fs::symlinkat(target, &dir, &name).map_err(|e| self.err(rel, e))?;
        Ok(true)
    }

    /// Hard-link `from` to a new name `to` (both inside the root), replacing `to`.
    pub fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        let (fdir, fname) = self.parent(from).map_err(|e| self.err(from, e))?;
        if self.lstat(to)?.is_some() {
            self.remove(to)?;
        }
        let (tdir, tname) = self.parent(to).map_err(|e| self.err(to, e))?;
        rustix::fs::linkat(&fdir, &fname, &tdir, &tname, AtFlags::empty())
            .map_err(|e| self.err(to, e))
    }

    /// Set permission bits of `rel` (not following a final symlink).
    pub fn chmod(&self, rel: &Path, mode: u32) -> Result<()> {
        let fd = self
            .open_at(rel, OFlags::RDONLY | OFlags::NOFOLLOW, 0)
            .map_err(|e| self.err(rel, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| self.err(rel, e))
    }

    /// Remove whatever is at `rel`: a file, a symlink (never its target) or a whole
    /// directory, without crossing into other mounts.
    pub fn remove(&self, rel: &Path) -> Result<()> {
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(rel, e)),
        };
        let st = match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.err(rel, e)),
        };
        let root_st = rustix::fs::fstat(&self.fd).map_err(|e| self.err(Path::new("/"), e))?;
        // Reading mountinfo costs more than the removal of one file: only directories
        // need it (a file is a mount point only as a bind, which statx tells).
        let mounts = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            mount_points_under(&self.path)
        } else {
            HashSet::new()
        };
        let canon_root = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        let host = canon_root.join(rel.strip_prefix("/").unwrap_or(rel));
        let fence = Fence {
            dev: root_st.st_dev,
            mnt_id: mount_id(&self.fd, OsStr::new(".")).0,
            mounts: &mounts,
        };
        // A mount point is never removed, whatever it is: the mount is not ours.
        if fence.crosses(&dir, &name, &st, &host) {
            return Err(Error::Refused {
                entry: self.host_path(rel).display().to_string(),
                reason: "not removed: it is a mount point".into(),
            });
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            // Mount ids and devices decide first: the host path of a name resolved
            // inside the root need not match mountinfo's (a symlink on the way).
            let mut skipped = Vec::new();
            remove_dir_contents(&dir, &name, &host, &fence, &mut skipped)
                .map_err(|e| self.err(rel, e))?;
            if !skipped.is_empty() {
                return Err(Error::Refused {
                    entry: self.host_path(rel).display().to_string(),
                    reason: format!("not removed: mount points inside ({})", skipped.join(", ")),
                });
            }
            rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR).map_err(|e| self.err(rel, e))
        } else {
            rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).map_err(|e| self.err(rel, e))
        }
    }

    /// Every path below the root (relative, sorted, not following symlinks), with its lstat.
    pub fn walk(&self) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&self.path)
            .follow_links(false)
            .same_file_system(true)
            .sort_by_file_name()
            .min_depth(1)
        {
            let e = e.map_err(|e| {
                let p = e.path().map(Path::to_path_buf).unwrap_or_default();
                Error::io(p, std::io::Error::other(e.to_string()))
            })?;
            let md = e
                .metadata()
                .map_err(|er| Error::io(e.path(), std::io::Error::other(er.to_string())))?;
            let rel = e.path().strip_prefix(&self.path).unwrap().to_path_buf();
            out.push((rel, md));
        }
        Ok(out)
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo (octal escapes decoded).
pub fn mount_points_under(dir: &Path) -> HashSet<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount id of `path` (not following a final symlink), by `statx`; `None` when the
/// kernel cannot tell (before Linux 5.8) or `path` cannot be read.
pub fn mount_id_of(path: &Path) -> Option<u64> {
    mount_id(rustix::fs::CWD, path.as_os_str()).0
}

/// The mount id of `name` in `dir` (not following a final symlink) and whether it is the
/// root of a mount, by `statx`. The id is `None` when the kernel cannot tell (before
/// Linux 5.8); the device and mountinfo checks still apply then.
fn mount_id(dir: impl AsFd, name: &OsStr) -> (Option<u64>, bool) {
    let Ok(sx) = rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::TYPE | StatxFlags::MNT_ID,
    ) else {
        return (None, false);
    };
    let is_root = sx.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
        && sx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    let id = (sx.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(sx.stx_mnt_id);
    (id, is_root)
}

/// Where a recursive removal stays: one device, one mount, no listed mount point.
struct Fence<'a> {
    dev: u64,
    mnt_id: Option<u64>,
    mounts: &'a HashSet<PathBuf>,
}

impl Fence<'_> {
    /// Whether `name` in `dir` (host path `host`) lies beyond the fence. Mountinfo paths
    /// miss a tree reached through another path, so the mount id (Linux 5.8) decides too;
    /// without it, `st_dev` does (which misses a bind mount of the same filesystem). The
    /// device alone would be wrong with the id at hand: an overlay whose layers span
    /// filesystems gives its files their layer's own `st_dev`, all in one mount.
    fn crosses(&self, dir: &OwnedFd, name: &OsStr, st: &Stat, host: &Path) -> bool {
        self.mounts.contains(host)
            || match (self.mnt_id, mount_id(dir, name)) {
                (_, (_, true)) => true,
                (Some(a), (Some(b), _)) => a != b,
                _ => st.st_dev != self.dev,
            }
    }
}

/// Empty the directory `name` in `parent` (not the directory itself), never following a
/// symlink and never descending into another filesystem or a mount point: a bind mount
/// left behind (say the host's `/dev`) must survive a cleanup. Mount points (of
/// directories or files) are left in place and collected in `skipped`, and so are the
/// directories that lead to them.
fn remove_dir_contents(
    parent: &OwnedFd,
    name: &OsStr,
    host: &Path,
    fence: &Fence,
    skipped: &mut Vec<String>,
) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names: Vec<OsString> = rustix::fs::Dir::read_from(&fd)?
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        let st = match rustix::fs::statat(&fd, &n, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let child = host.join(&n);
        if fence.crosses(&fd, &n, &st, &child) {
            skipped.push(child.display().to_string());
            continue;
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let before = skipped.len();
            remove_dir_contents(&fd, &n, &child, fence, skipped)?;
            if skipped.len() == before {
                rustix::fs::unlinkat(&fd, &n, AtFlags::REMOVEDIR)?;
            }
        } else {
            rustix::fs::unlinkat(&fd, &n, AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Remove `dir` and everything below it, except mount points (and whatever leads to
/// them), which are returned so the caller can warn. Symlinks are removed, not followed:
/// if `dir` itself is a symlink, only the link goes.
pub fn remove_tree(dir: &Path) -> Result<Vec<String>> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    if !meta.is_dir() {
        std::fs::remove_file(dir).map_err(|e| Error::io(dir, e))?;
        return Ok(Vec::new());
    }
    let canon = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let mounts = mount_points_under(&canon);
    if mounts.contains(&canon) {
        return Ok(vec![canon.display().to_string()]);
    }
    let parent = canon.parent().unwrap_or(Path::new("/"));
    let name = canon.file_name().unwrap_or_default();
    let pfd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(parent, e))?;
    // The directory we were asked to remove, as it is now (it may have been swapped for
    // a symlink since the check above: then the NOFOLLOW open below fails, and nothing
    // is followed).
    let st =
        rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Error::io(dir, e))?;
    let (mnt_id, is_mount_root) = mount_id(&pfd, name);
    if is_mount_root {
        return Ok(vec![canon.display().to_string()]);
    }
    let fence = Fence {
        dev: st.st_dev,
        mnt_id,
        mounts: &mounts,
    };
    if fence.mnt_id.is_none() && !mountinfo_readable() {
        return Err(Error::Refused {
            entry: canon.display().to_string(),
            reason: "not removed: cannot tell mount points apart (no /proc/self/mountinfo \
                     and no statx mount ids); mount /proc"
                .into(),
        });
    }
    let mut skipped = Vec::new();
    remove_dir_contents(&pfd, name, &canon, &fence, &mut skipped).map_err(|e| Error::io(dir, e))?;
    if skipped.is_empty() {
        rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR).map_err(|e| Error::io(dir, e))?;
    }
    Ok(skipped)
}

fn mountinfo_readable() -> bool {
    std::fs::metadata("/proc/self/mountinfo").is_ok()
}

/// A temporary build directory that removes itself (safely) when dropped, unless kept.
pub struct BuildDir {
    path: PathBuf,
    keep: bool,
}

impl BuildDir {
    /// A fresh directory `build-distro.XXXXXX` under `parent`.
    pub fn new(parent: &Path) -> Result<BuildDir> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let td = tempfile::Builder::new()
            .prefix("build-distro.")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let path = td.keep();
        Ok(BuildDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory after drop (for `--format dir` or `--keep-build`).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl BuildDir {
    /// Remove the directory now (unless kept) and return the mount points left in place,
    /// so the caller can warn about them; dropping does the same silently.
    pub fn close(mut self) -> Result<Vec<String>> {
        let keep = std::mem::replace(&mut self.keep, true);
        if keep {
            return Ok(Vec::new());
        }
        remove_tree(&self.path)
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.keep {
            // The error path: nothing to report to, and a mount point is never crossed.
            let _ = remove_tree(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `n` files of 100 KiB, with 4 KiB of zero padding after the end marker
    /// (as image layers have).
    fn layer(n: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..n {
            let data = vec![(i % 251) as u8; 100 * 1024];
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("d/f{i}"), data.as_slice())
                .unwrap();
        }
        let mut bytes = b.into_inner().unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        bytes
    }

    #[test]
    fn overlapped_unpack_writes_what_unpack_writes_and_leaves_the_rest_to_read() {
        let bytes = layer(40);
        let opts = UnpackOptions::default();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plain = unpack(bytes.as_slice(), &Root::open(a.path()).unwrap(), &opts).unwrap();
        let mut reader = std::io::Cursor::new(&bytes);
        let over = unpack_overlapped(&mut reader, &Root::open(b.path()).unwrap(), &opts).unwrap();
        assert_eq!((plain.entries, plain.bytes), (over.entries, over.bytes));
        for i in [0, 17, 39] {
            assert_eq!(
                std::fs::read(a.path().join(format!("d/f{i}"))).unwrap(),
                std::fs::read(b.path().join(format!("d/f{i}"))).unwrap()
            );
        }
        // Whatever was not read is the caller's, and nothing was read twice.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
        assert!(rest.len() <= 4096 + 1024, "{} bytes left", rest.len());
    }

    #[test]
    fn overlapped_unpack_reports_a_read_error_where_it_happened() {
        let bytes = layer(40);
        let t = tempfile::tempdir().unwrap();
        // Fails after 1 MiB, as a corrupt gzip stream does part way.
        let mut failing = std::io::Read::chain(&bytes[..1 << 20], Failing);
        let e = unpack_overlapped(
            &mut failing,
            &Root::open(t.path()).unwrap(),
            &UnpackOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("broken stream"), "{e}");
    }

    /// A reader that always fails.
    struct Failing;

    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("broken stream"))
        }
    }

    #[test]
    fn absolute_symlink_resolves_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("evil")).unwrap();
        let root = Root::open(t.path()).unwrap();
        root.write_file(Path::new("/evil/x"), b"hi", 0o644).unwrap();
        assert!(
            !outside.path().join("x").exists(),
            "wrote through a symlink out of the root"
        );
        // The link dangled inside the root, so it was replaced by a real directory.
        assert_eq!(std::fs::read(t.path().join("evil/x")).unwrap(), b"hi");
        // A link that resolves inside the root is followed there, as the tree's own `/`.
        std::fs::create_dir_all(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/real", t.path().join("lnk")).unwrap();
        root.write_file(Path::new("/lnk/y"), b"yo", 0o644).unwrap();
        assert_eq!(std::fs::read(t.path().join("real/y")).unwrap(), b"yo");
    }

    #[test]
    fn write_file_is_idempotent_and_replaces_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(root.write_file(Path::new("etc/a"), b"1", 0o640).unwrap());
        assert!(!root.write_file(Path::new("etc/a"), b"1", 0o640).unwrap());
        assert!(root.write_file(Path::new("etc/a"), b"1", 0o644).unwrap());
        root.symlink(Path::new("/etc/a"), Path::new("etc/b"))
            .unwrap();
        assert!(!root
            .symlink(Path::new("/etc/a"), Path::new("etc/b"))
            .unwrap());
        root.write_file(Path::new("etc/b"), b"2", 0o644).unwrap();
        assert_eq!(std::fs::read(t.path().join("etc/a")).unwrap(), b"1");
        assert_eq!(std::fs::read(t.path().join("etc/b")).unwrap(), b"2");
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let keep = tempfile::tempdir().unwrap();
        std::fs::write(keep.path().join("precious"), b"x").unwrap();
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("build");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::os::unix::fs::symlink(keep.path(), d.join("a/link")).unwrap();
        assert!(remove_tree(&d).unwrap().is_empty());
        assert!(!d.exists());
        assert!(keep.path().join("precious").exists());
    }

    #[test]
    fn read_dir_resolves_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("host-file"), b"x").unwrap();
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(host.path().strip_prefix("/").unwrap())).unwrap();
        std::fs::write(t.path().join("in-root"), b"x").unwrap();
        std::os::unix::fs::symlink(host.path(), t.path().join("usr")).unwrap();
        let root = Root::open(t.path()).unwrap();
        // `/usr` points at the host directory's path, which inside the root is empty.
        assert!(root.read_dir(Path::new("/usr")).unwrap().is_empty());
        std::os::unix::fs::symlink("/", t.path().join("up")).unwrap();
        let names = root.read_dir(Path::new("/up")).unwrap();
        assert!(names.iter().any(|n| n == "in-root"), "{names:?}");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        // An escape at the very end (a trailing space) counts too.
        assert_eq!(unescape_mountinfo("/tmp/x\\040"), "/tmp/x ");
    }
}
