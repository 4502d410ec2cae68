//! Publish: push a distro to every storage container it should reach, then register it
//! per storage container and, when asked, map containers onto it. Pushes to different
//! servers run in parallel (bounded), each with its own progress bar; one failing server
//! does not stop the others, and a rerun only does what is missing (an upload whose
//! content is already in place is skipped, registering is idempotent).
//!
//! The API is reached through [`Registry`], the few calls publish needs, so the
//! orchestration is tested with [`Recording`] and the API client plugs in unchanged.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::{compare_hashes, AnyTransport, Distro, Error, Name, Stale, Transport, TransportSpec};
use crate::progress::{Bar, Reporter};
use crate::recipe::Strategy;
use crate::runner::Runner;

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
    fn storage_targets(&self) -> crate::Result<Vec<StorageTarget>>;
    /// The server a container runs on.
    fn container_server(&self, uid: u32) -> crate::Result<String>;
    /// Create the custom distro `name` at `path` in storage container `storage`, or find
    /// the one already there; its id either way.
    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> crate::Result<u64>;
    /// Map `container` onto distro `id` (the platform restarts the container).
    fn assign(&self, container: u32, id: u64) -> crate::Result<()>;
}

/// The real API: storage containers with their servers, idempotent register (finding the
/// id by listing), assign after checking the distro is usable by the container.
impl Registry for crate::api::Client {
    fn storage_targets(&self) -> crate::Result<Vec<StorageTarget>> {
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

    fn container_server(&self, uid: u32) -> crate::Result<String> {
        Ok(self.container(uid)?.server)
    }

    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> crate::Result<u64> {
        Ok(crate::api::Client::register(self, storage, name, path, note)?.id)
    }

    fn assign(&self, container: u32, id: u64) -> crate::Result<()> {
        crate::api::Client::assign(self, container, id)?;
        Ok(())
    }
}

/// Which storage containers to push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    All,
    Uids(Vec<u32>),
}

impl To {
    /// From the recipe's `[publish] to`.
    pub fn from_recipe(t: &crate::recipe::PublishTo) -> Result<To, Error> {
        match t {
            crate::recipe::PublishTo::Named(s) if s == "all" => Ok(To::All),
            crate::recipe::PublishTo::Named(s) => Err(Error::Usage(format!(
                "[publish] to = {s:?}: expected \"all\" or a list of storage container uids"
            ))),
            crate::recipe::PublishTo::Uids(u) => Ok(To::Uids(u.clone())),
        }
    }
}

/// How much of the upload to check before it is renamed into place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Entry count and content size.
    #[default]
    Size,
    /// Also every file's sha256 against the manifest (reads everything remotely).
    Full,
}

pub struct PublishOptions {
    pub to: To,
    pub strategy: Strategy,
    pub verify: Verify,
    pub transport: TransportSpec,
    /// Servers pushed to at the same time.
    pub jobs: usize,
    /// Register the distro through the registry after the upload.
    pub register: bool,
    /// Containers to map onto the new distro (each on the server of a storage container
    /// pushed to).
    pub assign: Vec<u32>,
    /// Where rsync's local extraction of an archive goes.
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Uploaded, verified and renamed into place.
    Uploaded,
    /// The same content was there already: nothing sent.
    Unchanged,
    Failed,
}

/// One storage container's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub uid: u32,
    pub server: String,
    /// How it was reached: `30001@host`, `local:/containers/30001`.
    pub target: String,
    /// The directory under `distros/` (the API path).
    pub path: String,
    /// The API name.
    pub name: String,
    pub status: Status,
    /// Bytes that crossed the wire (rsync: its "Total bytes sent").
    pub bytes_sent: u64,
    /// The version rsync shared unchanged files with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssignReport {
    pub container: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `push` prints (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub name: String,
    pub path: String,
    pub content_id: String,
    pub strategy: Strategy,
    pub transport: String,
    pub verify: Verify,
    pub targets: Vec<TargetReport>,
    pub assigned: Vec<AssignReport>,
    /// Total over every target.
    pub bytes_sent: u64,
    /// Targets and assignments that failed.
    pub failed: usize,
}

impl PublishReport {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            Strategy::Versioned => "versioned",
            Strategy::Replace => "replace",
        }
    }
}

/// Where a target's upload goes and under which API name.
struct Plan {
    dest: Name,
    api_name: String,
}

