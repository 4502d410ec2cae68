//! Mirror indexes (day 2): what the distribution publishes now, to compare with what a
//! distro has installed. The readers of the archives' formats — [`inrelease`],
//! [`packages`], [`apkindex`], the tree's apt [`sources`] — return plain data from the
//! bytes they are given; [`client`] fetches over HTTP, verifies `InRelease` signatures
//! with gpgv (through the runner seam) and every index against the verified hashes, and
//! keeps verified indexes in an on-disk cache. [`version`] orders versions the way dpkg
//! and apk do. For the CVE IDs of a pending update, the client also fetches the candidate
//! `.deb` (verified against the signed `Packages` entry), [`deb`] finds its
//! `changelog.Debian.gz` and [`changelog`] reads the entries and the IDs they name.
//!
//! Architecture invariant: nothing here knows about trees, tarballs or ssh; `outdated`
//! brings the installed side.

pub mod apkindex;
pub mod apkver;
pub mod changelog;
pub mod client;
pub mod deb;
pub mod inrelease;
pub mod keyring;
pub mod packages;
pub mod sources;
pub mod version;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {msg}")]
    Parse { what: String, msg: String },
    #[error("{url}: mirror unreachable ({detail}); check the network or pass --mirror/--security-mirror")]
    Unreachable { url: String, detail: String },
    #[error(
        "{url}: not found (HTTP 404); is the suite name right, and does this mirror carry it?"
    )]
    NotFound { url: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: bad or missing signature, refusing to trust it ({detail})")]
    Signature { url: String, detail: String },
    #[error(
        "{url}: expired (Valid-Until {valid_until}); the mirror is stale or replays an old release"
    )]
    Expired { url: String, valid_until: String },
    #[error("{url}: this is the release file of {found:?}, not of {wanted:?}; refusing a substituted suite")]
    WrongSuite {
        url: String,
        wanted: String,
        found: String,
    },
    #[error("{url}: {detail} (the InRelease says {expected}); refusing the index")]
    Mismatch {
        url: String,
        detail: String,
        expected: String,
    },
    #[error("{url}: {detail} (the signed Packages index says {expected}); refusing the package")]
    PackageMismatch {
        url: String,
        detail: String,
        expected: String,
    },
    #[error("no keyring to verify {what} with: the tree has none under /etc/apt/trusted.gpg.d, /usr/share/keyrings or Signed-By, and the host has no {host}; install it with: apt-get install {package}")]
    NoKeyring {
        what: String,
        host: String,
        package: String,
    },
    #[error("keyring {name}: {msg}")]
    Keyring { name: String, msg: String },
    #[error("index cache {path}: {source}; set BUILD_DISTRO_CACHE_DIR to a writable directory")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runner(#[from] crate::runner::Error),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Everything here is bad input (a suite, a mirror, a signature, an index) except an
    /// interrupt and a cache the machine cannot write.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted | Error::Cache { .. } => 1,
            Error::Runner(e) => e.exit_code().max(2),
            _ => 2,
        }
    }
}
