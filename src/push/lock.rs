//! The storage lock: one publisher at a time per storage container, so a push never
//! cleans up (as stale) the staging directory another job is still filling, and storage
//! reclaim never removes what a push is staging. It is a directory, `distros/.bd+lock`
//! (`mkdir` is atomic over ssh and locally; the `+` keeps it out of every API path), with
//! an `owner` file naming who holds it ([`Holder`]: what, host, pid, since when).
//!
//! A lock is stale when it is older than [`LockOptions::stale_after`], or when its holder
//! ran on this host and that process is gone (a job killed with SIGKILL); a stale lock is
//! taken over. Otherwise the next job waits, bounded by [`LockOptions::wait`], then fails
//! naming the holder and `--force-unlock`. Breaking a lock compares the owner file first,
//! so two waiters cannot both break it and then remove each other's new lock.
//!
//! Usage (push, reclaim): `let lock = StorageLock::acquire(transport, &options, &|h| ...)?;`
//! do the work, then drop it (or [`StorageLock::release`] to see errors).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Error, Result, Transport};

/// The lock directory under `distros/`.
pub const LOCK_DIR: &str = ".bd+lock";

/// How to take the lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// How long to wait for a lock someone else holds before failing.
    pub wait: Duration,
    /// A lock older than this is abandoned and taken over.
    pub stale_after: Duration,
    /// Remove whatever lock is there first (the user checked that no job holds it).
    pub force_unlock: bool,
    /// What holds it, for the other jobs' messages (`build-distro push deb`).
    pub owner: String,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            wait: Duration::from_secs(600),
            stale_after: Duration::from_secs(4 * 3600),
            force_unlock: false,
            owner: "build-distro".into(),
        }
    }
}

/// Who holds a lock: the `owner` file, one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch, when it was taken.
    pub time: u64,
    /// Tells two holders on the same host and pid (a reused pid) apart.
    pub token: String,
}

impl Holder {
    fn describe(&self, now: u64) -> String {
        format!(
            "{} (host {}, pid {}, for {} s)",
            self.owner,
            self.host,
            self.pid,
            now.saturating_sub(self.time)
        )
    }
}

/// What trying to take the lock found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTry {
    Acquired,
    /// Someone holds it: the owner file's text (empty while it is being written), the
    /// lock's age in seconds and the storage side's clock.
    Held {
        owner: String,
        age: u64,
        now: u64,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unique per lock taken by this process (a counter) and across processes (pid, time).
fn token() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n}", std::process::id())
}

/// This machine's name, for holders (and to recognise our own dead jobs).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether `h` ran on this host in a process that is gone.
fn dead_here(h: &Holder) -> bool {
    h.host == hostname() && !std::path::Path::new(&format!("/proc/{}", h.pid)).exists()
}

/// A held storage lock; released on drop.
pub struct StorageLock<'a> {
    tr: &'a dyn Transport,
    /// Our owner file's text: release removes the lock only while it is still ours.
    text: String,
    held: bool,
}

impl std::fmt::Debug for StorageLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageLock")
            .field("target", &self.tr.describe())
            .field("held", &self.held)
            .finish()
    }
}

impl<'a> StorageLock<'a> {
    /// Take the lock of `tr`'s storage container, waiting (bounded) while another job
    /// holds it; `waiting` is called once with the holder when we start to wait.
    pub fn acquire(
        tr: &'a dyn Transport,
        opts: &LockOptions,
        waiting: &dyn Fn(&str),
    ) -> Result<StorageLock<'a>> {
        let me = Holder {
            owner: opts.owner.clone(),
            host: hostname(),
            pid: std::process::id(),
            time: now(),
            token: token(),
        };
        let text = serde_json::to_string(&me).expect("holder serializes");
        if opts.force_unlock {
            tr.lock_remove(None)?;
        }
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            let (owner, age, now) = match tr.lock_try(&text)? {
                LockTry::Acquired => {
                    return Ok(StorageLock {
                        tr,
                        text,
                        held: true,
                    })
                }
                LockTry::Held { owner, age, now } => (owner, age, now),
            };
            let holder: Option<Holder> = serde_json::from_str(owner.trim()).ok();
            let stale = age > opts.stale_after.as_secs() || holder.as_ref().is_some_and(dead_here);
            // An owner file not written yet (or unreadable) is a lock being taken: wait,
            // unless it is old.
            if stale {
                tr.lock_remove(Some(&owner))?;
                continue;
            }
            let who = match &holder {
                Some(h) => h.describe(now),
                None => format!("an unknown job (for {age} s)"),
            };
            if started.elapsed() >= opts.wait || crate::interrupt::interrupted() {
                return Err(Error::Locked {
                    target: tr.describe(),
                    storage: tr.storage(),
                    holder: who,
                    waited: started.elapsed().as_secs(),
                });
            }
            if !told {
                waiting(&format!(
                    "storage {} is locked by {who}: waiting",
                    tr.storage()
                ));
                told = true;
            }
            let left = opts.wait.saturating_sub(started.elapsed());
            std::thread::sleep(left.min(Duration::from_millis(500)));
        }
    }

    /// Release now, reporting a failure (drop does it silently).
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        self.tr.lock_remove(Some(&self.text))
    }
}

impl Drop for StorageLock<'_> {
    fn drop(&mut self) {
        if self.held {
            let _ = self.tr.lock_remove(Some(&self.text));
        }
    }
}

/// [`LockTry`] from the lock script's output: `acquired`, or `held`, the storage's clock,
/// the lock's mtime, then the owner file.
pub fn parse_lock_try(text: &str) -> Option<LockTry> {
    let mut lines = text.splitn(4, '\n');
    match lines.next()?.trim() {
        "acquired" => Some(LockTry::Acquired),
        "held" => {
            let now: u64 = lines.next()?.trim().parse().ok()?;
            let mtime: u64 = lines.next()?.trim().parse().unwrap_or(now);
            let owner = lines.next().unwrap_or("").trim().to_string();
            Some(LockTry::Held {
                owner,
                age: now.saturating_sub(mtime),
                now,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_script_output() {
        assert_eq!(parse_lock_try("acquired\n"), Some(LockTry::Acquired));
        assert_eq!(
            parse_lock_try("held\n1000\n990\n{\"owner\":\"x\"}\n"),
            Some(LockTry::Held {
                owner: "{\"owner\":\"x\"}".into(),
                age: 10,
                now: 1000
            })
        );
        assert_eq!(
            parse_lock_try("held\n1000\n\n"),
            Some(LockTry::Held {
                owner: String::new(),
                age: 0,
                now: 1000
            })
        );
        assert_eq!(parse_lock_try("garbage"), None);
    }
}
