//! The module layering of `src/` (ARCHITECTURE.md, "Invariants"): no module imports another
//! that imports it back, directly or around a ring; and the top-level modules sit in
//! layers ([`LAYERS`]: the floors, then the stages in pipeline order), none using a later
//! one.
//!
//! Granularity: the modules of one folder are checked among themselves, at every level.
//! At the top, `api`, `boot`, `push`, … (each with everything below it); inside a folder
//! such as `push/`, its files and sub-folders (`local`, `publish`, `rsync`, `ssh`), and so
//! on down. A module using its own ancestors (`super::Error`, `crate::push::Name` from
//! inside `push/`) or its own descendants is not an edge: a parent declares its children
//! and re-exports them, and children use what the parent defines. Everything else is: an
//! item of `push` used from `api` makes `api → push`, whether it came through a `use`, an
//! inline `crate::…` path, or a re-export (`crate::Error` is `error::Error`, so it counts
//! as `error`). Test modules count too: `cargo test` compiles them with the rest.
//!
//! The library (`lib.rs` and everything but `cli/`) and the binary (`main.rs`, `cli/`) are
//! two crates, checked apart; the library cannot name the binary at all, which is how
//! "the library never imports `cli/`" holds.
//!
//! This reads the source with a small lexer instead of running `cargo modules`, which
//! would need a slow `cargo install` in every CI run and a nightly-dependent analyzer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// Rust source as tokens with their line numbers; comments, strings, chars and lifetimes
/// dropped (a path in a doc comment or a message is not an import).
fn lex(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let skip_to = |i: usize, end: usize, line: &mut usize| {
        *line += c[i..end.min(c.len())]
            .iter()
            .filter(|&&x| x == '\n')
            .count();
        end
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied().unwrap_or('\0');
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == '*' {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = skip_to(i, j, &mut line);
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && next == '"') {
            let mut j = if ch == '"' { i + 1 } else { i + 2 };
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            i = skip_to(i, j + 1, &mut line);
        } else if (ch == 'r' || (ch == 'b' && next == 'r'))
            && raw_string_hashes(&c, if ch == 'r' { i + 1 } else { i + 2 }).is_some()
        {
            let start = if ch == 'r' { i + 1 } else { i + 2 };
            let hashes = raw_string_hashes(&c, start).unwrap();
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut j = start + hashes + 1;
            while j < c.len() && !c[j..].starts_with(&close) {
                j += 1;
            }
            i = skip_to(i, j + close.len(), &mut line);
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip either.
            if next == '\\' {
                // Past the backslash and the escaped character (which may be a quote).
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if ch == 'b' && word == "b" && c.get(i) == Some(&'\'') {
                continue; // b'x': the quote is lexed next
            }
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && next == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// `Some(n)` when `c[at..]` opens a raw string with `n` hashes (`#…#"`).
fn raw_string_hashes(c: &[char], at: usize) -> Option<usize> {
    let n = c[at.min(c.len())..]
        .iter()
        .take_while(|&&x| x == '#')
        .count();
    (c.get(at + n) == Some(&'"')).then_some(n)
}

/// A path a file names: its segments as written (`crate`, `super`, `self` or a name;
/// `*` for a glob), where, and inside how many inline `mod x { … }` blocks.
#[derive(Debug, Clone)]
struct PathRef {
    segs: Vec<String>,
    line: usize,
    inline_depth: usize,
    /// From a `pub use` (or `pub(crate) use`) at the file's top: a re-export.
    reexport: Option<String>,
}

/// Every `use` leaf and every inline `crate::…` / `super::…` / `self::…` path.
fn paths(toks: &[(Tok, usize)]) -> Vec<PathRef> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Brace depths at which an inline module was opened.
    let mut inline: Vec<usize> = Vec::new();
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" && ident(i + 1).is_some() => {
                if toks.get(i + 2).map(|t| &t.0) == Some(&Tok::Punct('{')) {
                    inline.push(depth + 1);
                }
                i += 2;
            }
            Tok::Ident(w) if w == "use" => {
                let public = is_pub_before(toks, i) && inline.is_empty();
                let mut leaves = Vec::new();
                let end = use_tree(toks, i + 1, &mut Vec::new(), &mut leaves);
                for (segs, alias, line) in leaves {
                    let name = alias.or_else(|| segs.last().cloned());
                    out.push(PathRef {
                        segs,
                        line,
                        inline_depth: inline.len(),
                        reexport: if public { name } else { None },
                    });
                }
                i = end;
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Sep) =>
            {
                let line = toks[i].1;
                let mut segs = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Tok::Sep) {
                    match ident(j + 1) {
                        Some(s) => segs.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                out.push(PathRef {
                    segs,
                    line,
                    inline_depth: inline.len(),
                    reexport: None,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// `pub use` / `pub(crate) use` / `pub(super) use`.
fn is_pub_before(toks: &[(Tok, usize)], use_at: usize) -> bool {
    let word = |i: usize| matches!(&toks[i].0, Tok::Ident(s) if s == "pub");
    match use_at {
        0 => false,
        n if word(n - 1) => true,
        n if n >= 4 && toks[n - 1].0 == Tok::Punct(')') => (1..=4)
            .filter(|k| n > *k)
            .any(|k| toks[n - k - 1].0 == Tok::Punct('(') && n > k + 1 && word(n - k - 2)),
        _ => false,
    }
}

/// Parse one use tree starting at `i` under `prefix`; leaves go to `out` as (segments,
/// alias, line). Returns the index after the tree (after `;` at the top).
fn use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>, usize)>,
) -> usize {
    let base = prefix.len();
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Sep) => i += 1,
            Some(Tok::Ident(s)) => {
                prefix.push(s.clone());
                i += 1;
                let continues = toks.get(i).map(|t| &t.0) == Some(&Tok::Sep);
                if !continues {
                    let mut alias = None;
                    if matches!(toks.get(i).map(|t| &t.0), Some(Tok::Ident(a)) if a == "as") {
                        if let Some((Tok::Ident(a), _)) = toks.get(i + 1) {
                            alias = Some(a.clone());
                        }
                        i += 2;
                    }
                    let mut leaf = prefix.clone();
                    // `use a::{self}` names `a` itself.
                    if leaf.len() > 1 && leaf.last().is_some_and(|l| l == "self") {
                        let own = leaf.pop();
                        alias = alias.or(own.and(leaf.last().cloned()));
                    }
                    out.push((leaf, alias, toks[i.min(toks.len()) - 1].1));
                    prefix.truncate(base);
                }
            }
            Some(Tok::Punct('*')) => {
                prefix.push("*".into());
                out.push((prefix.clone(), None, toks[i].1));
                prefix.truncate(base);
                i += 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    let mut inner = prefix.clone();
                    i = use_tree(toks, i, &mut inner, out);
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Punct(',')) => i += 1,
                        _ => break,
                    }
                    if toks.get(i).map(|t| &t.0) == Some(&Tok::Punct('}')) {
                        break;
                    }
                }
                i += 1; // `}`
                prefix.truncate(base);
            }
            // `,`, `}` end a nested tree; `;` the whole statement.
            Some(Tok::Punct(';')) => return i + 1,
            _ => return i,
        }
    }
}

