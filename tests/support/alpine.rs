//! An Alpine-like tree generated in code (Alpine's mirror is not reachable from CI): its
//! os-release, its apk installed database, and the files build-distro's finish adds. No
//! binary is real; the inventory and the SBOM only read the database and hash files.

use std::path::Path;

/// The apk installed database of the fixture: three packages, one whose origin differs.
pub const INSTALLED: &str = "\
C:Q1rTkW3Tq8Nqj9Q3Zm8bV1mZ1b2kE=
P:musl
V:1.2.5-r0
A:x86_64
S:411323
I:637952
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1711467426
c:3be4fb5d1a2ebd2f3b2b3e8bdb2d0ea2bb3f6a5a
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Mxhd1+mf3zmZqR3Gw2Ek+Zy5X4c=

C:Q1zzZZzzZZzzZZzzZZzzZZzzZZzz=
P:libcrypto3
V:3.3.2-r0
A:x86_64
L:Apache-2.0
o:openssl
F:usr/lib
R:libcrypto.so.3

P:busybox
V:1.36.1-r29
A:x86_64
L:GPL-2.0-only
o:busybox
F:bin
R:busybox

";

pub const OS_RELEASE: &str = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME=\"Alpine Linux v3.20\"\nHOME_URL=\"https://alpinelinux.org/\"\n";

/// Write the fixture tree into `dir`: `/etc/os-release` is a symlink to
/// `../usr/lib/os-release` as on Alpine, and the uWSGI files and the NSS module are where
/// finish puts them on a musl tree.
pub fn tree(dir: &Path) {
    for d in ["etc", "usr/lib", "lib/apk/db", "opt/unbit/uwsgi", "bin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("usr/lib/os-release"), OS_RELEASE).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release")).unwrap();
    std::fs::write(dir.join("lib/apk/db/installed"), INSTALLED).unwrap();
    std::fs::write(dir.join("bin/busybox"), b"not really busybox\n").unwrap();
    std::fs::write(dir.join("opt/unbit/uwsgi/uwsgi"), b"not really uwsgi\n").unwrap();
    std::fs::write(
        dir.join("opt/unbit/uwsgi/shortcuts.ini"),
        "[uwsgi]\nshortcut = fixture\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("usr/lib/libnss_unbit.so.2"),
        b"not really a module\n",
    )
    .unwrap();
}

/// A `.tar` of `dir` made with the tar crate (entries in sorted order, as `pack` writes).
pub fn tar_of(dir: &Path, dest: &Path) {
    let f = std::fs::File::create(dest).unwrap();
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}
