//! The platform simulation, after `check` and before `push`: start a distro the way a
//! uwsgi.it container starts (`shared/platform.md`, "How a container boots") and report
//! each step, so a distro that would fall back or start without network fails here, on
//! the user's machine, and not on the server.
//!
//! The tool plays the server: it builds a temporary container home (`layout`), listens
//! where the HTTP router listens (`/run/subscribe/http`), and starts one process in new
//! mount, pid, uts, ipc and net namespaces. That process is the container: it repeats the
//! platform's bind mounts and `pivot_root`, brings up `lo`, drops to the uid, runs
//! `/etc/rc.local`, starts the Emperor and checks a vassal (`inside`). Steps travel
//! back over a pipe as JSON lines. Everything the container mounted lives only in its own
//! mount namespace and every process it started lives in its own pid namespace, so
//! killing the namespace's init undoes all of it; the temporary directories are removed
//! with [`crate::tree::remove_tree`].

mod inside;
mod layout;
pub mod subscription;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};
use serde::{Deserialize, Serialize};

use crate::progress::Reporter;
use crate::tree::{BuildDir, Root, UnpackOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("boot needs root (namespaces, mounts, pivot_root); run it as root: sudo build-distro boot PATH")]
    NotRoot,
    #[error("--uid {uid}: containers run as an unprivileged uid (the platform's start at 30000)")]
    Uid { uid: u32 },
    #[error("{path}: {msg}")]
    Input { path: String, msg: String },
    #[error("--vassal {path}: {msg}")]
    Vassal { path: String, msg: String },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    /// Ctrl-C, after the container was torn down.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotRoot | Error::Uid { .. } | Error::Input { .. } | Error::Vassal { .. } => 2,
            Error::Sys { .. } | Error::Interrupted => 1,
            Error::Tree(e) => e.exit_code(),
        }
    }

    fn sys(what: &str, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.to_string(),
            source: source.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The steps of a container start, in the platform's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// The server-side container home and subscription directory (temporary).
    Layout,
    /// New mount, pid, uts, ipc and net namespaces.
    Namespaces,
    /// The distro is used only if its `/.old_root` is a directory.
    OldRoot,
    /// The distro root bound on `/ns`.
    Distro,
    /// `pivot_root /ns /ns/.old_root`.
    PivotRoot,
    /// `/proc` (hidepid=2).
    Proc,
    /// The remaining binds and remounts, in the platform's order.
    Mounts,
    /// `ifconfig lo up` run by `/bin/sh` as root.
    Loopback,
    /// `route` on the default PATH.
    Route,
    /// setgid/setuid to the container's uid.
    DropPrivileges,
    /// `/bin/sh /etc/rc.local` as the uid.
    RcLocal,
    /// The uid resolves to a name (NSS).
    UserName,
    /// `/opt/unbit/uwsgi/uwsgi` runs (its libraries are all there).
    Uwsgi,
    /// `/opt/unbit/uwsgi/shortcuts.ini` is there and declares the platform's options.
    Shortcuts,
    /// The Emperor watching the home's `vassals/`.
    Emperor,
    /// The vassal starts (and the smoke vassal answers HTTP).
    Vassal,
    /// A `domain = NAME` vassal subscribed NAME at `/run/subscribe/http`.
    Subscription,
    /// The interactive shell (`--shell`).
    Shell,
}

