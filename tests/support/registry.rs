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

pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls: Option<Tls>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        Registry::start(false)
    }

    /// A TLS registry with htpasswd basic auth (user `tester`).
    pub fn tls_basic() -> Registry {
        Registry::start(true)
    }

    fn start(tls: bool) -> Registry {
        let dir = super::tempdir();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let tls = tls.then(|| {
            make_certs(dir.path());
            let password = "pw-Zq8#not-in-logs".to_string();
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
                password,
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
