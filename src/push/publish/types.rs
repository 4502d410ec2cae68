//! What publish takes (targets, strategy, verification, transport) and what it reports,
//! per storage container and per assigned container.

use std::path::PathBuf;

use serde::Serialize;

use crate::push::{Error, TransportSpec};
use crate::recipe::Strategy;

/// Which storage containers to push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    All,
    Uids(Vec<u32>),
}

impl To {
    /// From the recipe's `[publish] to`.
    pub fn from_recipe(t: &crate::recipe::PublishTo) -> Result<To, Error> {
        match t {
            crate::recipe::PublishTo::Named(s) if s == "all" => Ok(To::All),
            crate::recipe::PublishTo::Named(s) => Err(Error::Usage(format!(
                "[publish] to = {s:?}: expected \"all\" or a list of storage container uids"
            ))),
            crate::recipe::PublishTo::Uids(u) => Ok(To::Uids(u.clone())),
        }
    }
}

/// How much of the upload to check before it is renamed into place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Entry count and content size.
    #[default]
    Size,
    /// Also every file's sha256 against the manifest (reads everything remotely).
    Full,
}

pub struct PublishOptions {
    pub to: To,
    pub strategy: Strategy,
    pub verify: Verify,
    pub transport: TransportSpec,
    /// Servers pushed to at the same time.
    pub jobs: usize,
    /// Register the distro through the registry after the upload.
    pub register: bool,
    /// Containers to map onto the new distro (each on the server of a storage container
    /// pushed to).
    pub assign: Vec<u32>,
    /// Where rsync's local extraction of an archive goes.
    pub work_dir: PathBuf,
    /// The storage lock held while pushing to each storage container.
    pub lock: crate::push::lock::LockOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Uploaded, verified and renamed into place.
    Uploaded,
    /// The same content was there already: nothing sent.
    Unchanged,
    Failed,
}

/// One storage container's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub uid: u32,
    pub server: String,
    /// How it was reached: `30001@host`, `local:/containers/30001`.
    pub target: String,
    /// The directory under `distros/` (the API path).
    pub path: String,
    /// The API name.
    pub name: String,
    pub status: Status,
    /// Bytes that crossed the wire (rsync: its "Total bytes sent").
    pub bytes_sent: u64,
    /// The version rsync shared unchanged files with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssignReport {
    pub container: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `push` prints (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub name: String,
    pub path: String,
    pub content_id: String,
    pub strategy: Strategy,
    pub transport: String,
    pub verify: Verify,
    pub targets: Vec<TargetReport>,
    pub assigned: Vec<AssignReport>,
    /// Total over every target.
    pub bytes_sent: u64,
    /// Targets and assignments that failed.
    pub failed: usize,
}

impl PublishReport {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            Strategy::Versioned => "versioned",
            Strategy::Replace => "replace",
        }
    }
}
