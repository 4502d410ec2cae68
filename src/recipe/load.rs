//! Loading: find a recipe (a path, a name in `recipes/`, or a built-in), follow
//! `extends` (paths anchored to the file that names them, cycles refused), apply `--set`
//! overrides, then deserialize and validate. Errors name file, line, column and key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::types::{Loaded, Recipe};
use super::{Error, Result};

/// The recipes shipped in `recipes/`, built into the binary so a copied binary has them.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "debian-trixie",
        include_str!("../../recipes/debian-trixie.toml"),
    ),
    (
        "debian-bookworm",
        include_str!("../../recipes/debian-bookworm.toml"),
    ),
    (
        "debian-python-web",
        include_str!("../../recipes/debian-python-web.toml"),
    ),
    (
        "alpine-docker",
        include_str!("../../recipes/alpine-docker.toml"),
    ),
    (
        "debian-slim-docker",
        include_str!("../../recipes/debian-slim-docker.toml"),
    ),
    (
        "registry-debian",
        include_str!("../../recipes/registry-debian.toml"),
    ),
];

/// The recipe used when none is named.
pub const DEFAULT: &str = "debian-trixie";

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
pub(super) fn apply_set(table: &mut Table, arg: &str) -> Result<()> {
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
