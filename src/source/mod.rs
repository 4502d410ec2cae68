//! Source stage: fill an empty directory with a root filesystem. The recipe's
//! [`SourceSpec`] enum is the list of backends; [`fetch`] dispatches to one module each.

pub mod bootstrap;
pub mod docker;
pub mod image_archive;
pub mod layers;
pub mod oci;
pub mod registry;
pub mod rootfs;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::progress::Reporter;
use crate::recipe::SourceSpec;
use crate::runner::Runner;
use crate::tree::Root;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} needs root to create device nodes and chroot; run as root (sudo build-distro build ...)")]
    NeedsRoot { tool: String },
    #[error("{path}: {msg}")]
    Input { path: String, msg: String },
    #[error("{source_kind} source: {msg}")]
    Unsupported { source_kind: String, msg: String },
    #[error("cannot reach the Docker engine at {host}: {msg}; start it (systemctl start docker), make sure you may use its socket (root or the docker group), or point DOCKER_HOST at a running engine")]
    EngineUnreachable { host: String, msg: String },
    #[error("docker image {image} is not present and [source] pull = \"never\"; docker pull or docker load it first, or set pull = \"missing\"")]
    ImageMissing { image: String },
    #[error("docker image {image}: {msg}")]
    Docker { image: String, msg: String },
    #[error("interrupted")]
    Interrupted,
    #[error("upgrade the bootstrapped tree from {suites}: {source}")]
    Upgrade {
        suites: String,
        // Boxed: the chroot's errors are large and every stage's Result carries this enum.
        #[source]
        source: Box<crate::chroot::Error>,
    },
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Mirror(#[from] crate::mirror::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NeedsRoot { .. }
            | Error::Input { .. }
            | Error::Unsupported { .. }
            | Error::EngineUnreachable { .. }
            | Error::ImageMissing { .. } => 2,
            Error::Docker { .. } | Error::Interrupted => 1,
            Error::Runner(e) => e.exit_code(),
            Error::Tree(e) => e.exit_code(),
            Error::Mirror(e) => e.exit_code(),
            Error::Upgrade { source, .. } => source.exit_code(),
        }
    }
}

/// What the stages after `source` may need to know about where the tree came from;
/// recorded in the provenance file.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct SourceInfo {
    pub kind: String,
    /// Suite, image reference, file: whatever identifies the input.
    pub reference: String,
    /// Image id / digest, or the archive's sha256, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the input was made (an image's `created`), in seconds since the epoch: pack
    /// clamps mtimes to it unless the user set `SOURCE_DATE_EPOCH`, so what the build adds
    /// (finish's files, an engine's placeholders) does not make two builds of one image
    /// differ.
    #[serde(skip)]
    pub created: Option<u64>,
    /// Every `InRelease` a bootstrap was built from (suite, -updates, -security), as
    /// fetched and verified before the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRef>,
}

/// One verified `InRelease`: where, its SHA-256, and its `Date:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseRef {
    pub url: String,
    pub sha256: String,
    /// The release's `Date:` in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<i64>,
}

impl SourceInfo {
    /// The newest `Date:` of the releases: what a bootstrap's mtimes clamp to.
    pub fn newest_release(&self) -> Option<u64> {
        newest_release(&self.releases)
    }
}

/// The newest `Date:` of `releases`: a bootstrap's source time (see
/// [`crate::build_inputs::Epoch::resolve`]).
pub fn newest_release(releases: &[ReleaseRef]) -> Option<u64> {
    releases
        .iter()
        .filter_map(|r| r.date)
        .max()
        .map(|d| d.max(0) as u64)
}

