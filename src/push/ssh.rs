//! The OpenSSH transport: the user's own `ssh` (their config, agent and known_hosts) logs
//! in as the storage container's user and runs short POSIX shell scripts in its home; the
//! upload is the tar stream piped into a remote `tar -x`. The remote user is not root, so
//! tar must not try to restore owners.
//!
//! Every script is built here from [`Name`]s and constants only, and pinned by unit tests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Counting, Distro, Error, Listed, Measure, Name, Result, Transport};
use crate::progress::Bar;
use crate::runner::{Cmd, Runner};

/// How to call ssh, from `--ssh-host`, `--ssh-port`, `--identity`, `--ssh-option`.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    /// Connect here instead of the storage container's `server_address`.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    /// `-o KEY=VALUE`, in order.
    pub options: Vec<(String, String)>,
}

/// A host name or address ssh and rsync can take as it is: never an option, never a
/// second argument.
pub fn check_host(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && !h.starts_with('-')
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "ssh host {h:?}: only a host name or an IP address is allowed"
        )))
    }
}

/// Something that ends up inside rsync's `-e` string, which rsync splits itself: no
/// single quotes and no line breaks.
fn check_rsh_word(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.contains(['\'', '\n', '\r']) {
        return Err(Error::Usage(format!(
            "{what} {s:?}: must be non-empty, without quotes or line breaks"
        )));
    }
    Ok(())
}

impl SshConfig {
    /// Parse and check the ssh flags. `options` are `KEY=VALUE` strings.
    pub fn new(
        host: Option<String>,
        port: Option<u16>,
        identity: Option<PathBuf>,
        options: &[String],
    ) -> Result<SshConfig> {
        if let Some(h) = &host {
            check_host(h)?;
        }
        if let Some(i) = &identity {
            check_rsh_word("--identity", &i.to_string_lossy())?;
        }
        let mut opts = Vec::new();
        for o in options {
            let (k, v) = o.split_once('=').ok_or_else(|| {
                Error::Usage(format!(
                    "--ssh-option {o:?}: expected KEY=VALUE, e.g. StrictHostKeyChecking=yes"
                ))
            })?;
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::Usage(format!(
                    "--ssh-option {o:?}: the key must be an ssh_config keyword"
                )));
            }
            check_rsh_word("--ssh-option", o)?;
            opts.push((k.to_string(), v.to_string()));
        }
        Ok(SshConfig {
            host,
            port,
            identity,
            options: opts,
        })
    }

    /// The options before the destination, as separate arguments.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(p) = self.port {
            a.push("-p".into());
            a.push(p.to_string().into());
        }
        if let Some(i) = &self.identity {
            a.push("-i".into());
            a.push(i.into());
        }
        for (k, v) in &self.options {
            a.push("-o".into());
            a.push(format!("{k}={v}").into());
        }
        a
    }
}

/// One storage container reached over ssh.
pub struct Ssh {
    pub uid: u32,
    pub host: String,
    pub config: SshConfig,
    pub runner: Arc<dyn Runner>,
}

