//! `sbom`: write the SPDX or CycloneDX SBOM of any distro tree or tarball.

use std::io::Write;
use std::path::PathBuf;

use build_distro::sbom::{self, Format, Options};

use super::{Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro directory, or a .tar / .tar.gz archive (read in place, never extracted).
    pub target: PathBuf,
    /// Document format.
    #[arg(long, value_enum, default_value = "spdx-json")]
    pub format: Format,
    /// Write to FILE (replaced only once complete) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(a: Args, _ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let opts = Options {
        clamp: super::source_date_epoch(),
        ..Options::default()
    };
    let doc = sbom::read(&a.target, &opts)?.render(a.format);
    match &a.output {
        Some(file) => build_distro::pipeline::write_atomic(file, &doc)?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&doc).and_then(|_| out.flush()) {
                // `sbom X | head`: the reader has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r.map_err(|e| build_distro::pack::Error::io("stdout", e))?,
            }
        }
    }
    Ok(ExitStatus::Ok)
}
