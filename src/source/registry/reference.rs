//! Image references as docker reads them: `HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`, with
//! Docker Hub's short forms (`debian:12` is `docker.io/library/debian:12`, served by
//! `registry-1.docker.io`). Pure parsing; no I/O.

use std::fmt;

use crate::source::oci;

/// The name users write for Docker Hub, and the host that serves its API.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// As users name it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`): the key for
    /// credentials and certificates.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("image {s:?}: {why}");
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty, or has whitespace"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                oci::sha256_hex(d).map_err(|e| bad(&e))?;
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a port comes before).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name[..at], Some(name[at + 1..].to_string()))
            }
            None => (name, None),
        };
        if let Some(t) = &tag {
            let ok = t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad(&format!(
                    "tag {t:?} is not valid (letters, digits, _ . -; at most 128)"
                )));
            }
        }
        // The first component is a registry when docker would read it as one.
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !path.split('/').all(component_ok) {
            return Err(bad(&format!(
                "repository {path:?} is not valid (lowercase letters, digits, . _ - between slashes)"
            )));
        }
        let host_ok = registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !host_ok {
            return Err(bad(&format!("registry {registry:?} is not a host[:port]")));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// The host (and port) the API is reached at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host part without a port, for the loopback test.
    pub fn hostname(&self) -> &str {
        let h = self.api_host();
        if let Some(rest) = h.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        h.rsplit_once(':').map_or(h, |(host, _)| host)
    }

    /// Whether the registry is on this machine (plain HTTP is allowed there).
    pub fn is_loopback(&self) -> bool {
        let h = self.hostname();
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn short_names_resolve_like_docker() {
        let r = p("debian:12");
        assert_eq!(r.to_string(), "docker.io/library/debian:12");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(p("debian").to_string(), "docker.io/library/debian:latest");
        assert_eq!(p("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(
            p("docker.io/debian:12").to_string(),
            "docker.io/library/debian:12"
        );
        assert_eq!(p("index.docker.io/library/debian").registry, "docker.io");
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let d = format!("sha256:{}", "0".repeat(64));
        let r = p(&format!("127.0.0.1:5000/team/app:v1@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), d);
        assert!(r.is_loopback());
        let r = p("localhost:5000/app");
        assert_eq!(
            (r.hostname(), r.tag.as_deref()),
            ("localhost", Some("latest"))
        );
        assert!(r.is_loopback());
        let r = p(&format!("ghcr.io/o/app@{d}"));
        assert_eq!((r.tag.clone(), r.api_host()), (None, "ghcr.io"));
        assert!(!r.is_loopback());
        assert!(p("[::1]:5000/app").is_loopback());
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("Debian:12", "repository"),
            ("debian:", "tag"),
            ("debian@sha256:abc", "digest"),
            ("a b", "whitespace"),
            ("ghcr.io/x//y", "repository"),
            ("", "empty"),
        ] {
            let e = Reference::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
