//! `distros gc` reclaiming storage: real rsync pushes into a storage container served by
//! a real OpenSSH server (`support::sshd`), registered in the fake API, then gc over the
//! same ssh flags as push. Asserts the API state and the storage directory afterwards.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::push::{id12, listing, make_distro, noise};
use crate::support::fake_api::{FakeApi, USER};
use crate::support::sshd::SshLab;
use crate::support::{self, run};

const WEB: u32 = 39062;
const DAY: i64 = 86_400;
const MINUTE: i64 = 60;

/// Sets `p`'s modification time to `secs` ago.
fn set_age(p: &Path, secs: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = rustix::fs::Timespec {
        tv_sec: now - secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::empty()).unwrap();
}

/// One test's storage container `uid`, served by a real sshd and listed with WEB in the
/// fake API. Each test has its own uid: the lab's users are the machine's.
struct Store {
    api: FakeApi,
    lab: SshLab,
    uid: u32,
}

impl Store {
    fn start(uid: u32) -> Store {
        let api = FakeApi::start();
        api.add_container(uid, "store", USER, "s1", true);
        api.add_container(WEB, "web", USER, "s1", false);
        api.state().containers.get_mut(&uid).unwrap().server_address = "127.0.0.1".into();
        let lab = SshLab::start(&[Ipv4Addr::LOCALHOST], &[uid], "");
        Store { api, lab, uid }
    }

    fn distros(&self) -> PathBuf {
        self.lab.distros(self.uid)
    }

