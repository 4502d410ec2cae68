//! `build`: recipes, errors, the finished tree, reproducible packing.

use std::path::Path;

use crate::support::{self, bin, run, write_recipe};

fn build_err(recipe_text: &str) -> (i32, String) {
    let d = support::tempdir();
    let r = write_recipe(d.path(), "r.toml", recipe_text);
    let (code, out, err) = run(bin()
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(d.path().join("out")));
    assert!(out.is_empty(), "nothing on stdout for an error: {out}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(
        !d.path().join("out").exists()
            || std::fs::read_dir(d.path().join("out")).unwrap().count() == 0
    );
    (code, err.replace(&d.path().display().to_string(), "DIR"))
}

#[test]
fn unknown_key_is_exit_2_with_position() {
    let (code, err) = build_err("[distro]\nname = \"x\"\nnmae = \"y\"\n");
    assert_eq!(code, 2);
    assert!(err.starts_with("build-distro: error: DIR/r.toml:3:1: unknown field `nmae`, expected one of `name`, `path`, `note`"), "{err}");
}

#[test]
fn bad_path_characters_are_exit_2() {
    let (code, err) = build_err("[distro]\nname = \"x\"\npath = \"my/distro\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("DIR/r.toml:3:8: path \"my/distro\" has '/': only A-Za-z0-9._- are allowed; try \"my-distro\""), "{err}");
}

#[test]
fn missing_files_source_is_exit_2() {
    let (code, err) = build_err(
        "[distro]\nname = \"x\"\n[source]\ntype = \"rootfs\"\ndir = \"/\"\n[[files]]\npath = \"/etc/motd\"\nsource = \"files/motd\"\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("DIR/r.toml: [[files]] #1 (/etc/motd): source DIR/files/motd is not a file"),
        "{err}"
    );
}

#[test]
fn unknown_source_type_is_exit_2() {
    let (code, err) = build_err("[distro]\nname = \"x\"\n[source]\ntype = \"debootsrap\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("DIR/r.toml:4:8: unknown variant `debootsrap`, expected one of `debootstrap`, `mmdebstrap`, `docker`, `image-archive`, `rootfs`"), "{err}");
}

#[test]
fn recipe_not_found_is_exit_2() {
    let (code, _, err) = run(bin().args(["build", "no-such-recipe"]));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "build-distro: error: recipe \"no-such-recipe\" not found: no such file and no recipes/no-such-recipe.toml (built in: debian-trixie, debian-bookworm, debian-python-web, alpine-docker, debian-slim-docker, registry-debian)"
    );
}

#[test]
fn failing_run_leaves_no_mount_and_no_partial_output() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    support::busybox_tree(&tree);
    let r = write_recipe(
        d.path(),
        "r.toml",
        "[distro]\nname = \"x\"\n[source]\ntype = \"rootfs\"\ndir = \"tree\"\n[nss]\nmode = \"none\"\n[[run]]\ncommand = \"test -e /proc/self && exit 7\"\n",
    );
    let work = d.path().join("work");
    let out = d.path().join("out");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(&work));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("[[run]] #1 `test -e /proc/self && exit 7` failed"),
        "{err}"
    );
    assert!(
        support::mounts_under(d.path()).is_empty(),
        "mounts left: {:?}",
        support::mounts_under(d.path())
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "partial output left in --out"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "build directory left behind"
    );
}

