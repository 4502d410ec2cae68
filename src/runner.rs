//! The one seam through which external programs run (debootstrap, mmdebstrap, chroot
//! commands, ssh, rsync, cp). Stages build a [`Cmd`]; a [`Runner`] executes it. Tests use
//! [`Recording`] to pin argument vectors without root; real runs go through [`System`].
//!
//! Arguments are always vectors, never a shell string: recipe values cannot inject.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{program}: not found; {hint}")]
    NotFound { program: String, hint: String },
    #[error("{program}: cannot start: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed with {status}{tail}")]
    Failed {
        command: String,
        status: String,
        /// The last lines of stderr, already prefixed with ": " when present.
        tail: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound { .. } => 2,
            _ => 1,
        }
    }
}

/// One program invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<OsString>,
    /// Extra environment; the child otherwise inherits ours.
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (plus `env`), as chroot commands should.
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    /// Show the child's output live (package managers) instead of capturing it.
    pub passthrough: bool,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            passthrough: false,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(items.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }

    /// The command as a user could paste it (for logs and error messages).
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                s.push_str(&format!("'{}'", a.replace('\'', "'\\''")));
            } else {
                s.push_str(&a);
            }
        }
        s
    }
}

/// What a finished command produced (stdout/stderr are empty in passthrough mode).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Writes a child's stdin (an upload stream); the pipe closes when it returns.
pub type Feed<'a> = &'a mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>;

/// Runs commands. `run` fails unless the program exits 0.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<Output, Error>;

    /// Like `run`, with `feed` writing the child's stdin (ssh uploads). Output is captured.
    fn run_fed(&self, cmd: &Cmd, feed: Feed<'_>) -> Result<Output, Error>;
}

/// The Debian package that provides a program, for "not found" hints.
pub fn install_hint(program: &str) -> String {
    let pkg = match program {
        "debootstrap" => "debootstrap",
        "mmdebstrap" => "mmdebstrap",
        "chroot" | "cp" => "coreutils",
        "ssh" => "openssh-client",
        "rsync" => "rsync",
        "mount" | "umount" => "mount",
        other => other,
    };
    format!("install it with: apt-get install {pkg}")
}

/// The real runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl System {
    fn command(cmd: &Cmd) -> Command {
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args);
        if cmd.clear_env {
            c.env_clear();
        }
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        if let Some(d) = &cmd.cwd {
            c.current_dir(d);
        }
        // A build-distro killed outright (SIGKILL, OOM) must not leave an upload or a
        // debootstrap running on its own: the child gets SIGTERM when its parent thread
        // dies. Every caller waits for the child in the thread that spawned it.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        c
    }

    fn spawn(cmd: &Cmd, c: &mut Command) -> Result<Child, Error> {
        c.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                program: cmd.program.clone(),
                hint: install_hint(&cmd.program),
            },
            _ => Error::Spawn {
                program: cmd.program.clone(),
                source: e,
            },
        })
    }

    fn finish(cmd: &Cmd, status: std::process::ExitStatus, out: Output) -> Result<Output, Error> {
        if status.success() {
            return Ok(out);
        }
        let status = match status.code() {
            Some(c) => format!("exit code {c}"),
            None => "a signal".to_string(),
        };
        Err(Error::Failed {
            command: cmd.display(),
            status,
            tail: stderr_tail(&out.stderr),
        })
    }
}

impl Runner for System {
    fn run(&self, cmd: &Cmd) -> Result<Output, Error> {
        let mut c = System::command(cmd);
        c.stdin(Stdio::null());
        if cmd.passthrough {
            // Package managers talk on stdout; keep our stdout clean for --json.
            c.stdout(std::io::stderr());
            c.stderr(Stdio::inherit());
        } else {
            c.stdout(Stdio::piped());
            c.stderr(Stdio::piped());
        }
        let child = System::spawn(cmd, &mut c)?;
        let out = child.wait_with_output().map_err(|e| Error::Spawn {
            program: cmd.program.clone(),
            source: e,
        })?;
        System::finish(
            cmd,
            out.status,
            Output {
                stdout: out.stdout,
                stderr: out.stderr,
            },
        )
    }