/// One crate's files: module path (`["push", "publish"]`) → (file name, source).
type Files = BTreeMap<Vec<String>, (String, String)>;

/// The module path of a file under `src/`: `lib.rs` → `[]`, `push/mod.rs` → `["push"]`,
/// `push/publish/target.rs` → `["push", "publish", "target"]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs: Vec<String> = rel.split('/').map(String::from).collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// One edge between two sibling modules, with the first place that makes it.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

/// The sibling edges of one crate, keyed by the folder (module path) they are in.
fn edges(files: &Files) -> BTreeMap<Vec<String>, Vec<Edge>> {
    let refs: BTreeMap<&Vec<String>, Vec<PathRef>> = files
        .iter()
        .map(|(m, (_, src))| (m, paths(&lex(src))))
        .collect();
    // What each module re-exports: name → absolute path.
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (m, rs) in &refs {
        for r in rs {
            if let (Some(name), Some(abs)) = (&r.reexport, absolute(files, m, r)) {
                reexports
                    .entry((*m).clone())
                    .or_default()
                    .insert(name.clone(), abs);
            }
        }
    }
    let mut out: BTreeMap<Vec<String>, Vec<Edge>> = BTreeMap::new();
    for (m, rs) in &refs {
        for r in rs {
            let Some(abs) = absolute(files, m, r) else {
                continue;
            };
            let target = resolve(files, &reexports, &abs, 0);
            let common = m.iter().zip(&target).take_while(|(a, b)| a == b).count();
            // Ancestors and descendants are not edges (see the module doc).
            if common == m.len() || common == target.len() {
                continue;
            }
            let folder = m[..common].to_vec();
            let (from, to) = (m[common].clone(), target[common].clone());
            let list = out.entry(folder).or_default();
            if !list.iter().any(|e| e.from == from && e.to == to) {
                list.push(Edge {
                    from,
                    to,
                    at: format!("src/{}:{} uses {}", files[*m].0, r.line, r.segs.join("::")),
                });
            }
        }
    }
    out
}

