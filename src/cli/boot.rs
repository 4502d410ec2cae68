//! `boot`: start a distro the way the platform does and print each step.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use build_distro::boot::{boot, Options, Status, Step, DEFAULT_UID};

use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro directory or tarball (.tar, .tar.gz).
    pub path: PathBuf,
    /// The container's uid (platform uids start at 30000).
    #[arg(long, default_value_t = DEFAULT_UID)]
    pub uid: u32,
    /// Run this vassal instead of the smoke vassal (.ini, .xml, .yaml, .json).
    #[arg(long, value_name = "FILE")]
    pub vassal: Option<PathBuf>,
    /// Open an interactive shell inside the container, as the uid, after the steps.
    #[arg(long, conflicts_with = "json")]
    pub shell: bool,
    /// Print the steps as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Give up (and tear everything down) when the steps take longer than this.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Where the temporary directories go (default: $TMPDIR or /tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let reporter = ctx.reporter();
    let opts = Options {
        uid: a.uid,
        vassal: a.vassal,
        shell: a.shell,
        timeout: Duration::from_secs(a.timeout),
        work_dir: a.work_dir,
    };
    let json = a.json;
    let mut first = true;
    let mut print = |s: &Step| {
        if !json {
            if first {
                println!("boot {} as uid {}", a.path.display(), a.uid);
                first = false;
            }
            println!("{}", line(s));
            let _ = std::io::stdout().flush();
        }
    };
    let report = boot(&a.path, &opts, &reporter, &mut print)?;
    if json {
        print_json(&report);
    } else if report.ok {
        println!("boot: ok, the platform would start this distro");
    } else {
        let failed = report.steps.iter().find(|s| s.status == Status::Fail);
        println!(
            "boot: failed at {}",
            failed.map(|s| s.step.title()).unwrap_or("an unknown step")
        );
    }
    Ok(if report.ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}

fn line(s: &Step) -> String {
    let mark = match s.status {
        Status::Ok => "ok  ",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    };
    format!("  {mark}  {:<15} {}", s.step.title(), s.detail)
}
