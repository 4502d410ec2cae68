//! The pipeline's source step, with the build cache in front. A bootstrap source is
//! restored from its entry when one matches, else bootstrapped (reusing cached packages)
//! and stored. A registry source is resolved against the registry every build (a tag may
//! move) and its manifest digest looked up: a hit is served like a bootstrap's, a miss
//! downloads the layers and stores the tree. Other sources go straight to
//! [`crate::source::fetch`]: a Docker engine or an image archive on disk is already a
//! local copy.

use std::path::Path;

use super::inputs::Inputs;
use super::Error;
use crate::cache::{Cache, Key, Mounted};
use crate::recipe::SourceSpec;
use crate::source::{bootstrap, registry, InPlace, ReleaseRef, SourceCtx, SourceInfo};
use crate::tree::Root;

/// Fill `target` (an existing empty directory) from `spec`, through `cache` when given.
/// `scratch` is the build's own directory (the bootstrap runs there before it is stored).
/// Cache trouble (a full disk, a damaged entry) is a warning, never the build's failure.
/// `mount`: a cache entry may be read in place below an overlay on `target` (not when
/// the finished tree itself is the output, as a directory cannot be moved off a mount).
pub fn fetch_source<'a>(
    spec: &SourceSpec,
    target: &Path,
    ctx: &SourceCtx<'a>,
    inputs: &Inputs,
    cache: Option<&Cache>,
    scratch: &Path,
    mount: bool,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let Some(cache) = cache else {
        return Ok(crate::source::fetch(spec, target, ctx)?);
    };
    let hit = Hit {
        cache,
        target,
        scratch,
        mount,
    };
    if let SourceSpec::Registry(r) = spec {
        return fetch_registry(spec, r, &hit, ctx, inputs);
    }
    match crate::source::bootstrap_of(spec) {
        Some((tool, b)) => fetch_bootstrap(spec, tool, b, &hit, ctx, inputs),
        None => Ok(crate::source::fetch(spec, target, ctx)?),
    }
}

/// A bootstrap source through the cache: keyed by the `InRelease` files (fetched and
/// verified first). In one step ([`bootstrap::upgrades_after`] false): a miss bootstraps
/// in `scratch` with the cached packages, then stores the tree unless the mirror changed
/// meanwhile. In two: the whole tree's entry is a layer over the entry of the first
/// step's tree (the release alone); when only the layer misses (a security rebuild) the
/// first step's tree is mounted and only the upgrade runs, into the overlay's upper
/// directory, which becomes the layer.
fn fetch_bootstrap<'a>(
    spec: &SourceSpec,
    tool: bootstrap::Tool,
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx<'a>,
    inputs: &Inputs,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let releases = bootstrap::fetch_releases(b, ctx)?;
    let epochs = bootstrap::Epochs::of(inputs.epoch, &releases);
    let bootstrapper = bootstrap::tool_version(tool, ctx)?;
    let key_of = |releases: &[ReleaseRef], epoch| {
        Key {
            bootstrapper: Some(bootstrapper.clone()),
            ..inputs.key(spec, &Inputs::bootstrap_arch(b), releases, None, epoch)
        }
        .with_slim(ctx.slim)
    };
    if !bootstrap::upgrades_after(tool, b) {
        let key = key_of(&releases, epochs.upgrade);
        if let Some(served) = hit.serve(&key, ctx)? {
            return Ok(served);
        }
        return bootstrap_missed(tool, b, hit, ctx, &key, &releases, epochs.upgrade);
    }
    let base_key = key_of(&releases[..1], epochs.bootstrap);
    let whole = key_of(&releases, epochs.upgrade);
    fetch_in_two_steps(tool, b, hit, ctx, &releases, epochs, base_key, whole)
}

