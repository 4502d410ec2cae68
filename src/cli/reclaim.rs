//! The storage half of `distros gc`: which API entries stay decides which version
//! directories are still named; `build_distro::push::reclaim` does the rest. This file
//! gathers those inputs from the API and prints the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use build_distro::api::{Client, GcAction, GcEntry};
use build_distro::push::reclaim::{self, DirAction, ReclaimReport};
use build_distro::push::{Registry, TransportSpec};
use build_distro::runner::System;

use super::Ctx;

/// Reclaim in every storage container. `deleted`: the entries gc removed (with `--yes`);
/// in a dry run, the entries gc would delete count as gone, so the plan shows what a real
/// run would do. An entry whose deletion failed still names its directory.
pub fn run(
    ctx: &Ctx,
    client: &Client,
    plan: &[GcEntry],
    deleted: &[u64],
    keep: usize,
    yes: bool,
    transport: &TransportSpec,
) -> build_distro::Result<ReclaimReport> {
    let mut entries: BTreeMap<u32, reclaim::Entries> = BTreeMap::new();
    for e in plan {
        let gone = if yes {
            deleted.contains(&e.id)
        } else {
            e.action == GcAction::Delete
        };
        let names = entries.entry(e.container).or_default();
        if gone {
            names.unregistered.insert(e.path.clone());
        } else {
            names.registered.insert(e.path.clone());
        }
    }
    let targets = client.storage_targets()?;
    Ok(reclaim::reclaim(
        &targets,
        &entries,
        keep,
        yes,
        transport,
        Arc::new(System),
        &ctx.reporter(),
    ))
}

/// The directories table and a one-line summary.
pub fn print(r: &ReclaimReport) {
    let size = |b: Option<u64>| b.map_or("?".into(), super::push::human_bytes);
    let mut rows = Vec::new();
    for s in &r.storages {
        for d in &s.dirs {
            let action = match (d.action, r.dry_run, d.removed) {
                (DirAction::Keep, ..) => "keep",
                (DirAction::Remove, true, _) => "would remove",
                (DirAction::Remove, false, true) => "removed",
                (DirAction::Remove, false, false) => "failed",
            };
            let why = serde_json::to_value(d.why).unwrap_or_default();
            rows.push(vec![
                s.uid.to_string(),
                d.name.clone(),
                action.to_string(),
                why.as_str().unwrap_or("?").to_string(),
                size(d.bytes),
            ]);
        }
    }
    super::print_table(&["STORAGE", "DIRECTORY", "ACTION", "WHY", "SIZE"], &rows);
    for s in &r.storages {
        if let Some(e) = &s.error {
            eprintln!("build-distro: error: storage container {}: {e}", s.uid);
        }
        for d in s.dirs.iter().filter(|d| d.error.is_some()) {
            eprintln!(
                "build-distro: error: remove {}/distros/{}: {}",
                s.uid,
                d.name,
                d.error.as_deref().unwrap_or_default()
            );
        }
    }
    let freed = super::push::human_bytes(r.freed_bytes);
    if r.dry_run {
        eprintln!("dry run: removing the unused directories would free {freed}");
    } else {
        eprintln!("freed {freed}");
    }
}
