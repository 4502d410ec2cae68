//! `docker` and `image-archive` sources against the real engine: images built here (no
//! registry), the tree compared with `docker export` and `docker save`, containers
//! cleaned up on success, failure and Ctrl-C, and the one-line errors. OCI layouts with
//! opaque directories and cross-layer hardlinks are generated in code, since the `vfs`
//! storage driver never writes `.wh..wh..opq`. On an `overlay2` engine (what
//! `scripts/test.sh` starts when the kernel allows) the image's layers are read in place,
//! and the result is compared with the export's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::support::{self, bin, run, write_recipe};

/// Run the docker CLI, insisting on success; stdout trimmed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test image, removed (with any container of it) when dropped.
struct Image(String);

impl Image {
    /// A tag unique to this test process and test.
    fn tag(name: &str) -> String {
        format!("bd-test-{}-{name}:1", std::process::id())
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for c in containers_of(&self.0) {
            let _ = Command::new("docker").args(["rm", "-f", &c]).output();
        }
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Every container (running or not) created from `image`.
fn containers_of(image: &str) -> Vec<String> {
    let out = docker(&["ps", "-a", "-q", "--filter", &format!("ancestor={image}")]);
    out.lines().map(str::to_string).collect()
}

/// The files every test image carries: busybox as `/bin/sh`, `ifconfig`, `route`, and a
/// uWSGI binary so that finishing succeeds. `tag` goes into a file, so that no two test
/// images share an id (the builder's cache would otherwise make them one image, and
/// the tests that count its containers would see each other's).
fn base_rootfs(dir: &Path, tag: &str) {
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    support::busybox_base(dir);
    w("etc/motd", b"hello\n", 0o644);
    w("etc/image-tag", tag.as_bytes(), 0o644);
    w("etc/secret", b"s3cret\n", 0o600);
    w("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
    w("etc/deleteme", b"gone in layer 2\n", 0o644);
    w("usr/share/doc/a", b"shared content\n", 0o644);
    w("usr/share/doc/b", b"b\n", 0o640);
    std::fs::hard_link(
        dir.join("usr/share/doc/a"),
        dir.join("usr/share/doc/a-link"),
    )
    .unwrap();
    w("data/old/a", b"old a\n", 0o644);
    w("data/old/b", b"old b\n", 0o644);
    w("srv/script", b"#!/bin/sh\necho hi\n", 0o755);
    std::fs::create_dir_all(dir.join("var/empty")).unwrap();
    std::fs::set_permissions(
        dir.join("var/empty"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

/// `docker import` of a rootfs tarball generated here.
fn imported_image(name: &str) -> Image {
    let d = support::tempdir();
    let tag = Image::tag(name);
    base_rootfs(&d.path().join("rootfs"), &tag);
    let tarball = d.path().join("rootfs.tar");
    support::tar(
        &d.path().join("rootfs"),
        &["--numeric-owner", "-cf"],
        &tarball,
    );
    docker(&["import", &tarball.display().to_string(), &tag]);
    Image(tag)
}

/// A `FROM scratch` image with three layers: the base files; one that deletes a file
/// and replaces a directory; one that hardlinks to a file of the first layer, adds a
/// symlink and changes a file and a mode.
fn layered_image(name: &str) -> Image {
    let d = support::tempdir();
    let tag = Image::tag(name);
    base_rootfs(&d.path().join("rootfs"), &tag);
    let bb = "/bin/busybox";
    let layer2 = format!(
        "{bb} rm /etc/deleteme && {bb} rm -r /data/old && {bb} mkdir /data/old && echo new > /data/old/c && {bb} chmod 0600 /etc/motd"
    );
    let layer3 = format!(
        "{bb} ln /usr/share/doc/a /usr/share/doc/a-cross && {bb} ln -s ../data/old/c /etc/c-link && echo more >> /usr/share/doc/b && {bb} chmod 0751 /srv"
    );
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nRUN [\"{bb}\", \"sh\", \"-c\", \"{layer2}\"]\nRUN [\"{bb}\", \"sh\", \"-c\", \"{layer3}\"]\n"
    );
    std::fs::write(d.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(d.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Image(tag)
}

/// Path → "type mode uid:gid content": what two trees must agree on (not mtimes, not
/// whether two names share an inode).
fn tree_manifest(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link {}", std::fs::read_link(e.path()).unwrap().display())
        } else if ft.is_file() {
            let data = std::fs::read(e.path()).unwrap();
            format!("file {}", hex::encode(Sha256::digest(&data)))
        } else {
            "special".to_string()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            md.mode() & 0o7777
        };
        m.insert(rel, format!("{what} {mode:o} {}:{}", md.uid(), md.gid()));
    }
    m
}

/// The recipe for a tiny distro from `source` (a `[source]` table body). The test images
/// carry uWSGI without its libraries (they test layers, not uWSGI), so that check rule is
/// accepted knowingly.
fn recipe(dir: &Path, name: &str, source: &str) -> PathBuf {
    write_recipe(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[distro]\nname = \"{name}\"\n[source]\n{source}\n[nss]\nmode = \"none\"\n[check]\nallow = [\"uwsgi-elf\"]\n"
        ),
    )
}

/// `build --format dir`, insisting on success; the tree's path.
fn build_dir(recipe: &Path, out: &Path) -> PathBuf {
    let (code, stdout, err) = run(bin()
        .arg("-q")
        .arg("build")
        .arg(recipe)
        .args(["--format", "dir", "--out"])
        .arg(out));
    assert_eq!(code, 0, "build failed:\n{stdout}\n{err}");
    let name = recipe.file_stem().unwrap();
    out.join(name)
}

/// A build that must fail: exit code and the single stderr line.
fn build_fails(recipe: &Path, out: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut c = bin();
    c.arg("-q").arg("build").arg(recipe).arg("--out").arg(out);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, stdout, err) = run(&mut c);
    assert!(
        stdout.is_empty(),
        "nothing on stdout for an error: {stdout}"
    );
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(err.starts_with("build-distro: error: "), "{err}");
    (code, err.trim().to_string())
}

/// What finishing adds to a tree that has none of the platform's pieces (the busybox
/// images here): the documented finishing changes, spelled out.
const FINISH_ADDS: &[&str] = &[
    ".old_root",
    "containers",
    "etc/build-distro.json",
    "etc/rc.local",
    "opt",
    "opt/unbit",
    "opt/unbit/uwsgi",
    "opt/unbit/uwsgi/plugins",
    "opt/unbit/uwsgi/shortcuts.ini",
    "opt/unbit/uwsgi/uwsgi",
    "run",
    "tmp",
    "usr/local",
    "usr/sbin",
    "usr/sbin/policy-rc.d",
    "var/log",
    "var/spool",
    "var/tmp",
];

/// Docker's placeholders that finishing turns into the platform's symlinks.
const FINISH_LINKS: &[(&str, &str)] = &[
    ("etc/hosts", "/run/resolvconf/hosts"),
    ("etc/hostname", "/run/resolvconf/hostname"),
    ("etc/resolv.conf", "/run/resolvconf/resolv.conf"),
    ("etc/mtab", "/proc/self/mounts"),
];

/// Extract `docker export` of a fresh container of `image` into `dir`.
fn docker_export(image: &str, dir: &Path) {
    let c = docker(&["create", image, "/bin/sh"]);
    let tarball = dir.with_extension("tar");
    docker(&["export", "-o", &tarball.display().to_string(), &c]);
    docker(&["rm", &c]);
    std::fs::create_dir_all(dir).unwrap();
    support::tar(dir, &["--numeric-owner", "-xpf"], &tarball);
}

/// The `docker` source's tree is `docker export` minus exactly the finishing changes.
fn assert_export_minus_finish(image: &str, built: &Path, work: &Path) {
    let exported = work.join("exported");
    docker_export(image, &exported);
    let exp = tree_manifest(&exported);
    let got = tree_manifest(built);
    // The export really has Docker's leftovers, so the test checks their removal.
    for p in [
        ".dockerenv",
        "dev/console",
        "dev/pts",
        "dev/shm",
        "etc/hostname",
    ] {
        assert!(exp.contains_key(p), "docker export has no {p}: {exp:#?}");
    }
    let mut expected = exp.clone();
    expected.remove(".dockerenv");
    expected.retain(|p, _| !p.starts_with("dev/"));
    for (link, target) in FINISH_LINKS {
        expected.insert(link.to_string(), format!("link {target} 0 0:0"));
    }
    let added: BTreeSet<&str> = got
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .map(String::as_str)
        .collect();
    assert_eq!(
        added,
        FINISH_ADDS.iter().copied().collect::<BTreeSet<_>>(),
        "paths beyond the export"
    );
    let mut differ = Vec::new();
    for (p, want) in &expected {
        match got.get(p) {
            Some(have) if have == want => {}
            other => differ.push(format!("{p}: export {want}, built {other:?}")),
        }
    }
    assert!(differ.is_empty(), "differences:\n{}", differ.join("\n"));
}

/// The `image-archive` source on `docker save` of `image` gives the same tree as the
/// `docker` source (provenance aside).
fn assert_save_equals(image: &str, docker_tree: &Path, work: &Path) {
    let archive = work.join("saved.tar");
    docker(&["save", "-o", &archive.display().to_string(), image]);
    let r = recipe(
        work,
        "from-archive",
        &format!("type = \"image-archive\"\nfile = \"{}\"", archive.display()),
    );
    let tree = build_dir(&r, &work.join("out-archive"));
    let mut a = tree_manifest(&tree);
    let mut b = tree_manifest(docker_tree);
    a.remove("etc/build-distro.json");
    b.remove("etc/build-distro.json");
    assert_eq!(a, b);
}

fn docker_source(image: &str) -> String {
    format!("type = \"docker\"\nimage = \"{image}\"\npull = \"never\"")
}

#[test]
fn imported_image_equals_export_and_save() {
    crate::require_docker!();
    let img = imported_image("import");
    let d = support::tempdir();
    let r = recipe(d.path(), "from-docker", &docker_source(&img.0));
    let before = containers_of(&img.0);
    let tree = build_dir(&r, &d.path().join("out"));
    assert_eq!(containers_of(&img.0), before, "a container was left behind");
    assert_export_minus_finish(&img.0, &tree, d.path());
    assert_save_equals(&img.0, &tree, d.path());

    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("etc/build-distro.json")).unwrap())
            .unwrap();
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &img.0]);
    assert_eq!(prov["source"]["kind"], "docker");
    assert_eq!(prov["source"]["digest"], id.as_str());
    assert_eq!(prov["source"]["reference"], img.0.as_str());
}

