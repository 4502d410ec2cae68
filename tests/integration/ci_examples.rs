//! The CI examples in `scripts/ci/` are valid YAML and use only commands and flags that
//! `build-distro … --help` documents, so they cannot drift from the tool.

use std::path::Path;

use crate::support::{bin, run};

/// Every `build-distro SUBCOMMAND [--flag …]` invocation in a text.
fn invocations(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        // Comments and step names are prose, not commands.
        if t.starts_with('#') || t.starts_with("name:") {
            continue;
        }
        let mut words = line.split_whitespace().skip_while(|w| *w != "build-distro");
        if words.next().is_none() {
            continue;
        }
        let Some(sub) = words.next() else { continue };
        if sub.starts_with('-') || sub == "build-distro" {
            continue;
        }
        let flags = words
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap().to_string())
            .collect();
        out.push((sub.to_string(), flags));
    }
    out
}

#[test]
fn ci_examples_are_yaml_and_use_documented_flags() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ci");
    let mut seen = 0;
    for name in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let _: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let calls = invocations(&text);
        for cmd in ["build", "check", "boot", "push"] {
            assert!(
                calls.iter().any(|(s, _)| s == cmd),
                "{name} does not run `build-distro {cmd}`"
            );
        }
        for (sub, flags) in calls {
            let (code, help, err) = run(bin().arg(&sub).arg("--help"));
            assert_eq!(
                code, 0,
                "{name}: `build-distro {sub}` is not a command: {err}"
            );
            for f in flags {
                assert!(
                    help.contains(&f),
                    "{name}: `build-distro {sub} {f}`: not in --help"
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 8);
}

#[test]
fn invocation_parser_finds_flags() {
    let calls = invocations(
        "  run: sudo build-distro push x --to all --identity=k --yes\n- echo build-distro\n",
    );
    assert_eq!(
        calls,
        vec![(
            "push".to_string(),
            vec!["--to".into(), "--identity".into(), "--yes".into()]
        )]
    );
}