/// A two-step bootstrap through the cache: `base_key` names the first step's tree (the
/// release alone), `whole` the finished tree. A build that can read entries in place
/// looks for the whole tree as a layer over the first step ([`Key::base`]); a miss
/// mounts the first step (from its entry, or bootstrapped in scratch and mounted where
/// it lies), upgrades in that overlay, and moves both into the cache.
#[allow(clippy::too_many_arguments)]
fn fetch_in_two_steps<'a>(
    tool: bootstrap::Tool,
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx<'a>,
    releases: &[ReleaseRef],
    epochs: bootstrap::Epochs,
    base_key: Key,
    whole: Key,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let info = bootstrap::info(tool, b, releases);
    // A build that cannot read entries in place keeps the whole tree, tarball and all,
    // under the key without a base, and makes both steps in its scratch directory.
    if !(hit.mount && hit.cache.can_mount()) {
        if let Some(served) = hit.serve(&whole, ctx)? {
            return Ok(served);
        }
        let (built, _) = bootstrap_run(tool, b, hit, ctx, &releases[..1], epochs.bootstrap)?;
        return upgrade_whole(b, hit, ctx, &whole, &built, info, epochs.upgrade, releases);
    }
    let key = Key {
        base: Some(base_key.id()),
        ..whole.clone()
    };
    if let Some(served) = hit.serve(&key, ctx)? {
        return Ok(served);
    }
    // The first step's tree below an overlay on `target`, its upper directory in `step`:
    // the upgrade's changes are all in that directory, which becomes the layer.
    let step = hit.scratch.join("upgrade");
    std::fs::create_dir(&step).map_err(|e| Error::work_dir(&step, e))?;
    let base_hit = Hit {
        scratch: &step,
        ..*hit
    };
    let (base, fresh) =
        match base_hit.serve_as(&base_key, ctx, "first step served by the build cache")? {
            Some((_, Some(mounted))) => (mounted, None),
            Some((_, None)) => {
                // Restored, not mounted after all: upgraded in place.
                return upgrade_whole(
                    b,
                    hit,
                    ctx,
                    &whole,
                    hit.target,
                    info,
                    epochs.upgrade,
                    releases,
                );
            }
            None => {
                let (built, _) =
                    bootstrap_run(tool, b, hit, ctx, &releases[..1], epochs.bootstrap)?;
                match crate::tree::overlay::mount(std::slice::from_ref(&built), hit.target, &step) {
                    Ok(overlay) => (InPlace::new(overlay, None), Some(built)),
                    Err(why) => {
                        ctx.reporter
                            .debug(&format!("source: {why}; upgrading in place"));
                        return upgrade_whole(
                            b,
                            hit,
                            ctx,
                            &whole,
                            &built,
                            info,
                            epochs.upgrade,
                            releases,
                        );
                    }
                }
            }
        };
    ctx.reporter.info(&format!(
        "source: upgrading from {}",
        bootstrap::suites(b)
            .iter()
            .map(|s| s.suite.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    upgrade(b, hit, ctx, hit.target, epochs.upgrade)?;
    if !unchanged(b, ctx, releases) {
        return Ok((info, Some(base)));
    }
    crate::tree::overlay::link_copied_up(hit.target, &step.join("upper"))
        .map_err(|e| Error::work_dir(&step, e))?;
    drop(base);
    let upper = crate::tree::overlay::take_upper(&step)?;
    let stored = match &fresh {
        Some(built) => hit
            .cache
            .store_in_place(
                &base_key,
                built,
                None,
                &bootstrap::info(tool, b, &releases[..1]),
            )
            .and_then(|()| {
                hit.cache
                    .store_in_place(&key, &upper, Some(&base_key), &info)
            }),
        None => hit
            .cache
            .store_in_place(&key, &upper, Some(&base_key), &info),
    };
    match stored {
        Ok(()) => hit
            .serve_as(&key, ctx, "stored in the build cache")?
            .ok_or_else(|| stored_but_unreadable(&key)),
        Err(e) => {
            // The tree is still there, in two pieces: mounted again, uncached.
            ctx.reporter.warn(&format!(
                "{e}; the build goes on without caching its source"
            ));
            let again = step.join("again");
            std::fs::create_dir(&again).map_err(|e| Error::work_dir(&again, e))?;
            let overlay = match &fresh {
                Some(built) if built.is_dir() => {
                    crate::tree::overlay::mount(&[upper, built.clone()], hit.target, &again)
                        .map_err(|why| Error::Remount {
                            target: hit.target.display().to_string(),
                            why,
                        })?
                }
                _ => hit
                    .cache
                    .mount_over(&base_key, &upper, hit.target, &again)?
                    .ok_or_else(|| stored_but_unreadable(&base_key))?,
            };
            Ok((
                info,
                Some(InPlace::new(overlay, None).holding(hit.cache.pin()?)),
            ))
        }
    }
}

/// The second step on the whole tree at `built` (the build's target, or a scratch
/// directory that becomes it), kept whole as `whole`'s entry unless the mirror changed.
#[allow(clippy::too_many_arguments)]
fn upgrade_whole<'a>(
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx<'a>,
    whole: &Key,
    built: &Path,
    info: SourceInfo,
    epoch: Option<u64>,
    releases: &[ReleaseRef],
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    upgrade(b, hit, ctx, built, epoch)?;
    let moved_on = !unchanged(b, ctx, releases);
    if built == hit.target {
        if !moved_on {
            if let Err(e) = hit.cache.store(whole, built, &info) {
                ctx.reporter.warn(&format!(
                    "{e}; the build goes on without caching its source"
                ));
            }
        }
        return Ok((info, None));
    }
    if moved_on {
        return go_on(built, hit.target, info);
    }
    keep(hit, whole, built, info, ctx)
}

/// A bootstrap that missed the cache: run in `scratch` with the cached packages, the
/// packages it downloaded kept, and the tree stored as `key`'s entry unless the mirror
/// changed meanwhile.
fn bootstrap_missed<'a>(
    tool: bootstrap::Tool,
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx<'a>,
    key: &Key,
    releases: &[ReleaseRef],
    epoch: Option<u64>,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let (built, info) = bootstrap_run(tool, b, hit, ctx, releases, epoch)?;
    if !unchanged(b, ctx, releases) {
        return go_on(&built, hit.target, info);
    }
    keep(hit, key, &built, info, ctx)
}

