//! The container itself: the init of the new namespaces. It repeats, in order, what the
//! platform does when a container starts (platform.md, steps 2–6), reports every step to
//! the tool over a pipe, and never returns: it ends with `_exit`, and its death takes
//! every process and mount of the run with it.
//!
//! This runs in a cloned copy of the tool (like after `fork`): only this thread exists,
//! so it spawns programs and writes to its pipe but never prints.

use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::mount::{
    mount, mount_bind, mount_change, mount_remount, unmount, MountFlags, MountPropagationFlags,
    UnmountFlags,
};
use rustix::process::{Gid, Uid};

use super::layout::{Paths, VassalPlan, HOSTNAME};
use super::{cut, Msg, Status, Step, StepKind};

/// What the container needs to know, copied into it with the rest of the process.
pub struct Inside {
    pub uid: u32,
    /// The distro root (host path, canonical).
    pub tree: PathBuf,
    pub layout: Paths,
    pub vassal: VassalPlan,
    pub shell: bool,
}

/// The PATH the platform's commands get (`/bin/sh -c`, the Emperor).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const UWSGI: &str = crate::finish::UWSGI_BINARY;
const SHORTCUTS: &str = crate::finish::UWSGI_SHORTCUTS;
/// How long rc.local may run before we go on without it (the platform never waits).
const RC_LOCAL_WAIT: Duration = Duration::from_secs(5);

/// The pipes' file descriptors as the container inherits them.
pub struct Fds {
    /// Where steps go.
    pub msg: RawFd,
    /// Where the tool's go-ahead comes from.
    pub ctl: RawFd,
    /// The tool's ends, closed first.
    pub close: [RawFd; 2],
}

/// The container's init. Never returns.
pub fn init(cfg: &Inside, fds: &Fds) -> ! {
    for fd in fds.close {
        // SAFETY: closing our copies of the tool's pipe ends, unused here.
        unsafe { libc::close(fd) };
    }
    // A panic ends this process here: unwinding must not leave the callback, which runs
    // on its own stack inside a copy of the tool.
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cfg, fds))) {
        Ok(()) => 0,
        Err(_) => 101,
    };
    // SAFETY: ending the cloned process without running the tool's exit handlers.
    unsafe { libc::_exit(code) }
}

fn run(cfg: &Inside, fds: &Fds) {
    let (msg_fd, ctl_fd) = (fds.msg, fds.ctl);
    let mut c = Container {
        cfg,
        msg_fd,
        dropped: false,
        emperor: None,
    };
    let ok = c.steps();
    if ok || (cfg.shell && c.dropped) {
        c.send(&Msg::Waiting);
        // The tool answers with one byte (open the shell) or closes the pipe (stop).
        let mut b = [0u8; 1];
        // SAFETY: ctl_fd is our end of the control pipe, open until we exit.
        let ctl = unsafe { BorrowedFd::borrow_raw(ctl_fd) };
        let go = rustix::io::read(ctl, &mut b).unwrap_or(0) == 1;
        if go && cfg.shell {
            c.step(StepKind::Shell, |c| c.shell());
        }
    }
}

/// A step's result before it is sent.
enum Outcome {
    Ok(String),
    Warn(String),
    Fail(String),
}

struct Container<'a> {
    cfg: &'a Inside,
    msg_fd: RawFd,
    dropped: bool,
    emperor: Option<Child>,
}

