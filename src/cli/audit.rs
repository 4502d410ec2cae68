//! `distros audit`: every custom distro of the account, its published version's support
//! window and pending security fixes, and the containers using it; exit 1 when any needs
//! a rebuild, 2 when any could not be audited.

use std::sync::Arc;

use build_distro::audit::{self, Audit, DistroAudit};
use build_distro::lifecycle::State;
use build_distro::runner::System;

use super::{print_json, print_table, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub compare: super::flags::CompareFlags,
    #[command(flatten)]
    pub ssh: super::flags::SshFlags,
    #[command(flatten)]
    pub api: super::flags::ApiOpts,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Exit 2 for every error, as `outdated`: 1 means "rebuild", and a run that could not
/// tell must never say so.
pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    gate(a, ctx).or_else(|e| {
        ctx.print_error(&e);
        Ok(ExitStatus::Usage)
    })
}

fn gate(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let client = a.api.client(ctx)?;
    let opts = audit::Options {
        outdated: a.compare.options(),
        ssh: a.ssh.config()?,
    };
    let result = audit::run(&client, &opts, Arc::new(System), &ctx.reporter())?;
    if a.json {
        print_json(&result);
    } else {
        print_audit(&result);
    }
    for d in result
        .distros
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| (d, e)))
    {
        eprintln!(
            "build-distro: error: distro {} ({}, storage {}): {}",
            d.0.id, d.0.name, d.0.storage, d.1
        );
    }
    Ok(if result.errors() > 0 {
        ExitStatus::Usage
    } else if result.needs_rebuild() {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}

/// The release's state in a word.
fn state(d: &DistroAudit) -> String {
    let Some(s) = d.report.as_ref().and_then(|r| r.support.as_ref()) else {
        return "-".into();
    };
    let r = &s.release;
    match (r.state, &r.since, &r.until) {
        (State::Supported, _, Some(u)) => format!("supported until {u}"),
        (State::Supported, _, None) => "supported".into(),
        (State::Lts, _, Some(u)) => format!("LTS until {u}"),
        (State::EndOfLife, Some(s), _) => format!("END OF LIFE since {s}"),
        (State::EndOfLife, None, _) => "END OF LIFE".into(),
        (State::Development, _, _) => "development".into(),
        _ => "unknown".into(),
    }
}

fn print_audit(a: &Audit) {
    let rows: Vec<Vec<String>> = a
        .distros
        .iter()
        .map(|d| {
            let (release, fixes) = match &d.report {
                Some(r) => (
                    r.distro.clone(),
                    r.packages
                        .iter()
                        .filter(|p| p.security)
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                None => ("-".into(), "-".into()),
            };
            let used: Vec<String> = d.used_by.iter().map(u32::to_string).collect();
            vec![
                d.id.to_string(),
                d.name.clone(),
                format!("{}:{}", d.storage, d.path),
                release,
                state(d),
                if fixes.is_empty() {
                    "none".into()
                } else {
                    fixes
                },
                if used.is_empty() {
                    "-".into()
                } else {
                    used.join(",")
                },
                match (&d.error, d.needs_rebuild) {
                    (Some(_), _) => "ERROR".into(),
                    (None, true) => "REBUILD".into(),
                    (None, false) => "ok".into(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "NAME",
            "STORAGE:PATH",
            "RELEASE",
            "SUPPORT",
            "SECURITY FIXES",
            "USED BY",
            "VERDICT",
        ],
        &rows,
    );
    // The CVE IDs each pending security fix closes, which scanners and auditors speak.
    for d in &a.distros {
        let Some(r) = &d.report else { continue };
        for p in r.packages.iter().filter(|p| p.security) {
            let ids = p.fixes.as_deref().unwrap_or_default();
            println!(
                "{} {}: {} {} -> {}{}",
                d.id,
                d.name,
                p.name,
                p.installed,
                p.available,
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(" fixes {}", ids.join(" "))
                }
            );
        }
    }
    let rebuild = a.distros.iter().filter(|d| d.needs_rebuild).count();
    println!(
        "{} distro(s): {rebuild} need a rebuild, {} could not be audited",
        a.distros.len(),
        a.errors()
    );
}
