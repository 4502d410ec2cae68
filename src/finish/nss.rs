//! NSS for container uids (platform.md, "Users inside the container"), part of the finish
//! stage. On glibc trees our own `unbit` module (`nss_unbit.c`, compiled by `build.rs` and
//! embedded in the binary) goes next to the tree's `libc.so.6` and `/etc/nsswitch.conf`
//! lists it; musl has no NSS, so there (or by choice) the recipe's `[nss] uids` become
//! `/etc/passwd`, `/etc/group` and `/etc/shadow` lines. The `check` stage reuses
//! [`module_installed`] and [`nsswitch_lists_unbit`] to verify the result.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use super::Error;
use crate::progress::Reporter;
use crate::recipe::{Nss, NssMode};
use crate::tree::Root;

/// The file name glibc loads for the `unbit` source of nsswitch.conf.
pub const MODULE_NAME: &str = "libnss_unbit.so.2";

pub const NSSWITCH: &str = "/etc/nsswitch.conf";

/// The databases the module answers, in the order a missing line is added.
pub const DATABASES: &[&str] = &["passwd", "group", "shadow", "hosts"];

/// Container uids start here (platform.md).
pub const FIRST_UID: u32 = 30000;

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

/// Whether `rel` resolves to something inside the tree (symlinks followed inside it).
fn exists(root: &Root, rel: &Path) -> bool {
    root.open_at(rel, OFlags::PATH, 0).is_ok()
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

/// Install the module next to the tree's `libc.so.6` and list it in nsswitch.conf.
fn install_module(root: &Root) -> Result<String, Error> {
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

/// The nsswitch.conf written when a tree has none; [`edit_nsswitch`] adds `unbit`.
const DEFAULT_NSSWITCH: &str = "\
# /etc/nsswitch.conf, written by build-distro because the tree had none.
# Container uids (uwsgi.it) are answered by the unbit module.

passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      files
services:       files
ethers:         files
rpc:            files
";

/// One item of a database line: a service name or a `[STATUS=action]` item, with its
/// byte range in the line.
#[derive(Debug)]
struct Item<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

impl Item<'_> {
    fn is_action(&self) -> bool {
        self.text.starts_with('[')
    }
}

fn items(sources: &str, offset: usize) -> Vec<Item<'_>> {
    let b = sources.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i] == b'[' {
            // Action items may hold spaces: `[ NOTFOUND = return ]`.
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'[' {
                i += 1;
            }
        }
        out.push(Item {
            text: &sources[start..i],
            start: offset + start,
            end: offset + i,
        });
    }
    out
}

/// A database line split into its name and items; `None` for comments, blank lines and
/// other text. A `#` starts a comment anywhere on a line.
fn parse_line(line: &str) -> Option<(&str, Vec<Item<'_>>)> {
    let body = &line[..line.find('#').unwrap_or(line.len())];
    let colon = body.find(':')?;
    let db = body[..colon].trim();
    if db.is_empty() || db.contains(char::is_whitespace) {
        return None;
    }
    Some((db, items(&body[colon + 1..], colon + 1)))
}

/// Where `unbit` goes in a line's items (a byte offset and whether a space goes before or
/// after it), so that only that word is added and everything else stays as it was.
///
/// passwd/group/shadow: right after `files` or `compat` (and the action items bound to
/// it), as the platform's own `compat unbit`; `passwd: files systemd` becomes
/// `passwd: files unbit systemd`. hosts: right after `files` or right before `dns`,
/// whichever comes first, so a `[NOTFOUND=return]` after mdns4_minimal (Ubuntu, Fedora)
/// cannot hide `<N>.local`. Without an anchor it goes first: a later position might sit
/// behind a `return` action.
fn insertion(db: &str, items: &[Item]) -> (usize, bool) {
    let services = |names: &[&str]| {
        items
            .iter()
            .position(|i| !i.is_action() && names.contains(&i.text))
    };
    let after = |idx: usize| {
        let mut last = idx;
        while items.get(last + 1).is_some_and(Item::is_action) {
            last += 1;
        }
        (items[last].end, true)
    };
    let anchor = if db == "hosts" {
        services(&["files"])
    } else {
        services(&["files", "compat"])
    };
    let before_dns = (db == "hosts")
        .then(|| services(&["dns"]))
        .flatten()
        .map(|i| (items[i].start, false));
    match (anchor.map(after), before_dns) {
        (Some(a), Some(d)) => {
            if a.0 <= d.0 {
                a
            } else {
                d
            }
        }
        (Some(a), None) => a,
        (None, Some(d)) => d,
        (None, None) => (items[0].start, false),
    }
}

/// The sources a database gets when its line is missing or empty.
fn default_sources(db: &str) -> &'static str {
    if db == "hosts" {
        "files unbit dns"
    } else {
        "files unbit"
    }
}

