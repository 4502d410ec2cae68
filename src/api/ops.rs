//! The custom-distro and storage operations, on top of [`Client`]'s calls: each one knows
//! the server's trap it avoids (register finds the id the server does not return, remove
//! and assign check first what the server would break), and the server's rules for names
//! and paths.

use super::client::{Call, Client, Method, Written};
use super::types::{
    Container, CustomDistro, DistroEntry, DistroListing, GcAction, GcEntry, Registered,
    UsableDistro,
};
use super::{Error, Result, MAX_FIELD_LEN};

/// `Some(base)` when `path` is `<base>-<12 lowercase hex>`, the shape push's versioned
/// strategy gives each content.
pub fn versioned_base(path: &str) -> Option<&str> {
    let (base, ver) = path.rsplit_once('-')?;
    let hex = ver.len() == 12
        && ver
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && !base.is_empty()).then_some(base)
}

/// gc's keep rule: for each item, whether it is among the `keep` newest of its group
/// (greatest `newness` first). Serves the API entries (by id) and, in
/// `push::reclaim`, the version directories on the storage container (by mtime).
pub fn newest_per_group<T, G: Ord, N: Ord>(
    items: &[T],
    group: impl Fn(&T) -> G,
    newness: impl Fn(&T) -> N,
    keep: usize,
) -> Vec<bool> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        (group(&items[a]), std::cmp::Reverse(newness(&items[a])))
            .cmp(&(group(&items[b]), std::cmp::Reverse(newness(&items[b]))))
    });
    let mut out = vec![false; items.len()];
    let mut rank = 0;
    for (i, &idx) in order.iter().enumerate() {
        if i == 0 || group(&items[order[i - 1]]) != group(&items[idx]) {
            rank = 0;
        }
        rank += 1;
        out[idx] = rank <= keep;
    }
    out
}

/// The server's rules for `path` (it answers a bare 403 otherwise).
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::BadPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_FIELD_LEN {
        return bad("longer than 255 characters");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only A-Za-z0-9 . _ - are allowed");
    }
    if path == "." || path == ".." {
        return bad("not a directory name");
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.chars().count() > MAX_FIELD_LEN {
        return bad("longer than 255 characters");
    }
    Ok(())
}

/// What a storage container holds under a name and path.
enum Lookup {
    /// An entry with both, this id.
    Same(u64),
    /// Neither the name nor the path.
    Absent,
}

impl Client {
    /// `GET /containers/`: the customer's containers (without `custom_distros_storage`).
    pub fn containers(&self) -> Result<Vec<Container>> {
        self.json(&Call::get("/containers/".into(), ""))
    }

    /// `GET /containers/U`: one container, with `custom_distros_storage`.
    pub fn container(&self, uid: u32) -> Result<Container> {
        let hint = format!("container {uid} does not exist or is not yours: see `build-distro storage list` or the supplier's panel");
        self.json(&Call::get(format!("/containers/{uid}"), &hint))
    }

    /// `GET /custom_distros/`: every custom distro of the customer.
    pub fn custom_distros(&self) -> Result<Vec<DistroEntry>> {
        self.json(&Call::get("/custom_distros/".into(), ""))
    }

    /// `GET /custom_distros/U`: the distros container U may use.
    pub fn usable_distros(&self, uid: u32) -> Result<Vec<UsableDistro>> {
        let hint = format!("container {uid} does not exist or is not yours");
        self.json(&Call::get(format!("/custom_distros/{uid}"), &hint))
    }

    /// `GET /custom_distro/ID`.
    pub fn custom_distro(&self, id: u64) -> Result<CustomDistro> {
        let hint = format!(
            "custom distro {id} does not exist or is not yours: see `build-distro distros list`"
        );
        self.json(&Call::get(format!("/custom_distro/{id}"), &hint))
    }