#[test]
fn layered_image_equals_export_and_save() {
    crate::require_docker!();
    let img = layered_image("layers");
    let d = support::tempdir();
    let r = recipe(d.path(), "from-docker", &docker_source(&img.0));
    let tree = build_dir(&r, &d.path().join("out"));
    assert!(
        containers_of(&img.0).is_empty(),
        "a container was left behind"
    );
    // The layers did what the Dockerfile says.
    assert!(!tree.join("etc/deleteme").exists());
    assert!(!tree.join("data/old/a").exists() && !tree.join("data/old/b").exists());
    assert_eq!(std::fs::read(tree.join("data/old/c")).unwrap(), b"new\n");
    assert_eq!(
        std::fs::read(tree.join("usr/share/doc/a-cross")).unwrap(),
        b"shared content\n"
    );
    assert_eq!(
        std::fs::read_link(tree.join("etc/c-link")).unwrap(),
        Path::new("../data/old/c")
    );
    assert_export_minus_finish(&img.0, &tree, d.path());
    assert_save_equals(&img.0, &tree, d.path());
}

/// The image's own layer directories when the engine keeps them as overlay2 layers
/// (`None` under another storage driver), each with its tree manifest.
fn overlay2_layers(image: &str) -> Option<Vec<(String, BTreeMap<String, String>)>> {
    if docker(&["info", "-f", "{{.Driver}}"]) != "overlay2" {
        return None;
    }
    let data = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .GraphDriver.Data}}",
        image,
    ]);
    let data: BTreeMap<String, String> = serde_json::from_str(&data).unwrap();
    let dirs = std::iter::once(data["UpperDir"].as_str())
        .chain(data.get("LowerDir").map_or("", String::as_str).split(':'))
        .filter(|d| !d.is_empty());
    Some(
        dirs.map(|d| (d.to_string(), tree_manifest(Path::new(d))))
            .collect(),
    )
}

