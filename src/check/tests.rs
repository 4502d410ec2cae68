//! Rule tests: a clean tree built in code (fake ELF objects, no host binaries), then one
//! violation per test. Every tree is checked twice, as a directory and as a `.tar.gz`,
//! and both reports must be identical.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use super::elf::fake::{self, Spec};
use super::{check, Finding, Options, Severity};

#[derive(Clone)]
enum Node {
    Dir(u32),
    File(Vec<u8>, u32),
    Link(String),
    CharDevice,
    Fifo,
}

#[derive(Clone)]
struct Tree(BTreeMap<String, Node>);

impl Tree {
    fn dir(&mut self, p: &str) -> &mut Self {
        self.dir_mode(p, 0o755)
    }
    fn dir_mode(&mut self, p: &str, mode: u32) -> &mut Self {
        let mut cur = String::new();
        for c in p.trim_start_matches('/').split('/') {
            cur.push('/');
            cur.push_str(c);
            self.0.entry(cur.clone()).or_insert(Node::Dir(0o755));
        }
        self.0.insert(p.to_string(), Node::Dir(mode));
        self
    }
    fn file(&mut self, p: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.dir(super::view::parent(p));
        self.0.insert(p.to_string(), Node::File(data.into(), mode));
        self
    }
    fn link(&mut self, p: &str, target: &str) -> &mut Self {
        self.dir(super::view::parent(p));
        self.0.insert(p.to_string(), Node::Link(target.to_string()));
        self
    }
    fn node(&mut self, p: &str, n: Node) -> &mut Self {
        self.0.insert(p.to_string(), n);
        self
    }
    fn remove(&mut self, p: &str) -> &mut Self {
        let prefix = format!("{p}/");
        self.0.retain(|k, _| k != p && !k.starts_with(&prefix));
        self
    }

    fn write_dir(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for (p, n) in &self.0 {
            let host = dir.join(&p[1..]);
            match n {
                Node::Dir(_) => std::fs::create_dir(&host).unwrap(),
                Node::File(d, _) => std::fs::write(&host, d).unwrap(),
                Node::Link(t) => std::os::unix::fs::symlink(t, &host).unwrap(),
                Node::CharDevice => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &host,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::from_raw_mode(0o666),
                    rustix::fs::makedev(1, 3),
                )
                .unwrap(),
                Node::Fifo => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &host,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap(),
            }
        }
        // Modes last, deepest first, so restrictive directories do not stop the writes.
        for (p, n) in self.0.iter().rev() {
            let mode = match n {
                Node::Dir(m) | Node::File(_, m) => *m,
                _ => continue,
            };
            std::fs::set_permissions(dir.join(&p[1..]), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
    }

    fn write_tar_gz(&self, file: &Path) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(file).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (p, n) in &self.0 {
            let mut h = tar::Header::new_gnu();
            let rel = &p[1..];
            match n {
                Node::Dir(m) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*m);
                    h.set_size(0);
                    b.append_data(&mut h, rel, std::io::empty()).unwrap();
                }
                Node::File(d, m) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*m);
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, rel, d.as_slice()).unwrap();
                }
                Node::Link(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, rel, t).unwrap();
                }
                Node::CharDevice | Node::Fifo => {
                    h.set_entry_type(if matches!(n, Node::Fifo) {
                        tar::EntryType::Fifo
                    } else {
                        tar::EntryType::Char
                    });
                    h.set_mode(0o666);
                    h.set_size(0);
                    b.append_data(&mut h, rel, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }

    /// The findings on the directory and on the tarball (asserted equal), without `size`.
    fn findings_with(&self, opts: &Options) -> Vec<Finding> {
        let t = tempfile::tempdir().unwrap();
        let tgz = t.path().join("t.tar.gz");
        self.write_tar_gz(&tgz);
        let from_tar = check(&tgz, opts).unwrap();
        let needs_root = self.0.values().any(|n| matches!(n, Node::CharDevice));
        if !needs_root || rustix::process::geteuid().is_root() {
            let dir = t.path().join("root");
            std::fs::create_dir(&dir).unwrap();
            self.write_dir(&dir);
            let from_dir = check(&dir, opts).unwrap();
            assert_eq!(from_dir.findings, from_tar.findings, "dir and tar disagree");
            assert_eq!(from_dir.summary, from_tar.summary, "dir and tar disagree");
        } else {
            eprintln!("SKIPPED the directory half: mknod needs root");
        }
        from_tar
            .findings
            .into_iter()
            .filter(|f| f.rule != "size")
            .collect()
    }

    fn findings(&self) -> Vec<Finding> {
        self.findings_with(&Options::default())
    }

    /// (rule, path) of every finding.
    fn ids(&self) -> BTreeSet<(String, String)> {
        self.findings()
            .into_iter()
            .map(|f| (f.rule.to_string(), f.path))
            .collect()
    }
}

