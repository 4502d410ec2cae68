//! `push`: real uploads into "storage containers" served by a real OpenSSH server on
//! loopback (see `support::sshd`), over ssh (tar stream) and rsync, plus `local:DIR`.

use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use build_distro::pack::{Format, PackOptions};
use build_distro::push::publish::{Recording, Status, To, Verify};
use build_distro::push::ssh::SshConfig;
use build_distro::push::{Distro, PublishOptions, StorageTarget, TransportSpec};
use build_distro::recipe::Strategy;
use serde_json::Value;

use crate::support::sshd::SshLab;
use crate::support::{self, bin, run};

const LO1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Deterministic bytes that do not compress (rsync -z and gzip cannot shrink them).
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small distro as `build` leaves it: `OUT/NAME.tar.gz` with `NAME.manifest` and
/// `NAME.json` beside it, and the tree itself at `OUT/NAME` (for tree pushes). Always has
/// the platform's `.old_root`, a read-only directory with content (the remote user must
/// still be able to fill and remove it), a hard link, a symlink and `/etc/motd` = GOOD.
pub(crate) fn make_distro(out: &Path, name: &str, extra: &[(&str, Vec<u8>)]) -> PathBuf {
    let t = out.join(name);
    let _ = std::fs::remove_dir_all(&t);
    for d in [".old_root", "containers", "etc", "usr/bin", "usr/share/ro"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("etc/motd"), "GOOD").unwrap();
    std::fs::write(t.join("usr/bin/tool"), noise(3000, 1)).unwrap();
    std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("/proc/self/mounts", t.join("etc/mtab")).unwrap();
    std::fs::write(t.join("usr/share/ro/readme"), "read only\n").unwrap();
    for (p, content) in extra {
        let p = t.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    std::fs::set_permissions(t.join("usr/share/ro"), PermissionsExt::from_mode(0o555)).unwrap();
    // Clamped mtimes, as with SOURCE_DATE_EPOCH: unchanged files look the same in every
    // version (and changed files of the same size too, which rsync must not be fooled by).
    let opts = PackOptions {
        clamp_mtime: Some(1_700_000_000),
        level: 1,
    };
    let prov = |id: &str| {
        format!("{{\"name\":\"deb\",\"path\":\"deb\",\"content_id\":\"{id}\"}}\n").into_bytes()
    };
    let tarball = out.join(format!("{name}.tar.gz"));
    let p = build_distro::pack::pack_to_file(&t, &tarball, Format::TarGz, &opts, prov).unwrap();
    std::fs::write(t.join("etc/build-distro.json"), prov(&p.content_id)).unwrap();
    std::fs::write(
        out.join(format!("{name}.manifest")),
        build_distro::pack::manifest_text(&p),
    )
    .unwrap();
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::json!({"name": "deb", "path": "deb", "content_id": p.content_id,
            "entries": p.entries, "files": p.files, "bytes": p.bytes})
        .to_string(),
    )
    .unwrap();
    tarball
}

pub(crate) fn id12(tarball: &Path) -> String {
    let json = tarball.with_file_name(
        tarball
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".tar.gz", ".json"),
    );
    let v: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    v["content_id"].as_str().unwrap()["sha256:".len().."sha256:".len() + 12].to_string()
}

/// `build-distro push PATH --to UID --no-register --ssh-host 127.0.0.1 …ARGS --json`.
fn push(lab: &SshLab, path: &Path, uid: u32, args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = run(bin()
        .arg("push")
        .arg(path)
        .args([
            "--to",
            &uid.to_string(),
            "--no-register",
            "--ssh-host",
            "127.0.0.1",
        ])
        .args(lab.ssh_flags())
        .args(args)
        .arg("--json"));
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, v, err)
}

pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn ssh_push_lands_owned_by_the_storage_user_and_identical_content_is_not_sent_again() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39001], "");
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "deb", &[]);
    let (code, v, err) = push(&lab, &tarball, 39001, &["--verify", "full"]);
    assert_eq!(code, 0, "{err}\n{v}");
    let t = &v["targets"][0];
    assert_eq!(t["status"], "uploaded");
    let dest = format!("deb-{}", id12(&tarball));
    assert_eq!(t["path"], dest.as_str());
    let sent = t["bytes_sent"].as_u64().unwrap();
    assert_eq!(sent, std::fs::metadata(&tarball).unwrap().len());
    assert_eq!(v["bytes_sent"].as_u64(), Some(sent));

    let distros = lab.distros(39001);
    assert_eq!(
        listing(&distros),
        std::slice::from_ref(&dest),
        "no temporaries left"
    );
    let root = distros.join(&dest);
    assert!(root.join(".old_root").is_dir());
    assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"GOOD");
    let md = std::fs::metadata(&root).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        0o755,
        "other containers can traverse it"
    );
    assert_eq!(md.uid(), 39001, "extracted by the storage user, not root");
    let ro = std::fs::metadata(root.join("usr/share/ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555, "modes exactly as packed");
    assert_eq!(
        std::fs::metadata(root.join("usr/share/ro/readme"))
            .unwrap()
            .uid(),
        39001
    );
    let a = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    let b = std::fs::metadata(root.join("usr/bin/tool2")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard links stay links");

    let (code, v, err) = push(&lab, &tarball, 39001, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["targets"][0]["status"], "unchanged");
    assert_eq!(v["bytes_sent"], 0);
    assert_eq!(listing(&distros), [dest]);
}

#[test]
fn rsync_push_of_a_one_file_change_sends_little_and_shares_the_rest() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39002], "");
    let out = support::tempdir();
    let big = noise(4 << 20, 7);
    let v1 = make_distro(out.path(), "v1", &[("usr/lib/big.so", big.clone())]);
    let (code, r1, err) = push(&lab, &v1, 39002, &["--transport", "rsync"]);
    assert_eq!(code, 0, "{err}\n{r1}");
    assert_eq!(r1["transport"], "rsync");
    let full = r1["bytes_sent"].as_u64().unwrap();
    assert!(full > 4 << 20, "the first push sends everything: {full}");

    let v2 = make_distro(
        out.path(),
        "v2",
        &[
            ("usr/lib/big.so", big),
            ("etc/changed", b"one file\n".to_vec()),
        ],
    );
    let (code, r2, err) = push(
        &lab,
        &v2,
        39002,
        &["--transport", "rsync", "--verify", "full"],
    );
    assert_eq!(code, 0, "{err}\n{r2}");
    let t = &r2["targets"][0];
    let d1 = format!("deb-{}", id12(&v1));
    let d2 = format!("deb-{}", id12(&v2));
    assert_eq!(t["status"], "uploaded");
    assert_eq!(t["previous"], d1.as_str());
    let small = t["bytes_sent"].as_u64().unwrap();
    assert!(
        small * 20 < full,
        "a one-file change sent {small} bytes against {full} for the full push"
    );
    let distros = lab.distros(39002);
    let mut want = [d1.clone(), d2.clone()];
    want.sort();
    assert_eq!(listing(&distros), want);
    let a = std::fs::metadata(distros.join(&d1).join("usr/lib/big.so")).unwrap();
    let b = std::fs::metadata(distros.join(&d2).join("usr/lib/big.so")).unwrap();
    assert_eq!(
        a.ino(),
        b.ino(),
        "unchanged files are hard links to the previous version"
    );
    assert_eq!(
        std::fs::read(distros.join(&d2).join("etc/changed")).unwrap(),
        b"one file\n"
    );
    assert_eq!(
        std::fs::metadata(distros.join(&d2)).unwrap().mode() & 0o777,
        0o755
    );
}

#[test]
fn replace_swaps_the_one_path() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39003], "");
    let out = support::tempdir();
    let v1 = make_distro(out.path(), "v1", &[]);
    let v2 = make_distro(out.path(), "v2", &[("etc/v2", b"2".to_vec())]);
    for v in [&v1, &v2] {
        let (code, r, err) = push(&lab, v, 39003, &["--strategy", "replace"]);
        assert_eq!(code, 0, "{err}\n{r}");
        assert_eq!(r["targets"][0]["status"], "uploaded");
        assert_eq!(r["targets"][0]["path"], "deb");
    }
    let distros = lab.distros(39003);
    assert_eq!(
        listing(&distros),
        ["deb"],
        "the old one is gone, nothing left aside"
    );
    assert_eq!(std::fs::read(distros.join("deb/etc/v2")).unwrap(), b"2");
    let (_, r, _) = push(&lab, &v2, 39003, &["--strategy", "replace"]);
    assert_eq!(r["targets"][0]["status"], "unchanged");
}

