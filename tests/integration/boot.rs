//! `boot`: a distro started the way the platform starts a container, step by step; every
//! way out (success, a failing step, timeout, Ctrl-C) leaves no mount, no process and no
//! temporary directory behind.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::support::{self, bin, run};

/// A static busybox tree with the platform's mount points: boots up to the uWSGI step.
fn busybox_tree(dir: &Path) {
    support::busybox_tree(dir);
    for m in build_distro::finish::MOUNT_POINTS {
        std::fs::create_dir_all(dir.join(&m[1..])).unwrap();
    }
}

/// Field 22 of `/proc/PID/stat`: with the pid, it names one process.
fn start_time(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The processes of a pid namespace (`pid:[inode]`) as (pid, start time); only valid
/// while the namespace's init is alive.
fn processes_in(ns: &str) -> Vec<(i64, u64)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .map(|l| l.to_string_lossy() == ns)
                .unwrap_or(false)
        })
        .filter_map(|pid| Some((pid, start_time(pid)?)))
        .collect()
}

/// What every test checks after a run: nothing mounted under `dir`, the temporary
/// directories in `work` gone, and none of the run's processes alive.
fn assert_torn_down(dir: &Path, work: &Path, processes: &[(i64, u64)]) {
    let mounts = support::mounts_under(dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let left: Vec<PathBuf> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "temporary directories left: {left:?}");
    let alive: Vec<&(i64, u64)> = processes
        .iter()
        .filter(|(pid, start)| start_time(*pid) == Some(*start))
        .collect();
    assert!(alive.is_empty(), "processes of the run survived: {alive:?}");
}

/// The processes a report says it stopped.
fn stopped(report: &Value) -> Vec<(i64, u64)> {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_i64().unwrap(), p["start"].as_u64().unwrap()))
        .collect()
}

