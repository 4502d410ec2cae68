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

/// `outdated` is a gate whose 1 means "a security fix is out": when it cannot tell (ssh or
/// the API unreachable) it must say 2, never 1, or a scheduled loop would roll out.
#[test]
fn outdated_exits_2_when_it_cannot_reach_the_published_version() {
    let path = ["--to", "30003", "--path", "debian-bookworm-0123456789ab"];
    // Port 1 on loopback: connection refused at once.
    let (code, _, err) = run(bin().arg("outdated").args(path).args([
        "--ssh-host",
        "127.0.0.1",
        "--ssh-port",
        "1",
        "--ssh-option",
        "BatchMode=yes",
    ]));
    assert_eq!(code, 2, "ssh unreachable: {err}");
    assert!(err.contains("127.0.0.1"), "{err}");
    let (code, _, err) = run(bin()
        .arg("outdated")
        .args(path)
        .args([
            "--api",
            "http://127.0.0.1:1/api",
            "--user",
            "u",
            "--api-retries",
            "0",
        ])
        .env("UWSGI_IT_PASSWORD", "p"));
    assert_eq!(code, 2, "API unreachable: {err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
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
        "build", "test", "bench", "distro", "check", "boot", "publish", "security", "clean", "help",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{t} "))),
            "make help lacks {t}:\n{text}"
        );
    }
}
