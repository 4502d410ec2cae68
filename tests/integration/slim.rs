//! `[slim]` for real: the default recipe bootstrapped by mmdebstrap from deb.debian.org
//! holds no documentation but copyright files, no man or info pages and no translations,
//! stays slim when `[packages] install` adds a package in the chroot, and still passes
//! check, boots and lists every package in its SBOMs; a rootfs tree is slimmed after the
//! fact the same way.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{self, bin, run, write_recipe};

/// The packages dpkg's status file says are installed.
fn dpkg_packages(tree: &Path) -> BTreeSet<String> {
    let status = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap();
    status
        .split("\n\n")
        .filter(|s| s.contains("\nStatus: install ok installed"))
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("Package: ")))
        .map(str::to_string)
        .collect()
}

/// The packages (`library` components) of a CycloneDX SBOM.
fn sbom_packages(cdx: &Path) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(cdx).unwrap()).unwrap();
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every non-directory below `tree`'s `rel`, relative to the tree.
fn entries_below(tree: &Path, rel: &str) -> Vec<String> {
    walkdir::WalkDir::new(tree.join(rel))
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(tree).unwrap().display().to_string())
        .collect()
}

/// What a slim tree must hold: under doc only `PKG/copyright` files (and symlinks, which
/// dpkg keeps below a directory an include rule reaches into; they hold no content),
/// nothing in man or info, only the kept locales.
fn assert_slim(tree: &Path, keep_locales: &[&str]) {
    let docs = entries_below(tree, "usr/share/doc");
    let copyrights = docs.iter().filter(|p| p.ends_with("/copyright")).count();
    assert!(copyrights > 10, "copyright files stay: {docs:?}");
    let other: Vec<&String> = docs
        .iter()
        .filter(|p| !p.ends_with("/copyright"))
        .filter(|p| !tree.join(p).is_symlink())
        .collect();
    assert!(other.is_empty(), "documentation left: {other:?}");
    for dir in ["usr/share/man", "usr/share/info"] {
        let left = entries_below(tree, dir);
        assert!(left.is_empty(), "{dir} holds {left:?}");
    }
    let locales: Vec<String> = entries_below(tree, "usr/share/locale")
        .into_iter()
        .filter(|p| p != "usr/share/locale/locale.alias")
        .filter(|p| {
            !keep_locales
                .iter()
                .any(|l| p.starts_with(&format!("usr/share/locale/{l}/")))
        })
        .collect();
    assert!(locales.is_empty(), "translations left: {locales:?}");
    let rules =
        std::fs::read_to_string(tree.join("etc/dpkg/dpkg.cfg.d/build-distro-slim")).unwrap();
    assert!(
        rules.contains("path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"),
        "{rules}"
    );
    let others: Vec<_> = std::fs::read_dir(tree.join("etc/dpkg/dpkg.cfg.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "build-distro-slim")
        .collect();
    assert!(others.is_empty(), "one rule file: {others:?}");
}

/// The SBOM names every package dpkg has installed, no more, no less.
fn assert_sbom_complete(tree: &Path, cdx: &Path) {
    let dpkg = dpkg_packages(tree);
    assert!(dpkg.len() > 50, "{dpkg:?}");
    assert_eq!(sbom_packages(cdx), dpkg);
}

#[test]
fn slim_default_build_stays_slim_checks_boots_and_lists_every_package() {
    crate::require_root!();
    let d = support::tempdir();
    // The default recipe plus a package with man pages, docs and translations, installed
    // by apt-get in the chroot after the bootstrap: the installed rules keep it slim.
    let recipe = write_recipe(
        d.path(),
        "r.toml",
        "extends = \"debian-trixie\"\n[distro]\nname = \"slim\"\n[packages]\ninstall = [\"less\"]\n",
    );
    let out = d.path().join("out");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "dir", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    let tree = out.join("slim");
    assert!(tree.join("usr/bin/less").is_file());
    assert!(tree.join("usr/share/doc/less/copyright").is_file());
    assert_slim(&tree, &[]);
    assert_sbom_complete(&tree, &out.join("slim.cdx.json"));
    assert!(dpkg_packages(&tree).contains("less"));
    let (code, out_s, err) = run(bin().arg("check").arg(&tree));
    assert_eq!(code, 0, "{out_s}\n{err}");
    let work = d.path().join("boot");
    std::fs::create_dir_all(&work).unwrap();
    let (code, out_s, err) = run(bin()
        .arg("boot")
        .arg(&tree)
        .args(["--json", "--timeout", "120", "--work-dir"])
        .arg(&work));
    assert_eq!(code, 0, "{out_s}\n{err}");
    let r: serde_json::Value = serde_json::from_str(&out_s).unwrap();
    assert_eq!(r["ok"], true, "{r:#}");
}

#[test]
fn rootfs_tree_is_slimmed_after_the_fact() {
    crate::require_root!();
    let d = support::tempdir();
    // The shared bookworm fixture is built without [slim]: it has the documentation.
    let full = support::debian_tree();
    assert!(!entries_below(&full, "usr/share/man").is_empty());
    let recipe = write_recipe(
        d.path(),
        "r.toml",
        &format!(
            "[distro]\nname = \"after\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n[slim]\nkeep_locales = [\"de\"]\n",
            full.display()
        ),
    );
    let out = d.path().join("out");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "dir", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("slim"), "{err}");
    let tree = out.join("after");
    assert_slim(&tree, &["de"]);
    assert!(
        !entries_below(&tree, "usr/share/locale/de").is_empty(),
        "the kept locale stays"
    );
    assert_sbom_complete(&tree, &out.join("after.cdx.json"));
    // The source directory is never modified.
    assert!(!entries_below(&full, "usr/share/man").is_empty());
}