impl Ssh {
    /// `address` is the storage container's server address; `--ssh-host` wins over it.
    pub fn new(
        config: &SshConfig,
        uid: u32,
        address: Option<&str>,
        runner: Arc<dyn Runner>,
    ) -> Result<Ssh> {
        let host = config
            .host
            .as_deref()
            .or(address)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no address for storage container {uid}: pass --ssh-host or use the API"
                ))
            })?
            .to_string();
        check_host(&host)?;
        Ok(Ssh {
            uid,
            host,
            config: config.clone(),
            runner,
        })
    }

    /// `UID@HOST`: the platform's ssh user is the container's uid.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.uid, self.host)
    }

    /// `ssh OPTIONS -- UID@HOST SCRIPT`.
    pub fn command(&self, script: &str) -> Cmd {
        Cmd::new("ssh")
            .args(self.config.args())
            .arg("--")
            .arg(self.destination())
            .arg(script)
    }

    /// The remote shell for rsync's `-e`: `ssh` and the same options, each quoted.
    pub fn rsh(&self) -> String {
        let mut s = String::from("ssh");
        for a in self.config.args() {
            s.push(' ');
            s.push_str(&super::sq(&a.to_string_lossy()));
        }
        s
    }

    pub fn error(&self, e: crate::runner::Error) -> Error {
        if let crate::runner::Error::Failed { status, .. } = &e {
            if status == "exit code 3" {
                return Error::Remote {
                    target: self.describe(),
                    detail: format!(
                        "no distros/ directory in the home: is {} a storage container? (build-distro storage enable {})",
                        self.uid, self.uid
                    ),
                };
            }
        }
        Error::Command {
            target: self.describe(),
            source: e,
        }
    }

    /// Run a script, return its stdout.
    pub fn script(&self, script: &str) -> Result<String> {
        let out = self
            .runner
            .run(&self.command(script))
            .map_err(|e| self.error(e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Every script starts in the home; exit status 3 means "not a storage container".
const CD: &str = "cd distros || exit 3";

pub fn list_script() -> String {
    format!("{CD}; find . -mindepth 1 -maxdepth 1 -printf '%T@ %f\\n'")
}

pub fn content_id_script(n: &Name) -> String {
    format!(
        "{CD}; cat -- {}/etc/build-distro.json 2>/dev/null || true",
        n.arg()
    )
}

/// A tar stream of those of `paths` (relative, constants of the caller) that exist in
/// `distros/NAME`, with their parent directories (so the stream reads as a tree),
/// symlinks as symlinks: `outdated` reads a published version with it, never writing.
/// Exit status 4: no such distro. GNU tar (the platform's) for `--no-recursion`.
pub fn files_script(n: &Name, paths: &[&str]) -> String {
    let mut parents: Vec<&str> = Vec::new();
    for p in paths {
        let mut end = 0;
        while let Some(i) = p[end..].find('/') {
            end += i;
            if !parents.contains(&&p[..end]) {
                parents.push(&p[..end]);
            }
            end += 1;
        }
    }
    let q = |v: &[&str]| v.iter().map(|p| super::sq(p)).collect::<Vec<_>>().join(" ");
    let add = "do if [ -e \"$p\" ] || [ -L \"$p\" ]; then set -- \"$@\" \"$p\"; fi; done";
    format!(
        "{CD}; cd -- {} || exit 4; set -- --no-recursion .; for p in {}; {add}; set -- \"$@\" --recursion; for p in {}; {add}; exec tar -cf - \"$@\"",
        n.arg(),
        q(&parents),
        q(paths),
    )
}

pub fn upload_script(tmp: &Name, gzip: bool) -> String {
    let z = if gzip { " -z" } else { "" };
    // -p: modes exactly as packed (the remote umask would strip world bits the other
    // containers need); --no-same-owner: not root there; directory modes set last, so
    // read-only directories still get their content.
    format!(
        "{CD}; mkdir -m 755 -- {t} && tar -x{z} -p --no-same-owner --delay-directory-restore -f - -C {t}",
        t = tmp.arg()
    )
}

pub fn measure_script(n: &Name) -> String {
    format!(
        "{CD}; cd -- {} && find . -mindepth 1 ! -path ./etc/build-distro.json -printf '%y %i %s\\n'",
        n.arg()
    )
}

pub fn hashes_script(n: &Name) -> String {
    format!(
        "{CD}; cd -- {} && find . -type f -print0 | xargs -0 -r sha256sum --",
        n.arg()
    )
}

pub fn install_script(tmp: &Name, dest: &Name, aside: Option<&Name>) -> String {
    let (t, d) = (tmp.arg(), dest.arg());
    let exists = format!("[ -e {d} ] || [ -L {d} ]");
    match aside {
        None => format!(
            "{CD}; chmod 755 -- {t} || exit 1; if {exists}; then echo {msg} >&2; exit 1; fi; mv -T -- {t} {d}",
            msg = super::sq(&format!("distros/{dest} exists already"))
        ),
        Some(a) => {
            let a = a.arg();
            format!(
                "{CD}; chmod 755 -- {t} || exit 1; if {exists}; then mv -T -- {d} {a} || exit 1; fi; mv -T -- {t} {d} || {{ mv -T -- {a} {d}; exit 1; }}"
            )
        }
    }
}

pub fn restore_script(from: &Name, to: &Name) -> String {
    let (f, t) = (from.arg(), to.arg());
    format!("{CD}; if [ -e {t} ] || [ -L {t} ]; then exit 0; fi; mv -T -- {f} {t}")
}

pub fn remove_script(n: &Name) -> String {
    let n = n.arg();
    // The owner cannot empty a read-only directory: make directories writable first
    // (only directories: files may be hard links shared with a live distro).
    format!(
        "{CD}; if [ -d {n} ] && [ ! -L {n} ]; then find {n} -type d ! -perm -u+w -exec chmod u+w {{}} +; fi; rm -rf --one-file-system -- {n}"
    )
}

pub fn disk_usage_script(names: &[Name]) -> String {
    let args: Vec<String> = names.iter().map(Name::arg).collect();
    // -k: KiB, which every du (GNU, busybox) has; one line per argument, in order.
    format!("{CD}; du -sk -- {}", args.join(" "))
}

/// Parse `du -sk` output into bytes, one per line, in order.
pub fn parse_disk_usage(text: &str, expected: usize) -> Option<Vec<u64>> {
    let v: Vec<u64> = text
        .lines()
        .map(|l| {
            l.split('\t')
                .next()?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        })
        .collect::<Option<_>>()?;
    (v.len() == expected).then_some(v)
}

/// Parse [`list_script`] output; lines that do not parse (names with line breaks) are
/// dropped: they cannot be names push made.
pub fn parse_list(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|l| {
            let (t, name) = l.split_once(' ')?;
            Some(Listed {
                name: name.to_string(),
                mtime: t.parse().ok()?,
            })
        })
        .collect()
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        self.destination()
    }

    fn list(&self) -> Result<Vec<Listed>> {
        Ok(parse_list(&self.script(&list_script())?))
    }

    fn content_id(&self, name: &Name) -> Result<Option<String>> {
        let out = self.script(&content_id_script(name))?;
        Ok(super::provenance_content_id(out.as_bytes()))
    }

    fn upload(&self, d: &Distro, tmp: &Name, _prev: Option<&Name>, bar: &Bar) -> Result<u64> {
        let cmd = self.command(&upload_script(tmp, d.stream_is_gzip(true)));
        let mut sent = 0u64;
        self.runner
            .run_fed(&cmd, &mut |w| {
                let mut c = Counting {
                    inner: w,
                    count: 0,
                    bar: Some(bar),
                };
                let r = d.write_stream(&mut c, true);
                sent = c.count;
                r
            })
            .map_err(|e| self.error(e))?;
        Ok(sent)
    }

    fn measure(&self, name: &Name) -> Result<Measure> {
        Ok(Measure::from_find(&self.script(&measure_script(name))?))
    }

    fn hashes(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        Ok(super::parse_sha256sum(&self.script(&hashes_script(name))?))
    }

    fn install(&self, tmp: &Name, dest: &Name, aside: Option<&Name>) -> Result<()> {
        self.script(&install_script(tmp, dest, aside)).map(drop)
    }

    fn restore(&self, from: &Name, to: &Name) -> Result<()> {
        self.script(&restore_script(from, to)).map(drop)
    }

    fn remove(&self, name: &Name) -> Result<()> {
        self.script(&remove_script(name)).map(drop)
    }

    fn disk_usage(&self, names: &[Name]) -> Result<Vec<u64>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.script(&disk_usage_script(names))?;
        parse_disk_usage(&out, names.len()).ok_or_else(|| Error::Remote {
            target: self.describe(),
            detail: format!("du printed something unexpected: {:?}", out.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Recording;

    fn names() -> (Name, Name, Name) {
        let t = Name::tmp("0123456789ab", 77).unwrap();
        let d = Name::distro("deb-12-0123456789ab").unwrap();
        let o = Name::old(77, &d).unwrap();
        (t, d, o)
    }

    #[test]
    fn files_script_reads_only() {
        let n = Name::distro("deb-12-0123456789ab").unwrap();
        assert_eq!(
            files_script(&n, &["etc/os-release", "var/lib/dpkg/status", "etc/apt"]),
            "cd distros || exit 3; cd -- './deb-12-0123456789ab' || exit 4; set -- --no-recursion .; \
             for p in 'etc' 'var' 'var/lib' 'var/lib/dpkg'; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then set -- \"$@\" \"$p\"; fi; done; \
             set -- \"$@\" --recursion; \
             for p in 'etc/os-release' 'var/lib/dpkg/status' 'etc/apt'; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then set -- \"$@\" \"$p\"; fi; done; \
             exec tar -cf - \"$@\""
        );
    }

    #[test]
    fn command_vector() {
        let cfg = SshConfig::new(
            None,
            Some(2222),
            Some("/k/id".into()),
            &[
                "StrictHostKeyChecking=no".into(),
                "UserKnownHostsFile=/t/kh".into(),
            ],
        )
        .unwrap();
        let s = Ssh::new(
            &cfg,
            30001,
            Some("10.0.0.5"),
            Arc::new(Recording::default()),
        )
        .unwrap();
        assert_eq!(
            s.command("true").display(),
            "ssh -p 2222 -i /k/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/t/kh -- 30001@10.0.0.5 true"
        );
        assert_eq!(
            s.rsh(),
            "ssh '-p' '2222' '-i' '/k/id' '-o' 'StrictHostKeyChecking=no' '-o' 'UserKnownHostsFile=/t/kh'"
        );
        let cfg = SshConfig::new(Some("127.0.0.2".into()), None, None, &[]).unwrap();
        let s = Ssh::new(
            &cfg,
            30002,
            Some("10.0.0.5"),
            Arc::new(Recording::default()),
        )
        .unwrap();
        assert_eq!(s.destination(), "30002@127.0.0.2", "--ssh-host wins");
    }

    #[test]
    fn hosts_and_options_are_checked() {
        for bad in ["-oProxyCommand=x", "a b", "h;id", "", "a'b"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_host("storage-1.example.com").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(SshConfig::new(None, None, None, &["NoEquals".into()]).is_err());
        assert!(SshConfig::new(None, None, None, &["Proxy Command=x".into()]).is_err());
        assert!(SshConfig::new(None, None, None, &["A=it's".into()]).is_err());
        let e = Ssh::new(
            &SshConfig::default(),
            1,
            None,
            Arc::new(Recording::default()),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("--ssh-host"), "{e}");
        assert!(Ssh::new(
            &SshConfig::default(),
            1,
            Some("-oProxyCommand=sh"),
            Arc::new(Recording::default())
        )
        .is_err());
    }

    #[test]
    fn scripts_are_pinned() {
        let (t, d, o) = names();
        assert_eq!(
            list_script(),
            "cd distros || exit 3; find . -mindepth 1 -maxdepth 1 -printf '%T@ %f\\n'"
        );
        assert_eq!(
            content_id_script(&d),
            "cd distros || exit 3; cat -- './deb-12-0123456789ab'/etc/build-distro.json 2>/dev/null || true"
        );
        assert_eq!(
            upload_script(&t, true),
            "cd distros || exit 3; mkdir -m 755 -- './.bd+tmp-0123456789ab-77' && tar -x -z -p --no-same-owner --delay-directory-restore -f - -C './.bd+tmp-0123456789ab-77'"
        );
        assert_eq!(
            upload_script(&t, false),
            "cd distros || exit 3; mkdir -m 755 -- './.bd+tmp-0123456789ab-77' && tar -x -p --no-same-owner --delay-directory-restore -f - -C './.bd+tmp-0123456789ab-77'"
        );
        assert_eq!(
            measure_script(&t),
            "cd distros || exit 3; cd -- './.bd+tmp-0123456789ab-77' && find . -mindepth 1 ! -path ./etc/build-distro.json -printf '%y %i %s\\n'"
        );
        assert_eq!(
            hashes_script(&t),
            "cd distros || exit 3; cd -- './.bd+tmp-0123456789ab-77' && find . -type f -print0 | xargs -0 -r sha256sum --"
        );
        assert_eq!(
            install_script(&t, &d, None),
            "cd distros || exit 3; chmod 755 -- './.bd+tmp-0123456789ab-77' || exit 1; if [ -e './deb-12-0123456789ab' ] || [ -L './deb-12-0123456789ab' ]; then echo 'distros/deb-12-0123456789ab exists already' >&2; exit 1; fi; mv -T -- './.bd+tmp-0123456789ab-77' './deb-12-0123456789ab'"
        );
        assert_eq!(
            install_script(&t, &d, Some(&o)),
            "cd distros || exit 3; chmod 755 -- './.bd+tmp-0123456789ab-77' || exit 1; if [ -e './deb-12-0123456789ab' ] || [ -L './deb-12-0123456789ab' ]; then mv -T -- './deb-12-0123456789ab' './.bd+old-77-deb-12-0123456789ab' || exit 1; fi; mv -T -- './.bd+tmp-0123456789ab-77' './deb-12-0123456789ab' || { mv -T -- './.bd+old-77-deb-12-0123456789ab' './deb-12-0123456789ab'; exit 1; }"
        );
        assert_eq!(
            restore_script(&o, &d),
            "cd distros || exit 3; if [ -e './deb-12-0123456789ab' ] || [ -L './deb-12-0123456789ab' ]; then exit 0; fi; mv -T -- './.bd+old-77-deb-12-0123456789ab' './deb-12-0123456789ab'"
        );
        assert_eq!(
            remove_script(&t),
            "cd distros || exit 3; if [ -d './.bd+tmp-0123456789ab-77' ] && [ ! -L './.bd+tmp-0123456789ab-77' ]; then find './.bd+tmp-0123456789ab-77' -type d ! -perm -u+w -exec chmod u+w {} +; fi; rm -rf --one-file-system -- './.bd+tmp-0123456789ab-77'"
        );
    }

    #[test]
    fn disk_usage_script_and_output() {
        let (t, d, _) = names();
        assert_eq!(
            disk_usage_script(&[d, t]),
            "cd distros || exit 3; du -sk -- './deb-12-0123456789ab' './.bd+tmp-0123456789ab-77'"
        );
        assert_eq!(
            parse_disk_usage("120\t./a\n4\t./b\n", 2),
            Some(vec![120 * 1024, 4 * 1024])
        );
        assert_eq!(parse_disk_usage("120\t./a\n", 2), None);
        assert_eq!(parse_disk_usage("du: cannot access\n", 1), None);
    }

    #[test]
    fn a_hostile_api_path_cannot_reach_the_shell() {
        // Names are validated before any script exists; this pins that no path outside
        // the charset can be turned into one.
        for p in ["x'; rm -rf ~; '", "$(id)", "a b", "`id`", "x\ny"] {
            assert!(Name::distro(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn list_output() {
        let l = parse_list(
            "1700000000.5 deb-1\n1700000001.0000000000 .bd+tmp-0123456789ab-1\nbroken\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "deb-1");
        assert_eq!(l[1].mtime, 1700000001.0);
    }

    #[test]
    fn exit_3_means_not_a_storage_container() {
        let rec = Arc::new(Recording {
            fail_program: Some("ssh".into()),
            ..Default::default()
        });
        let s = Ssh::new(&SshConfig::default(), 30001, Some("h"), rec.clone()).unwrap();
        // Recording fails with exit code 1: a plain command error naming the target.
        let e = s.list().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("30001@h: `ssh -- 30001@h 'cd distros"),
            "{e}"
        );
        let e3 = s.error(crate::runner::Error::Failed {
            command: "ssh".into(),
            status: "exit code 3".into(),
            tail: String::new(),
        });
        assert!(
            e3.to_string().contains("build-distro storage enable 30001"),
            "{e3}"
        );
    }
}
