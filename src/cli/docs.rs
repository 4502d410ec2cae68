//! `completions` and `man`: generated from the clap definition, so they never drift.

use clap::CommandFactory;

use super::{Cli, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs) -> build_distro::Result<ExitStatus> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "build-distro", &mut std::io::stdout());
    Ok(ExitStatus::Ok)
}

pub fn man() -> build_distro::Result<ExitStatus> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| build_distro::pack::Error::io("stdout", e))?;
    Ok(ExitStatus::Ok)
}