/// The path `r` names, from the crate root; `None` for other crates and local names.
fn absolute(files: &Files, module: &[String], r: &PathRef) -> Option<Vec<String>> {
    let mut cur = module.to_vec();
    let mut inline = r.inline_depth;
    let mut segs = r.segs.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            cur.clear();
            segs.next();
        }
        Some("self") => {
            segs.next();
        }
        Some("super") => {
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                // Inside an inline `mod tests { … }`, `super` is the file's own module.
                if inline > 0 {
                    inline -= 1;
                } else {
                    cur.pop()?;
                }
            }
        }
        // A child module named from its parent (`use publish::X` in `push/mod.rs`).
        Some(first) if inline == 0 && files.contains_key(&child(&cur, first)) => {}
        _ => return None,
    }
    cur.extend(segs.cloned());
    Some(cur)
}

fn child(m: &[String], name: &str) -> Vec<String> {
    let mut c = m.to_vec();
    c.push(name.to_string());
    c
}

/// The deepest module an absolute path lands in, following re-exports
/// (`crate::Error` → `error`).
fn resolve(
    files: &Files,
    reexports: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    abs: &[String],
    hops: usize,
) -> Vec<String> {
    let mut cur: Vec<String> = Vec::new();
    for seg in abs {
        let next = child(&cur, seg);
        if files.contains_key(&next) {
            cur = next;
            continue;
        }
        if let Some(target) = reexports.get(&cur).and_then(|r| r.get(seg)) {
            if hops < 16 && target.as_slice() != abs {
                return resolve(files, reexports, target, hops + 1);
            }
        }
        break;
    }
    cur
}

/// Every import ring among sibling modules, as `folder: a → b → a (evidence)`.
fn cycles(files: &Files) -> Vec<String> {
    let mut found = Vec::new();
    for (folder, list) in edges(files) {
        let nodes: BTreeSet<&str> = list
            .iter()
            .flat_map(|e| [e.from.as_str(), e.to.as_str()])
            .collect();
        let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for start in nodes {
            let Some(ring) = shortest_ring(&list, start) else {
                continue;
            };
            let members: BTreeSet<String> = ring.iter().map(|e| e.from.clone()).collect();
            if !reported.insert(members) {
                continue;
            }
            let place = if folder.is_empty() {
                "src/".to_string()
            } else {
                format!("src/{}/", folder.join("/"))
            };
            let names: Vec<&str> = ring
                .iter()
                .map(|e| e.from.as_str())
                .chain(std::iter::once(start))
                .collect();
            let why: Vec<&str> = ring.iter().map(|e| e.at.as_str()).collect();
            found.push(format!(
                "{place}: {} ({})",
                names.join(" -> "),
                why.join("; ")
            ));
        }
    }
    found
}

/// The shortest chain of edges from `start` back to `start` (breadth first).
fn shortest_ring<'a>(edges: &'a [Edge], start: &str) -> Option<Vec<&'a Edge>> {
    let mut prev: BTreeMap<&str, &Edge> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for e in edges.iter().filter(|e| e.from == n) {
            if e.to == start {
                let mut ring = vec![e];
                let mut at = n;
                while at != start {
                    let p = prev[at];
                    ring.push(p);
                    at = p.from.as_str();
                }
                ring.reverse();
                return Some(ring);
            }
            if e.to != start && !prev.contains_key(e.to.as_str()) {
                prev.insert(e.to.as_str(), e);
                queue.push_back(e.to.as_str());
            }
        }
    }
    None
}

