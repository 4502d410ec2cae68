//! Recipe tests: parsing, `extends`, `--set` and validation, through `load` and
//! `parse_str` as the stages call them.

use std::path::Path;

use serde::Deserialize;
use toml::Table;

use super::load::apply_set;
use super::*;

fn err(text: &str) -> String {
    parse_str(text, "t.toml").unwrap_err().to_string()
}

const BASE: &str =
    "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = \"bookworm\"\n";

#[test]
fn builtin_default_parses() {
    let l = load(None, &[]).unwrap();
    assert_eq!(l.name(), "debian-trixie");
    assert_eq!(l.source().kind(), "mmdebstrap");
}

#[test]
fn docker_builtin_parses() {
    let l = load(Some("debian-slim-docker"), &[]).unwrap();
    assert_eq!(l.name(), "debian-slim-docker");
    match l.source() {
        SourceSpec::Docker(d) => {
            assert_eq!(d.image, "debian:bookworm-slim");
            assert_eq!(d.pull, Pull::Missing);
        }
        other => panic!("not a docker source: {}", other.kind()),
    }
    assert_eq!(
        load(Some("recipes/debian-slim-docker.toml"), &[])
            .unwrap()
            .recipe
            .packages
            .install
            .len(),
        3
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = err(&format!("{BASE}colour = 1\n"));
    assert!(e.starts_with("t.toml:3:1: unknown field `colour`"), "{e}");
}

#[test]
fn bad_path_names_charset_and_fix() {
    let e = err("[distro]\nname = \"x\"\npath = \"my distro\"\n");
    assert!(
        e.starts_with("t.toml:3:8: path \"my distro\" has ' '"),
        "{e}"
    );
    assert!(e.contains("try \"my-distro\""), "{e}");
}

#[test]
fn unknown_source_type() {
    let e = err("[distro]\nname = \"x\"\n[source]\ntype = \"dockr\"\n");
    assert!(e.contains("unknown variant `dockr`"), "{e}");
    assert!(
        e.contains("`debootstrap`, `mmdebstrap`, `docker`, `image-archive`, `rootfs`, `registry`"),
        "{e}"
    );
}

#[test]
fn package_names_cannot_be_options() {
    let e = err(&format!(
        "{BASE}[packages]\ninstall = [\"--allow-unauthenticated\"]\n"
    ));
    assert!(e.contains("would be read as an option"), "{e}");
}

#[test]
fn set_overrides_and_types() {
    let mut t: Table = toml::from_str(BASE).unwrap();
    apply_set(&mut t, "source.suite=trixie").unwrap();
    apply_set(&mut t, "nss.uids=[30001, 30002]").unwrap();
    let r = Recipe::deserialize(t).unwrap();
    let Some(SourceSpec::Debootstrap(b)) = r.source else {
        panic!()
    };
    assert_eq!(&*b.suite, "trixie");
    assert_eq!(r.nss.uids, vec![30001, 30002]);
}

#[test]
fn extends_merges_and_appends() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("base.toml"),
        format!("{BASE}[[run]]\ncommand = \"a\"\n[[files]]\npath = \"/x\"\nsource = \"x\"\n"),
    )
    .unwrap();
    std::fs::write(d.path().join("x"), "x").unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(
        d.path().join("sub/child.toml"),
        "extends = \"../base.toml\"\n[distro]\nname = \"y\"\n[[run]]\ncommand = \"b\"\n",
    )
    .unwrap();
    let l = load(Some(d.path().join("sub/child.toml").to_str().unwrap()), &[]).unwrap();
    assert_eq!(l.name(), "y");
    let cmds: Vec<_> = l.recipe.run.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(cmds, ["a", "b"]);
    let src = l.recipe.files[0].source.as_ref().unwrap();
    assert_eq!(
        src.canonicalize().unwrap(),
        d.path().join("x").canonicalize().unwrap()
    );
}

#[test]
fn every_shipped_recipe_loads_and_is_built_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut count = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let l = load(Some(p.to_str().unwrap()), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let stem = p.file_stem().unwrap().to_str().unwrap();
            let (_, text) = BUILTIN
                .iter()
                .find(|(n, _)| *n == stem)
                .expect("recipe missing from BUILTIN");
            assert_eq!(*text, std::fs::read_to_string(&p).unwrap());
            assert!(
                std::fs::read_to_string(&p).unwrap().starts_with("# "),
                "{}: starts with a comment header saying what it gives",
                p.display()
            );
            let builtin = load(Some(stem), &[]).unwrap();
            assert_eq!(builtin.name(), l.name());
            count += 1;
        }
    }
    assert_eq!(count, BUILTIN.len());
}

