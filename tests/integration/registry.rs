//! `registry` source against a real registry (Debian's `docker-registry`, distribution
//! 2.8) started here on loopback: images generated in code as OCI layouts (whiteouts,
//! opaque directories, hardlinks across layers, a two-platform index) and pushed with
//! `skopeo`; plain HTTP, and TLS with a throwaway CA and htpasswd basic auth; 401, 404,
//! a corrupted blob in the registry's storage. The same image through the image-archive
//! source gives the same archive.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::docker::{
    archive_listing, assert_opaque_result, build_dir, build_fails, build_targz, layer_tar,
    oci_layout, opaque_layers, recipe, sha, Entry,
};
use crate::support::registry::Registry;
use crate::support::{self, bin, run};

fn registry_source(image: &str, extra: &str) -> String {
    format!("type = \"registry\"\nimage = \"{image}\"\n{extra}")
}

/// The digest of the manifest the registry serves for `image` (no platform resolution).
fn manifest_digest(reg: &Registry, image: &str) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(t) = &reg.tls {
        c.arg(format!("--creds={}:{}", t.user, t.password));
    }
    let out = c
        .arg(format!("docker://{}/{image}", reg.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha(&out.stdout)
}

/// Nothing left of a failed build: no archive in `out`, no build directory in `work`.
fn assert_nothing_left(out: &Path, work: &Path) {
    let left = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(left(out).is_empty(), "left in out: {:?}", left(out));
    assert!(left(work).is_empty(), "left in work: {:?}", left(work));
}

#[test]
fn plain_registry_gives_the_image_archives_tree_and_archive() {
    crate::require_registry!();
    let reg = Registry::plain();
    let d = support::tempdir();
    let layout = d.path().join("layout");
    oci_layout(&layout, &[("app:2", opaque_layers())]);
    reg.push(
        &format!("oci:{}:app:2", layout.display()),
        "team/app:2",
        false,
    );
    let image = format!("{}/team/app:2", reg.host());
    let digest = manifest_digest(&reg, "team/app:2");

    let tree = build_dir(
        &recipe(d.path(), "reg-dir", &registry_source(&image, "")),
        &d.path().join("out-dir"),
    );
    assert_opaque_result(&tree);
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("etc/build-distro.json")).unwrap())
            .unwrap();
    assert_eq!(prov["source"]["kind"], "registry");
    assert_eq!(prov["source"]["digest"], digest.as_str());
    assert_eq!(
        prov["source"]["reference"],
        format!("{image}@{digest}").as_str()
    );

    // The same image as an archive and from the registry: the same archive, but for
    // the provenance file that names the source.
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (from_reg, log) = build_targz(
        &recipe(d.path(), "same", &registry_source(&image, "")),
        &d.path().join("out-reg"),
        &work,
        false,
    );
    assert!(
        log.contains(&digest),
        "the build output shows the digest: {log}"
    );
    let (from_archive, _) = build_targz(
        &recipe(
            d.path(),
            "same",
            &format!(
                "type = \"image-archive\"\nfile = \"{}\"\nimage = \"app:2\"",
                layout.display()
            ),
        ),
        &d.path().join("out-archive"),
        &work,
        false,
    );
    let (mut a, mut b) = (archive_listing(&from_reg), archive_listing(&from_archive));
    let (pa, pb) = (
        a.remove("etc/build-distro.json").unwrap(),
        b.remove("etc/build-distro.json").unwrap(),
    );
    assert_ne!(pa, pb);
    assert_eq!(a, b);
    let content_id = |out: &str| {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join(out).join("same.json")).unwrap())
                .unwrap();
        r["content_id"].as_str().unwrap().to_string()
    };
    assert_eq!(content_id("out-reg"), content_id("out-archive"));

    // Pinned by digest: the same tree.
    let pinned = build_dir(
        &recipe(
            d.path(),
            "pinned",
            &registry_source(&format!("{}/team/app@{digest}", reg.host()), ""),
        ),
        &d.path().join("out-pinned"),
    );
    assert_opaque_result(&pinned);
}

