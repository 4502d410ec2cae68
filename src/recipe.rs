//! Recipes: the declarative TOML that drives a build. Loading reads the file (a path, a
//! name in `recipes/`, or a built-in), follows `extends`, applies `--set` overrides, and
//! validates. Every key is known (`deny_unknown_fields`); errors name file, line, column
//! and key. Values that later reach programs (suites, package names, mirrors, paths) are
//! validated here, when the file is read, so no stage has to re-check them.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// The recipes shipped in `recipes/`, built into the binary so a copied binary has them.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "debian-bookworm",
        include_str!("../recipes/debian-bookworm.toml"),
    ),
    (
        "debian-trixie",
        include_str!("../recipes/debian-trixie.toml"),
    ),
    (
        "debian-python-web",
        include_str!("../recipes/debian-python-web.toml"),
    ),
    (
        "alpine-docker",
        include_str!("../recipes/alpine-docker.toml"),
    ),
    (
        "debian-slim-docker",
        include_str!("../recipes/debian-slim-docker.toml"),
    ),
];

/// The recipe used when none is named.
pub const DEFAULT: &str = "debian-bookworm";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}:{line}:{col}: {msg}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("recipe {name:?} not found: no such file and no recipes/{name}.toml (built in: {available})")]
    NotFound { name: String, available: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--set {arg}: {msg}")]
    Set { arg: String, msg: String },
}

type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn charset(s: &str, what: &str, ok: fn(char) -> bool, allowed: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > 255 {
        return Err(format!("{what} {s:?} is longer than 255 characters"));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        let fixed: String = s.chars().map(|c| if ok(c) { c } else { '-' }).collect();
        return Err(format!(
            "{what} {s:?} has {c:?}: only {allowed} are allowed; try {fixed:?}"
        ));
    }
    Ok(())
}

/// The API path charset, `A-Za-z0-9._-`.
pub fn check_api_path(s: &str) -> Result<(), String> {
    charset(
        s,
        "path",
        |c| c.is_ascii_alphanumeric() || "._-".contains(c),
        "A-Za-z0-9._-",
    )?;
    if s == "." || s == ".." {
        return Err(format!("path {s:?} is not a directory name"));
    }
    Ok(())
}

checked_string!(
    /// A custom distro's storage directory name (the API `path`).
    ApiPath,
    check_api_path
);

checked_string!(
    /// A custom distro's API name.
    ApiName,
    |s| {
        if s.is_empty() || s.len() > 255 {
            return Err(format!("name {s:?} must have 1 to 255 characters"));
        }
        Ok(())
    }
);

checked_string!(
    /// A package name as apt, apk and dnf take it (`name`, `name=version`, `name:arch`).
    PackageName,
    |s| {
        charset(s, "package", |c| c.is_ascii_alphanumeric() || "+._:=~-".contains(c), "A-Za-z0-9+._:=~-")?;
        if s.starts_with('-') {
            return Err(format!("package {s:?} starts with '-': it would be read as an option"));
        }
        Ok(())
    }
);

checked_string!(
    /// A suite, variant, component or architecture name.
    Word,
    |s| {
        charset(s, "value", |c| c.is_ascii_alphanumeric() || "._-".contains(c), "A-Za-z0-9._-")?;
        if s.starts_with('-') {
            return Err(format!("value {s:?} starts with '-': it would be read as an option"));
        }
        Ok(())
    }
);

/// Characters a mirror URL may hold: RFC 3986 without the ones a shell or a
/// `sources.list` line would read as syntax (`$`, quotes, `;`, `&`, `*`, `\\`, `(`, `)`,
/// `` ` ``). The URL reaches debootstrap (a shell script) and apt's sources.list, so it
/// is kept to what no quoting mistake downstream can turn into code or options.
fn mirror_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!+,=%".contains(c)
}