/// nsswitch.conf with `unbit` added to passwd, group, shadow and hosts (see [`insertion`]
/// for where), every other line, comment and order kept; `None` (no file) gives a sane
/// default. Idempotent: a line that already lists `unbit` is left alone.
pub fn edit_nsswitch(text: Option<&str>) -> String {
    let text = text.unwrap_or(DEFAULT_NSSWITCH);
    let mut seen = [false; 4];
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (content, eol) = match line.strip_suffix('\n') {
            Some(c) => (c, "\n"),
            None => (line, ""),
        };
        let Some((db, items)) = parse_line(content) else {
            out.push_str(line);
            continue;
        };
        let Some(k) = DATABASES.iter().position(|d| *d == db) else {
            out.push_str(line);
            continue;
        };
        seen[k] = true;
        if items.iter().any(|i| i.text == "unbit") {
            out.push_str(line);
        } else if items.is_empty() {
            let colon = content.find(':').unwrap();
            out.push_str(&content[..=colon]);
            out.push(' ');
            out.push_str(default_sources(db));
            out.push_str(&content[colon + 1..]);
            out.push_str(eol);
        } else {
            let (at, space_before) = insertion(db, &items);
            out.push_str(&content[..at]);
            out.push_str(if space_before { " unbit" } else { "unbit " });
            out.push_str(&content[at..]);
            out.push_str(eol);
        }
    }
    for (k, db) in DATABASES.iter().enumerate() {
        if !seen[k] {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            let key = format!("{db}:");
            out.push_str(&format!("{key:<16}{}\n", default_sources(db)));
        }
    }
    out
}

/// The databases among passwd, group, shadow and hosts whose line does not list `unbit`
/// (a missing line counts as not listing it).
pub fn nsswitch_missing_unbit(text: &str) -> Vec<&'static str> {
    DATABASES
        .iter()
        .copied()
        .filter(|db| {
            !text.lines().any(|l| {
                parse_line(l)
                    .is_some_and(|(d, items)| d == *db && items.iter().any(|i| i.text == "unbit"))
            })
        })
        .collect()
}

/// Whether any database line lists `unbit` (glibc then tries to load the module, so any
/// mention needs it installed).
pub fn nsswitch_mentions_unbit(text: &str) -> bool {
    text.lines()
        .filter_map(parse_line)
        .any(|(_, items)| items.iter().any(|i| i.text == "unbit"))
}

/// Whether passwd, group, shadow and hosts all list `unbit`.
pub fn nsswitch_lists_unbit(text: &str) -> bool {
    nsswitch_missing_unbit(text).is_empty()
}

/// The `/etc/passwd` line for container uid `uid` (the same answer the module gives).
pub fn passwd_line(uid: u32, shell: &str) -> String {
    format!("{uid}:x:{uid}:{uid}:{uid}:/containers/{uid}:{shell}")
}

pub fn group_line(uid: u32) -> String {
    format!("{uid}:x:{uid}:")
}

/// The `/etc/shadow` line: a locked password like the module's. The last-change field
/// stays empty (no aging) instead of the build date, so builds stay reproducible.
pub fn shadow_line(uid: u32) -> String {
    format!("{uid}:!:::::::")
}

