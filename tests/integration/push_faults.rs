//! Pushing survives faults on the ssh side (issue 20): a link that drops mid-upload is
//! retried (rsync resumes into the same staging directory, the tar stream starts over in
//! a fresh one), a full storage is refused before anything is sent, and concurrent
//! publishers take turns through the storage lock. Every test asserts what is on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::push::{id12, listing, make_distro, noise, push, LO1};
use crate::support::sshd::SshLab;
use crate::support::{self};

/// A ForceCommand that, the first time an upload (tar or rsync) comes in, lets some of
/// the stream through and then kills the user's sshd session: the link drops with a
/// half-filled staging directory. Every other command runs as asked.
fn drop_once_wrapper(dir: &Path) -> std::path::PathBuf {
    let w = dir.join("drop-once.sh");
    std::fs::write(
        &w,
        r#"#!/bin/sh
# Kill the nearest sshd ancestor (the user's session): the client sees the link drop.
drop_link() {
  p=$PPID
  while [ "$p" -gt 1 ]; do
    case "$(cat /proc/$p/comm)" in sshd*) kill -9 "$p"; exit 1;; esac
    p=$(awk '{print $4}' /proc/$p/stat)
  done
  exit 1
}
if [ ! -e "$HOME/.dropped" ]; then
  case "$SSH_ORIGINAL_COMMAND" in
  *"tar -x"*)
    : > "$HOME/.dropped"
    # tar only reads: cut its stream short.
    head -c 400000 | sh -c "$SSH_ORIGINAL_COMMAND"
    drop_link;;
  *"rsync --server"*)
    : > "$HOME/.dropped"
    # rsync talks back: let it run a moment (the test limits its bandwidth).
    sh -c "$SSH_ORIGINAL_COMMAND" <&0 &
    sleep 1
    kill -9 $!
    drop_link;;
  esac
fi
exec sh -c "$SSH_ORIGINAL_COMMAND"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&w, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    w
}

#[test]
fn a_link_dropped_mid_upload_is_retried_and_leaves_nothing_half_visible() {
    crate::require_sshd!();
    let wrap = support::tempdir();
    let wrapper = drop_once_wrapper(wrap.path());
    let lab = SshLab::start(
        &[LO1],
        &[39061, 39062],
        &format!(
            "Match User 39061,39062\n  ForceCommand {}\n",
            wrapper.display()
        ),
    );
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "big", &[("usr/lib/big.so", noise(3 << 20, 9))]);
    let dest = format!("deb-{}", id12(&tarball));
    for (uid, transport) in [(39061, "ssh"), (39062, "rsync")] {
        let mut args = vec!["--transport", transport];
        if transport == "rsync" {
            args.extend(["--bwlimit", "1000"]);
        }
        let (code, v, err) = push(&lab, &tarball, uid, &args);
        assert_eq!(code, 0, "{transport}: {err}\n{v}");
        assert!(
            lab.home(uid).join(".dropped").exists(),
            "{transport}: the link was never dropped"
        );
        assert!(err.contains("upload dropped"), "{transport}: {err}");
        assert_eq!(v["targets"][0]["status"], "uploaded", "{v}");
        let distros = lab.distros(uid);
        assert_eq!(
            listing(&distros),
            std::slice::from_ref(&dest),
            "{transport}: no staging directory is left"
        );
        assert_eq!(
            std::fs::read(distros.join(&dest).join("usr/lib/big.so")).unwrap(),
            noise(3 << 20, 9)
        );
        assert_eq!(
            std::fs::read(distros.join(&dest).join("etc/motd")).unwrap(),
            b"GOOD"
        );
    }
}

