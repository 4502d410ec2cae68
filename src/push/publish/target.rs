//! Push to one storage container: where the upload goes ([`Plan`]), the temporary that is
//! removed unless it was renamed into place, the earlier version rsync shares files with,
//! and the steps themselves (clean up, skip if present, upload, verify, rename).

use super::types::{PublishOptions, Status, Verify};
use crate::progress::Bar;
use crate::push::{compare_hashes, is_id12, Distro, Error, Listed, Name, Stale, Transport};
use crate::recipe::Strategy;

/// Where a target's upload goes and under which API name.
pub(super) struct Plan {
    pub dest: Name,
    pub api_name: String,
}

pub(super) fn plan(d: &Distro, strategy: Strategy) -> Result<Plan, Error> {
    Ok(match strategy {
        Strategy::Versioned => {
            let api_name = format!("{}-{}", d.name, d.id12());
            if api_name.len() > 255 {
                return Err(Error::Usage(format!(
                    "name {:?} is too long for a versioned entry (at most 242 characters)",
                    d.name
                )));
            }
            Plan {
                dest: Name::distro(&format!("{}-{}", d.path, d.id12()))?,
                api_name,
            }
        }
        Strategy::Replace => Plan {
            dest: Name::distro(&d.path)?,
            api_name: d.name.clone(),
        },
    })
}

/// Removes a temporary upload unless it was renamed into place.
struct TmpGuard<'a> {
    tr: &'a dyn Transport,
    name: Name,
    armed: bool,
}

impl Drop for TmpGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tr.remove(&self.name);
        }
    }
}

/// The newest earlier version of the same distro: what rsync shares files with.
fn previous_version(
    listed: &[Listed],
    d: &Distro,
    plan: &Plan,
    strategy: Strategy,
) -> Option<Name> {
    let exists = |n: &str| listed.iter().any(|l| l.name == n);
    if strategy == Strategy::Replace {
        return exists(plan.dest.as_str()).then(|| plan.dest.clone());
    }
    let prefix = format!("{}-", d.path);
    listed
        .iter()
        .filter(|l| l.name != plan.dest.as_str())
        .filter(|l| l.name == d.path || l.name.strip_prefix(&prefix).is_some_and(is_id12))
        .max_by(|a, b| a.mtime.total_cmp(&b.mtime))
        .and_then(|l| Name::distro(&l.name).ok())
}

/// `Err(StorageFull)` when `distros/` has less room than the distro's content. After a
/// failed upload (`failed`), that error (or the failure itself when `df` cannot say).
fn check_room(tr: &dyn Transport, d: &Distro, failed: Option<Error>) -> Result<(), Error> {
    let free = match tr.free_space() {
        Ok(Some(f)) => f,
        // Unknown room is not a reason to refuse; a failure stays what it was.
        _ => return failed.map_or(Ok(()), Err),
    };
    if free < d.bytes || failed.is_some() {
        return Err(Error::StorageFull {
            target: tr.describe(),
            storage: tr.storage(),
            free,
            needed: d.bytes,
            // Room by size can still run out (file system overhead, inodes, a quota
            // df does not see): then say that unpacking hit it.
            after: match failed {
                Some(_) => " (unpacking ran out of space or inodes)".into(),
                None => String::new(),
            },
        });
    }
    Ok(())
}

/// How many times an upload whose link dropped is tried again.
const UPLOAD_RETRIES: u32 = 2;

