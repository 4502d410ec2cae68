//! `outdated`: against the real Debian mirror it must agree with apt; against a signed
//! archive served from loopback it must refuse bad signatures and bad indexes, keep exit
//! codes and the JSON shape, cache indexes; Alpine's index and a published version read
//! over ssh work the same way.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::apt_repo::{sh, sign, signing_key, Mirror};
use crate::support::sshd::SshLab;
use crate::support::{self, bin, csv_dates, run, today};

// ---------------------------------------------------------------------------------------
// A signed Debian-style archive generated at test time.

/// `dists/SUITE` under `root`: Packages.xz of `packages`, a Release listing it, and the
/// InRelease clear-signed with the key in `gnupg`.
fn write_suite(root: &Path, suite: &str, packages: &str, gnupg: &Path) {
    let dir = root.join("dists").join(suite);
    let bin = dir.join("main/binary-amd64");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("Packages"), packages).unwrap();
    sh(Command::new("xz")
        .args(["-k", "-f"])
        .arg(bin.join("Packages")));
    let xz = std::fs::read(bin.join("Packages.xz")).unwrap();
    use sha2::Digest;
    let release = format!(
        "Origin: Debian\nLabel: Debian\nSuite: {suite}\nCodename: {suite}\n\
         Date: Mon, 30 Nov 2026 00:00:00 UTC\nArchitectures: amd64\nComponents: main\n\
         SHA256:\n {} {} main/binary-amd64/Packages.xz\n {} {} main/binary-amd64/Packages\n",
        hex::encode(sha2::Sha256::digest(&xz)),
        xz.len(),
        hex::encode(sha2::Sha256::digest(packages.as_bytes())),
        packages.len(),
    );
    std::fs::write(dir.join("Release"), &release).unwrap();
    sign(&dir, gnupg);
}

fn stanza(name: &str, version: &str, arch: &str) -> String {
    format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\n")
}

fn status_stanza(name: &str, version: &str, arch: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: {arch}\n\n"
    )
}

/// The changelog of the test archive's openssl: the security upload names two CVEs and a
/// DSA; the installed (point-release) entry names one more, which an upgrade from it
/// does not bring.
const OPENSSL_CHANGELOG: &str = "\
openssl (3.0.17-1~deb12u3) bookworm-security; urgency=medium

  * Fix CVE-2025-9230 and CVE-2025-9232 (DSA-6015-1).

 -- Debian Security Team <team@security.debian.org>  Tue, 30 Sep 2025 20:00:00 +0200

openssl (3.0.11-1~deb12u2) bookworm; urgency=medium

  * Fix CVE-2023-5678.

 -- Maintainer <m@example.org>  Mon, 01 Jan 2024 12:00:00 +0100
";

/// The IDs outdated must report for libssl3 3.0.11-1~deb12u2 → 3.0.17-1~deb12u3.
const OPENSSL_FIXES: [&str; 3] = ["CVE-2025-9230", "CVE-2025-9232", "DSA-6015-1"];

