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
    // Unmounted: the push goes through.
    let (code, v, err) = push(&lab, &tarball, 39071, &[]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(listing(&distros), [format!("deb-{}", id12(&tarball))]);
}
