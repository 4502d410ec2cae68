//! `image-archive` backend: flatten a `docker save` archive or an OCI image layout
//! (a directory, or a tar of one) without any daemon. The layers are applied in order
//! with [`crate::tree::unpack`] in whiteout mode (`.wh.NAME` deletes, `.wh..wh..opq`
//! hides the lower layers' directory contents), so the result is the image's root
//! filesystem as a container would see it.
//!
//! A tar archive is never extracted to disk: one pass over its headers records where
//! each member starts, then the JSON documents and the layers are read in place by
//! offset, in the order the manifest gives. Every layer is checked against the config's
//! `rootfs.diff_ids`, so a corrupt or truncated archive is an error, not a partial tree.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layers::{flatten, Layer};
use super::oci::{self, Config, Index, Manifest, Platform};
use super::{Error, Interruptible, SourceCtx, SourceInfo};
use crate::recipe::ImageArchiveSource;
use crate::tree::decompressed;
use crate::tree::Root;

/// JSON documents (manifests, configs, indexes) bigger than this are refused.
const MAX_JSON: u64 = 16 << 20;

/// Symlinks followed inside a tar archive (docker save links duplicate layers).
const MAX_LINKS: usize = 8;

/// One member of a tar archive: where its data starts, or what it links to.
#[derive(Debug, Clone)]
struct Member {
    offset: u64,
    size: u64,
    /// Normalised archive path of a symlink's or hardlink's target.
    link: Option<String>,
}

/// The archive's files, readable by their path inside it.
enum Store {
    Dir(PathBuf),
    Tar {
        file: File,
        members: HashMap<String, Member>,
    },
}

/// A byte range of a file, read with `pread` (no shared cursor to keep in step).
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "archive member is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// `a/./b/../c` → `a/c`; `None` when the path climbs out of the archive.
fn normalise(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

impl Store {
    /// Index a tar (read once, headers only) or take a directory as it is.
    fn open(path: &Path, scratch: &Path, ctx: &SourceCtx) -> Result<Store, String> {
        if path.is_dir() {
            return Ok(Store::Dir(path.to_path_buf()));
        }
        let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut magic = [0u8; 4];
        let n = file.read_at(&mut magic, 0).map_err(|e| e.to_string())?;
        if magic[..n].starts_with(&[0x1f, 0x8b]) || magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
            // A compressed archive cannot be read by offset: decompress it once into an
            // unnamed file next to the build (removed by the kernel when closed).
            ctx.reporter
                .info("image-archive: decompressing the archive to read it by offset");
            let mut tmp = tempfile::tempfile_in(scratch).map_err(|e| {
                format!("cannot create a scratch file in {}: {e}", scratch.display())
            })?;
            let mut r = decompressed(Interruptible(File::open(path).map_err(|e| e.to_string())?))
                .map_err(|e| format!("cannot read: {e}"))?;
            std::io::copy(&mut r, &mut tmp)
                .map_err(|e| format!("corrupt compressed archive: {e}"))?;
            tmp.rewind().map_err(|e| e.to_string())?;
            file = tmp;
        }
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| format!("not a tar archive: {e}"))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("corrupt tar archive: {e}"))?;
                let name = entry
                    .path()
                    .map_err(|e| format!("corrupt tar archive: {e}"))?
                    .into_owned();
                let Some(key) = normalise(&name) else {
                    continue;
                };
                let kind = entry.header().entry_type();
                let link = match kind {
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        let target = entry
                            .link_name()
                            .map_err(|e| format!("corrupt tar archive: {e}"))?
                            .unwrap_or_default();
                        // Symlinks are relative to their directory, hardlinks to the root.
                        let base = if kind == tar::EntryType::Symlink && target.is_relative() {
                            Path::new(&key)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(&target)
                        } else {
                            target.to_path_buf()
                        };
                        normalise(&base)
                    }
                    _ => None,
                };
                // Seeking past the end of a truncated file succeeds; catch it here.
                if entry.raw_file_position() + entry.size() > len {
                    return Err(format!(
                        "truncated tar archive: {key} ends past the end of the file"
                    ));
                }
                members.insert(
                    key,
                    Member {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                        link,
                    },
                );
            }
        }
        Ok(Store::Tar { file, members })
    }

    /// A reader over the member `name` (a path inside the archive).
    fn open_member(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64), String> {
        let key = normalise(Path::new(name))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("{name}: path leaves the archive"))?;
        match self {
            Store::Dir(dir) => {
                let p = dir.join(&key);
                let f = File::open(&p).map_err(|e| format!("{key}: {e}"))?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((Box::new(f), size))
            }
            Store::Tar { file, members } => {
                let mut key = key;
                for _ in 0..MAX_LINKS {
                    let m = members
                        .get(&key)
                        .ok_or_else(|| format!("{key}: not in the archive"))?;
                    match &m.link {
                        Some(target) => key = target.clone(),
                        None => {
                            return Ok((
                                Box::new(Section {
                                    file,
                                    pos: m.offset,
                                    end: m.offset + m.size,
                                }),
                                m.size,
                            ))
                        }
                    }
                }
                Err(format!("{name}: too many links"))
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        match self {
            Store::Dir(dir) => dir.join(name).is_file(),
            Store::Tar { members, .. } => members.contains_key(name),
        }
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<(T, Vec<u8>), String> {
        let (r, size) = self.open_member(name)?;
        if size > MAX_JSON {
            return Err(format!(
                "{name}: {size} bytes is too big for a JSON document"
            ));
        }
        let mut buf = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{name}: {e}"))?;
        let v = serde_json::from_slice(&buf).map_err(|e| format!("{name}: not valid: {e}"))?;
        Ok((v, buf))
    }
}

/// `manifest.json` of `docker save`: one object per image.
#[derive(Deserialize)]
struct SaveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// One image of the archive, ready to apply.
struct Image {
    names: Vec<String>,
    config: String,
    layers: Vec<String>,
}

/// `sha256:abc` → `blobs/sha256/abc`, refusing digests that are not a plain name.
fn blob_path(digest: &str) -> Result<String, String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no algorithm"))?;
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    if !plain(alg) || !plain(hex) {
        return Err(format!("digest {digest:?} is malformed"));
    }
    Ok(format!("blobs/{alg}/{hex}"))
}

