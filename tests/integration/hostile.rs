//! Hostile input (issue 9): archives, layers and recipes that try to escape the build
//! root or destroy the host. One generated malicious input per case, run through every
//! tar reader (`tree::unpack` directly, layer application with whiteouts, and a rootfs
//! tar through `build-distro build`), asserting the refusal or the neutralised result and
//! that nothing outside the root changed. Archives are written byte by byte here: the
//! tar crate's builder refuses most of these names, which is the point.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use build_distro::tree::{self, Root, UnpackOptions};
use tar::{EntryType, Header};

use crate::support::{self, bin, run, write_recipe};

// ---------------------------------------------------------------- archive bytes

/// A tar stream written header by header, names and all, without validation.
#[derive(Default, Clone)]
struct Tar(Vec<u8>);

fn set_bytes(field: &mut [u8], v: &[u8]) {
    field.fill(0);
    field[..v.len()].copy_from_slice(v);
}

impl Tar {
    fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        set_bytes(&mut h.as_old_mut().name, &name[..name.len().min(100)]);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.raw_file(name.as_bytes(), data, mode)
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_mode(name, data, 0o644)
    }

    fn raw_file(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
        let h = Self::header(name, EntryType::Regular, data.len() as u64, mode);
        self.push(h, data)
    }

    fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(name.as_bytes(), EntryType::Directory, 0, mode);
        self.push(h, &[])
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_mode(name, 0o755)
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &[u8]) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), kind, 0, 0o777);
        set_bytes(&mut h.as_old_mut().linkname, target);
        self.push(h, &[])
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(EntryType::Symlink, name, target.as_bytes())
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(EntryType::Link, name, target.as_bytes())
    }

    fn special(&mut self, kind: EntryType, name: &str) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), kind, 0, 0o666);
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
        self.push(h, &[])
    }

    /// A GNU long-name (`L`) entry followed by a file carrying that name.
    fn gnu_long_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut long = name.to_vec();
        long.push(0);
        let h = Self::header(
            b"././@LongLink",
            EntryType::GNULongName,
            long.len() as u64,
            0,
        );
        self.push(h, &long);
        self.raw_file(&name[..name.len().min(100)], data, 0o644)
    }

    /// A PAX (`x`) header with `path=name` followed by a file.
    fn pax_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut rec = b" path=".to_vec();
        rec.extend_from_slice(name);
        rec.push(b'\n');
        // The length prefix counts itself.
        let mut n = rec.len() + 1;
        while format!("{n}").len() + rec.len() != n {
            n += 1;
        }
        let mut pax = format!("{n}").into_bytes();
        pax.extend_from_slice(&rec);
        let h = Self::header(b"PaxHeader", EntryType::XHeader, pax.len() as u64, 0o644);
        self.push(h, &pax);
        self.raw_file(b"placeholder", data, 0o644)
    }

    /// A GNU sparse file of `real` bytes holding `data` at offset 0 and a hole after.
    fn sparse(&mut self, name: &str, data: &[u8], real: u64) -> &mut Self {
        let mut h = Self::header(
            name.as_bytes(),
            EntryType::GNUSparse,
            data.len() as u64,
            0o644,
        );
        let g = h.as_gnu_mut().unwrap();
        g.set_real_size(real);
        g.sparse[0].set_offset(0);
        g.sparse[0].set_length(data.len() as u64);
        // A zero-length block at the end marks the file's full size.
        g.sparse[1].set_offset(real);
        g.sparse[1].set_length(0);
        self.push(h, data)
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

const END: [u8; 1024] = [0; 1024];

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------- the world outside

/// Everything under `dir` except the names in `skip` (top level): kind, mode, size,
/// content, link target, so any change outside the build root shows.
fn snapshot(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if skip.contains(&top.as_ref()) {
            continue;
        }
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link {:?}", std::fs::read_link(e.path()).unwrap())
        } else if ft.is_file() {
            format!("file {:?}", std::fs::read(e.path()).unwrap())
        } else if ft.is_dir() {
            "dir".into()
        } else {
            "other".into()
        };
        out.insert(rel, format!("{:o} {} {what}", md.mode(), md.len()));
    }
    out
}

