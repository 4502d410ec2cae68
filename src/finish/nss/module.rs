//! The `unbit` module on glibc trees: which C library a tree uses, where its `libc.so.6`
//! is (the real directory, not a usrmerge symlink to it), and installing the module (of
//! the tree's machine) there with nsswitch.conf listing it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use super::nsswitch::{edit_nsswitch, NSSWITCH};
use super::{exists, read_text, write_keeping_owner, Error};
use crate::tree::Root;

/// The file name glibc loads for the `unbit` source of nsswitch.conf.
pub const MODULE_NAME: &str = "libnss_unbit.so.2";

static MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libnss_unbit.so.2"));

/// The module's ELF, as it is installed.
pub fn module_bytes() -> &'static [u8] {
    MODULE
}

/// Where glibc trees keep their libraries, most specific first. The multiarch directory is
/// the one for the architecture the module was compiled for: a tree of another
/// architecture could not load it anyway.
pub fn library_dirs() -> Vec<PathBuf> {
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        Path::new("/lib").join(&multiarch),
        Path::new("/usr/lib").join(&multiarch),
        PathBuf::from("/lib64"),
        PathBuf::from("/usr/lib64"),
        PathBuf::from("/lib"),
        PathBuf::from("/usr/lib"),
    ]
}

/// Whether some component of `rel` is a symlink: with usrmerge, `/lib/x86_64-linux-gnu`
/// is only another name for `/usr/lib/x86_64-linux-gnu`.
fn through_symlink(root: &Root, rel: &Path) -> bool {
    let mut cur = PathBuf::from("/");
    rel.components().skip(1).any(|c| {
        cur.push(c);
        matches!(root.file_type(&cur), Ok(Some(FileType::Symlink)))
    })
}

/// The library directory holding `name`, preferring the real directory over a name that
/// reaches it through a symlink.
fn find_in_library_dirs(root: &Root, name: &str) -> Option<PathBuf> {
    let found: Vec<PathBuf> = library_dirs()
        .into_iter()
        .filter(|d| exists(root, &d.join(name)))
        .collect();
    found
        .iter()
        .find(|d| !through_symlink(root, d))
        .or(found.first())
        .map(|d| d.join(name))
}

/// Where the module is installed in the tree (a path inside it), if anywhere.
pub fn module_installed(root: &Root) -> Option<PathBuf> {
    find_in_library_dirs(root, MODULE_NAME)
}

/// Which C library a tree uses, which decides `auto` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libc {
    /// The path of `libc.so.6` inside the tree.
    Glibc(PathBuf),
    /// The path of musl's dynamic loader.
    Musl(PathBuf),
    /// Neither (e.g. a static busybox tree).
    Unknown,
}

pub fn detect_libc(root: &Root) -> Libc {
    if let Some(libc) = find_in_library_dirs(root, "libc.so.6") {
        return Libc::Glibc(libc);
    }
    for dir in ["/lib", "/usr/lib"] {
        let Ok(fd) = root.open_at(Path::new(dir), OFlags::RDONLY | OFlags::DIRECTORY, 0) else {
            continue;
        };
        let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        let mut names: Vec<OsString> = entries
            .filter_map(|e| e.ok())
            .map(|e| OsString::from(std::ffi::OsStr::from_bytes(e.file_name().to_bytes())))
            .filter(|n| n.as_bytes().starts_with(b"ld-musl-"))
            .collect();
        names.sort();
        if let Some(n) = names.first() {
            return Libc::Musl(Path::new(dir).join(n));
        }
    }
    Libc::Unknown
}