    /// Containers whose `custom_distro` is `id`.
    pub fn containers_using(&self, id: u64) -> Result<Vec<Container>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.custom_distro == Some(id))
            .collect())
    }

    /// The customer's storage containers (full records). The list call lacks the flag, so
    /// this asks for each container in turn.
    pub fn storage_containers(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for c in self.containers()? {
            let full = self.container(c.uid)?;
            if full.custom_distros_storage == Some(true) {
                out.push(full);
            }
        }
        Ok(out)
    }

    /// Every custom distro with its storage container's server and its users.
    pub fn distros_overview(&self) -> Result<Vec<DistroListing>> {
        let containers = self.containers()?;
        let mut out: Vec<DistroListing> = self
            .custom_distros()?
            .into_iter()
            .map(|d| DistroListing {
                server: containers
                    .iter()
                    .find(|c| c.uid == d.container)
                    .map(|c| c.server.clone())
                    .unwrap_or_default(),
                used_by: containers
                    .iter()
                    .filter(|c| c.custom_distro == Some(d.id))
                    .map(|c| c.uid)
                    .collect(),
                id: d.id,
                name: d.name,
                container: d.container,
            })
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// `POST /containers/U {"custom_distros_storage": true}`: **restarts U**. Does nothing
    /// (and returns the container) when U already is a storage container.
    pub fn enable_storage(&self, uid: u32) -> Result<Container> {
        let c = self.container(uid)?;
        if c.custom_distros_storage == Some(true) {
            return Ok(c);
        }
        let call = Call {
            method: Method::Post,
            path: format!("/containers/{uid}"),
            body: Some(serde_json::json!({ "custom_distros_storage": true })),
            on_403: &format!("container {uid} does not exist or is not yours"),
            on_500: "",
        };
        let applied = || -> Result<Option<Container>> {
            let c = self.container(uid)?;
            Ok((c.custom_distros_storage == Some(true)).then_some(c))
        };
        match self.write(&call, &applied)? {
            Written::Found(c) => Ok(c),
            Written::Replied(body) => self.parse(&call, 200, &body),
        }
    }

    /// `Ok` when `id` is in container's usable list (anything else crashes the server's
    /// assign).
    pub fn check_usable(&self, container: u32, id: u64) -> Result<()> {
        let usable = self.usable_distros(container)?;
        if usable.iter().any(|u| u.id == id) {
            return Ok(());
        }
        Err(Error::NotUsable {
            container,
            id,
            usable: if usable.is_empty() {
                "none".into()
            } else {
                usable
                    .iter()
                    .map(|u| format!("{} ({})", u.id, u.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// `POST /containers/U {"custom_distro": ID}`: **restarts U**. Checks first that ID is
    /// in U's usable list, since anything else crashes the server.
    /// After a lost reply it reads the container back: already on `id` is done (no
    /// second restart); otherwise it checks usability again before sending it again.
    pub fn assign(&self, container: u32, id: u64) -> Result<Container> {
        self.check_usable(container, id)?;
        let call = Call {
            method: Method::Post,
            path: format!("/containers/{container}"),
            body: Some(serde_json::json!({ "custom_distro": id })),
            on_403: &format!("container {container} does not exist or is not yours"),
            on_500: "the server crashes when the distro is missing, not yours, or stored in \
                     the container itself",
        };
        let applied = || -> Result<Option<Container>> {
            let c = self.container(container)?;
            if c.custom_distro == Some(id) {
                return Ok(Some(c));
            }
            // Not applied: the distro must still be usable before we send it again (a
            // distro removed meanwhile would crash the server).
            self.check_usable(container, id)?;
            Ok(None)
        };
        match self.write(&call, &applied)? {
            Written::Found(c) => Ok(c),
            Written::Replied(body) => self.parse(&call, 200, &body),
        }
    }

    /// What storage container `storage` holds under `name` or at `path`. The listing has
    /// no path, so each entry on `storage` is read.
    fn lookup(&self, storage: u32, name: &str, path: &str) -> Result<Lookup> {
        for entry in self.custom_distros()? {
            if entry.container != storage {
                continue;
            }
            let d = self.custom_distro(entry.id)?;
            match (d.name == name, d.path == path) {
                (true, true) => return Ok(Lookup::Same(d.id)),
                (true, false) => {
                    return Err(Error::NameTaken {
                        storage,
                        name: name.into(),
                        path: path.into(),
                        id: d.id,
                        existing_path: d.path,
                    })
                }
                (false, true) => {
                    return Err(Error::PathTaken {
                        storage,
                        name: name.into(),
                        path: path.into(),
                        id: d.id,
                        existing_name: d.name,
                    })
                }
                (false, false) => {}
            }
        }
        Ok(Lookup::Absent)
    }

    /// Register `path` on storage container `storage` as `name` and return its id.
    /// Idempotent: the same name and path already there give that entry's id. A name or a
    /// path held by a different entry is an error naming it.
    ///
    /// The server's create returns no id and is not idempotent, so the client makes it so:
    /// after a create whose outcome is unknown (timeout, reset, a gateway's 5xx) it lists
    /// the storage container again and matches name and path before sending it again, so
    /// there is exactly one entry whatever failed; a 403 whose name and path turn out to
    /// be there (another publisher, or our own lost create) is success; any other 403 is
    /// explained from the state read back.
    pub fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> Result<Registered> {
        validate_name(name)?;
        validate_path(path)?;
        if self.container(storage)?.custom_distros_storage != Some(true) {
            return Err(Error::NotStorage(storage));
        }
        // The server refuses duplicates with a bare 403: find them ourselves first.
        if let Lookup::Same(id) = self.lookup(storage, name, path)? {
            return Ok(Registered { id, created: false });
        }
        let call = Call {
            method: Method::Post,
            path: format!("/custom_distros/{storage}"),
            body: Some(serde_json::json!({ "name": name, "path": path, "note": note })),
            on_403: &format!(
                "storage uid {storage} is not a storage container of yours, or the name or \
                 path already exists there (the server does not say which: run \
                 `build-distro distros list`)"
            ),
            on_500: "",
        };
        let applied = || -> Result<Option<u64>> {
            match self.lookup(storage, name, path)? {
                Lookup::Same(id) => Ok(Some(id)),
                Lookup::Absent => Ok(None),
            }
        };
        match self.write(&call, &applied) {
            Ok(Written::Found(id)) => Ok(Registered { id, created: true }),
            // 201 carries no id: find the entry by name and path on this storage container.
            Ok(Written::Replied(_)) => match self.lookup(storage, name, path)? {
                Lookup::Same(id) => Ok(Registered { id, created: true }),
                Lookup::Absent => Err(Error::MissingAfterCreate {
                    storage,
                    name: name.into(),
                }),
            },
            Err(forbidden @ Error::Forbidden { .. }) => {
                // Say why from the state: the entry is there (a concurrent publisher made
                // it), the name or path is taken (`lookup` errs naming the holder), or the
                // container stopped being a storage container.
                if let Lookup::Same(id) = self.lookup(storage, name, path)? {
                    return Ok(Registered { id, created: false });
                }
                if self.container(storage)?.custom_distros_storage != Some(true) {
                    return Err(Error::NotStorage(storage));
                }
                match forbidden {
                    Error::Forbidden { method, url, .. } => Err(Error::Forbidden {
                        method,
                        url,
                        hint: format!(
                            "refused, yet reading back shows {storage} is a storage container \
                             of yours where neither the name nor the path is taken: check \
                             `build-distro distros list`, run again, or ask the supplier"
                        ),
                    }),
                    other => Err(other),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The distro, if no container uses it; [`Error::InUse`] naming them otherwise.
    pub fn removable(&self, id: u64) -> Result<CustomDistro> {
        let d = self.custom_distro(id)?;
        let users = self.containers_using(id)?;
        if users.is_empty() {
            return Ok(d);
        }
        Err(Error::InUse {
            id,
            name: d.name,
            users: users
                .iter()
                .map(|c| format!("{} ({})", c.uid, c.name))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// `DELETE /custom_distro/ID`, only after checking that no container uses it (the
    /// server would delete those containers). There is no way around the check.
    ///
    /// After a lost reply it lists the distros again: gone means done; still there means
    /// not applied, and it is sent again only after checking again that no container uses
    /// it.
    pub fn remove_distro(&self, id: u64) -> Result<CustomDistro> {
        let d = self.removable(id)?;
        let call = Call {
            method: Method::Delete,
            path: format!("/custom_distro/{id}"),
            body: None,
            on_403: &format!("custom distro {id} does not exist or is not yours"),
            on_500: "",
        };
        let applied = || -> Result<Option<()>> {
            if !self.custom_distros()?.iter().any(|e| e.id == id) {
                return Ok(Some(()));
            }
            self.removable(id)?;
            Ok(None)
        };
        self.write(&call, &applied)?;
        Ok(d)
    }

    /// What `gc` would do: versioned entries (`<base>-<12 hex>` paths), grouped per storage
    /// container and base, newest (highest id) first; the newest `keep` of each group stay,
    /// older ones are deleted unless a container uses them.
    pub fn gc_plan(&self, keep: usize) -> Result<Vec<GcEntry>> {
        let containers = self.containers()?;
        let mut entries = Vec::new();
        for e in self.custom_distros()? {
            let d = self.custom_distro(e.id)?;
            let Some(base) = versioned_base(&d.path) else {
                continue;
            };
            entries.push(GcEntry {
                id: d.id,
                base: base.to_string(),
                name: d.name,
                container: d.container,
                used_by: containers
                    .iter()
                    .filter(|c| c.custom_distro == Some(d.id))
                    .map(|c| c.uid)
                    .collect(),
                path: d.path,
                action: GcAction::Keep,
            });
        }
        entries.sort_by(|a, b| {
            (a.container, &a.base, std::cmp::Reverse(a.id)).cmp(&(
                b.container,
                &b.base,
                std::cmp::Reverse(b.id),
            ))
        });
        let newest = newest_per_group(&entries, |e| (e.container, e.base.clone()), |e| e.id, keep);
        for (e, newest) in entries.iter_mut().zip(newest) {
            e.action = if newest {
                GcAction::Keep
            } else if !e.used_by.is_empty() {
                GcAction::InUse
            } else {
                GcAction::Delete
            };
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_server_charset() {
        assert!(validate_path("debian-12_x.y").is_ok());
        for bad in ["", "a/b", "a b", "é", "..", &"x".repeat(256)] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versioned_paths() {
        assert_eq!(versioned_base("deb-0123456789ab"), Some("deb"));
        assert_eq!(versioned_base("a-b-0123456789ab"), Some("a-b"));
        assert_eq!(versioned_base("deb-0123456789AB"), None);
        assert_eq!(versioned_base("deb-0123456789a"), None);
        assert_eq!(versioned_base("deb"), None);
        assert_eq!(versioned_base("-0123456789ab"), None);
    }
}
