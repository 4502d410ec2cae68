//! Reader of apk's installed database (`/lib/apk/db/installed`): one block of `K:value`
//! lines per installed package, blocks separated by a blank line. Of its keys we keep
//! `P` (name), `V` (version), `A` (architecture), `o` (origin: the source package) and
//! `L` (license). Plain data from bytes; the caller finds the file.

use super::{Package, ParseError};

/// The packages of an apk installed database, in file order.
pub fn parse_installed(text: &str) -> Result<Vec<Package>, ParseError> {
    // apk ends every line with a newline: a file that stops mid-line was cut short.
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ParseError(
            "ends in the middle of a line: the file is truncated".into(),
        ));
    }
    let mut out = Vec::new();
    let mut block: Vec<(char, &str)> = Vec::new();
    let mut first_line = 1;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            if !block.is_empty() {
                out.push(package(&block, first_line)?);
                block.clear();
            }
            first_line = i + 2;
            continue;
        }
        let mut chars = line.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some(':')) if k.is_ascii_alphanumeric() => block.push((k, &line[2..])),
            _ => {
                return Err(ParseError(format!(
                    "line {} is not a `K:value` line: not an apk installed database",
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

fn package(block: &[(char, &str)], line: usize) -> Result<Package, ParseError> {
    let get = |k: char| {
        block
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let need = |k: char, what: &str| {
        get(k).ok_or_else(|| {
            let who = match get('P') {
                Some(p) => format!("package {p}"),
                None => format!("the entry at line {line}"),
            };
            ParseError(format!(
                "{who} has no {k}: ({what}) line: the file is truncated or not an apk installed database"
            ))
        })
    };
    let name = need('P', "name")?;
    let version = need('V', "version")?;
    let arch = need('A', "architecture")?;
    Ok(Package {
        name: name.to_string(),
        version: version.to_string(),
        arch: arch.to_string(),
        source: get('o').filter(|o| *o != name).map(str::to_string),
        source_version: None,
        license: get('L').map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTALLED: &str = "\
C:Q1abcdefghijklmnopqrstuvwxyz012345=
P:musl
V:1.2.5-r0
A:x86_64
S:411323
I:637952
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1711467426
c:3be4fb5d1a2ebd2f3b2b3e8bdb2d0ea2bb3f6a5a
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Mxhd1+mf3zmZqR3Gw2Ek+Zy5X4c=

C:Q1zzzz=
P:libcrypto3
V:3.3.2-r0
A:x86_64
L:Apache-2.0
o:openssl
F:usr/lib
R:libcrypto.so.3

P:alpine-baselayout-data
V:3.6.5-r0
A:x86_64
L:GPL-2.0-only
o:alpine-baselayout

";

    #[test]
    fn packages_with_origin_and_license() {
        let got = parse_installed(INSTALLED).unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {:?} {:?}",
                    p.name, p.version, p.arch, p.source, p.license
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "musl 1.2.5-r0 x86_64 None Some(\"MIT\")",
                "libcrypto3 3.3.2-r0 x86_64 Some(\"openssl\") Some(\"Apache-2.0\")",
                "alpine-baselayout-data 3.6.5-r0 x86_64 Some(\"alpine-baselayout\") Some(\"GPL-2.0-only\")",
            ]
        );
    }

    #[test]
    fn truncated_database_is_refused() {
        let cut = &INSTALLED[..INSTALLED.find("V:3.3.2").unwrap() + 4];
        assert!(parse_installed(cut).unwrap_err().0.contains("truncated"));
        let cut = &INSTALLED[..INSTALLED.find("A:x86_64\nL:Apache").unwrap()];
        assert_eq!(
            parse_installed(cut).unwrap_err().0,
            "package libcrypto3 has no A: (architecture) line: the file is truncated or not an apk installed database"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let e = parse_installed("Package: musl\nVersion: 1\n").unwrap_err();
        assert_eq!(
            e.0,
            "line 1 is not a `K:value` line: not an apk installed database"
        );
        assert_eq!(parse_installed("").unwrap(), vec![]);
    }
}
