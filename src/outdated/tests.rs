use super::*;
use crate::inventory::{OsRelease, Package};

fn inv(id: &str, codename: Option<&str>, pkgs: &[(&str, &str, &str)]) -> Inventory {
    Inventory {
        ecosystem: if id == "alpine" {
            Ecosystem::Apk
        } else {
            Ecosystem::Deb
        },
        os: OsRelease {
            id: id.into(),
            version_id: codename.map(|_| "12".into()),
            version_codename: codename.map(str::to_string),
            pretty_name: None,
            id_like: vec![],
        },
        packages: pkgs
            .iter()
            .map(|(n, v, a)| Package {
                name: n.to_string(),
                version: v.to_string(),
                arch: a.to_string(),
                source: None,
                source_version: None,
                license: None,
            })
            .collect(),
    }
}

fn names(p: &Plan) -> Vec<(&str, &str, bool)> {
    p.suites
        .iter()
        .map(|s| (s.name.as_str(), s.base.as_str(), s.security))
        .collect()
}

#[test]
fn bookworm_with_only_the_base_suite_still_gets_updates_and_security() {
    let i = inv("debian", Some("bookworm"), &[("libc6", "2.36-9", "amd64")]);
    let srcs =
        sources::parse_list("l", "deb http://deb.debian.org/debian bookworm main\n").unwrap();
    let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
    assert_eq!(
        names(&p),
        [
            ("bookworm", "http://deb.debian.org/debian", false),
            ("bookworm-updates", "http://deb.debian.org/debian", false),
            (
                "bookworm-security",
                "http://deb.debian.org/debian-security",
                true
            ),
        ]
    );
    assert_eq!(p.components, ["main"]);
    assert_eq!(p.arches, ["amd64"]);
    assert_eq!(p.distro, "debian-12");
}

#[test]
fn flags_and_sources_choose_the_mirrors() {
    let i = inv("debian", Some("bookworm"), &[]);
    let srcs = sources::parse_list(
        "l",
        "deb http://m.example/debian bookworm main contrib\ndeb http://s.example/sec bookworm-security main\n",
    )
    .unwrap();
    let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
    assert_eq!(p.suites[1].base, "http://m.example/debian");
    assert_eq!(p.suites[2].base, "http://s.example/sec");
    assert_eq!(p.components, ["main", "contrib"]);
    let o = Options {
        mirror: Some("http://127.0.0.1:1/d".into()),
        security_mirror: Some("http://127.0.0.1:1/s".into()),
        ..Options::default()
    };
    let p = deb_plan("t", &i, &srcs, None, &o).unwrap();
    assert_eq!(
        names(&p),
        [
            ("bookworm", "http://127.0.0.1:1/d", false),
            ("bookworm-updates", "http://127.0.0.1:1/d", false),
            ("bookworm-security", "http://127.0.0.1:1/s", true),
        ]
    );
}

