//! `distros` and `storage`: the custom-distro API commands. The safety rules (never delete
//! a distro in use, check usability before assigning, find ids after registering) live in
//! `build_distro::api`; this file asks for confirmation and prints.

use build_distro::api::{self, GcAction};
use serde::Serialize;

use super::flags::ApiOpts;
use super::{print_json, print_table, Ctx, ExitStatus};

/// Options every API command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub api: ApiOpts,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DistrosCmd {
    /// List the customer's custom distros, their storage container, server and users.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Audit every custom distro: its published version (read over ssh, as `outdated
    /// --to`), its release's support window, pending security fixes and the containers
    /// using it. Exit 1 when any needs a rebuild, 2 when any could not be audited.
    Audit(super::audit::Args),
    /// Show one custom distro (path, note, uuid) and the containers that use it.
    Show {
        id: u64,
        #[command(flatten)]
        common: Common,
    },
    /// List the custom distros CONTAINER may use (same server, another container of yours).
    Usable {
        container: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Register a distro uploaded to /containers/UID/distros/PATH; prints its id.
    /// Idempotent: the same name and path already registered give the existing id.
    Register {
        /// The storage container's uid.
        #[arg(long, value_name = "UID")]
        storage: u32,
        #[arg(long)]
        name: String,
        /// Directory under the storage container's distros/ (A-Za-z0-9._- only).
        #[arg(long)]
        path: String,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        common: Common,
    },
    /// Make containers use a custom distro. Each container restarts; with several, one at
    /// a time with a pause between.
    Assign {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<u32>,
        /// The custom distro id (the server cannot detach one: `none` is refused).
        #[arg(long, value_name = "ID")]
        distro: String,
        /// Seconds to wait between two containers.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        pause: u64,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a custom distro's API entry (its files stay; `distros gc` reclaims them).
    /// Refused while a container uses it: the server would delete that container too.
    Rm {
        id: u64,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Delete old versioned entries (<path>-<12 hex>) beyond the newest N per storage
    /// container and path, never one in use; then remove, in every storage container, the
    /// version directories no remaining entry names (newest N per path kept): those of the
    /// entries just deleted at once, others only after a day (a push may be about to
    /// register them), and uploads abandoned over a day ago. A dry run unless --yes.
    Gc {
        /// How many versions of each path to keep.
        #[arg(long, value_name = "N", default_value_t = 3)]
        keep: usize,
        /// Really delete (otherwise only show what would go).
        #[arg(long, short)]
        yes: bool,
        /// Delete API entries only; leave the storage containers' directories alone.
        #[arg(long)]
        keep_files: bool,
        #[command(flatten)]
        transport: super::flags::TransportFlags,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum StorageCmd {
    /// List the customer's storage containers, per server.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Turn a container into a storage container (it restarts and gets ~/distros/).
    Enable {
        uid: u32,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
}

fn uids(list: &[u32]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn usage_error(msg: &str) -> ExitStatus {
    eprintln!("build-distro: error: {msg}");
    ExitStatus::Usage
}

/// `None` to go on; `Some(status)` when the user declined or there is no terminal.
fn ask(ctx: &Ctx, question: &str, yes: bool) -> Option<ExitStatus> {
    match ctx.confirm(question, yes) {
        Ok(true) => None,
        Ok(false) => {
            eprintln!("build-distro: nothing done");
            Some(ExitStatus::Failed)
        }
        Err(msg) => Some(usage_error(&msg)),
    }
}

pub fn run_distros(c: DistrosCmd, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    match c {
        DistrosCmd::List { common } => {
            let client = common.api.client(ctx)?;
            let list = client.distros_overview()?;
            if common.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.name.clone(),
                            d.container.to_string(),
                            d.server.clone(),
                            uids(&d.used_by),
                        ]
                    })
                    .collect();
                print_table(&["ID", "NAME", "STORAGE", "SERVER", "USED BY"], &rows);
            }
            Ok(ExitStatus::Ok)
        }
        DistrosCmd::Show { id, common } => {
            let client = common.api.client(ctx)?;
            let d = client.custom_distro(id)?;
            let containers = client.containers()?;
            let server = containers
                .iter()
                .find(|c| c.uid == d.container)
                .map(|c| c.server.clone())
                .unwrap_or_default();
            let used_by: Vec<UsedBy> = containers
                .iter()
                .filter(|c| c.custom_distro == Some(id))
                .map(|c| UsedBy {
                    uid: c.uid,
                    name: c.name.clone(),
                })
                .collect();
            if common.json {
                print_json(&ShowOut {
                    distro: &d,
                    server: &server,
                    used_by: &used_by,
                });
            } else {
                let users = used_by
                    .iter()
                    .map(|u| format!("{} ({})", u.uid, u.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let rows = [
                    ("id", d.id.to_string()),
                    ("name", d.name.clone()),
                    ("path", d.path.clone()),
                    ("note", d.note.clone()),
                    ("uuid", d.uuid.clone()),
                    ("storage", d.container.to_string()),
                    ("server", server.clone()),
                    (
                        "files",
                        format!("/containers/{}/distros/{}", d.container, d.path),
                    ),
                    ("used by", if users.is_empty() { "-".into() } else { users }),
                ];
                for (k, v) in rows {
                    println!("{:<8} {v}", format!("{k}:"));
                }
            }
            Ok(ExitStatus::Ok)
        }
        DistrosCmd::Usable { container, common } => {
            let client = common.api.client(ctx)?;
            let list = client.usable_distros(container)?;
            if common.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| vec![d.id.to_string(), d.name.clone()])
                    .collect();
                print_table(&["ID", "NAME"], &rows);
            }
            Ok(ExitStatus::Ok)
        }
        DistrosCmd::Register {
            storage,
            name,
            path,
            note,
            common,
        } => {
            let client = common.api.client(ctx)?;
            let r = client.register(storage, &name, &path, &note)?;
            if common.json {
                print_json(&RegisterOut {
                    id: r.id,
                    created: r.created,
                    storage,
                    name: &name,
                    path: &path,
                });
            } else {
                let what = if r.created {
                    "registered"
                } else {
                    "already registered"
                };
                eprintln!("{what} {name:?} (path {path:?}) on storage container {storage}");
                // The id alone on stdout, for scripts.
                println!("{}", r.id);
            }
            Ok(ExitStatus::Ok)
        }
        DistrosCmd::Assign {
            containers,
            distro,
            pause,
            yes,
            common,
        } => assign(ctx, &containers, &distro, pause, yes, &common),
        DistrosCmd::Rm { id, yes, common } => {
            let client = common.api.client(ctx)?;
            // Check before asking, so nobody confirms something that will be refused;
            // remove_distro checks again right before the DELETE.
            let d = client.removable(id)?;
            let q = format!(
                "delete custom distro {id} ({}, path {} on storage container {})? \
                 The files under /containers/{}/distros/{} stay",
                d.name, d.path, d.container, d.container, d.path
            );
            if let Some(s) = ask(ctx, &q, yes) {
                return Ok(s);
            }
            let d = client.remove_distro(id)?;
            if common.json {
                print_json(&RmOut {
                    deleted: &d,
                    files_kept: format!("/containers/{}/distros/{}", d.container, d.path),
                });
            } else {
                println!(
                    "deleted custom distro {id} ({}); files kept in /containers/{}/distros/{} (distros gc reclaims them)",
                    d.name, d.container, d.path
                );
            }
            Ok(ExitStatus::Ok)
        }
        DistrosCmd::Audit(a) => super::audit::run(a, ctx),
        DistrosCmd::Gc {
            keep,
            yes,
            keep_files,
            transport,
            common,
        } => gc(ctx, keep, yes, (!keep_files).then_some(&transport), &common),
    }
}

#[derive(Serialize)]
struct UsedBy {
    uid: u32,
    name: String,
}

#[derive(Serialize)]
struct ShowOut<'a> {
    #[serde(flatten)]
    distro: &'a api::CustomDistro,
    server: &'a str,
    used_by: &'a [UsedBy],
}

#[derive(Serialize)]
struct RegisterOut<'a> {
    id: u64,
    created: bool,
    storage: u32,
    name: &'a str,
    path: &'a str,
}