checked_string!(
    /// A package mirror URL.
    MirrorUrl,
    |s| {
        let rest = ["http://", "https://", "file://"]
            .iter()
            .find_map(|p| s.strip_prefix(p));
        let Some(rest) = rest else {
            return Err(format!("mirror {s:?} must be an http://, https:// or file:// URL"));
        };
        if let Some(c) = s.chars().find(|c| !mirror_char(*c)) {
            return Err(format!(
                "mirror {s:?} has {c:?}: only A-Za-z0-9 and -._~:/?#[]@!+,=% are allowed; percent-encode the rest"
            ));
        }
        if !s.starts_with("file://") && (rest.is_empty() || rest.starts_with('/')) {
            return Err(format!("mirror {s:?} has no host"));
        }
        Ok(())
    }
);

checked_string!(
    /// An absolute path inside the distro tree, without `..`.
    TreePath,
    |s| {
        let p = Path::new(s);
        // A newline or NUL in a path breaks the manifest and the syscalls alike.
        if s.contains(|c: char| c.is_control()) {
            return Err(format!("path {s:?} has a control character"));
        }
        if !p.is_absolute() {
            return Err(format!("path {s:?} must be absolute inside the distro (start with /)"));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(format!("path {s:?} must not contain `..`"));
        }
        if p.components().count() < 2 {
            return Err(format!("path {s:?} names the root itself"));
        }
        Ok(())
    }
);

checked_string!(
    /// Octal permission bits, "0755".
    FileMode,
    |s| match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(()),
        _ => Err(format!("mode {s:?} must be octal permission bits like \"0644\"")),
    }
);

impl FileMode {
    pub fn bits(&self) -> u32 {
        u32::from_str_radix(&self.0, 8).expect("validated")
    }
}

/// A whole recipe. Every section is optional in a file (a recipe that `extends` another
/// names only what it changes); [`Recipe::validate`] checks the merged result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// A recipe file (relative to this one) or recipe name this one builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    #[serde(default)]
    pub distro: Distro,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub run: Vec<RunSpec>,
    #[serde(default)]
    pub remove: Remove,
    #[serde(default)]
    pub uwsgi: Uwsgi,
    #[serde(default)]
    pub nss: Nss,
    #[serde(default)]
    pub check: CheckSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distro {
    pub name: Option<ApiName>,
    /// Storage directory; defaults to the name when that fits the charset.
    pub path: Option<ApiPath>,
    pub note: Option<String>,
}

/// Where the tree comes from. The enum *is* the list of source backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    Debootstrap(Bootstrap),
    Mmdebstrap(Bootstrap),
    Docker(DockerSource),
    ImageArchive(ImageArchiveSource),
    Rootfs(RootfsSource),
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Debootstrap(_) => "debootstrap",
            SourceSpec::Mmdebstrap(_) => "mmdebstrap",
            SourceSpec::Docker(_) => "docker",
            SourceSpec::ImageArchive(_) => "image-archive",
            SourceSpec::Rootfs(_) => "rootfs",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    pub suite: Word,
    #[serde(default)]
    pub variant: Option<Word>,
    #[serde(default)]
    pub components: Vec<Word>,
    #[serde(default)]
    pub mirror: Option<MirrorUrl>,
    #[serde(default)]
    pub packages: Vec<PackageName>,
    #[serde(default)]
    pub arch: Option<Word>,
    /// OpenPGP keyring (binary or armored) that signs the mirror's `InRelease`, for a
    /// mirror the host's apt keys do not cover; relative to the recipe.
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// `debian` or `ubuntu`: decides the default mirrors and which suites exist. Unset:
    /// `ubuntu` when the mirror URL names ubuntu, else `debian`.
    #[serde(default)]
    pub distribution: Option<Distribution>,
    /// Install from `<suite>-updates` too (when the suite has one).
    #[serde(default = "yes")]
    pub updates: bool,
    /// Install from `<suite>-security` too (when the suite has one).
    #[serde(default = "yes")]
    pub security: bool,
    /// Where `<suite>-security` is; default: Debian's `http://deb.debian.org/debian-security`,
    /// Ubuntu's archive (the mirror) for Ubuntu.
    #[serde(default)]
    pub security_mirror: Option<MirrorUrl>,
}

