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

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

pub const ENV_API: &str = "UWSGI_IT_API";
pub const ENV_USER: &str = "UWSGI_IT_USER";
pub const ENV_PASSWORD: &str = "UWSGI_IT_PASSWORD";
pub const ENV_PASSWORD_FILE: &str = "UWSGI_IT_PASSWORD_FILE";
pub const ENV_CA_FILE: &str = "UWSGI_IT_CA_FILE";

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

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The API password. It prints as `***` everywhere, so a stray `{:?}` cannot leak it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The first line of `path` (a trailing newline is not part of the password).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::PasswordFile {
            path: path.to_path_buf(),
            source,
        })?;
        let pw = text.lines().next().unwrap_or("");
        if pw.is_empty() {
            return Err(Error::EmptyPasswordFile(path.to_path_buf()));
        }
        Ok(Password(pw.to_string()))
    }

    /// From `file` if given (flag or `UWSGI_IT_PASSWORD_FILE`), else `UWSGI_IT_PASSWORD`.
    pub fn resolve(file: Option<&Path>) -> Result<Self> {
        if let Some(f) = file {
            return Password::from_file(f);
        }
        match std::env::var(ENV_PASSWORD) {
            Ok(p) if !p.is_empty() => Ok(Password(p)),
            _ => Err(Error::NoPassword),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL, e.g. `https://example.com/api` (no credentials in it).
    pub api: String,
    pub user: String,
    pub password: Password,
    /// Trust only this PEM CA instead of the built-in web roots (a supplier's private CA).
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// For a whole call, body included.
    pub timeout: Duration,
    /// Extra attempts for GETs that failed in transit or with 502/503/504.
    pub retries: u32,
    /// First pause between GET attempts; doubles each time.
    pub backoff: Duration,
}

impl Settings {
    pub fn new(api: impl Into<String>, user: impl Into<String>, password: Password) -> Self {
        Settings {
            api: api.into(),
            user: user.into(),
            password,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(250),
        }
    }

    /// From flags, falling back on the environment (the CLI maps the flags to the same
    /// variables, so both paths agree).
    pub fn resolve(
        api: Option<String>,
        user: Option<String>,
        password_file: Option<&Path>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let api = api.or_else(|| env(ENV_API)).ok_or(Error::NoApi)?;
        let user = user.or_else(|| env(ENV_USER)).ok_or(Error::NoUser)?;
        let pw_file = password_file
            .map(Path::to_path_buf)
            .or_else(|| env(ENV_PASSWORD_FILE).map(PathBuf::from));
        let password = Password::resolve(pw_file.as_deref())?;
        let mut s = Settings::new(api, user, password);
        s.ca_file = ca_file.or_else(|| env(ENV_CA_FILE).map(PathBuf::from));
        Ok(s)
    }
}

/// `null` in the server's JSON means "empty" for us.
fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container as `GET /containers/` and `GET /containers/U` return it (unknown keys
/// ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub uid: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ip: String,
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub storage: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
    #[serde(default)]
    pub distro: Option<u64>,
    #[serde(default)]
    pub distro_name: Option<String>,
    #[serde(default)]
    pub custom_distro: Option<u64>,
    #[serde(default)]
    pub custom_distro_name: Option<String>,
    /// Only `GET /containers/U` has it; `None` from the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_distros_storage: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    pub server: String,
    #[serde(default, deserialize_with = "null_default")]
    pub server_address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}

/// An entry of `GET /custom_distros/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistroEntry {
    pub id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// The storage container's uid.
    pub container: u32,
}

/// An entry of `GET /custom_distros/U`: a distro container U may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsableDistro {
    pub id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// `GET /custom_distro/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomDistro {
    pub id: u64,
    /// The storage container's uid.
    pub container: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub note: String,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
}

/// One row of [`Client::distros_overview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistroListing {
    pub id: u64,
    pub name: String,
    /// Storage container uid.
    pub container: u32,
    /// The storage container's server (empty if the container is not in the list).
    pub server: String,
    /// Containers whose `custom_distro` is this one.
    pub used_by: Vec<u32>,
}

/// What [`Client::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub id: u64,
    /// false: the same name and path were already registered on that storage container.
    pub created: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcAction {
    /// Among the newest `keep` of its group.
    Keep,
    /// Old, but a container uses it: never deleted.
    InUse,
    Delete,
}

