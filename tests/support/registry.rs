//! A real registry for the registry-source tests: Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 with a free port, its storage in a temp dir, in plain
//! HTTP or in TLS with htpasswd basic auth (a throwaway CA signing a leaf certificate,
//! made with `openssl` at test time). Images go in with `skopeo copy`. The guard stops
//! the registry when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the programs these tests need are installed.
pub fn available() -> Result<(), String> {
    for p in ["docker-registry", "skopeo", "openssl", "htpasswd"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "{p} is not installed (scripts/setup.sh installs docker-registry, skopeo, apache2-utils)"
            ));
        }
    }
    Ok(())
}

#[macro_export]
macro_rules! require_registry {
    () => {
        if let Err(why) = $crate::support::registry::available() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub struct Tls {
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
}

/// How the registry wants clients to authenticate.
enum Auth {
    None,
    /// TLS with htpasswd basic auth.
    TlsBasic,
    /// Plain HTTP with the Docker token protocol, tokens from a [`TokenServer`].
    Token,
}

pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls: Option<Tls>,
    /// For a token registry: the token service (its credentials are `tls`'s user and
    /// password fields, here without TLS).
    pub tokens: Option<TokenServer>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token service as Docker Hub runs one, reduced to what the protocol needs: it checks
/// basic credentials and answers with an RS256 JWT (signed by `openssl dgst`) granting
/// the scopes asked for; the registry trusts the signing certificate.
pub struct TokenServer {
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub port: u16,
    /// Tokens issued, and requests refused.
    pub issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The DER bytes of a PEM certificate.
fn der_of(pem: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        use base64::Engine;
        must(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=token signer",
                    "-keyout",
                ])
                .arg(dir.join("token.key"))
                .arg("-out")
                .arg(dir.join("token.crt")),
        );
        let x5c = base64::engine::general_purpose::STANDARD.encode(der_of(&dir.join("token.crt")));
        let key = dir.join("token.key");
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (s, i, r) = (server.clone(), issued.clone(), refused.clone());
        let work = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let authorized = req
                    .headers()
                    .iter()
                    .any(|h| h.field.equiv("Authorization") && h.value.as_str() == want);
                if !authorized {
                    r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ =
                        req.respond(tiny_http::Response::from_string("{}").with_status_code(401));
                    continue;
                }
                let url = url_query(req.url());
                let access: Vec<serde_json::Value> = url
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .filter_map(|(_, v)| {
                        let mut parts = v.splitn(3, ':');
                        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "build-distro-test-issuer", "sub": "tester", "aud": "build-distro-test",
                    "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("{now}-{}", i.load(std::sync::atomic::Ordering::SeqCst)),
                    "access": access,
                });
                let signing = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let input = work.join(format!(
                    "jwt-{}",
                    i.load(std::sync::atomic::Ordering::SeqCst)
                ));
                std::fs::write(&input, &signing).unwrap();
                let sig = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .arg(&input)
                    .output()
                    .unwrap();
                let token = format!("{signing}.{}", b64url(&sig.stdout));
                i.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = req.respond(tiny_http::Response::from_string(
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                ));
            }
        });
        TokenServer {
            server,
            thread: Some(thread),
            port,
            issued,
            refused,
        }
    }
}

/// `?a=1&b=x%3Ay` → pairs, percent-decoded.
fn url_query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    let decode = |s: &str| {
        let b = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn must(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &Path) {
    let p = |n: &str| dir.join(n);
    must(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=build-distro test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")),
    );
    must(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(p("leaf.key"))
            .arg("-out")
            .arg(p("leaf.csr")),
    );
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    must(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
            .arg(p("leaf.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("leaf.ext"))
            .arg("-out")
            .arg(p("leaf.crt")),
    );
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn plain() -> Registry {
        Registry::start(Auth::None)
    }

    /// A TLS registry with htpasswd basic auth (user `tester`).
    pub fn tls_basic() -> Registry {
        Registry::start(Auth::TlsBasic)
    }

    /// A plain-HTTP registry that wants bearer tokens from a token service of ours.
    pub fn token() -> Registry {
        Registry::start(Auth::Token)
    }

    fn start(auth: Auth) -> Registry {
        let dir = super::tempdir();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let password = "pw-Zq8#not-in-logs".to_string();
        let mut tokens = None;
        if let Auth::Token = auth {
            let t = TokenServer::start(dir.path(), "tester", &password);
            config.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: build-distro-test\n    issuer: build-distro-test-issuer\n    rootcertbundle: {}\n",
                t.port,
                dir.path().join("token.crt").display()
            ));
            tokens = Some(t);
        }
        let tls = matches!(auth, Auth::TlsBasic | Auth::Token).then(|| {
            if let Auth::Token = auth {
                return Tls {
                    ca: PathBuf::new(),
                    user: "tester".into(),
                    password: password.clone(),
                };
            }
            make_certs(dir.path());
            must(Command::new("htpasswd").args(["-Bbc"]).arg(dir.path().join("htpasswd")).args(["tester", &password]));
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: build-distro-test\n    path: {}\n",
                dir.path().join("leaf.crt").display(),
                dir.path().join("leaf.key").display(),
                dir.path().join("htpasswd").display()
            ));
            Tls {
                ca: dir.path().join("ca.crt"),
                user: "tester".into(),
                password: password.clone(),
            }
        });
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry");
        let reg = Registry {
            child,
            dir,
            port,
            tls,
            tokens,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy` from `source` (`oci:DIR:TAG`, `docker-archive:FILE`) to NAME:TAG here.
    pub fn push(&self, source: &str, name: &str, all: bool) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            c.arg("--all");
        }
        if let Some(t) = &self.tls {
            c.arg(format!("--dest-creds={}:{}", t.user, t.password));
        }
        c.arg(source)
            .arg(format!("docker://{}/{name}", self.host()));
        must(&mut c);
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}