fn yes() -> bool {
    true
}

/// The Debian-family distributions a bootstrap source can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Debian,
    Ubuntu,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pull {
    #[default]
    Missing,
    Always,
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSource {
    pub image: String,
    #[serde(default)]
    pub pull: Pull,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageArchiveSource {
    /// `docker save` archive or OCI layout (directory or tar); relative to the recipe.
    pub file: PathBuf,
    /// Which image, when the archive holds several (`name:tag`).
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsSource {
    /// An existing directory (copied, never modified).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A tar or tar.gz of a root filesystem.
    #[serde(default)]
    pub tar: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub install: Vec<PackageName>,
    #[serde(default)]
    pub remove: Vec<PackageName>,
    /// Upgrade every installed package (apt: `dist-upgrade` from the release, its
    /// `-updates` and `-security` suites; apk: `apk upgrade`) before installing.
    #[serde(default)]
    pub upgrade: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: TreePath,
    #[serde(default)]
    pub mode: Option<FileMode>,
    #[serde(default)]
    pub content: Option<String>,
    /// Relative to the recipe that names it; made absolute when the recipe is loaded.
    #[serde(default)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub command: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// Globs of absolute paths inside the tree, removed after the run commands.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uwsgi {
    /// The uWSGI binary inside the tree; auto-detected when unset.
    pub binary: Option<TreePath>,
    /// The tree's plugin directory; auto-detected when unset.
    pub plugins: Option<TreePath>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NssMode {
    /// The module on glibc trees, passwd lines on musl trees.
    #[default]
    Auto,
    Module,
    Passwd,
    None,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nss {
    #[serde(default)]
    pub mode: NssMode,
    /// Container uids that get passwd/group lines in `passwd` mode.
    #[serde(default)]
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Rule ids accepted knowingly (recorded in the provenance).
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Versioned,
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PublishTo {
    /// "all": every storage container of the customer.
    Named(String),
    Uids(Vec<u32>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub to: PublishTo,
    #[serde(default)]
    pub strategy: Strategy,
    /// Containers to map onto the new distro after it is registered.
    #[serde(default)]
    pub assign: Vec<u32>,
}

/// A recipe ready to build, and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub recipe: Recipe,
    /// "recipes/x.toml" or "builtin:debian-bookworm", for messages and provenance.
    pub origin: String,
    /// `--set` overrides as given.
    pub sets: Vec<String>,
}

impl Loaded {
    /// The distro's API name (validated present).
    pub fn name(&self) -> &str {
        self.recipe.distro.name.as_deref().expect("validated")
    }

    /// The storage path: `[distro] path`, else the name.
    pub fn path(&self) -> &str {
        self.recipe
            .distro
            .path
            .as_deref()
            .or(self.recipe.distro.name.as_deref())
            .expect("validated")
    }

    pub fn source(&self) -> &SourceSpec {
        self.recipe.source.as_ref().expect("validated")
    }
}

/// Where a recipe's text is.
enum Located {
    File(PathBuf),
    Builtin(&'static str, &'static str),
}

fn locate(spec: &str, relative_to: Option<&Path>) -> Result<Located> {
    let mut candidates = Vec::new();
    let as_path = Path::new(spec);
    match relative_to {
        Some(dir) if as_path.is_relative() => candidates.push(dir.join(as_path)),
        _ => candidates.push(as_path.to_path_buf()),
    }
    if !spec.contains('/') {
        let file = if spec.ends_with(".toml") {
            spec.to_string()
        } else {
            format!("{spec}.toml")
        };
        candidates.push(Path::new("recipes").join(file));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(Located::File(found));
    }
    let bare = spec.trim_end_matches(".toml");
    if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == bare) {
        return Ok(Located::Builtin(name, text));
    }
    Err(Error::NotFound {
        name: spec.to_string(),
        available: BUILTIN
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_error(file: &str, text: &str, e: toml::de::Error) -> Error {
    let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    Error::Parse {
        file: file.to_string(),
        line,
        col,
        msg: e.message().trim().to_string(),
    }
}

/// Refuse a `[[files]] source` that resolves (symlinks followed) outside `dir`, the
/// directory of the recipe that names it: a recipe someone shared must not be able to
/// copy the builder's `/root/.ssh/id_rsa` or `/etc/shadow` into the image. A missing
/// file is left to [`Recipe::validate`], which names it.
fn check_source_inside(src: &Path, dir: &Path) -> Result<(), String> {
    let Ok(real) = src.canonicalize() else {
        return Ok(());
    };
    let base = dir
        .canonicalize()
        .map_err(|e| format!("recipe directory {}: {e}", dir.display()))?;
    if real.starts_with(&base) {
        Ok(())
    } else {
        Err(format!(
            "[[files]] source {} resolves to {}, outside the recipe's directory {}; copy the file next to the recipe",
            src.display(),
            real.display(),
            base.display()
        ))
    }
}

/// Make the relative file paths a recipe names absolute against its own directory, so a
/// recipe that extends another keeps pointing at the right files, and check that
/// `[[files]]` sources stay inside that directory.
fn anchor_paths(table: &mut Table, dir: &Path) -> Result<(), String> {
    let anchor = |v: &mut Value| {
        if let Value::String(s) = v {
            if Path::new(s.as_str()).is_relative() {
                *s = dir.join(s.as_str()).display().to_string();
            }
        }
    };
    if let Some(Value::Table(src)) = table.get_mut("source") {
        for key in ["file", "dir", "tar", "keyring"] {
            if let Some(v) = src.get_mut(key) {
                anchor(v);
            }
        }
    }
    if let Some(Value::Array(files)) = table.get_mut("files") {
        for f in files {
            if let Some(v) = f.as_table_mut().and_then(|t| t.get_mut("source")) {
                anchor(v);
                if let Value::String(s) = v {
                    check_source_inside(Path::new(s.as_str()), dir)?;
                }
            }
        }
    }
    Ok(())
}

/// Lay `child` over `base`: tables merge key by key, `files` and `run` lists append,
/// everything else (and a `[source]` of another type) replaces.
fn merge(base: &mut Table, child: Table, top: bool) {
    for (k, v) in child {
        let same_source_type = |b: &Table, c: &Table| b.get("type") == c.get("type");
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(c))
                if !(top && k == "source" && !same_source_type(b, &c)) =>
            {
                merge(b, c, false)
            }
            (Some(Value::Array(b)), Value::Array(c)) if top && (k == "files" || k == "run") => {
                b.extend(c)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Read one recipe file and what it extends, merged, with relative paths anchored.
fn load_table(
    spec: &str,
    relative_to: Option<&Path>,
    seen: &mut BTreeSet<String>,
) -> Result<(Table, String)> {
    let located = locate(spec, relative_to)?;
    let (origin, text, dir) = match located {
        Located::File(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::Read {
                file: p.display().to_string(),
                source: e,
            })?;
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            (p.display().to_string(), text, dir)
        }
        Located::Builtin(name, text) => (
            format!("builtin:{name}"),
            text.to_string(),
            PathBuf::from("."),
        ),
    };
    if !seen.insert(origin.clone()) {
        return Err(Error::Invalid {
            file: origin,
            msg: "`extends` loops back to this recipe".into(),
        });
    }
    // Typed parse first: it reports unknown keys and bad values with their position.
    let typed: Recipe = toml::from_str(&text).map_err(|e| parse_error(&origin, &text, e))?;
    let mut table: Table = toml::from_str(&text).map_err(|e| parse_error(&origin, &text, e))?;
    anchor_paths(&mut table, &dir).map_err(|msg| Error::Invalid {
        file: origin.clone(),
        msg,
    })?;
    let Some(parent) = typed.extends else {
        return Ok((table, origin));
    };
    table.remove("extends");
    let base_dir = if origin.starts_with("builtin:") {
        None
    } else {
        Some(dir.as_path())
    };
    let (mut base, _) = load_table(&parent, base_dir, seen).map_err(|e| match e {
        Error::NotFound { .. } => Error::Invalid {
            file: origin.clone(),
            msg: format!("extends = {parent:?}: {e}"),
        },
        other => other,
    })?;
    merge(&mut base, table, true);
    Ok((base, origin))
}

/// Apply one `--set key.sub=value`. The value is read as TOML when it parses as a TOML
/// value (`true`, `3`, `["a","b"]`), else taken as a string.
fn apply_set(table: &mut Table, arg: &str) -> Result<()> {
    let err = |msg: &str| Error::Set {
        arg: arg.to_string(),
        msg: msg.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key=value, e.g. source.suite=trixie"))?;
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty key part"));
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| err(&format!("`{p}` is not a table")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Load a recipe by path or name (`None`: the built-in default), apply `--set`s, validate.
pub fn load(spec: Option<&str>, sets: &[String]) -> Result<Loaded> {
    let spec = spec.unwrap_or(DEFAULT);
    let (mut table, origin) = load_table(spec, None, &mut BTreeSet::new())?;
    for s in sets {
        apply_set(&mut table, s)?;
    }
    let recipe: Recipe = Recipe::deserialize(table).map_err(|e| Error::Invalid {
        file: origin.clone(),
        msg: if sets.is_empty() {
            e.message().to_string()
        } else {
            format!("after --set: {}", e.message())
        },
    })?;
    recipe.validate(&origin)?;
    Ok(Loaded {
        recipe,
        origin,
        sets: sets.to_vec(),
    })
}

/// Parse and validate recipe text on its own (tests, `recipes/` linting).
pub fn parse_str(text: &str, origin: &str) -> Result<Recipe> {
    let r: Recipe = toml::from_str(text).map_err(|e| parse_error(origin, text, e))?;
    r.validate(origin)?;
    Ok(r)
}

impl Recipe {
    /// Checks on the merged recipe that no single key can express.
    pub fn validate(&self, file: &str) -> Result<()> {
        let invalid = |msg: String| Error::Invalid {
            file: file.to_string(),
            msg,
        };
        let name =
            self.distro.name.as_ref().ok_or_else(|| {
                invalid("[distro] name is missing; add name = \"my-distro\"".into())
            })?;
        if self.distro.path.is_none() {
            check_api_path(name).map_err(|m| {
                invalid(format!(
                    "[distro] name {name:?} cannot serve as the path ({m}); add path = \"...\""
                ))
            })?;
        }
        let source = self.source.as_ref().ok_or_else(|| {
            invalid(
                "[source] is missing; add type = \"debootstrap\" and suite = \"bookworm\"".into(),
            )
        })?;
        if let SourceSpec::Rootfs(r) = source {
            match (&r.dir, &r.tar) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        "[source] type = \"rootfs\" takes exactly one of dir or tar".into(),
                    ))
                }
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            let key = format!("[[files]] #{} ({})", i + 1, f.path);
            match (&f.content, &f.source) {
                (Some(_), None) => {}
                (None, Some(src)) => {
                    if !src.is_file() {
                        return Err(invalid(format!(
                            "{key}: source {} is not a file; fix the path (relative to the recipe)",
                            src.display()
                        )));
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "{key}: give exactly one of content or source"
                    )))
                }
            }
        }
        for g in &self.remove.paths {
            if !g.starts_with('/') || g.split('/').any(|p| p == "..") {
                return Err(invalid(format!(
                    "[remove] paths: {g:?} must be absolute and without `..`"
                )));
            }
            glob::Pattern::new(g).map_err(|e| invalid(format!("[remove] paths: {g:?}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_str(text, "t.toml").unwrap_err().to_string()
    }

    const BASE: &str =
        "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = \"bookworm\"\n";

    #[test]
    fn builtin_default_parses() {
        let l = load(None, &[]).unwrap();
        assert_eq!(l.name(), "debian-bookworm");
        assert_eq!(l.source().kind(), "mmdebstrap");
    }

    #[test]
    fn docker_builtin_parses() {
        let l = load(Some("debian-slim-docker"), &[]).unwrap();
        assert_eq!(l.name(), "debian-slim-docker");
        match l.source() {
            SourceSpec::Docker(d) => {
                assert_eq!(d.image, "debian:bookworm-slim");
                assert_eq!(d.pull, Pull::Missing);
            }
            other => panic!("not a docker source: {}", other.kind()),
        }
        assert_eq!(
            load(Some("recipes/debian-slim-docker.toml"), &[])
                .unwrap()
                .recipe
                .packages
                .install
                .len(),
            3
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err(&format!("{BASE}colour = 1\n"));
        assert!(e.starts_with("t.toml:3:1: unknown field `colour`"), "{e}");
    }

    #[test]
    fn bad_path_names_charset_and_fix() {
        let e = err("[distro]\nname = \"x\"\npath = \"my distro\"\n");
        assert!(
            e.starts_with("t.toml:3:8: path \"my distro\" has ' '"),
            "{e}"
        );
        assert!(e.contains("try \"my-distro\""), "{e}");
    }

    #[test]
    fn unknown_source_type() {
        let e = err("[distro]\nname = \"x\"\n[source]\ntype = \"dockr\"\n");
        assert!(e.contains("unknown variant `dockr`"), "{e}");
        assert!(
            e.contains("`debootstrap`, `mmdebstrap`, `docker`, `image-archive`, `rootfs`"),
            "{e}"
        );
    }

    #[test]
    fn package_names_cannot_be_options() {
        let e = err(&format!(
            "{BASE}[packages]\ninstall = [\"--allow-unauthenticated\"]\n"
        ));
        assert!(e.contains("would be read as an option"), "{e}");
    }

    #[test]
    fn set_overrides_and_types() {
        let mut t: Table = toml::from_str(BASE).unwrap();
        apply_set(&mut t, "source.suite=trixie").unwrap();
        apply_set(&mut t, "nss.uids=[30001, 30002]").unwrap();
        let r = Recipe::deserialize(t).unwrap();
        let Some(SourceSpec::Debootstrap(b)) = r.source else {
            panic!()
        };
        assert_eq!(&*b.suite, "trixie");
        assert_eq!(r.nss.uids, vec![30001, 30002]);
    }

    #[test]
    fn extends_merges_and_appends() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("base.toml"),
            format!("{BASE}[[run]]\ncommand = \"a\"\n[[files]]\npath = \"/x\"\nsource = \"x\"\n"),
        )
        .unwrap();
        std::fs::write(d.path().join("x"), "x").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(
            d.path().join("sub/child.toml"),
            "extends = \"../base.toml\"\n[distro]\nname = \"y\"\n[[run]]\ncommand = \"b\"\n",
        )
        .unwrap();
        let l = load(Some(d.path().join("sub/child.toml").to_str().unwrap()), &[]).unwrap();
        assert_eq!(l.name(), "y");
        let cmds: Vec<_> = l.recipe.run.iter().map(|r| r.command.as_str()).collect();
        assert_eq!(cmds, ["a", "b"]);
        let src = l.recipe.files[0].source.as_ref().unwrap();
        assert_eq!(
            src.canonicalize().unwrap(),
            d.path().join("x").canonicalize().unwrap()
        );
    }

    #[test]
    fn every_shipped_recipe_loads_and_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut count = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let l = load(Some(p.to_str().unwrap()), &[])
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let stem = p.file_stem().unwrap().to_str().unwrap();
                let (_, text) = BUILTIN
                    .iter()
                    .find(|(n, _)| *n == stem)
                    .expect("recipe missing from BUILTIN");
                assert_eq!(*text, std::fs::read_to_string(&p).unwrap());
                assert!(
                    std::fs::read_to_string(&p).unwrap().starts_with("# "),
                    "{}: starts with a comment header saying what it gives",
                    p.display()
                );
                let builtin = load(Some(stem), &[]).unwrap();
                assert_eq!(builtin.name(), l.name());
                count += 1;
            }
        }
        assert_eq!(count, BUILTIN.len());
    }

    #[test]
    fn recipe_values_cannot_inject_shell_or_options() {
        let bad_suites = ["bookworm; rm -rf /", "$(reboot)", "--foo", "a b", "x\ny"];
        for suite in bad_suites {
            let e = err(&format!(
                "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = {suite:?}\n"
            ));
            assert!(
                e.starts_with("t.toml:") && e.contains(&format!("value {suite:?} ")),
                "{suite:?}: {e}"
            );
        }
        for pkg in ["$(reboot)", "`id`", "a;b", "a b", "-o=APT::X", "x\n"] {
            let e = err(&format!("{BASE}[packages]\ninstall = [{pkg:?}]\n"));
            assert!(e.contains("package "), "{pkg:?}: {e}");
        }
        for m in [
            "--option",
            "http://mirror/debian --allow-insecure",
            "http://mirror/debian\n--option",
            "http://mirror/$(reboot)",
            "http://mirror/`id`",
            "http://mirror/a;b",
            "http://mirror/'x'",
            "http:///debian",
            "ftp://mirror/debian",
        ] {
            let e = err(&format!("{BASE}mirror = {m:?}\n"));
            assert!(e.contains("mirror "), "{m:?}: {e}");
        }
        for m in [
            "http://deb.debian.org/debian",
            "https://[::1]:8080/debian",
            "file:///srv/mirror",
            "http://user@mirror/debian?x=1",
        ] {
            parse_str(&format!("{BASE}mirror = {m:?}\n"), "t.toml").unwrap();
        }
    }

    #[test]
    fn files_paths_cannot_escape_the_tree() {
        for p in ["/../../etc/x", "/etc/../../x", "etc/x", "/", "/etc/a\nb"] {
            let e = err(&format!("{BASE}[[files]]\npath = {p:?}\ncontent = \"x\"\n"));
            assert!(e.contains("path "), "{p:?}: {e}");
        }
    }

    #[test]
    fn files_sources_cannot_leave_the_recipe_directory() {
        let d = tempfile::tempdir().unwrap();
        let recipes = d.path().join("recipes");
        std::fs::create_dir_all(recipes.join("sub")).unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::fs::write(recipes.join("ok"), "ok").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), recipes.join("sneaky")).unwrap();
        let secret = d.path().join("secret").canonicalize().unwrap();
        let load_with = |source: &str| {
            let r = recipes.join("r.toml");
            std::fs::write(
                &r,
                format!("{BASE}[[files]]\npath = \"/etc/x\"\nsource = {source:?}\n"),
            )
            .unwrap();
            load(Some(r.to_str().unwrap()), &[])
        };
        load_with("ok").unwrap();
        for source in [
            "../secret",
            "sneaky",
            secret.to_str().unwrap(),
            "sub/../../secret",
        ] {
            let e = load_with(source).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "resolves to {}, outside the recipe's directory",
                    secret.display()
                )),
                "{source}: {e}"
            );
        }
        // With `extends`, each recipe's sources are checked against its own directory.
        std::fs::write(
            recipes.join("base.toml"),
            format!("{BASE}[[files]]\npath = \"/etc/x\"\nsource = \"ok\"\n"),
        )
        .unwrap();
        let child = recipes.join("sub/child.toml");
        std::fs::write(&child, "extends = \"../base.toml\"\n").unwrap();
        load(Some(child.to_str().unwrap()), &[]).unwrap();
        std::fs::write(
            &child,
            "extends = \"../base.toml\"\n[[files]]\npath = \"/etc/y\"\nsource = \"../ok\"\n",
        )
        .unwrap();
        let e = load(Some(child.to_str().unwrap()), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the recipe's directory"), "{e}");
        assert!(e.starts_with(&child.display().to_string()), "{e}");
    }

    #[test]
    fn not_found_lists_builtins() {
        let e = load(Some("no-such-recipe"), &[]).unwrap_err().to_string();
        assert!(
            e.contains("not found") && e.contains("debian-bookworm"),
            "{e}"
        );
    }
}