/// `text` with `lines` appended, skipping any whose name (field 1) or, when `id_field`
/// is given, id is already there.
fn append_entries(text: &str, lines: &[String], id_field: Option<usize>) -> String {
    let mut out = text.to_string();
    for line in lines {
        let fields: Vec<&str> = line.split(':').collect();
        let present = out.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f[0] == fields[0] || id_field.is_some_and(|i| f.get(i) == fields.get(i))
        });
        if !present {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `passwd` mode: the uids' lines in `/etc/passwd`, `/etc/group` and `/etc/shadow`.
fn add_passwd_entries(root: &Root, uids: &[u32], reporter: &Reporter) -> Result<String, Error> {
    if let Some(u) = uids.iter().find(|u| **u < FIRST_UID) {
        return Err(Error::NssRecipe(format!(
            "uids: {u} is not a container uid (they start at {FIRST_UID})"
        )));
    }
    if uids.is_empty() {
        reporter.warn(
            "nss: passwd mode with no [nss] uids: container users will have no name (\"I have no name!\"); list them in [nss] uids",
        );
        return Ok("passwd (no uids)".to_string());
    }
    let shell = if exists(root, Path::new("/bin/bash")) {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let files: [(&str, Vec<String>, Option<usize>, u32); 3] = [
        (
            "/etc/passwd",
            uids.iter().map(|u| passwd_line(*u, shell)).collect(),
            Some(2),
            0o644,
        ),
        (
            "/etc/group",
            uids.iter().map(|u| group_line(*u)).collect(),
            Some(2),
            0o644,
        ),
        (
            "/etc/shadow",
            uids.iter().map(|u| shadow_line(*u)).collect(),
            None,
            0o640,
        ),
    ];
    for (file, lines, id_field, mode) in files {
        let rel = Path::new(file);
        let current = match root.lstat(rel)? {
            Some(_) => read_text(root, rel)?,
            None => String::new(),
        };
        write_keeping_owner(root, rel, &append_entries(&current, &lines, id_field), mode)?;
    }
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    Ok(format!("passwd ({})", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "\
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.
# If you have the `glibc-doc-reference' and `info' packages installed, try:
# `info libc \"Name Service Switch\"' for information about this file.

passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
";

    const UBUNTU: &str = "\
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.

passwd:         files systemd
group:          files systemd
shadow:         files
gshadow:        files

hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
";

    const FEDORA: &str = "\
# Generated by authselect
# Do not modify this file manually, use authselect instead.

# In order of likelihood of use to accelerate lookup.
passwd:     files sss systemd
shadow:     files
group:      files sss systemd
hosts:      files myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns
services:   files sss
netgroup:   files sss
automount:  files sss

aliases:    files
ethers:     files
gshadow:    files
networks:   files dns
protocols:  files
publickey:  files
rpc:        files
";

    /// Edit twice: the second run must change nothing.
    fn twice(text: Option<&str>) -> String {
        let once = edit_nsswitch(text);
        assert_eq!(edit_nsswitch(Some(&once)), once, "not idempotent");
        assert!(nsswitch_lists_unbit(&once), "{once}");
        once
    }

    /// The lines that differ, as (before, after).
    fn changed(before: &str, after: &str) -> Vec<(String, String)> {
        assert_eq!(before.lines().count(), after.lines().count());
        before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn debian_stock_nsswitch() {
        let out = twice(Some(DEBIAN));
        assert_eq!(
            changed(DEBIAN, &out),
            pairs(&[
                ("passwd:         files", "passwd:         files unbit"),
                ("group:          files", "group:          files unbit"),
                ("shadow:         files", "shadow:         files unbit"),
                (
                    "hosts:          files dns",
                    "hosts:          files unbit dns"
                ),
            ])
        );
    }

    #[test]
    fn ubuntu_stock_nsswitch() {
        let out = twice(Some(UBUNTU));
        assert_eq!(
            changed(UBUNTU, &out),
            pairs(&[
                (
                    "passwd:         files systemd",
                    "passwd:         files unbit systemd"
                ),
                (
                    "group:          files systemd",
                    "group:          files unbit systemd"
                ),
                ("shadow:         files", "shadow:         files unbit"),
                (
                    "hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname",
                    "hosts:          files unbit mdns4_minimal [NOTFOUND=return] dns myhostname"
                ),
            ])
        );
    }

    #[test]
    fn fedora_stock_nsswitch() {
        let out = twice(Some(FEDORA));
        assert_eq!(
            changed(FEDORA, &out),
            pairs(&[
                ("passwd:     files sss systemd", "passwd:     files unbit sss systemd"),
                ("shadow:     files", "shadow:     files unbit"),
                ("group:      files sss systemd", "group:      files unbit sss systemd"),
                (
                    "hosts:      files myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns",
                    "hosts:      files unbit myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns"
                ),
            ])
        );
        // `networks: files dns` is not a database the module answers.
        assert!(out.contains("\nnetworks:   files dns\n"));
    }

    #[test]
    fn files_systemd_gets_unbit_after_files() {
        let out = twice(Some("passwd: files systemd\n"));
        assert_eq!(
            out,
            "passwd: files unbit systemd\n\
             group:          files unbit\n\
             shadow:         files unbit\n\
             hosts:          files unbit dns\n"
        );
    }

    #[test]
    fn missing_file_gets_a_sane_default() {
        let out = twice(None);
        assert!(out.starts_with("# /etc/nsswitch.conf, written by build-distro"));
        for line in [
            "passwd:         files unbit\n",
            "group:          files unbit\n",
            "shadow:         files unbit\n",
            "gshadow:        files\n",
            "hosts:          files unbit dns\n",
        ] {
            assert!(out.contains(line), "{line:?} missing in:\n{out}");
        }
    }

    #[test]
    fn anchors_actions_comments_and_odd_lines() {
        let text = "\
passwd: compat [NOTFOUND=return] files # local users first
group:sss
shadow:
hosts: dns files
#passwd: files
";
        let out = twice(Some(text));
        assert_eq!(
            out,
            "\
passwd: compat [NOTFOUND=return] unbit files # local users first
group:unbit sss
shadow: files unbit
hosts: unbit dns files
#passwd: files
"
        );
        assert_eq!(
            nsswitch_missing_unbit("passwd: files unbit\n# group: unbit\nhosts: unbitx\n"),
            vec!["group", "shadow", "hosts"]
        );
    }

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