    fn run_fed(&self, cmd: &Cmd, feed: Feed<'_>) -> Result<Output, Error> {
        let mut c = System::command(cmd);
        c.stdin(Stdio::piped());
        c.stdout(Stdio::piped());
        c.stderr(Stdio::piped());
        let mut child = System::spawn(cmd, &mut c)?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Drain both output pipes while feeding, or a chatty child blocks on a full pipe
        // while we block on its full stdin.
        let (fed, out, err) = std::thread::scope(|s| {
            let o = s.spawn(move || {
                let mut v = Vec::new();
                let _ = stdout.read_to_end(&mut v);
                v
            });
            let e = s.spawn(move || {
                let mut v = Vec::new();
                let _ = stderr.read_to_end(&mut v);
                v
            });
            let fed = feed(&mut stdin).and_then(|_| stdin.flush());
            drop(stdin);
            (
                fed,
                o.join().unwrap_or_default(),
                e.join().unwrap_or_default(),
            )
        });
        let status = child.wait().map_err(|e| Error::Spawn {
            program: cmd.program.clone(),
            source: e,
        })?;
        let out = System::finish(
            cmd,
            status,
            Output {
                stdout: out,
                stderr: err,
            },
        )?;
        // The child succeeded but did not get everything: say what broke on our side.
        fed.map_err(|e| Error::Failed {
            command: cmd.display(),
            status: "an incomplete input".into(),
            tail: format!(": {e}"),
        })?;
        Ok(out)
    }
}

/// The last few lines of stderr, joined into one line for a one-line error.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(3);
    format!(": {}", lines[start..].join(" | "))
}

/// A runner that records every command and answers with canned results (tests).
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Mutex<Vec<Cmd>>,
    /// When set, commands whose program matches fail with this status text.
    pub fail_program: Option<String>,
}

impl Recording {
    pub fn calls(&self) -> Vec<Cmd> {
        self.calls.lock().unwrap().clone()
    }
}

impl Runner for Recording {
    fn run(&self, cmd: &Cmd) -> Result<Output, Error> {
        self.calls.lock().unwrap().push(cmd.clone());
        if self.fail_program.as_deref() == Some(cmd.program.as_str()) {
            return Err(Error::Failed {
                command: cmd.display(),
                status: "exit code 1".into(),
                tail: String::new(),
            });
        }
        Ok(Output::default())
    }

    fn run_fed(&self, cmd: &Cmd, feed: Feed<'_>) -> Result<Output, Error> {
        feed(&mut std::io::sink()).map_err(|e| Error::Failed {
            command: cmd.display(),
            status: "an incomplete input".into(),
            tail: format!(": {e}"),
        })?;
        self.run(cmd)
    }
}

/// A runner that captures what `R` would show live ([`Cmd::passthrough`]: a bootstrap's
/// `I:` lines, apt in a chroot), so it reaches the user only in the error of a failed
/// run (the tail of its stderr). What `-q`, "print only errors", runs with.
#[derive(Debug, Default, Clone, Copy)]
pub struct Captured<R>(pub R);

impl<R: Runner> Runner for Captured<R> {
    fn run(&self, cmd: &Cmd) -> Result<Output, Error> {
        if !cmd.passthrough {
            return self.0.run(cmd);
        }
        self.0.run(&cmd.clone().passthrough(false))
    }

    fn run_fed(&self, cmd: &Cmd, feed: Feed<'_>) -> Result<Output, Error> {
        self.0.run_fed(cmd, feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_runs_keep_the_output_for_the_error() {
        let r = Captured(Recording::default());
        r.run(&Cmd::new("mmdebstrap").passthrough(true)).unwrap();
        r.run(&Cmd::new("ssh")).unwrap();
        let calls = r.0.calls();
        assert!(calls.iter().all(|c| !c.passthrough), "{calls:?}");
        assert_eq!(calls[0].program, "mmdebstrap");
        // For real: a failing program's stderr is in the error, nothing went to ours.
        let e = Captured(System)
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo I: progress >&2; echo E: broken >&2; exit 3"])
                    .passthrough(true),
            )
            .unwrap_err();
        assert!(e.to_string().contains("E: broken"), "{e}");
    }

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let c = Cmd::new("chroot").args(["/t", "/bin/sh", "-c", "echo 'hi there'"]);
        assert_eq!(
            c.display(),
            "chroot /t /bin/sh -c 'echo '\\''hi there'\\'''"
        );
    }

    #[test]
    fn missing_program_names_the_package() {
        let err = System
            .run(&Cmd::new("definitely-not-a-program-xyz"))
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("apt-get install"));
    }

    #[test]
    fn fed_child_gets_the_whole_stream() {
        let out = System
            .run_fed(&Cmd::new("wc").arg("-c"), &mut |w| {
                w.write_all(&vec![b'x'; 300_000])
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000");
    }

    #[test]
    fn fed_child_failure_wins_over_broken_pipe() {
        let err = System
            .run_fed(
                &Cmd::new("sh").args(["-c", "echo nope >&2; exit 4"]),
                &mut |w| {
                    for _ in 0..100 {
                        w.write_all(&[0u8; 65536])?;
                    }
                    Ok(())
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("exit code 4: nope"), "{err}");
    }

    #[test]
    fn failure_carries_stderr_tail() {
        let err = System
            .run(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sh -c 'echo boom >&2; exit 3'` failed with exit code 3: boom"
        );
    }
}