#[test]
fn to_all_pushes_to_every_server_and_registers_each() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1, LO2], &[39011, 39012], "");
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "deb", &[]);
    let reg = Recording {
        storage: vec![
            StorageTarget {
                uid: 39011,
                server: "one".into(),
                address: "127.0.0.1".into(),
            },
            StorageTarget {
                uid: 39012,
                server: "two".into(),
                address: "127.0.0.2".into(),
            },
        ],
        servers: [(30100, "two".to_string())].into(),
        ..Default::default()
    };
    let flags = lab.ssh_flags();
    let options: Vec<String> = flags
        .chunks(2)
        .filter(|c| c[0] == "--ssh-option")
        .map(|c| c[1].clone())
        .collect();
    let ssh = SshConfig::new(None, Some(lab.port), Some(lab.key.clone()), &options).unwrap();
    let opts = PublishOptions {
        to: To::All,
        strategy: Strategy::Versioned,
        verify: Verify::Full,
        transport: TransportSpec::Ssh(ssh),
        jobs: 4,
        register: true,
        assign: vec![30100],
        work_dir: out.path().to_path_buf(),
    };
    let mut d = Distro::open(&tarball).unwrap();
    let reporter = build_distro::progress::Reporter::silent();
    let runner = Arc::new(build_distro::runner::System);
    let r =
        build_distro::push::publish(&mut d, &opts, Some(&reg), runner.clone(), &reporter).unwrap();
    assert!(r.ok(), "{r:?}");
    let dest = format!("deb-{}", d.id12());
    for (t, uid, addr) in [
        (&r.targets[0], 39011, "127.0.0.1"),
        (&r.targets[1], 39012, "127.0.0.2"),
    ] {
        assert_eq!(t.status, Status::Uploaded);
        assert_eq!(t.target, format!("{uid}@{addr}"));
        assert_eq!(listing(&lab.distros(uid)), std::slice::from_ref(&dest));
    }
    let regs = reg.distros.lock().unwrap().clone();
    assert_eq!(regs.len(), 2);
    assert_eq!(
        (regs[1].storage, regs[1].path.as_str()),
        (39012, dest.as_str())
    );
    assert_eq!(regs[1].name, format!("deb-{}", d.id12()));
    assert_eq!(*reg.assigned.lock().unwrap(), [(30100, regs[1].id)]);

    // A rerun does only what is missing: nothing.
    let again = build_distro::push::publish(&mut d, &opts, Some(&reg), runner, &reporter).unwrap();
    assert!(again.targets.iter().all(|t| t.status == Status::Unchanged));
    assert_eq!(again.bytes_sent, 0);
    assert_eq!(
        reg.distros.lock().unwrap().len(),
        2,
        "registering is idempotent"
    );
}

#[test]
fn push_to_all_through_the_api_registers_and_assigns() {
    crate::require_sshd!();
    use crate::support::fake_api::{FakeApi, PASSWORD, USER};
    let api = FakeApi::start();
    api.add_container(39051, "store1", USER, "s1", true);
    api.add_container(39052, "store2", USER, "s2", true);
    api.add_container(39053, "web", USER, "s2", false);
    for (uid, addr) in [(39051, "127.0.0.1"), (39052, "127.0.0.2")] {
        api.state().containers.get_mut(&uid).unwrap().server_address = addr.into();
    }
    let lab = SshLab::start(&[LO1, LO2], &[39051, 39052], "");
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "deb", &[]);
    let tarball_arg = tarball.display().to_string();
    let flags = lab.ssh_flags();
    let push_all = |extra: &[&str]| {
        let mut args = vec!["push", tarball_arg.as_str(), "--to", "all", "--json"];
        args.extend(extra);
        args.extend(flags.iter().map(String::as_str));
        run(&mut api.cmd(&args))
    };
    let (code, stdout, err) = push_all(&["--assign", "39053", "--yes"]);
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(!stdout.contains(PASSWORD) && !err.contains(PASSWORD));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let dest = format!("deb-{}", id12(&tarball));
    let st = api.state();
    let mine: Vec<_> = st.distros.values().filter(|d| d.path == dest).collect();
    assert_eq!(mine.len(), 2, "one entry per storage container");
    assert!(mine.iter().all(|d| d.name == dest));
    let on2 = mine.iter().find(|d| d.container == 39052).unwrap().id;
    assert_eq!(
        st.containers[&39053].custom_distro,
        Some(on2),
        "same server's entry"
    );
    assert_eq!(st.containers[&39053].restarts, 1);
    drop(st);
    assert_eq!(v["assigned"][0]["distro_id"], on2);
    for (i, uid) in [(0, 39051), (1, 39052)] {
        assert_eq!(v["targets"][i]["status"], "uploaded");
        assert_eq!(listing(&lab.distros(uid)), std::slice::from_ref(&dest));
    }

    // Rerun: nothing uploaded, nothing created.
    let writes = api.writes().len();
    let (code, stdout, err) = push_all(&[]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["bytes_sent"], 0);
    assert_eq!(v["targets"][1]["distro_id"], on2);
    assert_eq!(api.writes().len(), writes, "no new API writes");
}

