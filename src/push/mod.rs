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
pub mod lock;
pub mod publish;
pub mod reclaim;
pub mod rsync;
pub mod ssh;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::finish::PROVENANCE;
use crate::pack::{ManifestEntry, PackOptions};
use crate::progress::Bar;

mod name;
mod transport;
mod verify;

pub(crate) use name::is_id12;
pub use name::{Name, Stale};
pub use publish::{publish, PublishOptions, PublishReport, Registry, StorageTarget};
pub use transport::{AnyTransport, TransportSpec};
pub use verify::{compare_hashes, parse_sha256sum, Counting, Measure};

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
    /// Another job holds the storage lock and did not let go in time.
    #[error(
        "{target}: storage {storage} is locked by {holder}; waited {waited} s: let that job \
         finish, or if it is gone (crashed on another host), run again with --force-unlock"
    )]
    Locked {
        target: String,
        storage: String,
        holder: String,
        waited: u64,
    },
    /// Not enough room in `distros/` (`df`), found before sending or after a failed upload.
    #[error(
        "{target}: storage {storage} has {} free, the distro needs {} or more{after}: remove \
         unused distros there (build-distro distros gc, then their directories) or ask for \
         more storage; nothing was left behind",
        mib(*free), mib(*needed)
    )]
    StorageFull {
        target: String,
        storage: String,
        free: u64,
        needed: u64,
        /// Empty before sending; after a failed upload, what the failure said.
        after: String,
    },
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Pack(#[from] crate::pack::Error),
    /// The API call of a [`Registry`] (storage targets, register, assign) failed.
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    /// Ctrl-C; every upload in flight was removed by its guard.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// An upload that failed because the link dropped or the remote process was killed,
    /// not because of what was sent or where (a full disk, a missing `distros/`): worth
    /// another try. ssh says 255 when the connection failed or dropped; a remote shell
    /// reports a process killed by signal N as 128+N; rsync has its own codes for a
    /// broken stream (10 socket I/O, 12 protocol stream, 30 timeout, 35 daemon timeout).
    pub fn is_dropped_link(&self) -> bool {
        let Error::Command {
            source: crate::runner::Error::Failed {
                command, status, ..
            },
            ..
        } = self
        else {
            return false;
        };
        let Some(code) = status
            .strip_prefix("exit code ")
            .and_then(|c| c.parse::<u32>().ok())
        else {
            return false;
        };
        let rsync = command.starts_with("rsync");
        code == 255 || (129..=192).contains(&code) || (rsync && matches!(code, 10 | 12 | 30 | 35))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input { .. } | Error::Usage(_) => 2,
            Error::Command { source, .. } => source.exit_code(),
            Error::Api(e) => e.exit_code(),
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Bytes as MiB for messages: one decimal below 10 MiB, whole above.
fn mib(b: u64) -> String {
    let m = b as f64 / 1048576.0;
    if m < 10.0 {
        format!("{m:.1} MiB")
    } else {
        format!("{m:.0} MiB")
    }
}

/// Whether a failed upload's message says the filesystem or the quota is full.
pub fn says_storage_full(e: &Error) -> bool {
    let t = e.to_string();
    t.contains("No space left on device") || t.contains("Disk quota exceeded")
}

/// Single-quote `s` for a POSIX shell. Values are validated before they get here; the
/// quoting is the second line of defence, not the only one.
pub fn sq(s: &str) -> String {
    // Always quoted, the same way, so the scripts ssh runs stay pinned by their tests
    // (shlex's quoting leaves safe words bare and picks double quotes for some).
    format!("'{}'", s.replace('\'', "'\\''"))
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
    /// The storage container's name for messages (its uid).
    fn storage(&self) -> String {
        self.describe()
    }
    /// Bytes available in `distros/` (`df`), when it can be known.
    fn free_space(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Whether uploads share unchanged files with the previous version (so they need
    /// less room than the distro's size).
    fn shares_with_previous(&self) -> bool {
        false
    }
    /// Whether an upload that dropped can be resumed into the same `distros/TMP` (rsync
    /// with `--partial`); otherwise a retry starts over in a fresh one.
    fn resumes(&self) -> bool {
        false
    }
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
    /// Try once to create the storage lock ([`lock::LOCK_DIR`]) with `owner` as its owner
    /// file; what holds it when it exists.
    fn lock_try(&self, owner: &str) -> Result<lock::LockTry>;
    /// Remove the storage lock: only while its owner file reads `only_if`, or whatever
    /// it holds with `None`. No lock is not an error.
    fn lock_remove(&self, only_if: Option<&str>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_links_are_told_from_other_failures() {
        let failed = |command: &str, status: &str| Error::Command {
            target: "30001@h".into(),
            source: crate::runner::Error::Failed {
                command: command.into(),
                status: status.into(),
                tail: String::new(),
            },
        };
        for (cmd, status, dropped) in [
            ("ssh -- 30001@h 'tar'", "exit code 255", true),
            ("ssh -- 30001@h 'tar'", "exit code 137", true),
            ("ssh -- 30001@h 'tar'", "exit code 2", false),
            ("ssh -- 30001@h 'tar'", "exit code 3", false),
            ("ssh -- 30001@h 'tar'", "a signal", false),
            ("rsync -rlptH", "exit code 12", true),
            ("rsync -rlptH", "exit code 10", true),
            ("rsync -rlptH", "exit code 11", false),
            ("rsync -rlptH", "exit code 23", false),
            ("ssh -- 30001@h 'x'", "exit code 12", false),
        ] {
            assert_eq!(
                failed(cmd, status).is_dropped_link(),
                dropped,
                "{cmd} {status}"
            );
        }
        assert!(!Error::Usage("x".into()).is_dropped_link());
    }

    #[test]
    fn sizes_read_as_mib() {
        assert_eq!(mib(1 << 20), "1.0 MiB");
        assert_eq!(mib(250 << 20), "250 MiB");
        assert_eq!(mib(12_900_000), "12 MiB");
    }

    #[test]
    fn quoting_survives_quotes() {
        // What a POSIX shell reads back is the one word given, whatever it holds.
        for w in [
            "a b",
            "it's",
            "$(rm -rf /)",
            "`id`",
            "a\"b\\c",
            "x;y|z&",
            "",
            "-n",
            "\n",
        ] {
            let q = sq(w);
            assert_eq!(shlex::split(&q), Some(vec![w.to_string()]), "{w:?} as {q}");
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {q}")])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), w, "{w:?} as {q}");
        }
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
        let t2 = Name::tmp_attempt("0123456789ab", 42, 2).unwrap();
        assert_eq!(t2.as_str(), ".bd+tmp-0123456789ab-42.2");
        assert_eq!(Name::stale(t2.as_str()), Some(Stale::Tmp(t2)));
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
            ".bd+tmp-0123456789ab-4.",
            ".bd+tmp-0123456789ab-4.x",
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
