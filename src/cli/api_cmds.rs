//! `distros` and `storage`: the custom-distro API commands.

use super::{Ctx, ExitStatus};

#[derive(Debug, clap::Subcommand)]
pub enum DistrosCmd {
    /// List the customer's custom distros.
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum StorageCmd {
    /// List the customer's storage containers.
    List,
}

pub fn run_distros(_c: DistrosCmd, _ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    Err(build_distro::api::Error::Todo.into())
}

pub fn run_storage(_c: StorageCmd, _ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    Err(build_distro::api::Error::Todo.into())
}