/// Read `src/`, split into the library's files and the binary's.
fn read_src(src: &Path) -> (Files, Files) {
    let (mut lib, mut bin) = (Files::new(), Files::new());
    for e in walkdir(src) {
        let rel = e.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&e).unwrap();
        let m = module_path(&rel);
        if rel == "main.rs" || rel.starts_with("cli/") {
            bin.insert(m, (rel, text));
        } else {
            lib.insert(m, (rel, text));
        }
    }
    (lib, bin)
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (lib, bin) = read_src(&src);
    assert!(lib.contains_key(&vec!["push".to_string()]), "read src/");
    let mut rings = cycles(&lib);
    rings.extend(cycles(&bin));
    assert!(
        rings.is_empty(),
        "module import cycles (ARCHITECTURE.md, \"Invariants\"): move the shared item into a \
         lower module that both use:\n{}",
        rings.join("\n")
    );
}

fn files(list: &[(&str, &str)]) -> Files {
    list.iter()
        .map(|(p, s)| (module_path(p), (p.to_string(), s.to_string())))
        .collect()
}

#[test]
fn the_check_finds_rings_through_reexports_and_inline_paths() {
    // The knot this check was written for: a stage uses the crate-wide error (re-exported
    // at the root), which names every stage.
    let knot = files(&[
        (
            "lib.rs",
            "pub mod error; pub mod pack; pub use error::{Error, Result};",
        ),
        ("error.rs", "pub enum Error { Pack(crate::pack::Error) }"),
        (
            "pack.rs",
            "fn f() -> crate::Result<()> { Ok(()) } // crate::nothing",
        ),
    ]);
    let rings = cycles(&knot);
    assert_eq!(rings.len(), 1, "{rings:?}");
    assert!(
        rings[0].starts_with("src/: error -> pack -> error"),
        "{rings:?}"
    );
    assert!(
        rings[0].contains("src/pack.rs:1 uses crate::Result"),
        "{rings:?}"
    );

    // Around a ring of three, inside a folder, through grouped uses.
    let ring = files(&[
        ("lib.rs", "pub mod push;"),
        ("push/mod.rs", "mod a; mod b; mod c; pub struct Name;"),
        ("push/a.rs", "use super::{b::{B, Bb as X}, Name};"),
        ("push/b.rs", "use crate::push::c::*;"),
        (
            "push/c.rs",
            "fn f() {\n let s = \"super::b::x\"; let c = ['\"', '\\'', '\\\\'];\n crate::push::a::go(); }",
        ),
    ]);
    let rings = cycles(&ring);
    assert_eq!(rings.len(), 1, "{rings:?}");
    assert!(
        rings[0].starts_with("src/push/: a -> b -> c -> a"),
        "{rings:?}"
    );
    assert!(rings[0].contains("src/push/c.rs:3"), "{rings:?}");
}

#[test]
fn parents_children_and_test_modules_are_not_rings() {
    let fine = files(&[
        (
            "lib.rs",
            "pub mod interrupt; pub mod push; pub use push::Error;",
        ),
        ("interrupt.rs", "pub struct Interrupted;"),
        (
            "push/mod.rs",
            "pub mod publish; pub use publish::{publish, Registry}; pub enum Error {}",
        ),
        (
            "push/publish/mod.rs",
            "mod target; use target::go; use super::Error; \
             #[cfg(test)] mod tests { use super::*; use super::target::go; }",
        ),
        (
            "push/publish/target.rs",
            "use crate::push::Error; use crate::interrupt::Interrupted; \
             pub(super) fn go() { super::super::Error; }",
        ),
    ]);
    assert_eq!(cycles(&fine), Vec::<String>::new());
    let e = edges(&fine);
    let pairs: Vec<(Vec<String>, &str, &str)> = e
        .iter()
        .flat_map(|(f, l)| {
            l.iter()
                .map(|x| (f.clone(), x.from.as_str(), x.to.as_str()))
        })
        .collect();
    assert_eq!(pairs, [(vec![], "push", "interrupt")], "{e:?}");
}

