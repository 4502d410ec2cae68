//! `registry` backend: pull an image straight from an OCI/Docker registry (Docker Hub,
//! GHCR, a company registry, a local `registry:2`) with no Docker engine, and flatten it
//! with the same code as an image archive ([`super::layers`]).
//!
//! The manifest is resolved (an index or manifest list gives the recipe's platform) and
//! its digest recorded, so the build output shows what to pin. Layers download in
//! parallel (at most `WORKERS` at a time, never more than `WINDOW` ahead of the one
//! being applied) into unnamed temporary files in the build directory; each is checked
//! against its descriptor's size and digest while it arrives and handed to the
//! flattener only once complete and correct. A broken or short download is tried again
//! `ATTEMPTS` times; then the build fails, and the build directory (with the partial
//! tree) goes with it. No layer is ever held in memory.

pub mod auth;
mod client;
pub mod reference;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use auth::{Credentials, Secret};
use client::{Client, Fail, MAX_JSON};
use reference::Reference;

use super::layers::{flatten, Layer};
use super::oci::{self, Descriptor, Document, Platform};
use super::{Error, SourceCtx, SourceInfo};
use crate::recipe::RegistrySource;
use crate::tree::Root;

/// Downloads at the same time.
const WORKERS: usize = 3;
/// How far downloads may run ahead of the layer being applied (bounds the disk used by
/// staged layers).
const WINDOW: usize = 3;
/// Tries per download before the build fails.
const ATTEMPTS: u32 = 3;

/// How long to wait before try `n` (1-based) again.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(500 * u64::from(n))
}

/// Run `f` until it succeeds, fails for good, or used up its tries; `log` hears about
/// each new try.
fn retry<T>(
    what: &str,
    log: &dyn Fn(String),
    mut f: impl FnMut() -> Result<T, Fail>,
) -> Result<T, String> {
    let mut n = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(Fail::Transient(m)) if n < ATTEMPTS => {
                if crate::interrupt::interrupted() {
                    return Err("interrupted".into());
                }
                log(format!("{what}: {m}; trying again ({}/{ATTEMPTS})", n + 1));
                std::thread::sleep(backoff(n));
                n += 1;
            }
            Err(Fail::Transient(m)) => return Err(format!("{m} (gave up after {ATTEMPTS} tries)")),
            Err(Fail::Fatal(m)) => return Err(m),
        }
    }
}

/// A line for the reporter, from a download thread (which cannot borrow it).
enum Log {
    Info(String),
    Debug(String),
}

/// Show what the download threads and the client said so far.
fn drain(rx: &mpsc::Receiver<Log>, reporter: &crate::progress::Reporter) {
    while let Ok(l) = rx.try_recv() {
        match l {
            // Not a warning: the result is unaffected when a later try succeeds.
            Log::Info(m) => reporter.info(&m),
            Log::Debug(m) => reporter.debug(&m),
        }
    }
}

/// One try at a blob: streamed into an unnamed file in `scratch`, its size and sha256
/// checked as it arrives. A blob longer than its descriptor says is cut off right there.
fn stage_blob(
    client: &Client,
    desc: &Descriptor,
    scratch: &Path,
    stop: &AtomicBool,
) -> Result<File, Fail> {
    let want = oci::sha256_hex(&desc.digest).map_err(Fail::Fatal)?;
    let mut body = client.blob(&desc.digest)?;
    let mut file = tempfile::tempfile_in(scratch).map_err(|e| {
        Fail::Fatal(format!(
            "cannot create a scratch file in {}: {e}",
            scratch.display()
        ))
    })?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) || crate::interrupt::interrupted() {
            return Err(Fail::Fatal("interrupted".into()));
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Fail::Transient(format!(
                    "blob {}: download broke after {got} bytes: {e}",
                    desc.digest
                )))
            }
        };
        got += n as u64;
        if desc.size > 0 && got > desc.size {
            return Err(Fail::Transient(format!(
                "blob {}: the registry sent more than the {} bytes the manifest says",
                desc.digest, desc.size
            )));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| {
            Fail::Fatal(format!(
                "cannot write a scratch file in {}: {e}",
                scratch.display()
            ))
        })?;
    }
    if desc.size > 0 && got != desc.size {
        return Err(Fail::Transient(format!(
            "blob {}: truncated: {got} of {} bytes",
            desc.digest, desc.size
        )));
    }
    let hex = hex::encode(hasher.finalize());
    if hex != want {
        return Err(Fail::Transient(format!(
            "blob {} is corrupt: its content hashes to sha256:{hex}",
            desc.digest
        )));
    }
    file.rewind()
        .map_err(|e| Fail::Fatal(format!("scratch file: {e}")))?;
    Ok(file)
}