/// The images an OCI layout lists; nested indexes resolve to their linux/amd64 manifest.
fn oci_images(store: &Store) -> Result<Vec<Image>, String> {
    let (index, _): (Index, _) = store.read_json("index.json")?;
    let mut out = Vec::new();
    for desc in index.manifests {
        let mut names: Vec<String> = [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ]
        .iter()
        .filter_map(|k| desc.annotations.get(*k).cloned())
        .collect();
        names.dedup();
        let mut manifest_desc = desc.clone();
        for _ in 0..MAX_LINKS {
            if !oci::is_index(&manifest_desc.media_type) {
                break;
            }
            let (nested, _): (Index, _) = store.read_json(&blob_path(&manifest_desc.digest)?)?;
            manifest_desc = oci::pick_platform(&nested, &Platform::default_linux_amd64())
                .or(if nested.manifests.len() == 1 {
                    nested.manifests.first()
                } else {
                    None
                })
                .cloned()
                .ok_or_else(|| {
                    format!("index {} has no linux/amd64 image", manifest_desc.digest)
                })?;
        }
        let (m, _): (Manifest, _) = store.read_json(&blob_path(&manifest_desc.digest)?)?;
        out.push(Image {
            names,
            config: blob_path(&m.config.digest)?,
            layers: m
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// `debian` → `debian:latest`, `docker.io/library/debian:12` → `debian:12`: the forms
/// people write for the same image compare equal.
fn normalise_name(name: &str) -> String {
    let n = name
        .strip_prefix("docker.io/")
        .unwrap_or(name)
        .trim_start_matches("library/");
    let last = n.rsplit('/').next().unwrap_or(n);
    if n.contains('@') || last.contains(':') {
        n.to_string()
    } else {
        format!("{n}:latest")
    }
}

/// The image to apply: the one matching `wanted`, or the only one.
fn pick(images: Vec<Image>, wanted: Option<&str>) -> Result<Image, String> {
    let listing = |images: &[Image]| {
        let names: Vec<String> = images
            .iter()
            .map(|i| {
                if i.names.is_empty() {
                    "(untagged)".to_string()
                } else {
                    i.names.join(" = ")
                }
            })
            .collect();
        names.join(", ")
    };
    match wanted {
        Some(w) => {
            let nw = normalise_name(w);
            let found = images
                .iter()
                .position(|i| i.names.iter().any(|n| n == w || normalise_name(n) == nw));
            match found {
                Some(idx) => Ok(images.into_iter().nth(idx).expect("index found")),
                None => Err(format!(
                    "no image {w:?} in the archive (it holds: {}); fix [source] image",
                    listing(&images)
                )),
            }
        }
        None if images.len() == 1 => Ok(images.into_iter().next().expect("one image")),
        None if images.is_empty() => Err("the archive lists no image".into()),
        None => Err(format!(
            "the archive holds {} images ({}); choose one with [source] image = \"name:tag\"",
            images.len(),
            listing(&images)
        )),
    }
}

pub fn run(a: &ImageArchiveSource, target: &Path, ctx: &SourceCtx) -> Result<SourceInfo, Error> {
    let file = &a.file;
    let input = |msg: String| Error::Input {
        path: file.display().to_string(),
        msg,
    };
    if !file.exists() {
        return Err(input(
            "no such file or directory; fix [source] file (relative to the recipe)".into(),
        ));
    }
    let scratch = target.parent().unwrap_or(Path::new("/tmp"));
    let store = Store::open(file, scratch, ctx).map_err(input)?;

    let images = if store.exists("manifest.json") {
        let (list, _): (Vec<SaveManifest>, _) = store.read_json("manifest.json").map_err(input)?;
        list.into_iter()
            .map(|m| Image {
                names: m.repo_tags.unwrap_or_default(),
                config: m.config,
                layers: m.layers,
            })
            .collect()
    } else if store.exists("index.json") {
        oci_images(&store).map_err(input)?
    } else {
        return Err(input(
            "neither manifest.json (docker save) nor index.json (OCI image layout) found; give a docker save archive or an OCI layout".into(),
        ));
    };
    let image = pick(images, a.image.as_deref()).map_err(input)?;
    let (config, config_bytes): (Config, _) = store.read_json(&image.config).map_err(input)?;
    let root = Root::open(target)?;
    let origin = file.display().to_string();
    let layers = image.layers.iter().map(|layer| {
        let (reader, _) = store.open_member(layer).map_err(input)?;
        Ok(Layer {
            name: layer.clone(),
            reader,
        })
    });
    flatten(
        layers,
        image.layers.len(),
        config.diff_ids(),
        &root,
        &origin,
        ctx,
    )?;

    let id = format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes)));
    let reference = match &a.image {
        Some(name) => format!("{} ({name})", file.display()),
        None => match image.names.first() {
            Some(name) => format!("{} ({name})", file.display()),
            None => file.display().to_string(),
        },
    };
    Ok(SourceInfo {
        kind: "image-archive".into(),
        reference,
        digest: Some(id),
        created: super::epoch_of(config.created.as_deref()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(names: &[&str]) -> Image {
        Image {
            names: names.iter().map(|s| s.to_string()).collect(),
            config: String::new(),
            layers: vec![],
        }
    }

    #[test]
    fn normalise_keeps_paths_inside() {
        assert_eq!(normalise(Path::new("./a/./b/../c")).as_deref(), Some("a/c"));
        assert_eq!(normalise(Path::new("../x")), None);
    }

    #[test]
    fn pick_matches_the_usual_spellings() {
        let imgs = || vec![img(&["docker.io/library/debian:12"]), img(&["app:1"])];
        assert_eq!(
            pick(imgs(), Some("debian:12")).unwrap().names[0],
            "docker.io/library/debian:12"
        );
        assert_eq!(pick(imgs(), Some("app:1")).unwrap().names[0], "app:1");
        let e = pick(imgs(), Some("app:2")).err().unwrap();
        assert!(e.contains("docker.io/library/debian:12, app:1"), "{e}");
        let e = pick(imgs(), None).err().unwrap();
        assert!(
            e.contains("holds 2 images") && e.contains("[source] image"),
            "{e}"
        );
        assert_eq!(
            pick(vec![img(&["x"])], Some("x:latest")).unwrap().names[0],
            "x"
        );
    }

    #[test]
    fn blob_paths_refuse_traversal() {
        assert_eq!(blob_path("sha256:ab12").unwrap(), "blobs/sha256/ab12");
        assert!(blob_path("sha256:../../etc").is_err());
        assert!(blob_path("nocolon").is_err());
    }
}