fn set(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Everything the platform needs, made of fake ELF objects: a static busybox for the
/// commands, uWSGI needing libc (default dir) and libextra (its `$ORIGIN` RUNPATH), and a
/// python3 plugin needing libpython (multiarch dir) and libconf (an ld.so.conf include).
fn clean() -> Tree {
    let mut t = Tree(BTreeMap::new());
    for d in crate::finish::MOUNT_POINTS {
        t.dir(d);
    }
    t.dir_mode("/tmp", 0o1777)
        .file("/bin/busybox", fake::static_program(), 0o755)
        .link("/bin/sh", "busybox")
        .link("/sbin/ifconfig", "../bin/busybox")
        .link("/sbin/route", "/bin/busybox")
        .file("/lib64/ld-linux-x86-64.so.2", fake::library(&[]), 0o755)
        .file("/lib/x86_64-linux-gnu/libc.so.6", fake::library(&[]), 0o644)
        .file(
            "/usr/lib/uwsgi/uwsgi-core",
            fake::build(&Spec {
                interp: Some("/lib64/ld-linux-x86-64.so.2"),
                needed: &["libc.so.6", "libextra.so.1"],
                runpath: Some("$ORIGIN/lib"),
                ..Spec::default()
            }),
            0o755,
        )
        .file(
            "/opt/unbit/uwsgi/uwsgi",
            fake::build(&Spec {
                interp: Some("/lib64/ld-linux-x86-64.so.2"),
                needed: &["libc.so.6", "libextra.so.1"],
                runpath: Some("$ORIGIN/lib"),
                ..Spec::default()
            }),
            0o755,
        )
        .file(
            "/opt/unbit/uwsgi/lib/libextra.so.1",
            fake::library(&["libc.so.6"]),
            0o644,
        )
        .file(
            "/usr/lib/uwsgi/plugins/python311_plugin.so",
            fake::library(&["libpython3.11.so.1.0", "libconf.so.1"]),
            0o644,
        )
        .link(
            "/opt/unbit/uwsgi/plugins/python3_plugin.so",
            "/usr/lib/uwsgi/plugins/python311_plugin.so",
        )
        .file(
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
            fake::library(&["libc.so.6"]),
            0o644,
        )
        .file("/opt/libs/libconf.so.1", fake::library(&[]), 0o644)
        .file(
            "/etc/ld.so.conf",
            "include /etc/ld.so.conf.d/*.conf\n",
            0o644,
        )
        .file("/etc/ld.so.conf.d/libs.conf", "# ours\n/opt/libs\n", 0o644)
        .file(
            "/opt/unbit/uwsgi/shortcuts.ini",
            crate::finish::SHORTCUTS_INI,
            0o644,
        )
        .file(
            "/etc/nsswitch.conf",
            "passwd: files\nhosts: files dns\n",
            0o644,
        );
    t
}

#[test]
fn clean_tree_passes() {
    let t = clean();
    assert_eq!(t.findings(), Vec::<Finding>::new());
    let d = tempfile::tempdir().unwrap();
    t.write_dir(d.path());
    let r = check(d.path(), &Options::default()).unwrap();
    assert!(r.summary.ok);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].rule, "size");
    assert_eq!(r.findings[0].severity, Severity::Info);
    assert_eq!(r.findings[0].path, "/");
    assert_eq!(r.summary.entries, t.0.len() as u64);
}

