//! `debootstrap` and `mmdebstrap` backends: the same recipe keys, two argument styles.
//! Both install from the release and its `-updates` and `-security` suites
//! ([`crate::apt_sources`]), and leave those in the tree's `sources.list`: mmdebstrap
//! takes every line as an argument; debootstrap takes one mirror, so the full list is
//! written afterwards and the tree upgraded from it in a chroot.

use std::ffi::OsString;
use std::path::Path;

use super::{Error, SourceCtx, SourceInfo};
use crate::apt_sources;
use crate::recipe::Bootstrap;
use crate::runner::Cmd;
use crate::tree::Root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Debootstrap,
    Mmdebstrap,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Debootstrap => "debootstrap",
            Tool::Mmdebstrap => "mmdebstrap",
        }
    }
}

/// The argument vector for `tool` (validated recipe values only, never a shell string).
pub fn command(tool: Tool, b: &Bootstrap, target: &Path) -> Cmd {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(v) = &b.variant {
        args.push(format!("--variant={v}").into());
    }
    if let Some(a) = &b.arch {
        args.push(format!("--arch={a}").into());
    }
    if !b.components.is_empty() {
        let c: Vec<&str> = b.components.iter().map(|c| &**c).collect();
        args.push(format!("--components={}", c.join(",")).into());
    }
    if !b.packages.is_empty() {
        let p: Vec<&str> = b.packages.iter().map(|p| &**p).collect();
        args.push(format!("--include={}", p.join(",")).into());
    }
    if tool == Tool::Mmdebstrap {
        // Root mode: real chroot, real device nodes; we are root anyway (checked before).
        args.push("--mode=root".into());
    }
    args.push(b.suite.to_string().into());
    args.push(target.as_os_str().to_os_string());
    match tool {
        // Each full `deb …` line becomes a line of the tree's sources.list as given.
        Tool::Mmdebstrap => args.extend(
            apt_sources::bootstrap_lines(b)
                .iter()
                .map(|l| l.to_string().into()),
        ),
        Tool::Debootstrap => args.push(apt_sources::mirror(b).into()),
    }
    Cmd::new(tool.program()).args(args).passthrough(true)
}

pub fn run(tool: Tool, b: &Bootstrap, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NeedsRoot {
            tool: tool.program().into(),
        });
    }
    let cmd = command(tool, b, target);
    ctx.reporter.debug(&format!("running {}", cmd.display()));
    ctx.runner.run(&cmd)?;
    let lines = apt_sources::bootstrap_lines(b);
    if tool == Tool::Debootstrap && lines.len() > 1 {
        let root = Root::open(target)?;
        root.write_file(
            Path::new("etc/apt/sources.list"),
            apt_sources::sources_list(&lines).as_bytes(),
            0o644,
        )?;
        crate::customize::upgrade(
            &root,
            crate::customize::PackageManager::Apt,
            ctx.runner,
            ctx.reporter,
        )
        .map_err(|source| Error::Upgrade {
            suites: suite_list(&lines),
            source: Box::new(source),
        })?;
    }
    Ok(SourceInfo {
        kind: tool.program().into(),
        reference: format!(
            "{} {} {}",
            suite_list(&lines),
            b.variant.as_deref().unwrap_or("default"),
            apt_sources::mirror(b)
        ),
        digest: None,
        created: None,
    })
}

/// `bookworm,bookworm-updates,bookworm-security`: the suites, for the provenance.
fn suite_list(lines: &[apt_sources::Line]) -> String {
    let s: Vec<&str> = lines.iter().map(|l| l.suite.as_str()).collect();
    s.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse_str, SourceSpec};

    fn spec(extra: &str) -> Bootstrap {
        let r = parse_str(
            &format!("[distro]\nname = \"x\"\n[source]\ntype = \"mmdebstrap\"\nsuite = \"bookworm\"\n{extra}"),
            "t.toml",
        )
        .unwrap();
        match r.source.unwrap() {
            SourceSpec::Mmdebstrap(b) => b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn mmdebstrap_arguments() {
        let b = spec("variant = \"minbase\"\ncomponents = [\"main\", \"contrib\"]\npackages = [\"net-tools\", \"uwsgi-core\"]\n");
        let c = command(Tool::Mmdebstrap, &b, Path::new("/t/root"));
        assert_eq!(
            c.display(),
            "mmdebstrap --variant=minbase --components=main,contrib --include=net-tools,uwsgi-core --mode=root bookworm /t/root \
             'deb http://deb.debian.org/debian bookworm main contrib' \
             'deb http://deb.debian.org/debian bookworm-updates main contrib' \
             'deb http://deb.debian.org/debian-security bookworm-security main contrib'"
        );
    }

    #[test]
    fn debootstrap_arguments_with_mirror() {
        let b = spec("mirror = \"http://mirror.example/debian\"\narch = \"amd64\"\n");
        let c = command(Tool::Debootstrap, &b, Path::new("/t/root"));
        assert_eq!(
            c.display(),
            "debootstrap --arch=amd64 bookworm /t/root http://mirror.example/debian"
        );
    }

    #[test]
    fn ubuntu_and_rolling_suites() {
        let mut b = spec("distribution = \"ubuntu\"\n");
        b.suite = "noble".to_string().try_into().unwrap();
        assert_eq!(
            command(Tool::Mmdebstrap, &b, Path::new("/t")).display(),
            "mmdebstrap --mode=root noble /t 'deb http://archive.ubuntu.com/ubuntu noble main' \
             'deb http://archive.ubuntu.com/ubuntu noble-updates main' \
             'deb http://archive.ubuntu.com/ubuntu noble-security main'"
        );
        assert_eq!(
            command(Tool::Debootstrap, &b, Path::new("/t")).display(),
            "debootstrap noble /t http://archive.ubuntu.com/ubuntu"
        );
        b.suite = "sid".to_string().try_into().unwrap();
        b.distribution = None;
        assert_eq!(
            command(Tool::Mmdebstrap, &b, Path::new("/t")).display(),
            "mmdebstrap --mode=root sid /t 'deb http://deb.debian.org/debian sid main'"
        );
    }

    #[test]
    fn suite_cannot_inject_an_option() {
        let e = parse_str(
            "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = \"--foo\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("would be read as an option"), "{e}");
    }
}