#[test]
fn sid_has_no_security_suite_and_buster_the_old_name() {
    let i = inv("debian", Some("trixie"), &[]);
    let srcs = sources::parse_list("l", "deb http://deb.debian.org/debian sid main\n").unwrap();
    let p = deb_plan("t", &i, &srcs, None, &Options::default()).unwrap();
    assert_eq!(names(&p), [("sid", "http://deb.debian.org/debian", false)]);
    let p = deb_plan(
        "t",
        &inv("debian", Some("buster"), &[]),
        &[],
        None,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(p.suites[2].name, "buster/updates");
    assert!(p.suites[2].security);
}

#[test]
fn the_suite_comes_from_provenance_when_sources_and_os_release_are_silent() {
    let i = inv("debian", None, &[]);
    let prov = br#"{"source":{"kind":"mmdebstrap","reference":"trixie minbase http://x"}}"#;
    let p = deb_plan("t", &i, &[], Some(prov), &Options::default()).unwrap();
    assert_eq!(p.suites[0].name, "trixie");
    assert_eq!(p.distro, "debian-trixie");
    let e = deb_plan("t", &i, &[], None, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("no suite"), "{e}");
    let e = deb_plan(
        "t",
        &inv("fedora", Some("x"), &[]),
        &[],
        None,
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("unknown distribution") && e.contains("fedora"),
        "{e}"
    );
    assert_eq!(
        provenance_suite(br#"{"source":{"kind":"docker","reference":"debian:12"}}"#),
        None
    );
}

#[test]
fn ubuntu_suites() {
    let mut i = inv("ubuntu", Some("noble"), &[("a", "1", "arm64")]);
    i.os.version_id = Some("24.04".into());
    let p = deb_plan("t", &i, &[], None, &Options::default()).unwrap();
    assert_eq!(
        names(&p),
        [
            ("noble", "http://archive.ubuntu.com/ubuntu", false),
            ("noble-updates", "http://archive.ubuntu.com/ubuntu", false),
            ("noble-security", "http://security.ubuntu.com/ubuntu", true),
        ]
    );
    assert_eq!(p.arches, ["arm64"]);
    assert_eq!(p.distro, "ubuntu-24.04");
}

#[test]
fn alpine_repositories() {
    let i = inv("alpine", Some("x"), &[("musl", "1.2.5-r0", "x86_64")]);
    let repos = b"https://dl-cdn.alpinelinux.org/alpine/v3.20/main\n# c\n@edge https://x/alpine/edge/testing\nhttps://dl-cdn.alpinelinux.org/alpine/edge/community/\n";
    let p = apk_plan("t", &i, Some(repos), &Options::default()).unwrap();
    assert_eq!(
        names(&p),
        [
            (
                "v3.20/main",
                "https://dl-cdn.alpinelinux.org/alpine/v3.20/main",
                true
            ),
            (
                "edge/community",
                "https://dl-cdn.alpinelinux.org/alpine/edge/community",
                false
            ),
        ]
    );
    let o = Options {
        mirror: Some("http://127.0.0.1:9/alpine/".into()),
        ..Options::default()
    };
    let p = apk_plan("t", &i, Some(repos), &o).unwrap();
    assert_eq!(p.suites[0].base, "http://127.0.0.1:9/alpine/v3.20/main");
    assert!(apk_plan("t", &i, None, &o).is_err());
    assert!(apk_plan("t", &i, Some(b"nonsense\n"), &o).is_err());
}

#[test]
fn newest_wins_and_security_follows_the_version_installed() {
    let i = inv(
        "debian",
        Some("bookworm"),
        &[
            ("libssl3", "3.0.11-1~deb12u2", "amd64"),
            ("tzdata", "2024a-0+deb12u1", "all"),
            ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
            ("bash", "5.2.15-2+b2", "amd64"),
            ("local", "9.9", "amd64"),
        ],
    );
    let plan = deb_plan("t", &i, &[], None, &Options::default()).unwrap();
    let mut f: Candidates = HashMap::new();
    let mut add = |n: &str, a: &str, v: &str, s: usize| {
        f.entry((n.into(), a.into()))
            .or_default()
            .push((v.into(), s))
    };
    add("libssl3", "amd64", "3.0.11-1~deb12u2", 0);
    add("libssl3", "amd64", "3.0.17-1~deb12u3", 2);
    // Same version in the point release and the security suite: a security update.
    add("zlib1g", "amd64", "1:1.2.13.dfsg-1+deb12u1", 0);
    add("zlib1g", "amd64", "1:1.2.13.dfsg-1+deb12u1", 2);
    // Newer in -updates than in -security: apt installs the -updates one.
    add("tzdata", "all", "2025a-0+deb12u1", 2);
    add("tzdata", "all", "2025b-0+deb12u1", 1);
    add("bash", "amd64", "5.2.15-2+b2", 0);
    add("local", "amd64", "1.0", 0);
    // An entry of another architecture never matches.
    add("bash", "i386", "9", 0);
    let r = compare(&i, &plan, &f);
    let got: Vec<(&str, &str, &str, bool)> = r
        .packages
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.available.as_str(),
                p.suite.as_str(),
                p.security,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("libssl3", "3.0.17-1~deb12u3", "bookworm-security", true),
            ("tzdata", "2025b-0+deb12u1", "bookworm-updates", false),
            (
                "zlib1g",
                "1:1.2.13.dfsg-1+deb12u1",
                "bookworm-security",
                true
            ),
        ]
    );
    assert_eq!(r.security_pending(), 2);
    assert_eq!(
        r.suites,
        ["bookworm", "bookworm-updates", "bookworm-security"]
    );
}