/// A tmpfs of `size` mounted on a storage container's `distros/`, owned by it; unmounted
/// on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, uid: u32, size: &str) -> SmallDisk {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},uid={uid},gid={uid},mode=755"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_storage_is_refused_before_sending_saying_how_much_is_free_and_needed() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39071], "");
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "big", &[("usr/lib/big.so", noise(3 << 20, 5))]);
    let distros = lab.distros(39071);
    {
        let _disk = SmallDisk::mount(&distros, 39071, "1m");
        for transport in ["ssh", "rsync"] {
            let (code, v, err) = push(&lab, &tarball, 39071, &["--transport", transport]);
            assert_eq!(code, 1, "{transport}: {err}\n{v}");
            let e = v["targets"][0]["error"].as_str().unwrap_or_default();
            assert!(
                e.contains("storage 39071 has 1.0 MiB free, the distro needs 3.0 MiB or more"),
                "{transport}: {e}"
            );
            assert_eq!(v["targets"][0]["bytes_sent"], 0, "nothing was sent");
            assert!(listing(&distros).is_empty(), "{:?}", listing(&distros));
        }
    }
    // Room enough by size, but too few inodes: tar fails with ENOSPC mid-upload; the
    // staging directory goes, and the message still says free versus needed.
    {
        let _disk = SmallDisk::mount(&distros, 39071, "16m,nr_inodes=8");
        let (code, v, err) = push(&lab, &tarball, 39071, &[]);
        assert_eq!(code, 1, "{err}\n{v}");
        let e = v["targets"][0]["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("storage 39071 has 16 MiB free, the distro needs 3.0 MiB or more (unpacking ran out of space or inodes)"),
            "{e}"
        );
        assert!(listing(&distros).is_empty(), "{:?}", listing(&distros));
    }
    // Unmounted: the push goes through.
    let (code, v, err) = push(&lab, &tarball, 39071, &[]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(listing(&distros), [format!("deb-{}", id12(&tarball))]);
}

#[test]
fn two_pushes_at_once_both_end_registered_through_the_storage_lock() {
    crate::require_sshd!();
    use crate::support::fake_api::{FakeApi, Fault, USER};
    let api = FakeApi::start();
    api.add_container(39081, "store", USER, "s1", true);
    api.state()
        .containers
        .get_mut(&39081)
        .unwrap()
        .server_address = "127.0.0.1".into();
    // One of the two creates loses its reply on the way back.
    api.inject("POST", "/custom_distros/39081", Fault::LostReply, 1);
    let lab = SshLab::start(&[LO1], &[39081], "");
    let out = support::tempdir();
    let a = make_distro(out.path(), "a", &[("usr/lib/a.so", noise(2 << 20, 11))]);
    let b = make_distro(out.path(), "b", &[("usr/lib/b.so", noise(2 << 20, 12))]);
    let spawn = |t: &Path| {
        let mut c = api.cmd(&["push"]);
        c.arg(t)
            .args(["--to", "39081", "--transport", "rsync", "--bwlimit", "1000"])
            .args(["--json", "--api-timeout", "5"])
            .args(lab.ssh_flags())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    let mut waited = false;
    for (child, t) in [(ca, &a), (cb, &b)] {
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        waited |= err.contains("is locked by build-distro push deb");
        assert!(o.status.success(), "{}: {err}", t.display());
    }
    eprintln!("the second push waited for the lock: {waited}");
    let (da, db) = (format!("deb-{}", id12(&a)), format!("deb-{}", id12(&b)));
    let mut want = vec![(da.clone(), da.clone()), (db.clone(), db.clone())];
    want.sort();
    let mut got = api.distros_on(39081);
    got.sort();
    assert_eq!(got, want, "exactly one entry each");
    let mut on_disk = vec![da, db];
    on_disk.sort();
    assert_eq!(
        listing(&lab.distros(39081)),
        on_disk,
        "no staging, no lock left"
    );
    assert_eq!(api.fired().len(), 1);
}

#[test]
fn a_held_lock_makes_a_push_wait_then_fail_naming_the_holder_until_forced() {
    crate::require_sshd!();
    let lab = SshLab::start(&[LO1], &[39091], "");
    let out = support::tempdir();
    let tarball = make_distro(out.path(), "deb", &[]);
    let distros = lab.distros(39091);
    let lock = distros.join(".bd+lock");
    std::fs::create_dir(&lock).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        lock.join("owner"),
        format!(
            r#"{{"owner":"build-distro push other","host":"ci-runner-7","pid":4242,"time":{now},"token":"x"}}"#
        ),
    )
    .unwrap();
    let st = std::process::Command::new("chown")
        .args(["-R", "39091:39091"])
        .arg(&lock)
        .status()
        .unwrap();
    assert!(st.success());

    let (code, v, err) = push(&lab, &tarball, 39091, &["--lock-wait", "1"]);
    assert_eq!(code, 1, "{err}\n{v}");
    let e = v["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains(
            "storage 39091 is locked by build-distro push other (host ci-runner-7, pid 4242"
        ),
        "{e}"
    );
    assert!(e.contains("--force-unlock"), "{e}");
    assert!(err.contains("waiting"), "{err}");
    assert_eq!(
        listing(&distros),
        [".bd+lock"],
        "nothing staged, the lock kept"
    );

    let (code, v, err) = push(&lab, &tarball, 39091, &["--force-unlock"]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(
        listing(&distros),
        [format!("deb-{}", id12(&tarball))],
        "the lock is released after the push"
    );
}
