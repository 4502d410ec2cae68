//! `/etc/nsswitch.conf` edited as text: `unbit` added to passwd, group, shadow and hosts
//! at the one place that cannot be hidden by an action item, every other byte kept.
//! No I/O: text in, text out.

pub const NSSWITCH: &str = "/etc/nsswitch.conf";

/// The databases the module answers, in the order a missing line is added.
pub const DATABASES: &[&str] = &["passwd", "group", "shadow", "hosts"];

/// The nsswitch.conf written when a tree has none; [`edit_nsswitch`] adds `unbit`.
const DEFAULT_NSSWITCH: &str = "\
# /etc/nsswitch.conf, written by build-distro because the tree had none.
# Container uids (uwsgi.it) are answered by the unbit module.

passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      files
services:       files
ethers:         files
rpc:            files
";

/// One item of a database line: a service name or a `[STATUS=action]` item, with its
/// byte range in the line.
#[derive(Debug)]
struct Item<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

impl Item<'_> {
    fn is_action(&self) -> bool {
        self.text.starts_with('[')
    }
}

fn items(sources: &str, offset: usize) -> Vec<Item<'_>> {
    let b = sources.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i] == b'[' {
            // Action items may hold spaces: `[ NOTFOUND = return ]`.
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'[' {
                i += 1;
            }
        }
        out.push(Item {
            text: &sources[start..i],
            start: offset + start,
            end: offset + i,
        });
    }
    out
}

/// A database line split into its name and items; `None` for comments, blank lines and
/// other text. A `#` starts a comment anywhere on a line.
fn parse_line(line: &str) -> Option<(&str, Vec<Item<'_>>)> {
    let body = &line[..line.find('#').unwrap_or(line.len())];
    let colon = body.find(':')?;
    let db = body[..colon].trim();
    if db.is_empty() || db.contains(char::is_whitespace) {
        return None;
    }
    Some((db, items(&body[colon + 1..], colon + 1)))
}

/// Where `unbit` goes in a line's items (a byte offset and whether a space goes before or
/// after it), so that only that word is added and everything else stays as it was.
///
/// passwd/group/shadow: right after `files` or `compat` (and the action items bound to
/// it), as the platform's own `compat unbit`; `passwd: files systemd` becomes
/// `passwd: files unbit systemd`. hosts: right after `files` or right before `dns`,
/// whichever comes first, so a `[NOTFOUND=return]` after mdns4_minimal (Ubuntu, Fedora)
/// cannot hide `<N>.local`. Without an anchor it goes first: a later position might sit
/// behind a `return` action.
fn insertion(db: &str, items: &[Item]) -> (usize, bool) {
    let services = |names: &[&str]| {
        items
            .iter()
            .position(|i| !i.is_action() && names.contains(&i.text))
    };
    let after = |idx: usize| {
        let mut last = idx;
        while items.get(last + 1).is_some_and(Item::is_action) {
            last += 1;
        }
        (items[last].end, true)
    };
    let anchor = if db == "hosts" {
        services(&["files"])
    } else {
        services(&["files", "compat"])
    };
    let before_dns = (db == "hosts")
        .then(|| services(&["dns"]))
        .flatten()
        .map(|i| (items[i].start, false));
    match (anchor.map(after), before_dns) {
        (Some(a), Some(d)) => {
            if a.0 <= d.0 {
                a
            } else {
                d
            }
        }
        (Some(a), None) => a,
        (None, Some(d)) => d,
        (None, None) => (items[0].start, false),
    }
}

/// The sources a database gets when its line is missing or empty.
fn default_sources(db: &str) -> &'static str {
    if db == "hosts" {
        "files unbit dns"
    } else {
        "files unbit"
    }
}

/// nsswitch.conf with `unbit` added to passwd, group, shadow and hosts (see `insertion`
/// for where), every other line, comment and order kept; `None` (no file) gives a sane
/// default. Idempotent: a line that already lists `unbit` is left alone.
pub fn edit_nsswitch(text: Option<&str>) -> String {
    let text = text.unwrap_or(DEFAULT_NSSWITCH);
    let mut seen = [false; 4];
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (content, eol) = match line.strip_suffix('\n') {
            Some(c) => (c, "\n"),
            None => (line, ""),
        };
        let Some((db, items)) = parse_line(content) else {
            out.push_str(line);
            continue;
        };
        let Some(k) = DATABASES.iter().position(|d| *d == db) else {
            out.push_str(line);
            continue;
        };
        seen[k] = true;
        if items.iter().any(|i| i.text == "unbit") {
            out.push_str(line);
        } else if items.is_empty() {
            let colon = content.find(':').unwrap();
            out.push_str(&content[..=colon]);
            out.push(' ');
            out.push_str(default_sources(db));
            out.push_str(&content[colon + 1..]);
            out.push_str(eol);
        } else {
            let (at, space_before) = insertion(db, &items);
            out.push_str(&content[..at]);
            out.push_str(if space_before { " unbit" } else { "unbit " });
            out.push_str(&content[at..]);
            out.push_str(eol);
        }
    }
    for (k, db) in DATABASES.iter().enumerate() {
        if !seen[k] {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            let key = format!("{db}:");
            out.push_str(&format!("{key:<16}{}\n", default_sources(db)));
        }
    }
    out
}