/// `build` of a `.tar.gz` with `-v`, insisting on success: the archive and the log.
fn build_targz(recipe: &Path, out: &Path, work: &Path, export: bool) -> (Vec<u8>, String) {
    let mut c = bin();
    if export {
        c.env("BUILD_DISTRO_DOCKER_EXPORT", "1");
    }
    c.env_remove("SOURCE_DATE_EPOCH");
    let (code, stdout, err) = run(c
        .arg("-v")
        .arg("build")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .arg("--work-dir")
        .arg(work));
    assert_eq!(code, 0, "build failed:\n{stdout}\n{err}");
    let name = recipe.file_stem().unwrap().to_string_lossy().into_owned();
    (
        std::fs::read(out.join(format!("{name}.tar.gz"))).unwrap(),
        err,
    )
}

/// Path → "type mode mtime link size sha256" of every entry of a `.tar.gz`: what differs
/// when two archives differ, readably.
fn archive_listing(targz: &[u8]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let h = e.header().clone();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let line = format!(
            "{:?} {:o} {} {:?} {} {}",
            h.entry_type(),
            h.mode().unwrap(),
            h.mtime().unwrap(),
            link,
            data.len(),
            sha(&data)
        );
        m.insert(path, line);
    }
    m
}

/// Two archives are the same bytes (compared entry by entry first, for a readable diff).
fn assert_same_archive(a: &[u8], b: &[u8], what: &str) {
    assert_eq!(archive_listing(a), archive_listing(b), "{what}");
    assert!(a == b, "{what}");
}

