//! `push`: upload a built distro into storage containers and register it. The flags that
//! say how to push are shared with `build --publish` ([`PushFlags`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use build_distro::push::lock::LockOptions;
use build_distro::push::publish::{To, Verify};
use build_distro::push::{Distro, PublishOptions, PublishReport, Registry};
use build_distro::recipe::Strategy;
use build_distro::runner::System;

use super::flags::TransportFlags;
use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A distro from `build`: NAME.tar.gz (NAME.manifest and NAME.json beside it) or a tree.
    pub path: PathBuf,
    /// Storage container uids (repeat or separate with commas), or `all`: every storage
    /// container the API lists.
    #[arg(long, required = true, value_delimiter = ',', num_args = 1.., value_name = "UID|all")]
    pub to: Vec<String>,
    /// versioned: a new path and API entry per content (`<path>-<id12>`), never touching
    /// what containers use; replace: swap the one path in place.
    #[arg(long, value_enum, default_value = "versioned")]
    pub strategy: Strategy,
    #[command(flatten)]
    pub flags: PushFlags,
    /// Print the push report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How to push: shared by `push` and `build --publish`.
#[derive(Debug, clap::Args)]
pub struct PushFlags {
    #[command(flatten)]
    pub transport: TransportFlags,
    /// What to check before the upload goes live: size (entries and bytes) or full (also
    /// every file's sha256 against the manifest).
    #[arg(long, value_enum, default_value = "size")]
    pub verify: Verify,
    /// Limit rsync's bandwidth (KiB/s).
    #[arg(long, value_name = "KIBPS")]
    pub bwlimit: Option<u32>,
    /// Servers pushed to at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Map these containers onto the new distro once registered (each restarts; asks
    /// unless --yes). Each must be on the server of a storage container pushed to.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "UID")]
    pub assign: Vec<u32>,
    /// Upload only; do not register through the API.
    #[arg(long)]
    pub no_register: bool,
    /// Answer yes to every confirmation (CI).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Seconds to wait for another job's lock on a storage container before failing.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub lock_wait: u64,
    /// Seconds after which a storage lock is taken to be abandoned and taken over (a
    /// lock whose job ran on this host and is gone is taken over at once).
    #[arg(long, value_name = "SECS", default_value_t = 4 * 3600)]
    pub lock_stale: u64,
    /// Remove the storage lock before taking it. Only when no other job is pushing to
    /// those storage containers: the error naming the holder says when this is needed.
    #[arg(long)]
    pub force_unlock: bool,
    #[command(flatten)]
    pub api: super::flags::ApiOpts,
}

fn usage(msg: impl Into<String>) -> build_distro::Error {
    build_distro::push::Error::Usage(msg.into()).into()
}

/// `--to` values: `all` alone, or uids.
pub fn parse_to(values: &[String]) -> build_distro::Result<To> {
    if values.iter().any(|v| v == "all") {
        if values.len() > 1 {
            return Err(usage("--to all cannot be combined with uids"));
        }
        return Ok(To::All);
    }
    values
        .iter()
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                usage(format!(
                    "--to {v:?}: expected a storage container uid or all"
                ))
            })
        })
        .collect::<build_distro::Result<Vec<u32>>>()
        .map(To::Uids)
}

/// The API, when the push needs it (to find storage containers, register, assign).
fn registry(
    f: &PushFlags,
    need: bool,
    ctx: &Ctx,
) -> build_distro::Result<Option<Box<dyn Registry>>> {
    if !need {
        return Ok(None);
    }
    Ok(Some(Box::new(f.api.client(ctx)?)))
}

/// The containers a push maps onto the new distro (the recipe's `assign` and
/// `--assign`, once each), confirmed: each one restarts, so the user is asked, once and
/// here, before anything happens (`build --publish` asks before it builds).
pub struct Assign(Vec<u32>);

