//! The rsync transport: rsync over the same ssh as [`super::ssh`], from a local tree, with
//! `--link-dest` against the previous version so unchanged files become hard links to it
//! (no transfer, no quota). Everything but the upload is the ssh transport's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::ssh::Ssh;
use super::{Distro, Error, Listed, Measure, Name, Result, Transport};
use crate::progress::Bar;
use crate::runner::Cmd;

pub struct Rsync {
    pub ssh: Ssh,
    /// `--bwlimit` in KiB/s.
    pub bwlimit: Option<u32>,
}

impl Rsync {
    /// `rsync … SRC/ UID@HOST:distros/TMP/`. Owners are not sent (the remote user is not
    /// root), devices never (the platform binds its own /dev).
    pub fn command(&self, src: &Path, tmp: &Name, prev: Option<&Name>) -> Result<Cmd> {
        if self.ssh.host.contains(':') {
            return Err(Error::Usage(format!(
                "rsync cannot take the IPv6 address {} as it is: use a host name, or --transport ssh",
                self.ssh.host
            )));
        }
        let mut src: OsString = src.as_os_str().to_os_string();
        src.push("/");
        // --checksum: size and mtime say nothing here. Packing clamps mtimes to
        // SOURCE_DATE_EPOCH and the provenance file always has the same size and time, so
        // a changed file can look unchanged and would be hard-linked to the old content.
        // Checksums cost reading both trees, never sending them.
        let mut c = Cmd::new("rsync").args(["-rlptH", "-z", "--checksum", "--stats"]);
        if let Some(b) = self.bwlimit {
            c = c.arg(format!("--bwlimit={b}"));
        }
        if let Some(p) = prev {
            // Relative to the destination directory: a sibling under distros/.
            c = c.arg(format!("--link-dest=../{p}"));
        }
        Ok(c.arg("-e")
            .arg(self.ssh.rsh())
            .arg("--")
            .arg(src)
            .arg(format!("{}:distros/{tmp}/", self.ssh.destination())))
    }
}

/// `Total bytes sent: 1,234` from `rsync --stats`.
pub fn bytes_sent(stats: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Total bytes sent:")
            .map(|v| v.trim().replace([',', '.'], ""))
            .and_then(|v| v.parse().ok())
    })
}

impl Transport for Rsync {
    fn describe(&self) -> String {
        self.ssh.describe()
    }

    fn list(&self) -> Result<Vec<Listed>> {
        self.ssh.list()
    }

    fn content_id(&self, name: &Name) -> Result<Option<String>> {
        self.ssh.content_id(name)
    }

    fn upload(&self, d: &Distro, tmp: &Name, prev: Option<&Name>, bar: &Bar) -> Result<u64> {
        let src = d.tree().ok_or_else(|| Error::Remote {
            target: self.describe(),
            detail: "rsync needs a local tree and none was prepared".into(),
        })?;
        bar.set_message(&match prev {
            Some(p) => format!("rsync against {p}"),
            None => "rsync".into(),
        });
        let out = self
            .ssh
            .runner
            .run(&self.command(&src, tmp, prev)?)
            .map_err(|e| self.ssh.error(e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = bytes_sent(&text).unwrap_or(0);
        bar.inc(sent);
        Ok(sent)
    }

    fn measure(&self, name: &Name) -> Result<Measure> {
        self.ssh.measure(name)
    }

    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        self.ssh.hashes(name)
    }

    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()> {
        self.ssh.install(tmp, dest, aside)
    }

    fn restore(&self, from: &Name, to: &Name) -> Result<()> {
        self.ssh.restore(from, to)
    }

    fn remove(&self, name: &Name) -> Result<()> {
        self.ssh.remove(name)
    }

    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>> {
        self.ssh.disk_usage(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::ssh::SshConfig;
    use crate::runner::Recording;
    use std::sync::Arc;

    fn rsync(host: &str, bw: Option<u32>) -> Rsync {
        let cfg = SshConfig::new(None, Some(2200), None, &["BatchMode=yes".into()]).unwrap();
        Rsync {
            ssh: Ssh::new(&cfg, 30001, Some(host), Arc::new(Recording::default())).unwrap(),
            bwlimit: bw,
        }
    }

    #[test]
    fn command_vector() {
        let t = Name::tmp("0123456789ab", 5).unwrap();
        let p = Name::distro("deb-aaaaaaaaaaaa").unwrap();
        let c = rsync("10.0.0.9", Some(500))
            .command(Path::new("/w/rootfs"), &t, Some(&p))
            .unwrap();
        assert_eq!(
            c.args,
            [
                "-rlptH",
                "-z",
                "--checksum",
                "--stats",
                "--bwlimit=500",
                "--link-dest=../deb-aaaaaaaaaaaa",
                "-e",
                "ssh '-p' '2200' '-o' 'BatchMode=yes'",
                "--",
                "/w/rootfs/",
                "30001@10.0.0.9:distros/.bd+tmp-0123456789ab-5/",
            ]
            .map(OsString::from)
        );
        let c = rsync("h", None)
            .command(Path::new("/w/rootfs"), &t, None)
            .unwrap();
        assert!(!c
            .args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--link-dest")));
        assert!(rsync("::1", None)
            .command(Path::new("/w"), &t, None)
            .is_err());
    }

    #[test]
    fn stats_parsing() {
        let s = "Number of files: 3\nTotal bytes sent: 1,234,567\nTotal bytes received: 35\n";
        assert_eq!(bytes_sent(s), Some(1234567));
        assert_eq!(bytes_sent("Total bytes sent: 812\n"), Some(812));
        assert_eq!(bytes_sent("nothing"), None);
    }
}