/// On an overlay2 engine the image's layers are read where they lie, below an overlay,
/// instead of exported: the archive is byte for byte the one the export gives (the
/// image's creation time bounds every mtime, so the container's fresh placeholders do
/// not show), the engine's layer directories are untouched, and no container or mount
/// is left. Under another storage driver the same build falls back to the export.
#[test]
fn layers_read_in_place_give_the_exports_archive() {
    crate::require_docker!();
    let img = layered_image("in-place");
    let d = support::tempdir();
    let r = recipe(d.path(), "in-place", &docker_source(&img.0));
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let layers = overlay2_layers(&img.0);
    if layers.is_none() {
        eprintln!("NOTE: the engine's storage driver is not overlay2: only the fallback to export is tested here");
    }

    let (in_place, log) = build_targz(&r, &d.path().join("a"), &work, false);
    assert_eq!(
        log.contains("mounted read-only below an overlay, not exported"),
        layers.is_some(),
        "{log}"
    );
    let (exported, log) = build_targz(&r, &d.path().join("b"), &work, true);
    assert!(
        log.contains("BUILD_DISTRO_DOCKER_EXPORT=1; exporting"),
        "{log}"
    );
    assert_same_archive(
        &in_place,
        &exported,
        "reading the layers in place changed the distro",
    );
    // Twice the same way: the same bytes (the placeholders of a new container are newer
    // than the image, so their times are clamped).
    let (again, _) = build_targz(&r, &d.path().join("c"), &work, false);
    assert_same_archive(&again, &in_place, "two builds of one image differ");
    // The build directory on another filesystem than the engine's layers (a tmpfs /tmp).
    let tmpfs = support::Tmpfs::mount(&d.path().join("tmpfs"));
    let (across, _) = build_targz(&r, &d.path().join("d"), tmpfs.path(), false);
    assert_same_archive(
        &across,
        &in_place,
        "a build directory on a tmpfs changed the distro",
    );
    drop(tmpfs);

    assert_eq!(
        overlay2_layers(&img.0),
        layers,
        "a layer of the image changed"
    );
    assert!(
        containers_of(&img.0).is_empty(),
        "a container was left behind"
    );
    assert!(support::mounts_under(d.path()).is_empty());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

/// An image of `1 + extra` layers, loaded from a `docker save` archive generated here
/// (building it would take a container per layer): the test base, then one layer per
/// file `/layers/N`; layer 40 deletes `/etc/motd` and layer 60 rewrites `/layers/10`.
fn many_layered_image(name: &str, extra: usize) -> Image {
    let d = support::tempdir();
    let tag = Image::tag(name);
    base_rootfs(&d.path().join("rootfs"), &tag);
    let base = d.path().join("base.tar");
    support::tar(&d.path().join("rootfs"), &["--numeric-owner", "-cf"], &base);
    let mut layers = vec![std::fs::read(&base).unwrap()];
    for n in 1..=extra {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(MTIME);
            b.append_data(&mut h, path, data).unwrap();
        };
        add(&format!("layers/{n}"), format!("{n}\n").as_bytes());
        if n == 40 {
            add("etc/.wh.motd", b"");
        }
        if n == 60 {
            add("layers/10", b"rewritten in layer 60\n");
        }
        layers.push(b.into_inner().unwrap());
    }
    let staging = d.path().join("save");
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        std::fs::create_dir_all(staging.join(format!("l{i}"))).unwrap();
        std::fs::write(staging.join(format!("l{i}/layer.tar")), l).unwrap();
        names.push(format!("l{i}/layer.tar"));
    }
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    std::fs::write(staging.join("cfg.json"), config_for(&refs)).unwrap();
    let manifest = serde_json::json!([{"Config": "cfg.json", "RepoTags": [tag], "Layers": names}]);
    std::fs::write(staging.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = d.path().join("image.tar");
    support::tar(&staging, &["-cf"], &archive);
    docker(&["load", "-q", "-i", &archive.display().to_string()]);
    Image(tag)
}

