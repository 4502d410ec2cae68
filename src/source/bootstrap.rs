//! `debootstrap` and `mmdebstrap` backends: the same recipe keys, two argument styles.
//! Before a run, every `InRelease` the bootstrap will read is fetched and verified
//! ([`fetch_releases`]): the build cache keys on their SHA-256, the provenance records
//! them, and the newest `Date:` is the build's default `SOURCE_DATE_EPOCH`.
//! Both install from the release and its `-updates` and `-security` suites
//! ([`crate::apt_sources`]), and leave those in the tree's `sources.list`.
//!
//! A tree with apt is made in two steps ([`upgrades_after`]): [`bootstrap`] from the
//! release's own suite alone, then [`upgrade`] from the full list in a chroot. The first
//! step's inputs change only at a point release, so the build cache keeps its tree on
//! its own and a security rebuild (a new `-security` `InRelease`) runs only the second.
//! Every build takes both steps, cached or not, so the same mirror state gives the same
//! tree either way. (debootstrap takes one mirror anyway; mmdebstrap gets one line.)
//! A tree without apt (mmdebstrap's `extract`, `custom`, `essential`) is made in one
//! step from every suite.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Error, ReleaseRef, SourceCtx, SourceInfo};
use crate::apt_sources;
use crate::mirror::client::{Client, Keyring};
use crate::recipe::Bootstrap;
use crate::runner::Cmd;
use crate::tree::Root;

/// Keyrings apt (and so mmdebstrap) trusts on the host, and debootstrap's default.
const HOST_KEYRING_DIR: &str = "/etc/apt/trusted.gpg.d";
const HOST_KEYRINGS: &[&str] = &[
    "/etc/apt/trusted.gpg",
    "/usr/share/keyrings/debian-archive-keyring.gpg",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Debootstrap,
    Mmdebstrap,
}

impl Tool {
    pub fn program(self) -> &'static str {
        match self {
            Tool::Debootstrap => "debootstrap",
            Tool::Mmdebstrap => "mmdebstrap",
        }
    }
}

/// One suite a bootstrap reads: the mirror's base URL and the suite name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    pub mirror: String,
    pub suite: String,
}

/// Every suite a bootstrap of `b` reads. The one list the cache key, the provenance and
/// the command line agree on.
pub fn suites(b: &Bootstrap) -> Vec<Suite> {
    apt_sources::bootstrap_lines(b)
        .into_iter()
        .map(|l| Suite {
            mirror: l.uri,
            suite: l.suite,
        })
        .collect()
}

/// The keyrings that verify `b`'s mirror: the recipe's `keyring`, else the host's apt
/// keys (what mmdebstrap and debootstrap trust by default).
pub fn keyrings(b: &Bootstrap) -> Result<Vec<Keyring>, Error> {
    let mut paths: Vec<PathBuf> = Vec::new();
    match &b.keyring {
        Some(k) => paths.push(k.clone()),
        None => {
            if let Ok(rd) = std::fs::read_dir(HOST_KEYRING_DIR) {
                let mut found: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        matches!(p.extension().and_then(|e| e.to_str()), Some("gpg" | "asc"))
                    })
                    .collect();
                found.sort();
                paths.extend(found);
            }
            paths.extend(
                HOST_KEYRINGS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|p| p.exists()),
            );
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        let bytes = std::fs::read(&p).map_err(|e| Error::Input {
            path: name.clone(),
            msg: format!("cannot read the keyring: {e}; fix [source] keyring"),
        })?;
        out.push(Keyring {
            bytes: crate::mirror::keyring::binary(&name, &bytes)?,
            name,
        });
    }
    Ok(out)
}