/// A real `.deb` of `name` built with dpkg-deb under `archive/pool/`, and its Packages
/// stanza (Filename, Size, SHA256). `doc` is the changelog to ship in its doc directory,
/// or the sibling its doc directory links to (`dh_installdocs --link-doc`); `pad` bytes
/// of filler make it bigger.
fn deb_stanza(
    archive: &Path,
    name: &str,
    version: &str,
    doc: Result<&str, &str>,
    pad: usize,
) -> String {
    let build = archive.join("build").join(name);
    std::fs::create_dir_all(build.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(build.join("usr/share/doc")).unwrap();
    std::fs::write(
        build.join("DEBIAN/control"),
        format!(
            "Package: {name}\nSource: openssl\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: Test <t@example.org>\nDescription: test package\n"
        ),
    )
    .unwrap();
    match doc {
        Ok(changelog) => {
            let dir = build.join(format!("usr/share/doc/{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(changelog.as_bytes()).unwrap();
            std::fs::write(dir.join("changelog.Debian.gz"), gz.finish().unwrap()).unwrap();
        }
        Err(sibling) => {
            std::os::unix::fs::symlink(sibling, build.join(format!("usr/share/doc/{name}")))
                .unwrap();
        }
    }
    if pad > 0 {
        // Incompressible filler, so the sizes order the packages.
        let filler: Vec<u8> = (0..pad as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::create_dir_all(build.join("usr/lib")).unwrap();
        std::fs::write(build.join("usr/lib/filler"), filler).unwrap();
    }
    let rel = format!("pool/updates/main/o/openssl/{name}_{version}_amd64.deb");
    let deb = archive.join(&rel);
    std::fs::create_dir_all(deb.parent().unwrap()).unwrap();
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&build)
        .arg(&deb));
    std::fs::remove_dir_all(&build).unwrap();
    let bytes = std::fs::read(&deb).unwrap();
    use sha2::Digest;
    format!(
        "Package: {name}\nSource: openssl\nVersion: {version}\nArchitecture: amd64\n\
         Filename: {rel}\nSize: {}\nSHA256: {}\n\n",
        bytes.len(),
        hex::encode(sha2::Sha256::digest(&bytes))
    )
}

/// The archive: bookworm (point release), bookworm-updates (a newer tzdata) and
/// bookworm-security (a newer libssl3 and openssl, real packages: libssl3's doc directory
/// links to openssl's, which holds the changelog) under `root/debian` and
/// `root/debian-security`.
fn debian_archive(root: &Path, gnupg: &Path) {
    let deb = root.join("debian");
    write_suite(
        &deb,
        "bookworm",
        &[
            stanza("libssl3", "3.0.11-1~deb12u2", "amd64"),
            stanza("tzdata", "2024a-0+deb12u1", "all"),
            stanza("bash", "5.2.15-2+b2", "amd64"),
            stanza("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
        ]
        .concat(),
        gnupg,
    );
    write_suite(
        &deb,
        "bookworm-updates",
        &stanza("tzdata", "2025b-0+deb12u1", "all"),
        gnupg,
    );
    let security = root.join("debian-security");
    let v = "3.0.17-1~deb12u3";
    write_suite(
        &security,
        "bookworm-security",
        &[
            deb_stanza(&security, "libssl3", v, Err("openssl"), 0),
            deb_stanza(&security, "openssl", v, Ok(OPENSSL_CHANGELOG), 20000),
        ]
        .concat(),
        gnupg,
    );
}

/// A small Debian tree: os-release, a dpkg status of `installed`, sources naming only
/// `bookworm main`, and `keyring` trusted by apt.
fn debian_tree(dir: &Path, installed: &[(&str, &str, &str)], keyring: &[u8]) -> PathBuf {
    let t = dir.join("tree");
    for d in ["etc/apt/trusted.gpg.d", "var/lib/dpkg", "usr/lib"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(
        t.join("usr/lib/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", t.join("etc/os-release")).unwrap();
    let status: String = installed
        .iter()
        .map(|(n, v, a)| status_stanza(n, v, a))
        .collect();
    std::fs::write(t.join("var/lib/dpkg/status"), status).unwrap();
    std::fs::write(
        t.join("etc/apt/sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n",
    )
    .unwrap();
    std::fs::write(t.join("etc/apt/trusted.gpg.d/test.gpg"), keyring).unwrap();
    t
}

const STALE: &[(&str, &str, &str)] = &[
    ("libssl3", "3.0.11-1~deb12u2", "amd64"),
    ("tzdata", "2024a-0+deb12u1", "all"),
    ("bash", "5.2.15-2+b2", "amd64"),
    ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ("local-only", "1.0", "amd64"),
];

/// One test's world: the signed archive served on loopback, a tree, a private cache.
struct Lab {
    dir: tempfile::TempDir,
    mirror: Mirror,
    gnupg: PathBuf,
    keyring: Vec<u8>,
}

impl Lab {
    fn new() -> Lab {
        let dir = support::tempdir();
        let (gnupg, keyring) = signing_key(dir.path(), "archive");
        let root = dir.path().join("www");
        debian_archive(&root, &gnupg);
        let mirror = Mirror::serve(&root);
        Lab {
            dir,
            mirror,
            gnupg,
            keyring,
        }
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    fn tree(&self, name: &str, installed: &[(&str, &str, &str)]) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        debian_tree(&d, installed, &self.keyring)
    }

    fn mirror_flags(&self) -> Vec<String> {
        vec![
            "--mirror".into(),
            format!("{}/debian", self.mirror.url),
            "--security-mirror".into(),
            format!("{}/debian-security", self.mirror.url),
        ]
    }

    /// `outdated TARGET ARGS` with the lab's mirrors and cache. `--allow-eol`: these
    /// tests are about the mirror, and must keep comparing once bookworm's support ends.
    fn outdated(&self, target: &Path, args: &[&str]) -> (i32, String, String) {
        run(self.outdated_cmd(target).arg("--allow-eol").args(args))
    }

    fn outdated_cmd(&self, target: &Path) -> Command {
        let mut c = bin();
        c.arg("outdated")
            .arg(target)
            .args(self.mirror_flags())
            .env("BUILD_DISTRO_CACHE_DIR", self.dir.path().join("cache"));
        c
    }
}

fn one_line_error(code: i32, err: &str, needle: &str) {
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("build-distro: error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

fn gpg_available() -> bool {
    Command::new("gpg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("gpgv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

macro_rules! require_gpg {
    () => {
        if !gpg_available() {
            eprintln!("SKIPPED: needs gpg and gpgv (scripts/setup.sh installs them)");
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------
// Against the loopback archive.

#[test]
fn security_updates_exit_1_and_json_has_the_documented_shape() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let (code, out, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "a security update is pending: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["distro"], "debian-12");
    assert_eq!(
        v["suites"],
        serde_json::json!(["bookworm", "bookworm-updates", "bookworm-security"]),
        "-updates and -security are checked although the sources name only bookworm"
    );
    assert_eq!(
        v["packages"],
        serde_json::json!([
            {"name": "libssl3", "installed": "3.0.11-1~deb12u2", "available": "3.0.17-1~deb12u3",
             "suite": "bookworm-security", "security": true,
             "purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
             "fixes": OPENSSL_FIXES},
            {"name": "tzdata", "installed": "2024a-0+deb12u1", "available": "2025b-0+deb12u1",
             "suite": "bookworm-updates", "security": false,
             "purl": "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12"},
        ])
    );
    let (code, out, _) = lab.outdated(&tree, &[]);
    assert_eq!(code, 1);
    // The table (a fixes line under a package with IDs), then the support window.
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("support: "))
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("PACKAGE") && lines[0].ends_with("SECURITY"));
    assert!(lines[1].starts_with("libssl3 ") && lines[1].ends_with("bookworm-security  yes"));
    assert_eq!(lines[2], format!("  fixes: {}", OPENSSL_FIXES.join(" ")));
    assert!(lines[3].starts_with("tzdata ") && lines[3].ends_with("no"));
}

/// Issue 24: the IDs come from the candidate's changelog (libssl3's doc directory links
/// to openssl's, so openssl's package is read), are cached by the package's hash, and
/// `--no-fixes` fetches no package at all.
#[test]
fn fixes_come_from_the_candidate_changelog_and_are_cached() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let (code, first, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["packages"][0]["fixes"], serde_json::json!(OPENSSL_FIXES));
    // The changelog is cached: without the packages on the mirror the answer is the same.
    std::fs::remove_dir_all(lab.www().join("debian-security/pool")).unwrap();
    let (code, second, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(first, second);
    let (code, out, err) = run(bin()
        .arg("outdated")
        .arg(&tree)
        .args(lab.mirror_flags())
        .args(["--json", "--no-fixes"])
        .env("BUILD_DISTRO_CACHE_DIR", lab.dir.path().join("cache2")));
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["packages"][0].get("fixes").is_none(), "{out}");
}

/// Issue 24: `--format cyclonedx-vex` is valid CycloneDX 1.6 (the reference validator),
/// one vulnerability per ID affecting the installed package (installed version affected,
/// the update's unaffected), the component's purl the one the SBOM of the same tree has;
/// the same run gives the same bytes.
#[test]
fn the_vex_document_validates_and_names_the_sboms_purls() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let (code, out, err) = lab.outdated(&tree, &["--format", "cyclonedx-vex"]);
    assert_eq!(
        code, 1,
        "the gate's exit code holds for every format: {err}"
    );
    let vex = lab.dir.path().join("vex.json");
    std::fs::write(&vex, &out).unwrap();
    if let Some(venv) = crate::sbom::validators() {
        crate::sbom::validate_cyclonedx(&venv, &vex);
    }
    let v: Value = serde_json::from_str(&out).unwrap();
    let (code, sbom, err) = run(bin()
        .arg("sbom")
        .arg(&tree)
        .args(["--format", "cyclonedx-json"]));
    assert_eq!(code, 0, "{err}");
    let sbom: Value = serde_json::from_str(&sbom).unwrap();
    let libssl3 = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libssl3")
        .unwrap()["purl"]
        .clone();
    assert_eq!(v["components"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(v["components"][0]["purl"], libssl3);
    let ids: Vec<&str> = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, OPENSSL_FIXES);
    for x in v["vulnerabilities"].as_array().unwrap() {
        assert_eq!(x["analysis"]["state"], "in_triage");
        assert_eq!(
            x["affects"],
            serde_json::json!([{"ref": libssl3, "versions": [
                {"version": "3.0.11-1~deb12u2", "status": "affected"},
                {"version": "3.0.17-1~deb12u3", "status": "unaffected"}]}])
        );
    }
    let (_, again, _) = lab.outdated(&tree, &["--format", "cyclonedx-vex"]);
    assert_eq!(out, again, "deterministic");
    let (code, _, err) = lab.outdated(&tree, &["--format", "cyclonedx-vex", "--no-fixes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-fixes"), "{err}");
}

/// A package that does not match the signed index's hash is refused, naming its URL:
/// exit 2 and one line, never an empty list of fixes; one missing from the mirror too.
#[test]
fn a_package_that_does_not_match_the_index_is_refused() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let deb = lab
        .www()
        .join("debian-security/pool/updates/main/o/openssl/openssl_3.0.17-1~deb12u3_amd64.deb");
    let mut bytes = std::fs::read(&deb).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&deb, &bytes).unwrap();
    for args in [&["--json"][..], &[]] {
        let (code, out, err) = lab.outdated(&tree, args);
        one_line_error(code, &err, "sha256 mismatch");
        assert!(
            err.contains(
                "/debian-security/pool/updates/main/o/openssl/openssl_3.0.17-1~deb12u3_amd64.deb: "
            ),
            "{err}"
        );
        assert!(err.contains("refusing the package"), "{err}");
        assert!(out.is_empty(), "no half report: {out}");
    }
    std::fs::remove_file(&deb).unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "openssl_3.0.17-1~deb12u3_amd64.deb: not found");
}

#[test]
fn non_security_updates_change_the_exit_code_only_with_strict() {
    require_gpg!();
    let lab = Lab::new();
    let mut installed = STALE.to_vec();
    installed[0] = ("libssl3", "3.0.17-1~deb12u3", "amd64");
    let tree = lab.tree("t", &installed);
    let (code, out, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["packages"].as_array().unwrap().len(),
        1,
        "tzdata is listed"
    );
    let (code, _, _) = lab.outdated(&tree, &["--strict"]);
    assert_eq!(code, 1);
    installed[1] = ("tzdata", "2025b-0+deb12u1", "all");
    let current = lab.tree("current", &installed);
    let (code, out, err) = lab.outdated(&current, &["--strict", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["packages"], serde_json::json!([]));
}

#[test]
fn backports_named_in_the_sources_are_not_upgraded_to_as_apt_would_not() {
    require_gpg!();
    let lab = Lab::new();
    let deb = lab.www().join("debian");
    write_suite(
        &deb,
        "bookworm-backports",
        &stanza("bash", "5.3-1~bpo12+1", "amd64"),
        &lab.gnupg,
    );
    let dir = deb.join("dists/bookworm-backports");
    let release = std::fs::read_to_string(dir.join("Release")).unwrap();
    std::fs::write(
        dir.join("Release"),
        release.replace(
            "Date: ",
            "NotAutomatic: yes\nButAutomaticUpgrades: yes\nDate: ",
        ),
    )
    .unwrap();
    sign(&dir, &lab.gnupg);
    let mut installed = STALE.to_vec();
    installed[0] = ("libssl3", "3.0.17-1~deb12u3", "amd64");
    let tree = lab.tree("t", &installed);
    std::fs::write(
        tree.join("etc/apt/sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n\
         deb http://deb.debian.org/debian bookworm-backports main\n",
    )
    .unwrap();
    let (code, out, err) = lab.outdated(&tree, &["--json", "-v"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bookworm-backports: NotAutomatic"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["suites"],
        serde_json::json!(["bookworm", "bookworm-updates", "bookworm-security"])
    );
    let names: Vec<&str> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tzdata"], "bash stays: backports is opt-in");
}

#[test]
fn indexes_are_cached_so_a_second_run_fetches_only_the_release_files() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let (code, first, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "{err}");
    let cached: Vec<_> = std::fs::read_dir(lab.dir.path().join("cache/indexes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let (indexes, changelogs): (Vec<_>, Vec<_>) = cached.iter().partition(|n| n.len() == 64);
    assert_eq!(
        indexes.len(),
        3,
        "one Packages.xz per suite, named by sha256: {cached:?}"
    );
    assert_eq!(changelogs.len(), 1, "one changelog: {cached:?}");
    assert!(changelogs[0].ends_with(".changelog.gz"), "{cached:?}");
    // Without the index files on the mirror, only the cache can answer.
    for suite in [
        "debian/dists/bookworm",
        "debian/dists/bookworm-updates",
        "debian-security/dists/bookworm-security",
    ] {
        std::fs::remove_dir_all(lab.www().join(suite).join("main")).unwrap();
    }
    let (code, second, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(first, second);
}

#[test]
fn a_tampered_release_is_refused() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let p = lab
        .www()
        .join("debian-security/dists/bookworm-security/InRelease");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("Codename: bookworm-security", "Codename: bookworm-securitx"),
    )
    .unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "bad or missing signature");
    assert!(err.contains("bookworm-security/InRelease"), "{err}");
    // An unsigned Release served as InRelease is refused too.
    std::fs::copy(p.with_file_name("Release"), &p).unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "not a clear-signed file");
}

#[test]
fn an_expired_or_substituted_release_is_refused_although_signed() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let updates = lab.www().join("debian/dists/bookworm-updates");
    let release = std::fs::read_to_string(updates.join("Release")).unwrap();
    let expired = release.replace(
        "Date: ",
        "Valid-Until: Mon, 01 Jan 2024 00:00:00 UTC\nDate: ",
    );
    std::fs::write(updates.join("Release"), expired).unwrap();
    sign(&updates, &lab.gnupg);
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "expired (Valid-Until Mon, 01 Jan 2024");
    // bookworm's own (valid, signed) release served as bookworm-updates: a replay.
    for f in ["Release", "InRelease"] {
        std::fs::copy(
            lab.www().join("debian/dists/bookworm").join(f),
            updates.join(f),
        )
        .unwrap();
    }
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "refusing a substituted suite");
}

#[test]
fn a_release_signed_by_a_key_the_tree_does_not_trust_is_refused() {
    require_gpg!();
    let lab = Lab::new();
    let (_, other) = signing_key(lab.dir.path(), "stranger");
    let d = lab.dir.path().join("wrongkey");
    std::fs::create_dir_all(&d).unwrap();
    let tree = debian_tree(&d, STALE, &other);
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "bad or missing signature");
    assert!(err.contains("/dists/bookworm/InRelease"), "{err}");
}

#[test]
fn an_index_that_does_not_match_the_release_is_refused() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let bin = lab
        .www()
        .join("debian-security/dists/bookworm-security/main/binary-amd64");
    // Same size, other bytes: the hash must catch it.
    let mut xz = std::fs::read(bin.join("Packages.xz")).unwrap();
    let last = xz.len() - 1;
    xz[last] ^= 0xff;
    std::fs::write(bin.join("Packages.xz"), &xz).unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "sha256 mismatch");
    xz.extend_from_slice(b"more");
    std::fs::write(bin.join("Packages.xz"), &xz).unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "size mismatch");
    assert!(
        !lab.dir.path().join("cache/indexes").exists()
            || std::fs::read_dir(lab.dir.path().join("cache/indexes"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".tmp")),
        "nothing half-written left in the cache"
    );
}

#[test]
fn bad_input_gets_exit_2_and_one_line() {
    require_gpg!();
    let lab = Lab::new();
    let d = lab.dir.path();
    // Not a distro.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = lab.outdated(&empty, &[]);
    one_line_error(code, &err, "not a distro");
    // No package database.
    let nodb = d.join("nodb");
    std::fs::create_dir_all(nodb.join("etc")).unwrap();
    std::fs::write(nodb.join("etc/os-release"), "ID=debian\n").unwrap();
    let (code, _, err) = lab.outdated(&nodb, &[]);
    one_line_error(code, &err, "no package database");
    // Unknown distribution.
    let tree = lab.tree("fedora", STALE);
    std::fs::write(
        tree.join("usr/lib/os-release"),
        "ID=fedora\nVERSION_ID=40\n",
    )
    .unwrap();
    let (code, _, err) = lab.outdated(&tree, &[]);
    one_line_error(code, &err, "unknown distribution");
    // Mirror unreachable (a port nothing listens on).
    let tree = lab.tree("t", STALE);
    let (code, _, err) = run(bin()
        .arg("outdated")
        .arg(&tree)
        .args([
            "--mirror",
            "http://127.0.0.1:9/debian",
            "--security-mirror",
            "http://127.0.0.1:9/s",
        ])
        .env("BUILD_DISTRO_CACHE_DIR", d.join("cache")));
    one_line_error(code, &err, "mirror unreachable");
    // A truncated tarball.
    let tgz = d.join("t.tar.gz");
    support::tar(&tree, &["-czf"], &tgz);
    let full = std::fs::read(&tgz).unwrap();
    let cut = d.join("cut.tar.gz");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let (code, _, err) = lab.outdated(&cut, &[]);
    one_line_error(code, &err, "cut.tar.gz");
    // The whole tarball reads like the tree.
    let (code, out, err) = lab.outdated(&tgz, &["--json"]);
    assert_eq!(code, 1, "{err}");
    let (_, from_tree, _) = lab.outdated(&tree, &["--json"]);
    assert_eq!(out, from_tree);
}

// ---------------------------------------------------------------------------------------
// Alpine: an installed database and an APKINDEX.tar.gz generated here.

/// One gzip member holding a tar of `files`; `end` adds the end-of-archive blocks (the
/// signature segment has none).
fn gz_tar(files: &[(&str, &[u8])], end: bool) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    let raw = if end {
        tar.into_inner().unwrap()
    } else {
        tar.get_ref().clone()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// An RSA key pair made by openssl: (private PEM path, public PEM bytes).
fn apk_key(dir: &Path) -> (PathBuf, Vec<u8>) {
    let private = dir.join("apk-key.pem");
    sh(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&private)
        .arg("2048"));
    let public = sh(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&private));
    (private, public)
}