/// Install the module next to the tree's `libc.so.6` and list it in nsswitch.conf.
pub(super) fn install_module(root: &Root) -> Result<String, Error> {
    let Libc::Glibc(libc) = detect_libc(root) else {
        return Err(Error::NssRecipe(format!(
            "mode = \"module\" needs a glibc tree, and {} has no libc.so.6 in {}; use mode = \"passwd\" with [nss] uids",
            root.path().display(),
            library_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    check_machine(root, &libc)?;
    let target = libc.with_file_name(MODULE_NAME);
    root.write_file(&target, MODULE, 0o644)?;
    let current = match root.lstat(Path::new(NSSWITCH))? {
        Some(_) => Some(read_text(root, Path::new(NSSWITCH))?),
        None => None,
    };
    let edited = edit_nsswitch(current.as_deref());
    write_keeping_owner(root, Path::new(NSSWITCH), &edited, 0o644)?;
    Ok(format!("module {}", target.display()))
}

/// A module of another architecture than the tree's libc would be silently ignored.
fn check_machine(root: &Root, libc: &Path) -> Result<(), Error> {
    let theirs = goblin::elf::Elf::parse_header(&root.read(libc)?).map_err(|e| {
        Error::Nss(format!(
            "{}: not an ELF library: {e}",
            root.host_path(libc).display()
        ))
    })?;
    let ours = goblin::elf::Elf::parse_header(MODULE).expect("build.rs produced an ELF");
    if (theirs.e_machine, theirs.e_ident[4]) != (ours.e_machine, ours.e_ident[4]) {
        return Err(Error::Nss(format!(
            "{} is for ELF machine {} but build-distro carries the module for machine {}; run build-distro on the tree's architecture",
            root.host_path(libc).display(),
            goblin::elf::header::machine_to_str(theirs.e_machine),
            goblin::elf::header::machine_to_str(ours.e_machine)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn module_needs_nothing_newer_than_glibc_2_17_and_only_libc() {
        let elf = goblin::elf::Elf::parse(module_bytes()).unwrap();
        assert_eq!(elf.soname, Some(MODULE_NAME));
        assert_eq!(elf.libraries, vec!["libc.so.6"], "DT_NEEDED");
        let verneed = elf.verneed.as_ref().expect("a version-needed section");
        let mut versions = Vec::new();
        for need in verneed.iter() {
            let file = elf.dynstrtab.get_at(need.vn_file).unwrap();
            assert_eq!(file, "libc.so.6");
            for aux in need.iter() {
                versions.push(elf.dynstrtab.get_at(aux.vna_name).unwrap().to_string());
            }
        }
        assert!(!versions.is_empty());
        for v in &versions {
            let parsed = v.strip_prefix("GLIBC_").and_then(|n| {
                let mut p = n.split('.').map(|x| x.parse::<u32>().ok());
                Some((p.next()??, p.next().unwrap_or(Some(0))?))
            });
            let Some(ver) = parsed else {
                panic!("unexpected symbol version {v}")
            };
            assert!(ver <= (2, 17), "{v} is newer than GLIBC_2.17: {versions:?}");
        }
        let exported: Vec<&str> = elf
            .dynsyms
            .iter()
            .filter(|s| s.st_value != 0)
            .filter_map(|s| elf.dynstrtab.get_at(s.st_name))
            .collect();
        for f in [
            "getpwnam_r",
            "getpwuid_r",
            "getgrnam_r",
            "getgrgid_r",
            "getspnam_r",
            "gethostbyname_r",
            "gethostbyname2_r",
            "gethostbyname3_r",
            "gethostbyname4_r",
        ] {
            let name = format!("_nss_unbit_{f}");
            assert!(exported.contains(&name.as_str()), "{name} not exported");
        }
        assert!(
            exported.iter().all(|s| s.starts_with("_nss_unbit_")),
            "{exported:?}"
        );
    }

    /// The module loaded into this process: the rules that need no `/containers`.
    mod loaded {
        use super::*;
        use std::ffi::{c_char, c_int, c_void, CStr, CString};

        const SUCCESS: c_int = 1;
        const NOTFOUND: c_int = 0;
        const TRYAGAIN: c_int = -2;

        type ByName2 = unsafe extern "C" fn(
            *const c_char,
            c_int,
            *mut libc::hostent,
            *mut c_char,
            usize,
            *mut c_int,
            *mut c_int,
        ) -> c_int;
        type PwNam = unsafe extern "C" fn(
            *const c_char,
            *mut libc::passwd,
            *mut c_char,
            usize,
            *mut c_int,
        ) -> c_int;
        #[repr(C)]
        struct Tuple {
            next: *mut Tuple,
            name: *mut c_char,
            family: c_int,
            addr: [u32; 4],
            scopeid: u32,
        }
        type ByName4 = unsafe extern "C" fn(
            *const c_char,
            *mut *mut Tuple,
            *mut c_char,
            usize,
            *mut c_int,
            *mut c_int,
            *mut i32,
        ) -> c_int;

        /// The module written to a file and dlopened (kept open for the process).
        fn symbol(name: &str) -> *mut c_void {
            static HANDLE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let h = *HANDLE.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(MODULE_NAME);
                std::fs::write(&path, module_bytes()).unwrap();
                let c = CString::new(path.to_str().unwrap()).unwrap();
                let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
                assert!(!h.is_null(), "dlopen {}", path.display());
                h as usize
            });
            let c = CString::new(name).unwrap();
            let s = unsafe { libc::dlsym(h as *mut c_void, c.as_ptr()) };
            assert!(!s.is_null(), "{name}");
            s
        }

        fn byname2(name: &str, af: c_int, buflen: usize) -> (c_int, Option<[u8; 4]>, c_int) {
            let f: ByName2 = unsafe { std::mem::transmute(symbol("_nss_unbit_gethostbyname2_r")) };
            let n = CString::new(name).unwrap();
            let mut h: libc::hostent = unsafe { std::mem::zeroed() };
            let mut buf = vec![0 as c_char; buflen];
            let (mut errno, mut herrno) = (0, 0);
            let st = unsafe {
                f(
                    n.as_ptr(),
                    af,
                    &mut h,
                    buf.as_mut_ptr(),
                    buflen,
                    &mut errno,
                    &mut herrno,
                )
            };
            if st != SUCCESS {
                return (st, None, errno);
            }
            unsafe {
                assert_eq!(CStr::from_ptr(h.h_name).to_str().unwrap(), name);
                assert!((*h.h_aliases).is_null());
                assert_eq!((h.h_addrtype, h.h_length), (libc::AF_INET, 4));
                assert!((*h.h_addr_list.add(1)).is_null());
                let a = *h.h_addr_list;
                let addr = [*a as u8, *a.add(1) as u8, *a.add(2) as u8, *a.add(3) as u8];
                (st, Some(addr), errno)
            }
        }

        #[test]
        fn hosts_rule() {
            let v4 = |n: &str| byname2(n, libc::AF_INET, 1024).1;
            assert_eq!(v4("30001.local"), Some([10, 0, 0, 3]));
            assert_eq!(v4("30254.local"), Some([10, 0, 1, 0]));
            // Masked to 24 bits: 30000 + 2^24 - 2 wraps to 10.0.0.0.
            assert_eq!(
                v4(&format!("{}.local", 30000 + (1 << 24) - 2)),
                Some([10, 0, 0, 0])
            );
            for not_ours in [
                "30000.local",
                "1000.local",
                "030001.local",
                "30001.locals",
                "30001.lan",
                "x30001.local",
                ".local",
                "30001",
                "99999999999.local",
            ] {
                assert_eq!(
                    byname2(not_ours, libc::AF_INET, 1024).0,
                    NOTFOUND,
                    "{not_ours}"
                );
            }
            // IPv4 only.
            assert_eq!(byname2("30001.local", libc::AF_INET6, 1024).0, NOTFOUND);
            // Too small a buffer: glibc retries with a bigger one on ERANGE.
            let (st, _, errno) = byname2("30001.local", libc::AF_INET, 16);
            assert_eq!((st, errno), (TRYAGAIN, libc::ERANGE));
        }

        #[test]
        fn getaddrinfo_entry_point() {
            let f: ByName4 = unsafe { std::mem::transmute(symbol("_nss_unbit_gethostbyname4_r")) };
            let n = CString::new("30002.local").unwrap();
            let mut buf = vec![0 as c_char; 256];
            let mut pat: *mut Tuple = std::ptr::null_mut();
            let (mut e, mut he, mut ttl) = (0, 0, -1);
            let st = unsafe {
                f(
                    n.as_ptr(),
                    &mut pat,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut e,
                    &mut he,
                    &mut ttl,
                )
            };
            assert_eq!(st, SUCCESS);
            let t = unsafe { &*pat };
            assert!(t.next.is_null());
            assert_eq!(t.family, libc::AF_INET);
            assert_eq!(t.addr[0].to_ne_bytes(), [10, 0, 0, 4]);
            assert_eq!(
                unsafe { CStr::from_ptr(t.name) }.to_str().unwrap(),
                "30002.local"
            );
        }

        #[test]
        fn names_that_are_not_container_ids() {
            let f: PwNam = unsafe { std::mem::transmute(symbol("_nss_unbit_getpwnam_r")) };
            // None of these may be answered whatever /containers holds on this machine.
            for name in [
                "root",
                "1000",
                "29999",
                "030001",
                "30001x",
                "",
                "4294967295",
            ] {
                let n = CString::new(name).unwrap();
                let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
                let mut buf = vec![0 as c_char; 1024];
                let mut e = 0;
                let st = unsafe { f(n.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut e) };
                assert_eq!((st, e), (NOTFOUND, libc::ENOENT), "{name:?}");
            }
        }
    }
}
