//! `build`: run the pipeline on a recipe and print where the result is.

use std::path::PathBuf;

use build_distro::pack::{Format, PackOptions};
use build_distro::pipeline::{build, BuildOptions};
use build_distro::runner::System;

use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A recipe file, or the name of one in recipes/ (default: the built-in debian-bookworm).
    pub recipe: Option<String>,
    /// Where the archive, manifest and report go.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "tar.gz")]
    pub format: Format,
    /// Override a recipe key, e.g. --set source.suite=trixie (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Where the temporary build directory goes (default: $TMPDIR or /tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the build directory afterwards (for debugging a recipe).
    #[arg(long)]
    pub keep_build: bool,
    /// gzip level, 1 (fast) to 9 (small).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub level: u32,
    /// Accept a check rule's errors knowingly (repeatable; recorded in the provenance).
    #[arg(long = "allow", value_name = "RULE-ID")]
    pub allow: Vec<String>,
    /// Print the build report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let loaded = build_distro::recipe::load(a.recipe.as_deref(), &a.sets)?;
    let reporter = ctx.reporter();
    reporter.info(&format!(
        "building {} from {}",
        loaded.name(),
        loaded.origin
    ));
    let opts = BuildOptions {
        out: a.out,
        format: a.format,
        work_dir: a.work_dir,
        keep_build: a.keep_build,
        pack: PackOptions {
            level: a.level,
            ..PackOptions::default()
        },
        allow: a.allow,
    };
    let report = build(&loaded, &opts, &System, &reporter)?;
    if a.json {
        print_json(&report);
    } else {
        let total: f64 = report.timings.iter().map(|t| t.1).sum();
        let times: Vec<String> = report
            .timings
            .iter()
            .map(|(s, t)| format!("{s} {t:.1}s"))
            .collect();
        println!("built {} ({})", report.output.display(), report.content_id);
        println!(
            "  {} entries, {} files, {:.1} MiB content, {:.1} MiB archive",
            report.entries,
            report.files,
            report.bytes as f64 / 1048576.0,
            report.archive_bytes as f64 / 1048576.0
        );
        println!(
            "  manifest {}, report {}",
            report.manifest.display(),
            report.report.display()
        );
        println!("  time {total:.1}s: {}", times.join(", "));
    }
    Ok(ExitStatus::Ok)
}