/// A test's world: `sentinel/` (files an attack would love to reach) beside the build
/// root, all inside one temporary directory whose snapshot must not change.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = support::tempdir();
        let s = dir.path().join("sentinel");
        std::fs::create_dir_all(s.join("sub")).unwrap();
        std::fs::write(s.join("a"), b"SENTINEL-a").unwrap();
        std::fs::write(s.join("sub/b"), b"SENTINEL-b").unwrap();
        World { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn sentinel(&self) -> PathBuf {
        self.path().join("sentinel")
    }
    /// The sentinel's absolute path without the leading `/`, as it would sit in a root.
    fn sentinel_in_root(&self) -> String {
        self.sentinel().display().to_string()[1..].to_string()
    }
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        // The parent of every root used here is the world's directory itself.
        snapshot(self.path(), &["root", "work", "out", "in"])
    }
}

// ---------------------------------------------------------------- the cases

type Check = fn(&Path, &World);

#[derive(Clone)]
enum Expect {
    /// Every needle appears in the one-line error.
    Refused(&'static [&'static str]),
    Ok(Check),
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    /// Leave out the end-of-archive blocks.
    no_end: bool,
    /// Bytes cut off the end of the (uncompressed) stream.
    cut: usize,
    gzip: bool,
    /// Bytes cut off the end of the gzip stream.
    cut_gz: usize,
    /// A tighter expanded-size limit than the default.
    limit: Option<u64>,
    expect: Expect,
    /// What layer application (whiteouts on, over the trap layer) must give instead.
    layer: Option<Expect>,
}

impl Case {
    fn new(name: &'static str, body: &Tar, expect: Expect) -> Case {
        Case {
            name,
            body: body.bytes(),
            no_end: false,
            cut: 0,
            gzip: false,
            cut_gz: 0,
            limit: None,
            expect,
            layer: None,
        }
    }

