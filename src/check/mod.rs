//! Check stage (between finish and pack, and `build-distro check PATH`): prove a distro
//! will work on the uwsgi.it platform (`shared/platform.md`) before it ships, on a
//! directory or directly on a tarball, without executing anything from it. Each rule has
//! a stable id, a severity and a one-line fix hint; a violation names the path.
//!
//! # `check --json`
//!
//! [`Report`] serialised:
//!
//! ```json
//! {
//!   "input": "dist/mydistro.tar.gz",
//!   "kind": "tar-gz",                  // "dir" | "tar" | "tar-gz"
//!   "findings": [
//!     {
//!       "rule": "plugin-elf",          // a stable id from RULES
//!       "severity": "error",           // "error" | "warning" | "info"
//!       "path": "/opt/unbit/uwsgi/plugins/python3_plugin.so",
//!       "message": "/opt/unbit/uwsgi/plugins/python3_plugin.so -> libpython3.11.so.1.0: not found",
//!       "hint": "install the package that ships the library, or remove the plugin",
//!       "allowed": false               // true when the rule was accepted with --allow
//!     }
//!   ],
//!   "summary": {
//!     "errors": 1, "warnings": 0, "infos": 1,  // findings not allowed, per severity
//!     "allowed": 0,                            // findings of allowed rules
//!     "entries": 10888, "bytes": 259000000,    // entries below /, regular-file bytes
//!     "ok": false                              // no error outside the allowed rules
//!   }
//! }
//! ```
//!
//! Findings are sorted by severity (errors first), rule id, path, message.

pub mod elf;
pub mod ldd;
mod rules;
pub mod view;

use std::path::Path;

use serde::Serialize;

pub use view::{InputKind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Input { path: String, msg: String },
    #[error("unknown check rule {id:?} in the allow list; known rules: {known}")]
    UnknownRule { id: String, known: String },
    #[error("check found {count} error(s) (rules: {rules}), listed above; fix them, or accept a rule knowingly with --allow RULE-ID or [check] allow in the recipe (--keep-build keeps the tree for `build-distro check`)")]
    Failed { count: usize, rules: String },
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Read { .. } | Error::Input { .. } | Error::UnknownRule { .. } => 2,
            Error::Failed { .. } | Error::Interrupted => 1,
        }
    }

    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        Error::Read {
            path: path.display().to_string(),
            source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One rule: what it demands and how to fix a violation (`{path}` is replaced).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    pub hint: &'static str,
}

const fn rule(
    id: &'static str,
    severity: Severity,
    summary: &'static str,
    hint: &'static str,
) -> Rule {
    Rule {
        id,
        severity,
        summary,
        hint,
    }
}

use Severity::{Error as E, Info as I, Warning as W};

/// Every rule, in report order of importance.
pub const RULES: &[Rule] = &[
    rule("mount-point", E,
        "every directory the platform mounts onto exists as a real directory",
        "create {path} as a directory (not a symlink), mode 755"),
    rule("shell", E,
        "/bin/sh exists and every user can execute it (network setup and rc.local use it)",
        "install a shell as /bin/sh (dash, bash, or a symlink to busybox), mode 755"),
    rule("ifconfig", E,
        "ifconfig is on the default PATH (the platform runs `ifconfig lo up`)",
        "install net-tools (Debian, Ubuntu) or make /sbin/ifconfig a symlink to busybox"),
    rule("route", E,
        "route is on the default PATH (the platform runs `route add default gw`)",
        "install net-tools (Debian, Ubuntu) or make /sbin/route a symlink to busybox"),
    rule("command-elf", E,
        "/bin/sh, ifconfig and route have their interpreter and libraries in the tree",
        "install the package that ships the missing file"),
    rule("uwsgi-binary", E,
        "/opt/unbit/uwsgi/uwsgi is a file every user can execute (the Emperor runs it)",
        "install uWSGI (uwsgi-core on Debian, uwsgi on Alpine) and rebuild, or set [uwsgi] binary"),
    rule("uwsgi-elf", E,
        "the uWSGI binary is an x86-64 ELF whose interpreter and libraries are in the tree",
        "install the package that ships the missing library"),
    rule("shortcuts", E,
        "/opt/unbit/uwsgi/shortcuts.ini exists and declares the platform's vassal options",
        "rebuild to let finish write it, or add the missing `declare-option2 = NAME=...` lines"),
    rule("plugins-dir", W,
        "/opt/unbit/uwsgi/plugins is a directory (vassals load `plugin = NAME` from it)",
        "install uWSGI plugins (e.g. uwsgi-plugin-python3) and rebuild, or set [uwsgi] plugins"),
    rule("plugin-elf", E,
        "every plugin is an x86-64 ELF whose libraries are in the tree",
        "install the package that ships the missing library, or remove the plugin"),
    rule("nss-consistency", E,
        "/etc/nsswitch.conf lists `unbit` exactly when libnss_unbit.so.2 is installed",
        "set [nss] in the recipe and rebuild, or make {path} and the library directories agree"),
    rule("nss-elf", E,
        "the NSS module is an x86-64 ELF whose libraries are in the tree",
        "install the package that ships the missing library"),
    rule("device-node", E,
        "no device nodes (the host /dev is bound over /dev; unprivileged extraction fails on them)",
        "remove {path} (rebuilding lets finish remove it)"),
    rule("path-charset", E,
        "the distro path uses only A-Za-z0-9._- (the API refuses anything else)",
        "choose a path with only A-Za-z0-9._- ([distro] path in the recipe)"),
    rule("special-file", W,
        "no FIFOs or sockets (nothing can use them in an image)",
        "remove {path} (rebuilding lets finish remove it)"),
    rule("symlink-escape", W,
        "relative symlinks stay inside the tree",
        "make {path} point inside the tree (an absolute target is resolved in the container's root)"),
    rule("unreadable", W,
        "files under /bin /sbin /lib* /usr /etc /opt are world-readable (other containers use them)",
        "chmod o+r {path}"),
    rule("untraversable", W,
        "directories under /bin /sbin /lib* /usr /etc /opt are world-traversable",
        "chmod o+x {path}"),
    rule("setuid", I,
        "set-uid/set-gid bits are useless: the platform mounts everything nosuid",
        "chmod ug-s {path} (rebuilding lets finish clear it)"),
    rule("size", I,
        "total size and entry count",
        "the storage container must hold this much"),
];