/// The databases among passwd, group, shadow and hosts whose line does not list `unbit`
/// (a missing line counts as not listing it).
pub fn nsswitch_missing_unbit(text: &str) -> Vec<&'static str> {
    DATABASES
        .iter()
        .copied()
        .filter(|db| {
            !text.lines().any(|l| {
                parse_line(l)
                    .is_some_and(|(d, items)| d == *db && items.iter().any(|i| i.text == "unbit"))
            })
        })
        .collect()
}

/// Whether any database line lists `unbit` (glibc then tries to load the module, so any
/// mention needs it installed).
pub fn nsswitch_mentions_unbit(text: &str) -> bool {
    text.lines()
        .filter_map(parse_line)
        .any(|(_, items)| items.iter().any(|i| i.text == "unbit"))
}

/// Whether passwd, group, shadow and hosts all list `unbit`.
pub fn nsswitch_lists_unbit(text: &str) -> bool {
    nsswitch_missing_unbit(text).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "\
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.
# If you have the `glibc-doc-reference' and `info' packages installed, try:
# `info libc \"Name Service Switch\"' for information about this file.

passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
";

    const UBUNTU: &str = "\
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.

passwd:         files systemd
group:          files systemd
shadow:         files
gshadow:        files

hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
";

    const FEDORA: &str = "\
# Generated by authselect
# Do not modify this file manually, use authselect instead.

# In order of likelihood of use to accelerate lookup.
passwd:     files sss systemd
shadow:     files
group:      files sss systemd
hosts:      files myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns
services:   files sss
netgroup:   files sss
automount:  files sss

aliases:    files
ethers:     files
gshadow:    files
networks:   files dns
protocols:  files
publickey:  files
rpc:        files
";

    /// Edit twice: the second run must change nothing.
    fn twice(text: Option<&str>) -> String {
        let once = edit_nsswitch(text);
        assert_eq!(edit_nsswitch(Some(&once)), once, "not idempotent");
        assert!(nsswitch_lists_unbit(&once), "{once}");
        once
    }

    /// The lines that differ, as (before, after).
    fn changed(before: &str, after: &str) -> Vec<(String, String)> {
        assert_eq!(before.lines().count(), after.lines().count());
        before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn debian_stock_nsswitch() {
        let out = twice(Some(DEBIAN));
        assert_eq!(
            changed(DEBIAN, &out),
            pairs(&[
                ("passwd:         files", "passwd:         files unbit"),
                ("group:          files", "group:          files unbit"),
                ("shadow:         files", "shadow:         files unbit"),
                (
                    "hosts:          files dns",
                    "hosts:          files unbit dns"
                ),
            ])
        );
    }

    #[test]
    fn ubuntu_stock_nsswitch() {
        let out = twice(Some(UBUNTU));
        assert_eq!(
            changed(UBUNTU, &out),
            pairs(&[
                (
                    "passwd:         files systemd",
                    "passwd:         files unbit systemd"
                ),
                (
                    "group:          files systemd",
                    "group:          files unbit systemd"
                ),
                ("shadow:         files", "shadow:         files unbit"),
                (
                    "hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname",
                    "hosts:          files unbit mdns4_minimal [NOTFOUND=return] dns myhostname"
                ),
            ])
        );
    }

    #[test]
    fn fedora_stock_nsswitch() {
        let out = twice(Some(FEDORA));
        assert_eq!(
            changed(FEDORA, &out),
            pairs(&[
                ("passwd:     files sss systemd", "passwd:     files unbit sss systemd"),
                ("shadow:     files", "shadow:     files unbit"),
                ("group:      files sss systemd", "group:      files unbit sss systemd"),
                (
                    "hosts:      files myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns",
                    "hosts:      files unbit myhostname mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns"
                ),
            ])
        );
        // `networks: files dns` is not a database the module answers.
        assert!(out.contains("\nnetworks:   files dns\n"));
    }

    #[test]
    fn files_systemd_gets_unbit_after_files() {
        let out = twice(Some("passwd: files systemd\n"));
        assert_eq!(
            out,
            "passwd: files unbit systemd\n\
             group:          files unbit\n\
             shadow:         files unbit\n\
             hosts:          files unbit dns\n"
        );
    }

    #[test]
    fn missing_file_gets_a_sane_default() {
        let out = twice(None);
        assert!(out.starts_with("# /etc/nsswitch.conf, written by build-distro"));
        for line in [
            "passwd:         files unbit\n",
            "group:          files unbit\n",
            "shadow:         files unbit\n",
            "gshadow:        files\n",
            "hosts:          files unbit dns\n",
        ] {
            assert!(out.contains(line), "{line:?} missing in:\n{out}");
        }
    }

    #[test]
    fn anchors_actions_comments_and_odd_lines() {
        let text = "\
passwd: compat [NOTFOUND=return] files # local users first
group:sss
shadow:
hosts: dns files
#passwd: files
";
        let out = twice(Some(text));
        assert_eq!(
            out,
            "\
passwd: compat [NOTFOUND=return] unbit files # local users first
group:unbit sss
shadow: files unbit
hosts: unbit dns files
#passwd: files
"
        );
        assert_eq!(
            nsswitch_missing_unbit("passwd: files unbit\n# group: unbit\nhosts: unbitx\n"),
            vec!["group", "shadow", "hosts"]
        );
    }
}