    /// The stream as a reader gets it, after `prefix` (a tree the build can finish).
    fn stream(&self, prefix: &[u8]) -> Vec<u8> {
        let mut s = prefix.to_vec();
        s.extend_from_slice(&self.body);
        if !self.no_end {
            s.extend_from_slice(&END);
        }
        s.truncate(s.len() - self.cut);
        if self.gzip {
            s = gzip(&s);
            s.truncate(s.len() - self.cut_gz);
        }
        s
    }
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// The trap layer under every layer case: symlinks to the sentinel, absolute and
/// relative, and a file that whiteouts may hide.
fn trap_layer(w: &World) -> Vec<u8> {
    let mut t = Tar::default();
    t.dir("etc")
        .file("etc/hostname", b"base\n")
        .symlink("trap", &w.sentinel().display().to_string())
        .symlink("trap-rel", "../../../../../../../sentinel")
        .dir("lower")
        .file("lower/x", b"x")
        .file("lower/y", b"y");
    let mut b = t.bytes();
    b.extend_from_slice(&END);
    b
}

fn cases(w: &World) -> Vec<Case> {
    let s = w.sentinel().display().to_string();
    let mut v = Vec::new();

    v.push(Case::new(
        "absolute name is read inside the root",
        Tar::default().file(&format!("{s}/pwned"), b"x"),
        Expect::Ok(|root, w| {
            assert!(root.join(w.sentinel_in_root()).join("pwned").is_file());
        }),
    ));
    v.push(Case::new(
        "dotdot name is refused",
        Tar::default().file("srv/../../sentinel/pwned", b"x"),
        Expect::Refused(&["entry \"srv/../../sentinel/pwned\"", "has a `..` component"]),
    ));
    v.push(Case::new(
        "entry through a symlink planted in the same archive",
        Tar::default()
            .symlink("evil", &s)
            .file("evil/pwned", b"x")
            .symlink("evil-rel", "../../../../../../sentinel")
            .file("evil-rel/sub/b", b"overwritten?"),
        Expect::Ok(|root, _| {
            // The dangling links were replaced by directories inside the root.
            assert!(root.join("evil").is_dir() && !root.join("evil").is_symlink());
            assert_eq!(std::fs::read(root.join("evil/pwned")).unwrap(), b"x");
            assert!(root.join("evil-rel/sub/b").is_file());
        }),
    ));
    let mut c = Case::new(
        "entry and whiteouts through a symlink from a lower layer",
        Tar::default()
            .file("trap/pwned", b"x")
            .file("trap-rel/pwned", b"x")
            .file("trap/.wh.a", b"")
            .file("trap-rel/sub/.wh..wh..opq", b""),
        Expect::Ok(|root, _| {
            // Without a lower layer these are plain files in plain directories.
            assert!(root.join("trap/pwned").is_file());
            assert!(root.join("trap/.wh.a").is_file());
        }),
    );
    c.layer = Some(Expect::Ok(|root, _| {
        assert!(root.join("trap").is_dir() && !root.join("trap").is_symlink());
        assert!(root.join("trap/pwned").is_file());
        assert!(root.join("trap-rel/pwned").is_file());
        assert!(!exists(&root.join("trap/.wh.a")));
    }));
    v.push(c);
    v.push(Case::new(
        "hard link out of the root with dotdot is refused",
        Tar::default().hardlink("h", "../sentinel/a"),
        Expect::Refused(&["entry \"h\"", "hard link target has a `..` component"]),
    ));
    v.push(Case::new(
        "hard link to an absolute host path is refused",
        Tar::default().hardlink("h", &format!("{s}/a")),
        Expect::Refused(&["entry \"h\"", "which is not in the archive"]),
    ));
    v.push(Case::new(
        "hard link through a planted symlink is refused",
        Tar::default().symlink("l", &s).hardlink("h", "l/a"),
        Expect::Refused(&[
            "entry \"h\"",
            "hard link to \"l/a\" which is not in the archive",
        ]),
    ));
    v.push(Case::new(
        "hard link to a missing target is refused",
        Tar::default().hardlink("h", "nope"),
        Expect::Refused(&["entry \"h\"", "hard link to \"nope\""]),
    ));
    v.push(Case::new(
        "hard link inside the archive works",
        Tar::default()
            .file("srv/a", b"data")
            .hardlink("srv/b", "srv/a"),
        Expect::Ok(|root, _| {
            let a = root.join("srv/a").metadata().unwrap();
            let b = root.join("srv/b").metadata().unwrap();
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        }),
    ));
    v.push(Case::new(
        "device nodes and fifos are dropped",
        Tar::default()
            .dir("srv")
            .special(EntryType::Char, "srv/sda")
            .special(EntryType::Block, "srv/blk")
            .special(EntryType::Fifo, "srv/fifo")
            .hardlink("srv/sda2", "srv/sda"),
        Expect::Ok(|root, _| {
            for n in ["sda", "blk", "fifo", "sda2"] {
                assert!(!exists(&root.join("srv").join(n)), "{n} was created");
            }
            for e in walkdir::WalkDir::new(root) {
                let ft = e.unwrap().file_type();
                assert!(!ft.is_char_device() && !ft.is_block_device() && !ft.is_fifo());
            }
        }),
    ));
    v.push(Case::new(
        "set-uid and set-gid bits are cleared",
        Tar::default()
            .dir_mode("srv", 0o2775)
            .file_mode("srv/su", b"#!", 0o4755)
            .file_mode("srv/sg", b"#!", 0o2711),
        Expect::Ok(|root, _| {
            let mode = |p: &str| root.join(p).metadata().unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode("srv/su"), 0o755);
            assert_eq!(mode("srv/sg"), 0o711);
            assert_eq!(mode("srv"), 0o775);
        }),
    ));
    v.push(Case::new(
        "duplicate entries: the last one wins",
        Tar::default()
            .file("srv/x", b"one")
            .file("srv/x", b"two")
            .dir("srv/d")
            .file("srv/d/inner", b"i")
            .file("srv/d", b"now a file")
            .file("srv/l", b"file")
            .symlink("srv/l", &s)
            .file("srv/l", b"file again"),
        Expect::Ok(|root, _| {
            assert_eq!(std::fs::read(root.join("srv/x")).unwrap(), b"two");
            assert_eq!(std::fs::read(root.join("srv/d")).unwrap(), b"now a file");
            assert_eq!(std::fs::read(root.join("srv/l")).unwrap(), b"file again");
        }),
    ));
    v.push(Case::new(
        "name with a newline is refused",
        Tar::default().file("srv/evil\nname", b"x"),
        Expect::Refused(&["entry \"srv/evil\\nname\"", "control character"]),
    ));
    v.push(Case::new(
        "name with invalid UTF-8 is refused",
        Tar::default().raw_file(b"srv/bad\xffname", b"x", 0o644),
        Expect::Refused(&["entry \"srv/bad\\xffname\"", "not valid UTF-8"]),
    ));
    v.push(Case::new(
        "PAX name longer than PATH_MAX is refused",
        Tar::default().pax_file(format!("srv/{}", "d/".repeat(2600)).as_bytes(), b"x"),
        Expect::Refused(&["(5204 bytes)", "name is 5204 bytes long; the limit is 4095"]),
    ));
    v.push(Case::new(
        "GNU long name with a component past NAME_MAX is refused",
        Tar::default().gnu_long_file(format!("srv/{}", "n".repeat(300)).as_bytes(), b"x"),
        Expect::Refused(&[
            "entry \"srv/nnn",
            "component of 300 bytes; the limit is 255",
        ]),
    ));
    v.push(Case::new(
        "long GNU and PAX names within the limits work",
        Tar::default()
            .gnu_long_file(
                format!("srv/{}/{}", "g".repeat(200), "h".repeat(200)).as_bytes(),
                b"g",
            )
            .pax_file(
                format!("srv/{}/{}", "p".repeat(200), "q".repeat(200)).as_bytes(),
                b"p",
            ),
        Expect::Ok(|root, _| {
            let g = root.join("srv").join("g".repeat(200)).join("h".repeat(200));
            let p = root.join("srv").join("p".repeat(200)).join("q".repeat(200));
            assert_eq!(std::fs::read(g).unwrap(), b"g");
            assert_eq!(std::fs::read(p).unwrap(), b"p");
        }),
    ));
    v.push(Case::new(
        "huge sparse file is refused by its declared size",
        Tar::default().sparse("srv/huge", &[7u8; 512], 1 << 40),
        Expect::Refused(&["entry \"srv/huge\"", "archive expands past the limit of"]),
    ));
    v.push(Case::new(
        "sparse file within the limit keeps its holes",
        Tar::default().sparse("srv/sparse", &[7u8; 512], 64 << 20),
        Expect::Ok(|root, _| {
            let md = root.join("srv/sparse").metadata().unwrap();
            assert_eq!(md.len(), 64 << 20);
            assert!(md.blocks() * 512 < 1 << 20, "holes were written out");
        }),
    ));
    v.push(Case {
        no_end: true,
        ..Case::new(
            "stream without end-of-archive blocks is refused as truncated",
            Tar::default().file("srv/last", b"x"),
            Expect::Refused(&["truncated: the stream ends after entry \"srv/last\""]),
        )
    });
    v.push(Case {
        no_end: true,
        cut: 2048,
        ..Case::new(
            "stream cut inside a file is refused",
            Tar::default().file("srv/cut", &[1u8; 8192]),
            Expect::Refused(&["entry \"srv/cut\"", "corrupt or truncated"]),
        )
    });
    let mut corrupt = Tar::default();
    corrupt.file("srv/fine", b"x");
    let at = corrupt.0.len();
    corrupt.file("srv/corrupt", b"y");
    corrupt.0[at + 148] ^= 0x01; // a checksum digit
    v.push(Case::new(
        "corrupt header checksum is refused",
        &corrupt,
        Expect::Refused(&[
            "corrupt or truncated after entry \"srv/fine\"",
            "checksum mismatch",
        ]),
    ));
    v.push(Case {
        gzip: true,
        cut_gz: 40,
        ..Case::new(
            "truncated gzip stream is refused",
            Tar::default()
                .file("srv/z", &[3u8; 4096])
                .file("srv/z2", &[4u8; 4096]),
            Expect::Refused(&["corrupt or truncated"]),
        )
    });
    let mut bomb = Tar::default();
    for _ in 0..4096 {
        bomb.dir("srv");
    }
    v.push(Case {
        gzip: true,
        limit: Some(1 << 20),
        ..Case::new(
            "gzip bomb of headers stops at the stream limit",
            &bomb,
            Expect::Refused(&["archive expands past the limit of", "after entry \"srv\""]),
        )
    });
    let mut zeros = Tar::default();
    let mut h = Tar::header(b"srv/zeros", EntryType::Regular, 100 << 30, 0o644);
    h.set_cksum();
    zeros.0.extend_from_slice(h.as_bytes());
    zeros.0.extend(std::iter::repeat_n(0u8, 4 << 20));
    v.push(Case {
        gzip: true,
        no_end: true,
        ..Case::new(
            "gzip bomb of one 100 GiB file is refused before writing",
            &zeros,
            Expect::Refused(&["entry \"srv/zeros\"", "archive expands past the limit of"]),
        )
    });
    let mut long_bomb = Tar::default();
    let h = Tar::header(b"././@LongLink", EntryType::GNULongName, 1 << 30, 0);
    let mut h = h;
    h.set_cksum();
    long_bomb.0.extend_from_slice(h.as_bytes());
    long_bomb.0.extend(std::iter::repeat_n(b'a', 4 << 20));
    v.push(Case {
        gzip: true,
        no_end: true,
        ..Case::new(
            "gigabyte GNU long name is stopped before it is read into memory",
            &long_bomb,
            Expect::Refused(&["extended headers longer than 1048576 bytes"]),
        )
    });
    let mut bad_owner = Tar::default();
    let mut h = Tar::header(b"srv/owned", EntryType::Regular, 0, 0o644);
    h.set_uid(u32::MAX as u64);
    bad_owner.push(h, &[]);
    v.push(Case::new(
        "owner id -1 is refused (found by the fuzzer)",
        &bad_owner,
        Expect::Refused(&["entry \"srv/owned\"", "uid 4294967295 is not a valid id"]),
    ));
    let mut wh = Case::new(
        "whiteout that names no file",
        Tar::default().dir("srv").file("srv/.wh.", b""),
        Expect::Ok(|root, _| assert!(root.join("srv/.wh.").is_file())),
    );
    wh.layer = Some(Expect::Refused(&[
        "entry \"srv/.wh.\"",
        "whiteout names no file",
    ]));
    v.push(wh);
    let mut opq = Case::new(
        "opaque whiteout hides the lower layer only",
        Tar::default()
            .dir("lower")
            .file("lower/new", b"n")
            .file("lower/.wh..wh..opq", b"")
            .file(".wh.etc", b""),
        Expect::Ok(|root, _| assert!(root.join("lower/.wh..wh..opq").is_file())),
    );
    opq.layer = Some(Expect::Ok(|root, _| {
        assert!(root.join("lower/new").is_file());
        assert!(!exists(&root.join("lower/x")) && !exists(&root.join("lower/y")));
        assert!(!exists(&root.join("etc")));
        assert!(!exists(&root.join("lower/.wh..wh..opq")));
    }));
    v.push(opq);
    v
}

