//! A chroot of a tree and the package managers in it: [`ChrootSession`] mounts `/proc`,
//! a minimal `/dev` and the host's resolver for as long as it lives (undone when dropped,
//! on success, error and Ctrl-C alike); [`PackageManager`] builds the argument vectors;
//! `upgrade_in` upgrades every package; [`apt_upgrade`], [`dpkg_installed`] and
//! [`apt_cleanup`] are a bootstrap's second step. Below both of its users: the bootstrap
//! source (that step) and customize (`[packages]`, `[[run]]`).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::progress::Reporter;
use crate::runner::{Cmd, Runner};
use crate::tree::Root;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mount {what} on {target}: {source}; run as root")]
    Mount {
        what: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("[packages]: {0}")]
    Packages(#[source] crate::runner::Error),
    #[error("[packages] upgrade: {root} uses {manager}, which build-distro cannot upgrade; upgrade in [[run]] instead")]
    UpgradeUnsupported { root: String, manager: &'static str },
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::UpgradeUnsupported { .. } => 2,
            Error::Tree(e) => e.exit_code(),
            _ => 1,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What package installs inside a chroot must never do: start services.
pub const POLICY_RC_D: &[u8] =
    b"#!/bin/sh\n# build-distro: never start services from package scripts\nexit 101\n";

/// A mount that is detached when dropped.
struct MountGuard {
    target: PathBuf,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
    }
}

/// Mount onto a directory of the tree, pinned by an fd opened inside the root, so a
/// planted symlink (`/proc -> /`) can never redirect the mount onto the host. Without a
/// file system type, `source` is bound there (`flags` then is [`MountFlags::BIND`]).
fn mount_in(
    root: &Root,
    rel: &str,
    source: &str,
    fstype: Option<&str>,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
) -> Result<MountGuard> {
    let rel_path = Path::new(rel);
    let fail = |e: std::io::Error| Error::Mount {
        what: source.to_string(),
        target: root.host_path(rel_path).display().to_string(),
        source: e,
    };
    let is_file = flags.contains(MountFlags::BIND)
        && Path::new(source)
            .metadata()
            .map(|m| !m.is_dir())
            .unwrap_or(false);
    if is_file {
        root.write_file(rel_path, b"", 0o644)?;
    } else {
        root.create_dir_all(rel_path, 0o755)?;
    }
    let fd = root
        .open_at(rel_path, OFlags::PATH | OFlags::NOFOLLOW, 0)
        .map_err(fail)?;
    let pinned = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match fstype {
        Some(fstype) => rustix::mount::mount(source, pinned.as_str(), fstype, flags, data),
        None => rustix::mount::mount_bind(source, pinned.as_str()),
    }
    .map_err(|e| fail(e.into()))?;
    Ok(MountGuard {
        target: root.host_path(rel_path),
    })
}

/// A chroot with `/proc`, `/dev` and DNS for as long as it lives.
pub struct ChrootSession<'a> {
    root: &'a Root,
    // Dropped in reverse order of mounting (Vec drops front to back, so we pop).
    mounts: Vec<MountGuard>,
    resolv_backup: Option<PathBuf>,
}

const RESOLV: &str = "etc/resolv.conf";
const RESOLV_BACKUP: &str = "etc/.resolv.conf.build-distro";

impl<'a> ChrootSession<'a> {
    pub fn enter(root: &'a Root) -> Result<Self> {
        let mut s = ChrootSession {
            root,
            mounts: Vec::new(),
            resolv_backup: None,
        };
        let nodev = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
        s.mounts
            .push(mount_in(root, "proc", "proc", Some("proc"), nodev, None)?);
        s.mounts.push(mount_in(
            root,
            "dev",
            "tmpfs",
            Some("tmpfs"),
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(c"mode=755"),
        )?);
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let host = format!("/dev/{node}");
            s.mounts.push(mount_in(
                root,
                &format!("dev/{node}"),
                &host,
                None,
                MountFlags::BIND,
                None,
            )?);
        }
        s.mounts.push(mount_in(
            root,
            "dev/pts",
            "devpts",
            Some("devpts"),
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=620"),
        )?);
        root.create_dir_all(Path::new("dev/shm"), 0o1777)?;
        // The host's resolver while commands run; the tree's own file (or symlink) is
        // moved aside and put back afterwards.
        if root.lstat(Path::new(RESOLV))?.is_some() {
            let (dir, name) = root
                .parent(Path::new(RESOLV))
                .map_err(|e| crate::tree::Error::io(root.host_path(RESOLV), e))?;
            rustix::fs::renameat(&dir, &name, &dir, ".resolv.conf.build-distro")
                .map_err(|e| crate::tree::Error::io(root.host_path(RESOLV), e))?;
            s.resolv_backup = Some(PathBuf::from(RESOLV_BACKUP));
        }
        let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        root.write_file(Path::new(RESOLV), &host_resolv, 0o644)?;
        Ok(s)
    }

    /// `chroot ROOT argv…` with a clean, predictable environment.
    pub fn command(&self, argv: &[&str]) -> Cmd {
        Cmd {
            program: "chroot".into(),
            args: std::iter::once(self.root.path().as_os_str().to_os_string())
                .chain(argv.iter().map(Into::into))
                .collect(),
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("HOME".into(), "/root".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ],
            clear_env: true,
            cwd: None,
            passthrough: true,
        }
    }
}

