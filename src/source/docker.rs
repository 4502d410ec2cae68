//! `docker` backend: the tree of an image, taken through the Docker Engine API (bollard,
//! honouring `DOCKER_HOST`). The image is pulled only as `[source] pull` allows; a
//! container is created but never started, its export stream goes straight into
//! [`crate::tree::unpack`], and a guard removes the container on every exit path (success,
//! error, Ctrl-C). What the export adds for a container (`/.dockerenv`, the empty
//! `/etc/hosts`-style placeholders, `/dev` entries) is cleaned up by the finish stage.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateImageOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::{Error, SourceCtx, SourceInfo};
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

/// Removes the container when dropped, whatever path left the function.
struct ContainerGuard<'a> {
    rt: &'a Runtime,
    docker: &'a Docker,
    id: String,
    reporter: &'a Reporter,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self
            .rt
            .block_on(self.docker.remove_container(&self.id, Some(opts)))
        {
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
        if crate::error::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
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
    if was_interrupted || crate::error::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ExportError::Interrupted);
    }
    if let Some(msg) = stream_error {
        return Err(ExportError::Stream(msg));
    }
    result.map_err(ExportError::Unpack)
}

pub fn run(
    d: &DockerSource,
    target: &std::path::Path,
    ctx: &SourceCtx,
) -> Result<SourceInfo, Error> {
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
    crate::error::check_interrupted().map_err(|_| Error::Interrupted)?;

    // Created by id, so the tree is the image we recorded even if the tag moves meanwhile.
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
    let guard = ContainerGuard {
        rt: &rt,
        docker: &docker,
        id: created.id,
        reporter: ctx.reporter,
    };
    ctx.reporter
        .debug(&format!("docker: exporting container {}", guard.id));

    let opts = UnpackOptions {
        label: format!("docker export of {image}"),
        max_bytes: ctx.max_unpack_bytes,
        ..Default::default()
    };
    let stats = rt.block_on(export(&docker, &guard.id, target, opts));
    drop(guard);
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

    let digests = inspect.repo_digests.unwrap_or_default();
    let reference = match repo_digest(image, &digests) {
        Some(dig) if !image.contains('@') => format!("{image}@{dig}"),
        _ => image.to_string(),
    };
    Ok(SourceInfo {
        kind: "docker".into(),
        reference,
        digest: Some(id),
    })
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
