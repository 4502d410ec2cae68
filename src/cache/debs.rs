//! The `.deb` pool: downloaded packages shared by bootstraps, handed to each build as its own
//! directory and harvested back by rename, so no build reads half a package.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::*;

impl Cache {
    /// A per-build copy of the package directory at `dir` (in the build's scratch
    /// directory), for a bootstrap or an upgrade to read: hard links when `link` (only for
    /// a reader that never writes into a file it found, as mmdebstrap's `sync-in` and apt,
    /// which replaces by rename) and the filesystem allows, copies otherwise (debootstrap
    /// re-downloads a damaged file in place). See [`Cache::harvest`].
    pub fn debs_for_build(&self, dir: &Path, link: bool) -> Result<PathBuf> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let shared = self.debs_dir();
        for e in std::fs::read_dir(&shared)
            .map_err(|er| Error::io(&shared, er))?
            .flatten()
        {
            let name = e.file_name();
            if !name.to_string_lossy().ends_with(".deb") {
                continue;
            }
            let to = dir.join(&name);
            if !link || std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).map_err(|er| Error::io(&to, er))?;
            }
        }
        Ok(dir)
    }

    /// Add the packages a bootstrap left in `dir` to the shared directory: each copied to a
    /// temporary name and renamed, so no build ever reads half a package.
    pub fn harvest(&self, dir: &Path) -> Result<usize> {
        let shared = self.debs_dir();
        let mut added = 0;
        for e in std::fs::read_dir(dir)
            .map_err(|er| Error::io(dir, er))?
            .flatten()
        {
            let name = e.file_name();
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() || !name.to_string_lossy().ends_with(".deb") {
                continue;
            }
            let dest = shared.join(&name);
            if dest.metadata().is_ok_and(|d| d.len() == m.len()) {
                continue;
            }
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&shared)
                .map_err(|er| Error::io(&shared, er))?;
            let mut src = File::open(e.path()).map_err(|er| Error::io(&e.path(), er))?;
            std::io::copy(&mut src, tmp.as_file_mut()).map_err(|er| Error::io(&dest, er))?;
            tmp.persist(&dest)
                .map_err(|er| Error::io(&dest, er.error))?;
            added += 1;
        }
        Ok(added)
    }
}