/// The image manifest for the wanted platform, and its digest: the reference's own
/// manifest, or the index's entry for `platform`.
fn resolve(
    client: &Client,
    r: &Reference,
    platform: &Platform,
    log: &dyn Fn(String),
) -> Result<(oci::Manifest, String), String> {
    let shown = r.to_string();
    let (bytes, digest, ctype) = retry(&shown, log, || client.manifest(r.manifest_ref(), &shown))?;
    match oci::parse_document(&bytes, &ctype).map_err(|e| format!("{shown}: {e}"))? {
        Document::Image(m) => Ok((m, digest)),
        Document::Index(index) => {
            let d = oci::pick_platform(&index, platform).ok_or_else(|| {
                format!(
                    "{shown} has no image for {platform} (it has: {}); set [source] platform",
                    oci::platforms(&index)
                )
            })?;
            oci::sha256_hex(&d.digest).map_err(|e| format!("{shown}: index entry: {e}"))?;
            let (bytes, digest, ctype) = retry(&shown, log, || {
                client.manifest(&d.digest, &format!("{shown} ({platform})"))
            })?;
            match oci::parse_document(&bytes, &ctype).map_err(|e| format!("{shown}: {e}"))? {
                Document::Image(m) => Ok((m, digest)),
                Document::Index(_) => Err(format!(
                    "{shown}: the index entry for {platform} is another index; not supported"
                )),
            }
        }
    }
}

/// An error about the image `shown`. A call cut short by Ctrl-C fails too; that is an
/// interrupt, not bad input.
fn input_error(shown: String) -> impl Fn(String) -> Error {
    move |msg| {
        if crate::interrupt::interrupted() {
            Error::Interrupted
        } else {
            Error::Input {
                path: shown.clone(),
                msg,
            }
        }
    }
}

/// A sink for retry messages: they go through the channel, as the threads' do.
fn info_to(tx: &mpsc::Sender<Log>) -> impl Fn(String) {
    let tx = tx.clone();
    move |m: String| {
        let _ = tx.send(Log::Info(m));
    }
}

/// A registry source resolved to one image manifest, with the connection that resolved
/// it: the manifest digest is known (the build cache's key) before any layer is fetched,
/// and [`download`] goes on without asking for the manifest again.
pub struct Resolved {
    client: Arc<Client>,
    manifest: oci::Manifest,
    digest: String,
    platform: Platform,
    shown: String,
    log_tx: mpsc::Sender<Log>,
    log_rx: mpsc::Receiver<Log>,
}

impl Resolved {
    /// The digest of the image manifest for the platform (not of an index).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The platform resolved, as `OS/ARCH[/VARIANT]`.
    pub fn platform(&self) -> String {
        self.platform.to_string()
    }

    /// The provenance of what [`download`] fills the tree with; `created` from the config.
    fn info(&self, created: Option<u64>) -> SourceInfo {
        let shown = &self.shown;
        SourceInfo {
            kind: "registry".into(),
            reference: format!(
                "{}@{}",
                shown.split('@').next().unwrap_or(shown),
                self.digest
            ),
            digest: Some(self.digest.clone()),
            created,
            ..Default::default()
        }
    }
}

/// Fetch `s` into `target`: [`resolve_source`] then [`download`].
pub fn run(s: &RegistrySource, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    download(resolve_source(s, ctx)?, target, ctx)
}

/// Connect (credentials, token), and resolve the reference to the image manifest for the
/// recipe's platform: one or two manifest requests, no blob. Asked every build, as a tag
/// may move.
pub fn resolve_source(s: &RegistrySource, ctx: &SourceCtx) -> Result<Resolved, Error> {
    let key_error = |msg: String| Error::Input {
        path: "[source] image".into(),
        msg,
    };
    let r = Reference::parse(&s.image).map_err(key_error)?;
    let platform = match &s.platform {
        Some(p) => Platform::parse(p).map_err(|msg| Error::Input {
            path: "[source] platform".into(),
            msg,
        })?,
        None => Platform::default_linux_amd64(),
    };
    let shown = r.to_string();
    let input = input_error(shown.clone());
    let places = auth::Places::from_env();
    let found = auth::lookup(&r, ctx.registry_login, &places, ctx.runner).map_err(&input)?;
    if let Some(c) = &found.credentials {
        ctx.reporter.debug(&format!(
            "registry: credentials for user {} ({})",
            c.user,
            found.looked.join(", ")
        ));
    }
    let (log_tx, log_rx) = mpsc::channel::<Log>();
    let info = info_to(&log_tx);
    let connected = retry(&format!("registry {}", r.registry), &info, || {
        let f = auth::Found {
            credentials: found.credentials.clone(),
            looked: found.looked.clone(),
        };
        // The client's trace goes through the channel too: the client is shared with
        // the download threads, which cannot borrow the reporter.
        let tx = Mutex::new(log_tx.clone());
        let t: client::Trace = Box::new(move |line: &str| {
            let _ = tx.lock().unwrap().send(Log::Debug(line.to_string()));
        });
        Client::connect(&r, f, s.insecure, t)
    });
    drain(&log_rx, ctx.reporter);
    let client = Arc::new(connected.map_err(&input)?);
    let resolved = resolve(&client, &r, &platform, &info);
    drain(&log_rx, ctx.reporter);
    let (manifest, digest) = resolved.map_err(&input)?;
    let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
    ctx.reporter.info(&format!(
        "registry: {shown} is {digest} ({platform}, {} layers, {:.1} MiB)",
        manifest.layers.len(),
        total as f64 / 1048576.0
    ));
    Ok(Resolved {
        client,
        manifest,
        digest,
        platform,
        shown,
        log_tx,
        log_rx,
    })
}

