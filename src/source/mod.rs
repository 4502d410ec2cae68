//! Source stage: fill an empty directory with a root filesystem. The recipe's
//! [`SourceSpec`] enum is the list of backends; [`fetch`] dispatches to one module each.

mod bootstrap;
pub mod docker;
pub mod image_archive;
pub mod rootfs;

/// Tar readers that accept gzip too (also used by `boot` for tarball input).
use std::path::Path;

use serde::Serialize;

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
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
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
        }
    }
}

/// What the stages after `source` may need to know about where the tree came from;
/// recorded in the provenance file.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SourceInfo {
    pub kind: String,
    /// Suite, image reference, file: whatever identifies the input.
    pub reference: String,
    /// Image id / digest, or the archive's sha256, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What every backend gets: a runner for programs, a reporter for progress, and the
/// limit every tar ingest passes to [`crate::tree::unpack`] as `max_bytes`.
pub struct SourceCtx<'a> {
    pub runner: &'a dyn Runner,
    pub reporter: &'a Reporter,
    /// 0: [`crate::tree::DEFAULT_MAX_BYTES`].
    pub max_unpack_bytes: u64,
}

/// Fill `target` (an existing empty directory) from `spec`.
pub fn fetch(spec: &SourceSpec, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    match spec {
        SourceSpec::Debootstrap(b) => bootstrap::run(bootstrap::Tool::Debootstrap, b, target, ctx),
        SourceSpec::Mmdebstrap(b) => bootstrap::run(bootstrap::Tool::Mmdebstrap, b, target, ctx),
        SourceSpec::Rootfs(r) => rootfs::run(r, target, ctx),
        SourceSpec::Docker(d) => docker::run(d, target, ctx),
        SourceSpec::ImageArchive(a) => image_archive::run(a, target, ctx),
    }
}

/// A reader over a tar that may be gzip- or zstd-compressed (detected by magic bytes).
pub fn decompressed<'a, R: std::io::Read + 'a>(
    r: R,
) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    use std::io::BufRead;
    let mut br = std::io::BufReader::with_capacity(1 << 20, r);
    let magic = br.fill_buf()?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// A reader that fails once Ctrl-C was pressed, so a stream being unpacked (an export,
/// a layer) stops at the next read instead of running to its end.
pub struct Interruptible<R>(pub R);

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Not ErrorKind::Interrupted: readers retry on that.
        crate::error::check_interrupted().map_err(|_| std::io::Error::other("interrupted"))?;
        self.0.read(buf)
    }
}

/// Open `target` as a [`Root`] after a backend filled it.
pub fn root_of(target: &Path) -> Result<Root, Error> {
    Ok(Root::open(target)?)
}
