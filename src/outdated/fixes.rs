//! The CVE IDs each pending security update fixes, from its candidate's changelog (one
//! per source package, fetched a few at a time).

use super::*;

/// A binary package of a security suite, as its index lists it.
pub(super) struct Published {
    package: String,
    version: String,
    /// The source package's name and version (the binary's own when the index names none).
    source: String,
    source_version: String,
    file: Option<DebFile>,
}

impl Published {
    pub(super) fn of(e: &crate::mirror::packages::Entry) -> Published {
        Published {
            package: e.package.clone(),
            version: e.version.clone(),
            source: e.source.clone().unwrap_or_else(|| e.package.clone()),
            source_version: e
                .source_version
                .clone()
                .unwrap_or_else(|| e.version.clone()),
            file: e.file.clone(),
        }
    }
}

/// How many changelogs are fetched at once: enough to hide the mirror's latency, few
/// enough to be polite to it.
pub(super) const CHANGELOG_THREADS: usize = 4;

/// Fill [`Pending::fixes`] of the security updates: one changelog per source package and
/// version (the binaries of one source share it), fetched [`CHANGELOG_THREADS`] at a
/// time; each update's IDs are those of the entries between its installed source
/// version and the candidate's. Any error (a package that does not match the index, a
/// changelog that cannot be read) fails the whole run: an empty list must mean "none".
pub(super) fn add_fixes(
    client: &Client,
    inv: &Inventory,
    plan: &Plan,
    published: &[Vec<Published>],
    pending: &mut [Pending],
    rep: &Reporter,
) -> Result<()> {
    type Key = (usize, String, String);
    let mut wants: Vec<(usize, Key, String)> = Vec::new();
    for (n, p) in pending.iter().enumerate().filter(|(_, p)| p.security) {
        let Some(si) = plan.suites.iter().position(|s| s.name == p.suite) else {
            continue;
        };
        let Some(cand) = published[si]
            .iter()
            .find(|e| e.package == p.name && e.version == p.available)
        else {
            continue;
        };
        // A binNMU's changelog.Debian is its source's: compare source versions.
        let installed = inv
            .packages
            .iter()
            .find(|q| q.name == p.name && q.version == p.installed)
            .and_then(|q| q.source_version.clone())
            .unwrap_or_else(|| p.installed.clone());
        let key = (si, cand.source.clone(), cand.source_version.clone());
        wants.push((n, key, installed));
    }
    let keys: Vec<&Key> = wants
        .iter()
        .map(|(_, k, _)| k)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let read = |&&(si, ref source, ref version): &&Key| -> Result<Vec<changelog::Entry>> {
        let suite = &plan.suites[si];
        let of_source = published[si]
            .iter()
            .filter(|e| &e.source == source && &e.source_version == version);
        let mut binaries = Vec::new();
        for e in of_source {
            let file = e.file.clone().ok_or_else(|| crate::mirror::Error::Parse {
                what: format!("{} {} Packages index", suite.base, suite.name),
                msg: format!(
                    "{} {} has no Filename, Size or SHA256: cannot fetch it to read its changelog",
                    e.package, e.version
                ),
            })?;
            binaries.push(Binary {
                package: e.package.clone(),
                file,
            });
        }
        let text = client.changelog(&suite.base, version, &binaries)?;
        rep.debug(&format!("{source} {version}: changelog read"));
        Ok(changelog::entries(&text))
    };
    let logs = parallel(&keys, CHANGELOG_THREADS, read)?;
    let by_key: HashMap<&Key, &Vec<changelog::Entry>> = keys.iter().copied().zip(&logs).collect();
    for (n, key, installed) in &wants {
        let entries = by_key[key];
        pending[*n].fixes = Some(changelog::fixes(entries, installed, &key.2));
    }
    Ok(())
}

/// `f` over `items` on at most `threads` threads, results in order; the first error (in
/// order) is returned, and no new item is started once one has failed.
pub(super) fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    failed.fetch_or(r.is_err(), Ordering::Relaxed);
                    *slots[i].lock().expect("no panic holds it") = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        // A slot left empty was not started because another item failed: that error is
        // returned when its slot comes.
        if let Some(r) = slot.into_inner().expect("no panic holds it") {
            out.push(r?);
        }
    }
    assert_eq!(out.len(), items.len(), "an item was skipped with no error");
    Ok(out)
}