impl Container<'_> {
    fn send(&self, msg: &Msg) {
        let mut line = serde_json::to_vec(msg).expect("serializable");
        line.push(b'\n');
        let mut off = 0;
        while off < line.len() {
            // SAFETY: writing our own buffer to our end of the message pipe.
            let n =
                unsafe { libc::write(self.msg_fd, line[off..].as_ptr().cast(), line.len() - off) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The tool is gone: nobody to report to, nothing to keep running for.
                // SAFETY: as in `init`.
                unsafe { libc::_exit(1) }
            }
            off += n as usize;
        }
    }

    /// Run one step and report it; `false` when it failed (the boot stops).
    fn step(&mut self, kind: StepKind, f: impl FnOnce(&mut Self) -> Outcome) -> bool {
        self.send(&Msg::Begin(kind));
        let (status, detail) = match f(self) {
            Outcome::Ok(d) => (Status::Ok, d),
            Outcome::Warn(d) => (Status::Warn, d),
            Outcome::Fail(d) => (Status::Fail, d),
        };
        self.send(&Msg::Done(Step {
            step: kind,
            status,
            detail: cut(&detail),
        }));
        status != Status::Fail
    }

    fn steps(&mut self) -> bool {
        self.step(StepKind::Namespaces, |c| c.namespaces())
            && self.step(StepKind::OldRoot, |c| c.old_root())
            && self.step(StepKind::Distro, |c| c.distro())
            && self.step(StepKind::PivotRoot, |c| c.pivot_root())
            && self.step(StepKind::Proc, |c| c.proc())
            && self.step(StepKind::Mounts, |c| c.mounts())
            && self.step(StepKind::Loopback, |c| c.loopback())
            && self.step(StepKind::Route, |c| c.route())
            && self.step(StepKind::DropPrivileges, |c| c.drop_privileges())
            && self.step(StepKind::RcLocal, |c| c.rc_local())
            && self.step(StepKind::UserName, |c| c.user_name())
            && self.step(StepKind::Uwsgi, |c| c.uwsgi())
            && self.step(StepKind::Shortcuts, |_| shortcuts())
            && self.step(StepKind::Emperor, |c| c.emperor())
            && self.step(StepKind::Vassal, |c| c.vassal())
    }

    fn home(&self) -> String {
        format!("/containers/{}", self.cfg.uid)
    }

    fn namespaces(&mut self) -> Outcome {
        // Keyboard signals from the user's terminal must not reach the container's
        // processes: the tool decides when the container stops.
        let _ = rustix::process::setpgid(None, None);
        // If the tool dies, so does the container (and with it everything inside).
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if !rustix::process::getpid().is_init() {
            return Outcome::Fail("not the init of a new pid namespace".into());
        }
        // Nothing mounted from here on may propagate back to the host.
        if let Err(e) = mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        ) {
            return Outcome::Fail(format!("make / private in the new mount namespace: {e}"));
        }
        if let Err(e) = rustix::system::sethostname(HOSTNAME.as_bytes()) {
            return Outcome::Fail(format!("sethostname in the new uts namespace: {e}"));
        }
        Outcome::Ok(format!(
            "mount, pid, uts, ipc and net namespaces; init is pid 1, hostname {HOSTNAME}, only lo in the network"
        ))
    }

    fn old_root(&mut self) -> Outcome {
        let tree = &self.cfg.tree;
        let is_dir = |p: &Path| {
            std::fs::symlink_metadata(p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        };
        if !is_dir(&tree.join(".old_root")) {
            return Outcome::Fail(format!(
                "{}/.old_root is not a directory: the platform does not use this distro, the container falls back to its default distro and raises a [DANGER] alarm; create /.old_root (mode 755) in the distro (build-distro build does)",
                tree.display()
            ));
        }
        if !is_dir(&tree.join("containers")) {
            return Outcome::Warn(format!(
                "{}/containers is missing: the platform raises a second alarm, and the bind on /containers fails",
                tree.display()
            ));
        }
        Outcome::Ok(format!(
            "{}/.old_root is a directory: the platform uses this distro",
            tree.display()
        ))
    }

    fn distro(&mut self) -> Outcome {
        let (tree, ns) = (&self.cfg.tree, &self.cfg.layout.ns);
        match mount_bind(tree.as_path(), ns.as_path()) {
            Ok(()) => Outcome::Ok(format!("{} bound on /ns", tree.display())),
            Err(e) => Outcome::Fail(format!("bind {} on {}: {e}", tree.display(), ns.display())),
        }
    }

    fn pivot_root(&mut self) -> Outcome {
        let ns = &self.cfg.layout.ns;
        if let Err(e) = rustix::process::chdir(ns.as_path()) {
            return Outcome::Fail(format!("chdir /ns: {e}"));
        }
        if let Err(e) = rustix::process::pivot_root(".", ".old_root") {
            return Outcome::Fail(format!("pivot_root /ns /ns/.old_root: {e}"));
        }
        if let Err(e) = rustix::process::chdir("/") {
            return Outcome::Fail(format!("chdir / in the new root: {e}"));
        }
        Outcome::Ok("the distro is / and the server's root is /.old_root".into())
    }

    fn proc(&mut self) -> Outcome {
        match mount("proc", "/proc", "proc", MountFlags::NODEV, c"hidepid=2") {
            Ok(()) => Outcome::Ok("proc on /proc (hidepid=2)".into()),
            Err(e) => Outcome::Fail(format!("mount proc on /proc: {e}{}", need_dir("/proc", e))),
        }
    }

    fn mounts(&mut self) -> Outcome {
        let old = "/.old_root";
        let on_host = |p: &Path| format!("{old}{}", p.display());
        let home_host = on_host(&self.cfg.layout.home);
        let home = self.home();
        // platform.md, step 3, after /proc.
        let ops = [
            Op::Bind(format!("{old}/dev"), "/dev".into(), false),
            Op::Bind(format!("{old}/dev/pts"), "/dev/pts".into(), false),
            Op::Bind(
                format!("{home_host}/.old_root"),
                "/containers".into(),
                false,
            ),
            Op::Bind(home_host.clone(), home.clone(), false),
            Op::Bind(format!("{home}/run"), "/run".into(), true),
            Op::Tmpfs("/run/shm".into()),
            Op::Bind(format!("{home}/tmp"), "/tmp".into(), true),
            Op::Bind(format!("{home}/tmp"), "/var/tmp".into(), true),
            Op::Bind(
                on_host(&self.cfg.layout.subscribe),
                "/run/subscribe".into(),
                false,
            ),
            Op::Detach(old.into()),
            Op::Remount("/".into()),
            Op::Remount(home.clone()),
            Op::Bind(format!("{home}/etc"), "/run/resolvconf".into(), true),
            Op::Bind(format!("{home}/logs"), "/var/log".into(), true),
            Op::Bind(format!("{home}/run/spool"), "/var/spool".into(), true),
            Op::Bind(home.clone(), "/usr/local".into(), true),
        ];
        for op in &ops {
            if let Err(msg) = op.apply() {
                return Outcome::Fail(msg);
            }
        }
        Outcome::Ok(format!(
            "{} binds and remounts in the platform's order: /dev, /dev/pts, /containers, {home}, /run, /run/shm, /tmp, /var/tmp, /run/subscribe, /.old_root detached, / and {home} nosuid, /run/resolvconf, /var/log, /var/spool, /usr/local (the container cgroup on /run/cgroup is not simulated)",
            ops.len()
        ))
    }

    /// `/bin/sh -c CMD` as the platform runs its network hooks (constant commands only).
    fn sh(&self, cmd: &str) -> Result<std::process::Output, String> {
        self.command("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "/bin/sh is missing in the distro: the platform runs `{cmd}` with /bin/sh"
                ),
                _ => format!("/bin/sh -c '{cmd}': {e}"),
            })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", self.home())
            .current_dir("/");
        c
    }

    fn network(&mut self, cmd: &str, what: &str, ok: &str) -> Outcome {
        match self.sh(cmd) {
            Err(e) => Outcome::Fail(e),
            Ok(o) if o.status.success() => Outcome::Ok(ok.into()),
            Ok(o) => Outcome::Fail(format!(
                "`{cmd}` failed ({}): {}; the distro must provide {what} on the default PATH (net-tools or busybox), or the container has no network",
                status(&o.status),
                tail(&o.stderr, &o.stdout)
            )),
        }
    }

    fn loopback(&mut self) -> Outcome {
        self.network(
            "ifconfig lo up",
            "ifconfig",
            "lo is up (the platform then configures uwsgi0, which this boot does not have)",
        )
    }

    fn route(&mut self) -> Outcome {
        self.network(
            "route -n",
            "route",
            "route runs (the platform runs `route add default gw 10.0.0.1`, which needs uwsgi0)",
        )
    }

    fn drop_privileges(&mut self) -> Outcome {
        let (uid, gid) = (self.cfg.uid, self.cfg.uid);
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        // rustix sets ids per thread (the raw syscalls); this process has only the one.
        let r = rustix::thread::set_thread_groups(&[g])
            .and_then(|_| rustix::thread::set_thread_gid(g))
            .and_then(|_| rustix::thread::set_thread_uid(u));
        if let Err(e) = r {
            return Outcome::Fail(format!("drop to {uid}:{gid}: {e}"));
        }
        if rustix::process::geteuid() != u || rustix::process::getegid() != g {
            return Outcome::Fail(format!("still not {uid}:{gid} after setuid"));
        }
        self.dropped = true;
        Outcome::Ok(format!("running as {uid}:{gid} from here on"))
    }

    fn rc_local(&mut self) -> Outcome {
        if std::fs::symlink_metadata("/etc/rc.local").is_err() {
            return Outcome::Warn("/etc/rc.local is missing: the platform runs `/bin/sh /etc/rc.local` at every start and logs the error".into());
        }
        let log_path = "/var/log/rc.local.log";
        let log = match std::fs::File::create(log_path) {
            Ok(f) => f,
            Err(e) => return Outcome::Fail(format!("{log_path}: {e}")),
        };
        let err = log.try_clone().ok();
        let child = self
            .command("/bin/sh")
            .arg("/etc/rc.local")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err.map(Stdio::from).unwrap_or_else(Stdio::null))
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Outcome::Fail(format!("/bin/sh /etc/rc.local: {e}")),
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => {
                    return Outcome::Ok(format!("/bin/sh /etc/rc.local exited 0 as uid {}", self.cfg.uid))
                }
                Ok(Some(st)) => {
                    let out = std::fs::read(log_path).unwrap_or_default();
                    return Outcome::Warn(format!(
                        "/bin/sh /etc/rc.local failed ({}): {}; the platform runs it as uid {} at every start and only logs this",
                        status(&st),
                        tail(&out, b""),
                        self.cfg.uid
                    ));
                }
                Ok(None) if start.elapsed() >= RC_LOCAL_WAIT => {
                    return Outcome::Ok(format!(
                        "/etc/rc.local still runs after {} s; left in the background, as on the platform",
                        RC_LOCAL_WAIT.as_secs()
                    ))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Outcome::Fail(format!("wait for /etc/rc.local: {e}")),
            }
        }
    }

    fn user_name(&mut self) -> Outcome {
        let uid = self.cfg.uid.to_string();
        let hint = format!(
            "uid {uid} has no name: shells say \"I have no name!\" and some tools fail; give the distro the unbit NSS module ([nss] in the recipe) or passwd/group lines for the container uids"
        );
        let (cmd, args): (&str, Vec<&str>) = if in_path("getent") {
            ("getent", vec!["passwd", &uid])
        } else if in_path("id") {
            ("id", vec!["-un"])
        } else {
            return Outcome::Warn(
                "neither getent nor id on the default PATH: cannot tell whether the uid has a name"
                    .into(),
            );
        };
        match self.command(cmd).args(&args).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => Outcome::Ok(format!(
                "`{cmd} {}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout).trim()
            )),
            Ok(o) => Outcome::Warn(format!(
                "`{cmd} {}` failed ({}{}): {hint}",
                args.join(" "),
                status(&o.status),
                match tail(&o.stderr, b"").as_str() {
                    "" => String::new(),
                    t => format!(": {t}"),
                }
            )),
            Err(e) => Outcome::Warn(format!("{cmd}: {e}")),
        }
    }

    fn uwsgi(&mut self) -> Outcome {
        match self.command(UWSGI).arg("--version").stdin(Stdio::null()).output() {
            // execve says ENOENT for a missing ELF interpreter too.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Path::new(UWSGI).exists() => {
                Outcome::Fail(format!(
                    "{UWSGI} cannot start: its dynamic loader (ELF interpreter) is missing in the distro; the binary must come from the distro itself (build-distro build links the distro's own uWSGI there)"
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Fail(format!(
                "{UWSGI} is missing: the Emperor starts every vassal with it; build-distro build installs it"
            )),
            Err(e) => Outcome::Fail(format!("{UWSGI}: {e}")),
            Ok(o) if o.status.success() => Outcome::Ok(format!(
                "{UWSGI} runs: uWSGI {}",
                String::from_utf8_lossy(&o.stdout).trim()
            )),
            Ok(o) => {
                let t = tail(&o.stderr, &o.stdout);
                let hint = if t.contains("error while loading shared libraries") {
                    "a library it needs is missing in the distro; install the package that provides it (check with `ldd /opt/unbit/uwsgi/uwsgi` inside)"
                } else {
                    "every vassal would fail to start"
                };
                Outcome::Fail(format!(
                    "{UWSGI} --version failed ({}): {t}; {hint}",
                    status(&o.status)
                ))
            }
        }
    }

    fn emperor(&mut self) -> Outcome {
        let log_path = "/var/log/emperor.log";
        let log = match std::fs::File::create(log_path) {
            Ok(f) => f,
            Err(e) => return Outcome::Fail(format!("{log_path}: {e}")),
        };
        let err = log.try_clone().ok();
        let vassals = format!("{}/vassals", self.home());
        let child = self
            .command(UWSGI)
            .args(["--emperor", &vassals, "--vassals-include-before", SHORTCUTS])
            .current_dir(self.home())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err.map(Stdio::from).unwrap_or_else(Stdio::null))
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return Outcome::Fail(format!("{UWSGI}: {e}")),
        };
        self.emperor = Some(child);
        loop {
            if let Some(st) = self.emperor_exit() {
                return Outcome::Fail(format!(
                    "the Emperor exited ({st}): {}",
                    log_tail(log_path, 8)
                ));
            }
            if read_log(log_path).contains("*** starting uWSGI Emperor ***") {
                return Outcome::Ok(format!(
                    "{UWSGI} --emperor {vassals} --vassals-include-before {SHORTCUTS} (log: {}/logs/emperor.log)",
                    self.home()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn emperor_exit(&mut self) -> Option<String> {
        let child = self.emperor.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(status(&st)),
            _ => None,
        }
    }

    fn vassal(&mut self) -> Outcome {
        let log_path = "/var/log/emperor.log";
        let name = self.cfg.vassal.name.clone();
        let ready = format!("vassal {name} is ready to accept requests");
        let gave_up = [
            format!("curse the uwsgi instance {name}"),
            format!("removed uwsgi instance {name}"),
            format!("unloyal bad behaving vassal found: {name}"),
        ];
        loop {
            if let Some(st) = self.emperor_exit() {
                return Outcome::Fail(format!(
                    "the Emperor exited ({st}) before {name} was ready: {}",
                    log_tail(log_path, 8)
                ));
            }
            let log = read_log(log_path);
            if log.contains(&ready) {
                break;
            }
            if gave_up.iter().any(|g| log.contains(g.as_str())) {
                return Outcome::Fail(format!(
                    "the Emperor could not start {name}: {}",
                    log_tail(log_path, 10)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(smoke) = self.cfg.vassal.smoke.clone() else {
            return Outcome::Ok(format!("{name} is ready to accept requests"));
        };
        let answer = match http_get(smoke.port, super::layout::SMOKE_DOMAIN) {
            Ok(a) => a,
            Err(e) => {
                return Outcome::Fail(format!(
                    "{name} is up but GET http://127.0.0.1:{}/ failed: {e}; {}",
                    smoke.port,
                    log_tail(log_path, 6)
                ))
            }
        };
        let status_line = answer.lines().next().unwrap_or("").trim().to_string();
        let good_status = status_line.split_whitespace().nth(1) == Some("200");
        let good_body = smoke
            .body
            .as_ref()
            .is_none_or(|b| answer.contains(b.as_str()));
        if !good_status || !good_body {
            return Outcome::Fail(format!(
                "{name} answered `{status_line}` without the expected response ({}): {}",
                smoke.kind,
                log_tail(log_path, 6)
            ));
        }
        let domain = super::layout::SMOKE_DOMAIN;
        let socket = format!("/run/{domain}_{name}.socket");
        match std::fs::metadata(&socket) {
            Ok(m) if m.permissions().mode() & 0o777 == 0o666 => Outcome::Ok(format!(
                "{name} ({}) answered `{status_line}` on 127.0.0.1:{} inside the container; `domain = {domain}` made {socket} (mode 666)",
                smoke.kind, smoke.port
            )),
            Ok(m) => Outcome::Fail(format!(
                "`domain = {domain}` made {socket} with mode {:o}, not 666 (the HTTP router could not connect): fix chmod-socket in {SHORTCUTS}",
                m.permissions().mode() & 0o777
            )),
            Err(_) => Outcome::Fail(format!(
                "`domain = {domain}` did not make {socket}: {SHORTCUTS} does not declare `domain` the way the platform does"
            )),
        }
    }

    fn shell(&mut self) -> Outcome {
        let program = if Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let mut cmd = self.command(program);
        cmd.current_dir(self.home());
        if let Ok(term) = std::env::var("TERM") {
            cmd.env("TERM", term);
        }
        let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
        if tty {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    // The shell's own process group in the terminal's foreground, so ^C
                    // reaches the shell's jobs and not the tool.
                    libc::setpgid(0, 0);
                    super::take_foreground(libc::getpid());
                    Ok(())
                });
            }
        }
        match cmd.status() {
            Ok(st) => Outcome::Ok(format!(
                "{program} as uid {} ended ({})",
                self.cfg.uid,
                status(&st)
            )),
            Err(e) => Outcome::Fail(format!("{program}: {e}")),
        }
    }
}

/// `/opt/unbit/uwsgi/shortcuts.ini`: present, readable by the uid, declaring the
/// platform's options.
fn shortcuts() -> Outcome {
    let text = match std::fs::read_to_string(SHORTCUTS) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Fail(format!(
                "{SHORTCUTS} is missing: the Emperor injects it before every vassal (vassals-include-before), so every vassal would fail to start; build-distro build installs it"
            ))
        }
        Err(e) => {
            return Outcome::Fail(format!(
                "{SHORTCUTS}: {e}: every vassal would fail to start (it must be world-readable)"
            ))
        }
    };
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            matches!(k.trim(), "declare-option" | "declare-option2")
                .then(|| v.trim().split('=').next().unwrap_or("").trim())
        })
        .collect();
    let missing: Vec<&str> = crate::finish::SHORTCUTS_OPTIONS
        .iter()
        .copied()
        .filter(|o| !declared.contains(o))
        .collect();
    if missing.is_empty() {
        Outcome::Ok(format!("{SHORTCUTS} declares {}", declared.join(", ")))
    } else {
        Outcome::Warn(format!(
            "{SHORTCUTS} does not declare {}: platform vassals using them fail",
            missing.join(", ")
        ))
    }
}