/// A docker-archive (what `docker save` writes) pushed by skopeo becomes a Docker v2
/// manifest in the registry, with gzip layers: read through the same path.
#[test]
fn docker_v2_manifest_from_a_docker_archive() {
    crate::require_registry!();
    let reg = Registry::plain();
    let d = support::tempdir();
    let layers = opaque_layers();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let config = crate::docker::config_for(&refs);
    let staging = d.path().join("save");
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        std::fs::create_dir_all(staging.join(format!("l{i}"))).unwrap();
        std::fs::write(staging.join(format!("l{i}/layer.tar")), l).unwrap();
        names.push(format!("\"l{i}/layer.tar\""));
    }
    std::fs::write(staging.join("cfg.json"), &config).unwrap();
    std::fs::write(
        staging.join("manifest.json"),
        format!(
            r#"[{{"Config":"cfg.json","RepoTags":["saved:1"],"Layers":[{}]}}]"#,
            names.join(",")
        ),
    )
    .unwrap();
    let archive = d.path().join("saved.tar");
    support::tar(&staging, &["-cf"], &archive);
    reg.push(
        &format!("docker-archive:{}", archive.display()),
        "saved:1",
        false,
    );
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/saved:1", reg.host()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&raw.stdout)
        .contains("application/vnd.docker.distribution.manifest.v2+json"));
    let tree = build_dir(
        &recipe(
            d.path(),
            "saved",
            &registry_source(&format!("{}/saved:1", reg.host()), ""),
        ),
        &d.path().join("out"),
    );
    assert_opaque_result(&tree);
}

/// An OCI layout whose tag names an index of two platforms (amd64 and arm64/v8).
fn two_platform_layout(dir: &Path) {
    let arm = layer_tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/arch", b"arm64\n", 0o644),
    ]);
    let mut arm_layers = opaque_layers();
    arm_layers.push(arm);
    oci_layout(dir, &[("amd", opaque_layers()), ("arm", arm_layers)]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut entries = Vec::new();
    for (m, plat) in index["manifests"].as_array().unwrap().iter().zip([
        serde_json::json!({"os": "linux", "architecture": "amd64"}),
        serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ]) {
        let mut m = m.clone();
        m.as_object_mut().unwrap().remove("annotations");
        m["platform"] = plat;
        entries.push(m);
    }
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let digest = sha(&nested);
    std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), &nested).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }]}))
        .unwrap(),
    )
    .unwrap();
}

#[test]
fn index_with_two_platforms_gives_the_one_asked_for() {
    crate::require_registry!();
    let reg = Registry::plain();
    let d = support::tempdir();
    let layout = d.path().join("layout");
    two_platform_layout(&layout);
    reg.push(&format!("oci:{}:multi", layout.display()), "multi:1", true);
    let image = format!("{}/multi:1", reg.host());

    let amd = build_dir(
        &recipe(d.path(), "amd", &registry_source(&image, "")),
        &d.path().join("out-amd"),
    );
    assert_opaque_result(&amd);
    assert!(!amd.join("etc/arch").exists());

    let arm = build_dir(
        &recipe(
            d.path(),
            "arm",
            &registry_source(&image, "platform = \"linux/arm64/v8\""),
        ),
        &d.path().join("out-arm"),
    );
    assert_eq!(std::fs::read(arm.join("etc/arch")).unwrap(), b"arm64\n");
    // No variant asked: any arm64 will do.
    let arm_any = build_dir(
        &recipe(
            d.path(),
            "arm-any",
            &registry_source(&image, "platform = \"linux/arm64\""),
        ),
        &d.path().join("out-arm-any"),
    );
    assert!(arm_any.join("etc/arch").exists());

    let (code, err) = build_fails(
        &recipe(
            d.path(),
            "s390x",
            &registry_source(&image, "platform = \"linux/s390x\""),
        ),
        &d.path().join("out-s390x"),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no image for linux/s390x") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );
}

#[test]
fn missing_image_is_exit_2_naming_the_reference() {
    crate::require_registry!();
    let reg = Registry::plain();
    let d = support::tempdir();
    let image = format!("{}/nothing/here:7", reg.host());
    let (code, err) = build_fails(
        &recipe(d.path(), "missing", &registry_source(&image, "")),
        &d.path().join("out"),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&image) && err.contains("not found"), "{err}");
}

