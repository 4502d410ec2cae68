//! The cache key: everything that decides a source tree, hashed into the entry's name.

use serde::{Deserialize, Serialize};

use crate::source::ReleaseRef;

use super::FORMAT;

/// Everything that decides a source tree. Serialized (fields in this order, the recipe's
/// source table as the recipe type serializes it) and hashed into the entry's name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Key {
    pub format: u32,
    pub tool_version: String,
    /// The recipe's `[source]` table, `type` included.
    pub source: serde_json::Value,
    /// The Debian architecture built for; for an image, the platform (`OS/ARCH[/VARIANT]`).
    pub arch: String,
    /// The `SOURCE_DATE_EPOCH` a bootstrap ran under (the user's, else the newest release
    /// date): maintainer scripts write it into the tree (`/etc/shadow`'s last change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The bootstrap program and its version (`mmdebstrap 1.3.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrapper: Option<String>,
    /// Every `InRelease` read, with its SHA-256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRef>,
    /// An image's manifest digest (of the platform's manifest, not of an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The `[slim]` dpkg rules a bootstrap ran with: they decide which files the tree
    /// holds. (A registry tree is stored as pulled and slimmed after the cache.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slim: Option<String>,
    /// A bootstrap's second step: the id of the entry holding its first step's tree (the
    /// release alone), which this tree is that tree upgraded from. Stored as a layer on
    /// that entry ([`super::Cache::store_in_place`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl Key {
    pub fn new(
        source: &crate::recipe::SourceSpec,
        arch: &str,
        releases: &[ReleaseRef],
        digest: Option<String>,
    ) -> Key {
        Key {
            format: FORMAT,
            tool_version: crate::build_inputs::VERSION.to_string(),
            source: serde_json::to_value(source).expect("serializable"),
            arch: arch.to_string(),
            epoch: None,
            bootstrapper: None,
            // The date is read from the bytes the hash covers; leaving it out keeps the
            // key to what identifies the input.
            releases: releases
                .iter()
                .map(|r| ReleaseRef {
                    date: None,
                    ..r.clone()
                })
                .collect(),
            digest,
            slim: None,
            base: None,
        }
    }

    /// This key for a tree bootstrapped with `slim`'s rules.
    pub fn with_slim(mut self, slim: Option<&crate::recipe::Slim>) -> Key {
        self.slim = slim.map(crate::slim::dpkg_text);
        self
    }

    /// The entry's name: SHA-256 of the key's JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("serializable");
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json))
    }
}