/// Fetch and verify (gpgv) the `InRelease` of every suite in [`suites`].
pub fn fetch_releases(b: &Bootstrap, ctx: &SourceCtx) -> Result<Vec<ReleaseRef>, Error> {
    let rings = keyrings(b)?;
    // No index cache: only the small release files are fetched here.
    let client = Client::new(None, Arc::new(crate::runner::System));
    let suites = suites(b);
    // The suites' release files are fetched and verified side by side; an error is
    // reported for the first suite that has one.
    let fetched: Vec<_> = std::thread::scope(|scope| {
        let jobs: Vec<_> = suites
            .iter()
            .map(|s| scope.spawn(|| client.release_signed(&s.mirror, &s.suite, &rings)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("a release fetch panicked"))
            .collect()
    });
    let mut out = Vec::new();
    for (s, got) in suites.iter().zip(fetched) {
        let (rel, bytes) = got?;
        let url = crate::mirror::client::dists_url(&s.mirror, &s.suite, "InRelease");
        ctx.reporter.debug(&format!(
            "{url}: {}",
            rel.date.as_deref().unwrap_or("no Date")
        ));
        out.push(ReleaseRef {
            url,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            date: rel
                .date
                .as_deref()
                .and_then(crate::mirror::inrelease::parse_date),
        });
    }
    Ok(out)
}

/// Whether a bootstrap of `b` by `tool` is made in two steps: more than one suite, and a
/// variant that installs apt (every debootstrap variant does; mmdebstrap's `extract`,
/// `custom` and `essential` do not).
pub fn upgrades_after(tool: Tool, b: &Bootstrap) -> bool {
    let has_apt = tool == Tool::Debootstrap
        || !matches!(
            b.variant.as_deref(),
            Some("extract" | "custom" | "essential")
        );
    has_apt && apt_sources::bootstrap_lines(b).len() > 1
}

/// The `SOURCE_DATE_EPOCH` of each step: the user's, else the newest `Date:` of the
/// releases that step reads. The first step reads only the release's own `InRelease`,
/// so a new `-security` one leaves its epoch (and its cache key) as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    pub bootstrap: Option<u64>,
    pub upgrade: Option<u64>,
}

impl Epochs {
    pub fn of(epoch: crate::build_inputs::Epoch, releases: &[ReleaseRef]) -> Epochs {
        Epochs {
            bootstrap: epoch.resolve(super::newest_release(&releases[..releases.len().min(1)])),
            upgrade: epoch.resolve(super::newest_release(releases)),
        }
    }
}

/// How one run differs from the plain command: the build cache's package directory and
/// the time the result claims.
#[derive(Debug, Clone, Default)]
pub struct RunOpts<'a> {
    /// A directory of `.deb` files to start from, and where the run leaves every package
    /// it used (and none in the tree). debootstrap reads and writes one directory, so
    /// `debs_out` is ignored for it.
    pub debs: Option<&'a Path>,
    pub debs_out: Option<&'a Path>,
    /// `SOURCE_DATE_EPOCH` for the tool and what it runs.
    pub source_date_epoch: Option<u64>,
    /// `[slim]`: a host file holding the dpkg rules ([`crate::slim::dpkg_text`]), which
    /// mmdebstrap puts in the tree before it unpacks anything. debootstrap takes no dpkg
    /// options: its tree is slimmed after the run.
    pub slim_rules: Option<&'a Path>,
    /// mmdebstrap's hook directory that runs dpkg under eatmydata (no fsync), when the
    /// host has it ([`EATMYDATA_HOOKS`]).
    pub eatmydata: Option<&'a Path>,
    /// The first of two steps ([`upgrades_after`]): mmdebstrap reads the release's own
    /// suite alone.
    pub release_only: bool,
}

/// mmdebstrap's own hooks that wrap the tree's dpkg in eatmydata for the run (fsync
/// becomes a no-op) and take the wrapper out again at the end. Safe here: the tree is a
/// scratch directory that is stored and packed (and checksummed) only after the run
/// succeeded, so a crash that loses unsynced writes leaves nothing anyone uses.
pub const EATMYDATA_HOOKS: &str = "/usr/share/mmdebstrap/hooks/eatmydata";

/// The eatmydata hooks, when they apply to `b`: the hook fetches `eatmydata` and
/// `libeatmydata1` from the recipe's mirror and wraps the tree's dpkg, so it needs a
/// Debian archive (every Debian release has both in main) and a variant that installs
/// dpkg (not `extract` or `custom`, which may hold neither).
fn eatmydata_hooks(b: &Bootstrap) -> Option<&'static Path> {
    let dir = Path::new(EATMYDATA_HOOKS);
    let installs_dpkg = !matches!(b.variant.as_deref(), Some("extract" | "custom"));
    (installs_dpkg
        && apt_sources::distribution(b) == crate::recipe::Distribution::Debian
        && dir.is_dir())
    .then_some(dir)
}