/// The rule with this id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Refuse rule ids that do not exist (a typo would otherwise allow nothing, silently).
pub fn validate_allow(ids: &[String]) -> Result<(), Error> {
    for id in ids {
        if rule_by_id(id).is_none() {
            return Err(Error::UnknownRule {
                id: id.clone(),
                known: RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(())
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub path: String,
    pub message: String,
    pub hint: String,
    pub allowed: bool,
}

impl Finding {
    /// `[shell] /bin/sh: message (fix: hint)`, for logs (which add the severity).
    pub fn line(&self) -> String {
        format!(
            "[{}] {}: {} (fix: {}){}",
            self.rule,
            self.path,
            self.message,
            self.hint,
            if self.allowed { " [allowed]" } else { "" }
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub allowed: usize,
    pub entries: u64,
    pub bytes: u64,
    pub ok: bool,
}

/// What `check` found. The JSON shape is documented in the module docs.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub kind: InputKind,
    pub findings: Vec<Finding>,
    pub summary: Summary,
}

impl Report {
    /// The ids of the rules with errors that were not allowed, sorted, once each.
    pub fn failed_rules(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error && !f.allowed)
            .map(|f| f.rule)
            .collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    }

    /// `Err(Error::Failed)` unless the report is ok.
    pub fn into_result(self) -> Result<Report, Error> {
        if self.summary.ok {
            Ok(self)
        } else {
            Err(Error::Failed {
                count: self.summary.errors,
                rules: self.failed_rules().join(", "),
            })
        }
    }
}

/// What to check besides the tree itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rule ids accepted knowingly: their findings are reported but do not fail.
    pub allow: Vec<String>,
    /// The distro's API `path`, when known.
    pub path: Option<String>,
}

/// Check the distro at `input`: a directory, or a `.tar`/`.tar.gz` read in place.
pub fn check(input: &Path, opts: &Options) -> Result<Report, Error> {
    validate_allow(&opts.allow)?;
    let tree = Tree::open(input)?;
    check_tree(&tree, &input.display().to_string(), opts)
}

/// Check an already indexed tree.
pub fn check_tree(tree: &Tree, input: &str, opts: &Options) -> Result<Report, Error> {
    let mut raw = rules::run(tree, opts)?;
    raw.sort_by(|a, b| (a.1, a.0, &a.2, &a.3).cmp(&(b.1, b.0, &b.2, &b.3)));
    raw.dedup();
    let mut summary = Summary {
        entries: tree.entry_count(),
        bytes: tree.bytes(),
        ..Summary::default()
    };
    let findings: Vec<Finding> = raw
        .into_iter()
        .map(|(id, severity, path, message)| {
            let rule = rule_by_id(id).expect("rules use ids from RULES");
            let allowed = opts.allow.iter().any(|a| a == id);
            if allowed {
                summary.allowed += 1;
            } else {
                match severity {
                    Severity::Error => summary.errors += 1,
                    Severity::Warning => summary.warnings += 1,
                    Severity::Info => summary.infos += 1,
                }
            }
            Finding {
                rule: rule.id,
                severity,
                hint: rule.hint.replace("{path}", &path),
                path,
                message,
                allowed,
            }
        })
        .collect();
    summary.ok = summary.errors == 0;
    Ok(Report {
        input: input.to_string(),
        kind: tree.kind,
        findings,
        summary,
    })
}

#[cfg(test)]
mod tests;
