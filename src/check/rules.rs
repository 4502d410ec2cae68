//! The rules themselves (ids and hints are in [`super::RULES`]). Each function looks at
//! the indexed tree and records violations as (rule id, severity, path, message).

use super::elf::Parsed;
use super::ldd::{world_access, Resolver, Use};
use super::view::{join, Kind, Tree};
use super::{rule_by_id, Error, Options, Severity};
use crate::finish::{
    MOUNT_POINTS, SHORTCUTS_OPTIONS, UWSGI_BINARY, UWSGI_PLUGINS, UWSGI_SHORTCUTS,
};

/// (rule id, severity, path, message)
pub(super) type Raw = (&'static str, Severity, String, String);

/// The PATH the platform's container setup runs `ifconfig` and `route` with.
pub const DEFAULT_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

use crate::finish::nss::{
    nsswitch_mentions_unbit, nsswitch_missing_unbit, MODULE_NAME as NSS_MODULE_FILE, NSSWITCH,
};

/// Files that are private on purpose in every stock distro (password hashes, keys, locks):
/// not being world-readable is right for them.
const PRIVATE: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/.pwd.lock",
    "/etc/security/opasswd",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
];

fn is_private(path: &str) -> bool {
    PRIVATE
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Under /bin /sbin /lib* /usr /etc /opt: what every container running the distro reads.
fn is_system(path: &str) -> bool {
    let top = path.trim_start_matches('/').split('/').next().unwrap_or("");
    matches!(top, "bin" | "sbin" | "usr" | "etc" | "opt") || top.starts_with("lib")
}

struct Out(Vec<Raw>);

impl Out {
    fn add(&mut self, id: &'static str, path: impl Into<String>, message: impl Into<String>) {
        let severity = rule_by_id(id).expect("known rule").severity;
        self.0.push((id, severity, path.into(), message.into()));
    }
}

pub(super) fn run(tree: &Tree, opts: &Options) -> Result<Vec<Raw>, Error> {
    let mut out = Out(Vec::new());
    let mut resolver = Resolver::new(tree);
    mount_points(tree, &mut out);
    shell(tree, &mut resolver, &mut out)?;
    for cmd in ["ifconfig", "route"] {
        on_path(tree, &mut resolver, cmd, &mut out)?;
    }
    uwsgi(tree, &mut resolver, &mut out)?;
    shortcuts(tree, &mut out)?;
    plugins(tree, &mut resolver, &mut out)?;
    nss(tree, &mut resolver, &mut out)?;
    entries(tree, &mut out);
    if let Some(p) = &opts.path {
        if let Err(m) = crate::recipe::check_api_path(p) {
            out.add("path-charset", p.clone(), m);
        }
    }
    out.add(
        "size",
        "/",
        format!(
            "{} entries, {:.1} MiB of file content ({} bytes)",
            tree.entry_count(),
            tree.bytes() as f64 / 1048576.0,
            tree.bytes()
        ),
    );
    Ok(out.0)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "a regular file",
        Kind::Dir => "a directory",
        Kind::Symlink => "a symlink",
        Kind::CharDevice => "a character device",
        Kind::BlockDevice => "a block device",
        Kind::Fifo => "a FIFO",
        Kind::Socket => "a socket",
    }
}

fn mount_points(tree: &Tree, out: &mut Out) {
    for mp in MOUNT_POINTS {
        match tree.get(mp) {
            Some(e) if e.kind == Kind::Dir => {}
            Some(e) if e.kind == Kind::Symlink => out.add(
                "mount-point",
                *mp,
                format!(
                    "is a symlink to {}; the platform mounts onto it and needs a real directory",
                    e.target.as_deref().unwrap_or("")
                ),
            ),
            Some(e) => out.add(
                "mount-point",
                *mp,
                format!("is {}, not a directory; the platform mounts onto it", kind_name(e.kind)),
            ),
            None => out.add(
                "mount-point",
                *mp,
                "is missing; the platform mounts onto it (without /.old_root the container silently falls back to the default distro)",
            ),
        }
    }
}

/// The regular file `path` resolves to, or why it does not.
fn file_at(tree: &Tree, path: &str) -> Result<String, String> {
    match tree.resolve(path) {
        Ok(r) => match tree.get(&r) {
            Some(e) if e.kind == Kind::File => Ok(r),
            Some(e) if r != path => Err(format!("resolves to {r}, which is {}", kind_name(e.kind))),
            Some(e) => Err(format!("is {}, not a file", kind_name(e.kind))),
            None => Err("is missing".into()),
        },
        Err(super::view::Unresolved::Missing(m)) if m == path => Err("is missing".into()),
        Err(e) => Err(format!("does not resolve: {e}")),
    }
}

