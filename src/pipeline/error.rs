//! The pipeline's own error: what `build` itself does (the output and build directories,
//! moving trees into place) with the file and the fix named, and each stage's error as it
//! came. It names the stages, never the crate error (which names it: `crate::Error`'s
//! `Pipeline` variant).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("output directory {path}: {source}; pass --out a directory you may write")]
    OutDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "build directory {path}: {source}; free space there or pass --work-dir another directory"
    )]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write {path}: {source}; free space there or write somewhere else")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount the upgraded tree again on {target}: {why}; build with BUILD_DISTRO_CACHE_UNPACK=1, which upgrades without an overlay")]
    Remount { target: String, why: String },
    #[error("not confirmed: nothing built; answer y, or pass --yes")]
    NotConfirmed,
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    #[error(transparent)]
    Customize(#[from] crate::customize::Error),
    #[error(transparent)]
    Finish(#[from] crate::finish::Error),
    #[error(transparent)]
    Check(#[from] crate::check::Error),
    #[error(transparent)]
    Sbom(#[from] crate::sbom::Error),
    #[error(transparent)]
    Pack(#[from] crate::pack::Error),
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::Error),
}

impl Error {
    /// 2 for what the user can answer differently, else the stage's or 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotConfirmed => 2,
            Error::OutDir { .. }
            | Error::WorkDir { .. }
            | Error::Write { .. }
            | Error::Remount { .. } => 1,
            Error::Interrupted => 1,
            Error::Runner(e) => e.exit_code(),
            Error::Tree(e) => e.exit_code(),
            Error::Source(e) => e.exit_code(),
            Error::Cache(e) => e.exit_code(),
            Error::Customize(e) => e.exit_code(),
            Error::Finish(e) => e.exit_code(),
            Error::Check(e) => e.exit_code(),
            Error::Sbom(e) => e.exit_code(),
            Error::Pack(e) => e.exit_code(),
            Error::Lifecycle(e) => e.exit_code(),
        }
    }

    pub(super) fn out_dir(path: &Path, source: std::io::Error) -> Error {
        Error::OutDir {
            path: path.display().to_string(),
            source,
        }
    }

    pub(super) fn work_dir(path: &Path, source: std::io::Error) -> Error {
        Error::WorkDir {
            path: path.display().to_string(),
            source,
        }
    }

    pub(super) fn write(path: &Path, source: std::io::Error) -> Error {
        Error::Write {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<crate::interrupt::Interrupted> for Error {
    fn from(_: crate::interrupt::Interrupted) -> Self {
        Error::Interrupted
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
