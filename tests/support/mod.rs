//! Shared test support: the binary under test, skip helpers for tests that need root,
//! Docker or sshd, and cached fixtures (a real Debian tree built once per machine).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod alpine;
pub mod apt_repo;
pub mod fake_api;
pub mod registry;
pub mod sshd;

/// `build-distro` built for this test run.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_build-distro"));
    c.env_remove("SOURCE_DATE_EPOCH");
    // The tests' bootstraps share one build cache beside the fixtures, never the user's.
    c.env("BUILD_DISTRO_CACHE_DIR", fixtures_dir().join("build-cache"));
    c
}

/// Run and capture, with stdout/stderr as strings.
pub fn run(c: &mut Command) -> (i32, String, String) {
    let out: Output = c.output().expect("spawn build-distro");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skip (return early from) a test that needs root, saying why.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::is_root() {
            eprintln!("SKIPPED: needs root (mounts, chroot, device nodes); CI runs it as root");
            return;
        }
    };
}

/// Whether a Docker engine answers (`DOCKER_HOST` honoured).
pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::support::docker_available() {
            eprintln!("SKIPPED: no Docker engine answers; scripts/test.sh starts one");
            return;
        }
    };
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bd-test.")
        .tempdir()
        .expect("tempdir")
}

/// Where fixtures are cached: `$BUILD_DISTRO_FIXTURES`, else `target/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BUILD_DISTRO_FIXTURES") {
        return PathBuf::from(d);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_build-distro"));
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/")
        .join("fixtures")
}

/// The recipe of the cached Debian fixture: the default recipe's packages.
pub const DEBIAN_FIXTURE_RECIPE: &str = r#"
[distro]
name = "fixture-bookworm"
[source]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
packages = ["net-tools", "ca-certificates", "uwsgi-core", "uwsgi-plugin-python3"]
"#;

/// A finished Debian bookworm tree (real mmdebstrap run through `build-distro build
/// --format dir`), built once per machine and cached under `target/fixtures/`. Tests must
/// not modify it: copy it with [`copy_tree`] first.
pub fn debian_tree() -> PathBuf {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| fixture_tree("fixture-bookworm", DEBIAN_FIXTURE_RECIPE))
        .clone()
}

/// Debian 11 (glibc 2.31, libraries in `/lib`, not merged-/usr): the NSS module must load
/// in a glibc older than the one it is built on.
pub const BULLSEYE_FIXTURE_RECIPE: &str = r#"
[distro]
name = "fixture-bullseye"
[source]
type = "mmdebstrap"
suite = "bullseye"
variant = "minbase"
packages = ["net-tools", "uwsgi-core"]
"#;

/// The finished bullseye tree, cached like [`debian_tree`].
pub fn bullseye_tree() -> PathBuf {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| fixture_tree("fixture-bullseye", BULLSEYE_FIXTURE_RECIPE))
        .clone()
}

/// Bookworm as the tool built it before issue 17: the release suite only, so its
/// packages miss the fixes published in bookworm-security (and more with every month the
/// cache ages), and its sources name no security suite.
pub const STALE_BOOKWORM_RECIPE: &str = r#"
[distro]
name = "fixture-bookworm-stale"
[source]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
updates = false
security = false
packages = ["net-tools", "uwsgi-core"]
"#;

/// The finished stale bookworm tree, cached like [`debian_tree`].
pub fn stale_bookworm_tree() -> PathBuf {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| fixture_tree("fixture-bookworm-stale", STALE_BOOKWORM_RECIPE))
        .clone()
}

/// `build --format dir` of `recipe` into the fixtures directory as `name`, unless a
/// finished tree is there already. Several test processes (or checkouts) may share the
/// cache: the build runs under a lock.
fn fixture_tree(name: &str, recipe: &str) -> PathBuf {
    let dir = fixtures_dir();
    let tree = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if tree.join("etc/build-distro.json").is_file() {
        return tree;
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, recipe).unwrap();
    let (code, out, err) = run(bin()
        .arg("build")
        .arg(&path)
        .args(["--format", "dir", "--out"])
        .arg(&dir));
    assert_eq!(code, 0, "building the fixture {name} failed:\n{out}\n{err}");
    tree
}

