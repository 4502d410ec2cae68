//! NSS (issue 3): the `unbit` module answers container uids inside a real Debian tree
//! finished by the tool, and only those.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support;

/// `getent` run inside the tree (chroot), as the platform's containers would.
fn getent(tree: &Path, db: &str, key: &str) -> (i32, String) {
    let out = Command::new("chroot")
        .arg(tree)
        .args(["getent", db, key])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("run chroot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn container_uids_resolve_in_a_finished_debian_tree() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = support::finished_debian(d.path());
    assert_container_uids_resolve(&tree, "usr/lib/x86_64-linux-gnu");
}

/// The module built here (glibc 2.36) works in Debian 11's glibc 2.31, installed next to
/// its `libc.so.6` in `/lib` (bullseye is not merged-/usr).
#[test]
fn container_uids_resolve_in_an_older_glibc() {
    crate::require_root!();
    // Debian moves old releases off its main mirror in the end: then say so, not fail.
    let release = "http://deb.debian.org/debian/dists/bullseye/InRelease";
    if let Err(ureq::Error::StatusCode(404)) = ureq::head(release).call() {
        eprintln!("SKIPPED: {release} is gone (bullseye left the main mirror)");
        return;
    }
    let d = support::tempdir();
    let tree = d.path().join("bullseye");
    support::copy_tree(&support::bullseye_tree(), &tree);
    let libc = std::fs::read_link(tree.join("lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    assert_eq!(
        libc.to_string_lossy(),
        "libc-2.31.so",
        "not the glibc this test is about"
    );
    assert_container_uids_resolve(&tree, "lib/x86_64-linux-gnu");
}

/// What the platform needs of a finished glibc tree: `unbit` in nsswitch.conf, the module
/// in `libdir` beside libc, and container uids (only those) answered inside a chroot.
fn assert_container_uids_resolve(tree: &Path, libdir: &str) {
    let tree = tree.to_path_buf();
    let conf = std::fs::read_to_string(tree.join("etc/nsswitch.conf")).unwrap();
    assert!(
        build_distro::finish::nss::nsswitch_lists_unbit(&conf),
        "{conf}"
    );
    let module = tree.join(libdir).join("libnss_unbit.so.2");
    let md = std::fs::metadata(&module).expect("module installed next to libc.so.6");
    assert_eq!(md.permissions().mode() & 0o7777, 0o644);

    let home = tree.join("containers/30001");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(30001), Some(30001)).unwrap();
    // 30003's home exists but belongs to someone else: not a container of its own.
    let other = tree.join("containers/30003");
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::chown(&other, Some(30001), Some(30001)).unwrap();

    assert_eq!(
        getent(&tree, "passwd", "30001"),
        (
            0,
            "30001:x:30001:30001:30001:/containers/30001:/bin/bash\n".into()
        )
    );
    assert_eq!(
        getent(&tree, "group", "30001"),
        (0, "30001:x:30001:\n".into())
    );

    let (code, shadow) = getent(&tree, "shadow", "30001");
    assert_eq!(code, 0, "{shadow}");
    let fields: Vec<&str> = shadow.trim_end().split(':').collect();
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86400
        - 1;
    assert_eq!(fields[..2], ["30001", "!"], "{shadow}");
    // Last change = today - 1 (the day may turn between the two clocks).
    let lastchg: u64 = fields[2].parse().unwrap();
    assert!(lastchg == yesterday || lastchg == yesterday + 1, "{shadow}");
    // Every other field -1, which getent prints empty.
    assert!(fields[3..].iter().all(|f| f.is_empty()), "{shadow}");

    let (code, hosts) = getent(&tree, "hosts", "30001.local");
    assert_eq!(code, 0);
    assert_eq!(
        hosts.split_whitespace().collect::<Vec<_>>(),
        ["10.0.0.3", "30001.local"]
    );

    // By name too (getent looks numeric keys up by id): coreutils' id asks getpwnam first.
    let out = Command::new("chroot")
        .arg(&tree)
        .args(["id", "30001"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "uid=30001(30001) gid=30001(30001) groups=30001(30001)\n"
    );

    // Not answered: no home (30002), a home owned by another uid (30003), a uid below
    // 30000 (1000), and hosts at or below 30000.
    for (db, key) in [
        ("passwd", "30002"),
        ("group", "30002"),
        ("shadow", "30002"),
        ("passwd", "30003"),
        ("passwd", "1000"),
        ("group", "1000"),
        ("hosts", "30000.local"),
    ] {
        assert_eq!(getent(&tree, db, key), (2, String::new()), "{db} {key}");
    }
}

#[test]
fn passwd_mode_on_a_busybox_tree() {
    let d = support::tempdir();
    let tree = d.path().join("tree");
    support::busybox_tree(&tree);
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let recipe = support::write_recipe(
        d.path(),
        "r.toml",
        &format!(
            "[distro]\nname = \"bb\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n[nss]\nmode = \"passwd\"\nuids = [30001]\n",
            tree.display()
        ),
    );
    let (code, out, err) = support::run(
        support::bin()
            .arg("build")
            .arg(&recipe)
            .args(["--format", "dir", "--out"])
            .arg(d.path().join("out")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let built = d.path().join("out/bb");
    assert_eq!(
        std::fs::read_to_string(built.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n30001:x:30001:30001:30001:/containers/30001:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(built.join("etc/group")).unwrap(),
        "30001:x:30001:\n"
    );
    assert!(!built.join("etc/nsswitch.conf").exists());
}
