//! The build cache (issue 18): cached and uncached builds give the same bytes; a new
//! `InRelease` invalidates; a damaged entry is rebuilt; concurrent builds share one cache.

use std::path::{Path, PathBuf};

use crate::support::apt_repo::{self, AptRepo};
use crate::support::{self, bin, run, write_recipe};

/// `build RECIPE --out OUT` with the cache at `cache` (or `--no-cache`); asserts success
/// and returns (archive bytes, stderr, the report's JSON).
pub(crate) fn build(
    recipe: &Path,
    out: &Path,
    cache: Option<&Path>,
) -> (Vec<u8>, String, serde_json::Value) {
    build_env(recipe, out, cache, &[])
}

/// [`build`] with extra environment variables.
pub(crate) fn build_env(
    recipe: &Path,
    out: &Path,
    cache: Option<&Path>,
    env: &[(&str, &str)],
) -> (Vec<u8>, String, serde_json::Value) {
    let mut c = bin();
    c.envs(env.iter().copied());
    c.arg("build")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .arg("--json");
    match cache {
        Some(d) => c.env("BUILD_DISTRO_CACHE_DIR", d),
        None => c.arg("--no-cache"),
    };
    let (code, stdout, err) = run(&mut c);
    assert_eq!(code, 0, "build failed:\n{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let archive = PathBuf::from(report["output"].as_str().unwrap());
    (std::fs::read(archive).unwrap(), err, report)
}

fn releases(report: &serde_json::Value) -> Vec<String> {
    report["source"]["releases"]
        .as_array()
        .map(|a| a.iter().map(|r| r["sha256"].to_string()).collect())
        .unwrap_or_default()
}

fn cache_ls(cache: &Path) -> serde_json::Value {
    let (code, out, err) = run(bin()
        .args(["cache", "ls", "--json"])
        .env("BUILD_DISTRO_CACHE_DIR", cache));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn entries(cache: &Path) -> usize {
    cache_ls(cache)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "entry" && e["complete"] == true)
        .count()
}

pub(crate) fn member(archive: &[u8], path: &str) -> String {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new(path) {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            return s;
        }
    }
    panic!("{path} not in the archive");
}

