//! `docker` backend: the tree of an image, taken through the Docker Engine API (bollard,
//! honouring `DOCKER_HOST`). The image is pulled only as `[source] pull` allows and a
//! container of it is created but never started, which pins the image while it is read.
//! When only finish will write the tree and the engine keeps the container's layers as
//! overlay directories on this machine, they are mounted read-only below an overlay
//! (`layers`); otherwise the container's export stream goes straight into
//! [`crate::tree::unpack`]. A guard removes the container on every exit path (success,
//! error, Ctrl-C). What the engine adds for a container (`/.dockerenv`, the empty
//! `/etc/hosts`-style placeholders, `/dev` entries) is cleaned up by the finish stage.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateImageOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::{Error, InPlace, SourceCtx, SourceInfo};
use crate::progress::Reporter;
use crate::recipe::{DockerSource, Pull};
use crate::tree::{unpack, Root, UnpackOptions};

/// Pulls and exports of big images outlast bollard's default of two minutes.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// The label every container we create carries, so a leftover is recognisable.
pub const LABEL: &str = "it.uwsgi.build-distro";

/// What bollard connects to when `DOCKER_HOST` is unset.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the engine is expected, for messages: `DOCKER_HOST` or the default socket.
fn engine_address() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => format!("{h} (DOCKER_HOST)"),
        _ => format!("{DEFAULT_HOST} (the default socket; DOCKER_HOST is unset)"),
    }
}

