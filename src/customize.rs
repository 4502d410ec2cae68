//! Customize stage: the recipe's `[packages]` (upgrade, install, remove), `[[files]]`,
//! `[[run]]` and `[remove]`, applied to the tree. Commands run in a [`ChrootSession`]
//! ([`crate::chroot`], shared with the bootstrap source's upgrade; re-exported here).

use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::progress::Reporter;
use crate::recipe::Recipe;
use crate::runner::Runner;
use crate::tree::Root;

use crate::chroot::{interrupted, run_package_commands, upgrade_in};
pub use crate::chroot::{ChrootSession, PackageManager, POLICY_RC_D, SECURITY_LIST};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{root}: no package manager found (looked for apt-get, apk, dnf); remove [packages] or install one in [[run]]")]
    NoPackageManager { root: String },
    #[error("[[files]] {path}: {msg}")]
    File { path: String, msg: String },
    #[error("[[run]] #{index} `{command}` failed: {source}")]
    Run {
        index: usize,
        command: String,
        #[source]
        source: crate::runner::Error,
    },
    #[error(transparent)]
    Chroot(#[from] crate::chroot::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoPackageManager { .. } | Error::File { .. } => 2,
            Error::Chroot(e) => e.exit_code(),
            Error::Tree(e) => e.exit_code(),
            _ => 1,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the recipe has anything that needs a chroot (so pure-copy builds skip it).
pub fn needs_chroot(recipe: &Recipe) -> bool {
    recipe.packages.upgrade
        || !recipe.packages.install.is_empty()
        || !recipe.packages.remove.is_empty()
        || !recipe.run.is_empty()
}

/// Whether the customize stage has anything to do at all.
pub fn has_work(recipe: &Recipe) -> bool {
    needs_chroot(recipe) || !recipe.files.is_empty() || !recipe.remove.paths.is_empty()
}

/// Apply packages, files, run commands and removals, in that order.
pub fn customize(
    root: &Root,
    recipe: &Recipe,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<()> {
    if needs_chroot(recipe) {
        let session = ChrootSession::enter(root)?;
        root.write_file(Path::new("usr/sbin/policy-rc.d"), POLICY_RC_D, 0o755)?;
        let install: Vec<&str> = recipe.packages.install.iter().map(|p| &**p).collect();
        let remove: Vec<&str> = recipe.packages.remove.iter().map(|p| &**p).collect();
        if recipe.packages.upgrade || !install.is_empty() || !remove.is_empty() {
            let pm = PackageManager::detect(root).ok_or_else(|| Error::NoPackageManager {
                root: root.path().display().to_string(),
            })?;
            if recipe.packages.upgrade {
                reporter.info(&format!("upgrading every package ({})", pm.name()));
                upgrade_in(&session, pm, runner, reporter)?;
            }
            run_package_commands(
                &session,
                &pm.commands(&install, &remove),
                None,
                runner,
                reporter,
            )?;
        }
        write_files(root, recipe)?;
        for (i, r) in recipe.run.iter().enumerate() {
            let cmd = session.command(&["/bin/sh", "-c", &r.command]);
            reporter.info(&format!("run: {}", r.command));
            runner.run(&cmd).map_err(|e| Error::Run {
                index: i + 1,
                command: r.command.clone(),
                source: e,
            })?;
            crate::interrupt::check_interrupted().map_err(|_| Error::Run {
                index: i + 1,
                command: r.command.clone(),
                source: interrupted(),
            })?;
        }
        drop(session);
    } else {
        write_files(root, recipe)?;
    }
    remove_globs(root, &recipe.remove.paths)?;
    Ok(())
}

fn write_files(root: &Root, recipe: &Recipe) -> Result<()> {
    for f in &recipe.files {
        let data = match (&f.content, &f.source) {
            (Some(c), _) => c.as_bytes().to_vec(),
            (None, Some(src)) => std::fs::read(src).map_err(|e| Error::File {
                path: f.path.to_string(),
                msg: format!("cannot read source {}: {e}", src.display()),
            })?,
            (None, None) => unreachable!("validated: content or source"),
        };
        let mode = f.mode.as_ref().map_or(0o644, |m| m.bits());
        root.write_file(Path::new(&*f.path), &data, mode)?;
    }
    Ok(())
}

/// Remove every path that matches one of the globs. Matching walks the tree without
/// following symlinks, so `/var/run/*` never reaches through a symlink to the host.
pub fn remove_globs(root: &Root, globs: &[String]) -> Result<()> {
    if globs.is_empty() {
        return Ok(());
    }
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let patterns: Vec<glob::Pattern> = globs
        .iter()
        .filter_map(|g| glob::Pattern::new(g).ok())
        .collect();
    let mut doomed: Vec<PathBuf> = Vec::new();
    for (rel, _) in root.walk()? {
        let abs = Path::new("/").join(&rel);
        if doomed.iter().any(|d| rel.starts_with(d)) {
            continue;
        }
        if patterns.iter().any(|p| p.matches_path_with(&abs, opts)) {
            doomed.push(rel);
        }
    }
    for d in doomed {
        if root.file_type(&d)?.is_some() {
            root.remove(&d)?;
        }
    }
    let _ = FileType::Directory;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_globs_matches_without_following_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/share/doc/a")).unwrap();
        std::fs::write(t.path().join("usr/share/doc/a/README"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("var")).unwrap();
        let root = Root::open(t.path()).unwrap();
        remove_globs(&root, &["/usr/share/doc/*".into(), "/var/*".into()]).unwrap();
        assert!(!t.path().join("usr/share/doc/a").exists());
        assert!(t.path().join("usr/share/doc").exists());
        assert!(outside.path().join("keep").exists());
    }
}