// ---------------------------------------------------------------- the readers

fn check(case: &Case, expect: &Expect, result: Result<(), String>, root: &Path, w: &World) {
    match (expect, result) {
        (Expect::Refused(needles), Err(msg)) => {
            assert_eq!(
                msg.trim().lines().count(),
                1,
                "{}: one line: {msg}",
                case.name
            );
            for n in *needles {
                assert!(msg.contains(n), "{}: {n:?} not in {msg:?}", case.name);
            }
        }
        (Expect::Ok(f), Ok(())) => f(root, w),
        (Expect::Refused(_), Ok(())) => panic!("{}: accepted, expected a refusal", case.name),
        (Expect::Ok(_), Err(e)) => panic!("{}: refused: {e}", case.name),
    }
}

fn unpack_into(
    root: &Path,
    bytes: &[u8],
    whiteouts: bool,
    limit: Option<u64>,
) -> Result<(), String> {
    let root = Root::open(root).unwrap();
    let opts = UnpackOptions {
        whiteouts,
        max_bytes: limit.unwrap_or(0),
        label: "case".into(),
    };
    tree::unpack(bytes, &root, &opts)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_case_through_unpack() {
    let w = World::new();
    let before = w.outside();
    for case in cases(&w) {
        let root = w.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let r = unpack_into(&root, &case.stream(&[]), false, case.limit);
        check(&case, &case.expect, r, &root, &w);
        assert_eq!(
            before,
            w.outside(),
            "{}: changed something outside the root",
            case.name
        );
        tree::remove_tree(&root).unwrap();
    }
}

#[test]
fn every_case_as_a_layer_over_a_trap_layer() {
    let w = World::new();
    let before = w.outside();
    let trap = trap_layer(&w);
    for case in cases(&w) {
        let root = w.path().join("root");
        std::fs::create_dir(&root).unwrap();
        unpack_into(&root, &trap, true, None).unwrap();
        assert!(root.join("trap").is_symlink());
        let r = unpack_into(&root, &case.stream(&[]), true, case.limit);
        let expect = case.layer.as_ref().unwrap_or(&case.expect);
        check(&case, expect, r, &root, &w);
        assert_eq!(
            before,
            w.outside(),
            "{}: changed something outside the root",
            case.name
        );
        tree::remove_tree(&root).unwrap();
    }
}

/// Entries for a tree the build can finish: the host's static busybox and uWSGI.
fn finishable_prefix() -> Vec<u8> {
    let mut t = Tar::default();
    t.dir("bin")
        .file_mode(
            "bin/busybox",
            &std::fs::read("/bin/busybox").unwrap(),
            0o755,
        )
        .symlink("bin/sh", "busybox")
        .symlink("bin/ifconfig", "busybox")
        .symlink("bin/route", "busybox")
        .dir("usr")
        .dir("usr/bin")
        .file_mode(
            "usr/bin/uwsgi-core",
            &std::fs::read("/usr/bin/uwsgi-core").unwrap(),
            0o755,
        );
    t.bytes()
}

#[test]
fn every_case_through_a_rootfs_build() {
    crate::require_root!();
    let w = World::new();
    let before = w.outside();
    let prefix = finishable_prefix();
    let input = w.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for case in cases(&w) {
        let tar = input.join("rootfs.tar");
        std::fs::write(&tar, case.stream(&prefix)).unwrap();
        let recipe = write_recipe(
            &input,
            "r.toml",
            "[distro]\nname = \"hostile\"\n[source]\ntype = \"rootfs\"\ntar = \"rootfs.tar\"\n[nss]\nmode = \"none\"\n[check]\nallow = [\"uwsgi-elf\"]\n",
        );
        let out = w.path().join("out");
        let work = w.path().join("work");
        let mut cmd = bin();
        cmd.arg("build")
            .arg(&recipe)
            .args(["--format", "dir", "--out"])
            .arg(&out)
            .arg("--work-dir")
            .arg(&work);
        if let Some(l) = case.limit {
            cmd.arg("--max-unpack")
                .arg((l + prefix.len() as u64).to_string());
        }
        let (code, _, err) = run(&mut cmd);
        let r = if code == 0 {
            Ok(())
        } else {
            assert_eq!(code, 2, "{}: refusals are bad input: {err}", case.name);
            let errors: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("build-distro: error: "))
                .collect();
            assert_eq!(errors.len(), 1, "{}: one error line: {err}", case.name);
            Err(errors[0].to_string())
        };
        check(&case, &case.expect, r, &out.join("hostile"), &w);
        assert_eq!(
            before,
            w.outside(),
            "{}: changed something outside the root",
            case.name
        );
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "{}: build directory left behind",
            case.name
        );
        tree::remove_tree(&out).unwrap();
    }
}

