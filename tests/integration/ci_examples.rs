//! The CI examples in `scripts/ci/` and the Makefile's `security` loop are valid and use
//! only commands and flags that `build-distro … --help` documents (nested subcommands
//! checked against their own help), so they cannot drift from the tool.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use crate::support::{bin, run};

/// One `build-distro` command line: its command path (`["distros", "gc"]`) and the long
/// flags it passes, in order.
#[derive(Debug, PartialEq)]
struct Call {
    cmd: Vec<String>,
    flags: Vec<String>,
}

impl Call {
    fn name(&self) -> String {
        self.cmd.join(" ")
    }
}

/// The program's own word: `build-distro`, `target/debug/build-distro`, `$(build-distro`
/// (not a URL ending in the project's name).
fn is_program(w: &str) -> bool {
    !w.contains("://") && w.rsplit(['/', '(']).next() == Some("build-distro")
}

/// A word that can be a (sub)command name.
fn is_command_word(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

/// Every `build-distro CMD [SUB…] [--flag …]` invocation in a text (YAML, `make -n`
/// output). `subcommands(path)` names the subcommands of a command path, so nested ones
/// are followed (`distros gc`, not `distros`). Only the command's own words count: the line
/// ends at a shell separator, so a pipe into `jq --argjson` is not read as ours.
fn invocations(text: &str, subcommands: &dyn Fn(&[String]) -> Vec<String>) -> Vec<Call> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        // Comments and step names are prose, not commands.
        if t.starts_with('#') || t.starts_with("name:") {
            continue;
        }
        let mut words = line
            .split_whitespace()
            .skip_while(|w| !is_program(w))
            .skip(1)
            .map_while(|w| {
                let separator = ["|", "||", "&&", ";", ">", ">>", "2>", "<", "\\"].contains(&w);
                (!separator).then(|| w.strip_suffix(';').unwrap_or(w))
            })
            .peekable();
        let Some(first) = words.next_if(|w| is_command_word(w)) else {
            continue;
        };
        let mut cmd = vec![first.to_string()];
        while let Some(sub) = words.next_if(|w| subcommands(&cmd).iter().any(|s| s == w)) {
            cmd.push(sub.to_string());
        }
        let flags = words
            .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap().to_string())
            .collect();
        out.push(Call { cmd, flags });
    }
    out
}

/// `build-distro PATH… --help`, asked once per path.
#[derive(Default)]
struct Helps(RefCell<HashMap<Vec<String>, Option<String>>>);

impl Helps {
    /// The help text, or None when PATH is not a command.
    fn get(&self, path: &[String]) -> Option<String> {
        self.0
            .borrow_mut()
            .entry(path.to_vec())
            .or_insert_with(|| {
                let (code, help, _) = run(bin().args(path).arg("--help"));
                (code == 0).then_some(help)
            })
            .clone()
    }

    /// The names under "Commands:" (none for a leaf command).
    fn subcommands(&self, path: &[String]) -> Vec<String> {
        let Some(help) = self.get(path) else {
            return Vec::new();
        };
        help.lines()
            .skip_while(|l| l.trim() != "Commands:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| *w != "help")
            .map(str::to_string)
            .collect()
    }

    /// Every long flag the help names exactly (`--to`, `--ssh-option`).
    fn flags(&self, path: &[String]) -> BTreeSet<String> {
        let help = self.get(path).unwrap_or_default();
        help.split_whitespace()
            .filter_map(|w| w.find("--").map(|i| &w[i..]))
            .map(|w| {
                let end = w[2..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .map_or(w.len(), |i| i + 2);
                w[..end].to_string()
            })
            .filter(|f| f.len() > 2)
            .collect()
    }

    /// The calls in `text`, each asserted to be a command whose help documents its flags.
    fn checked_calls(&self, source: &str, text: &str) -> Vec<Call> {
        let calls = invocations(text, &|p| self.subcommands(p));
        for call in &calls {
            assert!(
                self.get(&call.cmd).is_some(),
                "{source}: `build-distro {}` is not a command",
                call.name()
            );
            let documented = self.flags(&call.cmd);
            for f in &call.flags {
                assert!(
                    documented.contains(f),
                    "{source}: `build-distro {} {f}`: not in `build-distro {} --help`",
                    call.name(),
                    call.name()
                );
            }
        }
        calls
    }
}

/// The security loop's commands, in the order it must run them.
const LOOP: [&str; 6] = [
    "outdated",
    "build",
    "check",
    "push",
    "distros assign",
    "distros gc",
];

fn assert_loop(source: &str, calls: &[Call]) {
    let steps: Vec<String> = calls
        .iter()
        .map(Call::name)
        .filter(|n| LOOP.contains(&n.as_str()))
        .collect();
    assert_eq!(steps, LOOP, "{source}: the security loop's steps");
}

fn call<'a>(calls: &'a [Call], name: &str) -> &'a Call {
    calls
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no `build-distro {name}`"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn ci_examples_are_yaml_and_use_documented_flags() {
    let helps = Helps::default();
    let mut seen = 0;
    for name in [
        "github-actions.yml",
        "gitlab-ci.yml",
        "github-security.yml",
        "gitlab-security.yml",
    ] {
        let text = std::fs::read_to_string(root().join("scripts/ci").join(name)).unwrap();
        let _: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let calls = helps.checked_calls(name, &text);
        if name.contains("security") {
            assert_loop(name, &calls);
            // The gate reads the published version, and every ssh step gets the key.
            let outdated = call(&calls, "outdated");
            for f in ["--to", "--path", "--identity"] {
                assert!(
                    outdated.flags.iter().any(|g| g == f),
                    "{name}: outdated {f}"
                );
            }
            for c in ["push", "distros gc"] {
                assert!(
                    call(&calls, c).flags.iter().any(|g| g == "--identity"),
                    "{name}: {c} without --identity"
                );
            }
            for c in ["push", "distros assign", "distros gc"] {
                assert!(
                    call(&calls, c).flags.iter().any(|g| g == "--yes"),
                    "{name}: {c} without --yes"
                );
            }
            // Secrets come from the environment and a file, never the command line.
            assert!(
                !text.contains("--password "),
                "{name}: password on a command line"
            );
        } else {
            for cmd in ["build", "check", "boot", "push"] {
                assert!(
                    calls.iter().any(|c| c.name() == cmd),
                    "{name} does not run `build-distro {cmd}`"
                );
            }
        }
        seen += calls.len();
    }
    assert!(seen >= 20, "only {seen} invocations found");
}

