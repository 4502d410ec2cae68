//! The build pipeline: recipe → source → customize → finish → check → sbom → pack. Each stage is
//! its own module; this one only sequences them, resolves the build's inputs once and
//! hands them down ([`Inputs`]), owns the build directory (removed on every exit path),
//! writes the outputs atomically into `--out` and has its own [`Error`].

mod error;
mod inputs;
mod source;

pub use error::{Error, Result};
pub use inputs::{host_arch, Inputs};

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::finish::{FinishReport, PROVENANCE};
use crate::pack::{Format, PackOptions, Packed, Staged};
use crate::progress::Reporter;
use crate::recipe::Loaded;
use crate::runner::Runner;
use crate::source::{SourceCtx, SourceInfo};
use crate::tree::{BuildDir, Root};

/// Where and how `build` writes.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out: PathBuf,
    pub format: Format,
    /// Parent of the temporary build directory (default: the system temp dir).
    pub work_dir: Option<PathBuf>,
    /// Keep the build directory after the build (debugging).
    pub keep_build: bool,
    /// Limit on what a source archive may expand to (0: `tree::DEFAULT_MAX_BYTES`).
    pub max_unpack_bytes: u64,
    /// gzip level (1-9).
    pub level: u32,
    /// The user's `SOURCE_DATE_EPOCH` (the binary reads the environment; the library
    /// never does). See [`Inputs`].
    pub source_date_epoch: Option<u64>,
    /// Check rules accepted knowingly, on top of the recipe's `[check] allow`.
    pub allow: Vec<String>,
    /// Credentials for a registry source, from the command line (CI).
    pub registry_login: Option<crate::source::registry::Credentials>,
    /// The build cache's root ([`crate::cache`]); `None` builds without it (`--no-cache`).
    pub cache: Option<PathBuf>,
    /// Where the release tables and package support lists are read.
    pub support: crate::lifecycle::Sources,
    /// The day the release's support is judged on (`YYYY-MM-DD`).
    pub today: String,
}

/// `/etc/build-distro.json`: how this distro was made.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub tool: String,
    pub version: String,
    pub recipe: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    pub name: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub source: SourceInfo,
    pub content_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_rules: Vec<String>,
}

/// What `build` produced; also written as `<out>/<path>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub path: String,
    pub recipe: String,
    pub format: Format,
    pub output: PathBuf,
    pub manifest: PathBuf,
    pub report: PathBuf,
    /// `NAME.spdx.json` and `NAME.cdx.json`.
    pub sboms: Vec<PathBuf>,
    pub content_id: String,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Size of the archive on disk (0 for `dir`).
    pub archive_bytes: u64,
    pub source: SourceInfo,
    pub finish: FinishReport,
    pub check: crate::check::Summary,
    /// The release's support window and the packages with limited or ended support;
    /// `None` for a tree without a package database.
    pub support: Option<crate::lifecycle::Support>,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
}

/// A release past its regular support, and packages Debian no longer fully supports,
/// are warnings: the build is what was asked for, but its user should know.
fn warn_support(s: &crate::lifecycle::Support, reporter: &Reporter) {
    use crate::lifecycle::State;
    match s.release.state {
        State::Supported => reporter.info(&format!("support: {}", s.release.message)),
        _ => reporter.warn(&format!("support: {}", s.release.message)),
    }
    let n = s.packages.packages.len();
    if n > 0 {
        let names: Vec<&str> = s
            .packages
            .packages
            .iter()
            .map(|p| p.package.as_str())
            .collect();
        reporter.warn(&format!(
            "support: {n} installed package(s) with limited or ended security support: {} (build-distro outdated lists why)",
            names.join(", ")
        ));
    }
}