/// The argument vector for `tool` (validated recipe values only, never a shell string).
pub fn command(tool: Tool, b: &Bootstrap, target: &Path, opts: &RunOpts) -> Cmd {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(v) = &b.variant {
        args.push(format!("--variant={v}").into());
    }
    if let Some(a) = &b.arch {
        args.push(format!("--arch={a}").into());
    }
    if !b.components.is_empty() {
        let c: Vec<&str> = b.components.iter().map(|c| &**c).collect();
        args.push(format!("--components={}", c.join(",")).into());
    }
    if !b.packages.is_empty() {
        let p: Vec<&str> = b.packages.iter().map(|p| &**p).collect();
        args.push(format!("--include={}", p.join(",")).into());
    }
    if let Some(k) = &b.keyring {
        let mut a = OsString::from("--keyring=");
        a.push(k);
        args.push(a);
    }
    if let Some(d) = opts.debs {
        match tool {
            Tool::Debootstrap => {
                let mut a = OsString::from("--cache-dir=");
                a.push(d);
                args.push(a);
            }
            Tool::Mmdebstrap => {
                // The documented way to reuse downloads: keep the essential set's .debs,
                // copy the directory in before apt runs and everything back out at the
                // end; mmdebstrap's cleanup then empties the tree's apt cache.
                let out = opts.debs_out.unwrap_or(d).display();
                let d = d.display();
                args.push("--skip=essential/unlink".into());
                args.push("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/partial".into());
                args.push(format!("--setup-hook=sync-in {d} /var/cache/apt/archives/").into());
                args.push(
                    format!("--customize-hook=sync-out /var/cache/apt/archives {out}").into(),
                );
            }
        }
    }
    if tool == Tool::Mmdebstrap {
        if let Some(rules) = opts.slim_rules {
            // Not `--dpkgopt`: with path filters there, mmdebstrap pipes every essential
            // package through its tarfilter as it extracts them (a third of a security
            // rebuild's run); dpkg, which installs them right after, reads the file
            // anyway, and what the plain extraction left is removed after the run.
            args.push("--setup-hook=mkdir -p \"$1\"/etc/dpkg/dpkg.cfg.d".into());
            args.push(
                format!(
                    "--setup-hook=upload {} /{}",
                    rules.display(),
                    crate::slim::RULE_FILE
                )
                .into(),
            );
        }
        if let Some(dir) = opts.eatmydata {
            let mut a = OsString::from("--hook-directory=");
            a.push(dir);
            args.push(a);
        }
    }
    let mut cmd = Cmd::new(tool.program());
    if tool == Tool::Mmdebstrap {
        // Root mode: real chroot, real device nodes; we are root anyway (checked before).
        args.push("--mode=root".into());
    }
    // mmdebstrap's reproducible mode; for both, the time the maintainer scripts they run
    // record (shadow's last password change, for one).
    if let Some(t) = opts.source_date_epoch {
        cmd = cmd.env("SOURCE_DATE_EPOCH", &t.to_string());
    }
    args.push(b.suite.to_string().into());
    args.push(target.as_os_str().to_os_string());
    match tool {
        // Each full `deb …` line becomes a line of the tree's sources.list as given.
        Tool::Mmdebstrap => args.extend(
            apt_sources::bootstrap_lines(b)
                .iter()
                .take(if opts.release_only { 1 } else { usize::MAX })
                .map(|l| l.to_string().into()),
        ),
        Tool::Debootstrap => args.push(apt_sources::mirror(b).into()),
    }
    cmd.args(args).passthrough(true)
}

/// What `tool --version` says (`mmdebstrap 1.3.5`): another version may make another tree
/// from the same recipe and mirror, so the build cache's key names it.
pub fn tool_version(tool: Tool, ctx: &SourceCtx) -> Result<String, Error> {
    let out = ctx.runner.run(&Cmd::new(tool.program()).arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Both steps into `target` from the `releases` fetched by [`fetch_releases`] (or the one
/// step, when [`upgrades_after`] says so): what a build without the cache runs. The
/// epochs are in the cache keys, so the caller decides them, never this function.
pub fn run(
    tool: Tool,
    b: &Bootstrap,
    target: &Path,
    ctx: &SourceCtx,
    releases: &[ReleaseRef],
    debs: Option<(&Path, &Path)>,
    epochs: Epochs,
) -> Result<SourceInfo, Error> {
    if !upgrades_after(tool, b) {
        return bootstrap(tool, b, target, ctx, releases, debs, epochs.upgrade);
    }
    bootstrap(tool, b, target, ctx, &releases[..1], debs, epochs.bootstrap)?;
    upgrade(b, target, ctx, epochs.upgrade, None)?;
    Ok(info(tool, b, releases))
}

/// Bootstrap into `target` under `epoch`: from every suite of `releases` when that is one
/// suite or [`upgrades_after`] is false, else (the first step) from the release's own
/// suite alone. The result names the `releases` it was made from.
pub fn bootstrap(
    tool: Tool,
    b: &Bootstrap,
    target: &Path,
    ctx: &SourceCtx,
    releases: &[ReleaseRef],
    debs: Option<(&Path, &Path)>,
    epoch: Option<u64>,
) -> Result<SourceInfo, Error> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NeedsRoot {
            tool: tool.program().into(),
        });
    }
    let release_only = upgrades_after(tool, b);
    let rules = target.with_file_name("slim-rules");
    if let (Some(slim), Tool::Mmdebstrap) = (ctx.slim, tool) {
        std::fs::write(&rules, crate::slim::dpkg_text(slim))
            .map_err(|e| crate::tree::Error::io(&rules, e))?;
    }
    let opts = RunOpts {
        debs: debs.map(|d| d.0),
        debs_out: debs.map(|d| d.1),
        source_date_epoch: epoch,
        slim_rules: (ctx.slim.is_some() && tool == Tool::Mmdebstrap).then_some(rules.as_path()),
        eatmydata: (tool == Tool::Mmdebstrap)
            .then(|| eatmydata_hooks(b))
            .flatten(),
        release_only,
    };
    let cmd = command(tool, b, target, &opts);
    ctx.reporter.debug(&format!("running {}", cmd.display()));
    ctx.runner.run(&cmd)?;
    if let Some(slim) = ctx.slim {
        // What mmdebstrap extracted before dpkg ran, what maintainer scripts wrote, and
        // all of a debootstrap tree (before its upgrade, which then follows the rules).
        let done = crate::slim::apply(&Root::open(target)?, slim)?;
        ctx.reporter.debug(&format!(
            "slim: {} entries ({} bytes) removed after the bootstrap",
            done.removed, done.bytes
        ));
    }
    Ok(info(tool, b, releases))
}

