//! Progress and log output. The library reports through a [`Reporter`]; it draws
//! indicatif spinners and bars on stderr when stderr is a terminal and writes plain,
//! timestamped lines otherwise (CI logs). Stdout is never touched: it belongs to `--json`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Where stages, bars and log lines go.
pub struct Reporter {
    verbosity: Verbosity,
    multi: Option<MultiProgress>,
    start: Instant,
    /// (stage, seconds) in the order stages finished, for the final summary.
    timings: Mutex<Vec<(String, f64)>>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity, tty: bool) -> Self {
        let multi = (tty && verbosity != Verbosity::Quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            verbosity,
            multi,
            start: Instant::now(),
            timings: Mutex::new(Vec::new()),
        }
    }

    /// A reporter that shows nothing (tests, library users that want silence).
    pub fn silent() -> Self {
        Reporter::new(Verbosity::Quiet, false)
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    fn line(&self, text: &str) {
        let stamp = format!("[{:>7.1}s] {text}", self.start.elapsed().as_secs_f64());
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{stamp}"),
        }
    }

    pub fn info(&self, msg: &str) {
        if self.verbosity != Verbosity::Quiet {
            self.line(msg);
        }
    }

    /// Warnings show even with -q: they are about the result.
    pub fn warn(&self, msg: &str) {
        self.line(&format!("warning: {msg}"));
    }

    /// Errors about the result (e.g. check findings), shown even with -q.
    pub fn error(&self, msg: &str) {
        self.line(&format!("error: {msg}"));
    }

    pub fn debug(&self, msg: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.line(msg);
        }
    }

    /// Start a named stage; finish it with [`Stage::done`].
    pub fn stage(&self, name: &str) -> Stage<'_> {
        let bar = self.multi.as_ref().map(|m| {
            let pb = m.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template("{spinner} {prefix:>10} {wide_msg} {elapsed}")
                    .unwrap(),
            );
            pb.set_prefix(name.to_string());
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        if bar.is_none() {
            self.info(&format!("{name}: started"));
        }
        Stage {
            reporter: self,
            name: name.to_string(),
            started: Instant::now(),
            bar,
        }
    }

    /// A byte-counting bar (uploads, packing) named `name`; a plain reporter stays silent
    /// until [`Bar::finish`].
    pub fn bar(&self, name: &str, total: Option<u64>) -> Bar<'_> {
        let pb = self.multi.as_ref().map(|m| {
            let pb = m.add(match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            });
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            pb.set_prefix(name.to_string());
            pb
        });
        Bar {
            reporter: self,
            name: name.to_string(),
            pb,
        }
    }

    /// Stage timings recorded so far.
    pub fn timings(&self) -> Vec<(String, f64)> {
        self.timings.lock().unwrap().clone()
    }
}

/// A running stage: a spinner on a terminal, two log lines otherwise.
pub struct Stage<'a> {
    reporter: &'a Reporter,
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Stage<'_> {
    pub fn message(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => self.reporter.debug(&format!("{}: {msg}", self.name)),
        }
    }

    pub fn done(self, summary: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        self.reporter
            .timings
            .lock()
            .unwrap()
            .push((self.name.clone(), secs));
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.reporter
            .info(&format!("{}: {summary} ({secs:.1}s)", self.name));
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A byte counter shown as a bar on a terminal.
pub struct Bar<'a> {
    reporter: &'a Reporter,
    name: String,
    pb: Option<ProgressBar>,
}

impl Bar<'_> {
    pub fn inc(&self, n: u64) {
        if let Some(p) = &self.pb {
            p.inc(n);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(p) = &self.pb {
            p.set_message(msg.to_string());
        }
    }

    /// A line about this target that shows even with -q (a retry, a fault survived).
    pub fn warn(&self, msg: &str) {
        self.reporter.warn(&format!("{}: {msg}", self.name));
    }

    pub fn finish(&self, summary: &str) {
        if let Some(p) = &self.pb {
            p.finish_and_clear();
        }
        self.reporter.info(&format!("{}: {summary}", self.name));
    }
}