/// One mount operation of the platform's sequence.
enum Op {
    /// Bind source on target, then remount nosuid if asked.
    Bind(String, String, bool),
    Tmpfs(String),
    /// Lazy unmount.
    Detach(String),
    /// Remount a mount point nosuid.
    Remount(String),
}

impl Op {
    fn apply(&self) -> Result<(), String> {
        match self {
            Op::Bind(src, dst, nosuid) => {
                mount_bind(src.as_str(), dst.as_str())
                    .map_err(|e| format!("bind {src} on {dst}: {e}{}", need_dir(dst, e)))?;
                if *nosuid {
                    remount_nosuid(dst)?;
                }
                Ok(())
            }
            Op::Tmpfs(dst) => mount(
                "tmpfs",
                dst.as_str(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                None,
            )
            .map_err(|e| format!("tmpfs on {dst}: {e}{}", need_dir(dst, e))),
            Op::Detach(dst) => unmount(dst.as_str(), UnmountFlags::DETACH)
                .map_err(|e| format!("umount -l {dst}: {e}")),
            Op::Remount(dst) => remount_nosuid(dst),
        }
    }
}

fn remount_nosuid(dst: &str) -> Result<(), String> {
    mount_remount(dst, MountFlags::BIND | MountFlags::NOSUID, "")
        .map_err(|e| format!("remount {dst} nosuid: {e}"))
}

/// The fix when a mount point is missing.
fn need_dir(dst: &str, e: rustix::io::Errno) -> String {
    if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR {
        format!("; the distro must have the directory {dst} (build-distro build creates every mount point)")
    } else {
        String::new()
    }
}

fn status(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

/// The last lines of a command's output, on one line.
fn tail(first: &[u8], second: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(first),
        String::from_utf8_lossy(second)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

fn read_log(path: &str) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    s
}

fn log_tail(path: &str, n: usize) -> String {
    let log = read_log(path);
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!(
        "log: {}",
        lines[lines.len().saturating_sub(n)..].join(" | ")
    )
}

/// Whether `name` is an executable on the default PATH (inside the new root).
fn in_path(name: &str) -> bool {
    PATH.split(':').any(|d| {
        std::fs::metadata(Path::new(d).join(name))
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// A plain HTTP/1.0 GET on the container's loopback; the whole answer.
fn http_get(port: u16, host: &str) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
