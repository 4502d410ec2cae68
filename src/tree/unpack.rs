//! Tar ingest for every source that arrives as a tar stream: rootfs tarballs, Docker
//! export streams, image-archive layers. The stream may be gzip-compressed (detected by
//! its magic bytes). Unlike `tar::Archive::unpack`, every path is resolved inside the root
//! (see [`Root`]) and every entry passes the rules below, each refused or neutralised
//! with a one-line message naming the entry. Layer whiteouts are applied when asked.
//!
//! The rules, and why:
//! - absolute names are read relative to the root (neutralised, as GNU tar does);
//! - `..` components are refused: no real archive needs them, and a name that climbs
//!   is the classic escape;
//! - names with control characters or invalid UTF-8 are refused: the manifest
//!   (`sha256sum` lines), the JSON report and one-line messages cannot carry them
//!   faithfully, so the manifest would no longer describe the tree;
//! - names longer than `PATH_MAX` or with a component longer than `NAME_MAX` are
//!   refused here with a clear message instead of an `ENAMETOOLONG` mid-way;
//! - an entry below a symlink planted by an earlier entry or layer is resolved inside
//!   the root (`RESOLVE_IN_ROOT`); a symlink that dangles where a directory is needed is
//!   replaced by a directory, so a link can never steer where we create things;
//! - the final component is never followed: whatever is there is removed first and the
//!   new entry created with `O_EXCL|O_NOFOLLOW`, so writing a file never writes through
//!   a symlink nor into an inode shared with an earlier hard link;
//! - hard links must name an existing non-directory inside the root (this archive or a
//!   lower layer); anything else is refused;
//! - device nodes and FIFOs are dropped (the platform binds the host `/dev` over the
//!   distro's, and unprivileged extraction on the server would fail on them);
//! - set-uid/set-gid bits are cleared (containers mount everything nosuid);
//! - duplicate entries: the later one wins, as tar's append-to-update and layers define;
//! - the expanded size (declared sizes, sparse files at their full size) and the
//!   decompressed stream are both bounded by [`UnpackOptions::max_bytes`], so neither a
//!   sparse file declaring terabytes nor a gzip bomb can fill the disk;
//! - a stream that ends before the end-of-archive blocks is refused as truncated, so a
//!   cut download never passes for a complete (smaller) tree.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use tar::EntryType;

use super::{decompressed, Error, Root};

/// The expanded-size limit when [`UnpackOptions::max_bytes`] is 0: far above any real
/// distro, far below a disk-filling bomb.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;

/// Longest name the kernel takes in one path (`PATH_MAX` without the NUL).
const MAX_NAME: usize = 4095;
/// Longest single component (`NAME_MAX`).
const MAX_COMPONENT: usize = 255;
/// How many stream bytes the extension headers of one entry (PAX records, GNU long
/// names, GNU sparse maps) may take. The tar reader holds them in memory, so without a
/// bound a header declaring a gigabyte-long name would be read into RAM.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// How to read the stream.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Apply OCI/Docker whiteouts (`.wh.NAME`, `.wh..wh..opq`) instead of extracting them.
    pub whiteouts: bool,
    /// Refuse streams that expand past this many bytes: the sum of the entries' declared
    /// (sparse: expanded) sizes, and the decompressed stream itself. 0 means
    /// [`DEFAULT_MAX_BYTES`]; `u64::MAX` means no limit.
    pub max_bytes: u64,
    /// Name of the stream for messages ("layer sha256:…", "rootfs.tar").
    pub label: String,
}

impl UnpackOptions {
    /// The limit in effect.
    pub fn limit(&self) -> u64 {
        if self.max_bytes == 0 {
            DEFAULT_MAX_BYTES
        } else {
            self.max_bytes
        }
    }
}

/// What an unpack did, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    /// Expanded bytes of the entries' content.
    pub bytes: u64,
    /// Device nodes and FIFOs dropped (and hard links to them).
    pub skipped_special: u64,
    /// Entries whose set-uid/set-gid bits were cleared.
    pub cleared_setid: u64,
    pub whiteouts: u64,
}

/// A name in a message: quoted, control characters and invalid UTF-8 escaped, very
/// long names shortened, so the message stays one readable line.
fn show(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '"' || c == '\\' {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
        if s.len() > 160 {
            let cut = (0..=160)
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            s.truncate(cut);
            s.push_str(&format!("…\" ({} bytes)", bytes.len()));
            return s;
        }
    }
    s.push('"');
    s
}

