//! NSS for container uids (platform.md, "Users inside the container"), part of the finish
//! stage. On glibc trees our own `unbit` module (`nss_unbit.c`, compiled by `build.rs` and
//! embedded in the binary) goes next to the tree's `libc.so.6` and `/etc/nsswitch.conf`
//! lists it; musl has no NSS, so there (or by choice) the recipe's `[nss] uids` become
//! `/etc/passwd`, `/etc/group` and `/etc/shadow` lines. The `check` stage reuses
//! [`module_installed`] and [`nsswitch_lists_unbit`] to verify the result.
//!
//! Split at its seams: `module` finds the tree's libc and installs the module next to it,
//! `nsswitch` edits `/etc/nsswitch.conf` (plain text in, text out), `passwd` writes the
//! musl (or chosen) `passwd` mode's lines; this file picks the mode and holds the file
//! helpers both writers share.

mod module;
mod nsswitch;
mod passwd;

use std::path::Path;

use rustix::fs::{FileType, OFlags};

use module::install_module;
pub use module::{detect_libc, library_dirs, module_bytes, module_installed, Libc, MODULE_NAME};
pub use nsswitch::{
    edit_nsswitch, nsswitch_lists_unbit, nsswitch_mentions_unbit, nsswitch_missing_unbit,
    DATABASES, NSSWITCH,
};
use passwd::add_passwd_entries;
pub use passwd::{group_line, passwd_line, shadow_line, FIRST_UID};

use super::Error;
use crate::progress::Reporter;
use crate::recipe::{Nss, NssMode};
use crate::tree::Root;

/// Apply the recipe's `[nss]`; returns what was done, for the report.
pub fn apply(root: &Root, nss: &Nss, reporter: &Reporter) -> Result<String, Error> {
    match nss.mode {
        NssMode::None => Ok("none".to_string()),
        NssMode::Module => install_module(root),
        NssMode::Passwd => add_passwd_entries(root, &nss.uids, reporter),
        NssMode::Auto => match detect_libc(root) {
            Libc::Glibc(libc) => {
                reporter.info(&format!(
                    "nss: glibc tree ({}): installing the unbit module",
                    libc.display()
                ));
                install_module(root)
            }
            Libc::Musl(ld) => {
                reporter.info(&format!(
                    "nss: musl tree ({}) has no NSS: adding passwd/group lines for [nss] uids",
                    ld.display()
                ));
                add_passwd_entries(root, &nss.uids, reporter)
            }
            Libc::Unknown => {
                reporter.info(
                    "nss: no glibc libc.so.6 in the tree's library directories: adding passwd/group lines for [nss] uids",
                );
                add_passwd_entries(root, &nss.uids, reporter)
            }
        },
    }
}

/// Whether `rel` resolves to something inside the tree (symlinks followed inside it).
fn exists(root: &Root, rel: &Path) -> bool {
    root.open_at(rel, OFlags::PATH, 0).is_ok()
}

fn read_text(root: &Root, rel: &Path) -> Result<String, Error> {
    String::from_utf8(root.read(rel)?)
        .map_err(|_| Error::Nss(format!("{}: not UTF-8 text", root.host_path(rel).display())))
}