#[test]
fn corrupted_blob_is_exit_2_and_leaves_nothing() {
    crate::require_registry!();
    let reg = Registry::plain();
    let d = support::tempdir();
    let layout = d.path().join("layout");
    oci_layout(&layout, &[("app:1", opaque_layers())]);
    reg.push(&format!("oci:{}:app:1", layout.display()), "app:1", false);
    // Tamper with the second layer where the registry keeps it: same size, other bytes.
    let manifest: serde_json::Value = serde_json::from_slice(
        &Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/app:1", reg.host()))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = reg.blob_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let out = d.path().join("out");
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = bin();
    c.arg("-q")
        .arg("build")
        .arg(recipe(
            d.path(),
            "corrupt",
            &registry_source(&format!("{}/app:1", reg.host()), ""),
        ))
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(&work);
    let (code, stdout, err) = run(&mut c);
    assert_eq!(code, 2, "{stdout}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&layer) && err.contains("corrupt") && err.contains("gave up after 3 tries"),
        "{err}"
    );
    assert_nothing_left(&out, &work);

    // Truncated: the registry serves fewer bytes than the manifest says.
    std::fs::write(&path, &data[..mid]).unwrap();
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&layer), "{err}");
    assert_nothing_left(&out, &work);
}

/// `build` with `-vv`, the password on stdin when `login` is set: exit code and the
/// whole output.
fn build_with(
    recipe: &Path,
    out: &Path,
    env: &[(&str, &str)],
    login: Option<(&str, &str)>,
) -> (i32, String) {
    let mut c = bin();
    c.arg("-vv").arg("build").arg(recipe).arg("--out").arg(out);
    c.env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env("HOME", out.parent().unwrap().join("no-home"));
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some((user, _)) = login {
        c.args(["--registry-user", user, "--registry-password-stdin"]);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        if let Some((_, pw)) = login {
            writeln!(stdin, "{pw}").unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn tls_registry_with_basic_auth_and_every_credential_source() {
    crate::require_registry!();
    let reg = Registry::tls_basic();
    let tls = reg.tls.as_ref().unwrap();
    let d = support::tempdir();
    let layout = d.path().join("layout");
    oci_layout(&layout, &[("app:3", opaque_layers())]);
    reg.push(&format!("oci:{}:app:3", layout.display()), "app:3", false);
    let image = format!("{}/app:3", reg.host());
    let ca = tls.ca.display().to_string();
    let r = recipe(d.path(), "tls", &registry_source(&image, ""));
    let never_shown = |log: &str| {
        let b64 = base64_of(&format!("{}:{}", tls.user, tls.password));
        assert!(
            !log.contains(&tls.password) && !log.contains(&b64),
            "secret in the output: {log}"
        );
    };

    // Not trusted without the CA: a TLS error naming the fix, exit 2.
    let (code, log) = build_with(&r, &d.path().join("o1"), &[], None);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("certs.d") && log.contains("SSL_CERT_FILE"),
        "{log}"
    );

    // Trusted through Docker's per-registry directory (a real path: needs root; the
    // guard removes it). No credentials: 401 names the registry and where we looked.
    if support::is_root() {
        struct CertsD(std::path::PathBuf);
        impl Drop for CertsD {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let certs_d = CertsD(Path::new("/etc/docker/certs.d").join(reg.host()));
        std::fs::create_dir_all(&certs_d.0).unwrap();
        std::fs::copy(&tls.ca, certs_d.0.join("ca.crt")).unwrap();
        let (code, log) = build_with(&r, &d.path().join("o2"), &[], None);
        assert_eq!(code, 2, "{log}");
        assert!(log.contains("wants credentials (401)"), "{log}");
    }

    let (code, log) = build_with(&r, &d.path().join("o2"), &[("SSL_CERT_FILE", &ca)], None);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains(&format!("registry {} wants credentials (401)", reg.host()))
            && log.contains("no-home/.docker/config.json (docker config): absent"),
        "{log}"
    );

    // Wrong password in $REGISTRY_AUTH_FILE.
    let auth_file = d.path().join("auth.json");
    let entry = |pw: &str| {
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.host(),
            base64_of(&format!("{}:{pw}", tls.user))
        )
    };
    std::fs::write(&auth_file, entry("wrong")).unwrap();
    let auth_env = auth_file.display().to_string();
    let (code, log) = build_with(
        &r,
        &d.path().join("o3"),
        &[("SSL_CERT_FILE", &ca), ("REGISTRY_AUTH_FILE", &auth_env)],
        None,
    );
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("not accepted") && log.contains("auth.json ($REGISTRY_AUTH_FILE)"),
        "{log}"
    );

    // The right password in $DOCKER_CONFIG/config.json.
    let docker_config = d.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(docker_config.join("config.json"), entry(&tls.password)).unwrap();
    let dc = docker_config.display().to_string();
    let (code, log) = build_with(
        &r,
        &d.path().join("o4"),
        &[("SSL_CERT_FILE", &ca), ("DOCKER_CONFIG", &dc)],
        None,
    );
    assert_eq!(code, 0, "{log}");
    never_shown(&log);
    assert!(d.path().join("o4/tls.tar.gz").is_file());
    // The summary on stdout names the digest to pin.
    let digest = manifest_digest(&reg, "app:3");
    assert!(
        log.contains(&format!("  from registry {image}@{digest}")),
        "{log}"
    );

    // A credential helper named by credHelpers: run with the registry on stdin.
    let helpers = d.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-bdtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" > {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
            helpers.join("asked").display(),
            tls.user,
            tls.password
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper_config = d.path().join("helper-config");
    std::fs::create_dir_all(&helper_config).unwrap();
    std::fs::write(
        helper_config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"bdtest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let hc = helper_config.display().to_string();
    let (code, log) = build_with(
        &r,
        &d.path().join("o7"),
        &[
            ("SSL_CERT_FILE", &ca),
            ("DOCKER_CONFIG", &hc),
            ("PATH", &path),
        ],
        None,
    );
    assert_eq!(code, 0, "{log}");
    never_shown(&log);
    assert_eq!(
        std::fs::read_to_string(helpers.join("asked"))
            .unwrap()
            .trim(),
        reg.host()
    );

    // --registry-user with the password on stdin, traced with -vv.
    let (code, log) = build_with(
        &r,
        &d.path().join("o5"),
        &[("SSL_CERT_FILE", &ca)],
        Some((&tls.user, &tls.password)),
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("registry: GET https://"), "traced: {log}");
    never_shown(&log);
    // And a wrong one over the flags: refused, still not shown.
    let (code, log) = build_with(
        &r,
        &d.path().join("o6"),
        &[("SSL_CERT_FILE", &ca)],
        Some((&tls.user, "Wr0ng-pass")),
    );
    assert_eq!(code, 2, "{log}");
    assert!(!log.contains("Wr0ng-pass"), "{log}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn registry_recipe_keys_are_checked() {
    let d = support::tempdir();
    let (code, err) = build_fails(
        &recipe(d.path(), "bad", &registry_source("Bad/Name:1", "")),
        &d.path().join("out"),
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("[source] image") && err.contains("repository"),
        "{err}"
    );
    let (code, err) = build_fails(
        &recipe(
            d.path(),
            "badplat",
            &registry_source("127.0.0.1:1/x:1", "platform = \"amd64\""),
        ),
        &d.path().join("out"),
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("[source] platform"), "{err}");
}

/// The Docker token protocol (what Docker Hub and GHCR speak): the registry answers 401
/// with a bearer challenge, the token service checks the credentials and signs a token.
#[test]
fn bearer_token_flow_with_a_token_service() {
    crate::require_registry!();
    let reg = Registry::token();
    let creds = reg.tls.as_ref().unwrap();
    let tokens = reg.tokens.as_ref().unwrap();
    let d = support::tempdir();
    let layout = d.path().join("layout");
    oci_layout(&layout, &[("app:4", opaque_layers())]);
    reg.push(
        &format!("oci:{}:app:4", layout.display()),
        "team/app:4",
        false,
    );
    let r = recipe(
        d.path(),
        "token",
        &registry_source(&format!("{}/team/app:4", reg.host()), ""),
    );

    // No credentials: the token service refuses, the build says where it looked.
    let refused = tokens.refused.load(std::sync::atomic::Ordering::SeqCst);
    let (code, log) = build_with(&r, &d.path().join("o1"), &[], None);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("wants credentials (401)"), "{log}");
    assert!(tokens.refused.load(std::sync::atomic::Ordering::SeqCst) > refused);

    let issued = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    let (code, log) = build_with(
        &r,
        &d.path().join("o2"),
        &[],
        Some((&creds.user, &creds.password)),
    );
    assert_eq!(code, 0, "{log}");
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > issued);
    assert!(
        log.contains("(token for repository:team/app:pull) → 200"),
        "{log}"
    );
    assert!(
        !log.contains(&creds.password) && !log.contains("Bearer ey"),
        "{log}"
    );
    let listing = archive_listing(&std::fs::read(d.path().join("o2/token.tar.gz")).unwrap());
    assert!(
        listing.contains_key("data/cfg/new") && !listing.contains_key("data/cfg/old1"),
        "{listing:#?}"
    );
}