/// Seconds since the epoch of an RFC 3339 time as images record it
/// (`2024-05-01T10:20:30.123456789Z`); `None` when absent or unreadable.
pub fn epoch_of(rfc3339: Option<&str>) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(rfc3339?.trim()).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// What every backend gets: a runner for programs, a reporter for progress, and the
/// limit every tar ingest passes to [`crate::tree::unpack`] as `max_bytes`.
pub struct SourceCtx<'a> {
    pub runner: &'a dyn Runner,
    pub reporter: &'a Reporter,
    /// 0: [`crate::tree::DEFAULT_MAX_BYTES`].
    pub max_unpack_bytes: u64,
    /// Set when nothing but finish will write the tree: a backend whose input already is a
    /// tree on this machine (a rootfs directory, an image's overlay layers) may then mount
    /// it in place, with the overlay's upper and work directories created in this
    /// (scratch) directory, instead of copying it into `target`.
    pub in_place: Option<&'a Path>,
    /// `--registry-user` / `--registry-password-stdin`: used before any credentials file.
    pub registry_login: Option<&'a registry::Credentials>,
    /// The user's `SOURCE_DATE_EPOCH`, handed down by the pipeline (a bootstrap without
    /// one runs under its newest release's date).
    pub epoch: crate::build_inputs::Epoch,
    /// The recipe's `[slim]` when it is on: a bootstrap installs slim ([`crate::slim`]);
    /// other sources are slimmed after the fact by the pipeline.
    pub slim: Option<&'a crate::recipe::Slim>,
}

/// What keeps a tree read in place valid until the build is done: the overlay mount, and
/// for a Docker image the container that pins its layers. Dropped in that order (the
/// mount goes first), and before the build directory is removed.
pub struct InPlace<'a> {
    _overlay: crate::tree::overlay::Overlay,
    _pin: Option<docker::Container<'a>>,
    /// A build cache's lock, for a cache entry read in place (no prune meanwhile).
    _lock: Option<std::fs::File>,
}

impl<'a> InPlace<'a> {
    pub(crate) fn new(
        overlay: crate::tree::overlay::Overlay,
        pin: Option<docker::Container<'a>>,
    ) -> Self {
        InPlace {
            _overlay: overlay,
            _pin: pin,
            _lock: None,
        }
    }

    /// Keep `lock` open until the tree is unmounted.
    pub(crate) fn holding(mut self, lock: std::fs::File) -> Self {
        self._lock = Some(lock);
        self
    }
}

/// Fill `target` (an existing empty directory) from `spec`, or mount the source on it
/// read-only below an overlay when `ctx.in_place` allows (then the guard comes back too).
pub fn fetch<'a>(
    spec: &SourceSpec,
    target: &Path,
    ctx: &SourceCtx<'a>,
) -> Result<(SourceInfo, Option<InPlace<'a>>), Error> {
    let copied = |info| Ok((info, None));
    if let Some((tool, b)) = bootstrap_of(spec) {
        let releases = bootstrap::fetch_releases(b, ctx)?;
        let epochs = bootstrap::Epochs::of(ctx.epoch, &releases);
        return copied(bootstrap::run(
            tool, b, target, ctx, &releases, None, epochs,
        )?);
    }
    match spec {
        SourceSpec::Debootstrap(_) | SourceSpec::Mmdebstrap(_) => unreachable!("above"),
        SourceSpec::Rootfs(r) => rootfs::run(r, target, ctx),
        SourceSpec::Docker(d) => docker::run(d, target, ctx),
        SourceSpec::ImageArchive(a) => copied(image_archive::run(a, target, ctx)?),
        SourceSpec::Registry(r) => copied(registry::run(r, target, ctx)?),
    }
}

/// The bootstrap tool and its keys, when `spec` is a bootstrap source.
pub fn bootstrap_of(spec: &SourceSpec) -> Option<(bootstrap::Tool, &crate::recipe::Bootstrap)> {
    match spec {
        SourceSpec::Debootstrap(b) => Some((bootstrap::Tool::Debootstrap, b)),
        SourceSpec::Mmdebstrap(b) => Some((bootstrap::Tool::Mmdebstrap, b)),
        _ => None,
    }
}

/// A reader that fails once Ctrl-C was pressed, so a stream being unpacked (an export,
/// a layer) stops at the next read instead of running to its end.
pub struct Interruptible<R>(pub R);

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Not ErrorKind::Interrupted: readers retry on that.
        crate::interrupt::check_interrupted().map_err(|_| std::io::Error::other("interrupted"))?;
        self.0.read(buf)
    }
}

/// Open `target` as a [`Root`] after a backend filled it.
pub fn root_of(target: &Path) -> Result<Root, Error> {
    Ok(Root::open(target)?)
}
