//! Reader of os-release (`/etc/os-release`, `/usr/lib/os-release`): `KEY=value` lines,
//! values optionally quoted with shell rules. Unknown keys and lines that are not
//! assignments are ignored, as the freedesktop specification asks of readers. A leaf:
//! the inventory, the SBOMs and apt sources (the security line a tree lacks) all read
//! os-release through it.

use serde::Serialize;

/// The fields of `/etc/os-release` (or `/usr/lib/os-release`) that identify the distro.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `debian`, `ubuntu`, `alpine`.
    pub id: String,
    /// `12`, `24.04`, `3.20.3`; absent on testing/unstable.
    pub version_id: Option<String>,
    /// `bookworm`, `noble`.
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
    pub id_like: Vec<String>,
}

/// The identifying fields of an os-release file.
pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw);
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = Some(value),
            "VERSION_CODENAME" => os.version_codename = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    os
}

/// A value with its shell quoting and escapes undone; a value the shell would reject
/// (an unbalanced quote) is taken as written.
fn unquote(raw: &str) -> String {
    match shlex::split(raw) {
        Some(words) if !words.is_empty() => words.join(" "),
        Some(_) => String::new(),
        None => raw.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_ubuntu_alpine() {
        let debian = parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n",
        );
        assert_eq!(
            debian,
            OsRelease {
                id: "debian".into(),
                version_id: Some("12".into()),
                version_codename: Some("bookworm".into()),
                pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
                id_like: vec![],
            }
        );
        let ubuntu = parse("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\n# a comment\n\nnot an assignment\n");
        assert_eq!(ubuntu.id, "ubuntu");
        assert_eq!(ubuntu.id_like, ["debian"]);
        assert_eq!(ubuntu.version_id.as_deref(), Some("24.04"));
        let alpine = parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME='Alpine Linux v3.20'\n");
        assert_eq!(alpine.id, "alpine");
        assert_eq!(alpine.version_id.as_deref(), Some("3.20.3"));
        assert_eq!(alpine.pretty_name.as_deref(), Some("Alpine Linux v3.20"));
    }

    #[test]
    fn escapes_and_broken_quotes() {
        let os = parse("PRETTY_NAME=\"My \\\"quoted\\\" \\$distro\"\nID=\"unbalanced\n");
        assert_eq!(os.pretty_name.as_deref(), Some("My \"quoted\" $distro"));
        assert_eq!(os.id, "\"unbalanced");
        assert_eq!(parse("\0\x01garbage"), OsRelease::default());
    }
}