/// What the proxy does to a response once it carried `AFTER` bytes of the watched blob.
#[derive(Clone, Copy)]
enum Fault {
    /// Close both sides (a reset connection), this many times; then pass through.
    Cut(usize),
    /// Hold the rest back until the client goes away (to interrupt mid-download).
    Stall,
}

const AFTER: usize = 32 * 1024;

/// A TCP proxy in front of the registry that steps in on the responses to requests that
/// name `digest`: the only way to break a download deterministically in the middle.
struct Proxy {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reached: std::sync::mpsc::Receiver<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn start_proxy(upstream: u16, digest: &str, fault: Fault) -> Proxy {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, reached) = std::sync::mpsc::channel();
    let cuts = Arc::new(AtomicUsize::new(match fault {
        Fault::Cut(n) => n,
        Fault::Stall => 0,
    }));
    let (st, digest) = (stop.clone(), digest.to_string());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if st.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut client) = client else { continue };
            let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let armed = Arc::new(AtomicBool::new(false));
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            let (a, d) = (armed.clone(), digest.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c2.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if String::from_utf8_lossy(&buf[..n]).contains(&d) {
                        a.store(true, Ordering::SeqCst);
                    }
                    if u2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = u2.shutdown(std::net::Shutdown::Both);
            });
            let (st, cuts, tx) = (st.clone(), cuts.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut sent = 0;
                while let Ok(n) = up.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if armed.load(Ordering::SeqCst) {
                        sent += n;
                        if sent > AFTER {
                            match fault {
                                Fault::Cut(_) => {
                                    if cuts
                                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                            c.checked_sub(1)
                                        })
                                        .is_ok()
                                    {
                                        let _ = client.shutdown(std::net::Shutdown::Both);
                                        let _ = up.shutdown(std::net::Shutdown::Both);
                                        return;
                                    }
                                }
                                Fault::Stall => {
                                    let _ = tx.send(());
                                    // Until the client closes (its read side sees EOF
                                    // through the other thread) or the test ends.
                                    while !st.load(Ordering::SeqCst)
                                        && client.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0)
                                    {
                                        std::thread::sleep(std::time::Duration::from_millis(50));
                                    }
                                    let _ = client.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                            }
                        }
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Proxy {
        port,
        stop,
        reached,
    }
}

