//! The transports as one type: an enum that dispatches to ssh, rsync or a local directory
//! ([`AnyTransport`]), and the user's choice of one ([`TransportSpec`]). The trait they
//! implement stays in `push` itself, below them all.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::progress::Bar;

use super::{local, lock, rsync, ssh, Distro, Error, Listed, Measure, Name, Result, Transport};

/// The transports, as one type.
pub enum AnyTransport {
    Ssh(ssh::Ssh),
    Rsync(rsync::Rsync),
    Local(local::Local),
}

impl AnyTransport {
    fn inner(&self) -> &dyn Transport {
        match self {
            AnyTransport::Ssh(t) => t,
            AnyTransport::Rsync(t) => t,
            AnyTransport::Local(t) => t,
        }
    }
}

impl Transport for AnyTransport {
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn list(&self) -> Result<Vec<Listed>> {
        self.inner().list()
    }
    fn content_id(&self, name: &Name) -> Result<Option<String>> {
        self.inner().content_id(name)
    }
    fn resumes(&self) -> bool {
        self.inner().resumes()
    }
    fn storage(&self) -> String {
        self.inner().storage()
    }
    fn free_space(&self) -> Result<Option<u64>> {
        self.inner().free_space()
    }
    fn shares_with_previous(&self) -> bool {
        self.inner().shares_with_previous()
    }
    fn upload(&self, d: &Distro, tmp: &Name, prev: Option<&Name>, bar: &Bar) -> Result<u64> {
        self.inner().upload(d, tmp, prev, bar)
    }
    fn measure(&self, name: &Name) -> Result<Measure> {
        self.inner().measure(name)
    }
    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        self.inner().hashes(name)
    }
    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()> {
        self.inner().install(tmp, dest, aside)
    }
    fn restore(&self, from: &Name, to: &Name) -> Result<()> {
        self.inner().restore(from, to)
    }
    fn remove(&self, name: &Name) -> Result<()> {
        self.inner().remove(name)
    }
    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>> {
        self.inner().disk_usage(names)
    }

    fn lock_try(&self, owner: &str) -> Result<lock::LockTry> {
        self.inner().lock_try(owner)
    }
    fn lock_remove(&self, only_if: Option<&str>) -> Result<()> {
        self.inner().lock_remove(only_if)
    }
}

/// How to reach storage containers, as the user chose (`--transport`, ssh flags).
#[derive(Debug, Clone)]
pub enum TransportSpec {
    Ssh(ssh::SshConfig),
    Rsync {
        ssh: ssh::SshConfig,
        bwlimit: Option<u32>,
    },
    /// `local:DIR`: DIR holds the containers' homes (`/containers` on a server).
    Local(PathBuf),
}

impl TransportSpec {
    /// `ssh`, `rsync` or `local:DIR`, with the ssh settings for the first two.
    pub fn parse(s: &str, ssh: ssh::SshConfig, bwlimit: Option<u32>) -> Result<TransportSpec> {
        let spec = match s {
            "ssh" => TransportSpec::Ssh(ssh),
            "rsync" => TransportSpec::Rsync { ssh, bwlimit },
            _ => match s.strip_prefix("local:") {
                Some(d) if !d.is_empty() => TransportSpec::Local(PathBuf::from(d)),
                _ => {
                    return Err(Error::Usage(format!(
                        "transport {s:?}: expected ssh, rsync or local:DIR"
                    )))
                }
            },
        };
        if bwlimit.is_some() && !matches!(spec, TransportSpec::Rsync { .. }) {
            return Err(Error::Usage(
                "--bwlimit works with --transport rsync only".into(),
            ));
        }
        Ok(spec)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TransportSpec::Ssh(_) => "ssh",
            TransportSpec::Rsync { .. } => "rsync",
            TransportSpec::Local(_) => "local",
        }
    }

    /// Whether uploads need a local tree (see [`Distro::prepare_tree`]).
    pub fn needs_tree(&self) -> bool {
        matches!(self, TransportSpec::Rsync { .. })
    }

    /// Whether it needs the storage container's server address.
    pub fn needs_address(&self) -> bool {
        match self {
            TransportSpec::Ssh(c) | TransportSpec::Rsync { ssh: c, .. } => c.host.is_none(),
            TransportSpec::Local(_) => false,
        }
    }

    /// The transport for storage container `uid` at `address`.
    pub fn connect(
        &self,
        uid: u32,
        address: Option<&str>,
        runner: std::sync::Arc<dyn crate::runner::Runner>,
    ) -> Result<AnyTransport> {
        Ok(match self {
            TransportSpec::Ssh(c) => AnyTransport::Ssh(ssh::Ssh::new(c, uid, address, runner)?),
            TransportSpec::Rsync { ssh, bwlimit } => AnyTransport::Rsync(rsync::Rsync {
                ssh: ssh::Ssh::new(ssh, uid, address, runner)?,
                bwlimit: *bwlimit,
            }),
            TransportSpec::Local(dir) => {
                AnyTransport::Local(local::Local::new(dir.join(uid.to_string())))
            }
        })
    }
}
