//! ELF dependency resolution inside a tree, like `lddtree` but reading only: from each
//! object's `PT_INTERP` and `DT_NEEDED` (read by `elf`, cached by the view), every needed
//! library is searched the way glibc's loader does — `DT_RPATH` of the object and its
//! loaders (when they have no `DT_RUNPATH`), `DT_RUNPATH` of the object, the directories
//! of `/etc/ld.so.conf` (what `ldconfig` would put in the cache) and the default and
//! multiarch directories — every path resolved inside the tree. Also whether the
//! containers' uids can reach a file at all (`world_access`).

use std::collections::{HashMap, HashSet, VecDeque};

use goblin::elf::header::ET_EXEC;

use super::elf::{ElfInfo, Parsed};
use super::view::{join, parent, Kind, Tree};
use super::Error;

/// glibc's trusted directories on x86-64, multiarch first (Debian's ld.so.conf.d lists
/// them too, but a tree without that file still has them searched).
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// The directories `/etc/ld.so.conf` names, includes followed (globs matched against the
/// tree), in file order.
pub fn ld_so_conf_dirs(tree: &Tree) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut seen = HashSet::new();
    read_conf(tree, "/etc/ld.so.conf", &mut dirs, &mut seen, 0);
    dirs
}

fn read_conf(
    tree: &Tree,
    file: &str,
    dirs: &mut Vec<String>,
    seen: &mut HashSet<String>,
    depth: u32,
) {
    let Ok(real) = tree.resolve(file) else {
        return;
    };
    if depth > 8
        || !seen.insert(real.clone())
        || tree.get(&real).map(|e| e.kind) != Some(Kind::File)
    {
        return;
    }
    let Ok(text) = tree.read(&real) else {
        return;
    };
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("include") {
            if !rest.starts_with(char::is_whitespace) {
                continue;
            }
            for pat in rest.split_whitespace() {
                let pat = if pat.starts_with('/') {
                    pat.to_string()
                } else {
                    join(parent(file), pat)
                };
                for f in glob_in(tree, &pat) {
                    read_conf(tree, &f, dirs, seen, depth + 1);
                }
            }
        } else if line.starts_with("hwcap") {
            continue;
        } else {
            for d in line.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
                let d = d.trim_end_matches('/');
                if d.starts_with('/') && !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_string());
                }
            }
        }
    }
}

/// Files matching a glob whose wildcards are in the last component only (what ld.so.conf
/// includes use), sorted as glob(3) would.
fn glob_in(tree: &Tree, pat: &str) -> Vec<String> {
    let dir = parent(pat);
    let name = pat[dir.len().min(pat.len())..].trim_start_matches('/');
    let Ok(real_dir) = tree.resolve(dir) else {
        return Vec::new();
    };
    let Ok(p) = glob::Pattern::new(name) else {
        return Vec::new();
    };
    let mut out: Vec<String> = tree
        .children(&real_dir)
        .into_iter()
        .filter(|n| p.matches(n))
        .map(|n| join(dir, n))
        .collect();
    out.sort();
    out
}

/// One object on the loader's path, for `$ORIGIN` and `DT_RPATH` inheritance.
#[derive(Clone)]
struct Node {
    /// The path the loader opened it by (`$ORIGIN` is its directory).
    opened_as: String,
    info: std::rc::Rc<ElfInfo>,
    /// `subject -> libfoo.so.1 -> ...` as needed names.
    chain: Vec<String>,
    /// Indexes into `nodes` of the loaders, nearest first.
    loaders: Vec<usize>,
}

/// How a root object is used, which decides the checks on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Executed: must have its interpreter when dynamically linked.
    Program,
    /// dlopen()ed by a program (plugins, NSS modules).
    Library,
}

/// Resolves libraries in one tree; lookups are cached across subjects.
pub struct Resolver<'a> {
    tree: &'a Tree,
    conf_dirs: Vec<String>,
    lookups: HashMap<(String, String), Lookup>,
}

#[derive(Clone, Debug)]
enum Lookup {
    Found(String),
    /// Only objects the loader would skip: (path, why).
    Unusable(Vec<(String, String)>),
}

/// A problem with one subject, as one line.
pub type Problem = String;

fn expand(dir: &str, origin: &str) -> String {
    dir.replace("${ORIGIN}", origin)
        .replace("$ORIGIN", origin)
        .replace("${LIB}", "lib/x86_64-linux-gnu")
        .replace("$LIB", "lib/x86_64-linux-gnu")
        .replace("${PLATFORM}", "x86_64")
        .replace("$PLATFORM", "x86_64")
}

