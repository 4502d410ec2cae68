//! Every input of a build decides what the build cache serves (issue 26): with a warm
//! cache, a build that differs in one input (the user's `SOURCE_DATE_EPOCH`, the
//! architecture, the mirror, the variant's packages, the suites) misses and gives byte for
//! byte what `--no-cache` gives under that input. A loopback signed repository keeps the
//! bootstraps to seconds.

use std::path::{Path, PathBuf};

use super::cache::{build, build_env, FROM_CACHE};
use crate::support::apt_repo::{self, AptRepo, Mirror};
use crate::support::{self, write_recipe};

/// A fresh directory with [`local_repo`] in it; `None` (the test skips, saying why) when
/// the tools it needs are missing.
pub(crate) fn local_repo_here() -> Option<(tempfile::TempDir, AptRepo)> {
    if let Err(why) = apt_repo::available() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let d = support::tempdir();
    let repo = local_repo(d.path());
    Some((d, repo))
}

/// A signed repository of `bd-base` (a tree that passes check) and `bd-hello`, both
/// `Architecture: all`, published as `bdtest` and `bdtest-updates`.
pub(crate) fn local_repo(dir: &Path) -> AptRepo {
    let repo = AptRepo::new(dir, "bdtest");
    let base = dir.join("pkg-base");
    support::busybox_tree(&base);
    repo.add_package_for("bd-base", "1.0", &base, "all");
    let hello = dir.join("pkg-hello");
    std::fs::create_dir_all(hello.join("usr/share/bd-hello")).unwrap();
    std::fs::write(hello.join("usr/share/bd-hello/version"), "1.0\n").unwrap();
    repo.add_package_for("bd-hello", "1.0", &hello, "all");
    repo.publish();
    repo.publish_suite("bdtest-updates");
    repo
}

/// `dir/NAME.toml`: an mmdebstrap `extract` of `bdtest` from `mirror` (keyed by the
/// repository's key), with `extra` lines in `[source]`.
pub(crate) fn local_recipe(dir: &Path, name: &str, mirror: &str, extra: &str) -> PathBuf {
    write_recipe(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[distro]\nname = \"local\"\n[source]\ntype = \"mmdebstrap\"\nsuite = \"bdtest\"\nvariant = \"extract\"\nsecurity = false\nmirror = \"{mirror}\"\nkeyring = \"repo-key.gpg\"\n{extra}[nss]\nmode = \"none\"\n"
        ),
    )
}

/// One changed input: its name, the recipe, the environment.
type Case<'a> = (&'a str, PathBuf, &'a [(&'a str, &'a str)]);

/// Every change of input, one at a time, against one warm cache.
#[test]
fn a_warm_cache_serves_a_tree_only_to_a_build_of_the_same_inputs() {
    crate::require_root!();
    let Some((d, repo)) = local_repo_here() else {
        return;
    };
    // The same files under a second address: only the mirror's URL differs.
    let second = Mirror::serve(&repo.dir);
    let recipe =
        |name: &str, mirror: &str, extra: &str| local_recipe(d.path(), name, mirror, extra);
    let url = repo.url();
    let plain = "updates = false\npackages = [\"bd-base\", \"bd-hello\"]\n";
    let cache = d.path().join("cache");
    let (cold, err, _) = build(
        &recipe("base", &url, plain),
        &d.path().join("cold"),
        Some(&cache),
    );
    assert!(!err.contains(FROM_CACHE), "{err}");
    let (warm, err, _) = build(
        &recipe("base", &url, plain),
        &d.path().join("warm"),
        Some(&cache),
    );
    assert!(err.contains(FROM_CACHE), "{err}");
    assert!(warm == cold, "the warm build gives the cold build's bytes");

    let epoch = [("SOURCE_DATE_EPOCH", "1600000000")];
    let cases: [Case; 5] = [
        ("epoch", recipe("base", &url, plain), &epoch),
        (
            "arch",
            recipe("arch", &url, &format!("arch = \"i386\"\n{plain}")),
            &[],
        ),
        ("mirror", recipe("mirror", &second.url, plain), &[]),
        (
            "packages",
            recipe(
                "packages",
                &url,
                "updates = false\npackages = [\"bd-base\"]\n",
            ),
            &[],
        ),
        (
            "suites",
            recipe(
                "suites",
                &url,
                "updates = true\npackages = [\"bd-base\", \"bd-hello\"]\n",
            ),
            &[],
        ),
    ];
    for (input, recipe, env) in cases {
        let out = |what: &str| d.path().join(format!("{input}-{what}"));
        let (cached, err, _) = build_env(&recipe, &out("cached"), Some(&cache), env);
        assert!(
            !err.contains(FROM_CACHE),
            "{input}: a tree made from other inputs was served:\n{err}"
        );
        let (uncached, _, _) = build_env(&recipe, &out("uncached"), None, env);
        assert!(
            cached == uncached,
            "{input}: the cached build differs from --no-cache"
        );
        let (again, err, _) = build_env(&recipe, &out("again"), Some(&cache), env);
        assert!(
            err.contains(FROM_CACHE),
            "{input}: its own entry serves:\n{err}"
        );
        assert!(
            again == uncached,
            "{input}: the warm build differs from --no-cache"
        );
    }
    assert_has_i386(&d.path().join("arch-cached/local.tar.gz"));
}

/// The arch case really built for i386: mmdebstrap records the architecture for dpkg.
fn assert_has_i386(archive: &Path) {
    let bytes = std::fs::read(archive).unwrap();
    let arch = super::cache::member(&bytes, "var/lib/dpkg/arch");
    assert_eq!(arch.lines().next(), Some("i386"), "{arch}");
}