fn plan(d: &Distro, strategy: Strategy) -> Result<Plan, Error> {
    Ok(match strategy {
        Strategy::Versioned => {
            let api_name = format!("{}-{}", d.name, d.id12());
            if api_name.len() > 255 {
                return Err(Error::Usage(format!(
                    "name {:?} is too long for a versioned entry (at most 242 characters)",
                    d.name
                )));
            }
            Plan {
                dest: Name::distro(&format!("{}-{}", d.path, d.id12()))?,
                api_name,
            }
        }
        Strategy::Replace => Plan {
            dest: Name::distro(&d.path)?,
            api_name: d.name.clone(),
        },
    })
}

/// Removes a temporary upload unless it was renamed into place.
struct TmpGuard<'a> {
    tr: &'a dyn Transport,
    name: Name,
    armed: bool,
}

impl Drop for TmpGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tr.remove(&self.name);
        }
    }
}

/// The newest earlier version of the same distro: what rsync shares files with.
fn previous_version(
    listed: &[super::Listed],
    d: &Distro,
    plan: &Plan,
    strategy: Strategy,
) -> Option<Name> {
    let exists = |n: &str| listed.iter().any(|l| l.name == n);
    if strategy == Strategy::Replace {
        return exists(plan.dest.as_str()).then(|| plan.dest.clone());
    }
    let prefix = format!("{}-", d.path);
    listed
        .iter()
        .filter(|l| l.name != plan.dest.as_str())
        .filter(|l| l.name == d.path || l.name.strip_prefix(&prefix).is_some_and(super::is_id12))
        .max_by(|a, b| a.mtime.total_cmp(&b.mtime))
        .and_then(|l| Name::distro(&l.name).ok())
}

/// Push to one storage container: clean up, skip if present, upload, verify, rename.
fn push_one(
    d: &Distro,
    tr: &dyn Transport,
    plan: &Plan,
    opts: &PublishOptions,
    bar: &Bar,
) -> Result<(Status, u64, Option<Name>), Error> {
    let mut listed = tr.list()?;
    let mut restored = false;
    for l in &listed {
        match Name::stale(&l.name) {
            Some(Stale::Tmp(n)) => tr.remove(&n)?,
            Some(Stale::Old { name, dest }) => {
                // A replace interrupted between its two renames: put the old one back.
                tr.restore(&name, &dest)?;
                tr.remove(&name)?;
                restored = true;
            }
            None => {}
        }
    }
    if restored {
        listed = tr.list()?;
    }
    let present = listed.iter().any(|l| l.name == plan.dest.as_str());
    if present {
        let id = tr.content_id(&plan.dest)?;
        if id.as_deref() == Some(d.content_id.as_str()) {
            return Ok((Status::Unchanged, 0, None));
        }
        if opts.strategy == Strategy::Versioned {
            return Err(Error::Remote {
                target: tr.describe(),
                detail: format!(
                    "distros/{} exists with other content ({}): remove it, or push with --strategy replace",
                    plan.dest,
                    id.as_deref().unwrap_or("no content id")
                ),
            });
        }
    }
    let prev = previous_version(&listed, d, plan, opts.strategy);
    let tmp = Name::tmp(d.id12(), std::process::id())?;
    let mut guard = TmpGuard {
        tr,
        name: tmp.clone(),
        armed: true,
    };
    bar.set_message("uploading");
    let sent = tr.upload(d, &tmp, prev.as_ref(), bar)?;
    crate::error::check_interrupted().map_err(|_| Error::Remote {
        target: tr.describe(),
        detail: "interrupted".into(),
    })?;
    bar.set_message("verifying");
    let m = tr.measure(&tmp)?;
    if let Some(why) = m.mismatch(d) {
        return Err(Error::Verify {
            target: tr.describe(),
            detail: why,
        });
    }
    if opts.verify == Verify::Full {
        if let Some(why) = compare_hashes(&d.manifest, &tr.hashes(&tmp)?) {
            return Err(Error::Verify {
                target: tr.describe(),
                detail: why,
            });
        }
    }
    let aside = match opts.strategy {
        Strategy::Replace => Some(Name::old(std::process::id(), &plan.dest)?),
        Strategy::Versioned => None,
    };
    tr.install(&tmp, &plan.dest, aside.as_ref())?;
    guard.armed = false;
    if let Some(a) = aside {
        // Best effort: if this fails the next push removes it (it is a stale "old").
        let _ = tr.remove(&a);
    }
    Ok((Status::Uploaded, sent, prev))
}