/// Run the pipeline up to pack.
pub fn build(
    loaded: &Loaded,
    opts: &BuildOptions,
    runner: &dyn Runner,
    reporter: &Reporter,
) -> Result<BuildReport> {
    let inputs = Inputs::new(opts.source_date_epoch);
    let allow = allowed_rules(loaded, opts);
    crate::check::validate_allow(&allow)?;
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::out_dir(out, e))?;
    let work = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut build_dir = BuildDir::new(&work)?;
    if opts.keep_build {
        build_dir.keep();
        reporter.info(&format!(
            "keeping the build directory {}",
            build_dir.path().display()
        ));
    }
    let tree = build_dir.path().join("rootfs");
    std::fs::create_dir(&tree).map_err(|e| Error::work_dir(&tree, e))?;

    let stage = reporter.stage("source");
    // A source that only finish changes may be read in place below an overlay (its guard
    // is dropped before `build_dir`, so the mount is gone before the directory is removed).
    let read_only = opts.format != Format::Dir && !crate::customize::has_work(&loaded.recipe);
    let ctx = SourceCtx {
        runner,
        reporter,
        max_unpack_bytes: opts.max_unpack_bytes,
        in_place: read_only.then(|| build_dir.path()),
        registry_login: opts.registry_login.as_ref(),
        epoch: inputs.epoch,
        slim: loaded.recipe.slim(),
    };
    // A cache that cannot be opened (a read-only home) is a warning: the build goes on.
    // It stays open (its shared lock held) until pack has reused and stored its pieces.
    let cache = opts
        .cache
        .as_deref()
        .and_then(|root| match crate::cache::Cache::open(root) {
            Ok(c) => Some(c),
            Err(e) => {
                reporter.warn(&format!("{e}; building without the cache"));
                None
            }
        });
    let (source, in_place) = source::fetch_source(
        loaded.source(),
        &tree,
        &ctx,
        &inputs,
        cache.as_ref(),
        build_dir.path(),
        opts.format != Format::Dir,
    )?;
    stage.done(&format!("{} {}", source.kind, source.reference));
    crate::interrupt::check_interrupted()?;
    let root = Root::open(&tree)?;

    // Before customize, so its package installs already follow the installed rules. A
    // bootstrap installed slim (its tree changes nothing here); any other source is
    // slimmed after the fact.
    if let Some(slim) = loaded.recipe.slim() {
        let stage = reporter.stage("slim");
        let done = crate::slim::apply(&root, slim)?;
        stage.done(&format!(
            "{} entries removed ({:.1} MiB)",
            done.removed,
            done.bytes as f64 / (1024.0 * 1024.0)
        ));
        crate::interrupt::check_interrupted()?;
    }

    if crate::customize::has_work(&loaded.recipe) {
        let stage = reporter.stage("customize");
        crate::customize::customize(&root, &loaded.recipe, runner, reporter)?;
        stage.done("done");
        crate::interrupt::check_interrupted()?;
    }

    let stage = reporter.stage("finish");
    let finish = crate::finish::finish(&root, loaded, reporter)?;
    stage.done(&format!(
        "uWSGI {} with {} plugins, nss {}",
        finish.uwsgi_binary,
        finish.plugins.len(),
        finish.nss
    ));
    crate::interrupt::check_interrupted()?;

    let stage = reporter.stage("check");
    // One index of the finished tree serves check and the SBOMs.
    let view = crate::check::Tree::open(&tree)?;
    let check = run_check(&view, &tree, loaded, &allow, reporter)?;
    stage.done(&format!(
        "{} errors, {} warnings, {} allowed",
        check.errors, check.warnings, check.allowed
    ));
    crate::interrupt::check_interrupted()?;

    // An image's creation time bounds an archive's mtimes, so two builds of one image give
    // one archive (a directory output keeps the times it has on disk).
    let clamp = match opts.format {
        Format::TarGz | Format::Tar => inputs.epoch.resolve(source.created),
        Format::Dir => inputs.epoch.user(),
    };
    let pack = PackOptions {
        clamp_mtime: clamp,
        level: opts.level,
    };

    // The SBOMs describe the tree as it is packed, with the archive's time bound.
    let stage = reporter.stage("sbom");
    let sbom_opts = crate::sbom::Options {
        name: Some(loaded.name().to_string()),
        content_id: None,
        clamp,
        allow_no_packages: true,
    };
    let mut sbom = crate::sbom::collect(&view, &tree.display().to_string(), &sbom_opts)?;
    // Whether what was just built is still supported (the SBOM has warned of a tree
    // without a package database, which has no release to judge).
    let support = match crate::inventory::read_tree(&view, &tree.display().to_string()) {
        Ok(inv) => Some(crate::lifecycle::assess(&inv, &opts.support, &opts.today)?),
        Err(_) => None,
    };
    drop(view);
    if let Some(s) = &support {
        warn_support(s, reporter);
    }
    if let Some(note) = &sbom.note {
        reporter.warn(&format!("the SBOMs list no packages: {note}"));
    }
    stage.done(&format!(
        "{} packages, {} files added by build-distro",
        sbom.components.len(),
        sbom.files.len()
    ));
    crate::interrupt::check_interrupted()?;

    let stage = reporter.stage("pack");
    let name = loaded.path().to_string();
    let output = out.join(format!("{name}{}", opts.format.extension()));
    let provenance = |content_id: &str| -> Vec<u8> {
        let p = Provenance {
            tool: "build-distro".into(),
            version: inputs.tool_version.into(),
            recipe: loaded.origin.clone(),
            sets: loaded.sets.clone(),
            name: loaded.name().to_string(),
            path: name.clone(),
            note: loaded.recipe.distro.note.clone(),
            source: source.clone(),
            content_id: content_id.to_string(),
            allowed_rules: allow.clone(),
        };
        let mut v = serde_json::to_vec_pretty(&p).expect("serializable");
        v.push(b'\n');
        v
    };
    let packed: Packed = match opts.format {
        Format::TarGz | Format::Tar => {
            // Compressed pieces of earlier builds are reused (see `pack::gzip`).
            let blocks = cache.as_ref().map(|c| c.blocks());
            let store = blocks.as_ref().map(|b| b as &dyn crate::pack::BlockStore);
            let packed = crate::pack::pack_to_file_with(
                &tree,
                &output,
                opts.format,
                &pack,
                store,
                provenance,
            )?;
            if let Some(b) = &blocks {
                reporter.debug(&format!(
                    "pack: {} compressed pieces from the build cache",
                    b.reused()
                ));
                for t in b.trouble() {
                    reporter.warn(&t);
                }
            }
            packed
        }
        Format::Dir => {
            let mut prov = Vec::new();
            let (packed, _) = crate::pack::write_tar(&tree, std::io::sink(), &pack, |id| {
                prov = provenance(id);
                prov.clone()
            })?;
            root.write_file(Path::new(PROVENANCE), &prov, 0o644)?;
            replace_dir(&tree, &output, runner)?;
            packed
        }
    };
    let archive_bytes = if opts.format == Format::Dir {
        0
    } else {
        std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0)
    };
    stage.done(&format!(
        "{} entries, content {}",
        packed.entries, packed.content_id
    ));

    // Written once the archive's content id is known; read before packing so that a
    // distro the inventory cannot read stops the build before any output exists.
    sbom.content_id = packed.content_id.clone();
    let mut sboms = Vec::new();
    for format in crate::sbom::Format::ALL {
        let dest = out.join(format!("{name}{}", format.extension()));
        write_atomic(&dest, &sbom.render(format))?;
        sboms.push(dest);
    }

    let manifest = out.join(format!("{name}.manifest"));
    let report_path = out.join(format!("{name}.json"));
    let report = BuildReport {
        name: loaded.name().to_string(),
        path: name.clone(),
        recipe: loaded.origin.clone(),
        format: opts.format,
        output,
        manifest: manifest.clone(),
        report: report_path.clone(),
        sboms,
        content_id: packed.content_id.clone(),
        entries: packed.entries,
        files: packed.files,
        bytes: packed.bytes,
        archive_bytes,
        source,
        finish,
        check,
        support,
        timings: reporter.timings(),
    };
    write_atomic(&manifest, crate::pack::manifest_text(&packed).as_bytes())?;
    let mut json = serde_json::to_vec_pretty(&report).expect("serializable");
    json.push(b'\n');
    write_atomic(&report_path, &json)?;
    drop(root);
    drop(in_place);
    for m in build_dir.close()? {
        reporter.warn(&format!("left {m} in place: it is a mount point"));
    }
    Ok(report)
}