/// A plain registry holding `app:1`, and the digest of its first (biggest) layer.
fn registry_with_app(d: &Path) -> (Registry, String) {
    let reg = Registry::plain();
    let layout = d.join("layout");
    oci_layout(&layout, &[("app:1", opaque_layers())]);
    reg.push(&format!("oci:{}:app:1", layout.display()), "app:1", false);
    let m: serde_json::Value = serde_json::from_slice(
        &Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/app:1", reg.host()))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    (reg, layer)
}

#[test]
fn connection_resets_are_retried_then_give_up_leaving_nothing() {
    crate::require_registry!();
    let d = support::tempdir();
    let (reg, layer) = registry_with_app(d.path());

    // Cut twice: the third try gets the layer, the build succeeds.
    let proxy = start_proxy(reg.port, &layer, Fault::Cut(2));
    let r = recipe(
        d.path(),
        "flaky",
        &registry_source(&format!("127.0.0.1:{}/app:1", proxy.port), ""),
    );
    let (code, log) = build_with(&r, &d.path().join("o1"), &[], None);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("layer 1/3 ({layer})")) && log.contains("trying again (3/3)"),
        "{log}"
    );
    drop(proxy);

    // Cut every time: exit 2 after three tries, no archive, no build directory.
    let proxy = start_proxy(reg.port, &layer, Fault::Cut(usize::MAX));
    let r = recipe(
        d.path(),
        "broken",
        &registry_source(&format!("127.0.0.1:{}/app:1", proxy.port), ""),
    );
    let (out, work) = (d.path().join("o2"), d.path().join("w2"));
    std::fs::create_dir_all(&work).unwrap();
    let (code, stdout, err) = run(bin()
        .arg("-q")
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(&work));
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(
        err.contains(&layer) && err.contains("gave up after 3 tries"),
        "{err}"
    );
    assert_nothing_left(&out, &work);
}

