//! `check`: the real Debian distro, a broken copy of it, tarball against directory, the
//! CLI's exit codes and output, and `build` stopping on check errors.

use std::path::Path;

use serde_json::Value;

use crate::support::{self, bin, run, write_recipe};

fn check_json(path: &Path, extra: &[&str]) -> (i32, Value) {
    let (code, out, err) = run(bin().arg("check").arg(path).arg("--json").args(extra));
    assert!(
        code == 0 || code == 1,
        "check {}: exit {code}: {err}",
        path.display()
    );
    (
        code,
        serde_json::from_str(&out).expect("check --json prints JSON"),
    )
}

fn errors(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| format!("{} {}: {}", f["rule"], f["path"], f["message"]))
        .collect()
}

#[test]
fn default_debian_distro_passes() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = support::finished_debian(d.path());
    let (code, report) = check_json(&tree, &["--path", "refinished"]);
    assert_eq!(errors(&report), Vec::<String>::new());
    assert_eq!(code, 0);
    assert_eq!(report["summary"]["ok"], true);
    assert_eq!(report["kind"], "dir");
    assert!(report["summary"]["entries"].as_u64().unwrap() > 5000);
    // The text form ends with the summary line.
    let (code, out, _) = run(bin().arg("check").arg(&tree));
    assert_eq!(code, 0);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("check {}: 0 errors", tree.display())),
        "{out}"
    );
    assert!(last.ends_with(": ok"), "{out}");
}

/// The python3 plugin's library removed from a real finished tree: the finding names the
/// plugin and the library, and the tarball of the same tree gives the same report.
#[test]
fn missing_libpython_is_reported_and_tarball_matches_directory() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = support::finished_debian(d.path());
    let lib = tree.join("usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0");
    assert!(lib.is_file(), "the fixture has libpython3.11");
    std::fs::remove_file(&lib).unwrap();
    // A few more findings of other kinds, so the comparison covers them too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(tree.join("usr/share/private"), "x").unwrap();
    std::fs::set_permissions(
        tree.join("usr/share/private"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(tree.join("usr/bin/suid"), "x").unwrap();
    std::fs::set_permissions(
        tree.join("usr/bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();

    let (code, from_dir) = check_json(&tree, &[]);
    assert_eq!(code, 1);
    let errs = errors(&from_dir);
    assert!(
        errs.contains(&"\"plugin-elf\" \"/opt/unbit/uwsgi/plugins/python3_plugin.so\": \"/opt/unbit/uwsgi/plugins/python3_plugin.so -> libpython3.11.so.1.0: not found\"".to_string()),
        "{errs:#?}"
    );
    assert!(
        errs.iter().all(|e| e.starts_with("\"plugin-elf\"")),
        "only the python plugins break: {errs:#?}"
    );
    let (code, text, _) = run(bin().arg("check").arg(&tree));
    assert_eq!(code, 1);
    assert!(text.starts_with("errors:\n"), "{text}");
    assert!(
        text.contains("python3_plugin.so -> libpython3.11.so.1.0: not found"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("FAILED"), "{text}");

    // Pack exactly this tree (the provenance entry keeps its bytes) and check the archive.
    let tgz = d.path().join("refinished.tar.gz");
    let prov = std::fs::read(tree.join("etc/build-distro.json")).unwrap();
    build_distro::pack::pack_to_file(
        &tree,
        &tgz,
        build_distro::pack::Format::TarGz,
        &build_distro::pack::PackOptions::default(),
        |_| prov.clone(),
    )
    .unwrap();
    let (code, from_tar) = check_json(&tgz, &[]);
    assert_eq!(code, 1);
    assert_eq!(from_tar["kind"], "tar-gz");
    assert_eq!(from_tar["findings"], from_dir["findings"]);
    assert_eq!(from_tar["summary"], from_dir["summary"]);
}

#[test]
fn unreadable_input_and_unknown_rule_are_exit_2() {
    let d = support::tempdir();
    let (code, out, err) = run(bin().arg("check").arg(d.path().join("nope.tar.gz")));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("build-distro: error: ") && err.contains("nope.tar.gz"),
        "{err}"
    );
    std::fs::write(d.path().join("junk.tar"), vec![0x55u8; 4096]).unwrap();
    let (code, _, err) = run(bin().arg("check").arg(d.path().join("junk.tar")));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(bin().arg("check").arg(d.path()).args(["--allow", "shel"]));
    assert_eq!(code, 2);
    assert!(err.contains("unknown check rule \"shel\""), "{err}");
}

#[test]
fn empty_directory_fails_with_the_platform_rules() {
    let d = support::tempdir();
    let (code, report) = check_json(d.path(), &[]);
    assert_eq!(code, 1);
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    for r in [
        "mount-point",
        "shell",
        "ifconfig",
        "route",
        "uwsgi-binary",
        "shortcuts",
    ] {
        assert!(rules.contains(&r), "{r} missing from {rules:?}");
    }
    // Allowing every failing rule turns the exit code to 0.
    let mut args = Vec::new();
    for r in &rules {
        args.push("--allow");
        args.push(r);
    }
    let (code, report) = check_json(d.path(), &args);
    assert_eq!(code, 0);
    assert_eq!(report["summary"]["errors"], 0);
}

/// `build` stops before pack when check finds errors, says which rules and how to proceed,
/// and `--allow` lets it through with the rule recorded in the provenance.
#[test]
fn build_stops_on_check_errors_unless_allowed() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    for applet in ["sh", "ifconfig", "route"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    // uWSGI without its libraries: finish links it, check must refuse it.
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/uwsgi-core", tree.join("usr/bin/uwsgi-core")).unwrap();
    let r = write_recipe(
        d.path(),
        "r.toml",
        "[distro]\nname = \"nolibs\"\n[source]\ntype = \"rootfs\"\ndir = \"tree\"\n[nss]\nmode = \"none\"\n",
    );
    let out = d.path().join("out");
    let (code, stdout, err) = run(bin().arg("build").arg(&r).arg("--out").arg(&out));
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(
        err.contains("error: [uwsgi-elf] /opt/unbit/uwsgi/uwsgi: /opt/unbit/uwsgi/uwsgi -> "),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("build-distro: error: check found ")
            && last.contains("(rules: uwsgi-elf)")
            && last.contains("--allow RULE-ID"),
        "{last}"
    );
    assert_eq!(
        std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing packed"
    );

    let (code, stdout, err) = run(bin()
        .arg("build")
        .arg(&r)
        .args(["--allow", "uwsgi-elf", "--format", "dir", "--json", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["check"]["errors"], 0);
    assert!(report["check"]["allowed"].as_u64().unwrap() > 0);
    let prov: Value =
        serde_json::from_slice(&std::fs::read(out.join("nolibs/etc/build-distro.json")).unwrap())
            .unwrap();
    assert_eq!(prov["allowed_rules"], serde_json::json!(["uwsgi-elf"]));
}
