//! Source stage: fill an empty directory with a root filesystem. The recipe's
//! [`SourceSpec`] enum is the list of backends; [`fetch`] dispatches to one module each.

mod bootstrap;
mod rootfs;

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
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NeedsRoot { .. } | Error::Input { .. } | Error::Unsupported { .. } => 2,
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
        SourceSpec::Docker(_) | SourceSpec::ImageArchive(_) => Err(Error::Unsupported {
            source_kind: spec.kind().into(),
            msg: "not available in this build yet".into(),
        }),
    }
}

/// Open `target` as a [`Root`] after a backend filled it.
pub fn root_of(target: &Path) -> Result<Root, Error> {
    Ok(Root::open(target)?)
}