/// `boot --json PATH ARGS...` with its temporary directories in `work`.
fn boot_json(path: &Path, work: &Path, args: &[&str]) -> (i32, Value, String) {
    std::fs::create_dir_all(work).unwrap();
    let (code, out, err) = run(bin()
        .arg("boot")
        .arg(path)
        .arg("--json")
        .arg("--work-dir")
        .arg(work)
        .args(args));
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"));
    (code, v, err)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

/// The failing step: it must be `name`, it must be the last one, and its detail is returned.
fn failed_at(report: &Value, name: &str) -> String {
    let steps = report["steps"].as_array().unwrap();
    let last = steps.last().unwrap();
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(last["step"], name, "failed elsewhere: {report:#}");
    assert_eq!(last["status"], "fail", "{report:#}");
    for s in &steps[..steps.len() - 1] {
        assert_ne!(s["status"], "fail", "an earlier step failed: {report:#}");
    }
    last["detail"].as_str().unwrap().to_string()
}

#[test]
fn debian_boots_its_smoke_vassal_answers_and_subscribes() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = support::finished_debian(d.path());
    let work = d.path().join("work");
    let (code, r, err) = boot_json(&tree, &work, &["--timeout", "120"]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(r["ok"], true);
    let kinds: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "layout",
            "namespaces",
            "old-root",
            "distro",
            "pivot-root",
            "proc",
            "mounts",
            "loopback",
            "route",
            "drop-privileges",
            "rc-local",
            "user-name",
            "uwsgi",
            "shortcuts",
            "emperor",
            "vassal",
            "subscription"
        ],
        "the platform's order"
    );
    let vassal = step(&r, "vassal")["detail"].as_str().unwrap();
    assert!(vassal.contains("python3 WSGI app"), "{vassal}");
    assert!(vassal.contains("200 OK"), "{vassal}");
    assert!(
        vassal.contains("/run/build-distro-smoke.local_smoke.ini.socket (mode 666)"),
        "{vassal}"
    );
    let sub = step(&r, "subscription")["detail"].as_str().unwrap();
    assert!(
        sub.contains(
            "build-distro-smoke.local -> /containers/30001/run/build-distro-smoke.local_smoke.ini.socket (signed)"
        ),
        "{sub}"
    );
    let procs = stopped(&r);
    let commands: Vec<&str> = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["command"].as_str().unwrap())
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("/opt/unbit/uwsgi/uwsgi --emperor /containers/30001/vassals")),
        "the Emperor was not among the stopped processes: {commands:?}"
    );
    assert!(procs.len() >= 3, "{commands:?}");
    assert_torn_down(d.path(), &work, &stopped(&r));

    // The user's own vassal instead of the smoke one: its `domain` reaches the router.
    let v = d.path().join("mine.ini");
    std::fs::write(
        &v,
        "[uwsgi]\nhttp-socket = 127.0.0.1:9090\nroute-run = return:200\ndomain = mine.example\n",
    )
    .unwrap();
    let (code, r, err) = boot_json(
        &tree,
        &work,
        &["--timeout", "120", "--vassal", v.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{r:#}\n{err}");
    assert_eq!(
        step(&r, "vassal")["detail"],
        "mine.ini is ready to accept requests"
    );
    let sub = step(&r, "subscription")["detail"].as_str().unwrap();
    assert!(
        sub.contains("mine.example -> /containers/30001/run/mine.example_mine.ini.socket"),
        "{sub}"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));

    // A vassal that never gets ready: the timeout stops everything, its sleep included.
    let slow = d.path().join("slow.ini");
    std::fs::write(
        &slow,
        "[uwsgi]\nexec-asap = sleep 1000\nhttp-socket = 127.0.0.1:9091\n",
    )
    .unwrap();
    let (code, r, _) = boot_json(
        &tree,
        &work,
        &["--timeout", "3", "--vassal", slow.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    let last = r["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "fail");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .starts_with("did not finish within 3 s (--timeout)"),
        "{last}"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));

    // --shell without a terminal reads its commands from stdin, as the uid, inside.
    let out = bin()
        .arg("boot")
        .arg(&tree)
        .args(["--shell", "--timeout", "120", "--work-dir"])
        .arg(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"id -u; hostname; cat /run/resolvconf/hostname; exit 3\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("\n30001\nbuild-distro-boot\nbuild-distro-boot\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shell           /bin/bash as uid 30001 ended (exit 3)"),
        "{stdout}"
    );
    assert_torn_down(d.path(), &work, &[]);
}

#[test]
fn tree_without_old_root_fails_where_the_platform_falls_back() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    busybox_tree(&tree);
    std::fs::remove_dir(tree.join(".old_root")).unwrap();
    let work = d.path().join("work");
    let (code, r, _) = boot_json(&tree, &work, &[]);
    assert_eq!(code, 1);
    let detail = failed_at(&r, "old-root");
    assert!(
        detail.contains("/.old_root is not a directory: the platform does not use this distro, the container falls back to its default distro and raises a [DANGER] alarm"),
        "{detail}"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));
}