impl Drop for ChrootSession<'_> {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
        let _ = self.root.remove(Path::new(RESOLV));
        if self.resolv_backup.take().is_some() {
            if let Ok((dir, _)) = self.root.parent(Path::new(RESOLV)) {
                let _ =
                    rustix::fs::renameat(&dir, ".resolv.conf.build-distro", &dir, "resolv.conf");
            }
        }
    }
}

/// The tree's own package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Apk,
    Dnf,
}

impl PackageManager {
    pub fn detect(root: &Root) -> Option<Self> {
        let has = |p: &str| root.lstat(Path::new(p)).ok().flatten().is_some();
        if has("usr/bin/apt-get") {
            Some(PackageManager::Apt)
        } else if has("sbin/apk") {
            Some(PackageManager::Apk)
        } else if has("usr/bin/dnf") {
            Some(PackageManager::Dnf)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt",
            PackageManager::Apk => "apk",
            PackageManager::Dnf => "dnf",
        }
    }

    /// Argument vectors that upgrade every installed package from the tree's sources;
    /// `None` for a manager build-distro does not upgrade.
    pub fn upgrade_commands(self) -> Option<Vec<Vec<String>>> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            // dist-upgrade: a security fix may need a new dependency. A changed conffile
            // keeps the tree's version (nobody is there to answer dpkg's question).
            // No translations (nothing reads them); dpkg skips its fsyncs, as the tree
            // is scratch until it is packed (and a crash leaves nothing anyone uses).
            PackageManager::Apt => Some(vec![
                v(&["apt-get", "-o", "Acquire::Languages=none", "update"]),
                v(&[
                    "apt-get",
                    "-y",
                    "-o",
                    "Dpkg::Options::=--force-confdef",
                    "-o",
                    "Dpkg::Options::=--force-confold",
                    "-o",
                    "Dpkg::Options::=--force-unsafe-io",
                    "dist-upgrade",
                ]),
            ]),
            PackageManager::Apk => Some(vec![v(&["apk", "upgrade", "--no-cache"])]),
            PackageManager::Dnf => None,
        }
    }

    /// Argument vectors that install then remove the given packages.
    pub fn commands(self, install: &[&str], remove: &[&str]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let with = |base: &[&str], pkgs: &[&str]| -> Vec<String> {
            base.iter().chain(pkgs).map(|s| s.to_string()).collect()
        };
        match self {
            PackageManager::Apt => {
                if !install.is_empty() {
                    out.push(with(&["apt-get", "update"], &[]));
                    out.push(with(
                        &["apt-get", "install", "-y", "--no-install-recommends", "--"],
                        install,
                    ));
                }
                if !remove.is_empty() {
                    out.push(with(
                        &["apt-get", "purge", "-y", "--auto-remove", "--"],
                        remove,
                    ));
                }
            }
            PackageManager::Apk => {
                if !install.is_empty() {
                    out.push(with(&["apk", "add", "--no-cache", "--"], install));
                }
                if !remove.is_empty() {
                    out.push(with(&["apk", "del", "--"], remove));
                }
            }
            PackageManager::Dnf => {
                if !install.is_empty() {
                    out.push(with(
                        &[
                            "dnf",
                            "install",
                            "-y",
                            "--setopt=install_weak_deps=False",
                            "--",
                        ],
                        install,
                    ));
                }
                if !remove.is_empty() {
                    out.push(with(&["dnf", "remove", "-y", "--"], remove));
                }
            }
        }
        out
    }
}

/// Where `[packages] upgrade` adds the security suite to a tree whose sources lack it.
pub const SECURITY_LIST: &str = "etc/apt/sources.list.d/build-distro-security.list";

