//! The crate error: one variant per stage module, each carrying that module's own error.
//! Every error knows its exit code: 2 for bad usage or bad input, 1 when the work failed.
//!
//! Only the binary's `cli` uses it: it names every stage and `pipeline`, so a module it
//! names that used it would sit in an import cycle with it (ARCHITECTURE.md). Stages and
//! the pipeline return their own error, with their own `Interrupted` variant for Ctrl-C.

/// Anything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Recipe(#[from] crate::recipe::Error),
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    #[error(transparent)]
    Customize(#[from] crate::customize::Error),
    #[error(transparent)]
    Finish(#[from] crate::finish::Error),
    #[error(transparent)]
    Check(#[from] crate::check::Error),
    #[error(transparent)]
    Pack(#[from] crate::pack::Error),
    #[error(transparent)]
    Boot(#[from] crate::boot::Error),
    #[error(transparent)]
    Push(#[from] crate::push::Error),
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    #[error(transparent)]
    Mirror(#[from] crate::mirror::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    #[error(transparent)]
    Outdated(#[from] crate::outdated::Error),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::Error),
    #[error(transparent)]
    Sbom(#[from] crate::sbom::Error),
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::Error),
    /// The user pressed Ctrl-C (or the process got SIGTERM); guards have undone their work.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// 2 when the input or the usage was wrong, 1 when the work itself failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Recipe(_) => 2,
            Error::Runner(e) => e.exit_code(),
            Error::Tree(e) => e.exit_code(),
            Error::Source(e) => e.exit_code(),
            Error::Customize(e) => e.exit_code(),
            Error::Finish(e) => e.exit_code(),
            Error::Check(e) => e.exit_code(),
            Error::Pack(e) => e.exit_code(),
            Error::Boot(e) => e.exit_code(),
            Error::Push(e) => e.exit_code(),
            Error::Api(e) => e.exit_code(),
            Error::Mirror(e) => e.exit_code(),
            Error::Cache(e) => e.exit_code(),
            Error::Outdated(e) => e.exit_code(),
            Error::Inventory(e) => e.exit_code(),
            Error::Sbom(e) => e.exit_code(),
            Error::Lifecycle(e) => e.exit_code(),
            Error::Audit(e) => e.exit_code(),
            Error::Pipeline(e) => e.exit_code(),
            Error::Interrupted => 1,
        }
    }
}

impl From<crate::interrupt::Interrupted> for Error {
    fn from(_: crate::interrupt::Interrupted) -> Self {
        Error::Interrupted
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