/// Kernel release as (major, minor).
fn kernel() -> (u32, u32) {
    let r = rustix::system::uname();
    let r = r.release().to_string_lossy().into_owned();
    let mut it = r
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// 80 layers do not fit in one `mount(2)` option string: they are mounted one by one
/// (Linux 6.8 and later), and the archive is still the export's.
#[test]
fn many_layers_are_read_in_place_too() {
    crate::require_docker!();
    let img = many_layered_image("many-layers", 79);
    let d = support::tempdir();
    let r = recipe(d.path(), "many", &docker_source(&img.0));
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let layers = overlay2_layers(&img.0);
    if let Some(l) = &layers {
        assert_eq!(l.len(), 80);
    }
    let expect_in_place = layers.is_some() && kernel() >= (6, 8);
    if !expect_in_place {
        eprintln!("NOTE: no overlay2 engine or a kernel before 6.8: only the fallback to export is tested here");
    }
    let (in_place, log) = build_targz(&r, &d.path().join("a"), &work, false);
    assert_eq!(
        log.contains("mounted read-only below an overlay, not exported"),
        expect_in_place,
        "{log}"
    );
    let (exported, _) = build_targz(&r, &d.path().join("b"), &work, true);
    assert_same_archive(
        &in_place,
        &exported,
        "reading the layers in place changed the distro",
    );
    let files = archive_listing(&in_place);
    let holds = |path: &str, data: &[u8]| files[path].ends_with(&format!(" {}", sha(data)));
    assert!(holds("layers/79", b"79\n"), "{}", files["layers/79"]);
    assert!(
        holds("layers/10", b"rewritten in layer 60\n"),
        "{}",
        files["layers/10"]
    );
    assert!(!files.contains_key("etc/motd"), "the whiteout of layer 40");
    assert_eq!(
        overlay2_layers(&img.0),
        layers,
        "a layer of the image changed"
    );
    assert!(containers_of(&img.0).is_empty());
    assert!(support::mounts_under(d.path()).is_empty());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

/// A build that fails after the layers were mounted (finish refuses the recipe's uWSGI
/// binary) leaves neither the mount nor the container behind.
#[test]
fn failed_in_place_build_leaves_no_mount_or_container() {
    crate::require_docker!();
    let img = imported_image("in-place-fails");
    let d = support::tempdir();
    let r = write_recipe(
        d.path(),
        "fails.toml",
        &format!(
            "[distro]\nname = \"fails\"\n[source]\n{}\n[uwsgi]\nbinary = \"/no/such/uwsgi\"\n",
            docker_source(&img.0)
        ),
    );
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let (code, stdout, err) = run(bin()
        .arg("-v")
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(d.path().join("out"))
        .arg("--work-dir")
        .arg(&work));
    assert_eq!(code, 2, "{stdout}\n{err}");
    assert!(
        err.contains("[uwsgi] binary = /no/such/uwsgi: not a file in the tree"),
        "{err}"
    );
    if overlay2_layers(&img.0).is_some() {
        assert!(err.contains("not exported"), "{err}");
    }
    assert!(
        containers_of(&img.0).is_empty(),
        "a container was left behind"
    );
    assert!(support::mounts_under(d.path()).is_empty());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    assert!(!d.path().join("out/fails.tar.gz").exists());
}

#[test]
fn archive_with_several_images_needs_a_tag() {
    crate::require_docker!();
    let a = imported_image("multi-a");
    let b = layered_image("multi-b");
    let d = support::tempdir();
    let archive = d.path().join("both.tar");
    docker(&["save", "-o", &archive.display().to_string(), &a.0, &b.0]);
    let src = format!("type = \"image-archive\"\nfile = \"{}\"", archive.display());
    let r = recipe(d.path(), "untagged", &src);
    let (code, err) = build_fails(&r, &d.path().join("out1"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("holds 2 images") && err.contains(&a.0) && err.contains(&b.0),
        "{err}"
    );
    let r = recipe(d.path(), "wrong", &format!("{src}\nimage = \"nope:1\""));
    let (code, err) = build_fails(&r, &d.path().join("out2"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no image \"nope:1\"") && err.contains(&a.0),
        "{err}"
    );
    let r = recipe(d.path(), "tagged", &format!("{src}\nimage = \"{}\"", b.0));
    let tree = build_dir(&r, &d.path().join("out3"));
    assert_eq!(std::fs::read(tree.join("data/old/c")).unwrap(), b"new\n");
}

#[test]
fn missing_image_with_pull_never_is_exit_2() {
    crate::require_docker!();
    let d = support::tempdir();
    let tag = Image::tag("never-built");
    let r = recipe(d.path(), "missing", &docker_source(&tag));
    let (code, err) = build_fails(&r, &d.path().join("out"), &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!("build-distro: error: docker image {tag} is not present and [source] pull = \"never\"; docker pull or docker load it first, or set pull = \"missing\"")
    );
}

#[test]
fn unreachable_engine_is_exit_2() {
    let d = support::tempdir();
    let r = recipe(
        d.path(),
        "unreachable",
        &docker_source("debian:bookworm-slim"),
    );
    let (code, err) = build_fails(
        &r,
        &d.path().join("out"),
        &[("DOCKER_HOST", "unix:///nonexistent")],
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("build-distro: error: cannot reach the Docker engine at unix:///nonexistent (DOCKER_HOST): ")
            && err.contains("systemctl start docker"),
        "{err}"
    );
}

/// Write a tar holding `files` (name, bytes) into `path`.
fn write_tar(path: &Path, files: &[(&str, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn corrupt_archives_are_exit_2() {
    let d = support::tempdir();
    let build = |file: &Path, name: &str| {
        let r = recipe(
            d.path(),
            name,
            &format!("type = \"image-archive\"\nfile = \"{}\"", file.display()),
        );
        build_fails(&r, &d.path().join(format!("out-{name}")), &[])
    };

    let garbage = d.path().join("garbage.tar");
    std::fs::write(&garbage, vec![0x5a; 10_000]).unwrap();
    let (code, err) = build(&garbage, "garbage");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("garbage.tar: "), "{err}");

    // A good archive cut short in the middle of its layer.
    let layer = layer_tar(&[Entry::file("etc/motd", b"hello\n", 0o644)]);
    let config = config_for(&[&layer]);
    let full = d.path().join("full.tar");
    write_tar(
        &full,
        &[
            (
                "manifest.json",
                br#"[{"Config":"config.json","RepoTags":["x:1"],"Layers":["l1/layer.tar"]}]"#
                    .to_vec(),
            ),
            ("config.json", config.clone()),
            ("l1/layer.tar", layer.clone()),
        ],
    );
    let bytes = std::fs::read(&full).unwrap();
    let cut = d.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() - 2048 - 1024]).unwrap();
    let (code, err) = build(&cut, "cut");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cut.tar: "), "{err}");

    // A layer whose bytes do not match the config's diff id.
    let mut bad = layer.clone();
    let at = bad.windows(6).position(|w| w == b"hello\n").unwrap();
    bad[at] = b'j';
    let flipped = d.path().join("flipped.tar");
    write_tar(
        &flipped,
        &[
            (
                "manifest.json",
                br#"[{"Config":"config.json","Layers":["l1/layer.tar"]}]"#.to_vec(),
            ),
            ("config.json", config),
            ("l1/layer.tar", bad),
        ],
    );
    let (code, err) = build(&flipped, "flipped");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("layer l1/layer.tar is corrupt"), "{err}");

    let empty = d.path().join("empty.tar");
    write_tar(&empty, &[("hello.txt", b"hi".to_vec())]);
    let (code, err) = build(&empty, "empty");
    assert_eq!(code, 2);
    assert!(err.contains("neither manifest.json"), "{err}");
}

/// One entry of a generated layer.
struct Entry {
    name: &'static str,
    kind: tar::EntryType,
    data: Vec<u8>,
    mode: u32,
    link: Option<&'static str>,
}

impl Entry {
    fn file(name: &'static str, data: &[u8], mode: u32) -> Entry {
        Entry {
            name,
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            mode,
            link: None,
        }
    }
    fn dir(name: &'static str, mode: u32) -> Entry {
        Entry {
            name,
            kind: tar::EntryType::Directory,
            data: vec![],
            mode,
            link: None,
        }
    }
    fn symlink(name: &'static str, target: &'static str) -> Entry {
        Entry {
            name,
            kind: tar::EntryType::Symlink,
            data: vec![],
            mode: 0o777,
            link: Some(target),
        }
    }
    fn hardlink(name: &'static str, target: &'static str) -> Entry {
        Entry {
            name,
            kind: tar::EntryType::Link,
            data: vec![],
            mode: 0o644,
            link: Some(target),
        }
    }
    fn whiteout(name: &'static str) -> Entry {
        Entry::file(name, b"", 0)
    }
}

/// Mtime of every generated entry.
const MTIME: u64 = 1_600_000_000;

/// An uncompressed layer tar.
fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        if let Some(l) = e.link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(e.name).unwrap();
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A minimal image config whose diff ids are the (uncompressed) layers' hashes.
fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-09-13T12:26:40Z",
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout in `dir` holding one image per `(tag, layers)`, the first layer
/// of each gzip-compressed, the others zstd-compressed.
fn oci_layout(dir: &Path, images: &[(&str, Vec<Vec<u8>>)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let digest = sha(data);
        std::fs::write(blobs.join(&digest[7..]), data).unwrap();
        digest
    };
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for (tag, layers) in images {
        let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        let config = config_for(&refs);
        let mut descs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let (blob, mt) = if i == 0 {
                (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (
                    zstd::encode_all(&l[..], 3).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                )
            };
            descs.push(
                serde_json::json!({"mediaType": mt, "digest": put(&blob), "size": blob.len()}),
            );
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap(),
    )
    .unwrap();
}

/// Layers with everything the docker builder here cannot produce: an opaque directory,
/// a hardlink to a file of an earlier layer, a whiteout of a whole directory.
fn opaque_layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let uwsgi = std::fs::read("/usr/bin/uwsgi-core").unwrap();
    let l1 = layer_tar(&[
        Entry::dir("bin", 0o755),
        Entry::file("bin/busybox", &busybox, 0o755),
        Entry::symlink("bin/sh", "busybox"),
        Entry::symlink("bin/ifconfig", "busybox"),
        Entry::symlink("bin/route", "/bin/busybox"),
        Entry::dir("usr", 0o755),
        Entry::dir("usr/bin", 0o755),
        Entry::file("usr/bin/uwsgi-core", &uwsgi, 0o755),
        Entry::dir("etc", 0o755),
        Entry::file("etc/motd", b"layer one\n", 0o640),
        Entry::dir("data", 0o755),
        Entry::dir("data/cfg", 0o750),
        Entry::file("data/cfg/old1", b"1\n", 0o644),
        Entry::file("data/cfg/old2", b"2\n", 0o644),
        Entry::dir("data/cfg/sub", 0o755),
        Entry::file("data/cfg/sub/deep", b"deep\n", 0o644),
        Entry::dir("data/gone", 0o755),
        Entry::file("data/gone/x", b"x\n", 0o644),
        Entry::file("data/shared", b"shared bytes\n", 0o604),
    ]);
    let l2 = layer_tar(&[
        Entry::dir("data", 0o755),
        Entry::dir("data/cfg", 0o700),
        Entry::whiteout("data/cfg/.wh..wh..opq"),
        Entry::file("data/cfg/new", b"new\n", 0o644),
        Entry::whiteout("data/.wh.gone"),
        Entry::hardlink("data/shared-link", "data/shared"),
    ]);
    let l3 = layer_tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/motd", b"layer three\n", 0o644),
        Entry::whiteout("bin/.wh.ifconfig"),
        Entry::symlink("bin/ifconfig", "/bin/busybox"),
        Entry::dir("data", 0o755),
        Entry::dir("data/cfg", 0o700),
        Entry::file("data/cfg/newer", b"newer\n", 0o600),
    ]);
    vec![l1, l2, l3]
}