/// Finishing, `[[files]]` and packing run over a tree full of links to the host: none
/// writes through them, and the archive holds links, never the host files they name.
#[test]
fn later_stages_never_go_through_planted_symlinks() {
    crate::require_root!();
    let w = World::new();
    let s = w.sentinel().display().to_string();
    let before = w.outside();
    let input = w.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut body = finishable_prefix();
    let mut t = Tar::default();
    t.symlink("srv", &s)
        .symlink("opt", "../../../../../../..")
        .dir("etc")
        .symlink("etc/motd", &format!("{s}/a"))
        .symlink("etc/issue", &format!("{s}/sub/b"))
        .symlink("var", &format!("{s}/sub"));
    body.extend_from_slice(&t.bytes());
    body.extend_from_slice(&END);
    std::fs::write(input.join("rootfs.tar"), body).unwrap();
    let recipe = write_recipe(
        &input,
        "r.toml",
        "[distro]\nname = \"hostile\"\n[source]\ntype = \"rootfs\"\ntar = \"rootfs.tar\"\n[nss]\nmode = \"none\"\n[check]\nallow = [\"uwsgi-elf\"]\n\
         [[files]]\npath = \"/srv/pwned\"\ncontent = \"x\"\n\
         [[files]]\npath = \"/etc/motd\"\ncontent = \"motd\"\n",
    );
    let out = w.path().join("out");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&recipe)
        .args(["--format", "tar", "--out"])
        .arg(&out)
        .arg("--work-dir")
        .arg(w.path().join("work")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(before, w.outside(), "a later stage wrote outside the root");
    let mut ar = tar::Archive::new(std::fs::File::open(out.join("hostile.tar")).unwrap());
    let mut seen = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        assert!(
            !data.windows(9).any(|d| d == b"SENTINEL-"),
            "{:?} carries a host file",
            e.path().unwrap()
        );
        seen.insert(e.path().unwrap().display().to_string(), data);
    }
    assert_eq!(seen["etc/motd"], b"motd");
    assert_eq!(seen["srv/pwned"], b"x");
    assert!(seen.contains_key("etc/issue"), "the link itself is kept");
}

