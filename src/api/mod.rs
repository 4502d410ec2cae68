//! uwsgi.it HTTP API client: the last step of the pipeline (register a pushed distro, map
//! containers to it) and the `distros` / `storage` commands.
//!
//! The server has traps (see `platform.md`, "The HTTP API"), and this module exists to keep
//! users out of them:
//! - creating a custom distro answers 201 without an id: [`Client::register`] finds it by
//!   listing, and is idempotent;
//! - deleting a distro deletes every container that uses it: the only delete,
//!   [`Client::remove_distro`], looks at every container first and refuses;
//! - assigning a missing, foreign, own or `null` distro crashes the server: [`Client::assign`]
//!   checks the container's usable list first;
//! - reason phrases lie, errors are HTML pages, refusals carry no reason: we read the status
//!   number only and say what to check.
//!
//! The password lives in [`Password`], whose `Debug` and `Display` print `***`, and every
//! text that comes back from the server is scrubbed of it before it reaches an error or a
//! trace line.
//!
//! The module is split at its seams: `client` speaks HTTP (settings, password, retries,
//! status interpretation, scrubbing), `ops` holds the custom-distro and storage
//! operations built on it (with the server's rules for names and paths), and `types`
//! the JSON the server sends. Printing those as tables is the CLI's job (`cli/api_cmds`).

mod client;
mod ops;
mod retry;
mod types;

use std::path::PathBuf;

pub use client::{Client, Password, Settings, DEFAULT_TIMEOUT};
pub use ops::{newest_per_group, validate_path, versioned_base};
pub use retry::Policy as RetryPolicy;
pub use types::{
    Container, CustomDistro, DistroEntry, DistroListing, GcAction, GcEntry, Registered,
    UsableDistro,
};

pub const ENV_API: &str = "UWSGI_IT_API";
pub const ENV_USER: &str = "UWSGI_IT_USER";
pub const ENV_PASSWORD: &str = "UWSGI_IT_PASSWORD";
pub const ENV_PASSWORD_FILE: &str = "UWSGI_IT_PASSWORD_FILE";
pub const ENV_CA_FILE: &str = "UWSGI_IT_CA_FILE";
pub const ENV_TIMEOUT: &str = "UWSGI_IT_TIMEOUT";
pub const ENV_RETRIES: &str = "UWSGI_IT_RETRIES";

/// Longest `name` / `path` the server stores.
pub const MAX_FIELD_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no API URL: pass --api URL or set UWSGI_IT_API (e.g. https://example.com/api)")]
    NoApi,
    #[error("no API user: pass --user NAME or set UWSGI_IT_USER")]
    NoUser,
    #[error(
        "no API password: set UWSGI_IT_PASSWORD, or point UWSGI_IT_PASSWORD_FILE \
         (or --password-file) at a file holding it"
    )]
    NoPassword,
    #[error("read password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    #[error(
        "read CA file {path}: {detail}; UWSGI_IT_CA_FILE / --ca-file must be a PEM certificate"
    )]
    CaFile { path: PathBuf, detail: String },
    #[error("bad API URL {url}: {why}")]
    BadUrl { url: String, why: &'static str },

    #[error(
        "{method} {url}: 401 unauthorized: check UWSGI_IT_USER and the password \
         (UWSGI_IT_PASSWORD or UWSGI_IT_PASSWORD_FILE)"
    )]
    Unauthorized { method: &'static str, url: String },
    #[error("{method} {url}: 403 forbidden: {hint}")]
    Forbidden {
        method: &'static str,
        url: String,
        hint: String,
    },
    #[error("{method} {url}: {status} {summary}{hint}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        summary: String,
        hint: String,
    },
    #[error(
        "{method} {url}: connection refused: check UWSGI_IT_API (host and port) and the network"
    )]
    Refused { method: &'static str, url: String },
    #[error(
        "{method} {url}: TLS failure ({detail}): certificate problem: check that the server \
         speaks https with a certificate valid for its host, or give its CA with --ca-file / \
         UWSGI_IT_CA_FILE"
    )]
    Tls {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("{method} {url}: timed out ({detail}): check UWSGI_IT_API and the network")]
    Timeout {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("{method} {url}: {detail}: check UWSGI_IT_API and the network")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("{method} {url}: unexpected {status} response: {detail}")]
    BadResponse {
        method: &'static str,
        url: String,
        status: u16,
        detail: String,
    },

    #[error("invalid custom distro path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("invalid custom distro name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error(
        "container {0} is not a storage container: enable it with \
         `build-distro storage enable {0}` (it restarts), or pick one from `build-distro storage list`"
    )]
    NotStorage(u32),
    #[error(
        "storage container {storage} already has a custom distro named {name:?} (id {id}) \
         with path {existing_path:?}, not {path:?}: choose another name, or remove distro {id}"
    )]
    NameTaken {
        storage: u32,
        name: String,
        path: String,
        id: u64,
        existing_path: String,
    },
    #[error(
        "storage container {storage} already has path {path:?} registered as {existing_name:?} \
         (id {id}), not {name:?}: choose another path, or remove distro {id}"
    )]
    PathTaken {
        storage: u32,
        name: String,
        path: String,
        id: u64,
        existing_name: String,
    },
    #[error(
        "registered {name:?} on storage container {storage} (201) but the listing shows no such \
         distro: check `build-distro distros list`"
    )]
    MissingAfterCreate { storage: u32, name: String },
    #[error(
        "refusing to delete custom distro {id} ({name}): containers {users} use it, and the \
         server would delete them with it; assign them another distro first"
    )]
    InUse {
        id: u64,
        name: String,
        users: String,
    },
    #[error(
        "custom distro {id} is not usable by container {container} (usable: {usable}): a \
         container can use only distros stored in another of your containers on its own \
         server, and a storage container none; see `build-distro distros usable {container}`"
    )]
    NotUsable {
        container: u32,
        id: u64,
        usable: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoApi
            | Error::NoUser
            | Error::NoPassword
            | Error::PasswordFile { .. }
            | Error::EmptyPasswordFile(_)
            | Error::CaFile { .. }
            | Error::BadUrl { .. }
            | Error::Unauthorized { .. }
            | Error::BadPath { .. }
            | Error::BadName { .. }
            | Error::NotStorage(_)
            | Error::NameTaken { .. }
            | Error::PathTaken { .. }
            | Error::NotUsable { .. } => 2,
            _ => 1,
        }
    }
}

impl Error {
    /// Worth another try: the network or a gateway failed, or the server asked to wait.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Refused { .. } | Error::Timeout { .. } | Error::Transport { .. } => true,
            Error::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// A write that failed this way may have been applied all the same: the request may
    /// have reached the server before the reply was lost (timeout, reset, a gateway's
    /// 5xx). A refused connection or a 429 never reached it.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Transport { .. } => true,
            Error::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