/// Check the tree built from [`opaque_layers`].
fn assert_opaque_result(tree: &Path) {
    let m = tree_manifest(tree);
    let cfg: Vec<&String> = m.keys().filter(|k| k.starts_with("data/cfg/")).collect();
    assert_eq!(cfg, ["data/cfg/new", "data/cfg/newer"], "opaque directory");
    assert_eq!(m["data/cfg"], "dir 700 0:0");
    assert!(!m.contains_key("data/gone") && !m.contains_key("data/gone/x"));
    let shared = std::fs::symlink_metadata(tree.join("data/shared")).unwrap();
    let link = std::fs::symlink_metadata(tree.join("data/shared-link")).unwrap();
    assert_eq!(shared.ino(), link.ino(), "hardlink across layers");
    assert_eq!(shared.mode() & 0o7777, 0o604);
    assert_eq!(
        std::fs::read(tree.join("etc/motd")).unwrap(),
        b"layer three\n"
    );
    assert_eq!(m["etc/motd"].split(' ').nth(2), Some("644"));
    assert_eq!(m["bin/ifconfig"], "link /bin/busybox 0 0:0");
    assert_eq!(m["bin/sh"], "link busybox 0 0:0");
    assert_eq!(
        std::fs::symlink_metadata(tree.join("data/cfg/newer"))
            .unwrap()
            .mtime(),
        MTIME as i64
    );
    assert!(
        !m.keys().any(|k| k.contains(".wh.")),
        "whiteouts left: {m:#?}"
    );
}

