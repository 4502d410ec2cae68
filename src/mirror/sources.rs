//! Reader of apt's source lists as a tree holds them: one-line `sources.list` /
//! `sources.list.d/*.list` and deb822 `sources.list.d/*.sources`. Only binary (`deb`)
//! entries that are enabled count. Plain data from the text given.

use super::Error;

/// Where a source's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    /// A keyring file in the tree.
    Path(String),
    /// An armored key block written into the `.sources` file itself.
    Inline(String),
}

/// One `deb` entry (a deb822 stanza may name several URIs and suites).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Vec<SignedBy>,
}

fn bad(file: &str, msg: String) -> Error {
    Error::Parse {
        what: file.to_string(),
        msg,
    }
}

fn signed_by(value: &str) -> Vec<SignedBy> {
    let v = value.trim();
    if v.contains("BEGIN PGP PUBLIC KEY BLOCK") {
        // deb822 continuation lines carry a lone "." for empty lines.
        let text: Vec<&str> = v
            .lines()
            .map(|l| if l.trim() == "." { "" } else { l.trim() })
            .collect();
        return vec![SignedBy::Inline(text.join("\n"))];
    }
    v.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| s.starts_with('/'))
        .map(|s| SignedBy::Path(s.to_string()))
        .collect()
}

/// A one-line list (`sources.list`, `*.list`); `file` names it in errors.
pub fn parse_list(file: &str, text: &str) -> Result<Vec<Source>, Error> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match kind {
            "deb" => {}
            "deb-src" => continue,
            _ => return Err(bad(file, format!("line {raw:?}: expected deb or deb-src"))),
        }
        let mut rest = rest.trim_start();
        let mut src = Source::default();
        if let Some(r) = rest.strip_prefix('[') {
            let (opts, after) = r
                .split_once(']')
                .ok_or_else(|| bad(file, format!("line {raw:?}: unclosed [options]")))?;
            for o in opts.split_whitespace() {
                if let Some(v) = o.strip_prefix("signed-by=") {
                    src.signed_by.extend(signed_by(v));
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(bad(file, format!("line {raw:?}: expected URI and SUITE")));
        };
        src.uris.push(uri.trim_end_matches('/').to_string());
        src.suites.push(suite.to_string());
        src.components = words.map(str::to_string).collect();
        out.push(src);
    }
    Ok(out)
}

/// A deb822 list (`*.sources`); `file` names it in errors.
pub fn parse_deb822(file: &str, text: &str) -> Result<Vec<Source>, Error> {
    let doc: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e| bad(file, format!("not a deb822 file: {e}")))?;
    let mut out = Vec::new();
    for p in doc.iter() {
        let words = |k: &str| -> Vec<String> {
            p.get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let src = Source {
            uris: words("URIs")
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            suites: words("Suites"),
            components: words("Components"),
            signed_by: p.get("Signed-By").map(signed_by).unwrap_or_default(),
        };
        if src.uris.is_empty() || src.suites.is_empty() {
            return Err(bad(file, "a stanza has no URIs or no Suites".into()));
        }
        out.push(src);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_lists() {
        let text = "# comment\n\
            deb http://deb.debian.org/debian bookworm main contrib # trailing\n\
            deb-src http://deb.debian.org/debian bookworm main\n\
            deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://deb.debian.org/debian-security/ bookworm-security main\n";
        let got = parse_list("sources.list", text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].uris, ["http://deb.debian.org/debian"]);
        assert_eq!(got[0].suites, ["bookworm"]);
        assert_eq!(got[0].components, ["main", "contrib"]);
        assert_eq!(got[1].uris, ["http://deb.debian.org/debian-security"]);
        assert_eq!(
            got[1].signed_by,
            [SignedBy::Path("/usr/share/keyrings/x.gpg".into())]
        );
        assert!(parse_list("l", "deb http://x\n").is_err());
        assert!(parse_list("l", "rpm http://x a b\n").is_err());
        assert!(parse_list("l", "deb [arch=amd64 http://x a b\n").is_err());
    }

    #[test]
    fn deb822_lists() {
        let text = "Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Enabled: no

Types: deb
URIs: http://example.org/repo
Suites: stable
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGR
 -----END PGP PUBLIC KEY BLOCK-----
";
        let got = parse_deb822("debian.sources", text).unwrap();
        assert_eq!(got.len(), 2, "deb-src and disabled stanzas are skipped");
        assert_eq!(got[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            got[0].signed_by,
            [SignedBy::Path(
                "/usr/share/keyrings/debian-archive-keyring.gpg".into()
            )]
        );
        match &got[1].signed_by[..] {
            [SignedBy::Inline(k)] => {
                assert!(k.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGR\n"))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_deb822("x.sources", "Types: deb\nSuites: a\n").is_err());
    }
}