/// The storage containers to push to, with their servers and addresses.
fn resolve_targets(
    opts: &PublishOptions,
    registry: Option<&dyn Registry>,
) -> crate::Result<Vec<(u32, String, Option<String>)>> {
    let known = match (registry, &opts.to) {
        (Some(r), _) => Some(r.storage_targets()?),
        (None, To::All) => {
            return Err(Error::Usage(
                "--to all needs the API to find the storage containers: configure it (--api, UWSGI_IT_API)"
                    .into(),
            )
            .into())
        }
        (None, To::Uids(_)) => None,
    };
    let targets: Vec<(u32, String, Option<String>)> = match (&opts.to, known) {
        (To::All, Some(k)) => k
            .into_iter()
            .map(|t| (t.uid, t.server, Some(t.address)))
            .collect(),
        (To::Uids(uids), Some(k)) => {
            let mut out = Vec::new();
            for u in uids {
                let t = k.iter().find(|t| t.uid == *u).ok_or_else(|| {
                    Error::Usage(format!(
                        "{u} is not one of your storage containers (see build-distro storage list; build-distro storage enable {u})"
                    ))
                })?;
                out.push((t.uid, t.server.clone(), Some(t.address.clone())));
            }
            out
        }
        (To::Uids(uids), None) => uids.iter().map(|u| (*u, String::new(), None)).collect(),
        (To::All, None) => unreachable!("handled above"),
    };
    let mut seen = HashSet::new();
    let targets: Vec<_> = targets.into_iter().filter(|t| seen.insert(t.0)).collect();
    if targets.is_empty() {
        return Err(Error::Usage(
            "no storage containers to push to: make one with build-distro storage enable UID"
                .into(),
        )
        .into());
    }
    Ok(targets)
}

