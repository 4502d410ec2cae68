//! A bootstrap's second step on a real tree, with real apt in a chroot (issue 25): it
//! upgrades from the suites after the release alone, and when that leaves a package
//! behind (a fix that needs a package only the release has), from every suite again.

use std::sync::Mutex;

use build_distro::runner::{Cmd, Feed, Output, Runner, System};

use crate::support::apt_repo::{self, AptRepo};
use crate::support::{self, copy_tree};

/// The real runner, each command's line kept.
#[derive(Default)]
struct Logged {
    lines: Mutex<Vec<String>>,
}

impl Runner for Logged {
    fn run(&self, cmd: &Cmd) -> Result<Output, build_distro::runner::Error> {
        self.lines.lock().unwrap().push(cmd.display());
        System.run(cmd)
    }

    fn run_fed(&self, cmd: &Cmd, feed: Feed<'_>) -> Result<Output, build_distro::runner::Error> {
        self.lines.lock().unwrap().push(cmd.display());
        System.run_fed(cmd, feed)
    }
}

/// The installed version of `name` in the tree's dpkg status, if any.
fn installed(tree: &std::path::Path, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap();
    build_distro::inventory::dpkg::parse_status(&status)
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.version)
}

/// bookworm as the release (Debian's mirror) with a loopback security suite whose fix of
/// `bd-fix` depends on `hello`, which only the release has and the tree lacks.
#[test]
fn a_fix_that_needs_a_package_of_the_release_is_upgraded_from_every_suite() {
    crate::require_root!();
    if let Err(why) = apt_repo::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let d = support::tempdir();
    let tree = d.path().join("tree");
    copy_tree(&support::stale_bookworm_tree(), &tree);
    assert_eq!(
        installed(&tree, "hello"),
        None,
        "the release's package is not there yet"
    );

    // bd-fix 1.0 installed; its fix, 2.0, in the security suite needs `hello`.
    let repo = AptRepo::new(d.path(), "bookworm-security");
    let pkg = d.path().join("pkg-fix");
    std::fs::create_dir_all(pkg.join("usr/share/bd-fix")).unwrap();
    std::fs::write(pkg.join("usr/share/bd-fix/version"), "1.0\n").unwrap();
    repo.add_package_for("bd-fix", "1.0", &pkg, "all");
    let old = std::fs::read_dir(repo.dir.join("pool/main"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    std::fs::copy(&old, tree.join("tmp/bd-fix.deb")).unwrap();
    let st = std::process::Command::new("chroot")
        .arg(&tree)
        .args(["dpkg", "-i", "/tmp/bd-fix.deb"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(tree.join("tmp/bd-fix.deb")).unwrap();
    std::fs::write(pkg.join("usr/share/bd-fix/version"), "2.0\n").unwrap();
    repo.add_package_with("bd-fix", "2.0", &pkg, "all", "Depends: hello\n");
    repo.publish();
    std::fs::copy(
        &repo.keyring,
        tree.join("etc/apt/trusted.gpg.d/bd-test.gpg"),
    )
    .unwrap();

    let recipe = build_distro::recipe::parse_str(
        &format!(
            "[distro]\nname = \"x\"\n[source]\ntype = \"mmdebstrap\"\nsuite = \"bookworm\"\nsecurity_mirror = \"{}\"\n",
            repo.url()
        ),
        "upgrade.toml",
    )
    .unwrap();
    let Some(build_distro::recipe::SourceSpec::Mmdebstrap(b)) = recipe.source else {
        panic!("an mmdebstrap source");
    };
    let runner = Logged::default();
    let reporter = build_distro::progress::Reporter::silent();
    let ctx = build_distro::source::SourceCtx {
        runner: &runner,
        reporter: &reporter,
        max_unpack_bytes: 0,
        in_place: None,
        registry_login: None,
        epoch: build_distro::build_inputs::Epoch::given(None),
        slim: None,
    };
    build_distro::source::bootstrap::upgrade(&b, &tree, &ctx, None, None).unwrap();

    assert_eq!(installed(&tree, "bd-fix").as_deref(), Some("2.0"));
    assert!(
        installed(&tree, "hello").is_some(),
        "the release's package came with it"
    );
    let lines = runner.lines.lock().unwrap();
    let upgrades: Vec<&String> = lines
        .iter()
        .filter(|l| l.ends_with(" dist-upgrade"))
        .collect();
    assert_eq!(upgrades.len(), 2, "{lines:#?}");
    assert!(
        upgrades[0].contains("SourceList=/etc/apt/build-distro-later.list"),
        "{lines:#?}"
    );
    assert!(!upgrades[1].contains("SourceList="), "{lines:#?}");
    // Nothing of the step is left in the tree: no lists, no packages, no temporary list.
    assert!(!tree.join("etc/apt/build-distro-later.list").exists());
    let left: Vec<_> = std::fs::read_dir(tree.join("var/lib/apt/lists"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains('_'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let debs = std::fs::read_dir(tree.join("var/cache/apt/archives"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".deb")
        })
        .count();
    assert_eq!(debs, 0);
}
