//! The server side of a boot, in a temporary directory: the container home that the
//! platform's hooks create under `/containers/U` (platform.md, step 1), the server's
//! subscription directory (bound on the container's `/run/subscribe`), the `/ns` mount
//! point, and the vassal the Emperor will find in `vassals/`.

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use super::Error;
use crate::runner::{Cmd, Runner, System};
use crate::tree::{BuildDir, Root};

/// The hostname the container gets (the platform uses the container's name).
pub const HOSTNAME: &str = "build-distro-boot";
/// The smoke vassal's `domain`.
pub const SMOKE_DOMAIN: &str = "build-distro-smoke.local";
/// Where the smoke vassal listens, on the container's own `lo`.
pub const SMOKE_PORT: u16 = 8000;
/// What the smoke WSGI app answers.
pub const SMOKE_BODY: &str = "build-distro smoke vassal ok";
const SMOKE_NAME: &str = "smoke.ini";
const SMOKE_APP: &str = "build-distro-smoke.py";

/// Host paths of the server side (all canonical, so they are valid under `/.old_root`).
#[derive(Debug, Clone)]
pub struct Paths {
    /// The container home (`/containers/U` on the server).
    pub home: PathBuf,
    /// The server's subscription directory, holding the router's socket `http`.
    pub subscribe: PathBuf,
    /// Where the distro is bound before `pivot_root` (the server's `/ns`).
    pub ns: PathBuf,
}