fn paths(archive: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

pub(crate) const FROM_CACHE: &str = "from the build cache";

/// Remove the cache's layer entries (a bootstrap's second step); how many.
fn remove_layers(cache: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(cache.join("entries")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(key) = std::fs::read(dir.join("key.json")) else {
            continue;
        };
        let key: serde_json::Value = serde_json::from_slice(&key).unwrap();
        if key["base"].is_string() {
            std::fs::remove_dir_all(&dir).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn cache_commands_on_an_empty_cache_and_bad_sizes() {
    let d = support::tempdir();
    let cache = d.path().join("c");
    let ls = cache_ls(&cache);
    assert_eq!(ls["bytes"], 0);
    assert_eq!(ls["entries"][0]["kind"], "debs");
    assert_eq!(ls["entries"][1]["kind"], "blocks");
    let (code, out, err) = run(bin()
        .args(["cache", "prune", "--max-size", "1G", "--json"])
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 0, "{err}");
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["freed_bytes"], 0);
    let (code, _, err) = run(bin()
        .args(["cache", "prune", "--max-size", "5X"])
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 2, "{err}");
}

/// The default recipe against deb.debian.org: cold, warm and `--no-cache` builds give one
/// archive; a `[[files]]` change reuses the cached source.
/// The names of the packages in the cache's pool.
fn packages(cache: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(cache.join("debs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect()
}

#[test]
fn cached_and_uncached_builds_are_byte_identical() {
    crate::require_root!();
    let d = support::tempdir();
    let cache = d.path().join("cache");
    let recipe = write_recipe(d.path(), "r.toml", "extends = \"debian-bookworm\"\n");
    let (cold, err, cold_report) = build(&recipe, &d.path().join("cold"), Some(&cache));
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert!(
        !releases(&cold_report).is_empty(),
        "the provenance names the InRelease files"
    );
    let (warm, err, _) = build(&recipe, &d.path().join("warm"), Some(&cache));
    assert!(err.contains(FROM_CACHE), "{err}");
    // Read in place below an overlay: customize (apt-get clean in a chroot, [remove])
    // and finish write into the upper layer.
    assert!(err.contains("read in place"), "{err}");
    assert!(warm == cold, "a warm build gives the cold build's bytes");
    // Two steps (issue 25): the release alone, and the upgrade as a layer over it.
    assert_eq!(entries(&cache), 2);
    // Both steps left their packages in the cache: one for every installed version.
    let pool = packages(&cache);
    let status = member(&cold, "var/lib/dpkg/status");
    let mut installed = 0;
    for stanza in status.split("\n\n").filter(|s| s.contains("Package:")) {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("{k} in {stanza}"))
                .to_string()
        };
        let (name, version, arch) = (field("Package"), field("Version"), field("Architecture"));
        let deb = format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"));
        assert!(pool.contains(&deb), "{deb} not in the cache: {pool:?}");
        installed += 1;
    }
    assert!(installed > 50, "{installed} packages");
    // A security rebuild: a new -security InRelease leaves no entry for the whole tree
    // (the layer's key names it) while the first step's key (the release's own
    // InRelease) still matches. Only the upgrade runs, and the bytes are the same.
    let removed = remove_layers(&cache);
    assert_eq!(removed, 1, "one layer entry");
    let (rebuilt, err, _) = build(&recipe, &d.path().join("security"), Some(&cache));
    assert!(
        err.contains("first step served by the build cache"),
        "{err}"
    );
    assert!(
        err.contains("source: upgrading from bookworm, bookworm-updates, bookworm-security"),
        "{err}"
    );
    assert!(
        rebuilt == cold,
        "a security rebuild from the cached first step gives the cold build's bytes"
    );
    assert_eq!(entries(&cache), 2);
    // apt found every package it needed in the cache (it says "Need to get 0 B/6624 kB").
    assert!(
        err.lines()
            .filter(|l| l.starts_with("Need to get "))
            .all(|l| l.starts_with("Need to get 0 B/")),
        "{err}"
    );
    assert_eq!(packages(&cache), pool);
    // The mirror may publish between two bootstraps; then build once more.
    let mut uncached = build(&recipe, &d.path().join("nocache"), None);
    if releases(&uncached.2) != releases(&cold_report) {
        eprintln!("the mirror changed between the builds; rebuilding the cold one");
        let fresh = d.path().join("cache2");
        let c = build(&recipe, &d.path().join("cold2"), Some(&fresh));
        uncached = build(&recipe, &d.path().join("nocache2"), None);
        assert_eq!(
            releases(&c.2),
            releases(&uncached.2),
            "the mirror changed twice"
        );
        assert!(
            c.0 == uncached.0,
            "--no-cache gives the cached build's bytes"
        );
    } else {
        assert!(
            uncached.0 == cold,
            "--no-cache gives the cached build's bytes"
        );
    }
    let debs: Vec<String> = paths(&cold)
        .into_iter()
        .filter(|p| p.ends_with(".deb"))
        .collect();
    assert!(
        debs.is_empty(),
        "the cached packages stay out of the tree: {debs:?}"
    );
    let prov = member(&cold, "etc/build-distro.json");
    assert!(prov.contains("dists/bookworm/InRelease"), "{prov}");
    // Only [[files]] changed: the source comes from the cache, the result differs.
    let files = write_recipe(
        d.path(),
        "f.toml",
        "extends = \"debian-bookworm\"\n[[files]]\npath = \"/etc/motd\"\ncontent = \"cached\\n\"\n",
    );
    let (changed, err, _) = build(&files, &d.path().join("files"), Some(&cache));
    assert!(err.contains(FROM_CACHE), "{err}");
    // A [[run]] that fails in the chroot on the mounted tree: no mount, no build
    // directory left.
    let failing = write_recipe(
        d.path(),
        "fail.toml",
        "extends = \"debian-bookworm\"\n[[run]]\ncommand = \"rm -f /etc/hostname && exit 7\"\n",
    );
    let work = d.path().join("work");
    let (code, _, err) = run(bin()
        .arg("build")
        .arg(&failing)
        .arg("--out")
        .arg(d.path().join("failed"))
        .arg("--work-dir")
        .arg(&work)
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("read in place"), "{err}");
    assert!(
        support::mounts_under(d.path()).is_empty(),
        "mounts left: {:?}",
        support::mounts_under(d.path())
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    // The entry's tree was never written: a warm build after those still matches.
    let (again, _, _) = build(&recipe, &d.path().join("again"), Some(&cache));
    assert!(
        again == cold,
        "the [[files]] build left the entry as it was"
    );
    assert_eq!(member(&changed, "etc/motd"), "cached\n");
}

/// A tree that finishes and passes check, as a package: busybox for `sh`, `ifconfig`
/// and `route`, the host's uWSGI with its libraries.
fn base_package(repo: &AptRepo, work: &Path) {
    let root = work.join("pkg-base");
    support::busybox_tree(&root);
    repo.add_package("bd-base", "1.0", &root);
}

fn hello_package(repo: &AptRepo, work: &Path, version: &str) {
    let root = work.join(format!("pkg-hello-{version}"));
    std::fs::create_dir_all(root.join("usr/share/bd-hello")).unwrap();
    std::fs::write(
        root.join("usr/share/bd-hello/version"),
        format!("{version}\n"),
    )
    .unwrap();
    repo.add_package("bd-hello", version, &root);
}

/// A local signed repository: concurrent cold builds, a warm one, a damaged entry and a
/// new package version.
#[test]
fn cache_follows_the_mirror_and_survives_damage_and_concurrency() {
    crate::require_root!();
    if let Err(why) = apt_repo::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let d = support::tempdir();
    let repo = AptRepo::new(d.path(), "bdtest");
    base_package(&repo, d.path());
    hello_package(&repo, d.path(), "1.0");
    repo.publish();
    let recipe = write_recipe(
        d.path(),
        "r.toml",
        &format!(
            "[distro]\nname = \"local\"\n[source]\ntype = \"mmdebstrap\"\nsuite = \"bdtest\"\nvariant = \"extract\"\nupdates = false\nsecurity = false\nmirror = \"{}\"\nkeyring = \"repo-key.gpg\"\npackages = [\"bd-base\", \"bd-hello\"]\n[nss]\nmode = \"none\"\n",
            repo.url()
        ),
    );
    let cache = d.path().join("cache");

    // Two builds at once on an empty cache: both bootstrap, both store, both succeed.
    let spawn = |out: &str| {
        let mut c = bin();
        c.arg("build")
            .arg(&recipe)
            .arg("--out")
            .arg(d.path().join(out))
            .env("BUILD_DISTRO_CACHE_DIR", &cache);
        c.stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for (name, child) in [("a", a), ("b", b)] {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "concurrent build {name}:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let first = std::fs::read(d.path().join("a/local.tar.gz")).unwrap();
    assert!(first == std::fs::read(d.path().join("b/local.tar.gz")).unwrap());
    assert_eq!(entries(&cache), 1);
    assert_eq!(member(&first, "usr/share/bd-hello/version"), "1.0\n");

    let (warm, err, report) = build(&recipe, &d.path().join("warm"), Some(&cache));
    assert!(err.contains(FROM_CACHE), "{err}");
    assert!(warm == first);
    let url = format!("{}/dists/bdtest/InRelease", repo.url());
    assert_eq!(report["source"]["releases"][0]["url"], url.as_str());
    let signed = std::fs::read(repo.dir.join("dists/bdtest/InRelease")).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed));
    assert_eq!(report["source"]["releases"][0]["sha256"], sha.as_str());

    assert!(err.contains("read in place"), "{err}");
    // The tarball restores the same tree (a build that cannot mount it unpacks it).
    let (unpacked, err, _) = build_env(
        &recipe,
        &d.path().join("unpacked"),
        Some(&cache),
        &[("BUILD_DISTRO_CACHE_UNPACK", "1")],
    );
    assert!(
        err.contains(FROM_CACHE) && !err.contains("read in place"),
        "{err}"
    );
    assert!(unpacked == first);

    // Damage every stored compressed piece: each is found out, compressed again with a
    // warning, and the archive is the same bytes; the next build finds them whole.
    let pieces: Vec<PathBuf> = std::fs::read_dir(cache.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!pieces.is_empty(), "the archive's pieces are stored");
    for p in &pieces {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[0] ^= 0x5a;
        std::fs::write(p, bytes).unwrap();
    }
    let (recompressed, err, _) = build(&recipe, &d.path().join("pieces"), Some(&cache));
    assert!(
        err.contains(&format!("{} damaged compressed pieces", pieces.len())),
        "{err}"
    );
    assert!(
        recompressed == first,
        "recompressed pieces give the same bytes"
    );
    let (_, err, _) = build(&recipe, &d.path().join("pieces2"), Some(&cache));
    assert!(!err.contains("damaged"), "{err}");

    // Damage the entry's unpacked tree, then its tarball: each is detected, rebuilt with
    // a warning, same result.
    let entry_dir = || {
        std::fs::read_dir(cache.join("entries"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("entry.json").is_file())
            .unwrap()
    };
    let version = entry_dir().join("tree/usr/share/bd-hello/version");
    std::fs::write(&version, "6.6\n").unwrap();
    let (rebuilt, err, _) = build(&recipe, &d.path().join("rebuilt-tree"), Some(&cache));
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert!(
        err.contains("fingerprint") && err.contains("rebuilding"),
        "{err}"
    );
    assert!(rebuilt == first, "the rebuilt entry gives the same bytes");
    let tarball = entry_dir().join("source.tar.zst");
    let mut bytes = std::fs::read(&tarball).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&tarball, &bytes).unwrap();
    let (rebuilt, err, _) = build_env(
        &recipe,
        &d.path().join("rebuilt"),
        Some(&cache),
        &[("BUILD_DISTRO_CACHE_UNPACK", "1")],
    );
    assert!(!err.contains(FROM_CACHE), "{err}");
    assert!(
        err.contains("fingerprint") && err.contains("rebuilding"),
        "{err}"
    );
    assert!(rebuilt == first, "the rebuilt entry gives the same bytes");
    assert_eq!(entries(&cache), 1);

    // A new upload changes the InRelease: the key changes, the new version is built.
    hello_package(&repo, d.path(), "2.0");
    repo.publish();
    let (bumped, err, _) = build(&recipe, &d.path().join("bumped"), Some(&cache));
    assert!(
        !err.contains(FROM_CACHE),
        "a stale base is never served: {err}"
    );
    assert_eq!(member(&bumped, "usr/share/bd-hello/version"), "2.0\n");
    assert_eq!(entries(&cache), 2);

    // ls names them; prune to nothing empties the cache.
    let ls = cache_ls(&cache);
    assert!(ls["bytes"].as_u64().unwrap() > 0);
    let (code, _, err) = run(bin()
        .args(["cache", "prune", "--max-size", "0"])
        .env("BUILD_DISTRO_CACHE_DIR", &cache));
    assert_eq!(code, 0, "{err}");
    assert_eq!(entries(&cache), 0);
    assert_eq!(
        cache_ls(&cache)["bytes"],
        0,
        "packages and pieces pruned too"
    );
}