/// Fetch the config and the layers of `resolved` and flatten them into `target` (an
/// existing empty directory).
pub fn download(resolved: Resolved, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    let Resolved {
        client,
        manifest,
        shown,
        log_tx,
        log_rx,
        ..
    } = &resolved;
    let input = input_error(shown.clone());
    let info = info_to(log_tx);
    let scratch = target.parent().unwrap_or(Path::new("/tmp"));
    let never = AtomicBool::new(false);
    if manifest.config.size > MAX_JSON {
        return Err(input(format!(
            "config {} is {} bytes: too big",
            manifest.config.digest, manifest.config.size
        )));
    }
    let staged = retry(&format!("config {}", manifest.config.digest), &info, || {
        stage_blob(client, &manifest.config, scratch, &never)
    });
    drain(log_rx, ctx.reporter);
    let mut cfg_file = staged.map_err(&input)?;
    let mut config_bytes = Vec::new();
    (&mut cfg_file)
        .take(MAX_JSON)
        .read_to_end(&mut config_bytes)
        .map_err(|e| input(format!("config: {e}")))?;
    let config: oci::Config = serde_json::from_slice(&config_bytes).map_err(|e| {
        input(format!(
            "config {} is not valid: {e}",
            manifest.config.digest
        ))
    })?;

    let root = Root::open(target)?;
    let downloads = Downloads::start(
        client.clone(),
        manifest.layers.clone(),
        scratch.to_path_buf(),
        log_tx.clone(),
    );
    let result = flatten(
        downloads.staged(log_rx, ctx.reporter, shown),
        manifest.layers.len(),
        config.diff_ids(),
        &root,
        shown,
        ctx,
    );
    downloads.finish(result.is_ok());
    drain(log_rx, ctx.reporter);
    result?;
    Ok(resolved.info(super::epoch_of(config.created.as_deref())))
}

/// What the download threads share.
struct Shared {
    client: Arc<Client>,
    layers: Vec<Descriptor>,
    scratch: PathBuf,
    next: AtomicUsize,
    stop: AtomicBool,
    /// Layers handed to the flattener so far; downloads stay within [`WINDOW`] of it.
    taken: Mutex<usize>,
    moved: Condvar,
    first_error: Mutex<Option<String>>,
}

/// The layers downloading (parallel, bounded, ahead of the flattener). Every thread
/// answers every layer it takes, so the flattener never waits for a layer nobody fetches;
/// after the first failure the rest are answered at once. The threads own what they use:
/// after a failure or Ctrl-C the build does not wait for a download stuck on a silent
/// connection (the thread ends with its connection, or with the process).
struct Downloads {
    shared: Arc<Shared>,
    results: Vec<mpsc::Receiver<Result<File, String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Downloads {
    fn start(
        client: Arc<Client>,
        layers: Vec<Descriptor>,
        scratch: PathBuf,
        log: mpsc::Sender<Log>,
    ) -> Downloads {
        let n = layers.len();
        let (txs, results): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::sync_channel(1)).unzip();
        let shared = Arc::new(Shared {
            client,
            layers,
            scratch,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            taken: Mutex::new(0),
            moved: Condvar::new(),
            first_error: Mutex::new(None),
        });
        let txs = Arc::new(txs);
        let threads = (0..WORKERS.min(n))
            .map(|_| {
                let (sh, txs, log) = (shared.clone(), txs.clone(), log.clone());
                std::thread::spawn(move || download_loop(&sh, &txs, &log))
            })
            .collect();
        Downloads {
            shared,
            results,
            threads,
        }
    }

