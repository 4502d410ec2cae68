use super::*;
use crate::inventory::{Ecosystem, Package};
use crate::os_release::OsRelease;

const DEBIAN: &str = "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
    10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30\n\
    12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n\
    13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30\n\
    14,Forky,forky,2025-08-09\n";

fn inv(
    id: &str,
    version: Option<&str>,
    codename: &str,
    pkgs: &[(&str, Option<&str>)],
) -> Inventory {
    Inventory {
        ecosystem: Ecosystem::Deb,
        os: OsRelease {
            id: id.into(),
            version_id: version.map(str::to_string),
            version_codename: Some(codename.into()),
            ..Default::default()
        },
        packages: pkgs
            .iter()
            .map(|(n, s)| Package {
                name: n.to_string(),
                version: "1.0-1".into(),
                arch: "amd64".into(),
                source: s.map(str::to_string),
                source_version: None,
                license: None,
            })
            .collect(),
    }
}

/// A data directory holding `files`.
fn data(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn sources(info: &Path, support: &Path) -> Sources {
    Sources {
        distro_info: Some(info.to_path_buf()),
        security_support: Some(support.to_path_buf()),
        packaged: None,
    }
}

#[test]
fn release_windows_by_date() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let lists = data(&[
        ("security-support.deb12", "# none\n"),
        ("security-support.deb13", "# none\n"),
        ("security-support.deb10", "# none\n"),
    ]);
    let src = sources(info.path(), lists.path());
    let state = |v: &str, c: &str, day: &str| {
        assess(&inv("debian", Some(v), c, &[]), &src, day)
            .unwrap()
            .release
    };
    let t = state("13", "trixie", "2026-12-02");
    assert_eq!(
        (t.state, t.until.as_deref()),
        (State::Supported, Some("2028-08-09"))
    );
    assert_eq!(
        t.message,
        "debian 13 (trixie): supported until 2028-08-09, then LTS until 2030-06-30"
    );
    let b = state("12", "bookworm", "2026-12-02");
    assert_eq!(b.state, State::Lts);
    assert_eq!(b.since.as_deref(), Some("2026-07-11"));
    assert_eq!(b.until.as_deref(), Some("2028-06-30"));
    assert!(
        b.message
            .contains("LTS only since 2026-07-11, until 2028-06-30"),
        "{}",
        b.message
    );
    // The day itself: the end date is the first day without.
    assert_eq!(
        state("12", "bookworm", "2026-07-10").state,
        State::Supported
    );
    assert_eq!(state("12", "bookworm", "2026-07-11").state, State::Lts);
    let old = state("10", "buster", "2026-12-02");
    assert_eq!(old.state, State::EndOfLife);
    assert_eq!(old.since.as_deref(), Some("2024-06-30"));
    assert!(
        old.message.contains("end of life since 2024-06-30") && old.message.contains("ELTS"),
        "{}",
        old.message
    );
    let forky = assess(&inv("debian", None, "forky", &[]), &src, "2026-12-02").unwrap();
    assert_eq!(forky.release.state, State::Development);
    assert!(forky.packages.not_checked.is_some());
    assert_eq!(t.data, info.path().join("debian.csv").display().to_string());
}

#[test]
fn unknown_release_and_distribution_are_never_supported() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let lists = data(&[]);
    let src = sources(info.path(), lists.path());
    let s = assess(
        &inv("debian", Some("99"), "nosuch", &[]),
        &src,
        "2026-12-02",
    )
    .unwrap();
    assert_eq!(s.release.state, State::Unknown);
    let a = assess(&inv("alpine", Some("3.20.3"), "", &[]), &src, "2026-12-02").unwrap();
    assert_eq!(a.release.state, State::Unknown);
    assert!(a.packages.not_checked.is_some());
}

#[test]
fn packages_on_the_lists() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let lists = data(&[(
        "security-support.deb13",
        "binutils  limited  Only suitable for trusted content\n\
         rust.*    limited  See the release notes\n\
         rust-sequoia-sqv  supported  fully supported\n\
         consul    non-supported  1.10.12+dfsg1-1  2023-09-20  https://bugs.debian.org/1052289\n\
         later     non-supported  2.0-1  2027-01-01  ends early\n",
    )]);
    let src = sources(info.path(), lists.path());
    let i = inv(
        "debian",
        Some("13"),
        "trixie",
        &[
            ("libbinutils", Some("binutils")),
            ("consul", None),
            ("later", None),
            ("rust-sequoia-sqv", None),
            ("librust-x-dev", Some("rust-x")),
            ("openssl", None),
        ],
    );
    let s = assess(&i, &src, "2026-12-02").unwrap();
    let got: Vec<(&str, PackageState)> = s
        .packages
        .packages
        .iter()
        .map(|p| (p.package.as_str(), p.status))
        .collect();
    assert_eq!(
        got,
        [
            ("consul", PackageState::Ended),
            ("later", PackageState::Ends),
            ("libbinutils", PackageState::Limited),
            ("librust-x-dev", PackageState::Limited),
        ]
    );
    assert_eq!(s.packages.packages[2].source, "binutils");
    assert_eq!(
        s.packages.lists,
        [lists
            .path()
            .join("security-support.deb13")
            .display()
            .to_string()]
    );
}