/// [`bootstrap::bootstrap`] into `scratch/bootstrap` with the cached packages, keeping
/// the packages it downloaded; the tree's path and description.
fn bootstrap_run(
    tool: bootstrap::Tool,
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx,
    releases: &[ReleaseRef],
    epoch: Option<u64>,
) -> super::Result<(std::path::PathBuf, SourceInfo)> {
    let scratch = hit.scratch;
    let built = scratch.join("bootstrap");
    std::fs::create_dir(&built).map_err(|e| Error::work_dir(&built, e))?;
    let debs_in = cached_debs(hit, ctx, "debs-in", tool == bootstrap::Tool::Mmdebstrap);
    let debs_out = scratch.join("debs-out");
    let debs = match (&debs_in, tool) {
        (Some(d), bootstrap::Tool::Debootstrap) => Some((d.as_path(), d.as_path())),
        (Some(d), bootstrap::Tool::Mmdebstrap) => {
            std::fs::create_dir_all(&debs_out).map_err(|e| Error::work_dir(&debs_out, e))?;
            Some((d.as_path(), debs_out.as_path()))
        }
        (None, _) => None,
    };
    ctx.reporter.debug("source: no cache entry; bootstrapping");
    let info = bootstrap::bootstrap(tool, b, &built, ctx, releases, debs, epoch)?;
    if let Some((_, out)) = debs {
        keep_debs(hit, ctx, out);
    }
    Ok((built, info))
}

/// [`bootstrap::upgrade`] of the tree at `target`, apt's archive the cached packages
/// (so a security rebuild downloads only what is new), keeping what it downloaded.
fn upgrade(
    b: &crate::recipe::Bootstrap,
    hit: &Hit,
    ctx: &SourceCtx,
    target: &Path,
    epoch: Option<u64>,
) -> super::Result<()> {
    let debs = cached_debs(hit, ctx, "debs-upgrade", true);
    bootstrap::upgrade(b, target, ctx, epoch, debs.as_deref())?;
    if let Some(d) = &debs {
        keep_debs(hit, ctx, d);
    }
    Ok(())
}