/// The second step, in `target` (a tree [`bootstrap`] made from the release alone, or
/// an overlay on one): the tree's `sources.list` names every suite, and the tree is
/// upgraded in a chroot under `epoch`. apt first reads the later suites alone
/// (`LATER_LIST`): the first step installed the release's newest versions, so only
/// those suites can hold newer ones, and apt then skips parsing and resolving against
/// the release's 60 MB package list (most of this step's time). Should that leave an
/// installed package behind a newer version in them (`kept_back`: a fix that needs a
/// package only the release has), the upgrade runs again from every suite. `archives`:
/// see [`crate::chroot::apt_upgrade`].
pub fn upgrade(
    b: &Bootstrap,
    target: &Path,
    ctx: &SourceCtx,
    epoch: Option<u64>,
    archives: Option<&Path>,
) -> Result<(), Error> {
    let lines = apt_sources::bootstrap_lines(b);
    let root = Root::open(target)?;
    root.write_file(
        Path::new("etc/apt/sources.list"),
        apt_sources::sources_list(&lines).as_bytes(),
        0o644,
    )?;
    let later = Path::new(LATER_LIST.trim_start_matches('/'));
    root.write_file(
        later,
        apt_sources::sources_list(&lines[1..]).as_bytes(),
        0o644,
    )?;
    let upgraded = upgrade_in(&root, &lines, ctx, epoch, archives);
    let removed = root.remove(later);
    upgraded?;
    Ok(removed?)
}

/// Where [`upgrade`] lists the suites after the release, while it runs.
const LATER_LIST: &str = "/etc/apt/build-distro-later.list";

fn upgrade_in(
    root: &Root,
    lines: &[apt_sources::Line],
    ctx: &SourceCtx,
    epoch: Option<u64>,
    archives: Option<&Path>,
) -> Result<(), Error> {
    use crate::chroot;
    let fail = |source| Error::Upgrade {
        suites: suite_list(lines),
        source: Box::new(source),
    };
    let (runner, reporter) = (ctx.runner, ctx.reporter);
    let session = chroot::enter_for_upgrade(root).map_err(fail)?;
    chroot::apt_upgrade(
        &session,
        Some(LATER_LIST),
        archives,
        epoch,
        runner,
        reporter,
    )
    .map_err(fail)?;
    let installed = |session| chroot::dpkg_installed(session, runner).map_err(fail);
    let now = installed(&session)?;
    let count = now.len();
    let behind = kept_back(root, now)?;
    reporter.debug(&format!(
        "source: {count} installed packages, {} older than the lists of {}",
        behind.len(),
        suite_list(&lines[1..])
    ));
    if !behind.is_empty() {
        reporter.info(&format!(
            "source: {} kept back by the upgrade from {}; upgrading from every suite",
            behind.join(", "),
            suite_list(&lines[1..])
        ));
        chroot::apt_upgrade(&session, None, archives, epoch, runner, reporter).map_err(fail)?;
        let still = kept_back(root, installed(&session)?)?;
        if !still.is_empty() {
            reporter.warn(&format!(
                "source: {} kept back by apt even from every suite; the distro lacks their newest versions (outdated lists them)",
                still.join(", ")
            ));
        }
    }
    chroot::apt_cleanup(&session, epoch, runner, reporter).map_err(fail)
}