/// `APKINDEX.tar.gz` laid out as Alpine's: a signature segment (RSA over SHA-1 of the
/// rest, by `key_name`), then the member with DESCRIPTION and APKINDEX.
fn apkindex_tar_gz(index: &str, private: &Path, key_name: &str, dir: &Path) -> Vec<u8> {
    let body = gz_tar(
        &[("DESCRIPTION", b"v3.20"), ("APKINDEX", index.as_bytes())],
        true,
    );
    let data = dir.join("apk-signed");
    std::fs::write(&data, &body).unwrap();
    let sig = sh(Command::new("openssl")
        .args(["dgst", "-sha1", "-sign"])
        .arg(private)
        .arg(&data));
    let mut out = gz_tar(&[(&format!(".SIGN.RSA.{key_name}"), &sig)], false);
    out.extend(body);
    out
}

#[test]
fn alpine_installed_database_against_its_index() {
    let d = support::tempdir();
    let www = d.path().join("www");
    let main = www.join("alpine/v3.20/main/x86_64");
    std::fs::create_dir_all(&main).unwrap();
    let index = "P:musl\nV:1.2.5-r0\nA:x86_64\n\nP:libcrypto3\nV:3.3.2-r1\nA:x86_64\no:openssl\n\n\
                 P:busybox\nV:1.36.1-r29\nA:x86_64\n\nP:zlib\nV:1.3.1_p1-r0\nA:x86_64\n\n\
                 P:tzdata\nV:2024b-r0\nA:noarch\n\n";
    let (private, public) = apk_key(d.path());
    let signed = apkindex_tar_gz(index, &private, "test-5f1a.rsa.pub", d.path());
    std::fs::write(main.join("APKINDEX.tar.gz"), &signed).unwrap();
    let mirror = Mirror::serve(&www);
    let t = d.path().join("alpine");
    std::fs::create_dir_all(t.join("etc/apk/keys")).unwrap();
    std::fs::write(t.join("etc/apk/keys/test-5f1a.rsa.pub"), &public).unwrap();
    std::fs::create_dir_all(t.join("lib/apk/db")).unwrap();
    std::fs::write(
        t.join("etc/os-release"),
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n",
    )
    .unwrap();
    std::fs::write(
        t.join("etc/apk/repositories"),
        "https://dl-cdn.alpinelinux.org/alpine/v3.20/main\n",
    )
    .unwrap();
    std::fs::write(
        t.join("lib/apk/db/installed"),
        "C:Q1=\nP:musl\nV:1.2.5-r0\nA:x86_64\n\n\
         P:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\n\
         P:busybox\nV:1.36.1-r30\nA:x86_64\n\n\
         P:zlib\nV:1.3.1-r1\nA:x86_64\n\n\
         P:tzdata\nV:2024a-r0\nA:noarch\n\n",
    )
    .unwrap();
    let outdated = || {
        run(bin()
            .arg("outdated")
            .arg(&t)
            .args(["--mirror", &format!("{}/alpine", mirror.url), "--json"])
            .env("BUILD_DISTRO_CACHE_DIR", d.path().join("cache")))
    };
    let (code, out, err) = outdated();
    assert_eq!(code, 1, "a stable branch takes only fixes: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["distro"], "alpine-3.20.3");
    assert_eq!(v["suites"], serde_json::json!(["v3.20/main"]));
    let got: Vec<(String, String)> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["suite"], "v3.20/main");
            assert_eq!(p["security"], true);
            (
                p["name"].as_str().unwrap().to_string(),
                p["available"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // busybox: installed -r30 is newer than the index's -r29 (no downgrade); zlib:
    // `_p1` beats a higher revision of the plain version.
    assert_eq!(
        got,
        [
            ("libcrypto3".to_string(), "3.3.2-r1".to_string()),
            ("tzdata".to_string(), "2024b-r0".to_string()),
            ("zlib".to_string(), "1.3.1_p1-r0".to_string()),
        ]
    );

    // A changed index no longer matches its signature.
    let mut tampered = signed.clone();
    let last = tampered.len() - 9;
    tampered[last] ^= 0x01;
    std::fs::write(main.join("APKINDEX.tar.gz"), &tampered).unwrap();
    let (code, _, err) = outdated();
    one_line_error(code, &err, "bad or missing signature");
    // A key the tree does not trust.
    std::fs::write(main.join("APKINDEX.tar.gz"), &signed).unwrap();
    std::fs::rename(
        t.join("etc/apk/keys/test-5f1a.rsa.pub"),
        t.join("etc/apk/keys/other.rsa.pub"),
    )
    .unwrap();
    let (code, _, err) = outdated();
    one_line_error(
        code,
        &err,
        "test-5f1a.rsa.pub, a key the tree does not have",
    );
}

// ---------------------------------------------------------------------------------------
// A published version, read over ssh.

#[test]
fn a_published_version_is_read_over_ssh_like_the_tree() {
    require_gpg!();
    crate::require_sshd!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let ssh = SshLab::start(&[std::net::Ipv4Addr::LOCALHOST], &[39171], "");
    let dest = ssh.distros(39171).join("deb-12-0123456789ab");
    support::copy_tree(&tree, &dest);
    sh(Command::new("chown")
        .arg("-R")
        .arg("39171:39171")
        .arg(&dest));
    let remote = |path: &str, extra: &[&str]| {
        run(bin()
            .args([
                "outdated",
                "--to",
                "39171",
                "--path",
                path,
                "--ssh-host",
                "127.0.0.1",
                "--allow-eol",
            ])
            .args(ssh.ssh_flags())
            .args(lab.mirror_flags())
            .args(extra)
            .env("BUILD_DISTRO_CACHE_DIR", lab.dir.path().join("cache")))
    };
    let (code, out, err) = remote("deb-12-0123456789ab", &["--json"]);
    assert_eq!(code, 1, "{err}");
    let (_, local, _) = lab.outdated(&tree, &["--json"]);
    assert_eq!(out, local, "same answer as the tree");
    let (code, _, err) = remote("no-such-version", &[]);
    one_line_error(code, &err, "no distros/no-such-version");
    let (code, _, err) = remote("../etc", &[]);
    assert_eq!(code, 2, "{err}");
}

// ---------------------------------------------------------------------------------------
// The real Debian mirror: outdated must agree with apt.

fn debian_mirror_reachable() -> bool {
    use std::net::ToSocketAddrs;
    ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok())
}

/// `apt-get` against bookworm, -updates and -security from deb.debian.org, with its
/// lists, cache and status under `dir` and `status` (nothing of the host's apt).
fn apt_cmd(dir: &Path, status: &Path) -> Command {
    let lists = dir.join("lists");
    let cache = dir.join("cache");
    let parts = dir.join("empty");
    for d in [
        lists.join("partial"),
        cache.join("archives/partial"),
        parts.clone(),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let sources = dir.join("sources.list");
    let kr = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
    std::fs::write(
        &sources,
        format!(
            "deb {kr} http://deb.debian.org/debian bookworm main\n\
             deb {kr} http://deb.debian.org/debian bookworm-updates main\n\
             deb {kr} http://deb.debian.org/debian-security bookworm-security main\n"
        ),
    )
    .unwrap();
    let mut c = Command::new("apt-get");
    // Lists stored uncompressed whatever the host's apt.conf.d says: the test reads
    // them.
    c.args([
        "-q",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "Acquire::GzipIndexes=false",
    ])
    .arg("-o")
    .arg(format!("Dir::State::status={}", status.display()))
    .arg("-o")
    .arg(format!("Dir::Etc::SourceList={}", sources.display()))
    .arg("-o")
    .arg(format!("Dir::Etc::SourceParts={}", parts.display()))
    .arg("-o")
    .arg(format!("Dir::Etc::PreferencesParts={}", parts.display()))
    .arg("-o")
    .arg(format!(
        "Dir::Etc::Preferences={}",
        parts.join("none").display()
    ))
    .arg("-o")
    .arg(format!("Dir::State::Lists={}", lists.display()))
    .arg("-o")
    .arg(format!("Dir::Cache={}", cache.display()));
    c
}

/// The packages `apt-get -s dist-upgrade` upgrades from a security suite: name → version.
fn apt_security_upgrades(dir: &Path, status: &Path) -> BTreeSet<(String, String)> {
    let apt = |args: &[&str]| String::from_utf8(sh(apt_cmd(dir, status).args(args))).unwrap();
    apt(&["update"]);
    let sim = apt(&["-s", "dist-upgrade"]);
    // `Inst libssl3 [3.0.11-1~deb12u2] (3.0.17-1~deb12u3 Debian-Security:12/oldstable-security [amd64])`
    sim.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter(|l| l.contains(" ["))
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            let origin = rest.split_once('(')?.1;
            let version = origin.split_whitespace().next()?;
            origin.contains("-security").then(|| {
                (
                    name.split(':').next().unwrap().to_string(),
                    version.to_string(),
                )
            })
        })
        .collect()
}