/// The cached packages in `scratch/name` ([`crate::cache::Cache::debs_for_build`]);
/// `None`, with a warning, when they cannot be had (then everything is downloaded).
fn cached_debs(hit: &Hit, ctx: &SourceCtx, name: &str, link: bool) -> Option<std::path::PathBuf> {
    match hit.cache.debs_for_build(&hit.scratch.join(name), link) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.reporter
                .warn(&format!("{e}; downloading every package"));
            None
        }
    }
}

/// Add the packages a run left in `dir` to the cache's ([`crate::cache::Cache::harvest`]).
fn keep_debs(hit: &Hit, ctx: &SourceCtx, dir: &Path) {
    if let Err(e) = hit.cache.harvest(dir) {
        ctx.reporter
            .warn(&format!("{e}; the downloaded packages were not kept"));
    }
}

/// Whether the first `releases.len()` suites of `b` still have the `releases` fetched
/// before the run. One that changed during it may or may not be what the tree holds:
/// such a tree must not be served under either key.
fn unchanged(b: &crate::recipe::Bootstrap, ctx: &SourceCtx, releases: &[ReleaseRef]) -> bool {
    match bootstrap::fetch_releases(b, ctx) {
        Ok(after) => {
            let same = after
                .iter()
                .map(|r| &r.sha256)
                .take(releases.len())
                .eq(releases.iter().map(|r| &r.sha256));
            if !same {
                ctx.reporter
                    .warn("the mirror changed during the bootstrap: not caching this tree");
            }
            same
        }
        Err(e) => {
            ctx.reporter.warn(&format!("{e}; not caching this tree"));
            false
        }
    }
}

/// An entry this build just stored cannot be read back.
fn stored_but_unreadable(key: &Key) -> Error {
    Error::from(crate::cache::Error::Corrupt {
        id: key.id()[..12].to_string(),
        msg: "the entry just stored cannot be read; build again".into(),
    })
}

/// A registry source through the cache: the manifest digest is resolved against the
/// registry (an unreachable registry fails the build, never falls back to an entry), then
/// the entry of that digest serves, or the layers are downloaded and the tree stored.
fn fetch_registry<'a>(
    spec: &SourceSpec,
    s: &crate::recipe::RegistrySource,
    hit: &Hit,
    ctx: &SourceCtx<'a>,
    inputs: &Inputs,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let resolved = registry::resolve_source(s, ctx)?;
    // The layers are flattened as they are: no epoch shapes the tree.
    let key = inputs.key(
        spec,
        &resolved.platform(),
        &[],
        Some(resolved.digest().to_string()),
        None,
    );
    if let Some(served) = hit.serve(&key, ctx)? {
        return Ok(served);
    }
    ctx.reporter.debug(&format!(
        "source: no cache entry {}; downloading the layers",
        &key.id()[..12]
    ));
    let built = hit.scratch.join("registry");
    std::fs::create_dir(&built).map_err(|e| Error::work_dir(&built, e))?;
    let info = registry::download(resolved, &built, ctx)?;
    keep(hit, &key, &built, info, ctx)
}

/// Keep the tree a miss made at `built` as the entry for `key`, and go on with it. When
/// the build may read an entry in place, the tree moves into the entry (nothing is copied)
/// and is read from there like any hit; otherwise the entry gets a copy and `built`
/// becomes the target. Failing to store costs a warning, not the build.
fn keep<'a>(
    hit: &Hit,
    key: &Key,
    built: &Path,
    info: SourceInfo,
    ctx: &SourceCtx<'a>,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    let stored = if hit.mount {
        hit.cache.store_moving(key, built, &info)
    } else {
        hit.cache.store(key, built, &info).map(|()| false)
    };
    match stored {
        Ok(true) => hit
            .serve_as(key, ctx, "stored in the build cache")?
            .ok_or_else(|| stored_but_unreadable(key)),
        Ok(false) => go_on(built, hit.target, info),
        Err(e) => {
            ctx.reporter.warn(&format!(
                "{e}; the build goes on without caching its source"
            ));
            go_on(built, hit.target, info)
        }
    }
}