/// `make -n security VARS…` from the repository root.
fn make_dry_run(vars: &[&str]) -> String {
    let out = Command::new("make")
        .args(["-n", "--no-print-directory", "security"])
        .args(vars)
        .current_dir(root())
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make -n security: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn make_security_runs_the_loop_with_documented_flags() {
    let helps = Helps::default();
    let text = make_dry_run(&[
        "PROFILE=debug",
        "STORAGE=30003",
        "PUBLISHED=debian-trixie-0123456789ab",
        "CONTAINERS=30010 30011",
        "SSH=--identity /k --ssh-option StrictHostKeyChecking=yes --ssh-port 2222",
        "TRANSPORT=rsync",
    ]);
    let calls = helps.checked_calls("make security", &text);
    assert_loop("make security", &calls);
    let outdated = call(&calls, "outdated");
    assert_eq!(
        outdated.flags,
        ["--to", "--path", "--identity", "--ssh-option", "--ssh-port"]
    );
    assert!(text.contains("outdated --to 30003 --path debian-trixie-0123456789ab "));
    for c in ["push", "distros gc"] {
        let flags = &call(&calls, c).flags;
        for f in [
            "--transport",
            "--identity",
            "--ssh-option",
            "--ssh-port",
            "--yes",
        ] {
            assert!(flags.iter().any(|g| g == f), "make security: {c} lacks {f}");
        }
    }
    assert!(text.contains("distros assign 30010 30011 --distro"));
    assert!(call(&calls, "distros assign")
        .flags
        .contains(&"--yes".into()));

    // No published version named: the local archive is the gate's target.
    let local = make_dry_run(&["PROFILE=debug"]);
    let calls = helps.checked_calls("make security (local)", &local);
    assert_loop("make security (local)", &calls);
    assert!(call(&calls, "outdated").flags.is_empty());
    assert!(local.contains("outdated dist/debian-trixie.tar.gz "));

    // `make help` documents the target's variables.
    let out = Command::new("make")
        .args(["-s", "help"])
        .current_dir(root())
        .output()
        .expect("make");
    let help = String::from_utf8_lossy(&out.stdout);
    for v in [
        "STORAGE=",
        "PUBLISHED=",
        "CONTAINERS=",
        "SSH=",
        "TRANSPORT=",
        "KEEP=",
    ] {
        assert!(help.contains(v), "make help lacks {v}:\n{help}");
    }
}

#[test]
fn invocation_parser_finds_nested_commands_and_flags() {
    let subs = |p: &[String]| match p {
        [d] if d == "distros" => ["list", "gc", "assign"].map(String::from).to_vec(),
        _ => Vec::new(),
    };
    let text = "  run: sudo build-distro push x --to all --identity=k --yes\n\
                - echo build-distro\n\
                # build-distro push --not-read\n\
                \tid=$(build-distro distros list --json | jq --argjson c 1 .); \\\n\
                \ttarget/debug/build-distro distros gc --keep 3 --yes; \\\n\
                sudo cp ~/.cargo/bin/build-distro /usr/local/bin/\n\
                build-distro build debian-bookworm --out dist\n";
    let calls = invocations(text, &subs);
    let got: Vec<(String, Vec<String>)> =
        calls.iter().map(|c| (c.name(), c.flags.clone())).collect();
    let want: Vec<(String, Vec<String>)> = vec![
        (
            "push".into(),
            vec!["--to".into(), "--identity".into(), "--yes".into()],
        ),
        ("distros list".into(), vec!["--json".into()]),
        ("distros gc".into(), vec!["--keep".into(), "--yes".into()]),
        ("build".into(), vec!["--out".into()]),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_misspelt_flag_or_a_parent_command_s_flag_is_caught() {
    let helps = Helps::default();
    let documented = helps.flags(&["distros".into(), "gc".into()]);
    assert!(documented.contains("--identity") && documented.contains("--yes"));
    // Exact names: a prefix of a real flag is not one.
    assert!(!documented.contains("--ye") && !documented.contains("--ident"));
    let calls = invocations("build-distro distros gc --yse\n", &|p| helps.subcommands(p));
    assert_eq!(calls[0].name(), "distros gc");
    assert!(!helps.flags(&calls[0].cmd).contains("--yse"));
    // `distros --help` documents no --identity: the nested command's own help is the one read.
    assert!(!helps.flags(&["distros".into()]).contains("--identity"));
}

/// The loop's control flow, run for real by make with a stand-in `build-distro` that logs
/// its arguments, answers `outdated` with a chosen exit code and `push --json` with a
/// report: 0 stops, 2 fails before building, 1 runs every step with the entry pushed to
/// STORAGE.
#[test]
fn make_security_acts_on_the_gate_s_exit_code() {
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("skipped: jq is not installed (scripts/setup.sh installs it)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let fake = d.path().join("build-distro");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         echo \"$*\" >> \"$LOG\"\n\
         [ \"$1 $2\" = \"distros audit\" ] && exit \"$AUDIT_RC\"\n\
         case \"$1\" in\n\
         outdated) exit \"$OUTDATED_RC\" ;;\n\
         push) echo '{\"path\": \"d-aaaaaaaaaaaa\", \"targets\": \
         [{\"uid\": 30004, \"distro_id\": 7}, {\"uid\": 30003, \"distro_id\": 9}]}' ;;\n\
         esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = d.path().join("log");
    let make_with = |audit: u8, rc: u8, storage: &str| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new("make")
            // -o build: the binary is the stand-in, nothing to compile.
            .args(["--no-print-directory", "-o", "build", "security"])
            .arg(format!("BIN={}", fake.display()))
            .arg(format!("OUT={}", d.path().display()))
            .args(["PUBLISHED=d-0123456789ab", "CONTAINERS=30010 30011"])
            .arg(format!("STORAGE={storage}"))
            .env("LOG", &log)
            .env("OUTDATED_RC", rc.to_string())
            .env("AUDIT_RC", audit.to_string())
            .current_dir(root())
            .output()
            .expect("make");
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        (
            out.status.success(),
            logged,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let make = |rc: u8, storage: &str| make_with(0, rc, storage);
    // The fleet's audit comes first; the gate is outdated on the published version.
    let o = "distros audit\noutdated --to 30003 --path d-0123456789ab\n";
    // An audit that needs a rebuild somewhere goes on to the gate; one that fails stops.
    let (ok, logged, _) = make_with(1, 0, "30003");
    assert!(ok);
    assert_eq!(logged, o);
    let (ok, logged, _) = make_with(2, 1, "30003");
    assert!(!ok, "an audit that could not tell fails the run");
    assert_eq!(logged, "distros audit\n", "nothing after a failed audit");

    let (ok, logged, _) = make(0, "30003");
    assert!(ok);
    assert_eq!(logged, o, "exit 0 stops after the gate");

    let (ok, logged, _) = make(2, "30003");
    assert!(!ok, "exit 2 fails the run");
    assert_eq!(logged, o, "exit 2 rebuilds nothing");

    let (ok, logged, stdout) = make(1, "30003");
    assert!(ok, "{logged}");
    let dist = d.path().join("debian-trixie.tar.gz");
    let dist = dist.display();
    assert_eq!(
        logged,
        format!(
            "{o}build debian-trixie --out {}\n\
             check {dist}\n\
             push {dist} --to all --transport ssh --yes --json\n\
             distros assign 30010 30011 --distro 9 --yes\n\
             distros gc --keep 3 --transport ssh --yes\n",
            d.path().display()
        )
    );
    assert!(stdout.contains("pushed as d-aaaaaaaaaaaa"), "{stdout}");

    // Containers whose storage container was not pushed to: stop before assign and gc.
    let (ok, logged, _) = make(1, "30099");
    assert!(!ok);
    assert!(logged.ends_with(&format!(
        "push {dist} --to all --transport ssh --yes --json\n"
    )));
}