/// Refuse bytes that no stage downstream can name faithfully (see the module rules).
fn check_bytes(bytes: &[u8], what: &str) -> Result<(), String> {
    if bytes.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if bytes.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(format!(
            "{what} has a control character (newline, tab, escape…)"
        ));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(format!("{what} is not valid UTF-8"));
    }
    if bytes.len() > MAX_NAME {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME}",
            bytes.len()
        ));
    }
    Ok(())
}

/// The entry's name as a clean relative path, or why it is refused.
fn clean_name(raw: &[u8], what: &str) -> Result<PathBuf, String> {
    check_bytes(raw, what)?;
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            // An absolute name is read relative to the root, as GNU tar does.
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => {
                if p.len() > MAX_COMPONENT {
                    return Err(format!(
                        "{what} has a component of {} bytes; the limit is {MAX_COMPONENT}",
                        p.len()
                    ));
                }
                out.push(p)
            }
            Component::ParentDir => return Err(format!("{what} has a `..` component")),
            Component::Prefix(_) => return Err(format!("{what} has a prefix")),
        }
    }
    Ok(out)
}

fn ts(secs: u64) -> Timespec {
    Timespec {
        tv_sec: secs.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    }
}

/// Why the metered reader stopped a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    Headers,
    Total,
}

/// Counts the (decompressed) stream and stops it at a budget: the whole limit while an
/// entry's data is read, [`MAX_HEADER_BYTES`] while the tar reader parses headers.
#[derive(Debug, Default)]
struct Meter {
    read: Cell<u64>,
    total: Cell<u64>,
    header_budget: Cell<Option<u64>>,
    tripped: Cell<Option<Trip>>,
    eof: Cell<bool>,
}

impl Meter {
    fn headers(&self) {
        // The padding after the previous entry's data is read in this phase too.
        self.header_budget
            .set(Some(self.read.get().saturating_add(MAX_HEADER_BYTES + 512)));
    }
    fn data(&self) {
        self.header_budget.set(None);
    }
}

struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let m = &self.meter;
        let (cap, trip) = match m.header_budget.get() {
            Some(h) if h < m.total.get() => (h, Trip::Headers),
            _ => (m.total.get(), Trip::Total),
        };
        let room = cap.saturating_sub(m.read.get());
        if room == 0 {
            m.tripped.set(Some(trip));
            return Err(std::io::Error::other("stream limit reached"));
        }
        let want = buf.len().min(room.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            m.eof.set(true);
        }
        m.read.set(m.read.get() + n as u64);
        Ok(n)
    }
}

/// Copy an entry's content, leaving holes where it is all zeros: a sparse entry (or a
/// file of zeros) costs no disk for its holes, whatever size it declares.
fn copy_sparse(from: &mut impl Read, to: &mut std::fs::File) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(n as i64))?;
        } else {
            to.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    to.set_len(len)?;
    Ok(len)
}

