//! The API seam of publish: [`Registry`], the few calls publish needs, implemented by the
//! real API client and by [`Recording`], an in-memory registry that records every call
//! (tests, dry runs).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::push::{Error, Result};

/// A storage container as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageTarget {
    pub uid: u32,
    /// The server's name (containers share a distro only on the same server).
    pub server: String,
    /// Where to reach it over ssh.
    pub address: String,
}

/// What publish needs from the uwsgi.it API.
pub trait Registry {
    /// The customer's storage containers.
    fn storage_targets(&self) -> Result<Vec<StorageTarget>>;
    /// The server a container runs on.
    fn container_server(&self, uid: u32) -> Result<String>;
    /// Create the custom distro `name` at `path` in storage container `storage`, or find
    /// the one already there; its id either way.
    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> Result<u64>;
    /// Map `container` onto distro `id` (the platform restarts the container).
    fn assign(&self, container: u32, id: u64) -> Result<()>;
}

/// The real API: storage containers with their servers, idempotent register (finding the
/// id by listing), assign after checking the distro is usable by the container.
impl Registry for crate::api::Client {
    fn storage_targets(&self) -> Result<Vec<StorageTarget>> {
        Ok(self
            .storage_containers()?
            .into_iter()
            .map(|c| StorageTarget {
                uid: c.uid,
                server: c.server,
                address: c.server_address,
            })
            .collect())
    }

    fn container_server(&self, uid: u32) -> Result<String> {
        Ok(self.container(uid)?.server)
    }

    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> Result<u64> {
        Ok(crate::api::Client::register(self, storage, name, path, note)?.id)
    }

    fn assign(&self, container: u32, id: u64) -> Result<()> {
        crate::api::Client::assign(self, container, id)?;
        Ok(())
    }
}

/// One entry of [`Recording::distros`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub storage: u32,
    pub name: String,
    pub path: String,
    pub note: String,
    pub id: u64,
}

/// An in-memory [`Registry`] that records every call (tests, dry runs).
#[derive(Debug, Default)]
pub struct Recording {
    pub storage: Vec<StorageTarget>,
    /// Container uid → server, for `container_server`.
    pub servers: BTreeMap<u32, String>,
    /// Registered distros, in registration order.
    pub distros: Mutex<Vec<Registered>>,
    pub assigned: Mutex<Vec<(u32, u64)>>,
    /// Every call, as a line (`register 30001 name path`).
    pub calls: Mutex<Vec<String>>,
}

impl Registry for Recording {
    fn storage_targets(&self) -> Result<Vec<StorageTarget>> {
        self.calls.lock().unwrap().push("storage_targets".into());
        Ok(self.storage.clone())
    }

    fn container_server(&self, uid: u32) -> Result<String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("container_server {uid}"));
        self.servers
            .get(&uid)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("container {uid} is not yours")))
    }

    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> Result<u64> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("register {storage} {name} {path}"));
        let mut d = self.distros.lock().unwrap();
        if let Some(e) = d
            .iter()
            .find(|e| e.storage == storage && e.name == name && e.path == path)
        {
            return Ok(e.id);
        }
        let id = d.len() as u64 + 1;
        d.push(Registered {
            storage,
            name: name.into(),
            path: path.into(),
            note: note.into(),
            id,
        });
        Ok(id)
    }

    fn assign(&self, container: u32, id: u64) -> Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("assign {container} {id}"));
        self.assigned.lock().unwrap().push((container, id));
        Ok(())
    }
}