// ---------------------------------------------------------------- cleanup

/// Unmounts on drop, so a failing test leaves no bind mount behind.
struct Bind(PathBuf);

impl Bind {
    fn new(src: &Path, dst: &Path) -> Bind {
        rustix::mount::mount_bind(src, dst)
            .unwrap_or_else(|e| panic!("bind {} on {}: {e}", src.display(), dst.display()));
        Bind(dst.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn cleanup_leaves_bind_mounts_and_removes_everything_else() {
    crate::require_root!();
    let w = World::new();
    let before = snapshot(&w.sentinel(), &[]);
    let work = w.path().join("work");
    let build = tree::BuildDir::new(&work).unwrap();
    let b = build.path().to_path_buf();
    for d in ["rootfs/dev", "rootfs/a/b/c", "rootfs/usr/lib", "rootfs/etc"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    std::fs::write(b.join("rootfs/usr/lib/x"), b"x").unwrap();
    std::fs::write(b.join("rootfs/etc/resolv.conf"), b"").unwrap();
    std::fs::write(b.join("rootfs/etc/other"), b"").unwrap();
    std::os::unix::fs::symlink(w.sentinel(), b.join("rootfs/host")).unwrap();
    // Same filesystem as the build directory: st_dev cannot tell these apart.
    let _dev = Bind::new(&w.sentinel(), &b.join("rootfs/dev"));
    let _deep = Bind::new(&w.sentinel().join("sub"), &b.join("rootfs/a/b/c"));
    let _file = Bind::new(&w.sentinel().join("a"), &b.join("rootfs/etc/resolv.conf"));
    assert_eq!(support::mounts_under(&b).len(), 3);

    let skipped = tree::remove_tree(&b).unwrap();
    let mut skipped: Vec<String> = skipped
        .iter()
        .map(|p| p.replace(&b.display().to_string(), "B"))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        ["B/rootfs/a/b/c", "B/rootfs/dev", "B/rootfs/etc/resolv.conf"]
    );
    assert_eq!(before, snapshot(&w.sentinel(), &[]), "the sentinel changed");
    // Everything that does not lead to a mount point is gone.
    for gone in ["rootfs/usr", "rootfs/etc/other", "rootfs/host"] {
        assert!(!exists(&b.join(gone)), "{gone} survived");
    }
    // Dropping the guard tries again and still refuses to descend.
    drop(build);
    assert_eq!(before, snapshot(&w.sentinel(), &[]), "the sentinel changed");
    drop((_dev, _deep, _file));
    tree::remove_tree(&work).unwrap();
    assert!(!exists(&work));
}

#[test]
fn cleanup_of_a_build_dir_replaced_by_a_symlink_removes_only_the_link() {
    let w = World::new();
    let before = snapshot(&w.sentinel(), &[]);
    let build = tree::BuildDir::new(&w.path().join("work")).unwrap();
    let p = build.path().to_path_buf();
    std::fs::remove_dir(&p).unwrap();
    std::os::unix::fs::symlink(w.sentinel(), &p).unwrap();
    drop(build);
    assert!(!exists(&p));
    assert_eq!(before, snapshot(&w.sentinel(), &[]));
}

#[test]
fn root_remove_refuses_a_mount_point() {
    crate::require_root!();
    let w = World::new();
    let root = w.path().join("root");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    let _m = Bind::new(&w.sentinel(), &root.join("proc"));
    let r = Root::open(&root).unwrap();
    let e = r.remove(Path::new("/proc")).unwrap_err().to_string();
    assert!(e.contains("not removed: it is a mount point"), "{e}");
    // A whiteout layer hiding `/proc` hits the same wall.
    let mut t = Tar::default();
    t.file(".wh.proc", b"");
    let mut bytes = t.bytes();
    bytes.extend_from_slice(&END);
    let e = unpack_into(&root, &bytes, true, None).unwrap_err();
    assert!(e.contains("it is a mount point"), "{e}");
    assert!(w.sentinel().join("a").is_file());
}

// ---------------------------------------------------------------- fuzz smoke

/// xorshift64*: deterministic, so a failure here reproduces from the iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutate a seed the way a fuzzer would: flip bytes (mostly in headers), write
/// interesting numbers into header fields, cut, duplicate blocks.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if d.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            1 => {
                // A header field: name, mode, size, type flag, link name, magic.
                let block = rng.below(d.len() / 512 + 1) * 512;
                let field = [0usize, 100, 124, 156, 157, 257][rng.below(6)];
                let v: &[u8] = [
                    &b"../../x"[..],
                    b"77777777777",
                    b"\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                    b"5",
                    b"1",
                    b"S",
                    b"L",
                    b"x",
                    b"/",
                    b".wh..wh..opq",
                ][rng.below(10)];
                for (k, b) in v.iter().enumerate() {
                    if let Some(x) = d.get_mut(block + field + k) {
                        *x = *b;
                    }
                }
            }
            2 => d.truncate(rng.below(d.len())),
            3 => {
                let from = rng.below(d.len() / 512 + 1) * 512;
                let block: Vec<u8> = d.iter().skip(from).take(512).copied().collect();
                let to = (rng.below(d.len() / 512 + 1) * 512).min(d.len());
                d.splice(to..to, block);
            }
            4 => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            _ => {
                let i = rng.below(d.len());
                let n = rng.below(64).min(d.len() - i);
                d.drain(i..i + n);
            }
        }
    }
    d
}