/// One versioned distro (`<base>-<12 hex>` path) that gc looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcEntry {
    pub id: u64,
    pub name: String,
    pub path: String,
    /// Storage container uid.
    pub container: u32,
    /// The path without its version suffix: entries are grouped per (container, base).
    pub base: String,
    pub action: GcAction,
    pub used_by: Vec<u32>,
}

/// `Some(base)` when `path` is `<base>-<12 lowercase hex>`, the shape push's versioned
/// strategy gives each content.
pub fn versioned_base(path: &str) -> Option<&str> {
    let (base, ver) = path.rsplit_once('-')?;
    let hex = ver.len() == 12
        && ver
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && !base.is_empty()).then_some(base)
}

/// gc's keep rule: for each item, whether it is among the `keep` newest of its group
/// (greatest `newness` first). Serves the API entries (by id) and, in
/// `push::reclaim`, the version directories on the storage container (by mtime).
pub fn newest_per_group<T, G: Ord, N: Ord>(
    items: &[T],
    group: impl Fn(&T) -> G,
    newness: impl Fn(&T) -> N,
    keep: usize,
) -> Vec<bool> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        (group(&items[a]), std::cmp::Reverse(newness(&items[a])))
            .cmp(&(group(&items[b]), std::cmp::Reverse(newness(&items[b]))))
    });
    let mut out = vec![false; items.len()];
    let mut rank = 0;
    for (i, &idx) in order.iter().enumerate() {
        if i == 0 || group(&items[order[i - 1]]) != group(&items[idx]) {
            rank = 0;
        }
        rank += 1;
        out[idx] = rank <= keep;
    }
    out
}