/// The dependency fields of a package stanza, which go back with its version.
const RELATIONS: &[&str] = &[
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Replaces",
    "Provides",
    "Enhances",
];

/// A deb822 stanza's fields whose value is on one line (what the test rewrites).
fn stanza_fields(stanza: &str) -> Vec<(String, String)> {
    stanza
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn outdated_security(out: &str) -> BTreeSet<(String, String)> {
    let v: Value = serde_json::from_str(out).unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["security"] == true)
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["available"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn outdated_agrees_with_apt_on_a_stale_debian_tree_and_its_tarball() {
    crate::require_root!();
    if !debian_mirror_reachable() {
        eprintln!("SKIPPED: deb.debian.org is not reachable (CI reaches it)");
        return;
    }
    if !Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").exists() {
        eprintln!("SKIPPED: no debian-archive-keyring on the host (scripts/setup.sh installs it)");
        return;
    }
    let base = support::debian_tree();
    // Beside the fixture (same filesystem): a copy sharing its files (hard links), where
    // only the status file is replaced.
    let d = tempfile::Builder::new()
        .prefix("bd-test.")
        .tempdir_in(support::fixtures_dir())
        .unwrap();
    let tree = d.path().join("tree");
    sh(Command::new("cp").arg("-al").arg(&base).arg(&tree));
    let apt_dir = d.path().join("apt");
    // First apt's view of the indexes, to take the point-release versions from.
    let status = tree.join("var/lib/dpkg/status");
    let fresh = std::fs::read_to_string(&status).unwrap();
    apt_security_upgrades(&apt_dir, &status);
    let lists = apt_dir.join("lists");
    // Each index as `package:arch` -> its stanza's single-line fields.
    let index = |suffix: &str| -> std::collections::HashMap<String, Vec<(String, String)>> {
        let f = std::fs::read_dir(&lists)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("apt fetched no {suffix}"));
        let text = std::fs::read_to_string(&f).unwrap();
        text.split("\n\n")
            .map(stanza_fields)
            .filter_map(|fields| {
                let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let arch = get("Architecture")?;
                let key = format!("{}:{arch}", get("Package")?);
                (arch != "i386").then_some((key, fields))
            })
            .collect()
    };
    let point = index("_debian_dists_bookworm_main_binary-amd64_Packages");
    let security = index("_debian-security_dists_bookworm-security_main_binary-amd64_Packages");
    // The stale status: every installed package that bookworm-security has fixed goes
    // back to its bookworm point-release version, with that version's relationships
    // (a newer `perl` depends on the newer `perl-base`: apt would call the status broken).
    let mut stale = String::new();
    let mut set_back = 0;
    for para in fresh.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let fields = stanza_fields(para);
        let field = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let key = format!("{}:{}", field("Package"), field("Architecture"));
        let mut para = para.to_string();
        if let (Some(_), Some(old)) = (security.get(&key), point.get(&key)) {
            para = para
                .lines()
                .filter(|l| !RELATIONS.iter().any(|r| l.starts_with(&format!("{r}: "))))
                .collect::<Vec<_>>()
                .join("\n");
            for (name, value) in old {
                if name == "Version" {
                    para = para.replace(
                        &format!("\nVersion: {}\n", field("Version")),
                        &format!("\nVersion: {value}\n"),
                    );
                } else if RELATIONS.contains(&name.as_str()) {
                    para.push_str(&format!("\n{name}: {value}"));
                }
            }
            set_back += 1;
        }
        stale.push_str(&para);
        stale.push_str("\n\n");
    }
    assert!(
        set_back > 0,
        "bookworm-security fixes none of the installed packages?"
    );
    std::fs::remove_file(&status).unwrap();
    std::fs::write(&status, &stale).unwrap();

    let want = apt_security_upgrades(&apt_dir, &status);
    assert!(
        !want.is_empty(),
        "apt sees no security upgrade in the stale status"
    );
    let cache = d.path().join("cache");
    let (code, out, err) = run(bin()
        .arg("outdated")
        .arg(&tree)
        .args(["--json", "--allow-eol"])
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        outdated_security(&out),
        want,
        "outdated and apt disagree on the tree"
    );

    let tgz = d.path().join("stale.tar.gz");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .args(["--use-compress-program", "gzip -1", "-cf"])
        .arg(&tgz)
        .arg("."));
    let (code, from_tar, err) = run(bin()
        .arg("outdated")
        .arg(&tgz)
        .args(["--json", "--allow-eol"])
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 1, "{err}");
    assert_eq!(from_tar, out, "the tarball reads like the tree");
}

