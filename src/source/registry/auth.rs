//! Registry credentials, found where users already keep them: `--registry-user` with
//! `--registry-password-stdin` (CI), `$REGISTRY_AUTH_FILE` (podman, skopeo),
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (`auths` entries, and the
//! `credHelpers`/`credsStore` programs `docker-credential-NAME get`, run through the
//! runner seam). Also the reader of `WWW-Authenticate` challenges.
//!
//! A secret is held in [`Secret`], whose `Debug` and `Display` print `***`: no log line,
//! error or `-vv` trace can show it by accident.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

use super::reference::{Reference, DOCKER_HUB};
use crate::runner::{Cmd, Runner};

/// A password or token. Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A user name and its password (or token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: Secret,
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> Secret {
        let raw = format!("{}:{}", self.user, self.secret.expose());
        Secret(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// Where credentials may be: taken from the environment by [`Places::from_env`], or
/// given by tests.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub auth_file: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
}

impl Places {
    pub fn from_env() -> Places {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let docker_config = var("DOCKER_CONFIG")
            .map(|d| d.join("config.json"))
            .or_else(|| var("HOME").map(|h| h.join(".docker/config.json")));
        Places {
            auth_file: var("REGISTRY_AUTH_FILE"),
            docker_config,
        }
    }
}

/// What the lookup found, and where it looked (for the message when the registry says
/// 401: the user learns which file to fix).
#[derive(Debug, Default)]
pub struct Found {
    pub credentials: Option<Credentials>,
    pub looked: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// What `docker-credential-NAME get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The key Docker stores Docker Hub under, and sends to credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// `https://ghcr.io/v2/` → `ghcr.io`: how a config key names a registry.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Whether config key `key` is for `registry` (Docker Hub has several spellings).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    if registry == DOCKER_HUB {
        matches!(
            host,
            "index.docker.io" | "docker.io" | "registry-1.docker.io" | "registry.docker.io"
        )
    } else {
        host == registry
    }
}

/// Look up credentials for `r`, the flags first, then the files in the order of
/// [`Places`]. A file that exists but cannot be read is an error (the user meant it).
pub fn lookup(
    r: &Reference,
    login: Option<&Credentials>,
    places: &Places,
    runner: &dyn Runner,
) -> Result<Found, String> {
    let mut found = Found::default();
    if let Some(c) = login {
        found.looked.push("--registry-user".into());
        found.credentials = Some(c.clone());
        return Ok(found);
    }
    let files = [
        (places.auth_file.as_ref(), "$REGISTRY_AUTH_FILE"),
        (places.docker_config.as_ref(), "docker config"),
    ];
    for (path, what) in files {
        let Some(path) = path else {
            continue;
        };
        let shown = format!("{} ({what})", path.display());
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found.looked.push(format!("{shown}: absent"));
                continue;
            }
            Err(e) => return Err(format!("{shown}: cannot read: {e}")),
        };
        let cfg: ConfigFile = serde_json::from_slice(&text)
            .map_err(|e| format!("{shown}: not a valid credentials file: {e}"))?;
        if let Some(c) = from_config(&cfg, r, runner, &shown, &mut found.looked)? {
            found.credentials = Some(c);
            return Ok(found);
        }
    }
    if found.looked.is_empty() {
        found.looked.push(
            "no credentials file ($REGISTRY_AUTH_FILE, $DOCKER_CONFIG and $HOME unset)".into(),
        );
    }
    Ok(found)
}

fn from_config(
    cfg: &ConfigFile,
    r: &Reference,
    runner: &dyn Runner,
    shown: &str,
    looked: &mut Vec<String>,
) -> Result<Option<Credentials>, String> {
    // Docker's order: a helper for this registry, then a stored entry, then the store.
    if let Some((_, helper)) = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| key_matches(k, &r.registry))
    {
        looked.push(format!("{shown}: credHelpers → docker-credential-{helper}"));
        return helper_get(helper, r, runner);
    }
    if let Some((key, entry)) = cfg.auths.iter().find(|(k, _)| key_matches(k, &r.registry)) {
        if let Some(c) =
            entry_credentials(entry).map_err(|e| format!("{shown}: auths[{key:?}]: {e}"))?
        {
            looked.push(format!("{shown}: auths[{key:?}]"));
            return Ok(Some(c));
        }
    }
    if let Some(store) = &cfg.creds_store {
        looked.push(format!("{shown}: credsStore → docker-credential-{store}"));
        return helper_get(store, r, runner);
    }
    looked.push(format!("{shown}: no entry for {}", r.registry));
    Ok(None)
}

fn entry_credentials(e: &AuthEntry) -> Result<Option<Credentials>, String> {
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "auth is not base64".to_string())?;
        let raw = String::from_utf8(raw).map_err(|_| "auth is not UTF-8".to_string())?;
        let (user, pass) = raw
            .split_once(':')
            .ok_or_else(|| "auth is not base64 of user:password".to_string())?;
        return Ok(Some(Credentials {
            user: user.to_string(),
            secret: Secret(pass.to_string()),
        }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
            user: u.clone(),
            secret: Secret(p.clone()),
        })),
        _ => Ok(None),
    }
}

