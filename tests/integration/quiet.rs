//! `-q` prints only errors and warnings (issue 26), the programs' output included:
//! mmdebstrap's `I:` lines reach the user only when it fails (or without `-q`).

use super::build_inputs::{local_recipe, local_repo_here};
use crate::support::{bin, run};

#[test]
fn quiet_build_prints_the_result_line_and_errors_only() {
    crate::require_root!();
    let Some((d, repo)) = local_repo_here() else {
        return;
    };
    let packages = "updates = false\npackages = [\"bd-base\", \"bd-hello\"]\n";
    let recipe = local_recipe(d.path(), "r", &repo.url(), packages);
    let build = |quiet: bool, recipe: &std::path::Path, out: &str| {
        let mut c = bin();
        if quiet {
            c.arg("-q");
        }
        run(c
            .arg("build")
            .arg(recipe)
            .arg("--out")
            .arg(d.path().join(out))
            .arg("--no-cache"))
    };
    // Without -q the bootstrap talks: that is what -q must hold back.
    let (code, _, err) = build(false, &recipe, "loud");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("I: "), "mmdebstrap's progress shows:\n{err}");

    let (code, out, err) = build(true, &recipe, "quiet");
    assert_eq!(code, 0, "{err}");
    // Warnings are about the result and stay (README: "-q prints only errors and
    // warnings"); this tree has no os-release, so the SBOMs say they list no packages.
    let noise: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("] warning: ") && !l.contains("] error: "))
        .collect();
    assert!(
        noise.is_empty(),
        "-q printed more than errors: {noise:?}\n{err}"
    );
    assert!(!err.contains("I: "), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "built {}",
            d.path().join("quiet/local.tar.gz").display()
        )),
        "{out}"
    );

    // A failing bootstrap: one error line, with what the program said last.
    let missing = local_recipe(
        d.path(),
        "missing",
        &repo.url(),
        "updates = false\npackages = [\"bd-nowhere\"]\n",
    );
    let (code, out, err) = build(true, &missing, "failed");
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("build-distro: error: "), "{err}");
    assert!(
        lines[0].contains("mmdebstrap") && lines[0].contains("E: "),
        "{err}"
    );
}