/// The library's top-level modules in layers, lowest first (ARCHITECTURE.md, "Invariants"):
/// the floors, then the pipeline's stages in their order
/// (recipe → source → customize → finish → check → sbom → pack → push), each with the
/// modules shared at its height. A module may use its own layer and those before it;
/// a use of a later layer is a stage looking ahead.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "floor",
        &[
            "interrupt",
            "build_inputs",
            "progress",
            "runner",
            "os_release",
            "tree",
            "api",
        ],
    ),
    ("recipe", &["recipe"]),
    // Below the source stage and above the recipe: apt sources of a recipe's release,
    // the mirror client that verifies them, the chroot and its package managers, the slim rules.
    (
        "recipe's floor",
        &["apt_sources", "mirror", "chroot", "slim"],
    ),
    ("source", &["source"]),
    ("customize", &["customize"]),
    ("finish", &["finish"]),
    ("check", &["check"]),
    // The installed-package reader: a tree or a tarball through check's read-only view;
    // the support windows, judging what it read.
    ("check's readers", &["inventory", "lifecycle"]),
    ("sbom", &["sbom"]),
    ("pack", &["pack"]),
    ("push", &["push"]),
];

/// Above every stage, combining them; no layer may use them.
const ABOVE: &[&str] = &[
    "boot", "cache", "outdated", "vex", "audit", "pipeline", "error",
];

/// Every use of a later layer (or of a module above the stages) from a layered module, as
/// `from (layer) uses to (layer): evidence`; every top-level module not placed.
fn layering(files: &Files, layers: &[(&str, &[&str])], above: &[&str]) -> Vec<String> {
    let rank = |m: &str| {
        layers
            .iter()
            .position(|(_, ms)| ms.contains(&m))
            .map(|i| (i, layers[i].0))
    };
    let mut found = Vec::new();
    for m in files.keys().filter(|k| k.len() == 1) {
        if rank(&m[0]).is_none() && !above.contains(&m[0].as_str()) {
            found.push(format!(
                "src/{}: not placed in LAYERS or ABOVE (tests/integration/architecture.rs)",
                files[m].0
            ));
        }
    }
    let edges = edges(files);
    for e in edges.get(&Vec::new()).into_iter().flatten() {
        let Some((from, from_layer)) = rank(&e.from) else {
            continue;
        };
        let later = match rank(&e.to) {
            Some((to, to_layer)) if to > from => Some(to_layer),
            None if above.contains(&e.to.as_str()) => Some("above the stages"),
            _ => None,
        };
        if let Some(to_layer) = later {
            found.push(format!(
                "{} ({from_layer}) uses {} ({to_layer}): {}",
                e.from, e.to, e.at
            ));
        }
    }
    found
}

#[test]
fn stages_use_only_earlier_stages_and_the_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (lib, _) = read_src(&src);
    let wrong = layering(&lib, LAYERS, ABOVE);
    assert!(
        wrong.is_empty(),
        "a module uses a later stage (ARCHITECTURE.md, \"Invariants\"): move what both need \
         into a floor below them, or place a new module in LAYERS:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layering_check_finds_a_look_ahead_and_an_unplaced_module() {
    let ahead = files(&[
        (
            "lib.rs",
            "pub mod source; pub mod pack; pub mod error; pub mod extra; pub use error::Error;",
        ),
        (
            "source.rs",
            "use crate::pack::HashingReader; fn f() -> crate::Error {}",
        ),
        (
            "pack.rs",
            "pub struct HashingReader; use crate::source::Info;",
        ),
        ("error.rs", "pub enum Error {}"),
        ("extra.rs", ""),
    ]);
    let layers: &[(&str, &[&str])] = &[("source", &["source"]), ("pack", &["pack"])];
    let found = layering(&ahead, layers, &["error"]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("src/extra.rs: not placed"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f
            == "source (source) uses pack (pack): src/source.rs:1 uses crate::pack::HashingReader"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("source (source) uses error (above the stages)")),
        "{found:?}"
    );
}

