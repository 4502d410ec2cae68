//! The few calls of the OCI distribution API an image pull needs, over `ureq` (rustls):
//! the `/v2/` ping that yields the auth challenge, manifests asked for in all four media
//! types at once, and blobs as streams. Anonymous, basic and bearer-token auth (the
//! Docker token protocol: `WWW-Authenticate: Bearer realm=…` → `GET realm?service=…&
//! scope=repository:NAME:pull`, with the user's credentials when there are any).
//!
//! TLS trusts the system roots (`SSL_CERT_FILE` when set) plus Docker's per-registry
//! `/etc/docker/certs.d/HOST:PORT/ca.crt`. Plain HTTP is tried only for a loopback
//! registry or with `insecure = true`, and only after HTTPS failed to connect.
//!
//! The Authorization value is a [`Secret`] and never reaches a message or a trace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use super::auth::{parse_challenge, Credentials, Found, Secret};
use super::reference::Reference;
use crate::source::oci;

/// Manifests, configs and token answers bigger than this are refused.
pub const MAX_JSON: u64 = 16 << 20;

/// Where Docker keeps per-registry CA certificates.
const CERTS_D: &str = "/etc/docker/certs.d";

/// System CA bundles, first found wins (Debian, Fedora, Alpine/others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a call failed, sorted by what the caller does about it.
#[derive(Debug)]
pub enum Fail {
    /// Worth another try: the connection broke, the server erred (5xx), the data was
    /// short or wrong.
    Transient(String),
    /// Retrying cannot help: 401/403, 404, a refused certificate, bad JSON.
    Fatal(String),
}

pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port` or `http://host:port`.
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    looked: Vec<String>,
    /// The Authorization header in use (a bearer token or basic credentials).
    authorization: Mutex<Option<Secret>>,
    /// The challenge of the last 401, to get a fresh token when one expires.
    challenge: Mutex<Option<String>>,
    trace: Trace,
}

/// Receives one line per request (for `-v`); lines never hold a secret.
pub type Trace = Box<dyn Fn(&str) + Send + Sync>;