impl StepKind {
    /// How the step is named in the human report.
    pub fn title(self) -> &'static str {
        match self {
            StepKind::Layout => "layout",
            StepKind::Namespaces => "namespaces",
            StepKind::OldRoot => "/.old_root",
            StepKind::Distro => "distro on /ns",
            StepKind::PivotRoot => "pivot_root",
            StepKind::Proc => "/proc",
            StepKind::Mounts => "mounts",
            StepKind::Loopback => "ifconfig lo up",
            StepKind::Route => "route",
            StepKind::DropPrivileges => "drop to uid",
            StepKind::RcLocal => "/etc/rc.local",
            StepKind::UserName => "user name",
            StepKind::Uwsgi => "uwsgi binary",
            StepKind::Shortcuts => "shortcuts.ini",
            StepKind::Emperor => "emperor",
            StepKind::Vassal => "vassal",
            StepKind::Subscription => "subscription",
            StepKind::Shell => "shell",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// The platform would go on, but something is wrong (no user name, rc.local failed).
    Warn,
    /// The platform would fall back, or the container would be unusable: the boot stops.
    Fail,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub step: StepKind,
    pub status: Status,
    pub detail: String,
}

/// What `boot` should do beyond the platform's steps.
#[derive(Debug, Clone)]
pub struct Options {
    /// The container's uid (default 30001).
    pub uid: u32,
    /// The user's own vassal, run instead of the smoke vassal.
    pub vassal: Option<PathBuf>,
    /// Open an interactive shell inside, as the uid, once the steps ran.
    pub shell: bool,
    /// Limit for the steps (not for the shell).
    pub timeout: Duration,
    /// Where the temporary directories go (default: `$TMPDIR` or /tmp).
    pub work_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            uid: DEFAULT_UID,
            vassal: None,
            shell: false,
            timeout: Duration::from_secs(30),
            work_dir: None,
        }
    }
}

pub const DEFAULT_UID: u32 = 30001;

/// The result of a boot: every step that ran, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    pub uid: u32,
    /// No step failed.
    pub ok: bool,
    pub steps: Vec<Step>,
    /// The container's pid namespace (`pid:[inode]`): every process of the run lived there.
    pub pid_namespace: Option<String>,
    /// The processes of the run still there at teardown (the container's init first),
    /// all stopped since.
    pub processes: Vec<Process>,
}

/// A process as the host sees it; `pid` and `start` together name it uniquely.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: i32,
    /// Start time, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
    pub command: String,
}