/// The `installed` packages (`name version`, of [`crate::chroot::dpkg_installed`]) of
/// which apt's lists in `root` hold a newer version: what the last upgrade left behind.
fn kept_back(
    root: &Root,
    mut installed: std::collections::HashMap<(String, String), String>,
) -> Result<Vec<String>, Error> {
    use crate::mirror::version::{compare, Ecosystem};
    let lists = Path::new("var/lib/apt/lists");
    let mut behind = Vec::new();
    let mut names = root.read_dir(lists)?;
    names.sort();
    for name in names {
        if !name.to_string_lossy().ends_with("_Packages") {
            continue;
        }
        let bytes = root.read(&lists.join(&name))?;
        for e in crate::mirror::packages::entries(&bytes[..]) {
            let e = e?;
            let key = (e.package, e.architecture);
            let newer = installed
                .get(&key)
                .is_some_and(|v| compare(Ecosystem::Deb, &e.version, v).is_gt());
            if newer {
                let v = installed.remove(&key).unwrap_or_default();
                behind.push(format!("{} {v}", key.0));
            }
        }
    }
    behind.sort();
    Ok(behind)
}

/// What a tree made from `releases` records of its source.
pub fn info(tool: Tool, b: &Bootstrap, releases: &[ReleaseRef]) -> SourceInfo {
    let lines = apt_sources::bootstrap_lines(b);
    let mut info = SourceInfo {
        kind: tool.program().into(),
        reference: format!(
            "{} {} {}",
            suite_list(&lines),
            b.variant.as_deref().unwrap_or("default"),
            apt_sources::mirror(b)
        ),
        releases: releases.to_vec(),
        ..Default::default()
    };
    info.created = info.newest_release();
    info
}