/// The server's rules for `path` (it answers a bare 403 otherwise).
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::BadPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_FIELD_LEN {
        return bad("longer than 255 characters");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only A-Za-z0-9 . _ - are allowed");
    }
    if path == "." || path == ".." {
        return bad("not a directory name");
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.chars().count() > MAX_FIELD_LEN {
        return bad("longer than 255 characters");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One call, with what to tell the user when the server refuses it.
struct Call<'a> {
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    /// Why a 403 happens for this call (the server never says).
    on_403: &'a str,
    /// Why a 500 happens for this call, when it is a known crash.
    on_500: &'a str,
}

impl<'a> Call<'a> {
    fn get(path: String, on_403: &'a str) -> Self {
        Call {
            method: Method::Get,
            path,
            body: None,
            on_403,
            on_500: "",
        }
    }
}

type Trace = Box<dyn Fn(&str) + Send + Sync>;

/// A blocking API client. Cheap to share by reference; calls are sequential.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    user: String,
    authorization: String,
    /// Forms of the secret that could come back in a server page: never shown.
    secrets: Vec<String>,
    retries: u32,
    backoff: Duration,
    trace: Option<Trace>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

impl Client {
    pub fn new(s: Settings) -> Result<Client> {
        let base = s.api.trim_end_matches('/').to_string();
        let Some((scheme, rest)) = base.split_once("://") else {
            return Err(Error::BadUrl {
                url: base,
                why: "must start with https:// (or http:// for a local test server)",
            });
        };
        if scheme != "https" && scheme != "http" {
            return Err(Error::BadUrl {
                url: base,
                why: "must start with https:// (or http:// for a local test server)",
            });
        }
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((_, host)) = authority.rsplit_once('@') {
            // Never echo the credentials that were in it.
            return Err(Error::BadUrl {
                url: format!("{scheme}://{host}"),
                why: "credentials in the URL are not used: set UWSGI_IT_USER and the password instead",
            });
        }
        if authority.is_empty() {
            return Err(Error::BadUrl {
                url: base,
                why: "no host",
            });
        }

        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::CaFile {
                path: ca.clone(),
                detail: e.to_string(),
            })?;
            let cert = ureq::tls::Certificate::from_pem(&pem).map_err(|e| Error::CaFile {
                path: ca.clone(),
                detail: e.to_string(),
            })?;
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
        }
        let config = ureq::Agent::config_builder()
            // Statuses are ours to interpret; reason phrases are ignored.
            .http_status_as_error(false)
            // A redirect means a wrong path (`/custom_distros` → `/custom_distros/`): a bug
            // to report, not to follow (and a POST must not turn into a GET).
            .max_redirects(0)
            .timeout_connect(Some(s.connect_timeout))
            .timeout_global(Some(s.timeout))
            .user_agent(format!("build-distro/{}", crate::VERSION))
            .tls_config(tls.build())
            .build();

        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", s.user, s.password.0));
        let secrets = vec![
            s.password.0.clone(),
            token.clone(),
            hex::encode(s.password.0.as_bytes()),
        ];
        Ok(Client {
            agent: config.into(),
            base,
            user: s.user,
            authorization: format!("Basic {token}"),
            secrets,
            retries: s.retries,
            backoff: s.backoff,
            trace: None,
        })
    }

    /// Receive one line per request and response (for `-v`). Lines never hold the
    /// password.
    pub fn with_trace(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.trace = Some(Box::new(f));
        self
    }

    /// The base URL, as configured (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn trace(&self, line: &str) {
        if let Some(t) = &self.trace {
            t(&self.scrub(line));
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    /// Perform a call; `Ok` only for a 2xx status, with the body.
    fn call(&self, c: &Call) -> Result<(u16, String)> {
        let url = format!("{}{}", self.base, c.path);
        let m = c.method.as_str();
        // Only GETs are retried: a POST or DELETE that timed out may have been applied.
        let attempts = if c.method == Method::Get {
            self.retries + 1
        } else {
            1
        };
        let mut pause = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match &c.body {
                Some(b) => self.trace(&format!("> {m} {url} {b}")),
                None => self.trace(&format!("> {m} {url}")),
            }
            let started = Instant::now();
            let result = self.send(c, &url);
            let retry = match &result {
                Ok((status, _)) => matches!(status, 429 | 502 | 503 | 504),
                Err(Error::Tls { .. }) => false,
                Err(_) => true,
            };
            match &result {
                Ok((status, body)) => self.trace(&format!(
                    "< {status} {m} {url} ({} bytes, {} ms)",
                    body.len(),
                    started.elapsed().as_millis()
                )),
                Err(e) => self.trace(&format!("< {e}")),
            }
            if retry && attempt < attempts {
                self.trace(&format!(
                    "retrying {m} {url} in {} ms (attempt {} of {attempts})",
                    pause.as_millis(),
                    attempt + 1
                ));
                std::thread::sleep(pause);
                pause *= 2;
                continue;
            }
            let (status, body) = result?;
            return self.check_status(c, &url, status, body);
        }
    }

    /// One HTTP exchange; transport failures become errors, every status is returned.
    fn send(&self, c: &Call, url: &str) -> Result<(u16, String)> {
        let auth = self.authorization.as_str();
        let res = match (c.method, &c.body) {
            (Method::Get, _) => self
                .agent
                .get(url)
                .header("Authorization", auth)
                .header("Accept", "application/json")
                .call(),
            (Method::Delete, _) => self
                .agent
                .delete(url)
                .header("Authorization", auth)
                .header("Accept", "application/json")
                .call(),
            (Method::Post, body) => {
                let body = body.clone().unwrap_or(serde_json::Value::Null);
                self.agent
                    .post(url)
                    .header("Authorization", auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(serde_json::to_vec(&body).expect("json value serializes"))
            }
        };
        let method = c.method.as_str();
        let mut resp = res.map_err(|e| self.transport_error(method, url, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(method, url, e))?;
        Ok((status, body))
    }

    fn transport_error(&self, method: &'static str, url: &str, e: ureq::Error) -> Error {
        let url = url.to_string();
        let https = url.starts_with("https://");
        match e {
            ureq::Error::Io(io) => {
                let tls_inner = io
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .map(|r| r.to_string());
                if let Some(detail) = tls_inner {
                    return Error::Tls {
                        method,
                        url,
                        detail,
                    };
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => Error::Refused { method, url },
                    std::io::ErrorKind::TimedOut => Error::Timeout {
                        method,
                        url,
                        detail: self.scrub(&io.to_string()),
                    },
                    std::io::ErrorKind::InvalidData if https => Error::Tls {
                        method,
                        url,
                        detail: self.scrub(&io.to_string()),
                    },
                    _ => Error::Transport {
                        method,
                        url,
                        detail: self.scrub(&io.to_string()),
                    },
                }
            }
            ureq::Error::Rustls(r) => Error::Tls {
                method,
                url,
                detail: r.to_string(),
            },
            ureq::Error::Tls(t) => Error::Tls {
                method,
                url,
                detail: t.to_string(),
            },
            ureq::Error::Timeout(t) => Error::Timeout {
                method,
                url,
                detail: t.to_string(),
            },
            ureq::Error::HostNotFound => Error::Transport {
                method,
                url,
                detail: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => Error::Refused { method, url },
            other => Error::Transport {
                method,
                url,
                detail: self.scrub(&other.to_string()),
            },
        }
    }

    fn check_status(
        &self,
        c: &Call,
        url: &str,
        status: u16,
        body: String,
    ) -> Result<(u16, String)> {
        let method = c.method.as_str();
        let url = url.to_string();
        match status {
            200..=299 => Ok((status, body)),
            401 => Err(Error::Unauthorized { method, url }),
            403 => Err(Error::Forbidden {
                method,
                url,
                hint: if c.on_403.is_empty() {
                    "the server refused without saying why".to_string()
                } else {
                    c.on_403.to_string()
                },
            }),
            _ => {
                let hint = match status {
                    301 | 302 | 307 | 308 => {
                        "; the API paths are exact (trailing slashes matter): check UWSGI_IT_API"
                            .to_string()
                    }
                    404 => "; check UWSGI_IT_API (the base URL, e.g. https://example.com/api)"
                        .to_string(),
                    413 => "; the request body is over 64 KiB".to_string(),
                    500 if !c.on_500.is_empty() => format!("; {}", c.on_500),
                    500..=599 => "; a server error: retry later or ask the supplier".to_string(),
                    _ => String::new(),
                };
                Err(Error::Status {
                    method,
                    url,
                    status,
                    summary: self.summarize(&body),
                    hint,
                })
            }
        }
    }

    /// A few words about an error body: the JSON `error`, an HTML page's title, or the
    /// start of the text. Never the whole page.
    fn summarize(&self, body: &str) -> String {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                return self.scrub(&format!("({e})"));
            }
        }
        let lower = body.to_ascii_lowercase();
        let text = match (lower.find("<title>"), lower.find("</title>")) {
            (Some(a), Some(b)) if b > a + 7 => format!("(HTML page: {})", &body[a + 7..b]),
            _ if lower.contains("<html") || lower.contains("<!doctype") => {
                "(HTML page)".to_string()
            }
            _ if body.trim().is_empty() => "(empty body)".to_string(),
            _ => format!("({})", body),
        };
        let mut one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > 100 {
            one_line = one_line.chars().take(97).collect::<String>() + "...)";
        }
        self.scrub(&one_line)
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, c: &Call) -> Result<T> {
        let (status, body) = self.call(c)?;
        serde_json::from_str(&body).map_err(|e| Error::BadResponse {
            method: c.method.as_str(),
            url: format!("{}{}", self.base, c.path),
            status,
            detail: format!("not the expected JSON ({e}): {}", self.summarize(&body)),
        })
    }

    /// `GET /containers/`: the customer's containers (without `custom_distros_storage`).
    pub fn containers(&self) -> Result<Vec<Container>> {
        self.json(&Call::get("/containers/".into(), ""))
    }

    /// `GET /containers/U`: one container, with `custom_distros_storage`.
    pub fn container(&self, uid: u32) -> Result<Container> {
        let hint = format!("container {uid} does not exist or is not yours: see `build-distro storage list` or the supplier's panel");
        self.json(&Call::get(format!("/containers/{uid}"), &hint))
    }

    /// `GET /custom_distros/`: every custom distro of the customer.
    pub fn custom_distros(&self) -> Result<Vec<DistroEntry>> {
        self.json(&Call::get("/custom_distros/".into(), ""))
    }

    /// `GET /custom_distros/U`: the distros container U may use.
    pub fn usable_distros(&self, uid: u32) -> Result<Vec<UsableDistro>> {
        let hint = format!("container {uid} does not exist or is not yours");
        self.json(&Call::get(format!("/custom_distros/{uid}"), &hint))
    }

    /// `GET /custom_distro/ID`.
    pub fn custom_distro(&self, id: u64) -> Result<CustomDistro> {
        let hint = format!(
            "custom distro {id} does not exist or is not yours: see `build-distro distros list`"
        );
        self.json(&Call::get(format!("/custom_distro/{id}"), &hint))
    }

    /// Containers whose `custom_distro` is `id`.
    pub fn containers_using(&self, id: u64) -> Result<Vec<Container>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.custom_distro == Some(id))
            .collect())
    }

    /// The customer's storage containers (full records). The list call lacks the flag, so
    /// this asks for each container in turn.
    pub fn storage_containers(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for c in self.containers()? {
            let full = self.container(c.uid)?;
            if full.custom_distros_storage == Some(true) {
                out.push(full);
            }
        }
        Ok(out)
    }

    /// Every custom distro with its storage container's server and its users.
    pub fn distros_overview(&self) -> Result<Vec<DistroListing>> {
        let containers = self.containers()?;
        let mut out: Vec<DistroListing> = self
            .custom_distros()?
            .into_iter()
            .map(|d| DistroListing {
                server: containers
                    .iter()
                    .find(|c| c.uid == d.container)
                    .map(|c| c.server.clone())
                    .unwrap_or_default(),
                used_by: containers
                    .iter()
                    .filter(|c| c.custom_distro == Some(d.id))
                    .map(|c| c.uid)
                    .collect(),
                id: d.id,
                name: d.name,
                container: d.container,
            })
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// `POST /containers/U {"custom_distros_storage": true}`: **restarts U**. Does nothing
    /// (and returns the container) when U already is a storage container.
    pub fn enable_storage(&self, uid: u32) -> Result<Container> {
        let c = self.container(uid)?;
        if c.custom_distros_storage == Some(true) {
            return Ok(c);
        }
        self.json(&Call {
            method: Method::Post,
            path: format!("/containers/{uid}"),
            body: Some(serde_json::json!({ "custom_distros_storage": true })),
            on_403: &format!("container {uid} does not exist or is not yours"),
            on_500: "",
        })
    }

    /// `Ok` when `id` is in container's usable list (anything else crashes the server's
    /// assign).
    pub fn check_usable(&self, container: u32, id: u64) -> Result<()> {
        let usable = self.usable_distros(container)?;
        if usable.iter().any(|u| u.id == id) {
            return Ok(());
        }
        Err(Error::NotUsable {
            container,
            id,
            usable: if usable.is_empty() {
                "none".into()
            } else {
                usable
                    .iter()
                    .map(|u| format!("{} ({})", u.id, u.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// `POST /containers/U {"custom_distro": ID}`: **restarts U**. Checks first that ID is
    /// in U's usable list, since anything else crashes the server.
    pub fn assign(&self, container: u32, id: u64) -> Result<Container> {
        self.check_usable(container, id)?;
        self.json(&Call {
            method: Method::Post,
            path: format!("/containers/{container}"),
            body: Some(serde_json::json!({ "custom_distro": id })),
            on_403: &format!("container {container} does not exist or is not yours"),
            on_500: "the server crashes when the distro is missing, not yours, or stored in \
                     the container itself",
        })
    }

    /// Register `path` on storage container `storage` as `name` and return its id.
    /// Idempotent: the same name and path already there give that entry's id. A name or a
    /// path held by a different entry is an error naming it.
    pub fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> Result<Registered> {
        validate_name(name)?;
        validate_path(path)?;
        if self.container(storage)?.custom_distros_storage != Some(true) {
            return Err(Error::NotStorage(storage));
        }
        // The server refuses duplicates with a bare 403: find them ourselves, by name and
        // by path (the list has no path, so read each entry on this storage container).
        for entry in self.custom_distros()? {
            if entry.container != storage {
                continue;
            }
            let d = self.custom_distro(entry.id)?;
            match (d.name == name, d.path == path) {
                (true, true) => {
                    return Ok(Registered {
                        id: d.id,
                        created: false,
                    })
                }
                (true, false) => {
                    return Err(Error::NameTaken {
                        storage,
                        name: name.into(),
                        path: path.into(),
                        id: d.id,
                        existing_path: d.path,
                    })
                }
                (false, true) => {
                    return Err(Error::PathTaken {
                        storage,
                        name: name.into(),
                        path: path.into(),
                        id: d.id,
                        existing_name: d.name,
                    })
                }
                (false, false) => {}
            }
        }
        self.call(&Call {
            method: Method::Post,
            path: format!("/custom_distros/{storage}"),
            body: Some(serde_json::json!({ "name": name, "path": path, "note": note })),
            on_403: &format!(
                "storage uid {storage} is not a storage container of yours, or the name or \
                 path already exists there (the server does not say which: run \
                 `build-distro distros list`)"
            ),
            on_500: "",
        })?;
        // 201 carries no id: find the entry by name on this storage container.
        self.custom_distros()?
            .into_iter()
            .find(|d| d.container == storage && d.name == name)
            .map(|d| Registered {
                id: d.id,
                created: true,
            })
            .ok_or_else(|| Error::MissingAfterCreate {
                storage,
                name: name.into(),
            })
    }

    /// The distro, if no container uses it; [`Error::InUse`] naming them otherwise.
    pub fn removable(&self, id: u64) -> Result<CustomDistro> {
        let d = self.custom_distro(id)?;
        let users = self.containers_using(id)?;
        if users.is_empty() {
            return Ok(d);
        }
        Err(Error::InUse {
            id,
            name: d.name,
            users: users
                .iter()
                .map(|c| format!("{} ({})", c.uid, c.name))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// `DELETE /custom_distro/ID`, only after checking that no container uses it (the
    /// server would delete those containers). There is no way around the check.
    pub fn remove_distro(&self, id: u64) -> Result<CustomDistro> {
        let d = self.removable(id)?;
        self.call(&Call {
            method: Method::Delete,
            path: format!("/custom_distro/{id}"),
            body: None,
            on_403: &format!("custom distro {id} does not exist or is not yours"),
            on_500: "",
        })?;
        Ok(d)
    }

    /// What `gc` would do: versioned entries (`<base>-<12 hex>` paths), grouped per storage
    /// container and base, newest (highest id) first; the newest `keep` of each group stay,
    /// older ones are deleted unless a container uses them.
    pub fn gc_plan(&self, keep: usize) -> Result<Vec<GcEntry>> {
        let containers = self.containers()?;
        let mut entries = Vec::new();
        for e in self.custom_distros()? {
            let d = self.custom_distro(e.id)?;
            let Some(base) = versioned_base(&d.path) else {
                continue;
            };
            entries.push(GcEntry {
                id: d.id,
                base: base.to_string(),
                name: d.name,
                container: d.container,
                used_by: containers
                    .iter()
                    .filter(|c| c.custom_distro == Some(d.id))
                    .map(|c| c.uid)
                    .collect(),
                path: d.path,
                action: GcAction::Keep,
            });
        }
        entries.sort_by(|a, b| {
            (a.container, &a.base, std::cmp::Reverse(a.id)).cmp(&(
                b.container,
                &b.base,
                std::cmp::Reverse(b.id),
            ))
        });
        let newest = newest_per_group(&entries, |e| (e.container, e.base.clone()), |e| e.id, keep);
        for (e, newest) in entries.iter_mut().zip(newest) {
            e.action = if newest {
                GcAction::Keep
            } else if !e.used_by.is_empty() {
                GcAction::InUse
            } else {
                GcAction::Delete
            };
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_prints() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p} {p:?}"), "*** ***");
        let s = Settings::new("https://x/api", "u", p);
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = Client::new(s).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.scrub("a hunter2 b"), "a *** b");
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:hunter2");
        assert_eq!(c.scrub(&format!("Basic {b64}")), "Basic ***");
    }

    #[test]
    fn password_file_first_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(Password::from_file(&f).unwrap().0, "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            Password::from_file(&f),
            Err(Error::EmptyPasswordFile(_))
        ));
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        let e = Client::new(Settings::new(
            "https://bob:pw123@example.com/api",
            "bob",
            Password::new("x"),
        ))
        .unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("pw123"), "{msg}");
        assert!(msg.contains("https://example.com"), "{msg}");
        assert!(Client::new(Settings::new("example.com/api", "b", Password::new("x"))).is_err());
    }

    #[test]
    fn paths_follow_the_server_charset() {
        assert!(validate_path("debian-12_x.y").is_ok());
        for bad in ["", "a/b", "a b", "é", "..", &"x".repeat(256)] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versioned_paths() {
        assert_eq!(versioned_base("deb-0123456789ab"), Some("deb"));
        assert_eq!(versioned_base("a-b-0123456789ab"), Some("a-b"));
        assert_eq!(versioned_base("deb-0123456789AB"), None);
        assert_eq!(versioned_base("deb-0123456789a"), None);
        assert_eq!(versioned_base("deb"), None);
        assert_eq!(versioned_base("-0123456789ab"), None);
    }

    #[test]
    fn summaries_are_short_and_never_html() {
        let c = Client::new(Settings::new("http://x", "u", Password::new("pw"))).unwrap();
        let page = format!(
            "<!DOCTYPE html><html><head><title>KeyError at /api/x</title></head><body>{}</body></html>",
            "HTTP_AUTHORIZATION Basic dTpwdw== ".repeat(100)
        );
        assert_eq!(c.summarize(&page), "(HTML page: KeyError at /api/x)");
        assert_eq!(c.summarize(r#"{"error": "Forbidden"}"#), "(Forbidden)");
        assert!(c.summarize(&"x".repeat(500)).len() < 110);
    }
}
