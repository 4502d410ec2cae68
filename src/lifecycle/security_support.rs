//! Reader of Debian's `debian-security-support` lists: the source packages whose security
//! support is limited, or ends before their release's does. Bytes in, entries out; no I/O.
//!
//! Two layouts exist. The package up to Debian 12 ships `security-support-ended.debN`
//! (`source  last-version  date  details`) and one `security-support-limited`
//! (`source  details`); from Debian 13 on it ships one `security-support.debN` per release
//! (`source  limited|non-supported|supported  [last-version  date]  details`). A source
//! name is a regular expression matched against the whole name (`golang.*`), as
//! `check-support-status` matches it.

use super::{Error, FIX_SECURITY_SUPPORT};

/// What a list says of a source package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Outside the regular security support (only for trusted input, build-only, …).
    Limited,
    /// Support ends (or ended) on `date`, at `last_version`.
    NonSupported,
    /// Named only to say it is fully supported (a pattern's exception).
    Supported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub pattern: String,
    pub kind: Kind,
    pub last_version: Option<String>,
    pub date: Option<String>,
    pub details: String,
}

/// A `security-support.debN` file (Debian 13's package on).
pub fn parse_combined(file: &str, text: &str) -> Result<Vec<Entry>, Error> {
    rows(file, text, |line, cols| {
        let (pattern, kind) = (cols[0], cols.get(1).copied().unwrap_or(""));
        match kind {
            "limited" | "supported" => Ok(Entry {
                pattern: pattern.into(),
                kind: if kind == "limited" {
                    Kind::Limited
                } else {
                    Kind::Supported
                },
                last_version: None,
                date: None,
                details: rest(&cols[2..]),
            }),
            "non-supported" => ended(file, line, pattern, &cols[2..]),
            other => Err(malformed(
                file,
                line,
                format!("{pattern}: {other:?} is not limited, non-supported or supported"),
            )),
        }
    })
}

/// A `security-support-ended.debN` file (the package up to Debian 12).
pub fn parse_ended(file: &str, text: &str) -> Result<Vec<Entry>, Error> {
    rows(file, text, |line, cols| {
        ended(file, line, cols[0], &cols[1..])
    })
}

/// `security-support-limited` (the package up to Debian 12).
pub fn parse_limited(file: &str, text: &str) -> Result<Vec<Entry>, Error> {
    rows(file, text, |_, cols| {
        Ok(Entry {
            pattern: cols[0].into(),
            kind: Kind::Limited,
            last_version: None,
            date: None,
            details: rest(&cols[1..]),
        })
    })
}

/// `last-version date details…` of a package whose support ends.
fn ended(file: &str, line: usize, pattern: &str, cols: &[&str]) -> Result<Entry, Error> {
    let (Some(version), Some(date)) = (cols.first(), cols.get(1)) else {
        return Err(malformed(
            file,
            line,
            format!("{pattern}: want the last supported version and the end date"),
        ));
    };
    if !super::distro_info::is_date(date) {
        return Err(malformed(
            file,
            line,
            format!("{pattern}: end date {date:?} is not YYYY-MM-DD"),
        ));
    }
    Ok(Entry {
        pattern: pattern.into(),
        kind: Kind::NonSupported,
        last_version: Some(version.to_string()),
        date: Some(date.to_string()),
        details: rest(&cols[2..]),
    })
}

/// Each line that is not blank or a comment, split on white space, through `entry`; every
/// pattern must compile.
fn rows(
    file: &str,
    text: &str,
    entry: impl Fn(usize, &[&str]) -> Result<Entry, Error>,
) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = t.split_whitespace().collect();
        let e = entry(line_no, &cols)?;
        if let Err(err) = matcher(&e.pattern) {
            return Err(malformed(file, line_no, format!("{}: {err}", e.pattern)));
        }
        out.push(e);
    }
    Ok(out)
}

/// The whole-name matcher for a list's source pattern.
pub fn matcher(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

fn rest(cols: &[&str]) -> String {
    cols.join(" ")
}

fn malformed(file: &str, line: usize, msg: String) -> Error {
    Error::Malformed {
        file: file.to_string(),
        line: line as u64,
        msg,
        fix: FIX_SECURITY_SUPPORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_layout() {
        let t = "# comment\n\n\
                 binutils      limited  Only suitable for trusted content\n\
                 consul        non-supported   1.10.12+dfsg1-1  2023-09-20  https://bugs.debian.org/1052289\n\
                 rust.*        limited  See the release notes\n\
                 rust-sequoia-sqv  supported  fully supported\n";
        let e = parse_combined("security-support.deb13", t).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].kind, Kind::Limited);
        assert_eq!(e[0].details, "Only suitable for trusted content");
        assert_eq!(e[1].kind, Kind::NonSupported);
        assert_eq!(e[1].last_version.as_deref(), Some("1.10.12+dfsg1-1"));
        assert_eq!(e[1].date.as_deref(), Some("2023-09-20"));
        assert_eq!(e[3].kind, Kind::Supported);
        assert!(matcher(&e[2].pattern).unwrap().is_match("rust-foo"));
        assert!(!matcher("rust.*").unwrap().is_match("trust"));
    }

    #[test]
    fn old_layout() {
        let e = parse_ended(
            "security-support-ended.deb12",
            "wpewebkit\t2.38.6-1\t\t2023-05-09\thttps://bugs.debian.org/1035794\nphp-horde.*\t0\t\t2025-03-22\n",
        )
        .unwrap();
        assert_eq!(e[0].date.as_deref(), Some("2023-05-09"));
        assert_eq!(e[1].details, "");
        let l = parse_limited("security-support-limited", "hdf5  limited  Not covered\n").unwrap();
        assert_eq!(l[0].kind, Kind::Limited);
        assert_eq!(l[0].details, "limited Not covered");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = parse_combined("s.deb13", "foo  maybe  x\n").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "s.deb13:1: foo: \"maybe\" is not limited, non-supported or supported"
            ),
            "{e}"
        );
        let e = parse_combined("s.deb13", "\nfoo non-supported 1.0\n").unwrap_err();
        assert!(
            e.to_string().starts_with("s.deb13:2: foo: want the last"),
            "{e}"
        );
        let e = parse_ended("e.deb12", "foo 1.0 soon\n").unwrap_err();
        assert!(e.to_string().contains("\"soon\" is not YYYY-MM-DD"), "{e}");
        let e = parse_limited("l", "foo(  bar\n").unwrap_err();
        assert!(e.to_string().starts_with("l:1: foo(: "), "{e}");
    }
}