#[test]
fn mount_point() {
    let mut t = clean();
    t.remove("/.old_root")
        .remove("/var/tmp")
        .link("/var/tmp", "/tmp");
    assert_eq!(
        t.ids(),
        set(&[("mount-point", "/.old_root"), ("mount-point", "/var/tmp")])
    );
}

#[test]
fn shell() {
    let mut t = clean();
    t.remove("/bin/sh");
    assert_eq!(t.ids(), set(&[("shell", "/bin/sh")]));
}

#[test]
fn ifconfig() {
    let mut t = clean();
    t.remove("/sbin/ifconfig");
    assert_eq!(t.ids(), set(&[("ifconfig", "ifconfig")]));
}

#[test]
fn route() {
    let mut t = clean();
    t.remove("/sbin/route")
        .file("/sbin/route", "not executable", 0o644);
    assert_eq!(t.ids(), set(&[("route", "/sbin/route")]));
}

#[test]
fn command_elf() {
    let mut t = clean();
    t.file("/bin/busybox", fake::program(&["libmissing.so.1"]), 0o755);
    assert_eq!(
        t.ids(),
        set(&[
            ("command-elf", "/bin/sh"),
            ("command-elf", "/sbin/ifconfig"),
            ("command-elf", "/sbin/route")
        ])
    );
    let f = t.findings();
    assert_eq!(f[0].message, "/bin/sh -> libmissing.so.1: not found");
}

#[test]
fn uwsgi_binary() {
    let mut t = clean();
    t.file("/opt/unbit/uwsgi/uwsgi", fake::static_program(), 0o744);
    assert_eq!(t.ids(), set(&[("uwsgi-binary", "/opt/unbit/uwsgi/uwsgi")]));
    t.remove("/opt/unbit/uwsgi/uwsgi");
    assert_eq!(t.ids(), set(&[("uwsgi-binary", "/opt/unbit/uwsgi/uwsgi")]));
}

#[test]
fn uwsgi_elf_origin_runpath() {
    let mut t = clean();
    t.remove("/opt/unbit/uwsgi/lib/libextra.so.1");
    let f = t.findings();
    assert_eq!(t.ids(), set(&[("uwsgi-elf", "/opt/unbit/uwsgi/uwsgi")]));
    assert_eq!(
        f[0].message,
        "/opt/unbit/uwsgi/uwsgi -> libextra.so.1: not found"
    );
}

#[test]
fn uwsgi_elf_interpreter_and_machine() {
    let mut t = clean();
    t.remove("/lib64");
    let f = t.findings();
    assert_eq!(t.ids(), set(&[("uwsgi-elf", "/opt/unbit/uwsgi/uwsgi")]));
    assert!(
        f[0].message
            .contains("interpreter /lib64/ld-linux-x86-64.so.2"),
        "{}",
        f[0].message
    );

    let mut t = clean();
    t.file(
        "/opt/unbit/uwsgi/uwsgi",
        fake::build(&Spec {
            machine: goblin::elf::header::EM_AARCH64,
            ..Spec::default()
        }),
        0o755,
    );
    let f = t.findings();
    assert_eq!(t.ids(), set(&[("uwsgi-elf", "/opt/unbit/uwsgi/uwsgi")]));
    assert!(f[0].message.contains("AARCH64"), "{}", f[0].message);
}

