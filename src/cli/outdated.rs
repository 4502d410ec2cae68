//! `outdated`: installed packages of a tree, a tarball or a published version that the
//! distribution has updated; exit 1 when a security update is pending (a CI gate).

use std::path::PathBuf;
use std::sync::Arc;

use build_distro::outdated::{self, Report, Target};
use build_distro::runner::System;

use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro tree directory or tarball (.tar, .tar.gz; read in place). Omit it with
    /// --to and --path to read a published version over ssh.
    #[arg(required_unless_present = "to", conflicts_with = "to")]
    pub target: Option<PathBuf>,
    /// The storage container holding the published version (read-only, over ssh).
    #[arg(long, value_name = "UID", requires = "path")]
    pub to: Option<u32>,
    /// The published version's directory under distros/ (e.g. debian-bookworm-0123456789ab).
    #[arg(long, value_name = "P", requires = "to")]
    pub path: Option<String>,
    #[command(flatten)]
    pub compare: super::flags::CompareFlags,
    /// Exit 1 for any pending update, not only security updates.
    #[arg(long)]
    pub strict: bool,
    /// Print {"distro", "suites", "packages": [...]} as JSON on stdout (--format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// What to print on stdout: the table, the JSON report, or a CycloneDX 1.6 VEX
    /// document of the CVE IDs the pending security updates fix.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub ssh: super::flags::SshFlags,
    #[command(flatten)]
    pub api: super::flags::ApiOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    CyclonedxVex,
}

fn target(a: &Args, ctx: &Ctx) -> build_distro::Result<Target> {
    let (Some(uid), Some(path)) = (a.to, a.path.as_deref()) else {
        let p = a.target.as_deref().expect("clap requires TARGET or --to");
        return Ok(Target::open(p)?);
    };
    let ssh = a.ssh.config()?;
    // The server address comes from the API unless --ssh-host names it.
    let address = match &ssh.host {
        Some(_) => None,
        None => Some(a.api.client(ctx)?.container(uid)?.server_address),
    };
    Ok(Target::published(
        &ssh,
        uid,
        address.as_deref(),
        path,
        Arc::new(System),
    )?)
}

/// Exit 2 for every error, whatever its kind: 1 is the gate's "a security fix is out", so
/// a run that could not tell (ssh or the API unreachable, Ctrl-C) must never exit 1, or a
/// scheduled loop would rebuild and roll out on a network hiccup.
pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    gate(a, ctx).or_else(|e| {
        ctx.print_error(&e);
        Ok(ExitStatus::Usage)
    })
}

fn gate(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let format = if a.json { Format::Json } else { a.format };
    if format == Format::CyclonedxVex && a.compare.no_fixes {
        use clap::CommandFactory;
        super::Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--format cyclonedx-vex lists the fixes --no-fixes leaves out: drop one of them",
            )
            .exit();
    }
    let t = target(&a, ctx)?;
    let opts = a.compare.options();
    let report = outdated::run(&t, &opts, Arc::new(System), &ctx.reporter())?;
    let eol = report.support.as_ref().is_some_and(|s| s.end_of_life());
    match format {
        Format::Text => {
            print_table(&report);
            if let Some(s) = &report.support {
                print!("{}", super::support::text(s));
            }
        }
        Format::Json => print_json(&report),
        Format::CyclonedxVex => print_json(&build_distro::vex::document(&report)),
    }
    let security = report.security_pending();
    if ctx.verbosity != build_distro::progress::Verbosity::Quiet {
        if eol && !a.compare.allow_eol {
            eprintln!(
                "{}: past its end of security support: not compared with the mirror (--allow-eol to compare anyway)",
                report.distro
            );
        } else {
            eprintln!(
                "{}: {} update(s) pending, {security} from a security suite ({})",
                report.distro,
                report.packages.len(),
                report.suites.join(", ")
            );
        }
    }
    Ok(
        if security > 0
            || (a.strict && !report.packages.is_empty())
            || (eol && !a.compare.allow_eol)
        {
            ExitStatus::Failed
        } else {
            ExitStatus::Ok
        },
    )
}

fn print_table(r: &Report) {
    if r.packages.is_empty() {
        return;
    }
    let w = |f: fn(&outdated::Pending) -> &str, head: &str| {
        r.packages
            .iter()
            .map(|p| f(p).len())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let (wn, wi, wa, ws) = (
        w(|p| &p.name, "PACKAGE"),
        w(|p| &p.installed, "INSTALLED"),
        w(|p| &p.available, "AVAILABLE"),
        w(|p| &p.suite, "SUITE"),
    );
    println!(
        "{:<wn$}  {:<wi$}  {:<wa$}  {:<ws$}  SECURITY",
        "PACKAGE", "INSTALLED", "AVAILABLE", "SUITE"
    );
    for p in &r.packages {
        println!(
            "{:<wn$}  {:<wi$}  {:<wa$}  {:<ws$}  {}",
            p.name,
            p.installed,
            p.available,
            p.suite,
            if p.security { "yes" } else { "no" }
        );
        // The IDs under their package, indented: a list can be long.
        if let Some(f) = p.fixes.as_ref().filter(|f| !f.is_empty()) {
            println!("  fixes: {}", f.join(" "));
        }
    }
}