/// The fuzz target's body over mutations of every hostile case (a fixed number of
/// iterations, not a time budget). `BUILD_DISTRO_FUZZ_SEEDS=dir` also writes the seeds
/// there, as the corpus for `cargo fuzz run unpack` (see README, "Fuzzing").
#[test]
fn fuzz_smoke_over_mutated_hostile_archives() {
    let w = World::new();
    let mut seeds: Vec<Vec<u8>> = cases(&w)
        .iter()
        .filter(|c| !c.gzip)
        .map(|c| c.stream(&[]))
        .collect();
    seeds.push(trap_layer(&w));
    if let Some(dir) = std::env::var_os("BUILD_DISTRO_FUZZ_SEEDS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            for mode in [0u8, 2, 4, 6] {
                let mut input = vec![mode];
                input.extend_from_slice(s);
                std::fs::write(Path::new(&dir).join(format!("seed-{i:02}-{mode}")), input).unwrap();
            }
        }
    }
    let iterations: usize = std::env::var("BUILD_DISTRO_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        let mut input = vec![rng.next() as u8];
        input.extend(mutate(seed, &mut rng));
        let r = std::panic::catch_unwind(|| tree::fuzz::fuzz_unpack(&input));
        if r.is_err() {
            let dump = std::env::temp_dir().join(format!("bd-fuzz-crash-{i}"));
            std::fs::write(&dump, &input).unwrap();
            panic!(
                "fuzz iteration {i} failed; input saved in {}",
                dump.display()
            );
        }
    }
}
