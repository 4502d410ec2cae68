//! `cache ls` and `cache prune`: show and trim the build cache ([`build_distro::cache`]).

use build_distro::cache::Cache;

use super::{print_json, Ctx, ExitStatus};

#[derive(Debug, clap::Subcommand)]
pub enum CacheCmd {
    /// List the cached source trees (key summary, size, age) and the package directory.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used entries and packages until the cache fits SIZE
    /// (without --max-size: everything). Waits for running builds to finish.
    Prune {
        /// 512M, 20G, or bytes.
        #[arg(long, value_name = "SIZE", value_parser = super::build::parse_size_or_zero)]
        max_size: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

fn age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn run(cmd: CacheCmd, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    let root = Cache::default_root()?;
    match cmd {
        CacheCmd::Ls { json } => {
            let cache = Cache::open(&root)?;
            let list = cache.list();
            if json {
                print_json(&serde_json::json!({
                    "root": root,
                    "bytes": list.iter().map(|l| l.bytes).sum::<u64>(),
                    "entries": list,
                }));
            } else {
                println!("{}", root.display());
                for l in &list {
                    let id = &l.id[..12.min(l.id.len())];
                    println!(
                        "  {:<6} {id:<12} {:>10}  age {:>4}  used {:>4} ago  {}",
                        l.kind,
                        mib(l.bytes),
                        age(l.age_secs),
                        age(l.unused_secs),
                        l.summary
                    );
                    for r in &l.releases {
                        println!("         {r}");
                    }
                }
                println!("  total {}", mib(list.iter().map(|l| l.bytes).sum::<u64>()));
            }
        }
        CacheCmd::Prune { max_size, json } => {
            let reporter = ctx.reporter();
            reporter.debug("waiting for builds that use the cache");
            let cache = Cache::open_exclusive(&root)?;
            let pruned = cache.prune(max_size.unwrap_or(0))?;
            if json {
                print_json(&pruned);
            } else {
                for r in &pruned.removed {
                    println!("removed {r}");
                }
                println!(
                    "freed {}, {} left in {}",
                    mib(pruned.freed_bytes),
                    mib(pruned.kept_bytes),
                    root.display()
                );
            }
        }
    }
    Ok(ExitStatus::Ok)
}
