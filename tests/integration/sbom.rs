//! SBOMs: validated by the formats' reference validators (PyPI's `spdx-tools` and
//! `cyclonedx-python-lib`, in the venv `scripts/setup.sh` makes), exact purls of known
//! packages of the real Debian fixture, the same bytes for a tree and its tarball, and
//! `build` writing both files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{self, bin, run};

/// The validators' venv, or `None` (the caller skips, saying why).
pub fn validators() -> Option<PathBuf> {
    let venv = std::env::var_os("BUILD_DISTRO_SBOM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/build-distro-venv"));
    if venv.join("bin/pyspdxtools").is_file() && venv.join("bin/python").is_file() {
        Some(venv)
    } else {
        eprintln!(
            "SKIPPED validation: no SBOM validators in {} (scripts/setup.sh installs them)",
            venv.display()
        );
        None
    }
}

/// Both documents pass the reference validators, and every purl is in the canonical
/// form of the reference purl implementation (packageurl-python, which cyclonedx uses).
fn validate(venv: &Path, spdx: &Path, cdx: &Path) {
    validate_spdx(venv, spdx);
    validate_cyclonedx(venv, cdx);
}

fn validate_spdx(venv: &Path, spdx: &Path) {
    let out = Command::new(venv.join("bin/pyspdxtools"))
        .arg("-i")
        .arg(spdx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools rejects {}:\n{}{}",
        spdx.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CycloneDX 1.6 document (an SBOM, or `outdated`'s VEX) passes the reference
/// validator, its component purls in canonical form.
pub fn validate_cyclonedx(venv: &Path, cdx: &Path) {
    const CHECK: &str = r#"
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
text = open(sys.argv[1]).read()
err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
if err:
    sys.exit("cyclonedx 1.6: %s" % err)
for c in json.loads(text)["components"]:
    p = c.get("purl")
    if p and PackageURL.from_string(p).to_string() != p:
        sys.exit("not canonical: %s (reference: %s)" % (p, PackageURL.from_string(p).to_string()))
print("ok")
"#;
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", CHECK])
        .arg(cdx)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{} is not valid:\n{}{}",
        cdx.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `build-distro sbom TARGET --format FORMAT` on stdout.
fn sbom(target: &Path, format: &str, epoch: Option<&str>) -> Vec<u8> {
    let mut c = bin();
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    let out = c
        .arg("sbom")
        .arg(target)
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbom {} failed: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Both documents of `target`, written with `-o`, validated when the venv is there.
fn both(target: &Path, dir: &Path) -> (Value, Value) {
    let spdx = dir.join("x.spdx.json");
    let cdx = dir.join("x.cdx.json");
    for (format, file) in [("spdx-json", &spdx), ("cyclonedx-json", &cdx)] {
        let (code, out, err) = run(bin()
            .arg("sbom")
            .arg(target)
            .args(["--format", format, "-o"])
            .arg(file));
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty(), "-o still printed: {out}");
    }
    if let Some(venv) = validators() {
        validate(&venv, &spdx, &cdx);
    }
    let read = |p: &Path| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    (read(&spdx), read(&cdx))
}

fn spdx_purls(doc: &Value) -> Vec<String> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .map(|r| r["referenceLocator"].as_str().unwrap().to_string())
        .collect()
}

fn cdx_purls(doc: &Value) -> Vec<String> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str().map(str::to_string))
        .collect()
}

/// The SHA-256 a document gives the file at `path`.
fn spdx_sha256(doc: &Value, path: &str) -> Option<String> {
    doc["files"].as_array()?.iter().find_map(|f| {
        (f["fileName"] == format!(".{path}")).then(|| {
            f["checksums"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["algorithm"] == "SHA256")
                .unwrap()["checksumValue"]
                .as_str()
                .unwrap()
                .to_string()
        })
    })
}

fn cdx_sha256(doc: &Value, path: &str) -> Option<String> {
    doc["components"].as_array()?.iter().find_map(|c| {
        (c["type"] == "file" && c["name"] == path).then(|| {
            c["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["alg"] == "SHA-256")
                .unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
    })
}

fn sha256_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// dpkg's own record of a package in the tree: version, architecture, source, source
/// version (dpkg-query fills the source fields in when the status file has none).
fn dpkg_fields(tree: &Path, package: &str) -> [String; 4] {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            tree.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}",
            package,
        ])
        .output()
        .expect("run dpkg-query");
    assert!(out.status.success(), "{package} is not in the fixture");
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<String> = text.split('\t').map(str::to_string).collect();
    [f[0].clone(), f[1].clone(), f[2].clone(), f[3].clone()]
}

/// Percent-encoding of the characters Debian versions and names use that a purl encodes.
fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace('@', "%40")
}