/// ELF (or script) problems of a program, recorded under `rule` with `path`.
fn program_elf(
    tree: &Tree,
    resolver: &mut Resolver,
    real: &str,
    path: &str,
    rule: &'static str,
    out: &mut Out,
) -> Result<(), Error> {
    if *tree.elf(real)? == Parsed::NotElf {
        let head = tree.read(real)?;
        if let Some(rest) = head.strip_prefix(b"#!") {
            let line = rest.split(|c| *c == b'\n').next().unwrap_or(b"");
            let line = String::from_utf8_lossy(line);
            let interp = line.split_whitespace().next().unwrap_or("");
            if let Err(why) = file_at(tree, interp) {
                out.add(rule, path, format!("script interpreter {interp} {why}"));
            }
            return Ok(());
        }
    }
    for p in resolver.check(path, Use::Program)? {
        out.add(rule, path, p);
    }
    Ok(())
}

fn shell(tree: &Tree, resolver: &mut Resolver, out: &mut Out) -> Result<(), Error> {
    let sh = "/bin/sh";
    match file_at(tree, sh) {
        Err(why) => out.add(
            "shell",
            sh,
            format!("{why}; the container has no network without it"),
        ),
        Ok(real) => {
            if let Some(why) = world_access(tree, &real, true) {
                out.add(
                    "shell",
                    sh,
                    format!("{why} (rc.local runs as the container's user)"),
                );
            }
            program_elf(tree, resolver, &real, sh, "command-elf", out)?;
        }
    }
    Ok(())
}

fn on_path(
    tree: &Tree,
    resolver: &mut Resolver,
    cmd: &'static str,
    out: &mut Out,
) -> Result<(), Error> {
    let mut not_exec = None;
    for dir in DEFAULT_PATH {
        let candidate = join(dir, cmd);
        let Ok(real) = file_at(tree, &candidate) else {
            continue;
        };
        let mode = tree.get(&real).map_or(0, |e| e.mode);
        if mode & 0o111 == 0 {
            not_exec.get_or_insert((candidate, mode));
            continue;
        }
        return program_elf(tree, resolver, &real, &candidate, "command-elf", out);
    }
    match not_exec {
        Some((candidate, mode)) => out.add(
            cmd,
            candidate,
            format!("has mode {mode:04o}: not executable, and no other {cmd} is on PATH"),
        ),
        None => out.add(
            cmd,
            cmd,
            format!(
                "not found on PATH ({}); the container would have no network",
                DEFAULT_PATH.join(":")
            ),
        ),
    }
    Ok(())
}

fn uwsgi(tree: &Tree, resolver: &mut Resolver, out: &mut Out) -> Result<(), Error> {
    match file_at(tree, UWSGI_BINARY) {
        Err(why) => out.add(
            "uwsgi-binary",
            UWSGI_BINARY,
            format!("{why}; the container's Emperor cannot start any vassal"),
        ),
        Ok(real) => {
            if let Some(why) = world_access(tree, &real, true) {
                out.add(
                    "uwsgi-binary",
                    UWSGI_BINARY,
                    format!("{why} (the Emperor runs as the container's user)"),
                );
            }
            for p in resolver.check(UWSGI_BINARY, Use::Program)? {
                out.add("uwsgi-elf", UWSGI_BINARY, p);
            }
        }
    }
    Ok(())
}

/// Options declared with `declare-option2 = NAME=...` (or `declare-option`).
fn declared_options(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().replace('_', "-");
        if key != "declare-option2" && key != "declare-option" {
            continue;
        }
        if let Some((name, _)) = value.split_once('=') {
            v.push(name.trim().to_string());
        }
    }
    v
}

fn shortcuts(tree: &Tree, out: &mut Out) -> Result<(), Error> {
    let path = UWSGI_SHORTCUTS;
    let real = match file_at(tree, path) {
        Ok(r) => r,
        Err(why) => {
            out.add(
                "shortcuts",
                path,
                format!("{why}; every vassal fails to start without it"),
            );
            return Ok(());
        }
    };
    if let Some(why) = world_access(tree, &real, false) {
        out.add(
            "shortcuts",
            path,
            format!("{why} (the Emperor reads it as the container's user)"),
        );
    }
    let text = tree.read(&real)?;
    let declared = declared_options(&String::from_utf8_lossy(&text));
    let missing: Vec<&str> = SHORTCUTS_OPTIONS
        .iter()
        .copied()
        .filter(|o| !declared.iter().any(|d| d == o))
        .collect();
    if !missing.is_empty() {
        out.add(
            "shortcuts",
            path,
            format!(
                "does not declare {} (platform vassals use them)",
                missing.join(", ")
            ),
        );
    }
    Ok(())
}

