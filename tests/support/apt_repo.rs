//! A signed apt repository on loopback for bootstrap tests that must control the mirror:
//! packages built with `dpkg-deb`, indexes by `apt-ftparchive`, `InRelease` clear-signed
//! with a throwaway gpg key, served by a tiny HTTP server on 127.0.0.1 that stops when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Whether the tools this needs are installed (apt-utils, gpg, dpkg-deb, mmdebstrap).
pub fn available() -> Result<(), String> {
    for tool in ["apt-ftparchive", "gpg", "dpkg-deb", "mmdebstrap"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "{tool} is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    Ok(())
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct AptRepo {
    pub dir: PathBuf,
    gnupg: PathBuf,
    /// The public key, binary (the recipe's `keyring`).
    pub keyring: PathBuf,
    pub suite: String,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub port: u16,
}

impl AptRepo {
    /// An empty repository of `suite` under `dir` with a fresh signing key, served.
    pub fn new(dir: &Path, suite: &str) -> AptRepo {
        let repo = dir.join("repo");
        let gnupg = dir.join("gnupg");
        std::fs::create_dir_all(repo.join("pool/main")).unwrap();
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        sh(Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--quick-gen-key", "build-distro test repo <test@invalid>"])
            .args(["ed25519", "sign", "never"]));
        let keyring = dir.join("repo-key.gpg");
        sh(Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--yes", "--output"])
            .arg(&keyring)
            .arg("--export"));
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
        let port = server.server_addr().to_ip().unwrap().port();
        let (srv, root) = (server.clone(), repo.clone());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                let rel = req.url().trim_start_matches('/').to_string();
                let path = root.join(&rel);
                let ok = !rel.split('/').any(|c| c == "..") && path.is_file();
                let _ = if ok {
                    req.respond(tiny_http::Response::from_file(
                        std::fs::File::open(&path).unwrap(),
                    ))
                } else {
                    req.respond(tiny_http::Response::empty(404))
                };
            }
        });
        AptRepo {
            dir: repo,
            gnupg,
            keyring,
            suite: suite.to_string(),
            server,
            thread: Some(thread),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Build `name_version_amd64.deb` from the tree at `root` into the pool (replacing
    /// other versions of `name`).
    pub fn add_package(&self, name: &str, version: &str, root: &Path) {
        let pool = self.dir.join("pool/main");
        for e in std::fs::read_dir(&pool).unwrap() {
            let e = e.unwrap();
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}_"))
            {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let debian = root.join("DEBIAN");
        std::fs::create_dir_all(&debian).unwrap();
        std::fs::write(
            debian.join("control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: test <test@invalid>\nDescription: build-distro test package\n"
            ),
        )
        .unwrap();
        sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(root)
            .arg(pool.join(format!("{name}_{version}_amd64.deb"))));
        std::fs::remove_dir_all(&debian).unwrap();
    }

    /// Write the indexes and sign the release: the repository's new state.
    pub fn publish(&self) {
        let dists = self.dir.join("dists").join(&self.suite);
        let bin = dists.join("main/binary-amd64");
        std::fs::create_dir_all(&bin).unwrap();
        let out = Command::new("apt-ftparchive")
            .current_dir(&self.dir)
            .args(["packages", "pool"])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(bin.join("Packages"), &out.stdout).unwrap();
        let o = |k: &str, v: &str| format!("-oAPT::FTPArchive::Release::{k}={v}");
        let out = Command::new("apt-ftparchive")
            .current_dir(&self.dir)
            .arg(o("Suite", &self.suite))
            .arg(o("Codename", &self.suite))
            .arg(o("Architectures", "amd64"))
            .arg(o("Components", "main"))
            .arg("release")
            .arg(format!("dists/{}", self.suite))
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(dists.join("Release"), &out.stdout).unwrap();
        let inrelease = dists.join("InRelease");
        let _ = std::fs::remove_file(&inrelease);
        sh(Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--digest-algo", "SHA256", "--clearsign", "--output"])
            .arg(&inrelease)
            .arg(dists.join("Release")));
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // gpg-agent started by key generation.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}
