//! The HTTP side of the API client: where the API is and who we are ([`Settings`],
//! [`Password`]), one call with its retries, and what each status means for the user.
//! Every text that comes back from the server is scrubbed of the password before it
//! reaches an error or a trace line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::retry::{parse_retry_after, Jitter, Policy};
use super::{Error, Result, ENV_API, ENV_CA_FILE, ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USER};

/// How long one attempt of a call may take unless `--api-timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// For one attempt of a call, body included (`--api-timeout`, `UWSGI_IT_TIMEOUT`).
    pub timeout: Duration,
    /// How often and how patiently a call is tried again after a transient failure
    /// (`--api-retries`, `UWSGI_IT_RETRIES`).
    pub retry: Policy,
}

impl Settings {
    pub fn new(api: impl Into<String>, user: impl Into<String>, password: Password) -> Self {
        Settings {
            api: api.into(),
            user: user.into(),
            password,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            timeout: DEFAULT_TIMEOUT,
            retry: Policy::default(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
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
pub(super) struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub body: Option<serde_json::Value>,
    /// Why a 403 happens for this call (the server never says).
    pub on_403: &'a str,
    /// Why a 500 happens for this call, when it is a known crash.
    pub on_500: &'a str,
}

impl<'a> Call<'a> {
    pub fn get(path: String, on_403: &'a str) -> Self {
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
    retry: Policy,
    jitter: Jitter,
    trace: Option<Trace>,
}

/// How a write ended (see [`Client::write`]).
pub(super) enum Written<T> {
    /// The server answered 2xx, with this body.
    Replied(String),
    /// The reply was lost, but reading the state back showed the write applied.
    Found(T),
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
            .user_agent(format!("build-distro/{}", crate::build_inputs::VERSION))
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
            retry: s.retry,
            jitter: Jitter::new(),
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

    /// One attempt: `Ok` only for a 2xx status, with the body; with the server's
    /// `Retry-After`, if it sent one.
    fn attempt(&self, c: &Call, url: &str) -> (Result<(u16, String)>, Option<Duration>) {
        let m = c.method.as_str();
        match &c.body {
            Some(b) => self.trace(&format!("> {m} {url} {b}")),
            None => self.trace(&format!("> {m} {url}")),
        }
        let started = Instant::now();
        match self.send(c, url) {
            Ok((status, body, retry_after)) => {
                self.trace(&format!(
                    "< {status} {m} {url} ({} bytes, {} ms)",
                    body.len(),
                    started.elapsed().as_millis()
                ));
                (self.check_status(c, url, status, body), retry_after)
            }
            Err(e) => {
                self.trace(&format!("< {e}"));
                (Err(e), None)
            }
        }
    }

    /// Wait before attempt `attempt + 1`, saying so (`-v`); `false` when the budget is
    /// spent or the user interrupted.
    fn pause_before_retry(
        &self,
        c: &Call,
        url: &str,
        attempt: u32,
        why: &Error,
        retry_after: Option<Duration>,
    ) -> bool {
        if attempt > self.retry.retries || crate::interrupt::interrupted() {
            return false;
        }
        let pause = self.retry.pause(attempt, retry_after, &self.jitter);
        self.trace(&format!(
            "retrying {} {url} in {} ms (attempt {} of {}){}: {why}",
            c.method.as_str(),
            pause.as_millis(),
            attempt + 1,
            self.retry.retries + 1,
            match retry_after {
                Some(r) => format!(", server asked {} s", r.as_secs()),
                None => String::new(),
            }
        ));
        std::thread::sleep(pause);
        true
    }

    /// Perform a call; `Ok` only for a 2xx status, with the body. Only GETs are retried
    /// here, on transient failures: a POST or DELETE whose reply was lost may have been
    /// applied, so writes go through [`Client::write`], which reads the state back first.
    pub(super) fn call(&self, c: &Call) -> Result<(u16, String)> {
        let url = format!("{}{}", self.base, c.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, retry_after) = self.attempt(c, &url);
            match result {
                Err(e)
                    if c.method == Method::Get
                        && e.is_transient()
                        && self.pause_before_retry(c, &url, attempt, &e, retry_after) => {}
                other => return other,
            }
        }
    }

    /// A write (POST, DELETE) made safe to retry: after a failure that may or may not
    /// have been applied (a timeout, a reset, a 5xx from a gateway), `applied` reads the
    /// state back; `Some` means the write took effect and ends here, `None` that it did
    /// not and may be sent again. Failures the server certainly did not apply (connection
    /// refused, 429) are sent again directly. Other errors, a 403 included, are returned
    /// for the caller to explain.
    pub(super) fn write<T>(
        &self,
        c: &Call,
        applied: &dyn Fn() -> Result<Option<T>>,
    ) -> Result<Written<T>> {
        let url = format!("{}{}", self.base, c.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, retry_after) = self.attempt(c, &url);
            let e = match result {
                Ok((_, body)) => return Ok(Written::Replied(body)),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            if e.may_have_applied() {
                self.trace(&format!(
                    "{} {url} may have been applied ({e}): reading the state back",
                    c.method.as_str()
                ));
                if let Some(found) = applied()? {
                    self.trace(&format!("{} {url} was applied", c.method.as_str()));
                    return Ok(Written::Found(found));
                }
            }
            if !self.pause_before_retry(c, &url, attempt, &e, retry_after) {
                return Err(e);
            }
        }
    }

    /// One HTTP exchange; transport failures become errors, every status is returned
    /// (with `Retry-After`, when sent).
    fn send(&self, c: &Call, url: &str) -> Result<(u16, String, Option<Duration>)> {
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
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(method, url, e))?;
        Ok((status, body, retry_after))
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

    pub(super) fn json<T: for<'de> Deserialize<'de>>(&self, c: &Call) -> Result<T> {
        let (status, body) = self.call(c)?;
        self.parse(c, status, &body)
    }

    /// The body of a reply to `c` as `T`.
    pub(super) fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        c: &Call,
        status: u16,
        body: &str,
    ) -> Result<T> {
        serde_json::from_str(body).map_err(|e| Error::BadResponse {
            method: c.method.as_str(),
            url: format!("{}{}", self.base, c.path),
            status,
            detail: format!("not the expected JSON ({e}): {}", self.summarize(body)),
        })
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
