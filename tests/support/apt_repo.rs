//! Signed apt archives on loopback, for tests that must control the mirror: a static
//! HTTP server on 127.0.0.1 ([`Mirror`]), throwaway gpg keys that clear-sign `Release`
//! files, and [`AptRepo`], a repository of packages built with `dpkg-deb` and indexed by
//! `apt-ftparchive` that a bootstrap can install from.

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

/// Run, assert success, return stdout.
pub fn sh(c: &mut Command) -> Vec<u8> {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A static HTTP server of the files under a directory on 127.0.0.1 (a mirror), stopped
/// on drop.
pub struct Mirror {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Mirror {
    pub fn serve(root: &Path) -> Mirror {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let url = format!("http://{}", server.server_addr());
        let (s, root) = (server.clone(), root.to_path_buf());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let rel = req.url().trim_start_matches('/').to_string();
                let path = root.join(&rel);
                let resp = if !rel.split('/').any(|c| c == "..") && path.is_file() {
                    tiny_http::Response::from_data(std::fs::read(&path).unwrap())
                } else {
                    tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
                };
                let _ = req.respond(resp);
            }
        });
        Mirror {
            server,
            thread: Some(thread),
            url,
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args([
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

/// A fresh signing key under `dir`: (its GNUPGHOME, the binary public keyring).
pub fn signing_key(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    sh(gpg(&home).args([
        "--quick-gen-key",
        &format!("{name} <{name}@test.invalid>"),
        "ed25519",
        "sign",
        "never",
    ]));
    let public = sh(gpg(&home).arg("--export"));
    assert!(!public.is_empty());
    (home, public)
}

/// Clear-sign `dir/Release` into `dir/InRelease` with the key in `gnupg`.
pub fn sign(dir: &Path, gnupg: &Path) {
    sh(gpg(gnupg)
        .args(["--digest-algo", "SHA256", "--clearsign", "-o"])
        .arg(dir.join("InRelease"))
        .arg(dir.join("Release")));
}

/// The gpg-agent key generation started for `gnupg`.
pub fn stop_agent(gnupg: &Path) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// A repository built with the real tools (`dpkg-deb`, `apt-ftparchive`), signed, served.
pub struct AptRepo {
    pub dir: PathBuf,
    gnupg: PathBuf,
    /// The public key, binary (the recipe's `keyring`).
    pub keyring: PathBuf,
    pub suite: String,
    mirror: Mirror,
}

impl AptRepo {
    /// An empty repository of `suite` under `dir` with a fresh signing key, served.
    pub fn new(dir: &Path, suite: &str) -> AptRepo {
        let repo = dir.join("repo");
        std::fs::create_dir_all(repo.join("pool/main")).unwrap();
        let (gnupg, public) = signing_key(dir, "repo");
        let keyring = dir.join("repo-key.gpg");
        std::fs::write(&keyring, public).unwrap();
        let mirror = Mirror::serve(&repo);
        AptRepo {
            dir: repo,
            gnupg,
            keyring,
            suite: suite.to_string(),
            mirror,
        }
    }

    pub fn url(&self) -> String {
        self.mirror.url.clone()
    }

    /// Build `name_version_amd64.deb` from the tree at `root` into the pool (replacing
    /// other versions of `name`).
    pub fn add_package(&self, name: &str, version: &str, root: &Path) {
        self.add_package_for(name, version, root, "amd64")
    }

    /// [`AptRepo::add_package`] for `arch` (`all`: installable on every architecture the
    /// repository publishes).
    pub fn add_package_for(&self, name: &str, version: &str, root: &Path, arch: &str) {
        self.add_package_with(name, version, root, arch, "")
    }

    /// [`AptRepo::add_package_for`] with `control` added to its control file
    /// (`Depends: hello\n`).
    pub fn add_package_with(
        &self,
        name: &str,
        version: &str,
        root: &Path,
        arch: &str,
        control: &str,
    ) {
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
                "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: test <test@invalid>\nDescription: build-distro test package\n{control}"
            ),
        )
        .unwrap();
        sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(root)
            .arg(pool.join(format!("{name}_{version}_{arch}.deb"))));
        std::fs::remove_dir_all(&debian).unwrap();
    }

    /// Write the indexes and sign the release: the repository's new state.
    pub fn publish(&self) {
        self.publish_suite(&self.suite)
    }

    /// [`AptRepo::publish`] the pool as `suite` too (`bdtest-updates`). Published for
    /// amd64 and i386; an i386 bootstrap installs the `all` packages.
    pub fn publish_suite(&self, suite: &str) {
        let dists = self.dir.join("dists").join(suite);
        let out = Command::new("apt-ftparchive")
            .current_dir(&self.dir)
            .args(["packages", "pool"])
            .output()
            .unwrap();
        assert!(out.status.success());
        for arch in ["amd64", "i386"] {
            let bin = dists.join(format!("main/binary-{arch}"));
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("Packages"), &out.stdout).unwrap();
        }
        let o = |k: &str, v: &str| format!("-oAPT::FTPArchive::Release::{k}={v}");
        let out = Command::new("apt-ftparchive")
            .current_dir(&self.dir)
            .arg(o("Suite", suite))
            .arg(o("Codename", suite))
            .arg(o("Architectures", "amd64 i386"))
            .arg(o("Components", "main"))
            .arg("release")
            .arg(format!("dists/{suite}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(dists.join("Release"), &out.stdout).unwrap();
        sign(&dists, &self.gnupg);
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        stop_agent(&self.gnupg);
    }
}