/// Whether other uids (the containers) can read `path` and traverse every directory above
/// it; `Some(why)` when they cannot. `exec` also asks for the execute bit.
pub fn world_access(tree: &Tree, path: &str, exec: bool) -> Option<String> {
    let mut dir = parent(path);
    while dir != "/" {
        if let Some(e) = tree.get(dir) {
            if e.mode & 0o001 == 0 {
                return Some(format!(
                    "directory {dir} has mode {:04o}: other users cannot traverse it",
                    e.mode
                ));
            }
        }
        dir = parent(dir);
    }
    let e = tree.get(path)?;
    let need = if exec { 0o005 } else { 0o004 };
    if e.mode & need != need {
        return Some(format!(
            "{path} has mode {:04o}: other users cannot {}",
            e.mode,
            if exec {
                "read and execute it"
            } else {
                "read it"
            }
        ));
    }
    None
}

impl<'a> Resolver<'a> {
    pub fn new(tree: &'a Tree) -> Self {
        Resolver {
            tree,
            conf_dirs: ld_so_conf_dirs(tree),
            lookups: HashMap::new(),
        }
    }

    /// Where glibc would find `name` with no RPATH/RUNPATH (ld.so.conf, then the defaults):
    /// how NSS modules are loaded. Falls back to the first unusable candidate.
    pub fn find_system_library(&mut self, name: &str) -> Result<Option<String>, Error> {
        let dirs: Vec<String> = self
            .conf_dirs
            .iter()
            .cloned()
            .chain(DEFAULT_DIRS.iter().map(|s| s.to_string()))
            .collect();
        let mut unusable = None;
        for d in dirs {
            match self.lookup(&d, name)? {
                Lookup::Found(p) => return Ok(Some(p)),
                Lookup::Unusable(v) => {
                    if unusable.is_none() {
                        unusable = v.into_iter().next().map(|(p, _)| p);
                    }
                }
            }
        }
        // A broken or foreign copy is still "installed": its own check says what is wrong.
        Ok(unusable)
    }

    /// `dir/name` if it is a loadable x86-64 object.
    fn lookup(&mut self, dir: &str, name: &str) -> Result<Lookup, Error> {
        let key = (dir.to_string(), name.to_string());
        if let Some(l) = self.lookups.get(&key) {
            return Ok(l.clone());
        }
        let candidate = join(dir, name);
        let l = match self.tree.resolve(&candidate) {
            Ok(real) if self.tree.get(&real).map(|e| e.kind) == Some(Kind::File) => {
                match &*self.tree.elf(&real)? {
                    Parsed::Elf(i) if i.is_x86_64() => Lookup::Found(candidate.clone()),
                    Parsed::Elf(i) => Lookup::Unusable(vec![(
                        candidate.clone(),
                        format!("is for {}", i.describe_arch()),
                    )]),
                    Parsed::NotElf => {
                        Lookup::Unusable(vec![(candidate.clone(), "is not an ELF file".into())])
                    }
                    Parsed::Bad(e) => Lookup::Unusable(vec![(
                        candidate.clone(),
                        format!("is a broken ELF file ({e})"),
                    )]),
                }
            }
            _ => Lookup::Unusable(Vec::new()),
        };
        self.lookups.insert(key, l.clone());
        Ok(l)
    }

