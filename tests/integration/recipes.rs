//! The shipped recipes a user starts from: the Debian ones build for real, pass check and
//! boot (the Docker ones need a registry, which CI does not have; they are parsed and
//! validated by the recipe unit tests).

use crate::support::{self, bin, run};

fn build_check_boot(name: &str) {
    let d = support::tempdir();
    let out = d.path().join("out");
    let (code, stdout, err) = run(bin()
        .arg("-q")
        .arg("build")
        .arg(format!("recipes/{name}.toml"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "build {name}:\n{stdout}\n{err}");
    let archive = out.join(format!("{name}.tar.gz"));
    assert!(out.join(format!("{name}.manifest")).is_file());
    assert!(out.join(format!("{name}.json")).is_file());
    let (code, stdout, err) = run(bin().arg("check").arg(&archive));
    assert_eq!(code, 0, "check {name}:\n{stdout}\n{err}");
    let work = d.path().join("boot");
    std::fs::create_dir_all(&work).unwrap();
    let (code, stdout, err) = run(bin().arg("boot").arg(&archive).arg("--work-dir").arg(&work));
    assert_eq!(code, 0, "boot {name}:\n{stdout}\n{err}");
    assert!(support::mounts_under(d.path()).is_empty());
}

#[test]
fn debian_trixie_builds_checks_and_boots() {
    crate::require_root!();
    build_check_boot("debian-trixie");
}

#[test]
fn debian_python_web_builds_checks_and_boots() {
    crate::require_root!();
    build_check_boot("debian-python-web");
}