/// Whether any of the tree's apt sources (`sources.list`, `sources.list.d/*.list` and
/// `*.sources`) names a security suite.
fn tree_names_security_suite(root: &Root) -> Result<bool> {
    let mut files = vec![PathBuf::from("etc/apt/sources.list")];
    let dir = Path::new("etc/apt/sources.list.d");
    if root.file_type(dir)? == Some(FileType::Directory) {
        for n in root.read_dir(dir)? {
            let n = Path::new(&n);
            if n.extension().is_some_and(|e| e == "list" || e == "sources") {
                files.push(dir.join(n));
            }
        }
    }
    for f in files {
        if root.file_type(&f)?.is_none() {
            continue;
        }
        if crate::apt_sources::names_security_suite(&String::from_utf8_lossy(&root.read(&f)?)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Before an apt upgrade: a Debian or Ubuntu tree whose sources name no security suite
/// (an image built without one) gets [`SECURITY_LIST`] for its release, so the upgrade
/// finds the fixes and so does a later `apt-get upgrade` in the container.
fn add_missing_security_suite(root: &Root, reporter: &Reporter) -> Result<()> {
    if tree_names_security_suite(root)? {
        return Ok(());
    }
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| root.read(Path::new(p)).ok())
        .unwrap_or_default();
    if let Some(line) =
        crate::apt_sources::missing_security_line(&String::from_utf8_lossy(&os_release))
    {
        reporter.info(&format!("adding /{SECURITY_LIST}: {line}"));
        root.create_dir_all(Path::new("etc/apt/sources.list.d"), 0o755)?;
        root.write_file(
            Path::new(SECURITY_LIST),
            crate::apt_sources::sources_list(std::slice::from_ref(&line)).as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// A chroot of the tree for a bootstrap's second step ([`apt_upgrade`], [`apt_cleanup`]),
/// where package scripts start no service.
pub fn enter_for_upgrade(root: &Root) -> Result<ChrootSession<'_>> {
    let session = ChrootSession::enter(root)?;
    root.write_file(Path::new("usr/sbin/policy-rc.d"), POLICY_RC_D, 0o755)?;
    Ok(session)
}

/// A bootstrap's second step: `apt-get update` and `dist-upgrade` under
/// `SOURCE_DATE_EPOCH` `epoch`, from the sources in `list` (a file in the tree, named
/// as the chroot sees it) alone, or from every source the tree names when `None` (no
/// security suite added: the recipe chose them). Lists stay uncompressed, so the
/// caller can read them before [`apt_cleanup`]. With `archives` (a host directory of
/// this build's own, the build cache's packages), apt takes its packages from there and
/// downloads the others into it, for the caller to keep; the tree's own archive is
/// left as it was.
pub fn apt_upgrade(
    session: &ChrootSession,
    list: Option<&str>,
    archives: Option<&Path>,
    epoch: Option<u64>,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<()> {
    let _bound = match archives {
        Some(dir) => {
            std::fs::create_dir_all(dir.join("partial"))
                .map_err(|e| crate::tree::Error::io(dir, e))?;
            Some(mount_in(
                session.root,
                "var/cache/apt/archives",
                &dir.to_string_lossy(),
                None,
                MountFlags::BIND,
                None,
            )?)
        }
        None => None,
    };
    let mut commands = PackageManager::Apt
        .upgrade_commands()
        .expect("apt upgrades");
    for argv in &mut commands {
        let mut opts = vec!["-o".to_string(), "Acquire::GzipIndexes=false".to_string()];
        if let Some(list) = list {
            opts.extend(only_sources(list));
        }
        argv.splice(1..1, opts);
    }
    run_package_commands(session, &commands, epoch, runner, reporter)
}

/// After [`apt_upgrade`]: an update with no sources removes every list, then the
/// downloaded packages go, the way mmdebstrap's own cleanup empties them, so the tree
/// holds what a one-step bootstrap of the same suites leaves.
pub fn apt_cleanup(
    session: &ChrootSession,
    epoch: Option<u64>,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<()> {
    let update = ["apt-get".to_string()]
        .into_iter()
        .chain(only_sources("/dev/null"))
        .chain(["update".to_string()])
        .collect();
    let clean = vec!["apt-get".to_string(), "clean".to_string()];
    run_package_commands(session, &[update, clean], epoch, runner, reporter)
}

/// What dpkg in `session` has installed (its files on disk, no error flag): the
/// version of each (package, architecture), as `dpkg-query` reports it.
pub fn dpkg_installed(
    session: &ChrootSession,
    runner: &dyn Runner,
) -> Result<HashMap<(String, String), String>> {
    let cmd = session
        .command(&[
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}\\t${Package}\\t${Architecture}\\t${Version}\\n",
        ])
        .passthrough(false);
    let out = runner.run(&cmd).map_err(Error::Packages)?;
    Ok(parse_installed(&String::from_utf8_lossy(&out.stdout)))
}

/// [`dpkg_installed`]'s lines: `ii ` (wanted, installed, no error flag) or `hi ` (held)
/// count; removed packages that left their configuration (`rc `) and half-installed
/// ones do not.
fn parse_installed(text: &str) -> HashMap<(String, String), String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, arch, version) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let installed = status.len() == 3 && status[1..] == *"i ";
            installed.then(|| ((name.to_string(), arch.to_string()), version.to_string()))
        })
        .collect()
}

/// apt's options that make it read the sources in `list` and nothing else.
fn only_sources(list: &str) -> [String; 4] {
    [
        "-o".into(),
        format!("Dir::Etc::SourceList={list}"),
        "-o".into(),
        "Dir::Etc::SourceParts=/dev/null".into(),
    ]
}

/// Upgrade every installed package in `session` (`[packages] upgrade`; apt also gets the
/// security suite when the sources lack it).
pub(crate) fn upgrade_in(
    session: &ChrootSession,
    pm: PackageManager,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<()> {
    let commands = pm
        .upgrade_commands()
        .ok_or_else(|| Error::UpgradeUnsupported {
            root: session.root.path().display().to_string(),
            manager: pm.name(),
        })?;
    if pm == PackageManager::Apt {
        add_missing_security_suite(session.root, reporter)?;
    }
    run_package_commands(session, &commands, None, runner, reporter)
}

/// Run `commands` in `session`, one after the other, under `SOURCE_DATE_EPOCH` `epoch`
/// when given (what maintainer scripts then record).
pub(crate) fn run_package_commands(
    session: &ChrootSession,
    commands: &[Vec<String>],
    epoch: Option<u64>,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<()> {
    for argv in commands {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = session.command(&argv);
        if let Some(t) = epoch {
            cmd = cmd.env("SOURCE_DATE_EPOCH", &t.to_string());
        }
        reporter.debug(&format!("running {}", cmd.display()));
        runner.run(&cmd).map_err(Error::Packages)?;
        crate::interrupt::check_interrupted().map_err(|_| Error::Packages(interrupted()))?;
    }
    Ok(())
}

pub(crate) fn interrupted() -> crate::runner::Error {
    crate::runner::Error::Failed {
        command: "(interrupted)".into(),
        status: "Ctrl-C".into(),
        tail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_commands_end_options_before_packages() {
        let c = PackageManager::Apt.commands(&["curl"], &["nano"]);
        assert_eq!(
            c[1],
            [
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "--",
                "curl"
            ]
        );
        assert_eq!(
            c[2],
            ["apt-get", "purge", "-y", "--auto-remove", "--", "nano"]
        );
    }

    #[test]
    fn installed_means_on_disk_without_an_error() {
        let out = "ii \tlibssl3\tamd64\t3.0.17-1~deb12u3\n\
                   hi \ttzdata\tall\t2025b-0+deb12u1\n\
                   rc \told\tamd64\t1.0\n\
                   iF \thalf\tamd64\t2.0\n\
                   iiR\tbroken\tamd64\t3.0\n\
                   garbage\n";
        let got = parse_installed(out);
        let key = |n: &str, a: &str| (n.to_string(), a.to_string());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[&key("libssl3", "amd64")], "3.0.17-1~deb12u3");
        assert_eq!(got[&key("tzdata", "all")], "2025b-0+deb12u1");
    }

    #[test]
    fn upgrade_commands_per_manager() {
        let apt = PackageManager::Apt.upgrade_commands().unwrap();
        assert_eq!(
            apt[0],
            ["apt-get", "-o", "Acquire::Languages=none", "update"]
        );
        assert_eq!(
            apt[1].join(" "),
            "apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io dist-upgrade"
        );
        assert_eq!(
            PackageManager::Apk.upgrade_commands().unwrap(),
            [["apk", "upgrade", "--no-cache"]]
        );
        assert_eq!(PackageManager::Dnf.upgrade_commands(), None);
    }

    fn debian_tree(sources: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            t.path().join("etc/os-release"),
            "ID=debian\nVERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        for (rel, text) in sources {
            std::fs::write(t.path().join(rel), text).unwrap();
        }
        t
    }

    #[test]
    fn upgrade_adds_the_security_suite_only_when_missing() {
        let t = debian_tree(&[(
            "etc/apt/sources.list",
            "deb http://deb.debian.org/debian bookworm main\n",
        )]);
        let root = Root::open(t.path()).unwrap();
        add_missing_security_suite(&root, &Reporter::silent()).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join(SECURITY_LIST)).unwrap(),
            "# written by build-distro: the release, its updates and its security fixes\n\
             deb http://deb.debian.org/debian-security bookworm-security main\n"
        );
        // A deb822 file (the Docker images' layout) that names it already: nothing added.
        let t = debian_tree(&[(
            "etc/apt/sources.list.d/debian.sources",
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\n\
             Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
        )]);
        let root = Root::open(t.path()).unwrap();
        add_missing_security_suite(&root, &Reporter::silent()).unwrap();
        assert!(!t.path().join(SECURITY_LIST).exists());
    }
}