    /// Every problem that would stop the loader from running (`Use::Program`) or loading
    /// (`Use::Library`) the object at `subject`, each naming the chain that leads to it.
    pub fn check(&mut self, subject: &str, usage: Use) -> Result<Vec<Problem>, Error> {
        let tree = self.tree;
        let mut problems = Vec::new();
        let real = match tree.resolve(subject) {
            Ok(r) => r,
            Err(e) => return Ok(vec![e.to_string()]),
        };
        if tree.get(&real).map(|e| e.kind) != Some(Kind::File) {
            return Ok(vec![format!("{real} is not a regular file")]);
        }
        let info = match &*tree.elf(&real)? {
            Parsed::Elf(i) => i.clone(),
            Parsed::NotElf => return Ok(vec!["not an ELF file".to_string()]),
            Parsed::Bad(e) => return Ok(vec![format!("broken ELF file: {e}")]),
        };
        if !info.is_x86_64() {
            return Ok(vec![format!(
                "an ELF for {}; the platform runs 64-bit x86-64",
                info.describe_arch()
            )]);
        }
        // A program's own permissions are its rule's business (root runs some, the
        // container's user others); a dlopen()ed object is always read by the user.
        if usage == Use::Library {
            if let Some(why) = world_access(tree, &real, false) {
                problems.push(why);
            }
        }
        if usage == Use::Program {
            match &info.interp {
                Some(interp) => match tree.resolve(interp) {
                    Ok(r) if tree.get(&r).map(|e| e.kind) == Some(Kind::File) => {
                        match &*tree.elf(&r)? {
                            Parsed::Elf(i) if i.is_x86_64() => {
                                if let Some(why) = world_access(tree, &r, true) {
                                    problems.push(format!("interpreter {interp}: {why}"));
                                }
                            }
                            Parsed::Elf(i) => problems
                                .push(format!("interpreter {interp} is for {}", i.describe_arch())),
                            _ => problems.push(format!("interpreter {interp} is not an ELF file")),
                        }
                    }
                    Ok(r) => problems.push(format!("interpreter {interp}: {r} is not a file")),
                    Err(e) => problems.push(format!("interpreter {interp}: {e}")),
                },
                None if !info.needed.is_empty() => {
                    problems.push("needs shared libraries but has no PT_INTERP".to_string())
                }
                None => {}
            }
        }
        // The main program's $ORIGIN is its real location (/proc/self/exe); a dlopen()ed
        // object's is the directory of the name it was opened by.
        let origin_path = if usage == Use::Program || info.e_type == ET_EXEC {
            real.clone()
        } else {
            subject.to_string()
        };
        let mut nodes = vec![Node {
            opened_as: origin_path,
            info: std::rc::Rc::new(info),
            chain: vec![subject.to_string()],
            loaders: Vec::new(),
        }];
        let mut loaded: HashSet<String> = HashSet::new();
        loaded.insert(real);
        let mut queue = VecDeque::from([0usize]);
        let mut reported = HashSet::new();
        while let Some(i) = queue.pop_front() {
            let node = nodes[i].clone();
            for name in &node.info.needed {
                match self.search(&nodes, i, name)? {
                    Ok(found) => {
                        let Ok(real) = tree.resolve(&found) else {
                            continue;
                        };
                        if !loaded.insert(real.clone()) {
                            continue;
                        }
                        let mut chain = node.chain.clone();
                        chain.push(name.clone());
                        if let Some(why) = world_access(tree, &real, false) {
                            problems.push(format!("{} ({found}): {why}", chain.join(" -> ")));
                        }
                        let Parsed::Elf(info) = &*tree.elf(&real)? else {
                            continue;
                        };
                        let mut loaders = vec![i];
                        loaders.extend(&node.loaders);
                        nodes.push(Node {
                            opened_as: found,
                            info: std::rc::Rc::new(info.clone()),
                            chain,
                            loaders,
                        });
                        queue.push_back(nodes.len() - 1);
                    }
                    Err(skipped) => {
                        if !reported.insert(name.clone()) {
                            continue;
                        }
                        let why = if skipped.is_empty() {
                            "not found".to_string()
                        } else {
                            let s: Vec<String> =
                                skipped.iter().map(|(p, w)| format!("{p} {w}")).collect();
                            format!("not found ({})", s.join("; "))
                        };
                        problems.push(format!("{} -> {name}: {why}", node.chain.join(" -> ")));
                    }
                }
            }
        }
        Ok(problems)
    }

    /// The search of glibc's `_dl_map_object` for `name` needed by `nodes[i]`.
    #[allow(clippy::type_complexity)]
    fn search(
        &mut self,
        nodes: &[Node],
        i: usize,
        name: &str,
    ) -> Result<Result<String, Vec<(String, String)>>, Error> {
        let node = &nodes[i];
        if name.contains('/') {
            let p = if name.starts_with('/') {
                name.to_string()
            } else {
                join("/", name)
            };
            let (d, n) = (parent(&p), p[parent(&p).len()..].trim_start_matches('/'));
            return Ok(match self.lookup(d, n)? {
                Lookup::Found(f) => Ok(f),
                Lookup::Unusable(v) => Err(v),
            });
        }
        let mut dirs: Vec<String> = Vec::new();
        if node.info.runpath.is_empty() {
            for &j in std::iter::once(&i).chain(&node.loaders) {
                let n = &nodes[j];
                if n.info.runpath.is_empty() {
                    let origin = parent(&n.opened_as);
                    dirs.extend(n.info.rpath.iter().map(|d| expand(d, origin)));
                }
            }
        }
        let origin = parent(&node.opened_as);
        dirs.extend(node.info.runpath.iter().map(|d| expand(d, origin)));
        dirs.extend(self.conf_dirs.iter().cloned());
        dirs.extend(DEFAULT_DIRS.iter().map(|s| s.to_string()));
        let mut skipped = Vec::new();
        let mut tried = HashSet::new();
        for d in dirs {
            // An empty RPATH element means the current directory: meaningless here.
            if !d.starts_with('/') || !tried.insert(d.clone()) {
                continue;
            }
            match self.lookup(&d, name)? {
                Lookup::Found(f) => return Ok(Ok(f)),
                Lookup::Unusable(v) => skipped.extend(v),
            }
        }
        Ok(Err(skipped))
    }
}
