//! Command-line definitions (clap) and the per-command glue that calls the library and
//! prints. One file per command; this file holds what they share.

mod api_cmds;
mod audit;
mod boot;
mod build;
mod cache;
mod check;
mod docs;
mod flags;
mod outdated;
mod push;
mod reclaim;
mod sbom;
mod support;

use std::io::IsTerminal;

use build_distro::progress::{Reporter, Verbosity};
use clap::{Parser, Subcommand};

/// Build, check, boot and publish custom distros for the uwsgi.it platform.
#[derive(Debug, Parser)]
#[command(name = "build-distro", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: commands run, API calls, the whole error chain.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline up to pack (or on to push with --publish).
    Build(build::Args),
    /// Validate a distro tree or tarball against the platform's requirements.
    Check(check::Args),
    /// Start a distro the way the platform does and report each step (needs root).
    Boot(boot::Args),
    /// Upload a distro into storage containers and register it.
    Push(push::Args),
    /// Installed packages the distribution has updated since; exit 1 when a security
    /// update is pending.
    Outdated(outdated::Args),
    /// Write the SBOM (SPDX or CycloneDX JSON) of a distro tree or tarball.
    Sbom(sbom::Args),
    /// The custom-distro API: list, show, usable, register, assign, rm, gc.
    #[command(subcommand)]
    Distros(api_cmds::DistrosCmd),
    /// Storage containers: list, enable.
    #[command(subcommand)]
    Storage(api_cmds::StorageCmd),
    /// The build cache: ls, prune.
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Print shell completions for SHELL.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// How a command ended when it did not fail with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Ok = 0,
    /// The work ran but found failures (check errors, a failed upload).
    Failed = 1,
    /// Bad usage found by the command itself (not by clap).
    Usage = 2,
}

pub fn run(command: Command, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    match command {
        Command::Build(a) => build::run(a, ctx),
        Command::Check(a) => check::run(a, ctx),
        Command::Boot(a) => boot::run(a, ctx),
        Command::Push(a) => push::run(a, ctx),
        Command::Outdated(a) => outdated::run(a, ctx),
        Command::Sbom(a) => sbom::run(a, ctx),
        Command::Distros(c) => api_cmds::run_distros(c, ctx),
        Command::Storage(c) => api_cmds::run_storage(c, ctx),
        Command::Cache(c) => cache::run(c, ctx),
        Command::Completions(a) => docs::completions(a),
        Command::Man => docs::man(),
    }
}

/// What every command needs to know about the terminal and the user's verbosity.
pub struct Ctx {
    pub verbosity: Verbosity,
    pub stderr_is_tty: bool,
    pub stdin_is_tty: bool,
}

impl Ctx {
    pub fn new(g: &Global) -> Self {
        let verbosity = if g.quiet {
            Verbosity::Quiet
        } else if g.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Ctx {
            verbosity,
            stderr_is_tty: std::io::stderr().is_terminal(),
            stdin_is_tty: std::io::stdin().is_terminal(),
        }
    }

    /// The programs' runner: with -q their live output is captured and shown only when
    /// they fail.
    pub fn runner(&self) -> Box<dyn build_distro::runner::Runner> {
        use build_distro::runner::{Captured, System};
        match self.verbosity {
            Verbosity::Quiet => Box::new(Captured(System)),
            _ => Box::new(System),
        }
    }

    /// Progress bars on a terminal, timestamped lines otherwise.
    pub fn reporter(&self) -> Reporter {
        Reporter::new(self.verbosity, self.stderr_is_tty)
    }

    /// One line; with -v the whole cause chain.
    pub fn print_error(&self, e: &build_distro::Error) {
        eprintln!("build-distro: error: {e}");
        if self.verbosity == Verbosity::Verbose {
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
        }
    }

    /// Ask a yes/no question on the terminal. Without a terminal, refuse: CI must say --yes.
    pub fn confirm(&self, question: &str, yes: bool) -> Result<bool, String> {
        if yes {
            return Ok(true);
        }
        if !self.stdin_is_tty {
            return Err(format!(
                "{question}: no terminal to confirm on; pass --yes to proceed"
            ));
        }
        eprint!("{question} [y/N] ");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(matches!(line.trim(), "y" | "Y" | "yes"))
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Plain aligned columns; the last one is not padded.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `SOURCE_DATE_EPOCH` from the environment: the one place it is read (the library gets it
/// as an argument, so the build cache's key can name it). A value that is not a number of
/// seconds is ignored, as before.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
}