/// Ask `docker-credential-NAME get` (the server on stdin, JSON on stdout). A helper that
/// knows nothing of the server answers with an error: no credentials, not a failure.
fn helper_get(
    name: &str,
    r: &Reference,
    runner: &dyn Runner,
) -> Result<Option<Credentials>, String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "credential helper name {name:?} is not a plain name"
        ));
    }
    let program = format!("docker-credential-{name}");
    let server = if r.registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        r.registry.clone()
    };
    let cmd = Cmd::new(&program).arg("get");
    let mut feed = |w: &mut dyn std::io::Write| w.write_all(server.as_bytes());
    let out = match runner.run_fed(&cmd, &mut feed) {
        Ok(o) => o,
        Err(crate::runner::Error::NotFound { .. }) => {
            return Err(format!(
                "credential helper {program} is not installed (configured in the docker config); install it or remove it from the config"
            ))
        }
        Err(crate::runner::Error::Failed { .. }) => return Ok(None),
        Err(e) => return Err(format!("credential helper {program}: {e}")),
    };
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!("credential helper {program} printed something that is not its JSON answer")
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        user: answer.username,
        secret: Secret(answer.secret),
    }))
}

/// A `WWW-Authenticate` challenge: the scheme and its parameters (names lowercased).
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Read `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
/// Only the first challenge is read (registries send one).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = match header.split_once(' ') {
        Some((s, r)) => (s, r.trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(name, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Recording;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn write(dir: &std::path::Path, name: &str, json: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn secrets_never_show() {
        let c = Credentials {
            user: "u".into(),
            secret: Secret("hunter2".into()),
        };
        let shown = format!("{c:?} {} {:?}", c.secret, c.basic());
        assert!(
            !shown.contains("hunter2") && !shown.contains("aHVudGVyMg"),
            "{shown}"
        );
        assert_eq!(c.basic().expose(), "Basic dTpodW50ZXIy");
    }

    #[test]
    fn auths_entries_for_the_registry_and_docker_hub_spellings() {
        let d = tempfile::tempdir().unwrap();
        let file = write(
            d.path(),
            "auth.json",
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnB3"},"127.0.0.1:5000":{"auth":"bG9jYWw6c2VjcmV0"}}}"#,
        );
        let places = Places {
            auth_file: Some(file),
            docker_config: Some(d.path().join("missing.json")),
        };
        let rec = Recording::default();
        let f = lookup(&r("debian:12"), None, &places, &rec).unwrap();
        assert_eq!(f.credentials.unwrap().user, "hub");
        let f = lookup(&r("127.0.0.1:5000/app"), None, &places, &rec).unwrap();
        assert_eq!(f.credentials.unwrap().secret.expose(), "secret");
        let f = lookup(&r("ghcr.io/o/a"), None, &places, &rec).unwrap();
        assert!(f.credentials.is_none());
        let looked = f.looked.join("; ");
        assert!(
            looked.contains("auth.json ($REGISTRY_AUTH_FILE): no entry for ghcr.io"),
            "{looked}"
        );
        assert!(
            looked.contains("missing.json (docker config): absent"),
            "{looked}"
        );
        assert!(rec.calls().is_empty());
    }

    #[test]
    fn the_flags_win_and_helpers_run_through_the_runner() {
        let d = tempfile::tempdir().unwrap();
        let file = write(
            d.path(),
            "config.json",
            r#"{"auths":{"ghcr.io":{}},"credsStore":"pass","credHelpers":{"quay.io":"ecr-login"}}"#,
        );
        let places = Places {
            auth_file: None,
            docker_config: Some(file),
        };
        let rec = Recording::default();
        let login = Credentials {
            user: "ci".into(),
            secret: Secret("t".into()),
        };
        let f = lookup(&r("ghcr.io/o/a"), Some(&login), &places, &rec).unwrap();
        assert_eq!(f.credentials.unwrap().user, "ci");
        // The recording runner prints nothing: the helper's answer is not JSON.
        let e = lookup(&r("quay.io/o/a"), None, &places, &rec).unwrap_err();
        assert!(e.contains("docker-credential-ecr-login"), "{e}");
        let _ = lookup(&r("ghcr.io/o/a"), None, &places, &rec);
        let calls = rec.calls();
        assert_eq!(calls[0].program, "docker-credential-ecr-login");
        assert_eq!(calls[1].program, "docker-credential-pass");
        assert_eq!(calls[1].args, ["get"]);
    }

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/debian:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        let c = parse_challenge(r#"Bearer realm=http://x/t, service="a \"b\"""#).unwrap();
        assert_eq!(c.params["realm"], "http://x/t");
        assert_eq!(c.params["service"], "a \"b\"");
    }
}
