//! Recipes: the declarative TOML that drives a build. Loading reads the file (a path, a
//! name in `recipes/`, or a built-in), follows `extends`, applies `--set` overrides, and
//! validates. Every key is known (`deny_unknown_fields`); errors name file, line, column
//! and key. Values that later reach programs (suites, package names, mirrors, paths) are
//! validated here, when the file is read, so no stage has to re-check them.
//!
//! Split at its seams: `types` are the recipe's sections as serde reads them, `values`
//! the checked strings a single key holds (each validates itself when read), `load`
//! finds, merges (`extends`) and overrides (`--set`) recipe files, and `validate` checks
//! the merged recipe as a whole.

mod load;
mod types;
mod validate;
mod values;

pub use load::{load, parse_str, BUILTIN, DEFAULT};
pub use types::{
    Bootstrap, CheckSpec, Distribution, Distro, DockerSource, FileSpec, ImageArchiveSource, Loaded,
    Nss, NssMode, Packages, Publish, PublishTo, Pull, Recipe, RegistrySource, Remove, RootfsSource,
    RunSpec, Slim, SourceSpec, Strategy, Uwsgi,
};
pub use values::{
    check_api_path, ApiName, ApiPath, FileMode, LocaleName, MirrorUrl, PackageName, TreePath, Word,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}:{line}:{col}: {msg}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("recipe {name:?} not found: no such file and no recipes/{name}.toml (built in: {available})")]
    NotFound { name: String, available: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--set {arg}: {msg}")]
    Set { arg: String, msg: String },
}

type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