#[test]
fn oci_layout_directory_and_tar_with_opaque_dirs_and_cross_layer_hardlinks() {
    let d = support::tempdir();
    let layout = d.path().join("layout");
    let other = layer_tar(&[Entry::file("other", b"not this one\n", 0o644)]);
    oci_layout(
        &layout,
        &[("app:2", opaque_layers()), ("other:1", vec![other])],
    );
    let src = |file: &Path| {
        format!(
            "type = \"image-archive\"\nfile = \"{}\"\nimage = \"app:2\"",
            file.display()
        )
    };
    let tree = build_dir(
        &recipe(d.path(), "from-dir", &src(&layout)),
        &d.path().join("out-dir"),
    );
    assert_opaque_result(&tree);
    assert!(!tree.join("other").exists());

    // The same layout as a tar (docker save >= 25 and skopeo write these).
    let tarball = d.path().join("layout.tar");
    support::tar(&layout, &["-cf"], &tarball);
    let tree2 = build_dir(
        &recipe(d.path(), "from-tar", &src(&tarball)),
        &d.path().join("out-tar"),
    );
    assert_opaque_result(&tree2);
    let (mut a, mut b) = (tree_manifest(&tree), tree_manifest(&tree2));
    a.remove("etc/build-distro.json");
    b.remove("etc/build-distro.json");
    assert_eq!(a, b);
}

#[test]
fn docker_save_layout_generated_in_code_gzip_outer() {
    // A docker-save style archive (manifest.json + layer tars), gzip-compressed as a
    // whole, with layers that are themselves compressed and one linked duplicate.
    let d = support::tempdir();
    let layers = opaque_layers();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let config = config_for(&refs);
    let staging = d.path().join("save");
    for (i, l) in layers.iter().enumerate() {
        std::fs::create_dir_all(staging.join(format!("l{i}"))).unwrap();
        let data = if i == 1 { gzip(l) } else { l.clone() };
        std::fs::write(staging.join(format!("l{i}/layer.tar")), data).unwrap();
    }
    std::fs::write(staging.join("cfg.json"), &config).unwrap();
    std::fs::write(
        staging.join("manifest.json"),
        br#"[{"Config":"cfg.json","RepoTags":["saved:1"],"Layers":["l0/layer.tar","l1/layer.tar","l2/layer.tar"]}]"#,
    )
    .unwrap();
    // docker save links a layer it already wrote instead of storing it twice.
    std::fs::create_dir_all(staging.join("dup")).unwrap();
    std::fs::rename(staging.join("l2/layer.tar"), staging.join("dup/layer.tar")).unwrap();
    std::os::unix::fs::symlink("../dup/layer.tar", staging.join("l2/layer.tar")).unwrap();
    let tarball = d.path().join("saved.tar.gz");
    support::tar(&staging, &["-czf"], &tarball);
    let tree = build_dir(
        &recipe(
            d.path(),
            "saved",
            &format!("type = \"image-archive\"\nfile = \"{}\"", tarball.display()),
        ),
        &d.path().join("out"),
    );
    assert_opaque_result(&tree);
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("etc/build-distro.json")).unwrap())
            .unwrap();
    assert_eq!(prov["source"]["kind"], "image-archive");
    assert_eq!(prov["source"]["digest"], sha(&config).as_str());
}