/// The recipe's `[check] allow` and `--allow`, once each, in that order.
fn allowed_rules(loaded: &Loaded, opts: &BuildOptions) -> Vec<String> {
    let mut allow: Vec<String> = Vec::new();
    for id in loaded.recipe.check.allow.iter().chain(&opts.allow) {
        if !allow.contains(id) {
            allow.push(id.clone());
        }
    }
    allow
}

/// The check stage: every error and warning goes to the log, then errors outside the
/// allowed rules stop the build before anything is packed.
fn run_check(
    view: &crate::check::Tree,
    tree: &Path,
    loaded: &Loaded,
    allow: &[String],
    reporter: &Reporter,
) -> Result<crate::check::Summary> {
    let opts = crate::check::Options {
        allow: allow.to_vec(),
        path: Some(loaded.path().to_string()),
    };
    let report = crate::check::check_tree(view, &tree.display().to_string(), &opts)?;
    for f in &report.findings {
        match f.severity {
            crate::check::Severity::Error if !f.allowed => reporter.error(&f.line()),
            crate::check::Severity::Info => reporter.debug(&f.line()),
            _ => reporter.warn(&f.line()),
        }
    }
    Ok(report.into_result()?.summary)
}

/// Write a small file under a temporary name and rename it into place.
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let staged = Staged::new(dest);
    let mut f = staged.create()?;
    f.write_all(data).map_err(|e| Error::write(dest, e))?;
    f.flush().map_err(|e| Error::write(dest, e))?;
    drop(f);
    staged.commit()?;
    Ok(())
}

/// Put the finished tree at `dest`, replacing an older one only once the new one is in
/// place beside it.
fn replace_dir(tree: &Path, dest: &Path, runner: &dyn Runner) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let incoming = parent.join(format!(
        ".{}.incoming.{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if std::fs::rename(tree, &incoming).is_err() {
        // Another filesystem: copy exactly, then swap.
        runner.run(
            &crate::runner::Cmd::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(tree)
                .arg(&incoming),
        )?;
    }
    let old = parent.join(format!(
        ".{}.old.{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old).map_err(|e| Error::write(dest, e))?;
    }
    std::fs::rename(&incoming, dest).map_err(|e| Error::write(dest, e))?;
    if had_old {
        crate::tree::remove_tree(&old)?;
    }
    Ok(())
}