// ---------------------------------------------------------------------------------------
// Support windows (issue 24): the release's dates from distro-info-data, the packages'
// support from debian-security-support, read from Debian's files, never constants.

/// What the host's table says of bookworm today, in the words `outdated` uses.
fn bookworm_expected(table: &str) -> (&'static str, String) {
    let (_, eol, lts) = csv_dates(table, "bookworm");
    let today = today();
    if today < eol {
        (
            "supported",
            format!("supported until {eol}, then LTS until {lts}"),
        )
    } else if today < lts {
        ("lts", format!("LTS only since {eol}, until {lts}"))
    } else {
        ("end-of-life", format!("end of life since {lts}"))
    }
}

/// A directory holding `files`.
fn data_dir(parent: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

#[test]
fn the_release_window_comes_from_distro_info_data() {
    require_gpg!();
    let table = "/usr/share/distro-info/debian.csv";
    if !Path::new(table).exists() {
        eprintln!("SKIPPED: no {table} (scripts/setup.sh installs distro-info-data)");
        return;
    }
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let (state, words) = bookworm_expected(table);
    let (code, out, err) = lab.outdated(&tree, &["--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v["support"]["release"];
    assert_eq!(r["release"], "debian 12 (bookworm)");
    assert_eq!(r["state"], state, "{r}");
    assert_eq!(r["data"], table);
    assert!(r["message"].as_str().unwrap().contains(&words), "{r}");
    let (_, text, _) = lab.outdated(&tree, &[]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("support: debian 12 (bookworm): ") && l.contains(&words)),
        "{text}"
    );
    // The host's debian-security-support lists for Debian 12 are read (setup.sh installs
    // the package), and none of these packages is on them.
    let lists = &v["support"]["packages"];
    if Path::new("/usr/share/debian-security-support").is_dir() {
        assert!(
            lists["lists"].as_array().unwrap()[0]
                .as_str()
                .unwrap()
                .starts_with("/usr/share/debian-security-support/security-support"),
            "{lists}"
        );
        assert_eq!(lists["packages"], serde_json::json!([]));
    }
}

/// A release past its end of life exits 1 with nothing pending, and is not compared with
/// the mirror unless --allow-eol says so.
#[test]
fn a_release_past_its_end_of_life_exits_1_even_with_nothing_pending() {
    require_gpg!();
    let lab = Lab::new();
    let mut installed = STALE.to_vec();
    installed[0] = ("libssl3", "3.0.17-1~deb12u3", "amd64");
    installed[1] = ("tzdata", "2025b-0+deb12u1", "all");
    let tree = lab.tree("t", &installed);
    // Nothing pending by the mirror, and bookworm ended (in this table) in 2020.
    let info = data_dir(
        lab.dir.path(),
        "info",
        &[(
            "debian.csv",
            "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
             12,Bookworm,bookworm,2015-01-01,2016-01-01,2019-01-01,2020-01-01\n",
        )],
    );
    let info_flag = ["--distro-info", info.to_str().unwrap()];
    let (code, out, err) = run(lab.outdated_cmd(&tree).args(info_flag).arg("--json"));
    assert_eq!(code, 1, "end of life is exit 1: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["support"]["release"]["state"], "end-of-life");
    assert_eq!(v["support"]["release"]["since"], "2020-01-01");
    assert_eq!(v["suites"], serde_json::json!([]), "not compared: {out}");
    assert!(err.contains("past its end of security support"), "{err}");
    let (code, out, _) = run(lab.outdated_cmd(&tree).args(info_flag));
    assert_eq!(code, 1);
    assert!(
        out.contains("support: debian 12 (bookworm): end of life since 2020-01-01"),
        "{out}"
    );
    // Accepted knowingly: compared, and nothing is pending.
    let (code, out, err) = run(lab
        .outdated_cmd(&tree)
        .args(info_flag)
        .args(["--allow-eol", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["suites"].as_array().unwrap().len(), 3, "{out}");
    // The same tree within its window passes, and a pending fix still fails it.
    let fresh = data_dir(
        lab.dir.path(),
        "fresh",
        &[(
            "debian.csv",
            "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
             12,Bookworm,bookworm,2015-01-01,2016-01-01,2999-01-01,2999-06-01\n",
        )],
    );
    let fresh_flag = ["--distro-info", fresh.to_str().unwrap()];
    let (code, _, err) = run(lab.outdated_cmd(&tree).args(fresh_flag));
    assert_eq!(code, 0, "{err}");
    let stale = lab.tree("stale", STALE);
    let (code, _, _) = run(lab.outdated_cmd(&stale).args(fresh_flag));
    assert_eq!(code, 1);
}

/// Buster (Debian 10) by the host's real table: past LTS, exit 1, and no mirror is asked
/// (its suites are gone from deb.debian.org).
#[test]
fn buster_by_the_real_table_is_end_of_life() {
    let table = "/usr/share/distro-info/debian.csv";
    if !Path::new(table).exists() {
        eprintln!("SKIPPED: no {table} (scripts/setup.sh installs distro-info-data)");
        return;
    }
    let (_, _, lts) = csv_dates(table, "buster");
    let d = support::tempdir();
    let t = buster_tree(d.path());
    // An unreachable mirror: asking it would be exit 2.
    let (code, out, err) = run(bin()
        .arg("outdated")
        .arg(&t)
        .args([
            "--mirror",
            "http://127.0.0.1:1/debian",
            "--security-mirror",
            "http://127.0.0.1:1/s",
        ])
        .env("BUILD_DISTRO_CACHE_DIR", d.path().join("cache")));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "support: debian 10 (buster): end of life since {lts}"
        )),
        "{out}"
    );
    // check states it too, as JSON beside the report.
    let (_, out, _) = run(bin().arg("check").arg(&t).arg("--json"));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["support"]["release"]["state"], "end-of-life", "{out}");
    assert!(v["summary"].is_object(), "the report is still there: {out}");
}

/// Installed packages on a security-support list are reported by their source package,
/// with the list's dates and details.
#[test]
fn packages_on_debian_security_support_lists_are_reported() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let lists = data_dir(
        lab.dir.path(),
        "lists",
        &[(
            "security-support.deb12",
            "# a list in the layout of Debian 13's package\n\
             tzdata    non-supported  2024a-0+deb12u1  2020-02-02  https://example.org/why\n\
             ba.*      limited  Only for trusted input\n\
             zlib      supported  an exception\n",
        )],
    );
    let flag = ["--security-support", lists.to_str().unwrap()];
    let (code, out, err) = run(lab
        .outdated_cmd(&tree)
        .args(flag)
        .args(["--json", "--allow-eol"]));
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["support"]["packages"]["packages"],
        serde_json::json!([
            {"package": "bash", "version": "5.2.15-2+b2", "source": "bash", "status": "limited",
             "date": null, "details": "Only for trusted input"},
            {"package": "tzdata", "version": "2024a-0+deb12u1", "source": "tzdata", "status": "ended",
             "date": "2020-02-02", "details": "https://example.org/why"},
        ])
    );
    let (_, text, _) = run(lab.outdated_cmd(&tree).args(flag).arg("--allow-eol"));
    assert!(
        text.contains("support: 2 installed package(s) with limited or ended security support")
            && text.contains("  tzdata 2024a-0+deb12u1 (source tzdata): ended 2020-02-02: https://example.org/why"),
        "{text}"
    );
}