#[test]
fn ctrl_c_mid_download_stops_and_leaves_nothing() {
    crate::require_registry!();
    let d = support::tempdir();
    let (reg, layer) = registry_with_app(d.path());
    let proxy = start_proxy(reg.port, &layer, Fault::Stall);
    let r = recipe(
        d.path(),
        "stalled",
        &registry_source(&format!("127.0.0.1:{}/app:1", proxy.port), ""),
    );
    let (out, work) = (d.path().join("out"), d.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let mut child = bin()
        .arg("-q")
        .arg("build")
        .arg(&r)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy
        .reached
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the download reached the stall");
    // The build directory exists while the layer downloads.
    assert!(std::fs::read_dir(&work).unwrap().next().is_some());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("interrupted"), "{err}");
    assert_nothing_left(&out, &work);
}

/// A registry source through the build cache (issue 18): keyed by the manifest digest,
/// which is asked of the registry every build. Cold, warm (read in place), warm restored
/// and `--no-cache` builds give one archive; the tag moved to a new image is a miss that
/// builds the new content; a registry that is down fails the build even with a warm cache.
#[test]
fn registry_source_is_cached_by_its_manifest_digest() {
    use crate::cache::{build, build_env, member, FROM_CACHE};
    crate::require_registry!();
    crate::require_root!();
    let d = support::tempdir();
    let (reg, _) = registry_with_app(d.path());
    let cache = d.path().join("cache");
    let r = recipe(
        d.path(),
        "cached",
        &registry_source(&format!("{}/app:1", reg.host()), ""),
    );
    let (cold, err, report) = build(&r, &d.path().join("cold"), Some(&cache));
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert_eq!(
        report["source"]["digest"],
        manifest_digest(&reg, "app:1").as_str()
    );
    let (warm, err, warm_report) = build(&r, &d.path().join("warm"), Some(&cache));
    assert!(
        err.contains(FROM_CACHE) && err.contains("read in place"),
        "{err}"
    );
    assert_eq!(warm_report["source"], report["source"]);
    assert!(warm == cold, "a warm build gives the cold build's bytes");
    let unpack = [("BUILD_DISTRO_CACHE_UNPACK", "1")];
    let (restored, err, _) = build_env(&r, &d.path().join("restored"), Some(&cache), &unpack);
    assert!(
        err.contains(FROM_CACHE) && !err.contains("read in place"),
        "{err}"
    );
    assert!(
        restored == cold,
        "a restored entry gives the cold build's bytes"
    );
    let (uncached, err, _) = build(&r, &d.path().join("uncached"), None);
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert!(
        uncached == cold,
        "--no-cache gives the cached builds' bytes"
    );

    // The tag moves to another image: a new digest, a miss, the new content.
    let mut layers = opaque_layers();
    layers.push(layer_tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/motd", b"moved tag\n", 0o644),
    ]));
    let layout = d.path().join("layout2");
    oci_layout(&layout, &[("app:1", layers)]);
    reg.push(&format!("oci:{}:app:1", layout.display()), "app:1", false);
    let moved_digest = manifest_digest(&reg, "app:1");
    assert_ne!(report["source"]["digest"], moved_digest.as_str());
    let (moved, err, moved_report) = build(&r, &d.path().join("moved"), Some(&cache));
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert_eq!(moved_report["source"]["digest"], moved_digest.as_str());
    assert_eq!(member(&moved, "etc/motd"), "moved tag\n");
    assert_eq!(member(&cold, "etc/motd"), "layer three\n");

    // The registry is gone: the tag cannot be resolved, so no entry may serve.
    drop(reg);
    let cache_env = cache.to_string_lossy().into_owned();
    let (code, err) = build_fails(
        &r,
        &d.path().join("down"),
        &[("BUILD_DISTRO_CACHE_DIR", cache_env.as_str())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains(FROM_CACHE) && err.contains("app:1") && err.contains("Connection refused"),
        "{err}"
    );
}