#[test]
fn uwsgi_elf_deep_chain_and_wrong_arch_library() {
    let mut t = clean();
    t.file(
        "/lib/x86_64-linux-gnu/libc.so.6",
        fake::build(&Spec {
            machine: goblin::elf::header::EM_386,
            ..Spec::default()
        }),
        0o644,
    );
    let f = t.findings();
    // Everything needs libc: uWSGI directly, the plugin through libpython.
    assert_eq!(
        t.ids(),
        set(&[
            ("uwsgi-elf", "/opt/unbit/uwsgi/uwsgi"),
            ("plugin-elf", "/opt/unbit/uwsgi/plugins/python3_plugin.so")
        ])
    );
    let plugin = f.iter().find(|f| f.rule == "plugin-elf").unwrap();
    assert!(
        plugin.message.starts_with(
            "/opt/unbit/uwsgi/plugins/python3_plugin.so -> libpython3.11.so.1.0 -> libc.so.6: not found (/lib/x86_64-linux-gnu/libc.so.6 is for 64-bit"
        ),
        "{}",
        plugin.message
    );
}

#[test]
fn shortcuts() {
    let mut t = clean();
    let ini: String = crate::finish::SHORTCUTS_INI
        .lines()
        .filter(|l| !l.starts_with("declare-option2 = ssl-ca-domain="))
        .map(|l| format!("{l}\n"))
        .collect();
    t.file("/opt/unbit/uwsgi/shortcuts.ini", ini, 0o644);
    let f = t.findings();
    assert_eq!(
        t.ids(),
        set(&[("shortcuts", "/opt/unbit/uwsgi/shortcuts.ini")])
    );
    assert!(
        f[0].message.starts_with("does not declare ssl-ca-domain "),
        "{}",
        f[0].message
    );
    t.remove("/opt/unbit/uwsgi/shortcuts.ini");
    assert_eq!(
        t.ids(),
        set(&[("shortcuts", "/opt/unbit/uwsgi/shortcuts.ini")])
    );
}

#[test]
fn plugins_dir() {
    let mut t = clean();
    t.remove("/opt/unbit/uwsgi/plugins");
    let f = t.findings();
    assert_eq!(t.ids(), set(&[("plugins-dir", "/opt/unbit/uwsgi/plugins")]));
    assert_eq!(f[0].severity, Severity::Warning);
}

#[test]
fn plugin_elf() {
    let mut t = clean();
    t.remove("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0");
    let f = t.findings();
    assert_eq!(
        t.ids(),
        set(&[("plugin-elf", "/opt/unbit/uwsgi/plugins/python3_plugin.so")])
    );
    assert_eq!(
        f[0].message,
        "/opt/unbit/uwsgi/plugins/python3_plugin.so -> libpython3.11.so.1.0: not found"
    );
}

#[test]
fn plugin_elf_through_ld_so_conf() {
    let mut t = clean();
    t.remove("/etc/ld.so.conf.d/libs.conf");
    assert_eq!(
        t.ids(),
        set(&[("plugin-elf", "/opt/unbit/uwsgi/plugins/python3_plugin.so")])
    );
}

#[test]
fn nss_consistency() {
    let mut t = clean();
    t.file("/etc/nsswitch.conf", "passwd: compat unbit\n", 0o644);
    assert_eq!(t.ids(), set(&[("nss-consistency", "/etc/nsswitch.conf")]));

    let mut t = clean();
    t.file(
        "/usr/lib/x86_64-linux-gnu/libnss_unbit.so.2",
        fake::library(&["libc.so.6"]),
        0o644,
    );
    assert_eq!(
        t.ids(),
        set(&[(
            "nss-consistency",
            "/usr/lib/x86_64-linux-gnu/libnss_unbit.so.2"
        )])
    );
    // Listed for passwd only: group, shadow and hosts lookups would still fail.
    t.file("/etc/nsswitch.conf", "passwd: compat unbit\n", 0o644);
    assert_eq!(t.ids(), set(&[("nss-consistency", "/etc/nsswitch.conf")]));
    // Both, for every database: consistent.
    t.file(
        "/etc/nsswitch.conf",
        "passwd: compat unbit\ngroup: compat unbit\nshadow: compat unbit\nhosts: files unbit dns\n",
        0o644,
    );
    assert_eq!(t.ids(), set(&[]));
}