#[test]
fn missing_or_malformed_support_data_is_exit_2_naming_the_file() {
    require_gpg!();
    let lab = Lab::new();
    let tree = lab.tree("t", STALE);
    let empty = data_dir(lab.dir.path(), "empty", &[]);
    let e = empty.to_str().unwrap();
    let (code, _, err) = run(lab.outdated_cmd(&tree).args(["--distro-info", e]));
    one_line_error(code, &err, &format!("{e}/debian.csv"));
    let bad = data_dir(
        lab.dir.path(),
        "bad",
        &[("debian.csv", "version,codename,series,created,release,eol\n12,Bookworm,bookworm,2021-08-14,soon,2026-07-11\n")],
    );
    let (code, _, err) = run(lab
        .outdated_cmd(&tree)
        .args(["--distro-info", bad.to_str().unwrap()]));
    one_line_error(
        code,
        &err,
        &format!("{}/debian.csv:2: release \"soon\"", bad.display()),
    );
    let (code, _, err) = run(lab.outdated_cmd(&tree).args(["--security-support", e]));
    one_line_error(code, &err, &format!("{e}/security-support.deb12"));
    let lists = data_dir(
        lab.dir.path(),
        "lists",
        &[("security-support.deb12", "tzdata gone\n")],
    );
    let (code, _, err) = run(lab
        .outdated_cmd(&tree)
        .args(["--security-support", lists.to_str().unwrap()]));
    one_line_error(code, &err, "security-support.deb12:1: tzdata");
    // check and build read the same data the same way.
    let (code, _, err) = run(bin().arg("check").arg(&tree).args(["--distro-info", e]));
    one_line_error(code, &err, &format!("{e}/debian.csv"));
}

