//! Checks on the merged recipe that no single key can express (a name that must serve as
//! the path, exactly one of two keys, files that must exist, globs that must parse).

use super::types::{Recipe, SourceSpec};
use super::values::check_api_path;
use super::{Error, Result};

impl Recipe {
    /// Checks on the merged recipe that no single key can express.
    pub fn validate(&self, file: &str) -> Result<()> {
        let invalid = |msg: String| Error::Invalid {
            file: file.to_string(),
            msg,
        };
        let name =
            self.distro.name.as_ref().ok_or_else(|| {
                invalid("[distro] name is missing; add name = \"my-distro\"".into())
            })?;
        if self.distro.path.is_none() {
            check_api_path(name).map_err(|m| {
                invalid(format!(
                    "[distro] name {name:?} cannot serve as the path ({m}); add path = \"...\""
                ))
            })?;
        }
        let source = self.source.as_ref().ok_or_else(|| {
            invalid(
                "[source] is missing; add type = \"debootstrap\" and suite = \"bookworm\"".into(),
            )
        })?;
        if let SourceSpec::Rootfs(r) = source {
            match (&r.dir, &r.tar) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        "[source] type = \"rootfs\" takes exactly one of dir or tar".into(),
                    ))
                }
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            let key = format!("[[files]] #{} ({})", i + 1, f.path);
            match (&f.content, &f.source) {
                (Some(_), None) => {}
                (None, Some(src)) => {
                    if !src.is_file() {
                        return Err(invalid(format!(
                            "{key}: source {} is not a file; fix the path (relative to the recipe)",
                            src.display()
                        )));
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "{key}: give exactly one of content or source"
                    )))
                }
            }
        }
        for g in &self.remove.paths {
            if !g.starts_with('/') || g.split('/').any(|p| p == "..") {
                return Err(invalid(format!(
                    "[remove] paths: {g:?} must be absolute and without `..`"
                )));
            }
            glob::Pattern::new(g).map_err(|e| invalid(format!("[remove] paths: {g:?}: {e}")))?;
        }
        Ok(())
    }
}