/// Extract a (possibly gzip- or zstd-compressed) tar stream into `root`.
pub fn unpack<R: Read>(reader: R, root: &Root, opts: &UnpackOptions) -> Result<UnpackStats, Error> {
    let label = if opts.label.is_empty() {
        "tar"
    } else {
        &opts.label
    };
    let limit = opts.limit();
    let refuse = |entry: &str, reason: String| Error::Refused {
        entry: format!("{label}: entry {entry}"),
        reason,
    };
    let stream = |reason: String| Error::Refused {
        entry: label.to_string(),
        reason,
    };
    let meter = Rc::new(Meter::default());
    meter.total.set(limit);
    let input = decompressed(reader).map_err(|e| stream(format!("cannot read: {e}")))?;
    let mut archive = tar::Archive::new(Metered {
        inner: input,
        meter: meter.clone(),
    });
    let mut stats = UnpackStats::default();
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dropped: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let mut last = String::new();
    let is_root = rustix::process::geteuid().is_root();

    let over_limit = || format!("archive expands past the limit of {limit} bytes");
    let stream_err = |e: std::io::Error, last: &str| {
        let after = if last.is_empty() {
            "at the start".to_string()
        } else {
            format!("after entry {last}")
        };
        stream(match meter.tripped.get() {
            Some(Trip::Total) => format!("{} ({after})", over_limit()),
            Some(Trip::Headers) => format!(
                "extended headers longer than {MAX_HEADER_BYTES} bytes {after}: corrupt or hostile"
            ),
            None => format!("corrupt or truncated {after}: {e}"),
        })
    };

    let mut entries = archive
        .entries()
        .map_err(|e| stream(format!("not a tar archive: {e}")))?;
    loop {
        crate::interrupt::check_interrupted().map_err(|_| stream("interrupted".into()))?;
        meter.headers();
        let mut entry = match entries.next() {
            None => break,
            Some(Err(e)) => return Err(stream_err(e, &last)),
            Some(Ok(e)) => e,
        };
        meter.data();
        let raw = entry.path_bytes().into_owned();
        let shown = show(&raw);
        last = shown.clone();
        stats.entries += 1;
        let size = entry.size();
        stats.bytes = stats.bytes.saturating_add(size);
        // Declared sizes count before anything is written: a sparse entry declaring
        // terabytes is refused up front, not after filling the disk.
        if stats.bytes > limit {
            return Err(refuse(&shown, over_limit()));
        }
        let rel = clean_name(&raw, "name").map_err(|r| refuse(&shown, r))?;

        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_whiteout = opts.whiteouts && name.starts_with(".wh.");
        let header = entry.header().clone();
        let mut kind = header.entry_type();
        // Old (v7) archives mark directories only by a trailing slash.
        if kind == EntryType::Regular && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let writes_data = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        ) && !is_whiteout
            && !rel.as_os_str().is_empty();
        if !writes_data {
            // Whatever data a non-file entry declares is read here, under the stream
            // limit, not skipped by the tar reader inside the (small) header budget.
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| {
                match meter.tripped.get() {
                    Some(_) => refuse(&shown, over_limit()),
                    None => refuse(&shown, format!("corrupt or truncated: {e}")),
                }
            })?;
        }
        if is_whiteout {
            stats.whiteouts += 1;
            let dir = rel.parent().unwrap_or(Path::new(""));
            if name == ".wh..wh..opq" {
                // Opaque: hide what lower layers put in `dir`, keep what this layer added.
                if let Ok(fd) = root.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
                    let children: Vec<PathBuf> = rustix::fs::Dir::read_from(&fd)
                        .map_err(|e| Error::io(root.host_path(dir), e))?
                        .filter_map(|e| e.ok())
                        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                        .filter(|n| n != "." && n != "..")
                        .map(|n| dir.join(n))
                        .collect();
                    for c in children.into_iter().filter(|c| !created.contains(c)) {
                        root.remove(&c)?;
                    }
                }
            } else if name.starts_with(".wh..wh.") {
                // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): no file to hide,
                // and nothing to extract either.
            } else {
                let hidden = &name[4..];
                // `.wh.`, `.wh..` would name the directory itself (or its parent):
                // a whiteout hides one entry, never the directory holding it.
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(refuse(&shown, "whiteout names no file".into()));
                }
                let target = dir.join(hidden);
                // A whiteout only hides lower layers, never what this layer added.
                if !created.contains(&target) {
                    root.remove(&target)?;
                }
            }
            continue;
        }
        if rel.as_os_str().is_empty() {
            // The root directory itself: its mode and owner are ours, not the archive's.
            continue;
        }

        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        if mode & 0o6000 != 0 {
            stats.cleared_setid += 1;
        }
        mode &= !0o6000;
        // An id past 2^32-2 has no file behind it (and -1 means "leave unchanged" to
        // chown): such an owner is a corrupt or crafted header, not something to guess.
        let id = |v: std::io::Result<u64>, what: &str| match v.unwrap_or(0) {
            n if n < u32::MAX as u64 => Ok(n as u32),
            n => Err(refuse(&shown, format!("{what} {n} is not a valid id"))),
        };
        let owner = (id(header.uid(), "uid")?, id(header.gid(), "gid")?);

        match kind {
            EntryType::Directory => {
                if let Some(t) = root.file_type(&rel)? {
                    if t != FileType::Directory {
                        root.remove(&rel)?;
                    }
                }
                root.create_dir_all(&rel, mode)?;
                root.chmod(&rel, mode)?;
                dir_times.push((rel.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                if let Some(parent) = rel.parent() {
                    root.create_dir_all(parent, 0o755)?;
                }
                if root.lstat(&rel)?.is_some() {
                    root.remove(&rel)?;
                }
                let (dir, fname) = root
                    .parent(&rel)
                    .map_err(|e| Error::io(root.host_path(&rel), e))?;
                let fd = rustix::fs::openat(
                    &dir,
                    &fname,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| Error::io(root.host_path(&rel), e))?;
                let mut f = std::fs::File::from(fd);
                let got =
                    copy_sparse(&mut entry, &mut f).map_err(|e| match meter.tripped.get() {
                        Some(_) => refuse(&shown, over_limit()),
                        None => refuse(&shown, format!("corrupt or truncated: {e}")),
                    })?;
                // The tar reader ends an entry quietly at end of input.
                if got != size {
                    return Err(refuse(
                        &shown,
                        format!("corrupt or truncated: content ends after {got} of {size} bytes"),
                    ));
                }
                if is_root {
                    let _ = rustix::fs::fchown(
                        f.as_fd(),
                        Some(rustix::fs::Uid::from_raw(owner.0)),
                        Some(rustix::fs::Gid::from_raw(owner.1)),
                    );
                }
                rustix::fs::fchmod(f.as_fd(), Mode::from_raw_mode(mode))
                    .map_err(|e| Error::io(root.host_path(&rel), e))?;
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
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                // The target is kept as written, absolute or `..` alike: inside the
                // distro it means the distro's own paths, and every later access goes
                // through `Root` (resolved in the root) or never follows it (pack).
                check_bytes(&target, "symlink target").map_err(|r| refuse(&shown, r))?;
                let target = Path::new(OsStr::from_bytes(&target));
                root.symlink(target, &rel)?;
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
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                // Same rules as names: a hard link target that climbs out with `..` is
                // refused; an absolute one means the distro's path.
                let target =
                    clean_name(&target, "hard link target").map_err(|r| refuse(&shown, r))?;
                if dropped.contains(&target) {
                    // A link to a device node we dropped goes with it.
                    stats.skipped_special += 1;
                    dropped.insert(rel);
                    continue;
                }
                if target.as_os_str().is_empty() {
                    return Err(refuse(&shown, "hard link to the root directory".into()));
                }
                match root.file_type(&target)? {
                    // Hard-linked directories would make loops no tool expects.
                    Some(FileType::Directory) => {
                        return Err(refuse(&shown, "hard link to a directory".into()))
                    }
                    // The target must already be in the root (resolved inside it):
                    // linking never reaches a host file, and a dangling link is an
                    // archive error, not something to guess at.
                    None => {
                        return Err(refuse(
                            &shown,
                            format!(
                                "hard link to {} which is not in the archive (or a lower layer)",
                                show(target.as_os_str().as_bytes())
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
                root.hard_link(&target, &rel)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                stats.skipped_special += 1;
                // Whatever a lower layer had there is replaced by nothing, as the
                // layer asked for a new entry at this name.
                if root.lstat(&rel)?.is_some() {
                    root.remove(&rel)?;
                }
                dropped.insert(rel);
                continue;
            }
            // Archive-wide metadata (comments, `git archive` commit ids): no file.
            EntryType::XGlobalHeader => continue,
            // Extended headers are consumed by the tar crate; anything else is unknown.
            other => {
                return Err(refuse(&shown, format!("unsupported entry type {other:?}")));
            }
        }
        dropped.remove(&rel);
        created.insert(rel);
    }
    // The tar reader ends quietly at end of input; a complete archive ends with zero
    // blocks instead. Hitting the end of input first means the stream was cut.
    if meter.eof.get() {
        return Err(stream(if stats.entries == 0 {
            "empty or not a tar archive".into()
        } else {
            format!(
                "truncated: the stream ends after entry {last} without the end-of-archive blocks"
            )
        }));
    }

    // Directory times last: creating entries inside a directory bumps its mtime.
    dir_times.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
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

/// Bytes handed from the reading thread to the unpacker at a time.
const CHUNK: usize = 256 * 1024;

/// The unpacker's end of [`unpack_overlapped`]: chunks as they come, then end of file
/// (or the reader's error, in its place in the stream).
struct Chunks {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.cur, self.pos) = (chunk?, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// [`unpack`], reading `reader` on the calling thread while the entries are written on
/// another: a layer's decompression and hashing (the reader's work) overlap with
/// creating its files, which on two cores is most of a layer's time. Reading stops
/// when the unpacker is done (at the end marker): the rest of `reader` is the caller's.
/// A read error reaches the unpacker where it happened, so it reports it as [`unpack`]
/// would.
pub fn unpack_overlapped<R: Read>(
    reader: &mut R,
    root: &Root,
    opts: &UnpackOptions,
) -> Result<UnpackStats, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let chunks = Chunks {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            unpack(chunks, root, opts)
        });
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            let got = reader.by_ref().take(CHUNK as u64).read_to_end(&mut chunk);
            let sent = match got {
                Ok(0) => break,
                Ok(_) => tx.send(Ok(chunk)),
                Err(e) => {
                    if !chunk.is_empty() {
                        let _ = tx.send(Ok(chunk));
                    }
                    let _ = tx.send(Err(e));
                    break;
                }
            };
            // The unpacker stopped (the end marker, or an error it reports).
            if sent.is_err() {
                break;
            }
        }
        drop(tx);
        writer.join().expect("the unpacking thread panicked")
    })
}
