//! Apt sources for Debian-family trees: which suites a release has besides itself
//! (`<suite>-updates`, `<suite>-security`), where they are, and the one-line
//! `sources.list` entries that name them. The bootstrap source installs from these lines
//! and leaves them in the tree; customize's `[packages] upgrade` adds the security line a
//! tree lacks. Pure functions over recipe values and file text: no I/O here.

use std::fmt;

use crate::recipe::{Bootstrap, Distribution};

/// Debian's mirror, used when a Debian recipe names none.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// Where Debian publishes `<suite>-security`.
pub const DEBIAN_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Ubuntu's archive, used when an Ubuntu recipe names no mirror; its `-security` pocket
/// is in the same archive.
pub const UBUNTU_MIRROR: &str = "http://archive.ubuntu.com/ubuntu";

/// Suites that are rolling or development names: nothing is published as their
/// `-updates` or `-security` (asking apt for one would fail the whole `update`).
const NO_POCKETS: &[(Distribution, &str)] = &[
    (Distribution::Debian, "sid"),
    (Distribution::Debian, "unstable"),
    (Distribution::Debian, "experimental"),
    (Distribution::Debian, "rc-buggy"),
    (Distribution::Ubuntu, "devel"),
];

/// Debian releases before bullseye published security fixes as `<suite>/updates`.
const OLD_DEBIAN_SECURITY: &[&str] = &["wheezy", "jessie", "stretch", "buster"];

