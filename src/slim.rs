//! `[slim]`: documentation, man and info pages and translations kept out of a tree, the
//! way Debian's slim images do it, with dpkg's own `path-exclude`/`path-include` rules.
//! The rules are used three ways, from one list ([`rules`]): put in the tree by
//! mmdebstrap before it installs anything (so dpkg never unpacks those files), installed in the tree as
//! [`RULE_FILE`] (so a later `apt-get install` in it stays slim), and applied after the
//! fact ([`apply`]) to a tree that was made without them (debootstrap, which takes no
//! dpkg options; Docker, registry, image-archive and rootfs sources; what maintainer
//! scripts wrote). Copyright files stay: licences must ship with the binaries. The
//! package database is untouched, so the inventory and the SBOMs list every package.
//!
//! Used by the bootstrap source (the cached tree is already slim) and by the pipeline
//! right after the source step; imports only `recipe` and `tree`.

use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::recipe::Slim;
use crate::tree::{Error, Root};

type Result<T> = std::result::Result<T, Error>;

/// The rule file inside the tree. dpkg reads every file of `dpkg.cfg.d` whose name is
/// letters, digits, `-` and `_` only.
pub const RULE_FILE: &str = "etc/dpkg/dpkg.cfg.d/build-distro-slim";

/// The directories the rules cover; nothing outside them is ever removed.
const COVERED: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
];

/// One dpkg filter: later rules win, as in dpkg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub include: bool,
    /// An fnmatch pattern over the absolute path (`*` also matches `/`, as dpkg matches).
    pub pattern: String,
}

impl Rule {
    fn exclude(p: &str) -> Rule {
        Rule {
            include: false,
            pattern: p.to_string(),
        }
    }

    fn include(p: &str) -> Rule {
        Rule {
            include: true,
            pattern: p.to_string(),
        }
    }

    /// The line as dpkg's configuration file takes it (`path-exclude=/usr/share/doc/*`).
    pub fn line(&self) -> String {
        let what = if self.include { "include" } else { "exclude" };
        format!("path-{what}={}", self.pattern)
    }
}

/// The filters for `slim`, in dpkg's order.
pub fn rules(slim: &Slim) -> Vec<Rule> {
    let mut r = vec![
        Rule::exclude("/usr/share/doc/*"),
        Rule::include("/usr/share/doc/*/copyright"),
        Rule::exclude("/usr/share/man/*"),
        Rule::exclude("/usr/share/info/*"),
        Rule::exclude("/usr/share/locale/*"),
        // glibc reads the alias table to resolve a locale name such as `german`.
        Rule::include("/usr/share/locale/locale.alias"),
    ];
    r.extend(
        slim.keep_locales
            .iter()
            .map(|l| Rule::include(&format!("/usr/share/locale/{l}/*"))),
    );
    r
}

/// The text of [`RULE_FILE`], a comment first (dpkg skips `#` lines).
pub fn dpkg_text(slim: &Slim) -> String {
    let mut t = String::from("# build-distro [slim]: no documentation, man or info pages, or translations but the kept ones; copyright files stay.\n");
    for r in rules(slim) {
        t.push_str(&r.line());
        t.push('\n');
    }
    t
}

/// Whether dpkg, with `rules`, leaves out the entry at the absolute path `path`.
/// dpkg keeps an excluded directory or symlink when an include rule could match below
/// it (the path and the include's text before its first wildcard agree as far as the
/// shorter goes), so `/usr/share/doc/PKG/` stays for its copyright file; applying the
/// rules after the fact keeps the same entries a bootstrap with them would have.
pub fn excluded(rules: &[Rule], path: &str, dir_or_link: bool) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let mut skip = false;
    for r in rules {
        if glob::Pattern::new(&r.pattern).is_ok_and(|p| p.matches_with(path, opts)) {
            skip = !r.include;
        }
    }
    if skip && dir_or_link {
        let kept_below = rules.iter().filter(|r| r.include).any(|r| {
            let literal = r
                .pattern
                .find(['*', '?', '[', '\\'])
                .map_or(&r.pattern[..], |i| &r.pattern[..i]);
            let n = literal.len().min(path.len());
            path.as_bytes()[..n] == literal.as_bytes()[..n]
        });
        skip = !kept_below;
    }
    skip
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slimmed {
    /// Entries removed.
    pub removed: u64,
    /// Bytes of file content they held.
    pub bytes: u64,
    /// Whether [`RULE_FILE`] was written (it was missing or different).
    pub rule_file: bool,
}

