//! The names push gives directories under `distros/`: an API path, a version
//! (`<path>-<id12>`), and its own temporaries (`.bd+tmp-…`, `.bd+old-…`), which no API path
//! can be, so a stale one is told apart from a distro.

use super::{sq, Error, Result};

/// A directory name directly under `distros/`: an API path (`A-Za-z0-9._-`) or one of the
/// names push uses for its own temporaries, which contain `+` so that no API path can
/// ever be one of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

const TMP_PREFIX: &str = ".bd+tmp-";
const OLD_PREFIX: &str = ".bd+old-";

/// What an interrupted push left under `distros/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// An upload that never got renamed into place.
    Tmp(Name),
    /// A distro that `replace` moved aside; `dest` is where it lived.
    Old { name: Name, dest: Name },
}

pub(crate) fn is_id12(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Name {
    /// An API path as a directory name.
    pub fn distro(path: &str) -> Result<Name> {
        crate::recipe::check_api_path(path).map_err(Error::Usage)?;
        Ok(Name(path.to_string()))
    }

    /// Where an upload of content `id12` by process `pid` goes first.
    pub fn tmp(id12: &str, pid: u32) -> Result<Name> {
        Name::tmp_attempt(id12, pid, 0)
    }

    /// A fresh staging directory for retry `attempt` (0: the first upload), so a retry
    /// never lands in what a dropped upload left behind.
    pub fn tmp_attempt(id12: &str, pid: u32, attempt: u32) -> Result<Name> {
        if !is_id12(id12) {
            return Err(Error::Usage(format!(
                "content id prefix {id12:?} is not 12 hex digits"
            )));
        }
        Ok(Name(match attempt {
            0 => format!("{TMP_PREFIX}{id12}-{pid}"),
            n => format!("{TMP_PREFIX}{id12}-{pid}.{n}"),
        }))
    }

    /// Where `replace` moves the distro at `dest` while swapping in the new one.
    pub fn old(pid: u32, dest: &Name) -> Result<Name> {
        let n = format!("{OLD_PREFIX}{pid}-{}", dest.0);
        if n.len() > 255 {
            return Err(Error::Usage(format!(
                "path {:?} is too long for replace (at most 230 characters); use versioned",
                dest.0
            )));
        }
        Ok(Name(n))
    }

    /// Recognise a temporary left by an earlier push; anything else is not ours.
    pub fn stale(s: &str) -> Option<Stale> {
        if let Some(rest) = s.strip_prefix(TMP_PREFIX) {
            let (id, pid) = rest.split_once('-')?;
            let pid_ok = match pid.split_once('.') {
                Some((p, n)) => is_digits(p) && is_digits(n),
                None => is_digits(pid),
            };
            return (is_id12(id) && pid_ok).then(|| Stale::Tmp(Name(s.to_string())));
        }
        let rest = s.strip_prefix(OLD_PREFIX)?;
        let (pid, dest) = rest.split_once('-')?;
        if !is_digits(pid) {
            return None;
        }
        let dest = Name::distro(dest).ok()?;
        Some(Stale::Old {
            name: Name(s.to_string()),
            dest,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a remote shell argument relative to `distros/`: `./` first, so that
    /// a path starting with `-` is never read as an option, then single-quoted.
    pub fn arg(&self) -> String {
        sq(&format!("./{}", self.0))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