/// One `deb URI SUITE COMPONENT…` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deb {} {}", self.uri, self.suite)?;
        for c in &self.components {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// Which distribution a bootstrap recipe builds: as the recipe says, else Ubuntu when
/// the mirror is an Ubuntu archive, else Debian.
pub fn distribution(b: &Bootstrap) -> Distribution {
    b.distribution.unwrap_or_else(|| match &b.mirror {
        Some(m) if m.contains("ubuntu") => Distribution::Ubuntu,
        _ => Distribution::Debian,
    })
}

/// The release's own mirror: the recipe's, else the distribution's.
pub fn mirror(b: &Bootstrap) -> &str {
    match (&b.mirror, distribution(b)) {
        (Some(m), _) => m,
        (None, Distribution::Debian) => DEBIAN_MIRROR,
        (None, Distribution::Ubuntu) => UBUNTU_MIRROR,
    }
}

/// The suite with the release's stable updates, if the suite has one.
pub fn updates_suite(dist: Distribution, suite: &str) -> Option<String> {
    if NO_POCKETS.contains(&(dist, suite)) {
        return None;
    }
    Some(format!("{suite}-updates"))
}

/// The suite with the release's security fixes, if the suite has one.
pub fn security_suite(dist: Distribution, suite: &str) -> Option<String> {
    if NO_POCKETS.contains(&(dist, suite)) {
        return None;
    }
    if dist == Distribution::Debian && OLD_DEBIAN_SECURITY.contains(&suite) {
        return Some(format!("{suite}/updates"));
    }
    Some(format!("{suite}-security"))
}

/// Where the security suite is published when the recipe does not say.
pub fn default_security_mirror(dist: Distribution, mirror: &str) -> String {
    match dist {
        Distribution::Debian => DEBIAN_SECURITY_MIRROR.into(),
        Distribution::Ubuntu => mirror.into(),
    }
}

/// The lines a bootstrap installs from and leaves in the tree: the suite, then
/// `-updates` and `-security` unless the recipe opts out or the suite has none.
pub fn bootstrap_lines(b: &Bootstrap) -> Vec<Line> {
    let dist = distribution(b);
    let mirror = mirror(b);
    let components: Vec<String> = if b.components.is_empty() {
        vec!["main".into()]
    } else {
        b.components.iter().map(|c| c.to_string()).collect()
    };
    let line = |uri: &str, suite: String| Line {
        uri: uri.to_string(),
        suite,
        components: components.clone(),
    };
    let mut out = vec![line(mirror, b.suite.to_string())];
    if b.updates {
        if let Some(s) = updates_suite(dist, &b.suite) {
            out.push(line(mirror, s));
        }
    }
    if b.security {
        if let Some(s) = security_suite(dist, &b.suite) {
            let uri = match &b.security_mirror {
                Some(m) => m.to_string(),
                None => default_security_mirror(dist, mirror),
            };
            out.push(line(&uri, s));
        }
    }
    out
}

/// A `sources.list` file holding `lines`, with a header saying who wrote it.
pub fn sources_list(lines: &[Line]) -> String {
    let mut s = String::from(
        "# written by build-distro: the release, its updates and its security fixes\n",
    );
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// Whether apt sources text (one-line `.list` or deb822 `.sources`) names a security
/// suite anywhere outside comments. A word test is enough for both formats: the suite
/// is a whitespace-separated word in a `deb` line and in a `Suites:` field alike.
pub fn names_security_suite(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .any(|w| w.ends_with("-security") || w.ends_with("/updates"))
}

/// The security line to add to a tree whose sources lack one, from its `os-release`:
/// `None` when the tree is not Debian or Ubuntu, names no codename, or its release has
/// no security suite (sid).
pub fn missing_security_line(os_release: &str) -> Option<Line> {
    let os = crate::os_release::parse(os_release);
    let dist = match os.id.as_str() {
        "debian" => Distribution::Debian,
        "ubuntu" => Distribution::Ubuntu,
        _ => return None,
    };
    let codename = os.version_codename.filter(|c| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
    })?;
    let suite = security_suite(dist, &codename)?;
    let mirror = match dist {
        Distribution::Debian => DEBIAN_MIRROR,
        Distribution::Ubuntu => UBUNTU_MIRROR,
    };
    Some(Line {
        uri: default_security_mirror(dist, mirror),
        suite,
        components: vec!["main".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse_str, SourceSpec};

    fn spec(extra: &str) -> Bootstrap {
        let r = parse_str(
            &format!("[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\n{extra}"),
            "t.toml",
        )
        .unwrap();
        match r.source.unwrap() {
            SourceSpec::Debootstrap(b) => b,
            _ => unreachable!(),
        }
    }

    fn lines(extra: &str) -> Vec<String> {
        bootstrap_lines(&spec(extra))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn debian_release_gets_updates_and_security() {
        assert_eq!(
            lines("suite = \"bookworm\"\n"),
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
    }

    #[test]
    fn components_and_mirrors_carry_to_every_line() {
        assert_eq!(
            lines(
                "suite = \"trixie\"\ncomponents = [\"main\", \"contrib\"]\nmirror = \"http://m.example/debian\"\nsecurity_mirror = \"http://s.example/debian-security\"\n"
            ),
            [
                "deb http://m.example/debian trixie main contrib",
                "deb http://m.example/debian trixie-updates main contrib",
                "deb http://s.example/debian-security trixie-security main contrib",
            ]
        );
    }

    #[test]
    fn opt_outs_drop_their_line() {
        assert_eq!(
            lines("suite = \"bookworm\"\nupdates = false\n"),
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
        assert_eq!(
            lines("suite = \"bookworm\"\nupdates = false\nsecurity = false\n"),
            ["deb http://deb.debian.org/debian bookworm main"]
        );
    }

    #[test]
    fn rolling_suites_have_no_pockets() {
        for s in ["sid", "unstable", "experimental"] {
            assert_eq!(
                lines(&format!("suite = \"{s}\"\n")),
                [format!("deb http://deb.debian.org/debian {s} main")]
            );
        }
        assert_eq!(
            lines("suite = \"devel\"\ndistribution = \"ubuntu\"\n"),
            ["deb http://archive.ubuntu.com/ubuntu devel main"]
        );
    }

    #[test]
    fn old_debian_security_layout() {
        assert_eq!(
            lines("suite = \"buster\"\nupdates = false\n"),
            [
                "deb http://deb.debian.org/debian buster main",
                "deb http://deb.debian.org/debian-security buster/updates main",
            ]
        );
    }

    #[test]
    fn ubuntu_uses_the_pockets_of_its_archive() {
        let want = [
            "deb http://archive.ubuntu.com/ubuntu noble main universe",
            "deb http://archive.ubuntu.com/ubuntu noble-updates main universe",
            "deb http://archive.ubuntu.com/ubuntu noble-security main universe",
        ];
        assert_eq!(
            lines("suite = \"noble\"\ndistribution = \"ubuntu\"\ncomponents = [\"main\", \"universe\"]\n"),
            want
        );
        // Detected from the mirror when the recipe does not say.
        assert_eq!(
            lines("suite = \"noble\"\nmirror = \"http://archive.ubuntu.com/ubuntu\"\ncomponents = [\"main\", \"universe\"]\n"),
            want
        );
    }

    #[test]
    fn bad_values_are_recipe_errors_with_position() {
        for (extra, want) in [
            (
                "security = \"yes\"\n",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "updates = 1\n",
                "invalid type: integer `1`, expected a boolean",
            ),
            (
                "distribution = \"fedora\"\n",
                "unknown variant `fedora`, expected `debian` or `ubuntu`",
            ),
            (
                "security_mirror = \"ftp://x/y\"\n",
                "mirror \"ftp://x/y\" must be an http://, https:// or file:// URL",
            ),
        ] {
            let e = parse_str(
                &format!("[distro]\nname = \"x\"\n[source]\ntype = \"debootstrap\"\nsuite = \"bookworm\"\n{extra}"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            // The `[source]` table is where serde reports its keys' errors.
            assert_eq!(
                e.lines().next().unwrap(),
                format!("t.toml:3:1: {want}"),
                "{extra}"
            );
        }
    }

    #[test]
    fn security_suite_detection_in_both_formats() {
        assert!(names_security_suite(
            "deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian-security bookworm-security main\n"
        ));
        assert!(names_security_suite(
            "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
        ));
        assert!(!names_security_suite(
            "deb http://deb.debian.org/debian bookworm main\n# deb http://deb.debian.org/debian-security bookworm-security main\n"
        ));
        assert!(!names_security_suite(
            "Types: deb\nSuites: bookworm bookworm-updates\n"
        ));
    }

    #[test]
    fn missing_security_line_from_os_release() {
        let deb = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(
            missing_security_line(deb).unwrap().to_string(),
            "deb http://deb.debian.org/debian-security bookworm-security main"
        );
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";
        assert_eq!(
            missing_security_line(ubuntu).unwrap().to_string(),
            "deb http://archive.ubuntu.com/ubuntu noble-security main"
        );
        assert_eq!(
            missing_security_line("ID=debian\nVERSION_CODENAME=sid\n"),
            None
        );
        assert_eq!(missing_security_line("ID=debian\n"), None);
        assert_eq!(
            missing_security_line("ID=alpine\nVERSION_ID=3.20.3\n"),
            None
        );
        assert_eq!(
            missing_security_line("ID=debian\nVERSION_CODENAME=\"a b\"\n"),
            None
        );
    }
}
