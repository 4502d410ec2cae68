//! The JSON the uwsgi.it API sends (unknown keys ignored, `null` read as empty) and the
//! plain rows the operations return.

use serde::{Deserialize, Deserializer, Serialize};

/// `null` in the server's JSON means "empty" for us.
fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container as `GET /containers/` and `GET /containers/U` return it (unknown keys
/// ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub uid: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ip: String,
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub storage: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
    #[serde(default)]
    pub distro: Option<u64>,
    #[serde(default)]
    pub distro_name: Option<String>,
    #[serde(default)]
    pub custom_distro: Option<u64>,
    #[serde(default)]
    pub custom_distro_name: Option<String>,
    /// Only `GET /containers/U` has it; `None` from the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_distros_storage: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    pub server: String,
    #[serde(default, deserialize_with = "null_default")]
    pub server_address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}

/// An entry of `GET /custom_distros/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistroEntry {
    pub id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// The storage container's uid.
    pub container: u32,
}

/// An entry of `GET /custom_distros/U`: a distro container U may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsableDistro {
    pub id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// `GET /custom_distro/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomDistro {
    pub id: u64,
    /// The storage container's uid.
    pub container: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub note: String,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
}

/// One row of [`crate::api::Client::distros_overview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistroListing {
    pub id: u64,
    pub name: String,
    /// Storage container uid.
    pub container: u32,
    /// The storage container's server (empty if the container is not in the list).
    pub server: String,
    /// Containers whose `custom_distro` is this one.
    pub used_by: Vec<u32>,
}

/// What [`crate::api::Client::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub id: u64,
    /// false: the same name and path were already registered on that storage container.
    pub created: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcAction {
    /// Among the newest `keep` of its group.
    Keep,
    /// Old, but a container uses it: never deleted.
    InUse,
    Delete,
}

/// One versioned distro (`<base>-<12 hex>` path) that gc looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcEntry {
    pub id: u64,
    pub name: String,
    pub path: String,
    /// Storage container uid.
    pub container: u32,
    /// The path without its version suffix: entries are grouped per (container, base).
    pub base: String,
    pub action: GcAction,
    pub used_by: Vec<u32>,
}