impl Assign {
    /// `None` when the user said no. `when` opens the question ("after the build, ").
    pub fn confirm(
        recipe: &[u32],
        flags: &PushFlags,
        when: &str,
        ctx: &Ctx,
    ) -> build_distro::Result<Option<Assign>> {
        let mut assign: Vec<u32> = recipe.iter().chain(&flags.assign).copied().collect();
        assign.sort_unstable();
        assign.dedup();
        if !assign.is_empty() {
            let list: Vec<String> = assign.iter().map(u32::to_string).collect();
            let q = format!(
                "{when}map container(s) {} onto the new distro? each one restarts",
                list.join(", ")
            );
            if !ctx.confirm(&q, flags.yes).map_err(usage)? {
                return Ok(None);
            }
        }
        Ok(Some(Assign(assign)))
    }
}

/// Push `path` as `flags` say; shared by `push` and `build --publish`.
pub fn publish(
    path: &Path,
    to: To,
    strategy: Strategy,
    assign: Assign,
    flags: &PushFlags,
    work_dir: Option<PathBuf>,
    ctx: &Ctx,
) -> build_distro::Result<PublishReport> {
    let Assign(assign) = assign;
    let transport = flags.transport.spec(flags.bwlimit)?;
    // The API also knows each storage container's address, unless --ssh-host or local:DIR
    // make it unneeded.
    let need_api =
        !flags.no_register || to == To::All || !assign.is_empty() || transport.needs_address();
    let reg = registry(flags, need_api, ctx)?;
    let mut distro = Distro::open(path)?;
    let opts = PublishOptions {
        to,
        strategy,
        verify: flags.verify,
        transport,
        jobs: flags.jobs.into(),
        register: !flags.no_register,
        assign,
        work_dir: work_dir.unwrap_or_else(std::env::temp_dir),
        lock: LockOptions {
            wait: Duration::from_secs(flags.lock_wait),
            stale_after: Duration::from_secs(flags.lock_stale),
            force_unlock: flags.force_unlock,
            owner: format!("build-distro push {}", distro.name),
        },
    };
    let reporter = ctx.reporter();
    Ok(build_distro::push::publish(
        &mut distro,
        &opts,
        reg.as_deref(),
        Arc::new(System),
        &reporter,
    )?)
}

/// The final table on stdout.
pub fn print_report(r: &PublishReport) {
    println!("{} {} ({})", r.name, r.content_id, r.strategy_name());
    println!(
        "{:<8} {:<16} {:<10} {:>10}  {:<8} PATH",
        "UID", "SERVER", "STATUS", "SENT", "ID"
    );
    for t in &r.targets {
        let status = serde_json::to_value(t.status).unwrap_or_default();
        println!(
            "{:<8} {:<16} {:<10} {:>10}  {:<8} {}",
            t.uid,
            if t.server.is_empty() { "-" } else { &t.server },
            status.as_str().unwrap_or("?"),
            human_bytes(t.bytes_sent),
            t.distro_id.map_or("-".into(), |i| i.to_string()),
            t.path
        );
        if let Some(e) = &t.error {
            println!("         error: {e}");
        }
    }
    for a in &r.assigned {
        match (&a.error, a.distro_id) {
            (None, Some(id)) => println!("assigned container {} to distro {id}", a.container),
            (Some(e), _) => println!("container {} not assigned: {e}", a.container),
            _ => {}
        }
    }
}

pub(super) fn human_bytes(b: u64) -> String {
    if b < 1024 {
        format!("{b} B")
    } else if b < 1024 * 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    }
}

pub fn run(a: Args, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let to = parse_to(&a.to)?;
    let Some(assign) = Assign::confirm(&[], &a.flags, "", ctx)? else {
        return Err(usage("not confirmed: nothing pushed"));
    };
    let report = publish(&a.path, to, a.strategy, assign, &a.flags, None, ctx)?;
    if a.json {
        print_json(&report);
    } else {
        print_report(&report);
    }
    Ok(if report.ok() {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}