/// Apply `slim` to the tree after the fact: remove what its rules exclude (directories
/// only once empty, as dpkg would not have made them), and install [`RULE_FILE`] when the
/// tree has dpkg. Changes nothing in a tree that is slim already.
pub fn apply(root: &Root, slim: &Slim) -> Result<Slimmed> {
    let rules = rules(slim);
    let mut done = Slimmed::default();
    for top in COVERED {
        if root.file_type(Path::new(top))? == Some(FileType::Directory) {
            prune(root, &rules, Path::new(top), &mut done)?;
        }
    }
    if root.file_type(Path::new("etc/dpkg"))? == Some(FileType::Directory) {
        root.create_dir_all(Path::new("etc/dpkg/dpkg.cfg.d"), 0o755)?;
        done.rule_file =
            root.write_file(Path::new(RULE_FILE), dpkg_text(slim).as_bytes(), 0o644)?;
    }
    Ok(done)
}

/// Remove what `rules` exclude below the directory `dir`, depth first.
fn prune(root: &Root, rules: &[Rule], dir: &Path, done: &mut Slimmed) -> Result<()> {
    for name in root.read_dir(dir)? {
        let rel: PathBuf = dir.join(&name);
        let Some(st) = root.lstat(&rel)? else {
            continue;
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let abs = Path::new("/").join(&rel);
        let abs = abs.to_string_lossy();
        if ft == FileType::Directory {
            prune(root, rules, &rel, done)?;
            if excluded(rules, &abs, true) && root.read_dir(&rel)?.is_empty() {
                root.remove(&rel)?;
                done.removed += 1;
            }
        } else if excluded(rules, &abs, ft == FileType::Symlink) {
            if ft == FileType::RegularFile {
                done.bytes += st.st_size as u64;
            }
            root.remove(&rel)?;
            done.removed += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slim(keep: &[&str]) -> Slim {
        Slim {
            enabled: true,
            keep_locales: keep
                .iter()
                .map(|l| l.to_string().try_into().unwrap())
                .collect(),
        }
    }

    #[test]
    fn rule_text_keeps_copyright_and_named_locales() {
        assert_eq!(
            dpkg_text(&slim(&["en_GB", "sr@latin"])),
            "# build-distro [slim]: no documentation, man or info pages, or translations but the kept ones; copyright files stay.\n\
             path-exclude=/usr/share/doc/*\n\
             path-include=/usr/share/doc/*/copyright\n\
             path-exclude=/usr/share/man/*\n\
             path-exclude=/usr/share/info/*\n\
             path-exclude=/usr/share/locale/*\n\
             path-include=/usr/share/locale/locale.alias\n\
             path-include=/usr/share/locale/en_GB/*\n\
             path-include=/usr/share/locale/sr@latin/*\n"
        );
    }

    #[test]
    fn matching_follows_dpkg() {
        let r = rules(&slim(&["en_GB"]));
        let ex = |p: &str| excluded(&r, p, false);
        assert!(ex("/usr/share/doc/gzip/README.gz"));
        assert!(ex("/usr/share/doc/uwsgi-core/examples/a/b.ini"));
        assert!(!ex("/usr/share/doc/gzip/copyright"));
        assert!(ex("/usr/share/man/man1/ls.1.gz"));
        assert!(ex("/usr/share/info/dir"));
        assert!(ex("/usr/share/locale/de/LC_MESSAGES/dpkg.mo"));
        assert!(!ex("/usr/share/locale/en_GB/LC_MESSAGES/dpkg.mo"));
        assert!(!ex("/usr/share/locale/locale.alias"));
        assert!(!ex("/usr/share/doc"));
        assert!(!ex("/usr/share/docs/x"));
        assert!(!ex("/usr/bin/ls"));
        // Directories and symlinks stay where an include could match below them.
        let dir = |p: &str| excluded(&r, p, true);
        assert!(!dir("/usr/share/doc/gzip"));
        assert!(!dir("/usr/share/doc/libpython3.13-stdlib"));
        assert!(!dir("/usr/share/locale/en_GB"));
        assert!(!dir("/usr/share/locale/en_GB/LC_MESSAGES"));
        assert!(dir("/usr/share/locale/de"));
        assert!(dir("/usr/share/man/man1"));
    }

    #[test]
    fn apply_removes_what_dpkg_would_not_unpack_and_installs_the_rules() {
        let t = tempfile::tempdir().unwrap();
        let w = |p: &str, data: &[u8]| {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        w("usr/share/doc/gzip/README.gz", b"12345");
        w("usr/share/doc/gzip/copyright", b"GPL");
        w("usr/share/doc/uwsgi-core/examples/a/b.ini", b"x");
        w("usr/share/man/man1/ls.1.gz", b"man");
        w("usr/share/info/dir", b"info");
        w("usr/share/locale/de/LC_MESSAGES/dpkg.mo", b"de");
        w("usr/share/locale/en_GB/LC_MESSAGES/dpkg.mo", b"gb");
        w("usr/share/locale/locale.alias", b"alias");
        w("usr/share/zoneinfo/UTC", b"TZif");
        w("etc/dpkg/dpkg.cfg", b"");
        std::os::unix::fs::symlink("gzip", t.path().join("usr/share/doc/gz")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let s = slim(&["en_GB"]);
        let done = apply(&root, &s).unwrap();
        assert!(done.rule_file);
        assert_eq!(done.bytes, 5 + 1 + 3 + 4 + 2);
        let left: Vec<String> = root
            .walk()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.display().to_string())
            .filter(|p| p.starts_with("usr/share/") || p.starts_with("etc/dpkg/dpkg.cfg.d"))
            .collect();
        assert_eq!(
            left,
            [
                "etc/dpkg/dpkg.cfg.d",
                "etc/dpkg/dpkg.cfg.d/build-distro-slim",
                "usr/share/doc",
                "usr/share/doc/gz",
                "usr/share/doc/gzip",
                "usr/share/doc/gzip/copyright",
                "usr/share/doc/uwsgi-core",
                "usr/share/doc/uwsgi-core/examples",
                "usr/share/doc/uwsgi-core/examples/a",
                "usr/share/info",
                "usr/share/locale",
                "usr/share/locale/en_GB",
                "usr/share/locale/en_GB/LC_MESSAGES",
                "usr/share/locale/en_GB/LC_MESSAGES/dpkg.mo",
                "usr/share/locale/locale.alias",
                "usr/share/man",
                "usr/share/zoneinfo",
                "usr/share/zoneinfo/UTC",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join(RULE_FILE)).unwrap(),
            dpkg_text(&s)
        );
        // A slim tree stays as it is.
        assert_eq!(apply(&root, &s).unwrap(), Slimmed::default());
    }

    #[test]
    fn a_tree_without_dpkg_gets_no_rule_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/share/man/man1")).unwrap();
        std::fs::write(t.path().join("usr/share/man/man1/ls.1"), b"m").unwrap();
        let root = Root::open(t.path()).unwrap();
        let done = apply(&root, &slim(&[])).unwrap();
        assert_eq!((done.removed, done.rule_file), (2, false));
        assert!(!t.path().join("etc").exists());
    }
}