#[test]
fn recipe_values_cannot_inject_shell_or_options() {
    let bad_suites = ["bookworm; rm -rf /", "$(reboot)", "--foo", "a b", "x\ny"];
    for suite in bad_suites {
        let e = err(&format!(
            "[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = {suite:?}\n"
        ));
        assert!(
            e.starts_with("t.toml:") && e.contains(&format!("value {suite:?} ")),
            "{suite:?}: {e}"
        );
    }
    for pkg in ["$(reboot)", "`id`", "a;b", "a b", "-o=APT::X", "x\n"] {
        let e = err(&format!("{BASE}[packages]\ninstall = [{pkg:?}]\n"));
        assert!(e.contains("package "), "{pkg:?}: {e}");
    }
    for m in [
        "--option",
        "http://mirror/debian --allow-insecure",
        "http://mirror/debian\n--option",
        "http://mirror/$(reboot)",
        "http://mirror/`id`",
        "http://mirror/a;b",
        "http://mirror/'x'",
        "http:///debian",
        "ftp://mirror/debian",
    ] {
        let e = err(&format!("{BASE}mirror = {m:?}\n"));
        assert!(e.contains("mirror "), "{m:?}: {e}");
    }
    for m in [
        "http://deb.debian.org/debian",
        "https://[::1]:8080/debian",
        "file:///srv/mirror",
        "http://user@mirror/debian?x=1",
    ] {
        parse_str(&format!("{BASE}mirror = {m:?}\n"), "t.toml").unwrap();
    }
}

#[test]
fn files_paths_cannot_escape_the_tree() {
    for p in ["/../../etc/x", "/etc/../../x", "etc/x", "/", "/etc/a\nb"] {
        let e = err(&format!("{BASE}[[files]]\npath = {p:?}\ncontent = \"x\"\n"));
        assert!(e.contains("path "), "{p:?}: {e}");
    }
}

#[test]
fn files_sources_cannot_leave_the_recipe_directory() {
    let d = tempfile::tempdir().unwrap();
    let recipes = d.path().join("recipes");
    std::fs::create_dir_all(recipes.join("sub")).unwrap();
    std::fs::write(d.path().join("secret"), "s").unwrap();
    std::fs::write(recipes.join("ok"), "ok").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret"), recipes.join("sneaky")).unwrap();
    let secret = d.path().join("secret").canonicalize().unwrap();
    let load_with = |source: &str| {
        let r = recipes.join("r.toml");
        std::fs::write(
            &r,
            format!("{BASE}[[files]]\npath = \"/etc/x\"\nsource = {source:?}\n"),
        )
        .unwrap();
        load(Some(r.to_str().unwrap()), &[])
    };
    load_with("ok").unwrap();
    for source in [
        "../secret",
        "sneaky",
        secret.to_str().unwrap(),
        "sub/../../secret",
    ] {
        let e = load_with(source).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "resolves to {}, outside the recipe's directory",
                secret.display()
            )),
            "{source}: {e}"
        );
    }
    // With `extends`, each recipe's sources are checked against its own directory.
    std::fs::write(
        recipes.join("base.toml"),
        format!("{BASE}[[files]]\npath = \"/etc/x\"\nsource = \"ok\"\n"),
    )
    .unwrap();
    let child = recipes.join("sub/child.toml");
    std::fs::write(&child, "extends = \"../base.toml\"\n").unwrap();
    load(Some(child.to_str().unwrap()), &[]).unwrap();
    std::fs::write(
        &child,
        "extends = \"../base.toml\"\n[[files]]\npath = \"/etc/y\"\nsource = \"../ok\"\n",
    )
    .unwrap();
    let e = load(Some(child.to_str().unwrap()), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the recipe's directory"), "{e}");
    assert!(e.starts_with(&child.display().to_string()), "{e}");
}

#[test]
fn not_found_lists_builtins() {
    let e = load(Some("no-such-recipe"), &[]).unwrap_err().to_string();
    assert!(
        e.contains("not found") && e.contains("debian-bookworm"),
        "{e}"
    );
}

#[test]
fn slim_section_is_on_when_present_and_off_by_default() {
    assert!(parse_str(BASE, "t.toml").unwrap().slim().is_none());
    let r = parse_str(
        &format!("{BASE}[slim]\nkeep_locales = [\"en_GB\", \"sr@latin\"]\n"),
        "t.toml",
    )
    .unwrap();
    let s = r.slim().expect("on");
    let kept: Vec<&str> = s.keep_locales.iter().map(|l| &**l).collect();
    assert_eq!(kept, ["en_GB", "sr@latin"]);
    let off = parse_str(&format!("{BASE}[slim]\nenabled = false\n"), "t.toml").unwrap();
    assert!(off.slim().is_none());
    // The default recipe (and what extends it) is slim; --set turns it off.
    assert!(load(None, &[]).unwrap().recipe.slim().is_some());
    assert!(load(Some("debian-bookworm"), &[])
        .unwrap()
        .recipe
        .slim()
        .is_some());
    let full = load(None, &["slim.enabled=false".to_string()]).unwrap();
    assert!(full.recipe.slim().is_none());
}

#[test]
fn slim_rejects_unknown_keys_and_glob_locales() {
    let e = err(&format!("{BASE}[slim]\nkeep = []\n"));
    assert!(e.contains("unknown field `keep`"), "{e}");
    let e = err(&format!("{BASE}[slim]\nkeep_locales = [\"de/*\"]\n"));
    assert!(e.contains("locale \"de/*\" has '/'"), "{e}");
    let e = err(&format!("{BASE}[slim]\nkeep_locales = [\"..\"]\n"));
    assert!(e.contains("must start with a letter or digit"), "{e}");
}
