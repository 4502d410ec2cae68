//! `check`: validate a distro directory or tarball and print the report.

use std::path::PathBuf;

use build_distro::check::{self, Options, Report, Severity};
use build_distro::lifecycle::{self, Support};

use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro directory, or a .tar / .tar.gz archive (read in place, never extracted).
    pub path: PathBuf,
    /// Print the report as JSON on stdout (shape: README.md, "check --json").
    #[arg(long)]
    pub json: bool,
    /// Accept a rule's findings knowingly: reported, but not failing (repeatable).
    #[arg(long = "allow", value_name = "RULE-ID")]
    pub allow: Vec<String>,
    /// Also check the distro's API path (the name it will be uploaded under).
    #[arg(long = "path", value_name = "NAME")]
    pub api_path: Option<String>,
    #[command(flatten)]
    pub support: super::flags::SupportFlags,
}

/// `--json`: the check report with the support window beside it.
#[derive(serde::Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    report: &'a Report,
    support: Option<Support>,
}

pub fn run(a: Args, _ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let opts = Options {
        allow: a.allow,
        path: a.api_path,
    };
    check::validate_allow(&opts.allow)?;
    // One index of the input serves the rules and the inventory.
    let tree = check::Tree::open(&a.path)?;
    let input = a.path.display().to_string();
    let report = check::check_tree(&tree, &input, &opts)?;
    // The release's support is stated, never judged by check's rules: a tree without a
    // package database (a static binary, a busybox tree) has no release to judge.
    let support = match build_distro::inventory::read_tree(&tree, &input) {
        Ok(inv) => Some(lifecycle::assess(
            &inv,
            &a.support.sources(),
            &lifecycle::today(),
        )?),
        Err(_) => None,
    };
    if a.json {
        print_json(&Json {
            report: &report,
            support,
        });
    } else {
        let support = support.as_ref().map(super::support::text);
        print!("{}", text(&report, support.as_deref().unwrap_or("")));
    }
    Ok(if report.summary.ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}

/// The report grouped by severity, then `support` (lines), then a summary line.
pub fn text(r: &Report, support: &str) -> String {
    let mut s = String::new();
    for (sev, title) in [
        (Severity::Error, "errors"),
        (Severity::Warning, "warnings"),
        (Severity::Info, "info"),
    ] {
        let group: Vec<_> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        s.push_str(&format!("{title}:\n"));
        for f in group {
            s.push_str(&format!(
                "  [{}] {}: {}{}\n      fix: {}\n",
                f.rule,
                f.path,
                f.message,
                if f.allowed { " (allowed)" } else { "" },
                f.hint
            ));
        }
    }
    s.push_str(support);
    let m = &r.summary;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    s.push_str(&format!(
        "check {}: {}, {}, {}, {} allowed; {} entries, {:.1} MiB: {}\n",
        r.input,
        plural(m.errors, "error", "errors"),
        plural(m.warnings, "warning", "warnings"),
        plural(m.infos, "info", "infos"),
        m.allowed,
        m.entries,
        m.bytes as f64 / 1048576.0,
        if m.ok { "ok" } else { "FAILED" }
    ));
    s
}