/// Upload into a staging directory, again when the link drops or the remote process is
/// killed (bounded): rsync resumes into the same directory (`--partial`), the tar stream
/// starts over in a fresh one after removing the failed one (if that removal fails too,
/// the next push reclaims it as stale). Returns the staging name, its guard and the
/// bytes the successful attempt sent.
fn upload_with_retries<'a>(
    d: &Distro,
    tr: &'a dyn Transport,
    prev: Option<&Name>,
    bar: &Bar,
) -> Result<(Name, TmpGuard<'a>, u64), Error> {
    let mut attempt = 0;
    loop {
        let n = if tr.resumes() { 0 } else { attempt };
        let tmp = Name::tmp_attempt(d.id12(), std::process::id(), n)?;
        let guard = TmpGuard {
            tr,
            name: tmp.clone(),
            armed: true,
        };
        bar.set_message("uploading");
        match tr.upload(d, &tmp, prev, bar) {
            Ok(sent) => return Ok((tmp, guard, sent)),
            Err(e)
                if e.is_dropped_link()
                    && attempt < UPLOAD_RETRIES
                    && !crate::interrupt::interrupted() =>
            {
                attempt += 1;
                let how = if tr.resumes() {
                    "resuming into the same staging directory"
                } else {
                    "starting over in a fresh staging directory"
                };
                bar.warn(&format!(
                    "upload dropped ({e}); {how} (retry {attempt} of {UPLOAD_RETRIES})"
                ));
                // Keep what arrived for rsync to resume from; remove the rest now.
                let mut guard = guard;
                guard.armed = !tr.resumes();
                drop(guard);
                std::thread::sleep(std::time::Duration::from_secs(u64::from(attempt)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Push to one storage container: clean up, skip if present, upload, verify, rename.
pub(super) fn push_one(
    d: &Distro,
    tr: &dyn Transport,
    plan: &Plan,
    opts: &PublishOptions,
    bar: &Bar,
) -> Result<(Status, u64, Option<Name>), Error> {
    let mut listed = tr.list()?;
    let mut restored = false;
    for l in &listed {
        match Name::stale(&l.name) {
            Some(Stale::Tmp(n)) => tr.remove(&n)?,
            Some(Stale::Old { name, dest }) => {
                // A replace interrupted between its two renames: put the old one back.
                tr.restore(&name, &dest)?;
                tr.remove(&name)?;
                restored = true;
            }
            None => {}
        }
    }
    if restored {
        listed = tr.list()?;
    }
    let present = listed.iter().any(|l| l.name == plan.dest.as_str());
    if present {
        let id = tr.content_id(&plan.dest)?;
        if id.as_deref() == Some(d.content_id.as_str()) {
            return Ok((Status::Unchanged, 0, None));
        }
        if opts.strategy == Strategy::Versioned {
            return Err(Error::Remote {
                target: tr.describe(),
                detail: format!(
                    "distros/{} exists with other content ({}): remove it, or push with --strategy replace",
                    plan.dest,
                    id.as_deref().unwrap_or("no content id")
                ),
            });
        }
    }
    let prev = previous_version(&listed, d, plan, opts.strategy);
    // The room the unpacked distro takes is known up front (its content size), unless
    // rsync shares unchanged files with an earlier version: then only after.
    if prev.is_none() || !tr.shares_with_previous() {
        check_room(tr, d, None)?;
    }
    let (tmp, mut guard, sent) = upload_with_retries(d, tr, prev.as_ref(), bar).map_err(|e| {
        if crate::push::says_storage_full(&e) {
            // The failed upload is gone already: df shows the room it had.
            check_room(tr, d, Some(e)).unwrap_err()
        } else {
            e
        }
    })?;
    crate::interrupt::check_interrupted().map_err(|_| Error::Remote {
        target: tr.describe(),
        detail: "interrupted".into(),
    })?;
    bar.set_message("verifying");
    let m = tr.measure(&tmp)?;
    if let Some(why) = m.mismatch(d) {
        return Err(Error::Verify {
            target: tr.describe(),
            detail: why,
        });
    }
    if opts.verify == Verify::Full {
        if let Some(why) = compare_hashes(&d.manifest, &tr.hashes(&tmp)?) {
            return Err(Error::Verify {
                target: tr.describe(),
                detail: why,
            });
        }
    }
    let aside = match opts.strategy {
        Strategy::Replace => Some(Name::old(std::process::id(), &plan.dest)?),
        Strategy::Versioned => None,
    };
    tr.install(&tmp, &plan.dest, aside.as_ref())?;
    guard.armed = false;
    if let Some(a) = aside {
        // Best effort: if this fails the next push removes it (it is a stale "old").
        let _ = tr.remove(&a);
    }
    Ok((Status::Uploaded, sent, prev))
}
