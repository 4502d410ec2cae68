//! `boot` command.

use std::path::PathBuf;

use super::{Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro directory or tarball.
    pub path: PathBuf,
}

pub fn run(_a: Args, _ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    Err(build_distro::boot::Error::Todo.into())
}