/// The processes in the pid namespace `ns` (`pid:[inode]`), lowest pid first. Valid
/// only while that namespace cannot be freed (its init not yet reaped): afterwards the
/// inode number may name another namespace.
pub fn processes_in(ns: &str) -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<Process> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|l| l.as_os_str() == std::ffi::OsStr::new(ns))
        })
        .filter_map(|pid| {
            let start = process_start(pid)?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .trim()
                .to_string();
            Some(Process {
                pid,
                start,
                command,
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// Field 22 of `/proc/PID/stat` (after the parenthesised command, which may hold spaces).
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Messages from the container to the tool, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    /// A step starts (so a timeout can name it).
    Begin(StepKind),
    Done(Step),
    /// The steps are over; the container waits for the tool (subscription check, shell).
    Waiting,
}

/// How long a step detail may get (log tails are cut), so messages stay readable.
const DETAIL_MAX: usize = 1500;

/// Start the distro at `path` (a directory or a .tar/.tar.gz) as the platform would.
/// `on_step` sees every step as it finishes. Step failures are in the report; `Err` is
/// for bad input, missing root, and Ctrl-C (after everything was torn down).
pub fn boot(
    path: &Path,
    opts: &Options,
    reporter: &Reporter,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Report> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    if opts.uid == 0 {
        return Err(Error::Uid { uid: opts.uid });
    }
    let vassal = match &opts.vassal {
        Some(p) => Some(layout::UserVassal::read(p)?),
        None => None,
    };
    let work = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let input = Input::open(path, &work, reporter)?;
    let mut run = Run {
        steps: Vec::new(),
        on_step,
    };
    let report = |run: Run, ns: Option<String>, processes: Vec<Process>| Report {
        path: path.display().to_string(),
        uid: opts.uid,
        ok: run.steps.iter().all(|s| s.status != Status::Fail),
        steps: run.steps,
        pid_namespace: ns,
        processes,
    };

    let root = Root::open(&input.tree())?;
    let layout = match layout::Layout::create(&work, opts.uid, &root, vassal.as_ref()) {
        Ok(l) => {
            run.push(StepKind::Layout, Status::Ok, l.describe());
            l
        }
        Err(e) => {
            run.push(StepKind::Layout, Status::Fail, e.to_string());
            return Ok(report(run, None, Vec::new()));
        }
    };
    let listener = UnixDatagram::bind(layout.subscribe_socket())
        .map_err(|e| Error::sys(&format!("bind {}", layout.subscribe_socket().display()), e))?;
    // Vassals run as the uid: the router's socket must be writable by them.
    std::fs::set_permissions(
        layout.subscribe_socket(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .map_err(|e| Error::sys("chmod the subscription socket", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::sys("subscription socket", e))?;

    let cfg = inside::Inside {
        uid: opts.uid,
        tree: input
            .tree()
            .canonicalize()
            .map_err(|e| Error::sys("distro path", e))?,
        layout: layout.paths().clone(),
        vassal: layout.vassal().clone(),
        shell: opts.shell,
    };
    let mut container = match Container::start(&cfg) {
        Ok(c) => c,
        Err(e) => {
            run.push(StepKind::Namespaces, Status::Fail, e);
            return Ok(report(run, None, Vec::new()));
        }
    };
    let init = container.pid.as_raw_pid();
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid"))
        .ok()
        .map(|p| p.display().to_string());

    let outcome = watch(&mut container, &listener, &layout, opts, reporter, &mut run);
    // The init is not reaped yet, so its namespace (and the inode naming it) still exists.
    let processes = ns.as_deref().map(processes_in).unwrap_or_default();
    // Teardown: the namespace's init dies, the kernel kills every process in the pid
    // namespace, and the mount namespace with all its mounts goes with the last of them.
    drop(container);
    drop(listener);
    drop(layout);
    drop(input);
    outcome?;
    Ok(report(run, ns, processes))
}

/// Steps collected so far, shown to the caller as they come.
struct Run<'a> {
    steps: Vec<Step>,
    on_step: &'a mut dyn FnMut(&Step),
}

impl Run<'_> {
    fn push(&mut self, step: StepKind, status: Status, detail: String) {
        self.add(Step {
            step,
            status,
            detail,
        });
    }

    fn add(&mut self, step: Step) {
        (self.on_step)(&step);
        self.steps.push(step);
    }
}

/// The distro tree: the user's directory, or a tarball extracted to a temporary one.
enum Input {
    Dir(PathBuf),
    Extracted(BuildDir),
}

impl Input {
    fn open(path: &Path, work: &Path, reporter: &Reporter) -> Result<Input> {
        let bad = |msg: String| Error::Input {
            path: path.display().to_string(),
            msg,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.is_dir() {
            return Ok(Input::Dir(path.to_path_buf()));
        }
        if !meta.is_file() {
            return Err(bad("not a directory or a .tar/.tar.gz file".into()));
        }
        let dir = BuildDir::new(work)?;
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).map_err(|e| Error::sys(&tree.display().to_string(), e))?;
        // The tree's root is the container's `/`: the uid must be able to traverse it.
        std::fs::set_permissions(&tree, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::sys(&tree.display().to_string(), e))?;
        reporter.info(&format!("extracting {}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let reader =
            crate::tree::decompressed(file).map_err(|e| bad(format!("cannot read: {e}")))?;
        let opts = UnpackOptions {
            label: path.display().to_string(),
            ..Default::default()
        };
        crate::tree::unpack(reader, &Root::open(&tree)?, &opts)?;
        Ok(Input::Extracted(dir))
    }

    fn tree(&self) -> PathBuf {
        match self {
            Input::Dir(p) => p.clone(),
            Input::Extracted(d) => d.path().join("tree"),
        }
    }
}

/// The container's init process, killed (with everything in its pid namespace) on drop.
struct Container {
    pid: Pid,
    /// Steps from inside, JSON lines.
    from: BufReader<std::fs::File>,
    /// One byte: go on (open the shell). Closing it tells the container to stop.
    to: Option<OwnedFd>,
    reaped: bool,
}

impl Container {
    fn start(cfg: &inside::Inside) -> Result<Container, String> {
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))
        };
        let (msg_r, msg_w) = pipe()?;
        let (ctl_r, ctl_w) = pipe()?;
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET;
        // The child is a copy of this process (no shared memory) running on its own
        // stack; it never returns into our code: `inside::init` ends with `_exit`.
        let mut stack = vec![0u8; 8 << 20];
        let child = {
            let fds = inside::Fds {
                msg: msg_w.as_raw_fd(),
                ctl: ctl_r.as_raw_fd(),
                // Our ends, which the container must not hold: it would never see the
                // control pipe close.
                close: [msg_r.as_raw_fd(), ctl_w.as_raw_fd()],
            };
            let mut init = || -> libc::c_int { inside::init(cfg, &fds) };
            // SAFETY: the callback runs in a new process (no CLONE_VM), like after fork.
            unsafe { clone_process(&mut init, &mut stack, flags) }
        };
        let pid = child.map_err(|e| {
            format!("clone(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET): {e}; run as root on a kernel with namespaces")
        })?;
        drop(msg_w);
        drop(ctl_r);
        Ok(Container {
            pid,
            from: BufReader::new(std::fs::File::from(msg_r)),
            to: Some(ctl_w),
            reaped: false,
        })
    }

    /// The next message, [`Next::End`] when the container exited.
    fn next(&mut self, deadline: Option<Instant>) -> Next {
        loop {
            if crate::interrupt::interrupted() {
                return Next::Interrupted;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Next::TimedOut;
            }
            if self.from.buffer().contains(&b'\n') || poll_in(self.from.get_ref().as_fd(), 100) {
                let mut line = String::new();
                return match self.from.read_line(&mut line) {
                    Ok(0) | Err(_) => Next::End,
                    Ok(_) => match serde_json::from_str::<Msg>(&line) {
                        Ok(m) => Next::Msg(m),
                        Err(e) => Next::Garbled(format!("{e}: {}", line.trim())),
                    },
                };
            }
        }
    }

    fn proceed(&mut self) {
        if let Some(fd) = &self.to {
            let _ = rustix::io::write(fd, b"g");
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.to = None;
        if !self.reaped {
            let _ = kill_process(self.pid, Signal::KILL);
            // An init is reaped only after every process of its namespace is gone.
            let _ = waitpid(Some(self.pid), WaitOptions::empty());
            self.reaped = true;
        }
    }
}

enum Next {
    Msg(Msg),
    Garbled(String),
    End,
    TimedOut,
    Interrupted,
}

fn poll_in(fd: std::os::fd::BorrowedFd<'_>, ms: i32) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: (ms / 1000).into(),
        tv_nsec: ((ms % 1000) * 1_000_000).into(),
    };
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0) && !fds[0].revents().is_empty()
}

/// `clone(2)` without `CLONE_VM`: `child` runs in a copy of this process on `stack` and
/// must not return into our code (the container's init ends with `_exit`). rustix has no
/// `clone`, as it cannot know what the child may touch; the libc wrapper it is.
///
/// # Safety
/// As after `fork`: the child has only the calling thread, so `child` must not rely on
/// locks other threads may have held.
unsafe fn clone_process(
    child: &mut dyn FnMut() -> libc::c_int,
    stack: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut` below, in the child's copy of our memory.
        let child = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> libc::c_int) };
        child()
    }
    // The stack grows down: start at its top, aligned as the ABI wants.
    let top = stack.as_mut_ptr_range().end;
    let top = top.wrapping_sub(top as usize % 16);
    let mut child = child;
    let arg = &mut child as *mut &mut dyn FnMut() -> libc::c_int as *mut libc::c_void;
    // SAFETY: the stack is ours and outlives the call; the child gets a copy of it.
    let pid = unsafe { libc::clone(trampoline, top.cast(), flags | libc::SIGCHLD, arg) };
    match Pid::from_raw(pid) {
        Some(p) if pid > 0 => Ok(p),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Follow the container's steps, check the subscription, run the shell; every way out
/// returns to `boot`, which tears everything down.
fn watch(
    c: &mut Container,
    listener: &UnixDatagram,
    layout: &layout::Layout,
    opts: &Options,
    reporter: &Reporter,
    run: &mut Run,
) -> Result<()> {
    let deadline = Instant::now() + opts.timeout;
    let mut current: Option<StepKind> = None;
    let mut subs: Vec<subscription::Subscription> = Vec::new();
    let waiting = loop {
        drain(listener, &mut subs);
        match c.next(Some(deadline)) {
            Next::Msg(Msg::Begin(k)) => current = Some(k),
            Next::Msg(Msg::Done(s)) => {
                current = None;
                run.add(s);
            }
            Next::Msg(Msg::Waiting) => break true,
            Next::Garbled(e) => reporter.debug(&format!("boot: unreadable message: {e}")),
            Next::End => break false,
            Next::TimedOut => {
                let step = current.unwrap_or(StepKind::Namespaces);
                let mut detail = format!(
                    "did not finish within {} s (--timeout); the container was stopped",
                    opts.timeout.as_secs()
                );
                if matches!(step, StepKind::Emperor | StepKind::Vassal) {
                    // The Emperor's log is in the home, readable from here.
                    let log = std::fs::read(layout.paths().home.join("logs/emperor.log"))
                        .unwrap_or_default();
                    let log = String::from_utf8_lossy(&log);
                    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
                    detail.push_str(&format!(
                        "; emperor log: {}",
                        lines[lines.len().saturating_sub(6)..].join(" | ")
                    ));
                }
                run.push(step, Status::Fail, cut(&detail));
                return Ok(());
            }
            Next::Interrupted => return Err(Error::Interrupted),
        }
    };
    if !waiting {
        if !run.steps.iter().any(|s| s.status == Status::Fail) {
            let last = run.steps.last().map(|s| s.step.title()).unwrap_or("start");
            run.push(
                current.unwrap_or(StepKind::Namespaces),
                Status::Fail,
                format!("the container's init died unexpectedly after {last}"),
            );
        }
        return Ok(());
    }
    let failed = run.steps.iter().any(|s| s.status == Status::Fail);
    if !failed && !layout.vassal().domains.is_empty() {
        let step = subscription::check(listener, &mut subs, &layout.vassal().domains, deadline);
        run.add(step);
    }
    if opts.shell {
        c.proceed();
        let ended = c.wait_shell(run);
        restore_terminal();
        if !ended {
            return Err(Error::Interrupted);
        }
    }
    Ok(())
}

impl Container {
    /// After `proceed`, collect the shell step until the container exits; `false` on Ctrl-C.
    fn wait_shell(&mut self, run: &mut Run) -> bool {
        loop {
            match self.next(None) {
                Next::Msg(Msg::Done(s)) => run.add(s),
                Next::Msg(_) | Next::Garbled(_) => {}
                Next::End => return true,
                Next::TimedOut => {}
                Next::Interrupted => return false,
            }
        }
    }
}

/// Datagrams that arrived at the router's socket so far.
fn drain(listener: &UnixDatagram, subs: &mut Vec<subscription::Subscription>) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = listener.recv(&mut buf) {
        if let Some(s) = subscription::parse(&buf[..n]) {
            subs.push(s);
        }
    }
}

/// The shell took the terminal's foreground; take it back for this process group.
fn restore_terminal() {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        take_foreground(rustix::process::getpgrp().as_raw_pid());
    }
}

/// Make `pgrp` the foreground process group of the terminal on fd 0. A process outside
/// the foreground group gets SIGTTOU for this unless it blocks it, so it is blocked
/// around the call. Only async-signal-safe libc calls (rustix leaves signal masks to the
/// runtime): the shell's `pre_exec` in `inside` runs this between fork and exec.
fn take_foreground(pgrp: libc::pid_t) {
    // SAFETY: a sigset_t initialised by sigemptyset, and plain syscall wrappers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::tcsetpgrp(0, pgrp);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Cut a detail to about [`DETAIL_MAX`] characters, keeping its start (what failed) and
/// its end (where log tails put the error).
fn cut(s: &str) -> String {
    let s = s.trim();
    if s.len() <= DETAIL_MAX {
        return s.to_string();
    }
    let mut head = DETAIL_MAX / 3;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - (DETAIL_MAX - head);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{} … {}", &s[..head], &s[tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_details_keep_start_and_end() {
        let s = format!("START{}END", "x".repeat(5000));
        let c = cut(&s);
        assert!(c.starts_with("START") && c.ends_with("END"), "{c}");
        assert!(c.len() <= DETAIL_MAX + 8);
        assert_eq!(cut(" short "), "short");
    }

    #[test]
    fn step_names_are_kebab_case_in_json() {
        let s = Step {
            step: StepKind::OldRoot,
            status: Status::Fail,
            detail: "d".into(),
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"step":"old-root","status":"fail","detail":"d"}"#
        );
    }
}
