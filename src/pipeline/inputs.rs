//! The build's inputs that are not in its recipe, resolved in this one place and handed
//! down: the epoch (the user's `SOURCE_DATE_EPOCH`, which the binary reads from the
//! environment; else the newest `InRelease` date of a bootstrap; else an image's creation
//! time), the architecture a bootstrap builds for and the tool's version. Every one of
//! them that shapes a source tree is in that tree's cache key (with the bootstrap
//! program's own version, asked of it in `pipeline::source`), so a cached tree is served
//! only when they are all equal.

use crate::build_inputs::Epoch;
use crate::cache::Key;
use crate::recipe::{Bootstrap, SourceSpec};
use crate::source::ReleaseRef;

/// What a build is made from besides the recipe.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub epoch: Epoch,
    pub tool_version: &'static str,
}

impl Inputs {
    /// The inputs of a build under the user's `SOURCE_DATE_EPOCH` (`None`: not set).
    pub fn new(source_date_epoch: Option<u64>) -> Inputs {
        Inputs {
            epoch: Epoch::given(source_date_epoch),
            tool_version: crate::build_inputs::VERSION,
        }
    }

    /// The Debian architecture a bootstrap builds for: the recipe's, else the host's.
    pub fn bootstrap_arch(b: &Bootstrap) -> String {
        b.arch.as_deref().unwrap_or(host_arch()).to_string()
    }

    /// The cache key of the tree `spec` makes for `arch` from `releases` (a bootstrap)
    /// or the image manifest `digest` (a registry), run under `epoch`.
    pub fn key(
        &self,
        spec: &SourceSpec,
        arch: &str,
        releases: &[ReleaseRef],
        digest: Option<String>,
        epoch: Option<u64>,
    ) -> Key {
        Key {
            tool_version: self.tool_version.to_string(),
            epoch,
            ..Key::new(spec, arch, releases, digest)
        }
    }
}

/// The Debian name of the host's architecture (what a bootstrap without `arch` builds).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        other => other,
    }
}
