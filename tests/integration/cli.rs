//! The command line itself: help, completions and the man page come from one definition.

use crate::support::{bin, run};

const COMMANDS: &[&str] = &[
    "build",
    "check",
    "boot",
    "push",
    "outdated",
    "sbom",
    "distros",
    "storage",
    "cache",
    "completions",
    "man",
];

#[test]
fn help_lists_every_command() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    for c in COMMANDS {
        assert!(out.contains(&format!("  {c} ")), "--help lacks {c}:\n{out}");
    }
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(bin().args(["completions", shell]));
        assert_eq!(code, 0, "{err}");
        for c in COMMANDS {
            assert!(out.contains(c), "{shell} completions lack {c}");
        }
    }
    let (code, _, err) = run(bin().args(["completions", "tcsh"]));
    assert_eq!(code, 2, "unknown shell is a usage error: {err}");
}

#[test]
fn man_page_is_roff_for_the_tool() {
    let (code, out, err) = run(bin().arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie \\n(.g .ds Aq") || out.contains(".TH build-distro"),
        "{}",
        &out[..200.min(out.len())]
    );
    assert!(out.contains(".TH build-distro"));
    for c in COMMANDS {
        assert!(out.contains(c), "man page lacks {c}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = run(bin().args(["build", "--format", "zip"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(bin().arg("no-such-command"));
    assert_eq!(code, 2);
    for args in [
        &["outdated"][..],
        &["outdated", "--to", "30001"],
        &["outdated", "tree", "--to", "30001", "--path", "p"],
    ] {
        let (code, _, err) = run(bin().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn make_help_lists_every_target() {
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("help")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("make");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for t in [
        "build", "test", "bench", "distro", "check", "boot", "publish", "clean", "help",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{t} "))),
            "make help lacks {t}:\n{text}"
        );
    }
}
