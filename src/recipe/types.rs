//! The recipe's sections as serde reads them (every key known: `deny_unknown_fields`),
//! and [`Loaded`], a recipe ready to build with where it came from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::values::{
    ApiName, ApiPath, FileMode, LocaleName, MirrorUrl, PackageName, TreePath, Word,
};

/// A whole recipe. Every section is optional in a file (a recipe that `extends` another
/// names only what it changes); [`Recipe::validate`] checks the merged result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// A recipe file (relative to this one) or recipe name this one builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    #[serde(default)]
    pub distro: Distro,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub run: Vec<RunSpec>,
    #[serde(default)]
    pub remove: Remove,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slim: Option<Slim>,
    #[serde(default)]
    pub uwsgi: Uwsgi,
    #[serde(default)]
    pub nss: Nss,
    #[serde(default)]
    pub check: CheckSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distro {
    pub name: Option<ApiName>,
    /// Storage directory; defaults to the name when that fits the charset.
    pub path: Option<ApiPath>,
    pub note: Option<String>,
}

/// Where the tree comes from. The enum *is* the list of source backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    Debootstrap(Bootstrap),
    Mmdebstrap(Bootstrap),
    Docker(DockerSource),
    ImageArchive(ImageArchiveSource),
    Rootfs(RootfsSource),
    Registry(RegistrySource),
}

impl Recipe {
    /// The `[slim]` section when it is on.
    pub fn slim(&self) -> Option<&Slim> {
        self.slim.as_ref().filter(|s| s.enabled)
    }
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Debootstrap(_) => "debootstrap",
            SourceSpec::Mmdebstrap(_) => "mmdebstrap",
            SourceSpec::Docker(_) => "docker",
            SourceSpec::ImageArchive(_) => "image-archive",
            SourceSpec::Rootfs(_) => "rootfs",
            SourceSpec::Registry(_) => "registry",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    pub suite: Word,
    #[serde(default)]
    pub variant: Option<Word>,
    #[serde(default)]
    pub components: Vec<Word>,
    #[serde(default)]
    pub mirror: Option<MirrorUrl>,
    #[serde(default)]
    pub packages: Vec<PackageName>,
    #[serde(default)]
    pub arch: Option<Word>,
    /// OpenPGP keyring (binary or armored) that signs the mirror's `InRelease`, for a
    /// mirror the host's apt keys do not cover; relative to the recipe.
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// `debian` or `ubuntu`: decides the default mirrors and which suites exist. Unset:
    /// `ubuntu` when the mirror URL names ubuntu, else `debian`.
    #[serde(default)]
    pub distribution: Option<Distribution>,
    /// Install from `<suite>-updates` too (when the suite has one).
    #[serde(default = "yes")]
    pub updates: bool,
    /// Install from `<suite>-security` too (when the suite has one).
    #[serde(default = "yes")]
    pub security: bool,
    /// Where `<suite>-security` is; default: Debian's `http://deb.debian.org/debian-security`,
    /// Ubuntu's archive (the mirror) for Ubuntu.
    #[serde(default)]
    pub security_mirror: Option<MirrorUrl>,
}

fn yes() -> bool {
    true
}

/// The Debian-family distributions a bootstrap source can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Debian,
    Ubuntu,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pull {
    #[default]
    Missing,
    Always,
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSource {
    pub image: String,
    #[serde(default)]
    pub pull: Pull,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageArchiveSource {
    /// `docker save` archive or OCI layout (directory or tar); relative to the recipe.
    pub file: PathBuf,
    /// Which image, when the archive holds several (`name:tag`).
    #[serde(default)]
    pub image: Option<String>,
}

/// An image pulled from an OCI/Docker registry, no engine needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    /// `HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`; short names mean Docker Hub.
    pub image: String,
    /// `OS/ARCH[/VARIANT]` chosen from a multi-platform image; default linux/amd64.
    #[serde(default)]
    pub platform: Option<String>,
    /// Allow plain HTTP to a registry that is not on this machine.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsSource {
    /// An existing directory (copied, never modified).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A tar or tar.gz of a root filesystem.
    #[serde(default)]
    pub tar: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub install: Vec<PackageName>,
    #[serde(default)]
    pub remove: Vec<PackageName>,
    /// Upgrade every installed package (apt: `dist-upgrade` from the release, its
    /// `-updates` and `-security` suites; apk: `apk upgrade`) before installing.
    #[serde(default)]
    pub upgrade: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: TreePath,
    #[serde(default)]
    pub mode: Option<FileMode>,
    #[serde(default)]
    pub content: Option<String>,
    /// Relative to the recipe that names it; made absolute when the recipe is loaded.
    #[serde(default)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub command: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// Globs of absolute paths inside the tree, removed after the run commands.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[slim]`: documentation, man and info pages and translations kept out of the tree,
/// as Debian's slim images do (copyright files stay: licences must ship). A section
/// present is on unless `enabled = false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slim {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Directories of `/usr/share/locale` kept (`en_GB`, `pt_BR`, `sr@latin`).
    #[serde(default)]
    pub keep_locales: Vec<LocaleName>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uwsgi {
    /// The uWSGI binary inside the tree; auto-detected when unset.
    pub binary: Option<TreePath>,
    /// The tree's plugin directory; auto-detected when unset.
    pub plugins: Option<TreePath>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NssMode {
    /// The module on glibc trees, passwd lines on musl trees.
    #[default]
    Auto,
    Module,
    Passwd,
    None,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nss {
    #[serde(default)]
    pub mode: NssMode,
    /// Container uids that get passwd/group lines in `passwd` mode.
    #[serde(default)]
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Rule ids accepted knowingly (recorded in the provenance).
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Versioned,
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PublishTo {
    /// "all": every storage container of the customer.
    Named(String),
    Uids(Vec<u32>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub to: PublishTo,
    #[serde(default)]
    pub strategy: Strategy,
    /// Containers to map onto the new distro after it is registered.
    #[serde(default)]
    pub assign: Vec<u32>,
}

/// A recipe ready to build, and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub recipe: Recipe,
    /// "recipes/x.toml" or "builtin:debian-bookworm", for messages and provenance.
    pub origin: String,
    /// `--set` overrides as given.
    pub sets: Vec<String>,
}

impl Loaded {
    /// The distro's API name (validated present).
    pub fn name(&self) -> &str {
        self.recipe.distro.name.as_deref().expect("validated")
    }

    /// The storage path: `[distro] path`, else the name.
    pub fn path(&self) -> &str {
        self.recipe
            .distro
            .path
            .as_deref()
            .or(self.recipe.distro.name.as_deref())
            .expect("validated")
    }

    pub fn source(&self) -> &SourceSpec {
        self.recipe.source.as_ref().expect("validated")
    }
}