/// The vassal the Emperor starts, and what proves it works.
#[derive(Debug, Clone)]
pub struct VassalPlan {
    /// Its file name in `vassals/` (what uWSGI calls the vassal).
    pub name: String,
    /// The smoke vassal: answer HTTP inside the container.
    pub smoke: Option<Smoke>,
    /// `domain`-style names it subscribes (from `domain = NAME` lines).
    pub domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Smoke {
    pub port: u16,
    /// The body to expect (the WSGI app's), or `None` for the routing fallback.
    pub body: Option<String>,
    /// "python3 WSGI app" or "internal routing".
    pub kind: String,
}

/// The user's `--vassal FILE`.
#[derive(Debug, Clone)]
pub struct UserVassal {
    name: String,
    text: Vec<u8>,
    domains: Vec<String>,
}

/// Extensions the Emperor loads (anything else in `vassals/` is ignored).
const VASSAL_EXTENSIONS: &[&str] = &["ini", "xml", "yaml", "yml", "json", "js"];

impl UserVassal {
    pub fn read(path: &Path) -> Result<UserVassal, Error> {
        let bad = |msg: String| Error::Vassal {
            path: path.display().to_string(),
            msg,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| bad("not a file name".into()))?;
        let ext = Path::new(&name)
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !VASSAL_EXTENSIONS.contains(&ext.as_str()) {
            return Err(bad(format!(
                "the Emperor only loads vassals ending in .{}",
                VASSAL_EXTENSIONS.join(", .")
            )));
        }
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let domains = if ext == "ini" {
            ini_domains(&String::from_utf8_lossy(&text))
        } else {
            Vec::new()
        };
        Ok(UserVassal {
            name,
            text,
            domains,
        })
    }
}

/// The first argument of every shortcut option (`domain = NAME`, `ssl-domain = NAME KEY
/// CRT`, …) in the `[uwsgi]` section of an ini vassal: the names it subscribes.
pub fn ini_domains(text: &str) -> Vec<String> {
    let mut section = String::from("uwsgi");
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if section != "uwsgi" || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if crate::finish::SHORTCUTS_OPTIONS.contains(&k.trim()) {
            if let Some(name) = v.split_whitespace().next() {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The temporary server side; removed (never across a mount point) when dropped.
pub struct Layout {
    _dir: BuildDir,
    paths: Paths,
    vassal: VassalPlan,
    key: String,
}

impl Layout {
    /// Create it under `work` for `uid`, with the smoke vassal fitted to `distro` (or
    /// the user's vassal).
    pub fn create(
        work: &Path,
        uid: u32,
        distro: &Root,
        user: Option<&UserVassal>,
    ) -> Result<Layout, Error> {
        let dir = BuildDir::new(work)?;
        let base = dir
            .path()
            .canonicalize()
            .map_err(|e| Error::sys(&dir.path().display().to_string(), e))?;
        let home = base.join("containers").join(uid.to_string());
        let owned = |p: &Path, mode: u32| -> Result<(), Error> {
            let io = |e| Error::sys(&p.display().to_string(), e);
            if !p.exists() {
                std::fs::create_dir_all(p).map_err(io)?;
            }
            std::fs::set_permissions(p, PermissionsExt::from_mode(mode)).map_err(io)?;
            chown(p, Some(uid), Some(uid)).map_err(io)
        };
        // What the platform's hooks create in every home (platform.md, step 1).
        owned(&home, 0o755)?;
        for d in [
            "run",
            "run/resolvconf",
            "run/spool",
            "run/shm",
            "run/php",
            "run/subscribe",
            "run/cgroup",
            "vassals",
            ".old_root",
            "tmp",
            "logs",
            "etc",
            "etc/nullmailer",
        ] {
            owned(&home.join(d), 0o755)?;
        }
        owned(&home.join(".old_root").join(uid.to_string()), 0o755)?;
        owned(&home.join(".ssh"), 0o700)?;
        let file = |rel: &str, data: &[u8], mode: u32| -> Result<(), Error> {
            let p = home.join(rel);
            let io = |e| Error::sys(&p.display().to_string(), e);
            std::fs::write(&p, data).map_err(io)?;
            std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).map_err(io)?;
            chown(&p, Some(uid), Some(uid)).map_err(io)
        };
        file("logs/lastlog", b"", 0o644)?;
        file(
            "etc/hosts",
            format!("127.0.0.1\tlocalhost\n{}\t{HOSTNAME}\n", container_ip(uid)).as_bytes(),
            0o644,
        )?;
        file("etc/resolv.conf", b"nameserver 127.0.0.1\n", 0o644)?;
        file("etc/hostname", format!("{HOSTNAME}\n").as_bytes(), 0o644)?;
        let key = match rsa_key(&home.join("etc")) {
            Ok(()) => {
                for (rel, mode) in [("etc/uwsgi.key", 0o600), ("etc/uwsgi.pubkey", 0o644)] {
                    let p = home.join(rel);
                    let io = |e| Error::sys(&p.display().to_string(), e);
                    std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).map_err(io)?;
                    chown(&p, Some(uid), Some(uid)).map_err(io)?;
                }
                "etc/uwsgi.key: a fresh RSA key (subscriptions are signed)".to_string()
            }
            Err(why) => format!("no etc/uwsgi.key ({why}): subscriptions go unsigned"),
        };

        let subscribe = base.join("subscribe");
        std::fs::create_dir(&subscribe)
            .and_then(|_| std::fs::set_permissions(&subscribe, PermissionsExt::from_mode(0o755)))
            .map_err(|e| Error::sys(&subscribe.display().to_string(), e))?;
        let ns = base.join("ns");
        std::fs::create_dir(&ns).map_err(|e| Error::sys(&ns.display().to_string(), e))?;

        let vassal = match user {
            Some(u) => {
                file(&format!("vassals/{}", u.name), &u.text, 0o644)?;
                VassalPlan {
                    name: u.name.clone(),
                    smoke: None,
                    domains: u.domains.clone(),
                }
            }
            None => {
                let python = distro
                    .open_at(
                        Path::new("opt/unbit/uwsgi/plugins/python3_plugin.so"),
                        OFlags::PATH,
                        0,
                    )
                    .is_ok();
                let (ini, smoke) = smoke_vassal(uid, python);
                if python {
                    file(SMOKE_APP, smoke_app().as_bytes(), 0o644)?;
                }
                file(&format!("vassals/{SMOKE_NAME}"), ini.as_bytes(), 0o644)?;
                VassalPlan {
                    name: SMOKE_NAME.into(),
                    smoke: Some(smoke),
                    domains: vec![SMOKE_DOMAIN.into()],
                }
            }
        };
        Ok(Layout {
            _dir: dir,
            paths: Paths {
                home,
                subscribe,
                ns,
            },
            vassal,
            key,
        })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn vassal(&self) -> &VassalPlan {
        &self.vassal
    }

    /// The router's socket, bound by the tool.
    pub fn subscribe_socket(&self) -> PathBuf {
        self.paths.subscribe.join("http")
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let what = match &self.vassal.smoke {
            Some(s) => format!("smoke vassal {} ({})", self.vassal.name, s.kind),
            None => format!("your vassal {}", self.vassal.name),
        };
        format!(
            "home {} with run/, tmp/, logs/, etc/, vassals/, .old_root/; router socket {}; {what}; {}",
            self.paths.home.display(),
            self.subscribe_socket().display(),
            self.key
        )
    }
}

/// 30001 -> 10.0.0.3, as the platform numbers its containers.
pub fn container_ip(uid: u32) -> String {
    let n = uid.saturating_sub(30000).wrapping_add(2) & 0x00ff_ffff;
    format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff)
}

/// `etc/uwsgi.key` and `etc/uwsgi.pubkey` in `etc`: the platform gives every container
/// its customer's RSA key pair, and `sign=SHA1:$(HOME)/etc/uwsgi.key` needs one.
fn rsa_key(etc: &Path) -> Result<(), String> {
    let key = etc.join("uwsgi.key");
    let run = |c: Cmd| System.run(&c).map(|_| ()).map_err(|e| e.to_string());
    run(Cmd::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key))?;
    run(Cmd::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(etc.join("uwsgi.pubkey")))
}

/// The smoke vassal: a WSGI app when the distro has the python3 plugin, else uWSGI's
/// internal routing answering 200 by itself. Either way it uses `domain`, so the
/// shortcuts and the subscription are exercised too.
fn smoke_vassal(uid: u32, python: bool) -> (String, Smoke) {
    let mut ini = String::from("; written by build-distro boot\n[uwsgi]\n");
    ini.push_str(&format!("http-socket = 127.0.0.1:{SMOKE_PORT}\n"));
    let smoke = if python {
        ini.push_str("plugin = 0:python3\n");
        ini.push_str(&format!("wsgi-file = /containers/{uid}/{SMOKE_APP}\n"));
        Smoke {
            port: SMOKE_PORT,
            body: Some(SMOKE_BODY.into()),
            kind: "python3 WSGI app".into(),
        }
    } else {
        ini.push_str("route-run = return:200\n");
        Smoke {
            port: SMOKE_PORT,
            body: None,
            kind: "internal routing, no python3 plugin".into(),
        }
    };
    ini.push_str(&format!("domain = {SMOKE_DOMAIN}\n"));
    (ini, smoke)
}

fn smoke_app() -> String {
    format!(
        "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'{SMOKE_BODY}\\n']\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ips_follow_the_platform() {
        assert_eq!(container_ip(30001), "10.0.0.3");
        assert_eq!(container_ip(30254), "10.0.1.0");
    }

    #[test]
    fn domains_are_the_first_argument_of_shortcut_options() {
        let text = "[uwsgi]\ndomain = a.example\n; domain = commented\nssl-domain = b.example /k /c\nsocket = x\n[other]\ndomain = c.example\n";
        assert_eq!(ini_domains(text), ["a.example", "b.example"]);
    }

    #[test]
    fn smoke_vassal_uses_the_domain_shortcut() {
        let (ini, s) = smoke_vassal(30001, true);
        assert!(ini.contains("domain = build-distro-smoke.local\n"));
        assert!(ini.contains("wsgi-file = /containers/30001/build-distro-smoke.py\n"));
        assert_eq!(s.body.as_deref(), Some(SMOKE_BODY));
        let (ini, s) = smoke_vassal(30001, false);
        assert!(ini.contains("route-run = return:200\n"));
        assert!(s.body.is_none());
    }
}