/// `bookworm,bookworm-updates,bookworm-security`: the suites, for the provenance.
fn suite_list(lines: &[apt_sources::Line]) -> String {
    let s: Vec<&str> = lines.iter().map(|l| l.suite.as_str()).collect();
    s.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse_str, SourceSpec};

    fn spec(extra: &str) -> Bootstrap {
        let r = parse_str(
            &format!("[distro]\nname = \"x\"\n[source]\ntype = \"mmdebstrap\"\nsuite = \"bookworm\"\n{extra}"),
            "t.toml",
        )
        .unwrap();
        match r.source.unwrap() {
            SourceSpec::Mmdebstrap(b) => b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn mmdebstrap_arguments() {
        let b = spec("variant = \"minbase\"\ncomponents = [\"main\", \"contrib\"]\npackages = [\"net-tools\", \"uwsgi-core\"]\n");
        let c = command(
            Tool::Mmdebstrap,
            &b,
            Path::new("/t/root"),
            &RunOpts::default(),
        );
        assert_eq!(
            c.display(),
            "mmdebstrap --variant=minbase --components=main,contrib --include=net-tools,uwsgi-core --mode=root bookworm /t/root \
             'deb http://deb.debian.org/debian bookworm main contrib' \
             'deb http://deb.debian.org/debian bookworm-updates main contrib' \
             'deb http://deb.debian.org/debian-security bookworm-security main contrib'"
        );
    }

    #[test]
    fn debootstrap_arguments_with_mirror() {
        let b = spec("mirror = \"http://mirror.example/debian\"\narch = \"amd64\"\n");
        let c = command(
            Tool::Debootstrap,
            &b,
            Path::new("/t/root"),
            &RunOpts::default(),
        );
        assert_eq!(
            c.display(),
            "debootstrap --arch=amd64 bookworm /t/root http://mirror.example/debian"
        );
    }

    #[test]
    fn every_suite_read_is_listed_once() {
        let s = suites(&spec(""));
        let names: Vec<(&str, &str)> = s.iter().map(|s| (&*s.mirror, &*s.suite)).collect();
        assert_eq!(
            names,
            [
                ("http://deb.debian.org/debian", "bookworm"),
                ("http://deb.debian.org/debian", "bookworm-updates"),
                ("http://deb.debian.org/debian-security", "bookworm-security"),
            ]
        );
        let one = suites(&spec("updates = false\nsecurity = false\n"));
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn package_cache_and_date_reach_the_tools() {
        let b = spec("updates = false\nsecurity = false\nkeyring = \"/k/repo.gpg\"\n");
        let opts = RunOpts {
            debs: Some(Path::new("/c/in")),
            debs_out: Some(Path::new("/c/out")),
            source_date_epoch: Some(1700000000),
            ..Default::default()
        };
        let c = command(Tool::Mmdebstrap, &b, Path::new("/t/root"), &opts);
        assert_eq!(
            c.display(),
            "mmdebstrap --keyring=/k/repo.gpg --skip=essential/unlink \
             '--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/partial' \
             '--setup-hook=sync-in /c/in /var/cache/apt/archives/' \
             '--customize-hook=sync-out /var/cache/apt/archives /c/out' \
             --mode=root bookworm /t/root 'deb http://deb.debian.org/debian bookworm main'"
        );
        assert_eq!(
            c.env,
            [("SOURCE_DATE_EPOCH".to_string(), "1700000000".to_string())]
        );
        let c = command(Tool::Debootstrap, &b, Path::new("/t/root"), &opts);
        assert_eq!(
            c.display(),
            "debootstrap --keyring=/k/repo.gpg --cache-dir=/c/in bookworm /t/root http://deb.debian.org/debian"
        );
    }

    #[test]
    fn slim_rules_and_eatmydata_reach_mmdebstrap_only() {
        let b = spec("updates = false\nsecurity = false\n");
        let opts = RunOpts {
            slim_rules: Some(Path::new("/b/slim-rules")),
            eatmydata: Some(Path::new(EATMYDATA_HOOKS)),
            ..Default::default()
        };
        let c = command(Tool::Mmdebstrap, &b, Path::new("/t"), &opts);
        assert_eq!(
            c.display(),
            "mmdebstrap '--setup-hook=mkdir -p \"$1\"/etc/dpkg/dpkg.cfg.d' \
             '--setup-hook=upload /b/slim-rules /etc/dpkg/dpkg.cfg.d/build-distro-slim' \
             --hook-directory=/usr/share/mmdebstrap/hooks/eatmydata \
             --mode=root bookworm /t 'deb http://deb.debian.org/debian bookworm main'"
        );
        // debootstrap takes neither: its tree is slimmed after the run.
        let c = command(Tool::Debootstrap, &b, Path::new("/t"), &opts);
        assert_eq!(
            c.display(),
            "debootstrap bookworm /t http://deb.debian.org/debian"
        );
        // No eatmydata where the hook cannot fetch it or the variant has no dpkg.
        assert!(eatmydata_hooks(&spec("variant = \"extract\"\n")).is_none());
        assert!(eatmydata_hooks(&spec("distribution = \"ubuntu\"\n")).is_none());
    }

    #[test]
    fn trees_with_apt_are_made_in_two_steps() {
        let two = |tool, extra: &str| upgrades_after(tool, &spec(extra));
        assert!(two(Tool::Mmdebstrap, "variant = \"minbase\"\n"));
        assert!(two(Tool::Mmdebstrap, ""));
        assert!(two(Tool::Debootstrap, ""));
        // No apt to upgrade with: one step from every suite.
        for v in ["extract", "custom", "essential"] {
            assert!(
                !two(Tool::Mmdebstrap, &format!("variant = \"{v}\"\n")),
                "{v}"
            );
        }
        // One suite: nothing to upgrade from.
        assert!(!two(
            Tool::Mmdebstrap,
            "updates = false\nsecurity = false\n"
        ));

        // The first step reads the release alone.
        let b = spec("variant = \"minbase\"\n");
        let opts = RunOpts {
            release_only: true,
            ..Default::default()
        };
        assert_eq!(
            command(Tool::Mmdebstrap, &b, Path::new("/t"), &opts).display(),
            "mmdebstrap --variant=minbase --mode=root bookworm /t \
             'deb http://deb.debian.org/debian bookworm main'"
        );
    }

    #[test]
    fn the_first_step_runs_under_its_own_release_date() {
        let r = |d| ReleaseRef {
            url: String::new(),
            sha256: String::new(),
            date: Some(d),
        };
        let releases = [r(100), r(300), r(200)];
        let none = crate::build_inputs::Epoch::given(None);
        assert_eq!(
            Epochs::of(none, &releases),
            Epochs {
                bootstrap: Some(100),
                upgrade: Some(300)
            },
            "a new -security InRelease moves only the upgrade's epoch"
        );
        let user = crate::build_inputs::Epoch::given(Some(5));
        assert_eq!(
            Epochs::of(user, &releases),
            Epochs {
                bootstrap: Some(5),
                upgrade: Some(5)
            }
        );
        assert_eq!(
            Epochs::of(none, &[]),
            Epochs {
                bootstrap: None,
                upgrade: None
            }
        );
    }

    /// A tree with apt's lists (`name_Packages` → stanzas).
    fn tree_with_lists(lists: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("var/lib/apt/lists/partial")).unwrap();
        std::fs::create_dir_all(t.path().join("etc/apt")).unwrap();
        for (name, text) in lists {
            std::fs::write(t.path().join("var/lib/apt/lists").join(name), text).unwrap();
        }
        t
    }

    /// What [`crate::chroot::dpkg_installed`] gives for these (name, version, arch).
    fn installed(
        packages: &[(&str, &str, &str)],
    ) -> std::collections::HashMap<(String, String), String> {
        packages
            .iter()
            .map(|(n, v, a)| ((n.to_string(), a.to_string()), v.to_string()))
            .collect()
    }

    fn offered(name: &str, version: &str, arch: &str) -> String {
        format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\n")
    }

    const SECURITY_LIST: &str =
        "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages";

    #[test]
    fn kept_back_names_what_the_lists_hold_newer() {
        let status = installed(&[
            ("libssl3", "3.0.17-1~deb12u2", "amd64"),
            ("tzdata", "2025b-0+deb12u1", "all"),
            ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
            ("libc6", "2.36-9+deb12u10", "amd64"),
        ]);
        let security = [
            offered("libssl3", "3.0.17-1~deb12u3", "amd64"),
            // Another architecture's newer build is not this package's.
            offered("zlib1g", "1:1.2.13.dfsg-2", "i386"),
            // Not newer: the same version, and an older one.
            offered("tzdata", "2025b-0+deb12u1", "all"),
            offered("libc6", "2.36-9+deb12u9", "amd64"),
            // Not installed at all.
            offered("openssh-server", "1:9.2p1-2+deb12u7", "amd64"),
        ]
        .concat();
        let updates = [
            offered("tzdata", "2025c-0+deb12u1", "all"),
            offered("libssl3", "3.0.17-1~deb12u3", "amd64"),
        ]
        .concat();
        let t = tree_with_lists(&[
            (SECURITY_LIST, &security),
            (
                "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages",
                &updates,
            ),
            // Not a package list.
            (
                "deb.debian.org_debian_dists_bookworm-updates_InRelease",
                "Package: tzdata\nVersion: 9\nArchitecture: all\n",
            ),
        ]);
        let root = Root::open(t.path()).unwrap();
        assert_eq!(
            kept_back(&root, status.clone()).unwrap(),
            ["libssl3 3.0.17-1~deb12u2", "tzdata 2025b-0+deb12u1"]
        );
        let t = tree_with_lists(&[]);
        assert!(kept_back(&Root::open(t.path()).unwrap(), status)
            .unwrap()
            .is_empty());
    }

    /// What a command saw: [`LATER_LIST`]'s text, the packages in the tree's apt archive.
    type Seen = (Option<String>, Vec<String>);

    /// Records commands, and what each saw; `dpkg-query` answers `dpkg`.
    #[derive(Default)]
    struct Watching {
        calls: crate::runner::Recording,
        seen: std::sync::Mutex<Vec<Seen>>,
        tree: PathBuf,
        dpkg: String,
    }

    impl crate::runner::Runner for Watching {
        fn run(&self, cmd: &Cmd) -> Result<crate::runner::Output, crate::runner::Error> {
            let later = std::fs::read_to_string(self.tree.join(LATER_LIST.trim_start_matches('/')));
            let debs = std::fs::read_dir(self.tree.join("var/cache/apt/archives"))
                .map(|d| {
                    let mut n: Vec<String> = d
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".deb"))
                        .collect();
                    n.sort();
                    n
                })
                .unwrap_or_default();
            self.seen.lock().unwrap().push((later.ok(), debs));
            let out = self.calls.run(cmd)?;
            if cmd.args.iter().any(|a| a == "dpkg-query") {
                return Ok(crate::runner::Output {
                    stdout: self.dpkg.clone().into_bytes(),
                    ..out
                });
            }
            Ok(out)
        }

        fn run_fed(
            &self,
            cmd: &Cmd,
            feed: crate::runner::Feed<'_>,
        ) -> Result<crate::runner::Output, crate::runner::Error> {
            self.calls.run_fed(cmd, feed)
        }
    }

    /// The commands [`upgrade`] ran in `t` with `archives` and `dpkg` installed (the
    /// chroot's path and `dpkg-query`'s arguments left out), what each saw
    /// ([`Watching`]), and the tree's sources afterwards.
    fn upgrade_commands(
        t: &Path,
        archives: Option<&Path>,
        dpkg: &str,
    ) -> (Vec<String>, Vec<Seen>, String) {
        let runner = Watching {
            tree: t.to_path_buf(),
            dpkg: dpkg.to_string(),
            ..Default::default()
        };
        let reporter = crate::progress::Reporter::silent();
        let ctx = SourceCtx {
            runner: &runner,
            reporter: &reporter,
            max_unpack_bytes: 0,
            in_place: None,
            registry_login: None,
            epoch: crate::build_inputs::Epoch::given(None),
            slim: None,
        };
        upgrade(&spec(""), t, &ctx, Some(7), archives).unwrap();
        assert!(
            !t.join(LATER_LIST.trim_start_matches('/')).exists(),
            "removed after"
        );
        let prefix = format!("chroot {} ", t.display());
        let calls = runner
            .calls
            .calls()
            .iter()
            .map(|c| {
                let shown = c.display().replace(&prefix, "");
                if shown.starts_with("dpkg-query -W") {
                    return "dpkg-query".to_string();
                }
                assert!(c.env.contains(&("SOURCE_DATE_EPOCH".into(), "7".into())));
                shown
            })
            .collect();
        let seen = runner.seen.lock().unwrap().clone();
        let sources = std::fs::read_to_string(t.join("etc/apt/sources.list")).unwrap();
        (calls, seen, sources)
    }

    #[test]
    fn the_upgrade_reads_the_later_suites_and_all_of_them_when_one_holds_a_package_back() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: the upgrade runs in a chroot session, which mounts (root only)");
            return;
        }
        let from_later = "-o Acquire::GzipIndexes=false -o Dir::Etc::SourceList=/etc/apt/build-distro-later.list -o Dir::Etc::SourceParts=/dev/null";
        let all = "-o Acquire::GzipIndexes=false";
        let update = "-o Acquire::Languages=none update";
        let upgrade = "-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io dist-upgrade";
        let cleanup = [
            "apt-get -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null update"
                .to_string(),
            "apt-get clean".to_string(),
        ];
        // Nothing newer left in the lists: the later suites were enough.
        let dpkg = "ii \tlibssl3\tamd64\t3.0.17-1~deb12u3\n";
        let t = tree_with_lists(&[(
            SECURITY_LIST,
            &offered("libssl3", "3.0.17-1~deb12u3", "amd64"),
        )]);
        let (calls, seen, sources) = upgrade_commands(t.path(), None, dpkg);
        let later = seen[0].0.clone().expect("the later suites' list");
        let deb = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("deb "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            deb(&later),
            [
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main"
            ]
        );
        assert_eq!(deb(&sources).len(), 3, "{sources}");
        assert_eq!(deb(&sources)[1..], deb(&later));
        let mut want = vec![
            format!("apt-get {from_later} {update}"),
            format!("apt-get {from_later} {upgrade}"),
            "dpkg-query".to_string(),
        ];
        want.extend(cleanup.clone());
        assert_eq!(calls, want);
        // A package the later suites' upgrade left behind: once more from every suite.
        let t = tree_with_lists(&[(
            SECURITY_LIST,
            &offered("libssl3", "3.0.17-1~deb12u4", "amd64"),
        )]);
        let archives = t.path().join("cached-debs");
        std::fs::create_dir(&archives).unwrap();
        std::fs::write(archives.join("libssl3_3.0.17-1~deb12u4_amd64.deb"), b"x").unwrap();
        let (calls, seen, _) = upgrade_commands(t.path(), Some(&archives), dpkg);
        want.splice(
            3..3,
            [
                format!("apt-get {all} {update}"),
                format!("apt-get {all} {upgrade}"),
                "dpkg-query".to_string(),
            ],
        );
        assert_eq!(calls, want);
        // The cached packages are apt's archive while it upgrades, and only then.
        let cached = vec!["libssl3_3.0.17-1~deb12u4_amd64.deb".to_string()];
        let shown: Vec<&Vec<String>> = seen.iter().map(|(_, debs)| debs).collect();
        let none = vec![];
        assert_eq!(
            shown,
            [&cached, &cached, &none, &cached, &cached, &none, &none, &none]
        );
        assert!(archives.join("partial").is_dir(), "apt needs it");
        assert_eq!(
            std::fs::read_dir(t.path().join("var/cache/apt/archives"))
                .unwrap()
                .count(),
            0,
            "the tree's own archive is untouched"
        );
    }

    #[test]
    fn ubuntu_and_rolling_suites() {
        let mut b = spec("distribution = \"ubuntu\"\n");
        b.suite = "noble".to_string().try_into().unwrap();
        assert_eq!(
            command(Tool::Mmdebstrap, &b, Path::new("/t"), &RunOpts::default()).display(),
            "mmdebstrap --mode=root noble /t 'deb http://archive.ubuntu.com/ubuntu noble main' \
             'deb http://archive.ubuntu.com/ubuntu noble-updates main' \
             'deb http://archive.ubuntu.com/ubuntu noble-security main'"
        );
        assert_eq!(
            command(Tool::Debootstrap, &b, Path::new("/t"), &RunOpts::default()).display(),
            "debootstrap noble /t http://archive.ubuntu.com/ubuntu"
        );
        b.suite = "sid".to_string().try_into().unwrap();
        b.distribution = None;
        assert_eq!(
            command(Tool::Mmdebstrap, &b, Path::new("/t"), &RunOpts::default()).display(),
            "mmdebstrap --mode=root sid /t 'deb http://deb.debian.org/debian sid main'"
        );
    }

    #[test]
    fn suite_cannot_inject_an_option() {
        let e = parse_str(
            "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = \"--foo\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("would be read as an option"), "{e}");
    }
}
