//! `distros gc` reclaiming storage: real rsync pushes into a storage container served by
//! a real OpenSSH server (`support::sshd`), registered in the fake API, then gc over the
//! same ssh flags as push. Asserts the API state and the storage directory afterwards.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::push::{id12, listing, make_distro, noise};
use crate::support::fake_api::{FakeApi, USER};
use crate::support::sshd::SshLab;
use crate::support::{self, run};

const STORE: u32 = 39061;
const WEB: u32 = 39062;
const DAY: i64 = 86_400;

fn set_age(p: &Path, days: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = rustix::fs::Timespec {
        tv_sec: now - days * DAY,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::empty()).unwrap();
}

/// A directory made by hand in the storage container, owned by its user, `days` old.
fn hand_made(lab: &SshLab, name: &str, days: i64) {
    let d = lab.distros(STORE).join(name);
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::fs::write(d.join("etc/x"), noise(20_000, days as u64)).unwrap();
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{STORE}:{STORE}"))
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    set_age(&d, days);
}

fn entries_by_path(api: &FakeApi) -> Vec<(u64, String)> {
    api.state()
        .distros
        .values()
        .filter(|d| d.container == STORE)
        .map(|d| (d.id, d.path.clone()))
        .collect()
}

#[test]
fn gc_removes_unused_versions_over_ssh_and_keeps_what_is_used_newest_or_linked() {
    crate::require_sshd!();
    let api = FakeApi::start();
    api.add_container(STORE, "store", USER, "s1", true);
    api.add_container(WEB, "web", USER, "s1", false);
    api.state()
        .containers
        .get_mut(&STORE)
        .unwrap()
        .server_address = "127.0.0.1".into();
    let lab = SshLab::start(&[Ipv4Addr::LOCALHOST], &[STORE], "");
    let flags = lab.ssh_flags();
    let gc = |extra: &[&str]| {
        let mut args = vec!["distros", "gc", "--keep", "1", "--json"];
        args.extend(extra);
        args.extend(flags.iter().map(String::as_str));
        let (code, out, err) = run(&mut api.cmd(&args));
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    };

    // Four versions through rsync: each shares the big file with the one before (link-dest).
    let out = support::tempdir();
    let big = noise(1 << 20, 3);
    let mut dirs = Vec::new();
    for v in 1..=4 {
        let t = make_distro(
            out.path(),
            &format!("v{v}"),
            &[
                ("usr/lib/big.so", big.clone()),
                ("etc/version", format!("{v}\n").into_bytes()),
            ],
        );
        let ta = t.display().to_string();
        let mut args = vec!["push", ta.as_str(), "--to", "39061", "--transport", "rsync"];
        args.extend(flags.iter().map(String::as_str));
        let (code, stdout, err) = run(&mut api.cmd(&args));
        assert_eq!(code, 0, "push v{v}: {err}\n{stdout}");
        dirs.push(format!("deb-{}", id12(&t)));
    }
    let distros = lab.distros(STORE);
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
        set_age(&distros.join(d), 40 - 10 * i as i64);
    }
    let id_of = |path: &str| {
        entries_by_path(&api)
            .into_iter()
            .find(|(_, p)| p == path)
            .unwrap()
            .0
    };
    // v1 runs in a container; v2's entry is removed with `distros rm` (its files stay).
    api.set_custom_distro(WEB, Some(id_of(&dirs[0])));
    let v2 = id_of(&dirs[1]).to_string();
    let (code, _, err) = run(&mut api.cmd(&["distros", "rm", &v2, "--yes"]));
    assert_eq!(code, 0, "{err}");
    assert!(distros.join(&dirs[1]).is_dir());

    // What gc must leave alone, and what it may take besides the versions.
    hand_made(&lab, "deb-0000000000aa", 50); // unregistered, old: goes
    hand_made(&lab, ".bd+tmp-0123456789ab-1", 3); // abandoned upload: goes
    hand_made(&lab, ".bd+tmp-0123456789ab-2", 0); // a push in progress: stays
    hand_made(&lab, "handmade", 99); // not a version name: stays
    hand_made(&lab, "deb-0000000000AA", 99); // not lowercase hex: stays
    hand_made(&lab, ".bd+old-5-deb", 99); // an interrupted replace: push's to restore
    std::fs::write(lab.home(STORE).join("notes"), "mine").unwrap();
    let before = listing(&distros);
    let api_before = entries_by_path(&api);

    // Dry run: the plan, the space, and no change anywhere.
    let (code, v, err) = gc(&[]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["dry_run"], true);
    let files = &v["files"];
    assert_eq!(files["storages"][0]["uid"], STORE);
    assert!(files["storages"][0].get("error").is_none(), "{files}");
    let plan: Vec<(String, String, String)> = files["storages"][0]["dirs"]
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
        .collect();
    let mut want = vec![
        (
            ".bd+tmp-0123456789ab-1".into(),
            "remove".into(),
            "abandoned-upload".into(),
        ),
        (
            ".bd+tmp-0123456789ab-2".into(),
            "keep".into(),
            "uploading".into(),
        ),
        ("deb-0000000000aa".into(), "remove".into(), "unused".into()),
        (dirs[0].clone(), "keep".into(), "registered".into()),
        (dirs[1].clone(), "remove".into(), "unused".into()),
        (dirs[2].clone(), "remove".into(), "unused".into()),
        (dirs[3].clone(), "keep".into(), "registered".into()),
    ];
    want.sort();
    assert_eq!(plan, want);
    let would_free = files["freed_bytes"].as_u64().unwrap();
    assert!(would_free > 0);
    assert!(
        would_free < 1 << 20,
        "the shared big file is not freed by removing versions that share it: {would_free}"
    );
    assert_eq!(listing(&distros), before);
    assert_eq!(entries_by_path(&api), api_before);
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
    let remaining: Vec<String> = entries_by_path(&api).into_iter().map(|e| e.1).collect();
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
        std::fs::read(lab.home(STORE).join("notes")).unwrap(),
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