#[test]
fn old_layout_lists() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let lists = data(&[
        (
            "security-support-ended.deb12",
            "wpewebkit 2.38.6-1 2023-05-09 https://bugs.debian.org/1035794\n",
        ),
        (
            "security-support-limited",
            "binutils Only suitable for trusted content\n",
        ),
    ]);
    let src = sources(info.path(), lists.path());
    let i = inv(
        "debian",
        Some("12"),
        "bookworm",
        &[("wpewebkit", None), ("binutils", None)],
    );
    let s = assess(&i, &src, "2026-12-02").unwrap();
    assert_eq!(s.packages.lists.len(), 2);
    assert_eq!(s.packages.packages.len(), 2);
    assert_eq!(s.packages.packages[1].status, PackageState::Ended);
}

#[test]
fn named_data_that_is_missing_or_malformed_is_an_error_naming_the_file() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let empty = data(&[]);
    let bookworm = inv("debian", Some("12"), "bookworm", &[]);
    // A named directory without the table.
    let e = assess(
        &bookworm,
        &sources(empty.path(), empty.path()),
        "2026-12-02",
    )
    .unwrap_err();
    let want = empty.path().join("debian.csv").display().to_string();
    assert!(e.to_string().starts_with(&want), "{e}");
    assert_eq!(e.exit_code(), 2);
    // A named directory without the release's list.
    let e = assess(&bookworm, &sources(info.path(), empty.path()), "2026-12-02").unwrap_err();
    assert!(e.to_string().contains("security-support.deb12"), "{e}");
    assert!(e.to_string().contains("no list for Debian 12"), "{e}");
    // A table that does not parse.
    let bad = data(&[(
        "debian.csv",
        "version,codename,series,created,release,eol\n12,B,bookworm,x,y,z\n",
    )]);
    let e = assess(&bookworm, &sources(bad.path(), empty.path()), "2026-12-02").unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: ", bad.path().join("debian.csv").display())),
        "{e}"
    );
    // A list that does not parse.
    let lists = data(&[("security-support.deb12", "foo sometimes\n")]);
    let e = assess(&bookworm, &sources(info.path(), lists.path()), "2026-12-02").unwrap_err();
    assert!(
        e.to_string().contains("security-support.deb12:1: foo"),
        "{e}"
    );
}

#[test]
fn today_is_a_date() {
    assert!(distro_info::is_date(&today()));
}

#[test]
fn lists_out_of_a_package_replace_the_host_s_but_not_a_named_directory() {
    let info = data(&[("debian.csv", DEBIAN)]);
    let lists = data(&[("security-support.deb13", "openssl limited named\n")]);
    let packaged = Lists {
        origin: "http://m/pool/d.deb".into(),
        files: vec![(
            "security-support.deb13".into(),
            "openssl limited packaged\n".into(),
        )],
    };
    let i = inv(
        "debian",
        Some("13"),
        "trixie",
        &[("libssl3", Some("openssl"))],
    );
    let src = Sources {
        distro_info: Some(info.path().to_path_buf()),
        security_support: None,
        packaged: Some(packaged.clone()),
    };
    let s = assess(&i, &src, "2026-12-02").unwrap();
    assert_eq!(s.packages.packages[0].details, "packaged");
    assert_eq!(
        s.packages.lists,
        ["http://m/pool/d.deb:usr/share/debian-security-support/security-support.deb13"]
    );
    let named = Sources {
        security_support: Some(lists.path().to_path_buf()),
        ..src
    };
    let s = assess(&i, &named, "2026-12-02").unwrap();
    assert_eq!(s.packages.packages[0].details, "named");
    // A package without the release's list: not checked, naming the package.
    let old = Sources {
        packaged: Some(Lists {
            origin: "http://m/old.deb".into(),
            files: vec![],
        }),
        security_support: None,
        ..named
    };
    let s = assess(&i, &old, "2026-12-02").unwrap();
    assert!(s
        .packages
        .not_checked
        .unwrap()
        .starts_with("http://m/old.deb has no list for Debian 13"));
}