#[test]
fn debian_sboms_validate_and_name_packages_exactly() {
    let tree = support::debian_tree();
    let d = support::tempdir();
    let (spdx, cdx) = both(&tree, d.path());
    let purls = spdx_purls(&spdx);
    assert_eq!(
        purls,
        cdx_purls(&cdx),
        "the two formats list other packages"
    );
    let inv = build_distro::inventory::read(&tree).unwrap();
    assert_eq!(purls.len(), inv.packages.len());

    // libc6 comes from glibc at its own version: upstream is the source name alone.
    let [v, arch, src, _] = dpkg_fields(&tree, "libc6");
    assert_eq!(src, "glibc");
    let libc = format!(
        "pkg:deb/debian/libc6@{}?arch={arch}&distro=debian-12&upstream=glibc",
        enc(&v)
    );
    assert!(purls.contains(&libc), "{libc} missing");
    // bsdutils has an epoch (kept as it is: the purl spec never encodes `:`) that its
    // source util-linux's version lacks: upstream names both.
    let [v, arch, src, sv] = dpkg_fields(&tree, "bsdutils");
    assert!(v.starts_with("1:"), "bsdutils {v} lost its epoch");
    assert_eq!(src, "util-linux");
    let bsdutils = format!(
        "pkg:deb/debian/bsdutils@{}?arch={arch}&distro=debian-12&upstream=util-linux%40{}",
        enc(&v),
        enc(&sv)
    );
    assert!(purls.contains(&bsdutils), "{bsdutils} missing");
    // `+` in a name is encoded too; its SPDX id has only letters, digits, `.` and `-`.
    let [v, arch, _, _] = dpkg_fields(&tree, "libstdc++6");
    let prefix = format!(
        "pkg:deb/debian/libstdc%2B%2B6@{}?arch={arch}&distro=debian-12&upstream=gcc-12",
        enc(&v)
    );
    assert!(
        purls.iter().any(|p| p.starts_with(&prefix)),
        "{prefix} missing"
    );
    for p in spdx["packages"].as_array().unwrap() {
        let id = p["SPDXID"].as_str().unwrap();
        let rest = id.strip_prefix("SPDXRef-").unwrap();
        assert!(
            rest.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
    }

    // The operating system, in both.
    let os = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["primaryPackagePurpose"] == "OPERATING-SYSTEM")
        .unwrap();
    assert_eq!(
        (&os["name"], &os["versionInfo"]),
        (&"debian".into(), &"12".into())
    );
    assert!(cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "operating-system" && c["name"] == "debian" && c["version"] == "12"));

    // The files build-distro added, with the hashes of the bytes on disk.
    let module = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| format!("/{d}/libnss_unbit.so.2"))
        .find(|p| tree.join(&p[1..]).is_file())
        .expect("the fixture has the NSS module");
    for path in [
        "/opt/unbit/uwsgi/uwsgi",
        "/opt/unbit/uwsgi/shortcuts.ini",
        &module,
    ] {
        let want = sha256_of(&std::fs::read(tree.join(&path[1..])).unwrap());
        assert_eq!(
            spdx_sha256(&spdx, path).as_deref(),
            Some(want.as_str()),
            "{path}"
        );
        assert_eq!(
            cdx_sha256(&cdx, path).as_deref(),
            Some(want.as_str()),
            "{path}"
        );
    }
}

#[test]
fn same_tree_same_bytes_from_the_directory_and_the_tarball() {
    let tree = support::debian_tree();
    let d = support::tempdir();
    let tgz = d.path().join("fixture.tar.gz");
    // Pack exactly this tree, its provenance (with the content id) kept as it is.
    let prov = std::fs::read(tree.join("etc/build-distro.json")).unwrap();
    build_distro::pack::pack_to_file(
        &tree,
        &tgz,
        build_distro::pack::Format::TarGz,
        &build_distro::pack::PackOptions {
            clamp_mtime: None,
            level: 1,
        },
        |_| prov.clone(),
    )
    .unwrap();
    for format in ["spdx-json", "cyclonedx-json"] {
        let a = sbom(&tree, format, None);
        assert!(a == sbom(&tree, format, None), "{format}: two runs differ");
        assert!(
            a == sbom(&tgz, format, None),
            "{format}: the tree and its tarball differ"
        );
        let clamped = sbom(&tree, format, Some("1700000000"));
        assert!(String::from_utf8_lossy(&clamped).contains("\"2023-11-14T22:13:20Z\""));
        assert!(clamped == sbom(&tgz, format, Some("1700000000")));
    }
    let spdx: Value = serde_json::from_slice(&sbom(&tree, "spdx-json", None)).unwrap();
    let prov: Value = serde_json::from_slice(&prov).unwrap();
    let distro = &spdx["packages"][0];
    assert_eq!(distro["primaryPackagePurpose"], "CONTAINER");
    assert_eq!(distro["versionInfo"], prov["content_id"]);
    assert_eq!(spdx["name"], prov["name"]);
}

