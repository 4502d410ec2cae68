//! Push stage, the last mile: put a packed distro into `distros/` of storage containers
//! and register it (see `publish`). Every transport uploads into a hidden temporary
//! directory, the upload is verified, and only then renamed into place, so no container
//! ever sees a half-written distro and an interrupted push leaves the previous state
//! intact; the next push cleans what an interrupted one left.
//!
//! Transports are one trait ([`Transport`]) and an enum that dispatches ([`AnyTransport`]):
//! OpenSSH streaming a tar (`ssh`), rsync over ssh sharing unchanged files with the previous
//! version (`rsync`), and a local directory (`local`). Remote commands are shell text, so
//! they are composed only from [`Name`]s (validated directory names) and numbers.

pub mod local;
pub mod publish;
pub mod reclaim;
pub mod rsync;
pub mod ssh;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::finish::PROVENANCE;
use crate::pack::{ManifestEntry, PackOptions};
use crate::progress::Bar;

pub use publish::{publish, PublishOptions, PublishReport, Registry, StorageTarget};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PATH is not something push can upload.
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    /// Options that cannot work together, or values that cannot be used.
    #[error("{0}")]
    Usage(String),
    #[error("{target}: {source}")]
    Command {
        target: String,
        #[source]
        source: crate::runner::Error,
    },
    #[error("{target}: {path}: {source}")]
    Io {
        target: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: {detail}")]
    Remote { target: String, detail: String },
    #[error("{target}: verify failed: {detail}; the upload was discarded, run push again")]
    Verify { target: String, detail: String },
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Pack(#[from] crate::pack::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input { .. } | Error::Usage(_) => 2,
            Error::Command { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Single-quote `s` for a POSIX shell. Values are validated before they get here; the
/// quoting is the second line of defence, not the only one.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A directory name directly under `distros/`: an API path (`A-Za-z0-9._-`) or one of the
/// names push uses for its own temporaries, which contain `+` so that no API path can
/// ever be one of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

const TMP_PREFIX: &str = ".bd+tmp-";
const OLD_PREFIX: &str = ".bd+old-";

/// What an interrupted push left under `distros/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// An upload that never got renamed into place.
    Tmp(Name),
    /// A distro that `replace` moved aside; `dest` is where it lived.
    Old { name: Name, dest: Name },
}

pub(crate) fn is_id12(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Name {
    /// An API path as a directory name.
    pub fn distro(path: &str) -> Result<Name> {
        crate::recipe::check_api_path(path).map_err(Error::Usage)?;
        Ok(Name(path.to_string()))
    }

    /// Where an upload of content `id12` by process `pid` goes first.
    pub fn tmp(id12: &str, pid: u32) -> Result<Name> {
        if !is_id12(id12) {
            return Err(Error::Usage(format!(
                "content id prefix {id12:?} is not 12 hex digits"
            )));
        }
        Ok(Name(format!("{TMP_PREFIX}{id12}-{pid}")))
    }

    /// Where `replace` moves the distro at `dest` while swapping in the new one.
    pub fn old(pid: u32, dest: &Name) -> Result<Name> {
        let n = format!("{OLD_PREFIX}{pid}-{}", dest.0);
        if n.len() > 255 {
            return Err(Error::Usage(format!(
                "path {:?} is too long for replace (at most 230 characters); use versioned",
                dest.0
            )));
        }
        Ok(Name(n))
    }

    /// Recognise a temporary left by an earlier push; anything else is not ours.
    pub fn stale(s: &str) -> Option<Stale> {
        if let Some(rest) = s.strip_prefix(TMP_PREFIX) {
            let (id, pid) = rest.split_once('-')?;
            return (is_id12(id) && is_digits(pid)).then(|| Stale::Tmp(Name(s.to_string())));
        }
        let rest = s.strip_prefix(OLD_PREFIX)?;
        let (pid, dest) = rest.split_once('-')?;
        if !is_digits(pid) {
            return None;
        }
        let dest = Name::distro(dest).ok()?;
        Some(Stale::Old {
            name: Name(s.to_string()),
            dest,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a remote shell argument relative to `distros/`: `./` first, so that
    /// a path starting with `-` is never read as an option, then single-quoted.
    pub fn arg(&self) -> String {
        sq(&format!("./{}", self.0))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an upload is made of.
#[derive(Debug)]
pub enum Payload {
    /// A `.tar.gz` or `.tar` from `build`.
    Archive { file: PathBuf, gzip: bool },
    /// A finished tree (`build --format dir`).
    Tree(PathBuf),
}

/// A built distro ready to push: the archive or tree plus what `build` recorded about it.
pub struct Distro {
    pub name: String,
    pub path: String,
    pub note: Option<String>,
    /// `sha256:…`
    pub content_id: String,
    /// Tar entries, provenance included.
    pub entries: u64,
    /// Bytes of regular file content, provenance excluded, hard links counted once.
    pub bytes: u64,
    pub manifest: Vec<ManifestEntry>,
    pub payload: Payload,
    /// The archive extracted for rsync (see [`Distro::prepare_tree`]).
    extracted: Option<crate::tree::BuildDir>,
}

/// The fields of `<out>/<path>.json` (the build report) that push needs.
#[derive(Deserialize)]
struct ReportFields {
    name: String,
    path: String,
    content_id: String,
    entries: u64,
    bytes: u64,
}

/// The fields of `/etc/build-distro.json` that push needs.
#[derive(Deserialize)]
struct ProvenanceFields {
    name: String,
    path: String,
    #[serde(default)]
    note: Option<String>,
    content_id: String,
}

fn input(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The content id in a provenance file's text, if it has one.
pub fn provenance_content_id(json: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()?
        .get("content_id")?
        .as_str()
        .map(str::to_string)
}

impl Distro {
    /// Open what `build` wrote: `NAME.tar.gz` (or `.tar`) with `NAME.manifest` and
    /// `NAME.json` beside it, or a tree with `/etc/build-distro.json`.
    pub fn open(path: &Path) -> Result<Distro> {
        let md = std::fs::metadata(path).map_err(|e| input(path, e.to_string()))?;
        let d = if md.is_dir() {
            Distro::open_tree(path)?
        } else {
            Distro::open_archive(path)?
        };
        if !d.content_id.starts_with("sha256:") || !is_id12(d.id12()) {
            return Err(input(
                path,
                format!("content id {:?} is not sha256:<hex>", d.content_id),
            ));
        }
        Name::distro(&d.path).map_err(|e| input(path, e.to_string()))?;
        Ok(d)
    }

    fn open_archive(file: &Path) -> Result<Distro> {
        let fname = file.file_name().unwrap_or_default().to_string_lossy();
        let (stem, gzip) = if let Some(s) = fname.strip_suffix(".tar.gz") {
            (s.to_string(), true)
        } else if let Some(s) = fname.strip_suffix(".tgz") {
            (s.to_string(), true)
        } else if let Some(s) = fname.strip_suffix(".tar") {
            (s.to_string(), false)
        } else {
            return Err(input(
                file,
                "not a distro: expected NAME.tar.gz, NAME.tar or a directory from build-distro build",
            ));
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        let beside = |ext: &str| -> Result<Vec<u8>> {
            let p = dir.join(format!("{stem}.{ext}"));
            std::fs::read(&p).map_err(|e| {
                input(
                    &p,
                    format!("{e}; push needs the {ext} that build-distro build writes beside the archive"),
                )
            })
        };
        let report_path = dir.join(format!("{stem}.json"));
        let report: ReportFields = serde_json::from_slice(&beside("json")?)
            .map_err(|e| input(&report_path, format!("not a build report: {e}")))?;
        let manifest = crate::pack::parse_manifest(&String::from_utf8_lossy(&beside("manifest")?));
        Ok(Distro {
            name: report.name,
            path: report.path,
            note: None,
            content_id: report.content_id,
            entries: report.entries,
            bytes: report.bytes,
            manifest,
            payload: Payload::Archive {
                file: file.to_path_buf(),
                gzip,
            },
            extracted: None,
        })
    }

    fn open_tree(dir: &Path) -> Result<Distro> {
        let prov_path = dir.join(PROVENANCE);
        let text = std::fs::read(&prov_path).map_err(|e| {
            input(
                &prov_path,
                format!("{e}; not a built distro: build it with build-distro build --format dir"),
            )
        })?;
        let prov: ProvenanceFields = serde_json::from_slice(&text)
            .map_err(|e| input(&prov_path, format!("not a provenance file: {e}")))?;
        // One read pass for the counts and the manifest that verification compares with.
        let (packed, _) = crate::pack::write_tar(
            dir,
            std::io::sink(),
            &PackOptions {
                clamp_mtime: None,
                level: 1,
            },
            |_| text.clone(),
        )?;
        Ok(Distro {
            name: prov.name,
            path: prov.path,
            note: prov.note,
            content_id: prov.content_id,
            entries: packed.entries,
            bytes: packed.bytes,
            manifest: packed.manifest,
            payload: Payload::Tree(dir.to_path_buf()),
            extracted: None,
        })
    }

    /// The first 12 hex digits of the content id.
    pub fn id12(&self) -> &str {
        let hex = self.content_id.trim_start_matches("sha256:");
        &hex[..12.min(hex.len())]
    }

    /// Size of what a tar upload sends, when known up front (for progress bars).
    pub fn upload_size(&self) -> Option<u64> {
        match &self.payload {
            Payload::Archive { file, .. } => std::fs::metadata(file).ok().map(|m| m.len()),
            Payload::Tree(_) => None,
        }
    }

    /// Make a local tree available (rsync needs one): an archive is extracted once into a
    /// temporary directory under `work`, removed when the distro is dropped.
    pub fn prepare_tree(&mut self, work: &Path) -> Result<()> {
        let Payload::Archive { file, gzip } = &self.payload else {
            return Ok(());
        };
        if self.extracted.is_some() {
            return Ok(());
        }
        let bd = crate::tree::BuildDir::new(work)?;
        let root_dir = bd.path().join("rootfs");
        std::fs::create_dir(&root_dir).map_err(|e| crate::tree::Error::io(&root_dir, e))?;
        let root = crate::tree::Root::open(&root_dir)?;
        let f = std::fs::File::open(file).map_err(|e| crate::pack::Error::io(file, e))?;
        let r = std::io::BufReader::with_capacity(1 << 20, f);
        let opts = crate::tree::UnpackOptions {
            label: file.display().to_string(),
            ..Default::default()
        };
        if *gzip {
            crate::tree::unpack(flate2::read::GzDecoder::new(r), &root, &opts)?;
        } else {
            crate::tree::unpack(r, &root, &opts)?;
        }
        self.extracted = Some(bd);
        Ok(())
    }

    /// The local tree: the payload itself or the extraction from [`Distro::prepare_tree`].
    pub fn tree(&self) -> Option<PathBuf> {
        match &self.payload {
            Payload::Tree(d) => Some(d.clone()),
            Payload::Archive { .. } => self.extracted.as_ref().map(|b| b.path().join("rootfs")),
        }
    }

    /// Whether [`Distro::write_stream`] writes gzip: an archive as it was built; a tree is
    /// packed on the fly, compressed only when it crosses a network (`compress_tree`).
    pub fn stream_is_gzip(&self, compress_tree: bool) -> bool {
        match &self.payload {
            Payload::Archive { gzip, .. } => *gzip,
            Payload::Tree(_) => compress_tree,
        }
    }

    /// Write the upload stream: the archive as it is, or the tree packed on the fly (at a
    /// fast gzip level when compressed: the stream is only in transit).
    pub fn write_stream(&self, w: &mut dyn Write, compress_tree: bool) -> std::io::Result<()> {
        match &self.payload {
            Payload::Archive { file, .. } => {
                let mut f = std::fs::File::open(file)?;
                std::io::copy(&mut f, w)?;
                Ok(())
            }
            Payload::Tree(dir) => {
                let prov = std::fs::read(dir.join(PROVENANCE))?;
                let opts = PackOptions {
                    clamp_mtime: None,
                    level: 1,
                };
                let other = |e: crate::pack::Error| std::io::Error::other(e.to_string());
                if compress_tree {
                    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::new(1));
                    let (_, gz) =
                        crate::pack::write_tar(dir, gz, &opts, |_| prov).map_err(other)?;
                    gz.finish()?;
                } else {
                    let (_, w) = crate::pack::write_tar(dir, w, &opts, |_| prov).map_err(other)?;
                    w.flush()?;
                }
                Ok(())
            }
        }
    }
}

/// A `Write` that reports how many bytes went through it.
pub struct Counting<'a> {
    pub inner: &'a mut dyn Write,
    pub count: u64,
    pub bar: Option<&'a Bar<'a>>,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::error::check_interrupted().map_err(|_| {
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

/// One entry directly under `distros/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    /// Modification time, seconds since the epoch.
    pub mtime: f64,
}

/// What a transport does with one storage container's `distros/` directory.
pub trait Transport: Send + Sync {
    /// Where it pushes, for messages: `30001@host.example`, `local:/containers/30001`.
    fn describe(&self) -> String;
    /// The entries of `distros/`; an error when the container has no `distros/`.
    fn list(&self) -> Result<Vec<Listed>>;
    /// The content id recorded in `distros/NAME/etc/build-distro.json`, when there is one.
    fn content_id(&self, name: &Name) -> Result<Option<String>>;
    /// Put the distro into the fresh directory `distros/TMP`; `prev` is an existing distro
    /// whose unchanged files may be shared (hard links). Returns the bytes sent.
    fn upload(&self, d: &Distro, tmp: &Name, prev: Option<&Name>, bar: &Bar) -> Result<u64>;
    fn measure(&self, name: &Name) -> Result<Measure>;
    /// sha256 of every regular file, path (`/etc/passwd`) → hex.
    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>>;
    /// Make `tmp` world-traversable and rename it to `dest`. With `aside`, an existing
    /// `dest` is first renamed to `aside` (replace); without, an existing `dest` is an error.
    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()>;
    /// Rename `from` to `to` unless `to` exists (restores what `replace` moved aside).
    fn restore(&self, from: &Name, to: &Name) -> Result<()>;
    /// Remove `distros/NAME` and everything below it.
    fn remove(&self, name: &Name) -> Result<()>;
    /// Disk usage in bytes of each of `names` in order, as `du -s` counts several
    /// arguments: a file hard-linked into an earlier name is not counted again. Put what
    /// stays first, and the sizes of the rest are what removing them frees.
    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>>;
}

/// The transports, as one type.
pub enum AnyTransport {
    Ssh(ssh::Ssh),
    Rsync(rsync::Rsync),
    Local(local::Local),
}

impl AnyTransport {
    fn inner(&self) -> &dyn Transport {
        match self {
            AnyTransport::Ssh(t) => t,
            AnyTransport::Rsync(t) => t,
            AnyTransport::Local(t) => t,
        }
    }
}

impl Transport for AnyTransport {
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn list(&self) -> Result<Vec<Listed>> {
        self.inner().list()
    }
    fn content_id(&self, name: &Name) -> Result<Option<String>> {
        self.inner().content_id(name)
    }
    fn upload(&self, d: &Distro, tmp: &Name, prev: Option<&Name>, bar: &Bar) -> Result<u64> {
        self.inner().upload(d, tmp, prev, bar)
    }
    fn measure(&self, name: &Name) -> Result<Measure> {
        self.inner().measure(name)
    }
    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        self.inner().hashes(name)
    }
    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()> {
        self.inner().install(tmp, dest, aside)
    }
    fn restore(&self, from: &Name, to: &Name) -> Result<()> {
        self.inner().restore(from, to)
    }
    fn remove(&self, name: &Name) -> Result<()> {
        self.inner().remove(name)
    }
    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>> {
        self.inner().disk_usage(names)
    }
}

/// How to reach storage containers, as the user chose (`--transport`, ssh flags).
#[derive(Debug, Clone)]
pub enum TransportSpec {
    Ssh(ssh::SshConfig),
    Rsync {
        ssh: ssh::SshConfig,
        bwlimit: Option<u32>,
    },
    /// `local:DIR`: DIR holds the containers' homes (`/containers` on a server).
    Local(PathBuf),
}

impl TransportSpec {
    /// `ssh`, `rsync` or `local:DIR`, with the ssh settings for the first two.
    pub fn parse(s: &str, ssh: ssh::SshConfig, bwlimit: Option<u32>) -> Result<TransportSpec> {
        let spec = match s {
            "ssh" => TransportSpec::Ssh(ssh),
            "rsync" => TransportSpec::Rsync { ssh, bwlimit },
            _ => match s.strip_prefix("local:") {
                Some(d) if !d.is_empty() => TransportSpec::Local(PathBuf::from(d)),
                _ => {
                    return Err(Error::Usage(format!(
                        "transport {s:?}: expected ssh, rsync or local:DIR"
                    )))
                }
            },
        };
        if bwlimit.is_some() && !matches!(spec, TransportSpec::Rsync { .. }) {
            return Err(Error::Usage(
                "--bwlimit works with --transport rsync only".into(),
            ));
        }
        Ok(spec)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TransportSpec::Ssh(_) => "ssh",
            TransportSpec::Rsync { .. } => "rsync",
            TransportSpec::Local(_) => "local",
        }
    }

    /// Whether uploads need a local tree (see [`Distro::prepare_tree`]).
    pub fn needs_tree(&self) -> bool {
        matches!(self, TransportSpec::Rsync { .. })
    }

    /// Whether it needs the storage container's server address.
    pub fn needs_address(&self) -> bool {
        match self {
            TransportSpec::Ssh(c) | TransportSpec::Rsync { ssh: c, .. } => c.host.is_none(),
            TransportSpec::Local(_) => false,
        }
    }

    /// The transport for storage container `uid` at `address`.
    pub fn connect(
        &self,
        uid: u32,
        address: Option<&str>,
        runner: std::sync::Arc<dyn crate::runner::Runner>,
    ) -> Result<AnyTransport> {
        Ok(match self {
            TransportSpec::Ssh(c) => AnyTransport::Ssh(ssh::Ssh::new(c, uid, address, runner)?),
            TransportSpec::Rsync { ssh, bwlimit } => AnyTransport::Rsync(rsync::Rsync {
                ssh: ssh::Ssh::new(ssh, uid, address, runner)?,
                bwlimit: *bwlimit,
            }),
            TransportSpec::Local(dir) => {
                AnyTransport::Local(local::Local::new(dir.join(uid.to_string())))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("a b"), "'a b'");
        assert_eq!(sq("it's"), "'it'\\''s'");
        assert_eq!(sq("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn names_are_validated() {
        assert!(Name::distro("debian-12.1_x").is_ok());
        for bad in ["a/b", "..", ".", "a b", "x'y", "$(id)", "", "a\nb"] {
            assert!(Name::distro(bad).is_err(), "{bad:?}");
        }
        // Valid, and harmless as an argument: never read as an option.
        assert_eq!(Name::distro("-rf").unwrap().arg(), "'./-rf'");
        assert!(Name::tmp("0123456789ab", 7).is_ok());
        assert!(Name::tmp("0123456789a'", 7).is_err());
        assert!(Name::tmp("0123456789AB", 7).is_err());
    }

    #[test]
    fn only_our_temporaries_are_stale() {
        let t = Name::tmp("0123456789ab", 42).unwrap();
        assert_eq!(t.as_str(), ".bd+tmp-0123456789ab-42");
        assert_eq!(Name::stale(t.as_str()), Some(Stale::Tmp(t)));
        let d = Name::distro("deb-12").unwrap();
        let o = Name::old(9, &d).unwrap();
        assert_eq!(o.as_str(), ".bd+old-9-deb-12");
        assert_eq!(
            Name::stale(o.as_str()),
            Some(Stale::Old {
                name: o.clone(),
                dest: d
            })
        );
        for not_ours in [
            ".bd-tmp-0123456789ab-42",
            ".bd+tmp-0123456789ab-",
            ".bd+tmp-0123456789ab-4x",
            ".bd+tmp-0123456789-42",
            ".bd+old-x-deb",
            ".bd+old-9-a/b",
            "debian",
            ".old_root",
        ] {
            assert_eq!(Name::stale(not_ours), None, "{not_ours}");
        }
        // No API path can collide with a temporary.
        assert!(crate::recipe::check_api_path(".bd+tmp-0123456789ab-42").is_err());
    }

    #[test]
    fn measure_counts_hard_links_once() {
        let m = Measure::from_find("d 1 4096\nf 2 10\nf 2 10\nl 3 7\nf 4 5\n");
        assert_eq!(
            m,
            Measure {
                entries: 6,
                bytes: 15
            }
        );
    }

    #[test]
    fn sha256sum_output_with_escapes() {
        let text = "aa  ./etc/passwd\n\\bb  ./odd\\nname\\\\x\ncc  ./a  b\n";
        let m = parse_sha256sum(text);
        assert_eq!(m["/etc/passwd"], "aa");
        assert_eq!(m["/odd\nname\\x"], "bb");
        assert_eq!(m["/a  b"], "cc");
    }

    #[test]
    fn hash_comparison_names_the_differences() {
        let manifest = vec![
            ManifestEntry {
                sha256: "aa".into(),
                path: "/a".into(),
            },
            ManifestEntry {
                sha256: "bb".into(),
                path: "/b".into(),
            },
        ];
        let mut remote = BTreeMap::new();
        remote.insert("/a".to_string(), "aa".to_string());
        remote.insert("/b".to_string(), "bb".to_string());
        assert_eq!(compare_hashes(&manifest, &remote), None);
        remote.insert("/b".to_string(), "xx".to_string());
        remote.insert("/c".to_string(), "cc".to_string());
        remote.remove("/a");
        assert_eq!(
            compare_hashes(&manifest, &remote).unwrap(),
            "content differs: /b; missing: /a; not in the manifest: /c"
        );
    }

    #[test]
    fn transport_spec_parsing() {
        let c = ssh::SshConfig::default();
        assert_eq!(
            TransportSpec::parse("ssh", c.clone(), None).unwrap().kind(),
            "ssh"
        );
        assert!(matches!(
            TransportSpec::parse("local:/x", c.clone(), None).unwrap(),
            TransportSpec::Local(p) if p == Path::new("/x")
        ));
        let e = TransportSpec::parse("ftp", c.clone(), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(TransportSpec::parse("ssh", c, Some(100)).is_err());
    }
}
