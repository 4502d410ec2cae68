//! Where `outdated` reads a distro: a tree, a tarball read in place, or a published
//! version fetched read-only over ssh; and the apt sources and provenance it names.

use super::*;

pub const APT_SOURCES: &str = "/etc/apt/sources.list";
pub const APT_SOURCES_D: &str = "/etc/apt/sources.list.d";
pub const APT_TRUSTED: &str = "/etc/apt/trusted.gpg";
pub const APT_TRUSTED_D: &str = "/etc/apt/trusted.gpg.d";
pub const PROVENANCE: &str = "/etc/build-distro.json";
pub const APK_REPOSITORIES: &str = "/etc/apk/repositories";
pub const APK_KEYS: &str = "/etc/apk/keys";

/// The distro, indexed (a tree, a tarball, or the few files fetched over ssh).
pub struct Target {
    /// For messages: the path, or `UID@HOST:distros/P`.
    pub name: String,
    tree: Tree,
    /// The fetched tarball of a remote target, removed on drop.
    _tmp: Option<tempfile::TempDir>,
}

impl Target {
    /// A tree directory or a `.tar`/`.tar.gz` distro, read in place.
    pub fn open(path: &Path) -> Result<Target> {
        Ok(Target {
            name: path.display().to_string(),
            tree: Tree::open(path).map_err(inventory::Error::from)?,
            _tmp: None,
        })
    }

    /// The published version `distros/PATH` of storage container `storage`, reached over
    /// ssh as `config` says (`--ssh-host` wins over the container's `address`).
    pub fn published(
        config: &SshConfig,
        storage: u32,
        address: Option<&str>,
        path: &str,
        runner: Arc<dyn Runner>,
    ) -> Result<Target> {
        let ssh = Ssh::new(config, storage, address, runner)?;
        Target::remote(&ssh, &Name::distro(path)?)
    }

    /// A published version, `distros/PATH` of the storage container `ssh` logs into:
    /// the files outdated needs come over as one small tar stream (`cat`-like, read-only)
    /// and are read like a tarball.
    pub fn remote(ssh: &Ssh, path: &Name) -> Result<Target> {
        let name = format!("{}:distros/{}", ssh.destination(), path);
        let script = crate::push::ssh::files_script(path, REMOTE_FILES);
        let out = ssh
            .runner
            .run(&ssh.command(&script))
            .map_err(|e| match &e {
                crate::runner::Error::Failed { status, .. } if status == "exit code 4" => {
                    Error::Remote {
                        target: name.clone(),
                        detail: format!(
                            "no distros/{path} on storage container {}: is --path right? (build-distro distros list)",
                            ssh.uid
                        ),
                    }
                }
                _ => ssh.error(e).into(),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("build-distro-outdated.")
            .tempdir()
            .map_err(|e| remote_io(&name, e))?;
        let tar = dir.path().join("files.tar");
        std::fs::write(&tar, &out.stdout).map_err(|e| remote_io(&name, e))?;
        let tree = Tree::open(&tar).map_err(|e| Error::Remote {
            target: name.clone(),
            detail: format!("the files sent back are not a tar stream: {e}"),
        })?;
        Ok(Target {
            name,
            tree,
            _tmp: Some(dir),
        })
    }

    /// The regular file at `path` (symlinks followed inside the distro), if any.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(inventory::tree_file(&self.tree, path)?)
    }

    /// Names directly in the directory `dir` (symlinks followed), sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let Ok(real) = self.tree.resolve(dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = self
            .tree
            .children(&real)
            .into_iter()
            .map(|n| crate::check::view::join(dir, n))
            .collect();
        v.sort();
        v
    }

    /// Several files at once (a tarball is read again at most once for all of them).
    pub fn read_many(&self, paths: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut real = Vec::new();
        for p in paths {
            if let Ok(r) = self.tree.resolve(p) {
                if self
                    .tree
                    .get(&r)
                    .is_some_and(|e| e.kind == crate::check::view::Kind::File)
                {
                    real.push((p.clone(), r));
                }
            }
        }
        let refs: Vec<&str> = real.iter().map(|(_, r)| r.as_str()).collect();
        let data = self.tree.read_all(&refs).map_err(inventory::Error::from)?;
        Ok(real
            .into_iter()
            .zip(data)
            .map(|((p, _), d)| (p, d.as_ref().clone()))
            .collect())
    }

    pub fn inventory(&self) -> Result<Inventory> {
        Ok(inventory::read_tree(&self.tree, &self.name)?)
    }
}

pub(super) fn remote_io(target: &str, e: std::io::Error) -> Error {
    Error::Remote {
        target: target.to_string(),
        detail: format!("keep the fetched files: {e}"),
    }
}

/// What a published version sends back (relative to its root); missing ones are skipped.
pub const REMOTE_FILES: &[&str] = &[
    "etc/os-release",
    "usr/lib/os-release",
    "etc/build-distro.json",
    "etc/apt",
    "etc/apk",
    "usr/share/keyrings",
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "usr/lib/apk/db/installed",
];

/// The deb entries of the tree's apt sources (one-line and deb822).
pub fn apt_sources(t: &Target) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let mut files = vec![APT_SOURCES.to_string()];
    files.extend(t.list(APT_SOURCES_D));
    for f in files {
        let parse: fn(&str, &str) -> Result<Vec<Source>, crate::mirror::Error> =
            if f.ends_with(".list") {
                sources::parse_list
            } else if f.ends_with(".sources") {
                sources::parse_deb822
            } else {
                continue;
            };
        if let Some(b) = t.read(&f)? {
            let text = String::from_utf8_lossy(&b);
            out.extend(parse(&f, &text).map_err(|e| Error::Config {
                target: t.name.clone(),
                path: f.clone(),
                msg: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// The suite name recorded in `/etc/build-distro.json` for a debootstrap/mmdebstrap
/// build (`"reference": "bookworm minbase http://…"`).
pub fn provenance_suite(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let src = v.get("source")?;
    let kind = src.get("kind")?.as_str()?;
    if !matches!(kind, "debootstrap" | "mmdebstrap") {
        return None;
    }
    let r = src.get("reference")?.as_str()?;
    r.split_whitespace().next().map(str::to_string)
}
