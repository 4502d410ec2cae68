//! Flag groups several commands share: how to reach the API (`distros`, `storage`,
//! `push`, `outdated`) and how to reach storage containers (`push`, `build --publish`,
//! `distros gc`, `outdated --to`), so one set of flags serves a whole pipeline.

use std::path::PathBuf;
use std::sync::Arc;

use build_distro::api::{self, Client, Settings};
use build_distro::lifecycle;
use build_distro::progress::Verbosity;
use build_distro::push::ssh::SshConfig;
use build_distro::push::TransportSpec;

use super::Ctx;

/// Where support windows are read (`check`, `build`, `outdated`, `distros audit`): Debian's
/// own data, as its packages install it unless named.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SupportFlags {
    /// distro-info-data's directory (debian.csv, ubuntu.csv) [default: /usr/share/distro-info,
    /// else build-distro's dated copy].
    #[arg(long, value_name = "DIR", env = "BUILD_DISTRO_DISTRO_INFO")]
    pub distro_info: Option<PathBuf>,
    /// debian-security-support's directory (security-support.debN, or
    /// security-support-ended.debN and security-support-limited) [default:
    /// /usr/share/debian-security-support].
    #[arg(long, value_name = "DIR", env = "BUILD_DISTRO_SECURITY_SUPPORT")]
    pub security_support: Option<PathBuf>,
}

/// How `outdated` and `distros audit` compare a distro with its distribution.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareFlags {
    /// The distribution's archive (default: the tree's apt sources, else
    /// http://deb.debian.org/debian); for Alpine, the mirror root holding vX.Y/main.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// The security archive (default: the tree's apt sources, else
    /// http://deb.debian.org/debian-security).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// Accept a release past its end of security support: compare it with the mirror
    /// anyway, and exit 0 when nothing is pending (by default: exit 1, not compared).
    #[arg(long)]
    pub allow_eol: bool,
    /// Do not read the CVE IDs a security update fixes (no .deb is fetched).
    #[arg(long)]
    pub no_fixes: bool,
    #[command(flatten)]
    pub support: SupportFlags,
}

impl CompareFlags {
    pub fn options(&self) -> build_distro::outdated::Options {
        build_distro::outdated::Options {
            mirror: self.mirror.clone(),
            security_mirror: self.security_mirror.clone(),
            cache_dir: build_distro::mirror::client::default_cache_dir(),
            lifecycle: self.support.sources(),
            today: lifecycle::today(),
            allow_eol: self.allow_eol,
            fixes: !self.no_fixes,
        }
    }
}

impl SupportFlags {
    pub fn sources(&self) -> lifecycle::Sources {
        lifecycle::Sources {
            distro_info: self.distro_info.clone(),
            security_support: self.security_support.clone(),
            packaged: None,
        }
    }
}

/// How to reach the API. The password is never a flag (it would show in `ps`): it comes
/// from UWSGI_IT_PASSWORD or a file.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiOpts {
    /// API base URL, e.g. https://example.com/api.
    #[arg(long, value_name = "URL", env = api::ENV_API, hide_env_values = true)]
    pub api: Option<String>,
    /// API user name.
    #[arg(long, value_name = "NAME", env = api::ENV_USER, hide_env_values = true)]
    pub user: Option<String>,
    /// File whose first line is the API password (else UWSGI_IT_PASSWORD).
    #[arg(long, value_name = "FILE", env = api::ENV_PASSWORD_FILE, hide_env_values = true)]
    pub password_file: Option<PathBuf>,
    /// Trust only this PEM CA certificate for the API (a supplier's private CA).
    #[arg(long, value_name = "FILE", env = api::ENV_CA_FILE, hide_env_values = true)]
    pub ca_file: Option<PathBuf>,
    /// Seconds one attempt of an API call may take (a reply slower than this counts as
    /// lost, and the call is retried or its effect read back).
    #[arg(long, value_name = "SECS", env = api::ENV_TIMEOUT, default_value_t = api::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_timeout: u64,
    /// Extra attempts after a transient API failure (connection refused or reset,
    /// timeout, 429, 502, 503, 504), with backoff; writes are sent again only after
    /// reading the state back.
    #[arg(long, value_name = "N", env = api::ENV_RETRIES, default_value_t = api::RetryPolicy::default().retries,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub api_retries: u32,
}

impl ApiOpts {
    /// A client that traces every call with `-v`.
    pub fn client(&self, ctx: &Ctx) -> build_distro::Result<Client> {
        let settings = Settings::resolve(
            self.api.clone(),
            self.user.clone(),
            self.password_file.as_deref(),
            self.ca_file.clone(),
        )?;
        let settings = Settings {
            timeout: std::time::Duration::from_secs(self.api_timeout),
            retry: api::RetryPolicy {
                retries: self.api_retries,
                ..settings.retry
            },
            ..settings
        };
        let mut client = Client::new(settings)?;
        let reporter = Arc::new(ctx.reporter());
        if let Some(rest) = client.base_url().strip_prefix("http://") {
            let loopback = ["127.", "localhost/", "localhost:", "[::1]"]
                .iter()
                .any(|p| rest.starts_with(p))
                || rest == "localhost";
            if !loopback {
                reporter.warn(&format!(
                    "{} is plain http: the password travels unencrypted",
                    client.base_url()
                ));
            }
        }
        if ctx.verbosity == Verbosity::Verbose {
            client = client.with_trace(move |line| reporter.debug(&format!("api: {line}")));
        }
        Ok(client)
    }
}

/// How to reach storage containers: shared by `push`, `build --publish` and `distros gc`,
/// so one set of flags serves a whole pipeline.
#[derive(Debug, clap::Args)]
pub struct TransportFlags {
    /// ssh (a push streams the archive into tar), rsync (a push sends only what changed,
    /// unchanged files hard-linked to the previous version; otherwise as ssh) or local:DIR
    /// (DIR holds the homes, as /containers does on a server).
    #[arg(long, default_value = "ssh", value_name = "ssh|rsync|local:DIR")]
    pub transport: String,
    #[command(flatten)]
    pub ssh: SshFlags,
}

impl TransportFlags {
    /// The transport these flags name (`bwlimit` is rsync's, from `push` only).
    pub fn spec(&self, bwlimit: Option<u32>) -> build_distro::Result<TransportSpec> {
        Ok(TransportSpec::parse(
            &self.transport,
            self.ssh.config()?,
            bwlimit,
        )?)
    }
}

/// How ssh reaches a storage container: part of [`TransportFlags`], and alone in
/// `outdated --to` (which only reads).
#[derive(Debug, clap::Args)]
pub struct SshFlags {
    /// Connect to this host instead of the storage container's server address.
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Option<String>,
    /// ssh port (default: your ssh config, else 22).
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// ssh private key (default: your ssh config and agent).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Passed to ssh as `-o KEY=VALUE` (repeatable).
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
}

impl SshFlags {
    pub fn config(&self) -> build_distro::Result<SshConfig> {
        Ok(SshConfig::new(
            self.ssh_host.clone(),
            self.ssh_port,
            self.identity.clone(),
            &self.ssh_options,
        )?)
    }
}