/// Push `d` everywhere `opts` says, register it and assign containers. Per-target
/// failures are in the report (`failed`); an error means nothing could start (bad
/// options, no API) or the user interrupted.
pub fn publish(
    d: &mut Distro,
    opts: &PublishOptions,
    registry: Option<&dyn Registry>,
    runner: Arc<dyn Runner>,
    reporter: &Reporter,
) -> crate::Result<PublishReport> {
    if (opts.register || !opts.assign.is_empty()) && registry.is_none() {
        return Err(Error::Usage(
            "registering needs the API: configure it (--api, UWSGI_IT_API) or pass --no-register"
                .into(),
        )
        .into());
    }
    if !opts.register && !opts.assign.is_empty() {
        return Err(Error::Usage(
            "--assign needs the distro registered: drop --no-register".into(),
        )
        .into());
    }
    let plan = plan(d, opts.strategy)?;
    let targets = resolve_targets(opts, registry)?;
    // Connect (validate hosts, options) before anything is uploaded anywhere.
    let transports: Vec<AnyTransport> = targets
        .iter()
        .map(|(uid, _, addr)| {
            opts.transport
                .connect(*uid, addr.as_deref(), runner.clone())
        })
        .collect::<Result<_, _>>()?;
    if opts.transport.needs_tree() {
        let stage = reporter.stage("extract");
        d.prepare_tree(&opts.work_dir)?;
        stage.done("local tree ready for rsync");
    }
    let d: &Distro = d;
    reporter.info(&format!(
        "pushing {} ({}) to {} storage container(s) as distros/{}",
        d.name,
        d.content_id,
        targets.len(),
        plan.dest
    ));

    let results: Mutex<BTreeMap<usize, TargetReport>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let total = match opts.transport {
        TransportSpec::Rsync { .. } => None,
        _ => d.upload_size(),
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, targets.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((uid, server, _)) = targets.get(i) else {
                    break;
                };
                let tr = &transports[i];
                let label = if server.is_empty() {
                    tr.describe()
                } else {
                    format!("{uid}@{server}")
                };
                let bar = reporter.bar(&label, total);
                let started = Instant::now();
                let r = push_one(d, tr, &plan, opts, &bar);
                let seconds = started.elapsed().as_secs_f64();
                let mut rep = TargetReport {
                    uid: *uid,
                    server: server.clone(),
                    target: tr.describe(),
                    path: plan.dest.to_string(),
                    name: plan.api_name.clone(),
                    status: Status::Failed,
                    bytes_sent: 0,
                    previous: None,
                    seconds,
                    distro_id: None,
                    error: None,
                };
                match r {
                    Ok((status, sent, prev)) => {
                        rep.status = status;
                        rep.bytes_sent = sent;
                        rep.previous = prev.map(|p| p.to_string());
                        bar.finish(&match status {
                            Status::Unchanged => format!("distros/{} already there", plan.dest),
                            _ => format!(
                                "distros/{}: {:.1} MiB sent in {seconds:.1}s",
                                plan.dest,
                                sent as f64 / 1048576.0
                            ),
                        });
                    }
                    Err(e) => {
                        rep.error = Some(e.to_string());
                        bar.finish(&format!("failed: {e}"));
                    }
                }
                results.lock().unwrap().insert(i, rep);
            });
        }
    });
    crate::error::check_interrupted()?;
    let mut reports: Vec<TargetReport> = results.into_inner().unwrap().into_values().collect();

    if opts.register {
        let reg = registry.expect("checked above");
        let note = d.note.clone().unwrap_or_else(|| d.content_id.clone());
        for t in reports.iter_mut().filter(|t| t.status != Status::Failed) {
            match reg.register(t.uid, &plan.api_name, plan.dest.as_str(), &note) {
                Ok(id) => {
                    t.distro_id = Some(id);
                    reporter.info(&format!(
                        "registered {} (id {id}) in storage container {}",
                        plan.api_name, t.uid
                    ));
                }
                Err(e) => {
                    t.status = Status::Failed;
                    t.error = Some(format!("register: {e}"));
                }
            }
        }
    }

    let mut assigned = Vec::new();
    for &c in &opts.assign {
        let reg = registry.expect("checked above");
        let outcome = reg.container_server(c).and_then(|server| {
            let id = reports
                .iter()
                .find(|t| t.server == server && t.distro_id.is_some())
                .and_then(|t| t.distro_id)
                .ok_or_else(|| {
                    crate::Error::from(Error::Usage(format!(
                        "no storage container on server {server} got the distro: push to one there first"
                    )))
                })?;
            reg.assign(c, id).map(|_| id)
        });
        match outcome {
            Ok(id) => {
                reporter.info(&format!("container {c} now uses distro {id} (restarting)"));
                assigned.push(AssignReport {
                    container: c,
                    distro_id: Some(id),
                    error: None,
                });
            }
            Err(e) => assigned.push(AssignReport {
                container: c,
                distro_id: None,
                error: Some(e.to_string()),
            }),
        }
    }

    let failed = reports
        .iter()
        .filter(|t| t.status == Status::Failed)
        .count()
        + assigned.iter().filter(|a| a.error.is_some()).count();
    Ok(PublishReport {
        name: d.name.clone(),
        path: d.path.clone(),
        content_id: d.content_id.clone(),
        strategy: opts.strategy,
        transport: opts.transport.kind().to_string(),
        verify: opts.verify,
        bytes_sent: reports.iter().map(|t| t.bytes_sent).sum(),
        targets: reports,
        assigned,
        failed,
    })
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
    fn storage_targets(&self) -> crate::Result<Vec<StorageTarget>> {
        self.calls.lock().unwrap().push("storage_targets".into());
        Ok(self.storage.clone())
    }

    fn container_server(&self, uid: u32) -> crate::Result<String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("container_server {uid}"));
        self.servers
            .get(&uid)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("container {uid} is not yours")).into())
    }

    fn register(&self, storage: u32, name: &str, path: &str, note: &str) -> crate::Result<u64> {
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

    fn assign(&self, container: u32, id: u64) -> crate::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("assign {container} {id}"));
        self.assigned.lock().unwrap().push((container, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::local::Local;
    use crate::push::{Listed, Measure};
    use std::path::Path;

    /// A small finished-looking tree with a provenance file whose content id is real.
    fn make_tree(dir: &Path, passwd: &str) -> PathBuf {
        let t = dir.join("tree");
        let _ = crate::tree::remove_tree(&t);
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::create_dir_all(t.join("usr/bin")).unwrap();
        std::fs::create_dir_all(t.join(".old_root")).unwrap();
        std::fs::write(t.join("etc/passwd"), passwd).unwrap();
        std::fs::write(t.join("usr/bin/a"), b"binary").unwrap();
        std::fs::hard_link(t.join("usr/bin/a"), t.join("usr/bin/b")).unwrap();
        std::os::unix::fs::symlink("/proc/self/mounts", t.join("etc/mtab")).unwrap();
        let opts = crate::pack::PackOptions {
            clamp_mtime: None,
            level: 1,
        };
        let (p, _) = crate::pack::write_tar(&t, std::io::sink(), &opts, |_| Vec::new()).unwrap();
        std::fs::write(
            t.join("etc/build-distro.json"),
            format!(
                "{{\"name\":\"deb\",\"path\":\"deb\",\"note\":\"test\",\"content_id\":\"{}\"}}\n",
                p.content_id
            ),
        )
        .unwrap();
        t
    }

    fn homes(dir: &Path, uids: &[u32]) -> PathBuf {
        let h = dir.join("containers");
        for u in uids {
            std::fs::create_dir_all(h.join(u.to_string()).join("distros")).unwrap();
        }
        h
    }

    fn registry() -> Recording {
        Recording {
            storage: vec![
                StorageTarget {
                    uid: 30001,
                    server: "s1".into(),
                    address: "10.0.0.1".into(),
                },
                StorageTarget {
                    uid: 30002,
                    server: "s2".into(),
                    address: "10.0.0.2".into(),
                },
            ],
            servers: [(30010, "s1".to_string()), (30020, "s2".to_string())].into(),
            ..Default::default()
        }
    }

    fn opts(homes: &Path, to: To, strategy: Strategy) -> PublishOptions {
        PublishOptions {
            to,
            strategy,
            verify: Verify::Full,
            transport: TransportSpec::Local(homes.to_path_buf()),
            jobs: 4,
            register: true,
            assign: Vec::new(),
            work_dir: std::env::temp_dir(),
        }
    }

    fn run(d: &mut Distro, o: &PublishOptions, reg: &Recording) -> PublishReport {
        publish(
            d,
            o,
            Some(reg),
            Arc::new(crate::runner::Recording::default()),
            &Reporter::silent(),
        )
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn versioned_push_registers_and_a_rerun_is_a_no_op() {
        let td = tempfile::tempdir().unwrap();
        let tree = make_tree(td.path(), "root:x:0:0\n");
        let h = homes(td.path(), &[30001, 30002]);
        let mut d = Distro::open(&tree).unwrap();
        let dest = format!("deb-{}", d.id12());
        let reg = registry();
        let o = opts(&h, To::All, Strategy::Versioned);
        let r = run(&mut d, &o, &reg);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.targets.len(), 2);
        for t in &r.targets {
            assert_eq!(t.status, Status::Uploaded);
            assert_eq!(t.path, dest);
            assert!(t.bytes_sent > 0);
        }
        let d1 = h.join("30001/distros").join(&dest);
        assert_eq!(
            std::fs::read(d1.join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
        assert!(d1.join(".old_root").is_dir());
        assert_eq!(names(&h.join("30001/distros")), std::slice::from_ref(&dest));
        let ids: Vec<u64> = r.targets.iter().map(|t| t.distro_id.unwrap()).collect();
        assert_eq!(ids, [1, 2]);
        let api_name = format!("deb-{}", d.id12());
        assert_eq!(
            reg.calls.lock().unwrap()[1..],
            [
                format!("register 30001 {api_name} {dest}"),
                format!("register 30002 {api_name} {dest}")
            ]
        );

        let again = run(&mut d, &o, &reg);
        assert!(again.ok());
        assert!(again.targets.iter().all(|t| t.status == Status::Unchanged));
        assert_eq!(again.bytes_sent, 0);
        let ids2: Vec<u64> = again.targets.iter().map(|t| t.distro_id.unwrap()).collect();
        assert_eq!(ids2, ids, "registering again finds the same entries");
    }

    #[test]
    fn replace_swaps_one_path_and_leaves_nothing_behind() {
        let td = tempfile::tempdir().unwrap();
        let h = homes(td.path(), &[30001]);
        let reg = registry();
        let o = opts(&h, To::Uids(vec![30001]), Strategy::Replace);
        let mut d = Distro::open(&make_tree(td.path(), "v1\n")).unwrap();
        assert!(run(&mut d, &o, &reg).ok());
        let mut d2 = Distro::open(&make_tree(td.path(), "v2\n")).unwrap();
        assert_ne!(d.content_id, d2.content_id);
        let r = run(&mut d2, &o, &reg);
        assert!(r.ok(), "{r:?}");
        let distros = h.join("30001/distros");
        assert_eq!(names(&distros), ["deb"]);
        assert_eq!(
            std::fs::read(distros.join("deb/etc/passwd")).unwrap(),
            b"v2\n"
        );
        // The same API entry both times.
        assert_eq!(r.targets[0].distro_id, Some(1));
        assert_eq!(r.targets[0].name, "deb");
    }

    #[test]
    fn stale_temporaries_are_cleaned_and_a_half_replace_is_undone() {
        let td = tempfile::tempdir().unwrap();
        let h = homes(td.path(), &[30001]);
        let distros = h.join("30001/distros");
        std::fs::create_dir_all(distros.join(".bd+tmp-0123456789ab-99/etc")).unwrap();
        // A replace killed between its renames: "deb" is missing, the old one aside.
        std::fs::create_dir_all(distros.join(".bd+old-99-deb/etc")).unwrap();
        std::fs::write(distros.join(".bd+old-99-deb/etc/passwd"), "old\n").unwrap();
        // Not ours: left alone.
        std::fs::create_dir_all(distros.join(".bd-tmp-0123456789ab-99")).unwrap();
        std::fs::create_dir_all(distros.join("other")).unwrap();
        let mut d = Distro::open(&make_tree(td.path(), "new\n")).unwrap();
        let mut o = opts(&h, To::Uids(vec![30001]), Strategy::Versioned);
        o.register = false;
        let r = publish(
            &mut d,
            &o,
            None,
            Arc::new(crate::runner::Recording::default()),
            &Reporter::silent(),
        )
        .unwrap();
        assert!(r.ok(), "{r:?}");
        let dest = format!("deb-{}", d.id12());
        assert_eq!(
            names(&distros),
            [".bd-tmp-0123456789ab-99", "deb", dest.as_str(), "other"]
        );
        assert_eq!(
            std::fs::read(distros.join("deb/etc/passwd")).unwrap(),
            b"old\n"
        );
    }

    /// Local, with one file changed between upload and verify (a bad disk, a meddler).
    struct Tampering(Local, &'static str);

    impl Transport for Tampering {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn list(&self) -> Result<Vec<Listed>, Error> {
            self.0.list()
        }
        fn content_id(&self, n: &Name) -> Result<Option<String>, Error> {
            self.0.content_id(n)
        }
        fn upload(&self, d: &Distro, t: &Name, p: Option<&Name>, b: &Bar) -> Result<u64, Error> {
            let n = self.0.upload(d, t, p, b)?;
            std::fs::write(
                self.0
                    .home
                    .join("distros")
                    .join(t.as_str())
                    .join("etc/passwd"),
                self.1,
            )
            .unwrap();
            Ok(n)
        }
        fn measure(&self, n: &Name) -> Result<Measure, Error> {
            self.0.measure(n)
        }
        fn hashes(&self, n: &Name) -> Result<BTreeMap<String, String>, Error> {
            self.0.hashes(n)
        }
        fn install(&self, t: &Name, d: &Name, a: Option<&Name>) -> Result<(), Error> {
            self.0.install(t, d, a)
        }
        fn restore(&self, f: &Name, t: &Name) -> Result<(), Error> {
            self.0.restore(f, t)
        }
        fn remove(&self, n: &Name) -> Result<(), Error> {
            self.0.remove(n)
        }
        fn disk_usage(&self, n: &[Name]) -> Result<Vec<u64>, Error> {
            self.0.disk_usage(n)
        }
    }

    #[test]
    fn verify_catches_tampering_and_discards_the_upload() {
        let td = tempfile::tempdir().unwrap();
        let h = homes(td.path(), &[30001]);
        let d = Distro::open(&make_tree(td.path(), "root\n")).unwrap();
        let plan = plan(&d, Strategy::Versioned).unwrap();
        let reporter = Reporter::silent();
        let bar = reporter.bar("t", None);
        for (content, verify, caught) in [
            ("ROOT\n", Verify::Full, true),  // same size: only full sees it
            ("ROOT\n", Verify::Size, false), // ...and size lets it through
            ("rooted\n", Verify::Size, true),
        ] {
            let tr = Tampering(Local::new(h.join("30001")), content);
            let _ = tr.remove(&plan.dest);
            let mut o = opts(&h, To::Uids(vec![30001]), Strategy::Versioned);
            o.verify = verify;
            let r = push_one(&d, &tr, &plan, &o, &bar);
            let left = names(&h.join("30001/distros"));
            if caught {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("verify failed"), "{e}");
                assert!(left.is_empty(), "nothing visible, no temporary: {left:?}");
            } else {
                assert_eq!(r.unwrap().0, Status::Uploaded);
            }
        }
    }

    #[test]
    fn assign_goes_to_the_entry_on_the_containers_server() {
        let td = tempfile::tempdir().unwrap();
        let h = homes(td.path(), &[30001, 30002]);
        let reg = registry();
        let mut o = opts(&h, To::All, Strategy::Versioned);
        o.assign = vec![30020, 30010];
        let mut d = Distro::open(&make_tree(td.path(), "x\n")).unwrap();
        let r = run(&mut d, &o, &reg);
        assert!(r.ok(), "{r:?}");
        assert_eq!(*reg.assigned.lock().unwrap(), [(30020, 2), (30010, 1)]);
    }

    #[test]
    fn one_failing_server_does_not_stop_the_others() {
        let td = tempfile::tempdir().unwrap();
        // 30002 has no distros/: not a storage container on disk.
        let h = homes(td.path(), &[30001]);
        let reg = registry();
        let o = opts(&h, To::All, Strategy::Versioned);
        let mut d = Distro::open(&make_tree(td.path(), "x\n")).unwrap();
        let r = run(&mut d, &o, &reg);
        assert_eq!(r.failed, 1);
        assert_eq!(r.targets[0].status, Status::Uploaded);
        assert_eq!(r.targets[1].status, Status::Failed);
        assert!(r.targets[1].error.as_ref().unwrap().contains("no distros/"));
        assert_eq!(
            r.targets[1].distro_id, None,
            "failed uploads are not registered"
        );
        assert_eq!(reg.distros.lock().unwrap().len(), 1);
    }

    #[test]
    fn bad_targets_are_usage_errors() {
        let td = tempfile::tempdir().unwrap();
        let h = homes(td.path(), &[30001]);
        let mut d = Distro::open(&make_tree(td.path(), "x\n")).unwrap();
        let reg = registry();
        let o = opts(&h, To::Uids(vec![30009]), Strategy::Versioned);
        let e = publish(
            &mut d,
            &o,
            Some(&reg),
            Arc::new(crate::runner::Recording::default()),
            &Reporter::silent(),
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e
            .to_string()
            .contains("30009 is not one of your storage containers"));
        let o = opts(&h, To::All, Strategy::Versioned);
        let e = publish(
            &mut d,
            &o,
            None,
            Arc::new(crate::runner::Recording::default()),
            &Reporter::silent(),
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn archive_input_reads_the_files_beside_it() {
        let td = tempfile::tempdir().unwrap();
        let tree = make_tree(td.path(), "x\n");
        let prov = std::fs::read(tree.join("etc/build-distro.json")).unwrap();
        let out = td.path().join("deb.tar.gz");
        let opts = crate::pack::PackOptions {
            clamp_mtime: None,
            level: 1,
        };
        let p = crate::pack::pack_to_file(&tree, &out, crate::pack::Format::TarGz, &opts, |_| {
            prov.clone()
        })
        .unwrap();
        let e = Distro::open(&out).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("deb.json"), "{e}");
        std::fs::write(
            td.path().join("deb.manifest"),
            crate::pack::manifest_text(&p),
        )
        .unwrap();
        std::fs::write(
            td.path().join("deb.json"),
            serde_json::json!({"name": "deb", "path": "deb", "content_id": p.content_id,
                "entries": p.entries, "bytes": p.bytes})
            .to_string(),
        )
        .unwrap();
        let mut d = Distro::open(&out).unwrap();
        let from_tree = Distro::open(&tree).unwrap();
        assert_eq!(d.entries, from_tree.entries);
        assert_eq!(d.bytes, from_tree.bytes);
        assert_eq!(d.manifest, from_tree.manifest);
        let h = homes(td.path(), &[30001]);
        let reg = registry();
        let r = run(&mut d, &opts_for(&h), &reg);
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            r.targets[0].bytes_sent,
            std::fs::metadata(&out).unwrap().len()
        );
    }

    fn opts_for(h: &Path) -> PublishOptions {
        opts(h, To::Uids(vec![30001]), Strategy::Versioned)
    }
}