#[test]
fn alpine_sboms_from_a_tree_and_a_tar() {
    let d = support::tempdir();
    let tree = d.path().join("alpine");
    support::alpine::tree(&tree);
    let (spdx, cdx) = both(&tree, d.path());
    let purls = cdx_purls(&cdx);
    assert_eq!(
        purls,
        [
            "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&distro=alpine-3.20.3",
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl",
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3",
        ]
    );
    assert_eq!(spdx_purls(&spdx), purls);
    let musl = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "musl")
        .unwrap();
    assert_eq!(musl["licenses"][0]["license"]["name"], "MIT");
    for (path, bytes) in [
        ("/opt/unbit/uwsgi/uwsgi", &b"not really uwsgi\n"[..]),
        ("/usr/lib/libnss_unbit.so.2", b"not really a module\n"),
    ] {
        assert_eq!(spdx_sha256(&spdx, path), Some(sha256_of(bytes)), "{path}");
        assert_eq!(cdx_sha256(&cdx, path), Some(sha256_of(bytes)), "{path}");
    }
    let tar = d.path().join("alpine.tar");
    support::alpine::tar_of(&tree, &tar);
    for format in ["spdx-json", "cyclonedx-json"] {
        // Another name (from the file name), so compare what is listed, not the bytes.
        let from_tar: Value = serde_json::from_slice(&sbom(&tar, format, None)).unwrap();
        let from_tree: Value = serde_json::from_slice(&sbom(&tree, format, None)).unwrap();
        assert_eq!(
            from_tar["packages"].as_array().map(|p| p.len()),
            from_tree["packages"].as_array().map(|p| p.len())
        );
        assert_eq!(from_tar["components"], from_tree["components"]);
        assert_eq!(from_tar["files"], from_tree["files"]);
    }
}

#[test]
fn build_writes_both_sboms_the_sbom_command_reproduces() {
    crate::require_root!();
    let d = support::tempdir();
    let recipe = support::write_recipe(
        d.path(),
        "r.toml",
        &format!(
            "[distro]\nname = \"deb\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n",
            support::debian_tree().display()
        ),
    );
    let out = d.path().join("out");
    let (code, stdout, err) = run(bin()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(&recipe)
        .arg("--json")
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let spdx = out.join("deb.spdx.json");
    let cdx = out.join("deb.cdx.json");
    assert_eq!(
        report["sboms"],
        serde_json::json!([spdx.display().to_string(), cdx.display().to_string()])
    );
    if let Some(venv) = validators() {
        validate(&venv, &spdx, &cdx);
    }
    // `sbom` on the tarball gives the very bytes build wrote.
    let tgz = out.join("deb.tar.gz");
    assert!(std::fs::read(&spdx).unwrap() == sbom(&tgz, "spdx-json", Some("1700000000")));
    assert!(std::fs::read(&cdx).unwrap() == sbom(&tgz, "cyclonedx-json", Some("1700000000")));
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    assert_eq!(doc["packages"][0]["versionInfo"], report["content_id"]);
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staged files left: {leftovers:?}");

    // A tree without a package database still gets both files, saying why they list no
    // packages.
    let bb = d.path().join("bb");
    support::busybox_tree(&bb);
    let recipe = support::write_recipe(
        d.path(),
        "bb.toml",
        "[distro]\nname = \"bb\"\n[source]\ntype = \"rootfs\"\ndir = \"bb\"\n[nss]\nmode = \"none\"\n",
    );
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "dir", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the SBOMs list no packages"), "{err}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join("bb.cdx.json")).unwrap()).unwrap();
    assert!(doc["metadata"]["component"]["description"]
        .as_str()
        .unwrap()
        .contains("not a distro"));
    assert!(cdx_purls(&doc).is_empty());
    assert!(cdx_sha256(&doc, "/opt/unbit/uwsgi/uwsgi").is_some());
    if let Some(venv) = validators() {
        validate(&venv, &out.join("bb.spdx.json"), &out.join("bb.cdx.json"));
    }
    // `sbom` itself refuses such a tree: asked for an SBOM, an empty list is an error.
    let (code, _, err) = run(bin().arg("sbom").arg(out.join("bb")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a distro"), "{err}");
}

#[test]
fn what_is_not_a_distro_is_one_line_and_exit_2() {
    let d = support::tempdir();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, out, err) = run(bin().arg("sbom").arg(&empty));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(
        err,
        format!(
            "build-distro: error: {}: not a distro (no /etc/os-release, no /var/lib/dpkg/status, no /lib/apk/db/installed); give a tree directory or a distro tarball\n",
            empty.display()
        )
    );
    // A tarball cut short.
    let tree = d.path().join("alpine");
    support::alpine::tree(&tree);
    let tar = d.path().join("alpine.tar");
    support::alpine::tar_of(&tree, &tar);
    let bytes = std::fs::read(&tar).unwrap();
    let gz = d.path().join("cut.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &bytes).unwrap();
    let gzipped = enc.finish().unwrap();
    std::fs::write(&gz, &gzipped[..gzipped.len() / 2]).unwrap();
    let dest = d.path().join("never.spdx.json");
    let (code, _, err) = run(bin().arg("sbom").arg(&gz).arg("-o").arg(&dest));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&gz.display().to_string()), "{err}");
    assert!(!dest.exists(), "output written for a bad input");
    let (code, _, err) = run(bin().arg("sbom").arg(d.path().join("missing")));
    assert_eq!(code, 2, "{err}");
}
