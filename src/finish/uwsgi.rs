//! uWSGI where the platform's Emperor looks: `/opt/unbit/uwsgi/uwsgi` (a hard link to the
//! tree's own binary, so it is a real executable file), its plugins under
//! `/opt/unbit/uwsgi/plugins/`, and our `shortcuts.ini`.

use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use super::{Error, FinishReport, UWSGI_BINARY, UWSGI_PLUGINS, UWSGI_SHORTCUTS};
use crate::recipe::Uwsgi;
use crate::tree::Root;

/// Our vassal shortcuts file (declares `domain`, `cluster-domain` and the `ssl-*` options).
pub const SHORTCUTS_INI: &str = include_str!("shortcuts.ini");

/// The custom options `shortcuts.ini` must declare (checked by `check`).
pub const SHORTCUTS_OPTIONS: &[&str] = &[
    "domain",
    "cluster-domain",
    "ssl-domain",
    "ssl-cluster-domain",
    "ssl-ca-domain",
    "ssl-ca-cluster-domain",
];

/// Binaries tried in order when `[uwsgi] binary` is unset (Debian, Alpine, pip).
const BINARIES: &[&str] = &[
    "/usr/bin/uwsgi-core",
    "/usr/bin/uwsgi",
    "/usr/sbin/uwsgi",
    "/usr/local/bin/uwsgi",
];
/// Plugin directories tried in order when `[uwsgi] plugins` is unset.
const PLUGIN_DIRS: &[&str] = &[
    "/usr/lib/uwsgi/plugins",
    "/usr/lib/uwsgi",
    "/usr/lib64/uwsgi",
];

/// The path inside the root that `rel` finally resolves to (symlinks followed in-root).
pub fn resolve(root: &Root, rel: &Path) -> Option<PathBuf> {
    let fd = root.open_at(rel, OFlags::PATH, 0).ok()?;
    let host = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .ok()?;
    let base = root.path().canonicalize().ok()?;
    host.strip_prefix(&base)
        .ok()
        .map(|p| Path::new("/").join(p))
}

fn is_file(root: &Root, rel: &Path) -> bool {
    resolve(root, rel)
        .and_then(|p| root.file_type(&p).ok().flatten())
        .is_some_and(|t| t == FileType::RegularFile)
}

pub fn install(root: &Root, spec: &Uwsgi, report: &mut FinishReport) -> Result<(), Error> {
    let binary: PathBuf = match &spec.binary {
        Some(b) => {
            let p = PathBuf::from(&**b);
            if !is_file(root, &p) {
                return Err(Error::Uwsgi {
                    key: "binary".into(),
                    path: b.to_string(),
                    msg: "not a file in the tree".into(),
                });
            }
            p
        }
        None => BINARIES
            .iter()
            .map(PathBuf::from)
            .find(|p| is_file(root, p))
            .or_else(|| is_file(root, Path::new(UWSGI_BINARY)).then(|| PathBuf::from(UWSGI_BINARY)))
            .ok_or_else(|| Error::NoUwsgi {
                root: root.path().display().to_string(),
                looked: BINARIES.join(", "),
            })?,
    };
    let real = resolve(root, &binary).expect("checked above");
    let target = Path::new(UWSGI_BINARY);
    root.create_dir_all(Path::new(UWSGI_PLUGINS), 0o755)?;
    let same = match (root.lstat(&real)?, root.lstat(target)?) {
        (Some(a), Some(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
        _ => false,
    };
    if !same {
        root.hard_link(&real, target)?;
    }
    report.uwsgi_binary = real.display().to_string();

    let plugin_dir = match &spec.plugins {
        Some(p) => Some(PathBuf::from(&**p)),
        None => PLUGIN_DIRS
            .iter()
            .map(PathBuf::from)
            .find(|p| root.file_type(p).ok().flatten() == Some(FileType::Directory)),
    };
    if let Some(dir) = plugin_dir {
        // Listed inside the root: a planted `/usr/lib -> /` must not list the host's.
        let names: Vec<String> = root
            .read_dir(&dir)
            .map_err(|e| Error::Uwsgi {
                key: "plugins".into(),
                path: dir.display().to_string(),
                msg: e.to_string(),
            })?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with("_plugin.so"))
            .collect();
        for n in names {
            let Some(real) = resolve(root, &dir.join(&n)) else {
                continue;
            };
            if !is_file(root, &real) {
                continue;
            }
            root.symlink(&real, &Path::new(UWSGI_PLUGINS).join(&n))?;
            report.plugins.push(n);
        }
    }
    root.write_file(Path::new(UWSGI_SHORTCUTS), SHORTCUTS_INI.as_bytes(), 0o644)?;
    Ok(())
}