/// The processes of a test user (their remote sessions), by reading /proc.
fn processes_of(uid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| e.metadata().map(|m| m.uid() == uid).unwrap_or(false))
        .count()
}

#[test]
fn sigkill_mid_transfer_leaves_the_previous_distro_and_the_next_push_succeeds() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39021], "");
    let out = support::tempdir();
    let v1 = make_distro(out.path(), "v1", &[]);
    let (code, _, err) = push(&lab, &v1, 39021, &[]);
    assert_eq!(code, 0, "{err}");
    let d1 = format!("deb-{}", id12(&v1));
    let distros = lab.distros(39021);
    let before = std::fs::read(distros.join(&d1).join("usr/bin/tool")).unwrap();

    let v2 = make_distro(out.path(), "v2", &[("usr/lib/big.so", noise(24 << 20, 3))]);
    let d2 = format!("deb-{}", id12(&v2));
    let mut child = bin()
        .arg("push")
        .arg(&v2)
        .args(["--to", "39021", "--no-register", "--ssh-host", "127.0.0.1"])
        .args(lab.ssh_flags())
        .args(["--transport", "rsync", "--bwlimit", "1000"])
        // SIGKILL leaves the local staging directory behind: keep it in this test's own.
        .env("TMPDIR", out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the upload is under way: its temporary directory has content.
    let mut under_way = false;
    for _ in 0..400 {
        let tmp = listing(&distros)
            .into_iter()
            .find(|n| n.starts_with(".bd+tmp-"));
        if let Some(t) = tmp {
            if std::fs::read_dir(distros.join(t))
                .map(|r| r.count())
                .unwrap_or(0)
                > 0
            {
                under_way = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(under_way, "the upload never started");
    child.kill().unwrap(); // SIGKILL: no guard runs
    child.wait().unwrap();
    for _ in 0..200 {
        if processes_of(39021) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let names = listing(&distros);
    assert!(names.contains(&d1), "{names:?}");
    assert!(
        !names.contains(&d2),
        "no half-written distro is visible: {names:?}"
    );
    assert!(
        names.iter().all(|n| n == &d1 || n.starts_with(".bd+tmp-")),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(distros.join(&d1).join("usr/bin/tool")).unwrap(),
        before
    );

    let (code, r, err) = push(&lab, &v2, 39021, &["--transport", "rsync"]);
    assert_eq!(code, 0, "{err}\n{r}");
    assert_eq!(r["targets"][0]["status"], "uploaded");
    let mut want = [d1, d2];
    want.sort();
    assert_eq!(listing(&distros), want, "the stale temporary was cleaned");
}

#[test]
fn verify_full_catches_a_file_changed_on_the_server() {
    crate::require_sshd!();
    // A server that meddles: after every command, /etc/motd of any upload in progress
    // gets other bytes of the same size.
    let script_dir = support::tempdir();
    let tamper = script_dir.path().join("tamper.sh");
    std::fs::write(
        &tamper,
        "/bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\nrc=$?\n\
         for f in \"$HOME\"/distros/.bd+tmp-*/etc/motd; do [ -f \"$f\" ] && printf EVIL > \"$f\"; done\n\
         exit $rc\n",
    )
    .unwrap();
    std::fs::set_permissions(script_dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let lab = SshLab::start(
        &[LO1],
        &[39031],
        &format!(
            "Match User 39031\n    ForceCommand /bin/sh {}\n",
            tamper.display()
        ),
    );
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "deb", &[]);
    let (code, v, err) = push(&lab, &tarball, 39031, &["--verify", "full"]);
    assert_eq!(code, 1, "{err}\n{v}");
    let e = v["targets"][0]["error"].as_str().unwrap();
    assert!(
        e.contains("verify failed: content differs: /etc/motd"),
        "{e}"
    );
    assert_eq!(v["targets"][0]["status"], "failed");
    assert!(
        listing(&lab.distros(39031)).is_empty(),
        "discarded, nothing visible"
    );

    // The same size: only the full check could see it.
    let (code, v, _) = push(&lab, &tarball, 39031, &["--verify", "size"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn a_real_debian_tree_goes_up_and_verifies() {
    crate::require_sshd!();
    let tree = support::debian_tree();
    let lab = SshLab::start(&[LO1], &[39041], "");
    let (code, v, err) = push(&lab, &tree, 39041, &["--verify", "full"]);
    assert_eq!(code, 0, "{err}\n{v}");
    let dest = v["targets"][0]["path"].as_str().unwrap().to_string();
    assert!(dest.starts_with("fixture-bookworm-"), "{dest}");
    let root = lab.distros(39041).join(&dest);
    assert!(root.join(".old_root").is_dir());
    assert!(root.join("opt/unbit/uwsgi/shortcuts.ini").is_file());
    assert_eq!(
        std::fs::metadata(root.join("usr/bin")).unwrap().uid(),
        39041
    );
    let (_, again, _) = push(&lab, &tree, 39041, &[]);
    assert_eq!(again["targets"][0]["status"], "unchanged");
}

#[test]
fn local_push_of_archive_and_tree() {
    let d = support::tempdir();
    let homes = d.path().join("containers");
    std::fs::create_dir_all(homes.join("30001/distros")).unwrap();
    let tarball = make_distro(d.path(), "deb", &[]);
    let local = format!("local:{}", homes.display());
    let push_local = |p: &Path| {
        let (code, out, err) = run(bin()
            .arg("push")
            .arg(p)
            .args(["--to", "30001", "--no-register", "--transport", &local])
            .args(["--verify", "full", "--json"]));
        assert_eq!(code, 0, "{err}\n{out}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let r = push_local(&tarball);
    assert_eq!(r["targets"][0]["status"], "uploaded");
    assert_eq!(
        r["targets"][0]["target"],
        format!("local:{}", homes.join("30001").display())
    );
    let dest = format!("deb-{}", id12(&tarball));
    let distros = homes.join("30001/distros");
    assert_eq!(listing(&distros), std::slice::from_ref(&dest));
    assert_eq!(
        std::fs::read(distros.join(&dest).join("etc/motd")).unwrap(),
        b"GOOD"
    );
    // The tree the archive was made from is the same content: nothing to do.
    let r = push_local(&d.path().join("deb"));
    assert_eq!(r["targets"][0]["status"], "unchanged");

    // Human output: a table naming the target.
    let (code, out, err) = run(bin().arg("push").arg(&tarball).args([
        "--to",
        "30001",
        "--no-register",
        "--transport",
        &local,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unchanged"), "{out}");
    assert!(out.contains(&dest), "{out}");
}

#[test]
fn push_usage_errors_are_exit_2() {
    let d = support::tempdir();
    let tarball = make_distro(d.path(), "deb", &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["--to", "30001,all"], "--to all cannot be combined"),
        (&["--to", "x1"], "expected a storage container uid"),
        (&["--to", "all", "--no-register"], "no API URL"),
        (&["--to", "30001", "--no-register"], "no API URL"),
        (
            &[
                "--to",
                "30001",
                "--no-register",
                "--ssh-host=-oProxyCommand=x",
            ],
            "only a host name",
        ),
        (
            &["--to", "30001", "--no-register", "--transport", "ftp"],
            "expected ssh, rsync or local:DIR",
        ),
        (
            &["--to", "30001", "--no-register", "--ssh-option", "nokey"],
            "expected KEY=VALUE",
        ),
    ];
    for (args, msg) in cases {
        let (code, out, err) = run(bin()
            .env_remove("UWSGI_IT_API")
            .arg("push")
            .arg(&tarball)
            .args(*args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    let (code, _, err) = run(bin()
        .arg("push")
        .arg(d.path().join("nothing.tar.gz"))
        .args(["--to", "1", "--no-register"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn build_publish_pushes_what_it_built() {
    crate::require_root!();
    let d = support::tempdir();
    let homes = d.path().join("containers");
    std::fs::create_dir_all(homes.join("30005/distros")).unwrap();
    let recipe = support::write_recipe(
        d.path(),
        "r.toml",
        &format!(
            "[distro]\nname = \"pub\"\n[source]\ntype = \"rootfs\"\ndir = \"{}\"\n\
             [publish]\nto = [30005]\nstrategy = \"replace\"\n",
            support::debian_tree().display()
        ),
    );
    let (code, out, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "dir", "--publish", "--no-register", "--json"])
        .arg("--out")
        .arg(d.path().join("out"))
        .arg("--transport")
        .arg(format!("local:{}", homes.display())));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["publish"]["targets"][0]["status"], "uploaded");
    assert_eq!(v["publish"]["content_id"], v["build"]["content_id"]);
    assert!(homes.join("30005/distros/pub/.old_root").is_dir());

    // Without a [publish] table, --publish is refused before building.
    let bare = support::write_recipe(
        d.path(),
        "bare.toml",
        "[distro]\nname = \"x\"\n[source]\ntype = \"rootfs\"\ndir = \"/nonexistent\"\n",
    );
    let (code, _, err) = run(bin().arg("build").arg(&bare).arg("--publish"));
    assert_eq!(code, 2);
    assert!(err.contains("--publish needs a [publish] table"), "{err}");
}
