//! The pipeline's own errors and `--publish`'s one confirmation (issue 26).

use std::process::Stdio;

use crate::support::{self, bin, run};

/// `build --publish` merges the recipe's `assign` with `--assign` and asks once, before
/// anything is built; with no terminal to answer on, that is exit 2 and no output.
#[test]
fn publish_asks_once_before_building() {
    let d = support::tempdir();
    let recipe = support::write_recipe(
        d.path(),
        "r.toml",
        "[distro]\nname = \"pub\"\n[source]\ntype = \"rootfs\"\ndir = \"/nonexistent\"\n\
         [publish]\nto = [30005]\nassign = [7]\n",
    );
    let out = d.path().join("out");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--publish", "--assign", "8,7", "--out"])
        .arg(&out)
        .stdin(Stdio::null()));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("map container(s)").count(), 1, "{err}");
    assert!(
        err.contains("after the build, map container(s) 7, 8 onto the new distro? each one restarts: no terminal to confirm on; pass --yes"),
        "{err}"
    );
    assert!(!out.exists(), "nothing built");
}

/// An `--out` that cannot be a directory: the pipeline's error names it and the fix.
#[test]
fn an_output_directory_that_cannot_be_made_is_named() {
    let d = support::tempdir();
    let file = d.path().join("file");
    std::fs::write(&file, "").unwrap();
    let recipe = support::write_recipe(
        d.path(),
        "r.toml",
        "[distro]\nname = \"x\"\n[source]\ntype = \"rootfs\"\ndir = \"/nonexistent\"\n",
    );
    let out = file.join("out");
    let (code, _, err) = run(bin().arg("build").arg(&recipe).arg("--out").arg(&out));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("error: output directory {}: ", out.display()))
            && err.contains("pass --out a directory you may write"),
        "{err}"
    );
}