/// A bollard error on one line (some carry the daemon's multi-line text).
fn one_line(e: &DockerError) -> String {
    let s = match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name` with `:latest` when it has neither tag nor digest: the pull endpoint would
/// otherwise fetch every tag of the repository.
pub fn pull_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The `@sha256:…` of the repo digest that belongs to `image`'s repository, if any.
fn repo_digest(image: &str, digests: &[String]) -> Option<String> {
    let repo = |r: &str| -> String {
        let r = r.split('@').next().unwrap_or(r);
        let (head, last) = r.rsplit_once('/').unwrap_or(("", r));
        let last = last.split(':').next().unwrap_or(last);
        let full = if head.is_empty() {
            last.to_string()
        } else {
            format!("{head}/{last}")
        };
        full.trim_start_matches("docker.io/")
            .trim_start_matches("library/")
            .to_string()
    };
    let want = repo(image);
    digests
        .iter()
        .find(|d| repo(d) == want)
        .or(digests.first())
        .and_then(|d| d.split_once('@').map(|(_, dig)| dig.to_string()))
}

/// The engine's client and the runtime it runs on.
struct Engine {
    rt: Runtime,
    docker: Docker,
}

/// A container of the image, created but never started: it pins the image's layers while
/// we read them, and is removed when dropped, whatever path left the build.
pub struct Container<'a> {
    engine: Engine,
    id: String,
    reporter: &'a Reporter,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let Engine { rt, docker } = &self.engine;
        if let Err(e) = rt.block_on(docker.remove_container(&self.id, Some(opts))) {
            self.reporter.warn(&format!(
                "could not remove container {}: {}; remove it with docker rm -f {}",
                self.id,
                one_line(&e),
                self.id
            ));
        }
    }
}

/// Hands the export's chunks to the synchronous tar reader on the blocking thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                // The sender is gone only at the end of the stream, or after an error or
                // interrupt that the async side reports itself.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

enum ExportError {
    Interrupted,
    /// The engine or the connection failed mid-stream.
    Stream(String),
    Unpack(crate::tree::Error),
}

/// Resolves once Ctrl-C was pressed.
async fn interrupted() {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if crate::interrupt::interrupted() {
            return;
        }
    }
}

/// Stream the container's export into the tree. The async side owns the HTTP stream, so an
/// interrupt drops it at once (closing the connection) even when the engine has stopped
/// sending; the blocking side unpacks from a bounded channel.
async fn export(
    docker: &Docker,
    id: &str,
    target: &std::path::Path,
    opts: UnpackOptions,
) -> Result<crate::tree::UnpackStats, ExportError> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let root_path = target.to_path_buf();
    let task = tokio::task::spawn_blocking(move || {
        let root = Root::open(&root_path)?;
        let reader = ChannelReader {
            rx,
            chunk: bytes::Bytes::new(),
        };
        unpack(reader, &root, &opts)
    });
    let mut stream_error = None;
    let feed = async {
        let mut stream = docker.export_container(id);
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| {
                let msg = one_line(&e);
                stream_error = Some(msg.clone());
                std::io::Error::other(msg)
            });
            let failed = item.is_err();
            // A closed channel means the unpack stopped early; its result says why.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
    };
    let was_interrupted = tokio::select! {
        _ = feed => false,
        _ = interrupted() => true,
    };
    let result = task
        .await
        .map_err(|e| ExportError::Stream(format!("the unpack task failed: {e}")))?;
    if was_interrupted || crate::interrupt::interrupted() {
        return Err(ExportError::Interrupted);
    }
    if let Some(msg) = stream_error {
        return Err(ExportError::Stream(msg));
    }
    result.map_err(ExportError::Unpack)
}

/// The image's tree: read in place below an overlay when `ctx` allows it and the engine
/// keeps its layers as overlay directories on this machine (`layers`), else through the
/// container's export stream into `target`.
pub fn run<'a>(
    d: &DockerSource,
    target: &std::path::Path,
    ctx: &SourceCtx<'a>,
) -> Result<(SourceInfo, Option<InPlace<'a>>), Error> {
    let (container, info) = prepare(d, ctx)?;
    let image = d.image.trim();
    let docker_err = |msg: String| Error::Docker {
        image: image.to_string(),
        msg,
    };
    if let Some(scratch) = ctx.in_place {
        let mounted = layers(&container).and_then(|lowers| {
            let overlay = crate::tree::overlay::mount(&lowers, target, scratch)?;
            Ok((lowers.len(), overlay))
        });
        match mounted {
            Ok((n, overlay)) => {
                ctx.reporter.debug(&format!(
                    "docker: the {n} layers of container {} mounted read-only below an overlay, not exported",
                    container.id
                ));
                return Ok((info, Some(InPlace::new(overlay, Some(container)))));
            }
            Err(why) => ctx.reporter.debug(&format!("docker: {why}; exporting")),
        }
    }
    ctx.reporter
        .debug(&format!("docker: exporting container {}", container.id));
    let opts = UnpackOptions {
        label: format!("docker export of {image}"),
        max_bytes: ctx.max_unpack_bytes,
        ..Default::default()
    };
    let Engine { rt, docker } = &container.engine;
    let stats = rt.block_on(export(docker, &container.id, target, opts));
    drop(container);
    let stats = stats.map_err(|e| match e {
        ExportError::Interrupted => Error::Interrupted,
        ExportError::Stream(msg) => docker_err(format!("export failed: {msg}")),
        ExportError::Unpack(e) => e.into(),
    })?;
    if stats.skipped_special > 0 {
        ctx.reporter.debug(&format!(
            "docker: dropped {} device nodes / FIFOs",
            stats.skipped_special
        ));
    }
    Ok((info, None))
}

/// The directories of the container's filesystem, topmost first, when the engine keeps
/// them as overlay layers that this process sees: the storage driver is `overlay2` (or
/// `overlay`), and every layer is a directory here. The container's own (empty, never
/// started) upper layer is one of them, and it was created a moment ago under a random
/// id, so finding it proves the engine runs on this machine, in this mount namespace.
/// An engine with user namespaces (userns-remap, rootless) stores shifted owners, so it
/// is exported instead.
/// `BUILD_DISTRO_DOCKER_EXPORT=1` always exports (tests compare both ways).
fn layers(container: &Container) -> Result<Vec<std::path::PathBuf>, String> {
    if std::env::var_os("BUILD_DISTRO_DOCKER_EXPORT").is_some_and(|v| v == "1") {
        return Err("BUILD_DISTRO_DOCKER_EXPORT=1".into());
    }
    let Engine { rt, docker } = &container.engine;
    // With user namespaces (userns-remap, rootless) the layers hold shifted owners that
    // only the engine maps back.
    let info = rt
        .block_on(docker.info())
        .map_err(|e| format!("cannot read the engine's info: {}", one_line(&e)))?;
    if let Some(opt) = info
        .security_options
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.contains("name=userns") || o.contains("name=rootless"))
    {
        return Err(format!("the engine stores shifted owners ({opt})"));
    }
    let inspect = rt
        .block_on(docker.inspect_container(&container.id, None))
        .map_err(|e| {
            format!(
                "cannot inspect container {}: {}",
                container.id,
                one_line(&e)
            )
        })?;
    let driver = inspect
        .graph_driver
        .ok_or("the engine reported no storage driver")?;
    if driver.name != "overlay2" && driver.name != "overlay" {
        return Err(format!(
            "the engine's storage driver is {}, not overlay2",
            driver.name
        ));
    }
    let upper = driver
        .data
        .get("UpperDir")
        .ok_or("the engine reported no UpperDir")?;
    let lowers = driver
        .data
        .get("LowerDir")
        .map(String::as_str)
        .unwrap_or("");
    let dirs: Vec<std::path::PathBuf> = std::iter::once(upper.as_str())
        .chain(lowers.split(':').filter(|l| !l.is_empty()))
        .map(std::path::PathBuf::from)
        .collect();
    match dirs.iter().find(|d| !d.is_absolute() || !d.is_dir()) {
        Some(d) => Err(format!(
            "the engine's layer {} is not a directory here (a remote engine or another mount namespace)",
            d.display()
        )),
        None => Ok(dirs),
    }
}

/// Validate the reference, reach the engine, pull the image as `[source] pull` allows, and
/// create a container of it (by id, so the tree is the image we recorded even if the tag
/// moves meanwhile).
fn prepare<'a>(
    d: &DockerSource,
    ctx: &SourceCtx<'a>,
) -> Result<(Container<'a>, SourceInfo), Error> {
    let image = d.image.trim();
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(Error::Docker {
            image: format!("{:?}", d.image),
            msg: "not an image reference; fix [source] image (e.g. \"debian:bookworm-slim\")"
                .into(),
        });
    }
    let docker_err = |msg: String| Error::Docker {
        image: image.to_string(),
        msg,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| docker_err(format!("cannot start the I/O runtime: {e}")))?;
    let unreachable = |e: DockerError| Error::EngineUnreachable {
        host: engine_address(),
        msg: one_line(&e),
    };
    let docker = Docker::connect_with_defaults()
        .map_err(unreachable)?
        .with_timeout(TIMEOUT);
    // Debian's engine speaks an older API than bollard's default: agree on one first.
    let docker = rt
        .block_on(docker.negotiate_version())
        .map_err(unreachable)?;
    rt.block_on(docker.ping()).map_err(unreachable)?;
    let present = rt.block_on(docker.inspect_image(image));
    let present = match present {
        Ok(_) => true,
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => return Err(docker_err(format!("cannot inspect: {}", one_line(&e)))),
    };
    let must_pull = match d.pull {
        Pull::Always => true,
        Pull::Missing => !present,
        Pull::Never if present => false,
        Pull::Never => {
            return Err(Error::ImageMissing {
                image: image.to_string(),
            })
        }
    };
    if must_pull {
        let reference = pull_reference(image);
        ctx.reporter.info(&format!("docker: pulling {reference}"));
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&reference)
            .build();
        let pull = async {
            let mut stream = docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                let info =
                    item.map_err(|e| docker_err(format!("pull failed: {}", one_line(&e))))?;
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(docker_err(format!("pull failed: {detail}")));
                }
                if let Some(status) = info.status {
                    ctx.reporter.debug(&format!(
                        "docker pull: {}{status}",
                        info.id.map(|i| format!("{i}: ")).unwrap_or_default()
                    ));
                }
            }
            Ok(())
        };
        // A registry that stops answering must not make Ctrl-C wait for it.
        rt.block_on(async {
            tokio::select! {
                r = pull => r,
                _ = interrupted() => Err(Error::Interrupted),
            }
        })?;
    }
    let inspect = rt
        .block_on(docker.inspect_image(image))
        .map_err(|e| docker_err(format!("cannot inspect: {}", one_line(&e))))?;
    let id = inspect
        .id
        .clone()
        .ok_or_else(|| docker_err("the engine reported no image id".into()))?;
    crate::interrupt::check_interrupted().map_err(|_| Error::Interrupted)?;

    // The command only satisfies images without CMD/ENTRYPOINT: the container never runs.
    let body = ContainerCreateBody {
        image: Some(id.clone()),
        cmd: Some(vec!["/build-distro-never-runs".into()]),
        network_disabled: Some(true),
        labels: Some([(LABEL.to_string(), "source".to_string())].into()),
        ..Default::default()
    };
    let created = rt
        .block_on(docker.create_container(None, body))
        .map_err(|e| docker_err(format!("cannot create a container: {}", one_line(&e))))?;
    let container = Container {
        engine: Engine { rt, docker },
        id: created.id,
        reporter: ctx.reporter,
    };
    let digests = inspect.repo_digests.unwrap_or_default();
    let reference = match repo_digest(image, &digests) {
        Some(dig) if !image.contains('@') => format!("{image}@{dig}"),
        _ => image.to_string(),
    };
    let info = SourceInfo {
        kind: "docker".into(),
        reference,
        digest: Some(id),
        created: super::epoch_of(inspect.created.as_deref()),
        ..Default::default()
    };
    Ok((container, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_reference_adds_latest_only_without_tag_or_digest() {
        assert_eq!(pull_reference("debian"), "debian:latest");
        assert_eq!(
            pull_reference("debian:bookworm-slim"),
            "debian:bookworm-slim"
        );
        assert_eq!(
            pull_reference("registry:5000/team/app"),
            "registry:5000/team/app:latest"
        );
        assert_eq!(pull_reference("app@sha256:ab"), "app@sha256:ab");
    }

    #[test]
    fn repo_digest_prefers_the_images_repository() {
        let d = vec![
            "other/thing@sha256:11".to_string(),
            "debian@sha256:22".to_string(),
        ];
        assert_eq!(
            repo_digest("debian:bookworm-slim", &d).as_deref(),
            Some("sha256:22")
        );
        assert_eq!(
            repo_digest("docker.io/library/debian", &d).as_deref(),
            Some("sha256:22")
        );
        assert_eq!(repo_digest("x", &[]), None);
    }
}