#[derive(Serialize)]
struct RmOut<'a> {
    deleted: &'a api::CustomDistro,
    files_kept: String,
}

#[derive(Serialize)]
struct Assigned {
    container: u32,
    name: String,
    custom_distro: Option<u64>,
    custom_distro_name: Option<String>,
}

fn assign(
    ctx: &Ctx,
    containers: &[u32],
    distro: &str,
    pause: u64,
    yes: bool,
    common: &Common,
) -> build_distro::Result<ExitStatus> {
    if distro.eq_ignore_ascii_case("none") || distro.eq_ignore_ascii_case("null") {
        return Ok(usage_error(
            "--distro none: the server cannot detach a custom distro (it crashes on null); \
             assign another custom distro instead",
        ));
    }
    let Ok(id) = distro.parse::<u64>() else {
        return Ok(usage_error(&format!(
            "--distro {distro:?}: expected a custom distro id (see `build-distro distros list`)"
        )));
    };
    let client = common.api.client(ctx)?;
    // Check every container before restarting any: a rollout must not stop halfway on a
    // typo.
    for &c in containers {
        client.check_usable(c, id)?;
    }
    let d = client.custom_distro(id)?;
    let q = format!(
        "assign custom distro {id} ({}) to container{} {}? Each one restarts",
        d.name,
        if containers.len() > 1 { "s" } else { "" },
        uids(containers)
    );
    if let Some(s) = ask(ctx, &q, yes) {
        return Ok(s);
    }
    let reporter = ctx.reporter();
    let mut done = Vec::new();
    for (i, &c) in containers.iter().enumerate() {
        if i > 0 && pause > 0 {
            reporter.info(&format!("waiting {pause}s before the next container"));
            for _ in 0..pause {
                build_distro::interrupt::check_interrupted()?;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        build_distro::interrupt::check_interrupted()?;
        let after = client.assign(c, id)?;
        reporter.info(&format!(
            "container {c} ({}) now uses custom distro {id} ({}); it restarts",
            after.name, d.name
        ));
        done.push(Assigned {
            container: c,
            name: after.name,
            custom_distro: after.custom_distro,
            custom_distro_name: after.custom_distro_name,
        });
    }
    if common.json {
        print_json(&done);
    } else {
        let rows: Vec<Vec<String>> = done
            .iter()
            .map(|a| {
                vec![
                    a.container.to_string(),
                    a.name.clone(),
                    a.custom_distro.map(|x| x.to_string()).unwrap_or_default(),
                    a.custom_distro_name.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["CONTAINER", "NAME", "DISTRO", "DISTRO NAME"], &rows);
    }
    Ok(ExitStatus::Ok)
}

#[derive(Serialize)]
struct GcOut<'a> {
    dry_run: bool,
    keep: usize,
    entries: &'a [api::GcEntry],
    deleted: Vec<u64>,
    failed: Vec<GcFailure>,
    /// The storage side (absent with --keep-files).
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<build_distro::push::reclaim::ReclaimReport>,
}

#[derive(Serialize)]
struct GcFailure {
    id: u64,
    error: String,
}

fn gc(
    ctx: &Ctx,
    keep: usize,
    yes: bool,
    files: Option<&super::flags::TransportFlags>,
    common: &Common,
) -> build_distro::Result<ExitStatus> {
    // Bad transport flags are refused before anything is deleted.
    let transport = files.map(|f| f.spec(None)).transpose()?;
    let client = common.api.client(ctx)?;
    let mut plan = client.gc_plan(keep)?;
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    if yes {
        for e in plan.iter_mut().filter(|e| e.action == GcAction::Delete) {
            build_distro::interrupt::check_interrupted()?;
            // remove_distro checks the users again: a container may have been assigned
            // since the plan was made.
            match client.remove_distro(e.id) {
                Ok(_) => deleted.push(e.id),
                Err(api::Error::InUse { .. }) => {
                    e.used_by = client
                        .containers_using(e.id)?
                        .iter()
                        .map(|c| c.uid)
                        .collect();
                    e.action = GcAction::InUse;
                }
                Err(err) => failed.push(GcFailure {
                    id: e.id,
                    error: err.to_string(),
                }),
            }
        }
    }
    let to_delete = plan.iter().filter(|e| e.action == GcAction::Delete).count();
    let files = match &transport {
        Some(t) => Some(super::reclaim::run(
            ctx, &client, &plan, &deleted, keep, yes, t,
        )?),
        None => None,
    };
    let ok = failed.is_empty() && files.as_ref().is_none_or(|f| f.ok());
    if common.json {
        print_json(&GcOut {
            dry_run: !yes,
            keep,
            entries: &plan,
            deleted,
            failed: std::mem::take(&mut failed),
            files,
        });
    } else {
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|e| {
                let action = match e.action {
                    GcAction::Keep => "keep",
                    GcAction::InUse => "keep (in use)",
                    GcAction::Delete if !yes => "would delete",
                    GcAction::Delete if deleted.contains(&e.id) => "deleted",
                    GcAction::Delete => "failed",
                };
                vec![
                    e.id.to_string(),
                    e.container.to_string(),
                    e.path.clone(),
                    action.to_string(),
                    uids(&e.used_by),
                ]
            })
            .collect();
        print_table(&["ID", "STORAGE", "PATH", "ACTION", "USED BY"], &rows);
        for f in &failed {
            eprintln!(
                "build-distro: error: delete custom distro {}: {}",
                f.id, f.error
            );
        }
        if let Some(f) = &files {
            println!();
            super::reclaim::print(f);
        }
        if !yes {
            eprintln!(
                "dry run: {to_delete} entr{} would be deleted; pass --yes to delete",
                if to_delete == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(if ok {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}

#[derive(Serialize)]
struct ServerStorage {
    server: String,
    server_address: String,
    storage_containers: Vec<StorageRef>,
}

#[derive(Serialize)]
struct StorageRef {
    uid: u32,
    name: String,
}

pub fn run_storage(c: StorageCmd, ctx: &Ctx) -> build_distro::Result<ExitStatus> {
    match c {
        StorageCmd::List { common } => {
            let client = common.api.client(ctx)?;
            let all = client.containers()?;
            let storage = client.storage_containers()?;
            let mut servers: Vec<ServerStorage> = Vec::new();
            for c in &all {
                if !servers.iter().any(|s| s.server == c.server) {
                    servers.push(ServerStorage {
                        server: c.server.clone(),
                        server_address: c.server_address.clone(),
                        storage_containers: Vec::new(),
                    });
                }
            }
            for c in &storage {
                if let Some(s) = servers.iter_mut().find(|s| s.server == c.server) {
                    s.storage_containers.push(StorageRef {
                        uid: c.uid,
                        name: c.name.clone(),
                    });
                }
            }
            servers.sort_by(|a, b| a.server.cmp(&b.server));
            if common.json {
                print_json(&servers);
            } else {
                let mut rows = Vec::new();
                for s in &servers {
                    if s.storage_containers.is_empty() {
                        rows.push(vec![
                            s.server.clone(),
                            s.server_address.clone(),
                            "-".into(),
                            "(none: `build-distro storage enable UID`)".into(),
                        ]);
                    }
                    for st in &s.storage_containers {
                        rows.push(vec![
                            s.server.clone(),
                            s.server_address.clone(),
                            st.uid.to_string(),
                            st.name.clone(),
                        ]);
                    }
                }
                print_table(&["SERVER", "ADDRESS", "UID", "NAME"], &rows);
            }
            Ok(ExitStatus::Ok)
        }
        StorageCmd::Enable { uid, yes, common } => {
            let client = common.api.client(ctx)?;
            let before = client.container(uid)?;
            if before.custom_distros_storage != Some(true) {
                let q = format!(
                    "make container {uid} ({}) on {} a storage container? It restarts now; \
                     it should run no vassals and cannot use a custom distro itself",
                    before.name, before.server
                );
                if let Some(s) = ask(ctx, &q, yes) {
                    return Ok(s);
                }
            }
            let after = client.enable_storage(uid)?;
            if common.json {
                print_json(&after);
            } else if before.custom_distros_storage == Some(true) {
                println!(
                    "container {uid} ({}) already is a storage container",
                    after.name
                );
            } else {
                println!(
                    "container {uid} ({}) is now a storage container; it restarts and gets \
                     /containers/{uid}/distros/",
                    after.name
                );
            }
            Ok(ExitStatus::Ok)
        }
    }
}
