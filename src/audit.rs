//! `distros audit` (day 2): the whole fleet at once. Every custom distro of the account
//! (through the API), the published version it points at (read-only over ssh, as
//! `outdated --to` reads it), that version's support window and pending security fixes,
//! and the containers that use it. One distro that cannot be read is reported with its
//! error and the others are still audited: a fleet answer must not stop at the first
//! storage container that is down.
//!
//! Sits above `api` and `outdated`, whose errors it combines.

use std::sync::Arc;

use serde::Serialize;

use crate::api;
use crate::outdated::{self, Report, Target};
use crate::progress::Reporter;
use crate::push::ssh::SshConfig;
use crate::runner::Runner;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Ctrl-C too is 2: the fleet could not be judged, which must never read as "rebuild".
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Api(e) => e.exit_code(),
            Error::Interrupted => 2,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How each version is compared (mirrors, cache, support data, the day, `allow_eol`).
    pub outdated: outdated::Options,
    /// How storage containers are reached (`--ssh-host` wins over their addresses).
    pub ssh: SshConfig,
}

/// One custom distro and what its published version needs.
#[derive(Debug, Clone, Serialize)]
pub struct DistroAudit {
    pub id: u64,
    pub name: String,
    /// The storage container holding it.
    pub storage: u32,
    pub server: String,
    /// Its directory under the storage container's `distros/`.
    pub path: String,
    /// Containers whose custom distro it is.
    pub used_by: Vec<u32>,
    /// `outdated`'s answer for the published version; `None` when it could not be read.
    pub report: Option<Report>,
    /// Why it could not be audited (the command then exits 2).
    pub error: Option<String>,
    /// A security fix is pending, or the release is past its end of life.
    pub needs_rebuild: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub distros: Vec<DistroAudit>,
}

impl Audit {
    pub fn needs_rebuild(&self) -> bool {
        self.distros.iter().any(|d| d.needs_rebuild)
    }

    pub fn errors(&self) -> usize {
        self.distros.iter().filter(|d| d.error.is_some()).count()
    }
}

/// Audit every custom distro the API lists, in id order.
pub fn run(
    client: &api::Client,
    opts: &Options,
    runner: Arc<dyn Runner>,
    rep: &Reporter,
) -> Result<Audit, Error> {
    let containers = client.containers()?;
    let mut distros = Vec::new();
    for d in client.distros_overview()? {
        if crate::interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let entry = client.custom_distro(d.id)?;
        let address = containers
            .iter()
            .find(|c| c.uid == d.container)
            .map(|c| c.server_address.as_str());
        let report = audit_one(d.container, address, &entry.path, opts, runner.clone(), rep);
        let (report, error) = match report {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        let needs_rebuild = report.as_ref().is_some_and(|r| {
            r.security_pending() > 0
                || (!opts.outdated.allow_eol && r.support.as_ref().is_some_and(|s| s.end_of_life()))
        });
        distros.push(DistroAudit {
            id: d.id,
            name: d.name,
            storage: d.container,
            server: d.server,
            path: entry.path,
            used_by: d.used_by,
            report,
            error,
            needs_rebuild,
        });
    }
    Ok(Audit { distros })
}

/// `outdated --to STORAGE --path PATH`, its error as one line.
fn audit_one(
    storage: u32,
    address: Option<&str>,
    path: &str,
    opts: &Options,
    runner: Arc<dyn Runner>,
    rep: &Reporter,
) -> Result<Report, String> {
    let target = Target::published(&opts.ssh, storage, address, path, runner.clone())
        .map_err(|e| e.to_string())?;
    rep.debug(&format!("audit: {storage}:distros/{path}"));
    outdated::run(&target, &opts.outdated, runner, rep).map_err(|e| e.to_string())
}