#[test]
fn debian_missing_ifconfig_shortcuts_or_a_uwsgi_library_fails_at_the_matching_step() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = support::finished_debian(d.path());
    let work = d.path().join("work");

    // (Busybox's sh runs its own ifconfig even without the applet link: use Debian.)
    let ifconfig = tree.join("usr/sbin/ifconfig");
    let aside = d.path().join("ifconfig");
    std::fs::rename(&ifconfig, &aside).unwrap();
    let (code, r, _) = boot_json(&tree, &work, &["--timeout", "120"]);
    assert_eq!(code, 1);
    assert_eq!(
        failed_at(&r, "loopback"),
        "`ifconfig lo up` failed (exit 127): /bin/sh: 1: ifconfig: not found; the distro must provide ifconfig on the default PATH (net-tools or busybox), or the container has no network"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));
    std::fs::rename(&aside, &ifconfig).unwrap();

    let shortcuts = tree.join("opt/unbit/uwsgi/shortcuts.ini");
    let aside = d.path().join("shortcuts.ini");
    std::fs::rename(&shortcuts, &aside).unwrap();
    let (code, r, _) = boot_json(&tree, &work, &["--timeout", "120"]);
    assert_eq!(code, 1);
    assert_eq!(
        failed_at(&r, "shortcuts"),
        "/opt/unbit/uwsgi/shortcuts.ini is missing: the Emperor injects it before every vassal (vassals-include-before), so every vassal would fail to start; build-distro build installs it"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));
    std::fs::rename(&aside, &shortcuts).unwrap();

    // libyajl is needed by uWSGI alone in the Debian tree.
    let libdir = tree.join("usr/lib/x86_64-linux-gnu");
    let mut removed = 0;
    for e in std::fs::read_dir(&libdir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("libyajl.so.2") {
            std::fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no libyajl.so.2 in {}", libdir.display());
    let (code, r, _) = boot_json(&tree, &work, &["--timeout", "120"]);
    assert_eq!(code, 1);
    let detail = failed_at(&r, "uwsgi");
    assert!(
        detail.contains("error while loading shared libraries: libyajl.so.2"),
        "{detail}"
    );
    assert!(
        detail.contains("a library it needs is missing in the distro"),
        "{detail}"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));
}

#[test]
fn tarball_is_extracted_booted_and_removed() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    busybox_tree(&tree);
    // Busybox brings sh, ifconfig and route, but without the dynamic loader the host's
    // uWSGI cannot start: the boot goes as far as the uWSGI step.
    std::fs::remove_dir_all(tree.join("lib64")).unwrap();
    std::fs::create_dir_all(tree.join("opt/unbit/uwsgi")).unwrap();
    std::fs::rename(
        tree.join("usr/bin/uwsgi-core"),
        tree.join("opt/unbit/uwsgi/uwsgi"),
    )
    .unwrap();
    let tarball = d.path().join("bb.tar.gz");
    support::tar(&tree, &["-czf"], &tarball);
    let work = d.path().join("work");
    let (code, r, _) = boot_json(&tarball, &work, &[]);
    assert_eq!(code, 1);
    for s in ["loopback", "route", "drop-privileges"] {
        assert_eq!(step(&r, s)["status"], "ok", "{r:#}");
    }
    assert_eq!(step(&r, "rc-local")["status"], "warn");
    assert_eq!(
        failed_at(&r, "uwsgi"),
        "/opt/unbit/uwsgi/uwsgi cannot start: its dynamic loader (ELF interpreter) is missing in the distro; the binary must come from the distro itself (build-distro build links the distro's own uWSGI there)"
    );
    assert_torn_down(d.path(), &work, &stopped(&r));
}

#[test]
fn interrupt_in_the_shell_tears_everything_down() {
    crate::require_root!();
    let d = support::tempdir();
    let tree = d.path().join("tree");
    busybox_tree(&tree);
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // The boot fails at the uWSGI step, after the drop: --shell still opens a shell there
    // (to look around), which waits on our stdin until we press Ctrl-C.
    let mut child = bin()
        .arg("boot")
        .arg(&tree)
        .args(["--shell", "--work-dir"])
        .arg(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("output ended early: {seen:#?}"))
            .unwrap();
        let done = l.contains("FAIL  uwsgi binary");
        seen.push(l);
        if done {
            break;
        }
    }
    // The container's init is the tool's only child process.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let init = children
        .split_whitespace()
        .next()
        .expect("the container's init");
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let procs = processes_in(&ns);
    assert!(!procs.is_empty());
    crate::support::ctrl_c(&child);
    // The shell's stdin stays open: only Ctrl-C can end this run.
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.trim(), "build-distro: error: interrupted");
    assert_torn_down(d.path(), &work, &procs);
}

#[test]
fn boot_needs_root() {
    crate::require_root!();
    let d = support::tempdir();
    let (code, out, err) = run(bin().arg("boot").arg(d.path()).uid(65534).gid(65534));
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.trim(),
        "build-distro: error: boot needs root (namespaces, mounts, pivot_root); run it as root: sudo build-distro boot PATH"
    );
}