/// `cp -a` a tree (keeps hard links, modes, times).
pub fn copy_tree(from: &Path, to: &Path) {
    let mut src = from.as_os_str().to_os_string();
    src.push("/.");
    std::fs::create_dir_all(to).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Send SIGINT to a running `build-distro`, as Ctrl-C in its terminal would.
pub fn ctrl_c(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
}

/// A tmpfs mounted for one test (root only), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        rustix::mount::mount(
            "tmpfs",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=1g",
        )
        .expect("mount a tmpfs");
        Tmpfs(dir.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Mount points currently at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Write a recipe file into `dir` and return its path.
pub fn write_recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A copy of the Debian fixture finished again by *this* build of the tool (so changes
/// to the finish stage show), as a directory under `dir`.
pub fn finished_debian(dir: &Path) -> PathBuf {
    let base = debian_tree();
    let recipe = write_recipe(
        dir,
        "refinish.toml",
        &format!(
            "[distro]\nname = \"refinished\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n",
            base.display()
        ),
    );
    let out = dir.join("out");
    let (code, stdout, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "dir", "--out"])
        .arg(&out));
    assert_eq!(
        code, 0,
        "re-finishing the Debian fixture failed:\n{stdout}\n{err}"
    );
    out.join("refinished")
}

/// Copy into `tree`, at the same paths, the shared libraries and the interpreter a host
/// program needs (as the host's `ldd` lists them), so a host binary copied into a test
/// tree has everything `check` looks for.
pub fn copy_host_libs(tree: &Path, program: &str) {
    let out = Command::new("ldd").arg(program).output().expect("run ldd");
    assert!(out.status.success(), "ldd {program}");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, right)) => right.trim(),
            None => line.trim(),
        };
        let Some(lib) = lib.split_whitespace().next().filter(|l| l.starts_with('/')) else {
            continue;
        };
        let dest = tree.join(&lib[1..]);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap();
    }
}

/// A tiny tree from the host's static busybox (`sh`, `ifconfig`, `route` applets) and the
/// host's uWSGI binary, without its libraries: enough for layer and unpack tests.
pub fn busybox_base(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "ifconfig", "route"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/uwsgi-core", dir.join("usr/bin/uwsgi-core")).unwrap();
}

/// [`busybox_base`] plus the libraries uWSGI needs: a tree that finishes and passes check,
/// without network.
pub fn busybox_tree(dir: &Path) {
    busybox_base(dir);
    copy_host_libs(dir, "/usr/bin/uwsgi-core");
}

/// `tar -C dir ARGS… archive [.]`, asserting success: `args` are the mode flags
/// (`-czf`, `--numeric-owner -cf`, `-xpf` …); a create also gets `.`.
pub fn tar(dir: &Path, args: &[&str], archive: &Path) {
    let mut c = Command::new("tar");
    c.arg("-C").arg(dir).args(args).arg(archive);
    if args
        .iter()
        .any(|a| !a.starts_with("--") && a.starts_with('-') && a.contains('c'))
    {
        c.arg(".");
    }
    let st = c.status().unwrap();
    assert!(st.success(), "tar {args:?} {}", archive.display());
}

/// The dates of `series` in a distro-info-data table: (release, eol, eol-lts).
pub fn csv_dates(table: &str, series: &str) -> (String, String, String) {
    let text = std::fs::read_to_string(table).unwrap();
    let row: Vec<&str> = text
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|c| c.get(2) == Some(&series))
        .unwrap_or_else(|| panic!("{series} not in {table}"));
    let col = |i: usize| row.get(i).unwrap_or(&"").to_string();
    (col(4), col(5), col(6))
}

/// Today in UTC, `YYYY-MM-DD`, as the tables write dates.
pub fn today() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
