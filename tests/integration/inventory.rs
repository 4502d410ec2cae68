//! The package inventory read from a real Debian tree, its tarball, and an Alpine tree
//! generated in code; and the one-line errors for what is not a readable distro.

use std::path::Path;
use std::process::Command;

use build_distro::inventory::{self, Ecosystem, Error};

use crate::support;

/// What dpkg itself says is installed (`ii` or `hi`), as `name version arch` lines.
fn dpkg_query(tree: &Path) -> Vec<String> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            tree.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n",
        ])
        .output()
        .expect("run dpkg-query");
    assert!(out.status.success(), "dpkg-query failed");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("installed ").map(str::to_string))
        .collect();
    lines.sort();
    lines
}

fn lines(inv: &inventory::Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .iter()
        .map(|p| format!("{} {} {}", p.name, p.version, p.arch))
        .collect();
    v.sort();
    v
}

#[test]
fn debian_tree_and_its_tarball_agree_with_dpkg() {
    let tree = support::debian_tree();
    let inv = inventory::read(&tree).unwrap();
    assert_eq!(inv.ecosystem, Ecosystem::Deb);
    assert_eq!(inv.os.id, "debian");
    assert_eq!(inv.os.version_id.as_deref(), Some("12"));
    assert_eq!(inv.os.version_codename.as_deref(), Some("bookworm"));
    let libc = inv.package("libc6").expect("libc6 is installed");
    assert_eq!(libc.source.as_deref(), Some("glibc"));
    assert_eq!(libc.arch, "amd64");
    assert!(inv.package("uwsgi-core").is_some());
    // Sorted by name then architecture.
    let keys: Vec<(&str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.arch.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    if Command::new("dpkg-query").arg("--version").output().is_ok() {
        assert_eq!(lines(&inv), dpkg_query(&tree));
    } else {
        eprintln!("dpkg-query not installed: not comparing with dpkg's own list");
    }

    let d = support::tempdir();
    let tgz = d.path().join("fixture.tar.gz");
    build_distro::pack::pack_to_file(
        &tree,
        &tgz,
        build_distro::pack::Format::TarGz,
        &build_distro::pack::PackOptions::default(),
        |_| b"{}\n".to_vec(),
    )
    .unwrap();
    assert_eq!(inventory::read(&tgz).unwrap(), inv);

    // A tarball cut short: one line naming it, exit 2.
    let bytes = std::fs::read(&tgz).unwrap();
    let cut = d.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = inventory::read(&cut).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&cut.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn alpine_tree_and_tar() {
    let d = support::tempdir();
    let tree = d.path().join("alpine");
    support::alpine::tree(&tree);
    let inv = inventory::read(&tree).unwrap();
    assert_eq!(inv.ecosystem, Ecosystem::Apk);
    assert_eq!(inv.os.id, "alpine");
    assert_eq!(inv.os.version_id.as_deref(), Some("3.20.3"));
    assert_eq!(
        lines(&inv),
        [
            "busybox 1.36.1-r29 x86_64",
            "libcrypto3 3.3.2-r0 x86_64",
            "musl 1.2.5-r0 x86_64"
        ]
    );
    assert_eq!(
        inv.package("libcrypto3").unwrap().source.as_deref(),
        Some("openssl")
    );
    let tar = d.path().join("alpine.tar");
    support::alpine::tar_of(&tree, &tar);
    assert_eq!(inventory::read(&tar).unwrap(), inv);
}

#[test]
fn what_is_not_a_readable_distro() {
    let d = support::tempdir();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = inventory::read(&empty).unwrap_err();
    assert!(matches!(e, Error::NotADistro { .. }), "{e}");
    assert!(e.to_string().starts_with(&empty.display().to_string()));

    let busybox = d.path().join("busybox");
    std::fs::create_dir_all(busybox.join("etc")).unwrap();
    std::fs::write(busybox.join("etc/os-release"), "ID=busybox\n").unwrap();
    let e = inventory::read(&busybox).unwrap_err();
    assert!(matches!(e, Error::NoPackageDatabase { .. }), "{e}");

    let nameless = d.path().join("nameless");
    std::fs::create_dir_all(nameless.join("var/lib/dpkg")).unwrap();
    std::fs::write(nameless.join("var/lib/dpkg/status"), "").unwrap();
    let e = inventory::read(&nameless).unwrap_err();
    assert!(matches!(e, Error::UnknownDistribution { .. }), "{e}");

    let garbage = d.path().join("garbage");
    support::alpine::tree(&garbage);
    std::fs::write(garbage.join("lib/apk/db/installed"), "P:musl\nV:1.2").unwrap();
    let e = inventory::read(&garbage).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: /lib/apk/db/installed: ends in the middle of a line: the file is truncated",
            garbage.display()
        )
    );
    for e in [
        inventory::read(&empty).unwrap_err(),
        inventory::read(&d.path().join("missing")).unwrap_err(),
        e,
    ] {
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
