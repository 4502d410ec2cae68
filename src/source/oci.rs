//! Reader of the OCI / Docker v2 image formats that both daemonless sources meet: image
//! manifests, indexes (OCI image index, Docker manifest list), image configs and
//! descriptors. Plain data parsed from bytes it is given; fetching (from an archive or a
//! registry) and verifying is the caller's business. The platform choice from an index
//! lives here too, so an image archive and a registry pick the same image.

use std::collections::HashMap;

use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest kind we read, for one `Accept` header: a registry that is not offered
/// its image's own type converts a Docker image to schema 1 or answers 404 for an OCI one.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Deserialize, Clone, Default)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    /// 0 when the document did not say (we then cannot check it).
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, `linux/arm/v7`: what `docker --platform` takes.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(format!(
                "platform {s:?} is not OS/ARCH[/VARIANT]; write e.g. \"linux/amd64\" or \"linux/arm/v7\""
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The platform this tool builds for by default (the platform runs x86-64).
    pub fn default_linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Whether an index entry for `self` serves `want`: OS and architecture equal, and the
    /// variant equal when `want` names one (none asked: any variant will do).
    fn serves(&self, want: &Platform) -> bool {
        self.os == want.os
            && self.architecture == want.architecture
            && match &want.variant {
                None => true,
                Some(v) => self.variant.as_deref() == Some(v.as_str()),
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An OCI image index or a Docker manifest list (same shape).
#[derive(Debug, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest or a Docker v2 schema 2 manifest (same shape).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config we use: the layers' diff ids (to check every layer) and
/// the creation time (which bounds the archive's mtimes).
#[derive(Debug, Deserialize, Default)]
pub struct Config {
    #[serde(default)]
    pub rootfs: Option<RootFs>,
    #[serde(default)]
    pub created: Option<String>,
}

impl Config {
    pub fn diff_ids(&self) -> &[String] {
        self.rootfs.as_ref().map_or(&[], |r| &r.diff_ids)
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Only the fields that say what a manifest document is.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// A manifest document as fetched: an index to choose from, or an image.
#[derive(Debug)]
pub enum Document {
    Index(Index),
    Image(Manifest),
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Parse a manifest document. `content_type` is what the server said (may be empty); the
/// document's own `mediaType` wins when present (registries sometimes answer with a
/// generic type).
pub fn parse_document(bytes: &[u8], content_type: &str) -> Result<Document, String> {
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if head.schema_version == 1 {
        return Err("manifest is Docker schema 1 (deprecated, unsigned layers); push the image again with a current docker or skopeo".into());
    }
    let mt = if head.media_type.is_empty() {
        content_type.split(';').next().unwrap_or("").trim()
    } else {
        head.media_type.as_str()
    };
    let index = is_index(mt) || (mt.is_empty() && head.manifests.is_some());
    if index {
        serde_json::from_slice(bytes)
            .map(Document::Index)
            .map_err(|e| format!("index is not valid: {e}"))
    } else if mt.is_empty() || mt == OCI_MANIFEST || mt == DOCKER_MANIFEST {
        serde_json::from_slice(bytes)
            .map(Document::Image)
            .map_err(|e| format!("manifest is not valid: {e}"))
    } else {
        Err(format!(
            "manifest media type {mt:?} is not an image (an artifact, or an unknown kind)"
        ))
    }
}

/// The entry of `index` for `want`. An entry with no platform (or `unknown/unknown`,
/// attestations) is never chosen, except when it is the index's only entry.
pub fn pick_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let found = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.serves(want)));
    match found {
        Some(d) => Some(d),
        None if index.manifests.len() == 1 && index.manifests[0].platform.is_none() => {
            index.manifests.first()
        }
        None => None,
    }
}

/// The platforms `index` offers, for "no image for …" messages.
pub fn platforms(index: &Index) -> String {
    let v: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `sha256:<64 hex>` split into its algorithm and hex; anything else (another algorithm,
/// a name that could climb a path) is refused.
pub fn sha256_hex(digest: &str) -> Result<&str, String> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) =>
        {
            Ok(hex)
        }
        _ => Err(format!(
            "digest {digest:?} is not sha256:<64 lowercase hex digits>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(json: &str) -> Index {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn platform_parses_and_shows() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn picks_the_platform_and_respects_the_variant() {
        let i = index(
            r#"{"manifests":[
            {"digest":"sha256:a","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
            {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"digest":"sha256:c","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:d","platform":{"os":"unknown","architecture":"unknown"}}]}"#,
        );
        let pick =
            |s: &str| pick_platform(&i, &Platform::parse(s).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:c"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("sha256:b"));
        assert_eq!(pick("linux/arm").as_deref(), Some("sha256:a"));
        assert_eq!(pick("linux/arm/v8"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(
            platforms(&i),
            "linux/arm/v6, linux/arm/v7, linux/amd64, unknown/unknown"
        );
    }

    #[test]
    fn documents_are_told_apart() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"sha256:c","size":2}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_document(m.as_bytes(), ""),
            Ok(Document::Image(_))
        ));
        // No mediaType in the body: the Content-Type decides.
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document(i.as_bytes(), OCI_INDEX),
            Ok(Document::Index(_))
        ));
        assert!(matches!(
            parse_document(i.as_bytes(), ""),
            Ok(Document::Index(_))
        ));
        let e = parse_document(br#"{"schemaVersion":1,"fsLayers":[]}"#, "").unwrap_err();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse_document(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.config"}"#,
            "",
        )
        .unwrap_err();
        assert!(e.contains("not an image"), "{e}");
    }

    #[test]
    fn digests_are_checked() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(sha256_hex(&ok).unwrap().len(), 64);
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex(&format!("sha512:{}", "ab".repeat(32))).is_err());
        assert!(sha256_hex(&format!("sha256:{}", "AB".repeat(32))).is_err());
    }
}