/// The TLS roots: the system bundle (or `SSL_CERT_FILE`) and Docker's `certs.d` file for
/// this registry. A file that exists but holds no certificate is an error.
fn root_certs(registry: &str) -> Result<ureq::tls::RootCerts, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    match std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        Some(f) => files.push(PathBuf::from(f)),
        None => {
            if let Some(b) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
                files.push(b.to_path_buf());
            }
        }
    }
    let certs_d = Path::new(CERTS_D).join(registry);
    if let Ok(rd) = std::fs::read_dir(&certs_d) {
        let mut extra: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    if files.is_empty() {
        // No system bundle on this machine: the roots built into the client.
        return Ok(ureq::tls::RootCerts::WebPki);
    }
    let mut certs = Vec::new();
    for f in &files {
        let pem = std::fs::read(f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.len() == before {
            return Err(format!("{}: no PEM certificate in it", f.display()));
        }
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// A transport error on one line, TLS problems named as such.
fn transport(url: &str, e: ureq::Error) -> Fail {
    let tls = match &e {
        ureq::Error::Rustls(r) => Some(r.to_string()),
        ureq::Error::Tls(t) => Some(t.to_string()),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map(|r| r.to_string()),
        _ => None,
    };
    match tls {
        Some(t) => Fail::Fatal(format!(
            "TLS with {url} failed: {t}; if the registry uses a private CA, put it in {CERTS_D}/HOST:PORT/ca.crt or point SSL_CERT_FILE at a bundle"
        )),
        None => Fail::Transient(format!("{url}: {e}")),
    }
}

/// The registry's own error text (`{"errors":[{"code","message"}]}`), when it sent one.
fn registry_error(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    #[derive(Deserialize)]
    struct One {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let v: Vec<String> = e
                .errors
                .iter()
                .map(|o| format!("{} {}", o.code, o.message).trim().to_string())
                .collect();
            format!(" ({})", v.join("; "))
        }
        _ => String::new(),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Client {
    /// Connect to `r`'s registry: choose the scheme and learn how it wants to be
    /// authenticated (the `/v2/` ping).
    pub fn connect(
        r: &Reference,
        found: Found,
        insecure: bool,
        trace: Trace,
    ) -> Result<Client, Fail> {
        let roots = root_certs(&r.registry).map_err(Fail::Fatal)?;
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Blob redirects (to a CDN) are followed; the Authorization header is not
            // sent along (ureq's default), as the token is for the registry only.
            .max_redirects(5)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(format!("build-distro/{}", crate::build_inputs::VERSION))
            .tls_config(tls)
            .build();
        let mut c = Client {
            agent: config.into(),
            base: format!("https://{}", r.api_host()),
            reference: r.clone(),
            credentials: found.credentials,
            looked: found.looked,
            authorization: Mutex::new(None),
            challenge: Mutex::new(None),
            trace,
        };
        let https = c.ping();
        let plain_ok = insecure || r.is_loopback();
        let status = match https {
            Ok(s) => s,
            Err(Fail::Transient(https_err)) if plain_ok => {
                c.base = format!("http://{}", r.api_host());
                (c.trace)(&format!(
                    "registry: HTTPS failed ({https_err}); trying plain HTTP"
                ));
                c.ping().map_err(|e| match e {
                    Fail::Transient(m) | Fail::Fatal(m) => {
                        Fail::Transient(format!("{https_err}; over plain HTTP: {m}"))
                    }
                })?
            }
            Err(Fail::Fatal(m)) if plain_ok => {
                // A TLS error from a plain HTTP server ("received corrupt message").
                c.base = format!("http://{}", r.api_host());
                c.ping().map_err(|_| Fail::Fatal(m))?
            }
            Err(e) => return Err(e),
        };
        if status == 401 {
            c.authenticate()?;
        }
        Ok(c)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}", self.base, path)
    }

    /// `GET /v2/`: 200 (open) or 401 with the challenge (kept for [`Self::authenticate`]).
    fn ping(&mut self) -> Result<u16, Fail> {
        let url = self.url("");
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport(&url, e))?;
        let status = resp.status().as_u16();
        (self.trace)(&format!("registry: GET {url} → {status}"));
        match status {
            200 => Ok(200),
            401 => {
                let ch = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                *self.challenge.lock().unwrap() = ch;
                Ok(401)
            }
            s if s >= 500 => Err(Fail::Transient(format!("{url}: the registry answered {s}"))),
            // Not a registry (an HTTP server answering an HTTPS question, a web page).
            s => Err(Fail::Fatal(format!(
                "{url}: answered {s}; is {} a registry?",
                self.reference.registry
            ))),
        }
    }

    /// Where credentials were looked for, for 401 messages.
    fn denied(&self, status: u16) -> Fail {
        let what = if status == 403 {
            "refused access (403)"
        } else {
            "wants credentials (401)"
        };
        let had = if self.credentials.is_some() {
            "the credentials found were not accepted"
        } else {
            "no credentials were found"
        };
        Fail::Fatal(format!(
            "registry {} {what} for {}: {had}; looked in: {}; log in with docker login / skopeo login, or pass --registry-user with --registry-password-stdin",
            self.reference.registry,
            self.reference.repository,
            self.looked.join(", ")
        ))
    }

    /// Answer the last challenge: basic credentials, or a bearer token for pulling the
    /// repository.
    fn authenticate(&self) -> Result<(), Fail> {
        let header = self.challenge.lock().unwrap().clone().unwrap_or_default();
        let ch = parse_challenge(&header).ok_or_else(|| {
            Fail::Fatal(format!(
                "registry {} answered 401 without a usable WWW-Authenticate challenge",
                self.reference.registry
            ))
        })?;
        match ch.scheme.as_str() {
            "basic" => {
                let c = self.credentials.as_ref().ok_or_else(|| self.denied(401))?;
                *self.authorization.lock().unwrap() = Some(c.basic());
                Ok(())
            }
            "bearer" => {
                let realm = ch.params.get("realm").ok_or_else(|| {
                    Fail::Fatal(format!("registry {}: bearer challenge without realm", self.reference.registry))
                })?;
                if !(realm.starts_with("https://") || (realm.starts_with("http://") && self.base.starts_with("http://"))) {
                    return Err(Fail::Fatal(format!(
                        "registry {}: token realm {realm} is not https; refusing to send credentials there",
                        self.reference.registry
                    )));
                }
                let scope = format!("repository:{}:pull", self.reference.repository);
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(service) = ch.params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(c) = &self.credentials {
                    req = req.header("Authorization", c.basic().expose());
                }
                let mut resp = req.call().map_err(|e| transport(realm, e))?;
                let status = resp.status().as_u16();
                (self.trace)(&format!("registry: GET {realm} (token for {scope}) → {status}"));
                match status {
                    200 => {}
                    401 | 403 => return Err(self.denied(status)),
                    s if s >= 500 => return Err(Fail::Transient(format!("token service {realm} answered {s}"))),
                    s => return Err(Fail::Fatal(format!("token service {realm} answered {s}"))),
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_JSON)
                    .read_to_vec()
                    .map_err(|e| transport(realm, e))?;
                let t: TokenAnswer = serde_json::from_slice(&body)
                    .map_err(|_| Fail::Fatal(format!("token service {realm} sent no JSON token")))?;
                let token = t.token.or(t.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
                    Fail::Fatal(format!("token service {realm} sent no token"))
                })?;
                *self.authorization.lock().unwrap() = Some(Secret::new(format!("Bearer {token}")));
                Ok(())
            }
            other => Err(Fail::Fatal(format!(
                "registry {} asks for {other} authentication, which is not supported (basic and bearer are)",
                self.reference.registry
            ))),
        }
    }

    /// GET `path` with the current authorization; on a 401 answer the (new) challenge
    /// once and ask again (tokens expire during long pulls).
    fn get(&self, path: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, Fail> {
        let url = self.url(path);
        for attempt in 0..2 {
            let mut req = self
                .agent
                .get(&url)
                .header("Accept", accept)
                // A blob's digest is over its stored bytes: no transfer compression.
                .header("Accept-Encoding", "identity");
            if let Some(a) = self.authorization.lock().unwrap().as_ref() {
                req = req.header("Authorization", a.expose());
            }
            let resp = req.call().map_err(|e| transport(&url, e))?;
            let status = resp.status().as_u16();
            (self.trace)(&format!("registry: GET {url} → {status}"));
            if status == 401 && attempt == 0 {
                let ch = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if ch.is_some() {
                    *self.challenge.lock().unwrap() = ch;
                    self.authenticate()?;
                    continue;
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    fn check_status(
        &self,
        mut resp: ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, Fail> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let detail = registry_error(&body);
        match status {
            401 | 403 => Err(self.denied(status)),
            404 => Err(Fail::Fatal(format!(
                "{what} not found in registry {}{detail}",
                self.reference.registry
            ))),
            429 | 500.. => Err(Fail::Transient(format!(
                "{what}: the registry answered {status}{detail}"
            ))),
            s => Err(Fail::Fatal(format!(
                "{what}: the registry answered {s}{detail}"
            ))),
        }
    }

    /// A manifest document by tag or digest: its bytes, their digest, and the
    /// Content-Type. A digest reference is checked against the bytes.
    pub fn manifest(
        &self,
        reference: &str,
        shown: &str,
    ) -> Result<(Vec<u8>, String, String), Fail> {
        let path = format!("{}/manifests/{reference}", self.reference.repository);
        let resp = self.get(&path, oci::MANIFEST_ACCEPT)?;
        let mut resp = self.check_status(resp, &format!("image {shown}"))?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let url = self.url(&path);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| transport(&url, e))?;
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
        );
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Fail::Transient(format!(
                "manifest {reference} of {shown}: the registry sent content that hashes to {digest}"
            )));
        }
        Ok((body, digest, ctype))
    }

    /// A blob's bytes as they arrive (the caller checks size and digest while reading).
    pub fn blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, Fail> {
        let path = format!("{}/blobs/{digest}", self.reference.repository);
        let resp = self.get(&path, "*/*")?;
        let resp = self.check_status(resp, &format!("blob {digest} of {}", self.reference))?;
        Ok(Box::new(resp.into_body().into_reader()))
    }
}