/// Write `text` to `rel` keeping an existing file's mode and owner (Debian's
/// `/etc/shadow` is root:shadow 0640); a new file gets `mode` and root.
fn write_keeping_owner(root: &Root, rel: &Path, text: &str, mode: u32) -> Result<bool, Error> {
    let old = root
        .lstat(rel)?
        .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
    let mode = old.map_or(mode, |st| st.st_mode & 0o7777);
    let changed = root.write_file(rel, text.as_bytes(), mode)?;
    if let Some(st) = old.filter(|_| changed) {
        let io = |e: std::io::Error| crate::tree::Error::io(root.host_path(rel), e);
        let fd = root
            .open_at(rel, OFlags::RDONLY | OFlags::NOFOLLOW, 0)
            .map_err(io)?;
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| io(e.into()))?;
        // chown clears set-id bits; the mode we wrote has none worth keeping, but be exact.
        root.chmod(rel, mode)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    fn tree() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        (d, root)
    }

    fn nss(mode: NssMode, uids: &[u32]) -> Nss {
        Nss {
            mode,
            uids: uids.to_vec(),
        }
    }

    /// A usrmerge glibc layout whose "libc" is an ELF header of the module's own machine.
    fn glibc_layout(d: &Path) {
        let lib = d
            .join("usr/lib")
            .join(format!("{}-linux-gnu", std::env::consts::ARCH));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libc.so.6"), &module_bytes()[..64]).unwrap();
        std::os::unix::fs::symlink("usr/lib", d.join("lib")).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
    }

    #[test]
    fn module_goes_next_to_the_real_libc_and_nsswitch_is_created() {
        let (d, root) = tree();
        glibc_layout(d.path());
        assert_eq!(module_installed(&root), None);
        let r = Reporter::silent();
        let report = apply(&root, &nss(NssMode::Auto, &[]), &r).unwrap();
        let real = Path::new("/usr/lib")
            .join(format!("{}-linux-gnu", std::env::consts::ARCH))
            .join(MODULE_NAME);
        assert_eq!(report, format!("module {}", real.display()));
        assert_eq!(module_installed(&root), Some(real.clone()));
        let host = root.host_path(&real);
        assert_eq!(std::fs::read(&host).unwrap(), module_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&host).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        let conf = std::fs::read_to_string(d.path().join("etc/nsswitch.conf")).unwrap();
        assert!(nsswitch_lists_unbit(&conf));
        // Again: nothing changes.
        let before = std::fs::metadata(d.path().join("etc/nsswitch.conf")).unwrap();
        apply(&root, &nss(NssMode::Module, &[]), &r).unwrap();
        let after = std::fs::metadata(d.path().join("etc/nsswitch.conf")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
    }

    #[test]
    fn module_refuses_other_architectures_and_musl() {
        let (d, root) = tree();
        glibc_layout(d.path());
        let libc = d
            .path()
            .join("usr/lib")
            .join(format!("{}-linux-gnu", std::env::consts::ARCH))
            .join("libc.so.6");
        let mut header = module_bytes()[..64].to_vec();
        // e_machine (little endian, offset 18): s390 is nobody's build machine here.
        header[18..20].copy_from_slice(&goblin::elf::header::EM_S390.to_le_bytes());
        std::fs::write(&libc, header).unwrap();
        let err = apply(&root, &nss(NssMode::Module, &[]), &Reporter::silent()).unwrap_err();
        assert!(err.to_string().contains("is for ELF machine S390"), "{err}");
        assert_eq!(module_installed(&root), None);

        let (d, root) = tree();
        std::fs::create_dir_all(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("lib/ld-musl-x86_64.so.1"), b"").unwrap();
        assert_eq!(
            detect_libc(&root),
            Libc::Musl(PathBuf::from("/lib/ld-musl-x86_64.so.1"))
        );
        let err = apply(&root, &nss(NssMode::Module, &[]), &Reporter::silent()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("use mode = \"passwd\""), "{err}");
    }

    #[test]
    fn passwd_mode_appends_once_and_keeps_modes() {
        let (d, root) = tree();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        // No final newline, and 30002 already has a line of its own.
        std::fs::write(etc.join("group"), "root:x:0:\nweb:x:30002:").unwrap();
        std::fs::write(etc.join("shadow"), "root:*::0:::::\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let r = Reporter::silent();
        for _ in 0..2 {
            let report = apply(&root, &nss(NssMode::Passwd, &[30001, 30002]), &r).unwrap();
            assert_eq!(report, "passwd (30001, 30002)");
        }
        let read = |f: &str| std::fs::read_to_string(etc.join(f)).unwrap();
        assert_eq!(
            read("passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             30001:x:30001:30001:30001:/containers/30001:/bin/sh\n\
             30002:x:30002:30002:30002:/containers/30002:/bin/sh\n"
        );
        assert_eq!(read("group"), "root:x:0:\nweb:x:30002:\n30001:x:30001:\n");
        assert_eq!(
            read("shadow"),
            "root:*::0:::::\n30001:!:::::::\n30002:!:::::::\n"
        );
        let mode = std::fs::metadata(etc.join("shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
    }

    #[test]
    fn passwd_mode_shell_auto_on_musl_and_checks() {
        let (d, root) = tree();
        std::fs::create_dir_all(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("lib/ld-musl-aarch64.so.1"), b"").unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/bash"), b"").unwrap();
        let r = Reporter::silent();
        // Missing files are created.
        apply(&root, &nss(NssMode::Auto, &[30007]), &r).unwrap();
        let passwd = std::fs::read_to_string(d.path().join("etc/passwd")).unwrap();
        assert_eq!(
            passwd,
            "30007:x:30007:30007:30007:/containers/30007:/bin/bash\n"
        );
        assert!(d.path().join("etc/shadow").is_file());
        assert_eq!(module_installed(&root), None);
        assert!(!d.path().join("etc/nsswitch.conf").exists());

        assert_eq!(
            apply(&root, &nss(NssMode::Passwd, &[]), &r).unwrap(),
            "passwd (no uids)"
        );
        let err = apply(&root, &nss(NssMode::Passwd, &[1000]), &r).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "[nss] uids: 1000 is not a container uid (they start at 30000)"
        );
        assert_eq!(
            apply(&root, &nss(NssMode::None, &[30001]), &r).unwrap(),
            "none"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/passwd")).unwrap(),
            passwd
        );
    }
}