fn plugins(tree: &Tree, resolver: &mut Resolver, out: &mut Out) -> Result<(), Error> {
    let dir = match tree.resolve(UWSGI_PLUGINS) {
        Ok(r) if tree.get(&r).map(|e| e.kind) == Some(Kind::Dir) => r,
        Ok(r) => {
            let k = tree.get(&r).map_or("missing", |e| kind_name(e.kind));
            out.add(
                "plugins-dir",
                UWSGI_PLUGINS,
                format!("is {k}, not a directory; `plugin = NAME` in a vassal finds nothing"),
            );
            return Ok(());
        }
        Err(_) => {
            out.add(
                "plugins-dir",
                UWSGI_PLUGINS,
                "is missing; `plugin = NAME` in a vassal finds nothing unless built in",
            );
            return Ok(());
        }
    };
    let mut names: Vec<&str> = tree
        .children(&dir)
        .into_iter()
        .filter(|n| n.ends_with("_plugin.so"))
        .collect();
    names.sort();
    for name in names {
        let subject = join(UWSGI_PLUGINS, name);
        for p in resolver.check(&subject, Use::Library)? {
            out.add("plugin-elf", subject.clone(), p);
        }
    }
    Ok(())
}

fn nss(tree: &Tree, resolver: &mut Resolver, out: &mut Out) -> Result<(), Error> {
    let conf = NSSWITCH;
    let text = match file_at(tree, conf) {
        Ok(real) => String::from_utf8_lossy(&tree.read(&real)?).into_owned(),
        Err(_) => String::new(),
    };
    let lists = nsswitch_mentions_unbit(&text);
    let module = resolver.find_system_library(NSS_MODULE_FILE)?;
    match (&module, lists) {
        (None, true) => out.add(
            "nss-consistency",
            conf,
            format!("lists `unbit` but no library directory has {NSS_MODULE_FILE}: container users have no name"),
        ),
        (Some(m), false) => out.add(
            "nss-consistency",
            m.clone(),
            format!("{NSS_MODULE_FILE} is installed but {conf} does not list `unbit`: container users have no name"),
        ),
        (Some(_), true) => {
            let missing = nsswitch_missing_unbit(&text);
            if !missing.is_empty() {
                out.add(
                    "nss-consistency",
                    conf,
                    format!("`unbit` is missing from {}: those lookups fail for container users", missing.join(", ")),
                );
            }
        }
        _ => {}
    }
    if let Some(m) = module {
        for p in resolver.check(&m, Use::Library)? {
            out.add("nss-elf", m.clone(), p);
        }
    }
    Ok(())
}

/// Whether a relative symlink target climbs above the root from the link's directory.
fn escapes(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth = link.trim_start_matches('/').split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn entries(tree: &Tree, out: &mut Out) {
    for (path, e) in tree.entries() {
        if path == "/" {
            continue;
        }
        match e.kind {
            Kind::CharDevice | Kind::BlockDevice => out.add(
                "device-node",
                path.clone(),
                format!("is {}", kind_name(e.kind)),
            ),
            Kind::Fifo | Kind::Socket => out.add(
                "special-file",
                path.clone(),
                format!("is {}", kind_name(e.kind)),
            ),
            Kind::Symlink => {
                let t = e.target.as_deref().unwrap_or("");
                if escapes(path, t) {
                    out.add(
                        "symlink-escape",
                        path.clone(),
                        format!("target {t} climbs above the root"),
                    );
                }
            }
            Kind::File => {
                if e.mode & 0o6000 != 0 {
                    let what = match e.mode & 0o6000 {
                        0o4000 => "set-uid",
                        0o2000 => "set-gid",
                        _ => "set-uid and set-gid",
                    };
                    out.add(
                        "setuid",
                        path.clone(),
                        format!("is {what} (mode {:04o})", e.mode),
                    );
                }
                if e.mode & 0o004 == 0 && is_system(path) && !is_private(path) {
                    out.add(
                        "unreadable",
                        path.clone(),
                        format!("has mode {:04o}: other containers cannot read it", e.mode),
                    );
                }
            }
            Kind::Dir => {
                if e.mode & 0o001 == 0 && is_system(path) && !is_private(path) {
                    out.add(
                        "untraversable",
                        path.clone(),
                        format!("has mode {:04o}: other containers cannot enter it", e.mode),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsswitch_parsing() {
        assert!(nsswitch_mentions_unbit("passwd: compat unbit\n"));
        assert!(nsswitch_mentions_unbit(
            "hosts: files [NOTFOUND=return] unbit dns"
        ));
        assert!(!nsswitch_mentions_unbit("passwd: files\n# passwd: unbit\n"));
        assert!(!nsswitch_mentions_unbit("passwd: files unbitx\n"));
    }

    #[test]
    fn symlink_escape() {
        assert!(escapes("/a/b", "../../x"));
        assert!(!escapes("/a/b", "../x"));
        assert!(!escapes("/a/b", "/../../x"));
        assert!(escapes("/x", "../etc"));
        assert!(!escapes("/usr/lib/a", "x/../../b"));
    }

    #[test]
    fn shortcuts_parsing() {
        let d = declared_options(crate::finish::SHORTCUTS_INI);
        for o in SHORTCUTS_OPTIONS {
            assert!(d.iter().any(|x| x == o), "{o}");
        }
        assert_eq!(declared_options("declare_option2 = a=b\n; c\n"), ["a"]);
    }
}