    /// A directory made by hand in the storage container, owned by its user, `days` old.
    fn hand_made(&self, name: &str, days: i64) {
        let d = self.distros().join(name);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/x"), noise(20_000, days as u64)).unwrap();
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.uid))
            .arg(&d)
            .status()
            .unwrap();
        assert!(st.success());
        set_age(&d, days * DAY);
    }

    fn entries_by_path(&self) -> Vec<(u64, String)> {
        self.api
            .state()
            .distros
            .values()
            .filter(|d| d.container == self.uid)
            .map(|d| (d.id, d.path.clone()))
            .collect()
    }

    fn id_of(&self, path: &str) -> u64 {
        self.entries_by_path()
            .into_iter()
            .find(|(_, p)| p == path)
            .unwrap()
            .0
    }

    /// `distros gc --keep 1 --json EXTRA` over the lab's ssh flags.
    fn gc(&self, extra: &[&str]) -> (i32, Value, String) {
        let flags = self.lab.ssh_flags();
        let mut args = vec!["distros", "gc", "--keep", "1", "--json"];
        args.extend(extra);
        args.extend(flags.iter().map(String::as_str));
        let (code, out, err) = run(&mut self.api.cmd(&args));
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    }

    /// Pushes version `v` (with `files`) of the distro `deb` here, registered, and
    /// returns its directory's name.
    fn push_version(&self, out: &Path, v: u64, files: &[(&str, Vec<u8>)], args: &[&str]) -> String {
        let t = make_distro(out, &format!("v{v}"), files);
        let (ta, to) = (t.display().to_string(), self.uid.to_string());
        let flags = self.lab.ssh_flags();
        let mut all = vec!["push", ta.as_str(), "--to", to.as_str()];
        all.extend(args);
        all.extend(flags.iter().map(String::as_str));
        let (code, stdout, err) = run(&mut self.api.cmd(&all));
        assert_eq!(code, 0, "push v{v}: {err}\n{stdout}");
        format!("deb-{}", id12(&t))
    }

    /// This storage container's directories in gc's JSON: (name, action, why).
    fn dir_plan(&self, v: &Value) -> Vec<(String, String, String)> {
        let storages = v["files"]["storages"].as_array().unwrap();
        let s = storages.iter().find(|s| s["uid"] == self.uid).unwrap();
        assert!(s.get("error").is_none(), "{v}");
        s["dirs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["action"].as_str().unwrap().to_string(),
                    d["why"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn rows(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = rows
        .iter()
        .map(|(n, a, w)| (n.to_string(), a.to_string(), w.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn gc_removes_unused_versions_over_ssh_and_keeps_what_is_used_newest_or_linked() {
    crate::require_sshd!();
    let store = Store::start(39061);
    let (api, lab) = (&store.api, &store.lab);
    let flags = lab.ssh_flags();
    let gc = |extra: &[&str]| store.gc(extra);

    // Four versions through rsync: each shares the big file with the one before (link-dest).
    let out = support::tempdir();
    let big = noise(1 << 20, 3);
    let dirs: Vec<String> = (1..=4)
        .map(|v| {
            let files = [
                ("usr/lib/big.so", big.clone()),
                ("etc/version", format!("{v}\n").into_bytes()),
            ];
            store.push_version(out.path(), v, &files, &["--transport", "rsync"])
        })
        .collect();
    let distros = store.distros();
    let big_ino = |d: &str| {
        std::fs::metadata(distros.join(d).join("usr/lib/big.so"))
            .unwrap()
            .ino()
    };
    assert_eq!(
        big_ino(&dirs[0]),
        big_ino(&dirs[3]),
        "rsync shared the file"
    );
    for (i, d) in dirs.iter().enumerate() {
        set_age(&distros.join(d), (40 - 10 * i as i64) * DAY);
    }
    let id_of = |path: &str| store.id_of(path);
    // v1 runs in a container; v2's entry is removed with `distros rm` (its files stay).
    api.set_custom_distro(WEB, Some(id_of(&dirs[0])));
    let v2 = id_of(&dirs[1]).to_string();
    let (code, _, err) = run(&mut api.cmd(&["distros", "rm", &v2, "--yes"]));
    assert_eq!(code, 0, "{err}");
    assert!(distros.join(&dirs[1]).is_dir());

    // What gc must leave alone, and what it may take besides the versions.
    store.hand_made("deb-0000000000aa", 50); // unregistered, old: goes
    store.hand_made(".bd+tmp-0123456789ab-1", 3); // abandoned upload: goes
    store.hand_made(".bd+tmp-0123456789ab-2", 0); // a push in progress: stays
    store.hand_made("handmade", 99); // not a version name: stays
    store.hand_made("deb-0000000000AA", 99); // not lowercase hex: stays
    store.hand_made(".bd+old-5-deb", 99); // an interrupted replace: push's to restore
    std::fs::write(lab.home(store.uid).join("notes"), "mine").unwrap();
    let before = listing(&distros);
    let api_before = store.entries_by_path();

    // Dry run: the plan, the space, and no change anywhere.
    let (code, v, err) = gc(&[]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["dry_run"], true);
    // v2's entry went with `distros rm`: unused; v3's goes in this run: unregistered.
    assert_eq!(
        store.dir_plan(&v),
        rows(&[
            (".bd+tmp-0123456789ab-1", "remove", "abandoned-upload"),
            (".bd+tmp-0123456789ab-2", "keep", "uploading"),
            ("deb-0000000000aa", "remove", "unused"),
            (&dirs[0], "keep", "registered"),
            (&dirs[1], "remove", "unused"),
            (&dirs[2], "remove", "unregistered"),
            (&dirs[3], "keep", "registered"),
        ])
    );
    let would_free = v["files"]["freed_bytes"].as_u64().unwrap();
    assert!(would_free > 0);
    assert!(
        would_free < 1 << 20,
        "the shared big file is not freed by removing versions that share it: {would_free}"
    );
    assert_eq!(listing(&distros), before);
    assert_eq!(store.entries_by_path(), api_before);
    assert!(api
        .writes()
        .iter()
        .all(|w| w.0 != "DELETE" || w.1.ends_with(&v2)));

    // The table says the same to a person.
    let mut args = vec!["distros", "gc", "--keep", "1"];
    args.extend(flags.iter().map(String::as_str));
    let (code, table, err) = run(&mut api.cmd(&args));
    assert_eq!(code, 0, "{err}");
    let row = table
        .lines()
        .find(|l| l.contains(&dirs[1]))
        .unwrap_or_default();
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[..4],
        ["39061", dirs[1].as_str(), "would remove", "unused"],
        "{table}"
    );
    assert!(
        err.contains("dry run: removing the unused directories would free"),
        "{err}"
    );

    // For real: v3's entry goes, then the directories.
    let (code, v, err) = gc(&["--yes"]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["deleted"], serde_json::json!([id_of_gone(&v, &dirs[2])]));
    let remaining: Vec<String> = store.entries_by_path().into_iter().map(|e| e.1).collect();
    assert_eq!(remaining, [dirs[0].clone(), dirs[3].clone()]);
    let mut left = vec![
        ".bd+old-5-deb".to_string(),
        ".bd+tmp-0123456789ab-2".into(),
        "deb-0000000000AA".into(),
        dirs[0].clone(),
        dirs[3].clone(),
        "handmade".into(),
    ];
    left.sort();
    assert_eq!(listing(&distros), left);
    assert_eq!(v["files"]["freed_bytes"].as_u64().unwrap(), would_free);
    // The linked file of the kept versions: same inode, same bytes, two links left.
    assert_eq!(big_ino(&dirs[0]), big_ino(&dirs[3]));
    let kept_big = distros.join(&dirs[3]).join("usr/lib/big.so");
    assert_eq!(std::fs::read(&kept_big).unwrap(), big);
    assert_eq!(std::fs::metadata(&kept_big).unwrap().nlink(), 2);
    assert_eq!(
        std::fs::read(lab.home(store.uid).join("notes")).unwrap(),
        b"mine"
    );
    // (The id first: the state lock is not reentrant.)
    let v1 = id_of(&dirs[0]);
    assert_eq!(api.state().containers[&WEB].custom_distro, Some(v1));

    // Again: nothing left to do.
    let (code, v, _) = gc(&["--yes"]);
    assert_eq!(code, 0);
    assert_eq!(v["files"]["freed_bytes"], 0);
    assert_eq!(listing(&distros), left);

    // Bad transport flags: exit 2 before anything is deleted.
    let writes = api.writes().len();
    let (code, _, err) = gc(&["--yes", "--transport", "ftp"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("transport \"ftp\""), "{err}");
    assert_eq!(api.writes().len(), writes);

    // A storage container that cannot be reached: reported, exit 1, the others done.
    api.add_container(39069, "gone", USER, "s1", true);
    api.state()
        .containers
        .get_mut(&39069)
        .unwrap()
        .server_address = "127.0.0.1".into();
    let (code, v, _) = gc(&["--yes"]);
    assert_eq!(code, 1, "{v}");
    let storages = v["files"]["storages"].as_array().unwrap();
    let gone = storages.iter().find(|s| s["uid"] == 39069).unwrap();
    assert!(
        gone["error"].as_str().unwrap().contains("39069@127.0.0.1"),
        "{gone}"
    );
    assert_eq!(listing(&distros), left);
}

/// Issue 27: a scheduled rebuild pushes, then runs gc on the same day. The versions whose
/// entries gc deletes were pushed minutes ago, yet their directories go in the same run;
/// the day's grace still holds what a concurrent push has staged and not yet registered.
#[test]
fn gc_frees_the_versions_it_unregisters_in_the_same_run_issue_27() {
    crate::require_sshd!();
    let store = Store::start(39063);
    let api = &store.api;
    let out = support::tempdir();
    // Three pushes over ssh (tar), the first assigned to WEB by the push itself.
    let dirs: Vec<String> = (1..=3)
        .map(|v| {
            let files = [("usr/lib/v.so", noise(300_000, 2 * v + 1))];
            let assign: &[&str] = if v == 1 {
                &["--assign", "39062", "--yes"]
            } else {
                &[]
            };
            store.push_version(out.path(), v, &files, assign)
        })
        .collect();
    let v1 = store.id_of(&dirs[0]); // (First: the state lock is not reentrant.)
    assert_eq!(api.state().containers[&WEB].custom_distro, Some(v1));
    let distros = store.distros();
    // Pushed 30, 20 and 10 minutes ago (pinned, so that the newest by time is the last).
    for (i, d) in dirs.iter().enumerate() {
        set_age(&distros.join(d), (30 - 10 * i as i64) * MINUTE);
    }
    // A concurrent push: a version staged 15 minutes ago, older than the newest (so only
    // the grace holds it), whose registration is still to come; and an upload underway.
    store.hand_made("deb-0000000000bb", 0);
    set_age(&distros.join("deb-0000000000bb"), 15 * MINUTE);
    store.hand_made(".bd+tmp-0123456789ab-3", 0);
    let before = listing(&distros);
    let api_before = store.entries_by_path();
    let want = rows(&[
        (".bd+tmp-0123456789ab-3", "keep", "uploading"),
        ("deb-0000000000bb", "keep", "recent"),
        (&dirs[0], "keep", "registered"),
        (&dirs[1], "remove", "unregistered"),
        (&dirs[2], "keep", "registered"),
    ]);

    // The dry run counts the entry it would delete as gone, and changes nothing.
    let (code, dry, err) = store.gc(&[]);
    assert_eq!(code, 0, "{err}\n{dry}");
    assert_eq!(store.dir_plan(&dry), want);
    let would_free = dry["files"]["freed_bytes"].as_u64().unwrap();
    assert!(would_free >= 300_000, "v2's own file: {would_free}");
    assert_eq!(listing(&distros), before);
    assert_eq!(store.entries_by_path(), api_before);

    // A deletion the server refuses: v2's entry stays, so its directory stays too.
    api.state().fail_writes = Some(403);
    let (code, failed, err) = store.gc(&["--yes"]);
    api.state().fail_writes = None;
    assert_eq!(code, 1, "{err}\n{failed}");
    assert_eq!(failed["deleted"], serde_json::json!([]));
    assert_eq!(failed["failed"].as_array().unwrap().len(), 1, "{failed}");
    let mut kept = want.clone();
    kept.retain(|d| d.0 != dirs[1]);
    kept.push((dirs[1].clone(), "keep".into(), "registered".into()));
    kept.sort();
    assert_eq!(store.dir_plan(&failed), kept);
    assert_eq!(failed["files"]["freed_bytes"], 0);
    assert_eq!(listing(&distros), before);
    assert_eq!(store.entries_by_path(), api_before);

    // For real: v2's entry goes, then its directory, in the same run; the same plan.
    let (code, v, err) = store.gc(&["--yes"]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["deleted"], serde_json::json!([id_of_gone(&v, &dirs[1])]));
    assert_eq!(v["entries"], dry["entries"]);
    assert_eq!(store.dir_plan(&v), want);
    assert_eq!(v["files"]["freed_bytes"].as_u64().unwrap(), would_free);
    let removed: Vec<&str> = v["files"]["storages"][0]["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["removed"] == true)
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [dirs[1].as_str()]);
    let remaining: Vec<String> = store.entries_by_path().into_iter().map(|e| e.1).collect();
    assert_eq!(remaining, [dirs[0].clone(), dirs[2].clone()]);
    let mut left = vec![
        ".bd+tmp-0123456789ab-3".to_string(),
        "deb-0000000000bb".into(),
        dirs[0].clone(),
        dirs[2].clone(),
    ];
    left.sort();
    assert_eq!(listing(&distros), left);
}

/// The id gc reported for the entry at `path` (it is gone from the API by now).
fn id_of_gone(v: &Value, path: &str) -> u64 {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap()["id"]
        .as_u64()
        .unwrap()
}