/// The tree at `built` becomes the build's target.
fn go_on<'a>(
    built: &Path,
    target: &Path,
    info: SourceInfo,
) -> super::Result<(SourceInfo, Option<InPlace<'a>>)> {
    std::fs::remove_dir(target).map_err(|e| Error::work_dir(target, e))?;
    std::fs::rename(built, target).map_err(|e| Error::work_dir(target, e))?;
    Ok((info, None))
}

/// Where an entry would be served: one place for every cached kind of source, so a hit
/// is mounted or restored the same way whatever made the entry.
#[derive(Clone, Copy)]
struct Hit<'c> {
    cache: &'c Cache,
    target: &'c Path,
    scratch: &'c Path,
    mount: bool,
}

impl Hit<'_> {
    /// The entry for `key` read in place or restored into `target`; `None` on a miss,
    /// and when the entry was damaged (removed with a warning, `target` emptied again).
    fn serve<'a>(
        &self,
        key: &Key,
        ctx: &SourceCtx<'a>,
    ) -> super::Result<Option<(SourceInfo, Option<InPlace<'a>>)>> {
        self.serve_as(key, ctx, "from the build cache")
    }

    /// [`Hit::serve`], saying `what` of the entry (a hit, or a tree just stored).
    fn serve_as<'a>(
        &self,
        key: &Key,
        ctx: &SourceCtx<'a>,
        what: &str,
    ) -> super::Result<Option<(SourceInfo, Option<InPlace<'a>>)>> {
        let (cache, target) = (self.cache, self.target);
        if !cache.has(key) {
            return Ok(None);
        }
        let hit = if self.mount {
            in_place(cache, key, target, self.scratch, ctx)
        } else {
            Ok(None)
        };
        let hit = match hit {
            Ok(Some(hit)) => Ok(hit),
            Ok(None) => restore(cache, key, target, ctx).map(|info| (info, None)),
            Err(e) => Err(e),
        };
        match hit {
            Ok((info, in_place)) => {
                let how = if in_place.is_some() {
                    ", read in place"
                } else {
                    ""
                };
                ctx.reporter
                    .info(&format!("source: {what} (entry {}{how})", &key.id()[..12]));
                Ok(Some((info, in_place)))
            }
            Err(crate::cache::Error::Interrupted) => Err(Error::Interrupted),
            // Nothing was written to `target`: the entry's tree is made again.
            Err(crate::cache::Error::MountOnly { .. }) => Ok(None),
            Err(e) => {
                ctx.reporter.warn(&format!(
                    "{e}; rebuilding it (the damaged entry was set aside)"
                ));
                crate::tree::remove_tree(target)?;
                std::fs::create_dir(target).map_err(|e| Error::work_dir(target, e))?;
                Ok(None)
            }
        }
    }
}

/// The entry's tree mounted on `target`, holding the cache's lock; `None` when it cannot
/// be mounted here (then it is restored by unpacking).
fn in_place<'a>(
    cache: &Cache,
    key: &Key,
    target: &Path,
    scratch: &Path,
    ctx: &SourceCtx<'a>,
) -> Result<Option<(SourceInfo, Option<InPlace<'a>>)>, crate::cache::Error> {
    match cache.mount(key, target, scratch)? {
        Mounted::Yes(info, overlay) => {
            let lock = cache.pin()?;
            Ok(Some((
                info,
                Some(InPlace::new(overlay, None).holding(lock)),
            )))
        }
        Mounted::No(why) => {
            ctx.reporter
                .debug(&format!("source: {why}; unpacking the cache entry"));
            Ok(None)
        }
    }
}

fn restore(
    cache: &Cache,
    key: &Key,
    target: &Path,
    ctx: &SourceCtx,
) -> Result<SourceInfo, crate::cache::Error> {
    let root = Root::open(target)?;
    cache.restore(key, &root, ctx.max_unpack_bytes)
}