/// What the proxy does once an export response has passed `STALL_AFTER` bytes.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Hold the rest back until told to go on (to interrupt mid-export).
    Stall,
    /// Drop the connection (an engine failing mid-export).
    Cut,
}

const STALL_AFTER: usize = 256 * 1024;

/// A Unix-socket proxy in front of the real engine, which steps in on the export
/// response: the only way to catch a build deterministically in the middle of an export.
struct Proxy {
    socket: PathBuf,
    /// An export response reached `STALL_AFTER` bytes.
    reached: mpsc::Receiver<()>,
    /// The client closed its side of the stalled export connection.
    client_closed: mpsc::Receiver<()>,
    resume: mpsc::Sender<()>,
}

fn engine_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) => h
            .strip_prefix("unix://")
            .expect("the proxy test needs a unix DOCKER_HOST")
            .to_string(),
        Err(_) => "/var/run/docker.sock".to_string(),
    }
}

fn start_proxy(dir: &Path, mode: Mode) -> Proxy {
    let socket = dir.join("engine.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (reached_tx, reached) = mpsc::channel();
    let (closed_tx, client_closed) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel::<()>();
    let resume_rx = Arc::new(Mutex::new(resume_rx));
    let engine = engine_socket();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = UnixStream::connect(&engine).unwrap();
            let exporting = Arc::new(AtomicBool::new(false));
            let stalled = Arc::new(AtomicBool::new(false));
            // Client → engine: spot the export request.
            {
                let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (exporting, stalled, closed_tx) =
                    (exporting.clone(), stalled.clone(), closed_tx.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = c.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            if stalled.load(Ordering::SeqCst) {
                                let _ = closed_tx.send(());
                            }
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        if buf[..n].windows(7).any(|w| w == b"/export") {
                            exporting.store(true, Ordering::SeqCst);
                        }
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
            // Engine → client: count the export response, then stall or cut.
            let (mut c, mut s) = (client, server);
            let (reached_tx, resume_rx) = (reached_tx.clone(), resume_rx.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut sent = 0usize;
                let mut done = false;
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c.write_all(&buf[..n]).is_err() {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if exporting.load(Ordering::SeqCst) && !done {
                        sent += n;
                        if sent >= STALL_AFTER {
                            done = true;
                            if mode == Mode::Cut {
                                let _ = c.shutdown(std::net::Shutdown::Both);
                                let _ = s.shutdown(std::net::Shutdown::Both);
                                let _ = reached_tx.send(());
                                return;
                            }
                            stalled.store(true, Ordering::SeqCst);
                            let _ = reached_tx.send(());
                            let _ = resume_rx.lock().unwrap().recv();
                        }
                    }
                }
            });
        }
    });
    Proxy {
        socket,
        reached,
        client_closed,
        resume,
    }
}

/// Generous bound so a broken build fails the test instead of hanging it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

#[test]
fn no_container_left_after_interrupt_mid_export() {
    crate::require_docker!();
    let img = layered_image("interrupt");
    let d = support::tempdir();
    let proxy = start_proxy(d.path(), Mode::Stall);
    let r = recipe(d.path(), "interrupted", &docker_source(&img.0));
    let child = bin()
        .arg("-q")
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(d.path().join("out"))
        .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
        // The export is what this tests (an overlay2 engine's layers would be read in place).
        .env("BUILD_DISTRO_DOCKER_EXPORT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy
        .reached
        .recv_timeout(PATIENCE)
        .expect("the build never got to the export");
    assert_eq!(
        containers_of(&img.0).len(),
        1,
        "mid-export, the container exists"
    );
    crate::support::ctrl_c(&child);
    // The build drops the export connection on its own, although no byte moves.
    proxy
        .client_closed
        .recv_timeout(PATIENCE)
        .expect("the build did not stop the export after SIGINT");
    let _ = proxy.resume.send(());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim(), "build-distro: error: interrupted");
    assert!(
        containers_of(&img.0).is_empty(),
        "a container was left behind"
    );
    assert!(!d.path().join("out/interrupted").exists());
}

#[test]
fn no_container_left_after_failed_export() {
    crate::require_docker!();
    let img = layered_image("cut");
    let d = support::tempdir();
    let proxy = start_proxy(d.path(), Mode::Cut);
    let r = recipe(d.path(), "cut", &docker_source(&img.0));
    let host = format!("unix://{}", proxy.socket.display());
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("BUILD_DISTRO_DOCKER_EXPORT", "1"),
    ];
    let (code, err) = build_fails(&r, &d.path().join("out"), &env);
    proxy.reached.try_recv().expect("the export was cut");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "build-distro: error: docker image {}: export failed: ",
            img.0
        )),
        "{err}"
    );
    assert!(
        containers_of(&img.0).is_empty(),
        "a container was left behind"
    );
}