// ---------------------------------------------------------------------------------------
// The fleet: `distros audit` over the API and ssh.

/// A tree copied into a storage container's `distros/NAME`, owned by its user.
fn publish_tree(ssh: &SshLab, storage: u32, name: &str, tree: &Path) {
    let dest = ssh.distros(storage).join(name);
    support::copy_tree(tree, &dest);
    sh(Command::new("chown")
        .arg("-R")
        .arg(format!("{storage}:{storage}"))
        .arg(&dest));
}

/// A Debian 10 tree: past its end of life by the host's table.
fn buster_tree(dir: &Path) -> PathBuf {
    let t = dir.join("buster");
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        t.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"10\"\nVERSION_CODENAME=buster\n",
    )
    .unwrap();
    std::fs::write(
        t.join("var/lib/dpkg/status"),
        status_stanza("libssl1.1", "1.1.1n-0+deb10u6", "amd64"),
    )
    .unwrap();
    t
}

/// Two storage containers, three distros: a current one, one with a security fix
/// pending, one past its end of life; each with the containers that use it.
#[test]
fn distros_audit_reports_each_distro_of_the_fleet_with_its_containers() {
    use crate::support::fake_api::{FakeApi, USER};
    require_gpg!();
    crate::require_sshd!();
    if !Path::new("/usr/share/distro-info/debian.csv").exists() {
        eprintln!("SKIPPED: no distro-info-data (scripts/setup.sh installs it)");
        return;
    }
    const A: u32 = 39181;
    const B: u32 = 39182;
    let lab = Lab::new();
    let mut current = STALE.to_vec();
    current[0] = ("libssl3", "3.0.17-1~deb12u3", "amd64");
    let fresh = lab.tree("fresh", &current);
    let stale = lab.tree("stale", STALE);
    let buster = buster_tree(lab.dir.path());
    let ssh = SshLab::start(&[std::net::Ipv4Addr::LOCALHOST], &[A, B], "");
    publish_tree(&ssh, A, "web-0123456789ab", &fresh);
    publish_tree(&ssh, A, "web-ba9876543210", &stale);
    publish_tree(&ssh, B, "legacy", &buster);

    let api = FakeApi::start();
    api.add_container(A, "store-a", USER, "s1", true);
    api.add_container(B, "store-b", USER, "s2", true);
    for (uid, server) in [(39191, "s1"), (39192, "s1"), (39193, "s1"), (39194, "s2")] {
        api.add_container(uid, &format!("web{uid}"), USER, server, false);
    }
    let fresh_id = api.add_distro(A, "web-new", "web-0123456789ab");
    let stale_id = api.add_distro(A, "web-old", "web-ba9876543210");
    let eol_id = api.add_distro(B, "legacy", "legacy");
    api.set_custom_distro(39191, Some(fresh_id));
    api.set_custom_distro(39192, Some(stale_id));
    api.set_custom_distro(39193, Some(stale_id));

    let flags: Vec<String> = ["--ssh-host".to_string(), "127.0.0.1".into()]
        .into_iter()
        .chain(ssh.ssh_flags())
        .chain(lab.mirror_flags())
        .collect();
    let audit = |extra: &[&str]| {
        let mut args = vec!["distros", "audit"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        run(api
            .cmd(&args)
            .env("BUILD_DISTRO_CACHE_DIR", lab.dir.path().join("cache")))
    };
    let (code, out, err) = audit(&["--json"]);
    assert_eq!(code, 1, "two distros need a rebuild: {out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let d = v["distros"].as_array().unwrap();
    assert_eq!(d.len(), 3, "{out}");
    let by_id = |id: u64| d.iter().find(|x| x["id"] == id).unwrap();
    let (f, s, e) = (by_id(fresh_id), by_id(stale_id), by_id(eol_id));
    assert_eq!(f["storage"], A);
    assert_eq!(f["path"], "web-0123456789ab");
    assert_eq!(f["used_by"], serde_json::json!([39191]));
    assert_eq!(f["needs_rebuild"], false, "{f}");
    assert_eq!(
        f["report"]["support"]["release"]["release"],
        "debian 12 (bookworm)"
    );
    assert_eq!(s["used_by"], serde_json::json!([39192, 39193]));
    assert_eq!(s["needs_rebuild"], true);
    let pending: Vec<&str> = s["report"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["security"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["libssl3"], "{s}");
    assert_eq!(
        s["report"]["packages"][0]["fixes"],
        serde_json::json!(OPENSSL_FIXES),
        "the CVE IDs of the pending fix: {s}"
    );
    assert_eq!(e["storage"], B);
    assert_eq!(e["used_by"], serde_json::json!([]));
    assert_eq!(e["needs_rebuild"], true);
    assert_eq!(
        e["report"]["support"]["release"]["state"], "end-of-life",
        "{e}"
    );
    for x in [f, s, e] {
        assert_eq!(x["error"], Value::Null, "{x}");
    }

    // The table: one row a distro, a verdict each, and a summary.
    let (code, text, _) = audit(&[]);
    assert_eq!(code, 1);
    let row = |id: u64| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"))
            .to_string()
    };
    let cols = |id: u64| {
        row(id)
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cols(fresh_id)[cols(fresh_id).len() - 2..],
        ["39191", "ok"],
        "{text}"
    );
    assert!(
        row(stale_id).contains("libssl3")
            && row(stale_id).contains("39192,39193")
            && row(stale_id).ends_with("REBUILD"),
        "{text}"
    );
    assert!(
        row(eol_id).contains("END OF LIFE since") && row(eol_id).ends_with("REBUILD"),
        "{text}"
    );
    assert!(
        text.contains("3 distro(s): 2 need a rebuild, 0 could not be audited"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{stale_id} web-old: libssl3 3.0.11-1~deb12u2 -> 3.0.17-1~deb12u3 fixes {}",
            OPENSSL_FIXES.join(" ")
        )),
        "{text}"
    );

    // A registered version whose directory is gone is an error (exit 2); the others are
    // still audited.
    let gone = api.add_distro(B, "gone", "gone-0123456789ab");
    let (code, out, err) = audit(&["--json"]);
    assert_eq!(code, 2, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let d = v["distros"].as_array().unwrap();
    assert_eq!(d.len(), 4);
    let g = d.iter().find(|x| x["id"] == gone).unwrap();
    assert!(
        g["error"].as_str().unwrap().contains("gone-0123456789ab"),
        "{g}"
    );
    assert!(
        err.contains(&format!("distro {gone} (gone, storage {B})")),
        "{err}"
    );
    assert_eq!(
        d.iter().filter(|x| x["needs_rebuild"] == true).count(),
        2,
        "the others are still judged"
    );
    // Only the current distro left: exit 0.
    for id in [stale_id, eol_id, gone] {
        api.state().distros.remove(&id);
    }
    let (code, _, err) = audit(&[]);
    assert_eq!(code, 0, "{err}");
}

/// Issue 24, on the real mirror: the pending security updates of the stale bookworm
/// fixture list CVE IDs, and each package's are exactly the IDs its changelog names above
/// the installed version's entry, read from the same package fetched by apt and unpacked
/// by dpkg-deb.
#[test]
fn fixes_of_a_stale_tree_are_the_ids_its_updates_changelogs_name() {
    crate::require_root!();
    if !debian_mirror_reachable() {
        eprintln!("SKIPPED: deb.debian.org is not reachable (CI reaches it)");
        return;
    }
    if !Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").exists() {
        eprintln!("SKIPPED: no debian-archive-keyring on the host (scripts/setup.sh installs it)");
        return;
    }
    let tree = support::stale_bookworm_tree();
    let d = support::tempdir();
    let (code, out, err) = run(bin()
        .arg("outdated")
        .arg(&tree)
        .arg("--json")
        .env("BUILD_DISTRO_CACHE_DIR", d.path().join("cache")));
    assert_eq!(
        code, 1,
        "the stale fixture has security updates pending: {err}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let security: Vec<&Value> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["security"] == true)
        .collect();
    assert!(
        security.iter().all(|p| p["fixes"].is_array()),
        "every security update has its list: {out}"
    );
    let with_ids: Vec<&&Value> = security
        .iter()
        .filter(|p| !p["fixes"].as_array().unwrap().is_empty())
        .collect();
    assert!(!with_ids.is_empty(), "no pending update names a CVE: {out}");
    // Packages whose own doc directory holds the changelog (not a link to a sibling's),
    // openssl's first when pending; two are enough.
    let mut order: Vec<&&Value> = with_ids.clone();
    order.sort_by_key(|p| !p["name"].as_str().unwrap().contains("ssl"));
    let id =
        regex::Regex::new(r"\b(?:CVE-[0-9]{4}-[0-9]{4,}|DSA-[0-9]+-[0-9]+|DLA-[0-9]+-[0-9]+)\b")
            .unwrap();
    let status = tree.join("var/lib/dpkg/status");
    let apt_dir = d.path().join("apt");
    apt_security_upgrades(&apt_dir, &status);
    let mut checked = 0;
    for p in order {
        let name = p["name"].as_str().unwrap();
        let (installed, available) = (
            p["installed"].as_str().unwrap(),
            p["available"].as_str().unwrap(),
        );
        if installed.contains("+b") || available.contains("+b") {
            continue; // a binNMU: the changelog's versions are the source's
        }
        let dl = d.path().join("dl").join(name);
        std::fs::create_dir_all(&dl).unwrap();
        sh(apt_cmd(&apt_dir, &status)
            .current_dir(&dl)
            .args(["download", &format!("{name}={available}")]));
        let deb = std::fs::read_dir(&dl)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let x = dl.join("x");
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
        let log = x.join(format!("usr/share/doc/{name}/changelog.Debian.gz"));
        if std::fs::symlink_metadata(x.join(format!("usr/share/doc/{name}")))
            .is_ok_and(|m| m.file_type().is_symlink())
            || !log.is_file()
        {
            continue;
        }
        let text = String::from_utf8_lossy(&sh(Command::new("zcat").arg(&log))).into_owned();
        // The text above the installed version's entry: what the upgrade brings.
        let cut = text
            .lines()
            .position(|l| !l.starts_with(' ') && l.contains(&format!(" ({installed}) ")))
            .unwrap_or_else(|| panic!("{name}: no entry for {installed} in its changelog"));
        let newer = text.lines().take(cut).collect::<Vec<_>>().join("\n");
        let want: BTreeSet<&str> = id.find_iter(&newer).map(|m| m.as_str()).collect();
        let got: BTreeSet<&str> = p["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{name} {installed} -> {available}");
        checked += 1;
        if checked == 2 {
            break;
        }
    }
    assert!(
        checked > 0,
        "no pending package with its own changelog to compare: {out}"
    );
}