/// `toks` without `#[cfg(test)]` items (a test module may spawn a `gzip` or print).
fn outside_tests(toks: &[(Tok, usize)]) -> Vec<&Tok> {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let at_cfg = toks[i..].len() >= cfg_test.len()
            && toks[i..i + cfg_test.len()]
                .iter()
                .map(|t| &t.0)
                .eq(cfg_test.iter());
        if !at_cfg {
            out.push(&toks[i].0);
            i += 1;
            continue;
        }
        // Skip the item: to its `;`, or through its braces.
        i += cfg_test.len();
        let mut depth = 0;
        while i < toks.len() {
            match toks[i].0 {
                Tok::Punct(';') if depth == 0 => break,
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    out
}

/// Where each seam may be crossed (ARCHITECTURE.md, "Invariants"): (what, the files that
/// may, whether a token matches). Test code is left out.
type Seam = (
    &'static str,
    &'static [&'static str],
    fn(&[&Tok], usize) -> bool,
);

const SEAMS: &[Seam] = &[
    (
        "printing or exiting (the library says things through progress::Reporter)",
        &["progress.rs"],
        |t, i| {
            matches!(t[i], Tok::Ident(m) if ["print", "println", "eprint", "eprintln", "dbg"].contains(&m.as_str()))
                && t.get(i + 1) == Some(&&Tok::Punct('!'))
                || (t[i] == &Tok::Ident("process".into())
                    && t.get(i + 1) == Some(&&Tok::Sep)
                    && t.get(i + 2) == Some(&&Tok::Ident("exit".into())))
        },
    ),
    (
        "running a program (std::process::Command: through runner.rs)",
        &["runner.rs", "boot/inside.rs"],
        |t, i| t[i] == &Tok::Ident("Command".into()) && names_std_process(t, i),
    ),
    (
        "HTTP (ureq: the API, mirror and registry clients)",
        &[
            "api/client.rs",
            "mirror/client.rs",
            "source/registry/client.rs",
        ],
        |t, i| t[i] == &Tok::Ident("ureq".into()),
    ),
    (
        "the Docker engine (bollard)",
        &["source/docker.rs"],
        |t, i| t[i] == &Tok::Ident("bollard".into()),
    ),
    (
        "libc (rustix covers the rest: clone, signal masks, the fork-time calls only)",
        &["runner.rs", "boot/mod.rs", "boot/inside.rs"],
        |t, i| t[i] == &Tok::Ident("libc".into()) && t.get(i + 1) == Some(&&Tok::Sep),
    ),
];

/// Whether the name at `i` is `process::NAME` or in a `process::{…}` group.
fn names_std_process(t: &[&Tok], i: usize) -> bool {
    let process =
        |j: usize| j >= 2 && t[j - 1] == &Tok::Sep && t[j - 2] == &Tok::Ident("process".into());
    if process(i) {
        return true;
    }
    let mut j = i;
    while j > 0 {
        j -= 1;
        match t[j] {
            Tok::Punct('{') => return process(j),
            Tok::Punct('}' | ';' | '(' | ')') => return false,
            _ => {}
        }
    }
    false
}

#[test]
fn the_library_crosses_each_seam_in_its_one_place() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (lib, _) = read_src(&src);
    let mut wrong = Vec::new();
    for (file, text) in lib.values() {
        if file.ends_with("tests.rs") {
            continue;
        }
        let toks = lex(text);
        let toks = outside_tests(&toks);
        for (what, allowed, hit) in SEAMS {
            if !allowed.contains(&file.as_str()) && (0..toks.len()).any(|i| hit(&toks, i)) {
                wrong.push(format!("src/{file}: {what}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check leaves out test modules, and nothing else.
    let hits = |src: &str| -> Vec<usize> {
        let toks = lex(src);
        let toks = outside_tests(&toks);
        (0..SEAMS.len())
            .filter(|&k| (0..toks.len()).any(|i| (SEAMS[k].2)(&toks, i)))
            .collect()
    };
    assert_eq!(
        hits("use std::process::{Stdio, Command};\nfn f() { println!(\"x\"); libc::_exit(0); }"),
        [0, 1, 4]
    );
    assert_eq!(
        hits("fn f() -> Error { Error::Command {} }\n#[cfg(test)]\nmod tests { fn g() { std::process::Command::new(\"gzip\"); println!(); } }"),
        Vec::<usize>::new()
    );
}