#[test]
fn nss_elf() {
    let mut t = clean();
    t.file(
        "/etc/nsswitch.conf",
        "passwd: compat unbit\ngroup: compat unbit\nshadow: compat unbit\nhosts: files unbit dns\n",
        0o644,
    )
    .file(
        "/lib/x86_64-linux-gnu/libnss_unbit.so.2",
        fake::library(&["libnotthere.so.1"]),
        0o644,
    );
    assert_eq!(
        t.ids(),
        set(&[("nss-elf", "/lib/x86_64-linux-gnu/libnss_unbit.so.2")])
    );
}

#[test]
fn device_node() {
    let mut t = clean();
    t.node("/dev/null", Node::CharDevice);
    assert_eq!(t.ids(), set(&[("device-node", "/dev/null")]));
}

#[test]
fn special_file() {
    let mut t = clean();
    t.node("/run/initctl", Node::Fifo);
    assert_eq!(t.ids(), set(&[("special-file", "/run/initctl")]));
}

#[test]
fn symlink_escape() {
    let mut t = clean();
    t.link("/etc/escape", "../../host-secret");
    assert_eq!(t.ids(), set(&[("symlink-escape", "/etc/escape")]));
}

#[test]
fn unreadable() {
    let mut t = clean();
    t.file("/usr/share/private.txt", "x", 0o640)
        .file("/etc/shadow", "root:*:1::::::\n", 0o640)
        .file("/var/lib/not-system", "x", 0o600);
    assert_eq!(t.ids(), set(&[("unreadable", "/usr/share/private.txt")]));
}

#[test]
fn untraversable() {
    let mut t = clean();
    t.dir_mode("/usr/share/doc", 0o750)
        .dir_mode("/etc/ssl/private", 0o700);
    assert_eq!(t.ids(), set(&[("untraversable", "/usr/share/doc")]));
}

#[test]
fn setuid_is_info() {
    let mut t = clean();
    t.file("/bin/ping", "x", 0o4755);
    let f = t.findings();
    assert_eq!(t.ids(), set(&[("setuid", "/bin/ping")]));
    assert_eq!(f[0].severity, Severity::Info);
}

#[test]
fn path_charset_and_allow() {
    let t = clean();
    let f = t.findings_with(&Options {
        allow: vec![],
        path: Some("my distro".into()),
    });
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].rule, f[0].path.as_str()),
        ("path-charset", "my distro")
    );

    let mut t = clean();
    t.remove("/bin/sh");
    let d = tempfile::tempdir().unwrap();
    t.write_dir(d.path());
    let r = check(
        d.path(),
        &Options {
            allow: vec!["shell".into()],
            path: None,
        },
    )
    .unwrap();
    assert!(r.summary.ok);
    assert_eq!((r.summary.errors, r.summary.allowed), (0, 1));
    assert!(r.findings.iter().any(|f| f.rule == "shell" && f.allowed));
    assert!(matches!(
        check(
            d.path(),
            &Options {
                allow: vec!["shel".into()],
                path: None
            }
        ),
        Err(super::Error::UnknownRule { .. })
    ));
}

#[test]
fn unreadable_input_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let e = check(&d.path().join("missing"), &Options::default()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let junk = d.path().join("junk.tar.gz");
    std::fs::write(&junk, b"\x1f\x8bnot really gzip").unwrap();
    let e = check(&junk, &Options::default()).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn every_rule_has_a_test_here() {
    let src = include_str!("tests.rs");
    for r in super::RULES {
        let quoted = format!("(\"{}\", ", r.id);
        assert!(
            src.contains(&quoted) || r.id == "size",
            "no test names rule {}",
            r.id
        );
    }
}