    /// The layers in order, each once it is downloaded and verified. Waiting shows the
    /// threads' log lines and notices Ctrl-C.
    fn staged<'a>(
        &'a self,
        log: &'a mpsc::Receiver<Log>,
        reporter: &'a crate::progress::Reporter,
        origin: &'a str,
    ) -> impl Iterator<Item = Result<Layer<'static>, Error>> + 'a {
        let sh = &self.shared;
        self.results.iter().enumerate().map(move |(i, rx)| {
            let got = loop {
                drain(log, reporter);
                if crate::interrupt::interrupted() {
                    return Err(Error::Interrupted);
                }
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => break r,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break Err("a download thread died".to_string())
                    }
                }
            };
            *sh.taken.lock().unwrap() = i + 1;
            sh.moved.notify_all();
            match got {
                Ok(file) => Ok(Layer {
                    name: sh.layers[i].digest.clone(),
                    reader: Box::new(file),
                }),
                Err(m) => {
                    if crate::interrupt::interrupted() {
                        return Err(Error::Interrupted);
                    }
                    let first = sh.first_error.lock().unwrap().clone().unwrap_or(m);
                    Err(Error::Input {
                        path: origin.to_string(),
                        msg: first,
                    })
                }
            }
        })
    }

    /// Stop what still runs; wait for the threads only when all went well (they are
    /// done then).
    fn finish(mut self, ok: bool) {
        self.stop();
        if ok {
            for t in std::mem::take(&mut self.threads) {
                let _ = t.join();
            }
        }
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.moved.notify_all();
    }
}

/// On every way out (an error, a panic in the flattener), the threads are told to stop:
/// each answers what it holds at once and ends. They are joined only by
/// [`Downloads::finish`] after a good run; otherwise one stuck on a silent connection
/// ends with it, and the build does not wait for it.
impl Drop for Downloads {
    fn drop(&mut self) {
        self.stop();
    }
}

fn download_loop(
    sh: &Shared,
    txs: &[mpsc::SyncSender<Result<File, String>>],
    log: &mpsc::Sender<Log>,
) {
    let n = sh.layers.len();
    loop {
        let i = sh.next.fetch_add(1, Ordering::SeqCst);
        if i >= n {
            return;
        }
        {
            let mut t = sh.taken.lock().unwrap();
            while i >= *t + WINDOW && !sh.stop.load(Ordering::SeqCst) {
                t = sh
                    .moved
                    .wait_timeout(t, Duration::from_millis(200))
                    .unwrap()
                    .0;
            }
        }
        let d = &sh.layers[i];
        let result = if sh.stop.load(Ordering::SeqCst) {
            Err("stopped".to_string())
        } else {
            let what = format!("layer {}/{n} ({})", i + 1, d.digest);
            let info = |m: String| {
                let _ = log.send(Log::Info(m));
            };
            let r = retry(&what, &info, || {
                stage_blob(&sh.client, d, &sh.scratch, &sh.stop)
            });
            match &r {
                Ok(_) => {
                    let _ = log.send(Log::Debug(format!(
                        "registry: downloaded {what}, {:.1} MiB",
                        d.size as f64 / 1048576.0
                    )));
                }
                Err(m) => {
                    sh.first_error
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| m.clone());
                    sh.stop.store(true, Ordering::SeqCst);
                }
            }
            r
        };
        let _ = txs[i].send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{load, SourceSpec, BUILTIN};

    /// The shipped registry recipes name an image and a platform that parse (the recipe
    /// loader checks the keys, these are checked when the source runs).
    #[test]
    fn shipped_registry_recipes_name_valid_images() {
        let mut seen = 0;
        for (name, _) in BUILTIN {
            let l = load(Some(name), &[]).unwrap();
            if let SourceSpec::Registry(s) = l.source() {
                Reference::parse(&s.image).unwrap();
                if let Some(p) = &s.platform {
                    Platform::parse(p).unwrap();
                }
                seen += 1;
            }
        }
        assert!(seen > 0, "no shipped recipe uses the registry source");
    }

    #[test]
    fn retries_are_bounded_and_fatal_errors_are_not_retried() {
        let tries = Mutex::new(Vec::new());
        let log = |m: String| tries.lock().unwrap().push(m);
        let mut calls = 0;
        let e = retry("x", &log, || -> Result<(), Fail> {
            calls += 1;
            Err(Fail::Transient("reset".into()))
        })
        .unwrap_err();
        assert_eq!(calls, ATTEMPTS);
        assert!(e.contains("gave up after 3 tries"), "{e}");
        assert_eq!(tries.lock().unwrap().len(), 2);
        let mut calls = 0;
        retry("x", &log, || -> Result<(), Fail> {
            calls += 1;
            Err(Fail::Fatal("401".into()))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
    }
}