#[test]
fn rootfs_build_is_byte_reproducible_and_content_id_survives_a_round_trip() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    support::busybox_tree(&tree);
    let recipe = |name: &str, source: &str| {
        write_recipe(
            d.path(),
            name,
            &format!("[distro]\nname = \"bb\"\n[source]\ntype = \"rootfs\"\n{source}\n[nss]\nmode = \"none\"\n"),
        )
    };
    let build = |r: &Path, out: &str, epoch: Option<&str>| -> (serde_json::Value, Vec<u8>) {
        let mut c = bin();
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let (code, stdout, err) = run(c
            .arg("build")
            .arg(r)
            .arg("--json")
            .arg("--out")
            .arg(d.path().join(out)));
        assert_eq!(code, 0, "{err}");
        let bytes = std::fs::read(d.path().join(out).join("bb.tar.gz")).unwrap();
        (serde_json::from_str(&stdout).unwrap(), bytes)
    };
    // Finishing a raw tree creates entries "now"; SOURCE_DATE_EPOCH clamps them, so two
    // builds are the same bytes whenever they run.
    let raw = recipe("raw.toml", "dir = \"tree\"");
    let (a, bytes_a) = build(&raw, "a", Some("1700000000"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (b, bytes_b) = build(&raw, "b", Some("1700000000"));
    assert_eq!(a["content_id"], b["content_id"]);
    assert!(
        bytes_a == bytes_b,
        "same input and SOURCE_DATE_EPOCH, different bytes"
    );
    // Without the clamp: building again from the archive itself keeps the content id
    // (finishing a finished tree changes nothing), and packing that same tree twice
    // gives the same bytes.
    let (first, _) = build(&raw, "first", None);
    let again = recipe("again.toml", "tar = \"first/bb.tar.gz\"");
    let (c, bytes_c) = build(&again, "c", None);
    let (d2, bytes_d) = build(&again, "d", None);
    assert_eq!(
        first["content_id"], c["content_id"],
        "round trip through the archive moved the content id"
    );
    assert_eq!(c["content_id"], d2["content_id"]);
    assert!(bytes_c == bytes_d, "same tree, different bytes");
}

#[test]
fn debian_tree_has_what_the_platform_needs() {
    crate::require_root!();
    let tree = support::debian_tree();
    for m in build_distro::finish::MOUNT_POINTS {
        let m = &m[1..];
        assert!(
            tree.join(m).symlink_metadata().unwrap().is_dir(),
            "mount point /{m}"
        );
    }
    for p in [
        "bin/sh",
        "sbin/ifconfig",
        "sbin/route",
        "opt/unbit/uwsgi/shortcuts.ini",
    ] {
        assert!(tree.join(p).exists(), "/{p}");
    }
    let py = tree.join("opt/unbit/uwsgi/plugins/python3_plugin.so");
    assert!(py.symlink_metadata().is_ok(), "python3 plugin");
    for (link, target) in [
        ("etc/mtab", "/proc/self/mounts"),
        ("etc/hosts", "/run/resolvconf/hosts"),
        ("etc/hostname", "/run/resolvconf/hostname"),
        ("etc/resolv.conf", "/run/resolvconf/resolv.conf"),
    ] {
        assert_eq!(
            std::fs::read_link(tree.join(link)).unwrap(),
            Path::new(target),
            "/{link}"
        );
    }
    for e in walkdir::WalkDir::new(&tree).follow_links(false) {
        let e = e.unwrap();
        use std::os::unix::fs::FileTypeExt;
        let ft = e.file_type();
        assert!(
            !ft.is_char_device() && !ft.is_block_device(),
            "device node {}",
            e.path().display()
        );
    }
    let out = std::process::Command::new("chroot")
        .arg(&tree)
        .args(["/opt/unbit/uwsgi/uwsgi", "--version"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uwsgi --version in a chroot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("2."),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A rootfs directory that only finish changes is read in place (an overlay mount as
/// root): the distro is byte for byte the one a copy gives, even for what finish edits
/// (a set-uid file with two names, a FIFO, `/dev` entries), and the source, the mounts
/// and the work directory are left as they were.
#[test]
fn rootfs_dir_read_in_place_equals_a_copy() {
    crate::require_root!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = support::tempdir();
    let tree = d.path().join("tree");
    support::busybox_tree(&tree);
    std::fs::write(tree.join("usr/bin/su"), b"setuid").unwrap();
    std::fs::set_permissions(
        tree.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(tree.join("usr/bin/su"), tree.join("usr/bin/su2")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tree.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::create_dir_all(tree.join("dev/pts")).unwrap();
    std::fs::write(tree.join(".dockerenv"), b"").unwrap();
    let listing = |p: &Path| -> Vec<(String, u32, u64)> {
        walkdir::WalkDir::new(p)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let md = e.path().symlink_metadata().unwrap();
                (e.path().display().to_string(), md.mode(), md.nlink())
            })
            .collect()
    };
    let before = listing(&tree);
    let r = write_recipe(
        d.path(),
        "r.toml",
        "[distro]\nname = \"bb\"\n[source]\ntype = \"rootfs\"\ndir = \"tree\"\n[nss]\nmode = \"none\"\n",
    );
    let build_in = |work: &Path, out: &str, copy: bool| -> Vec<u8> {
        let mut c = bin();
        c.env("SOURCE_DATE_EPOCH", "1700000000");
        if copy {
            c.env("BUILD_DISTRO_COPY_ROOTFS", "1");
        }
        let (code, _, err) = run(c
            .arg("-v")
            .arg("build")
            .arg(&r)
            .arg("--out")
            .arg(d.path().join(out))
            .arg("--work-dir")
            .arg(work));
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            err.contains("mounted read-only below an overlay"),
            !copy,
            "{err}"
        );
        std::fs::read(d.path().join(out).join("bb.tar.gz")).unwrap()
    };
    let work = d.path().join("work");
    let in_place = build_in(&work, "a", false);
    let copied = build_in(&work, "b", true);
    assert!(in_place == copied, "reading in place changed the distro");
    // The build directory on another filesystem (a tmpfs /tmp, say): the overlay then
    // spans two filesystems and gives each layer's files that layer's st_dev.
    let tmpfs = support::Tmpfs::mount(&d.path().join("tmpfs"));
    let across = build_in(tmpfs.path(), "c", false);
    assert!(
        across == in_place,
        "a build directory on a tmpfs changed the distro"
    );
    assert_eq!(std::fs::read_dir(tmpfs.path()).unwrap().count(), 0);
    drop(tmpfs);
    assert_eq!(listing(&tree), before, "the source directory changed");
    assert!(support::mounts_under(d.path()).is_empty());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(in_place.as_slice()));
    let entries: Vec<(String, tar::EntryType, u32)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                h.mode().unwrap(),
            )
        })
        .collect();
    let su: Vec<_> = entries
        .iter()
        .filter(|e| e.0.starts_with("usr/bin/su"))
        .collect();
    assert_eq!(su.len(), 2, "{su:?}");
    assert_eq!((su[0].1, su[0].2), (tar::EntryType::Regular, 0o755));
    assert_eq!(su[1].1, tar::EntryType::Link, "the two names were split");
    assert!(!entries.iter().any(|e| e.0 == "fifo"
        || e.0 == ".dockerenv"
        || (e.0.starts_with("dev/") && e.0 != "dev/")));
}

/// Ctrl-C while the archive is being written stops the build at once: exit 1, no partial
/// archive, no report, no mount and an empty work directory (the Debian fixture, read in
/// place, packs for seconds, so the signal lands mid-pack).
#[test]
fn interrupt_while_packing_leaves_nothing() {
    crate::require_root!();
    use std::io::BufRead;
    let d = support::tempdir();
    let r = write_recipe(
        d.path(),
        "deb.toml",
        &format!(
            "[distro]\nname = \"deb\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n",
            support::debian_tree().display()
        ),
    );
    let (out, work) = (d.path().join("out"), d.path().join("work"));
    std::fs::create_dir(&work).unwrap();
    let mut child = bin()
        .arg("-v")
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(&work)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("pack: started") {
            break;
        }
    }
    assert!(log.contains("pack: started"), "{log}");
    crate::support::ctrl_c(&child);
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.ends_with("build-distro: error: interrupted\n"), "{log}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "something was left in --out"
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    assert!(support::mounts_under(d.path()).is_empty());
}
