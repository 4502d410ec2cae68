//! Reader of distro-info-data's release tables (`/usr/share/distro-info/debian.csv`,
//! `ubuntu.csv`): one row a release with its dates. Bytes in, rows out; no I/O. The
//! columns are found by the header's names, since Debian's and Ubuntu's tables differ
//! after `eol` and the package has added columns before (`eol-elts`, `eol-legacy`).

use super::{Error, FIX_DISTRO_INFO};

/// One release of a distribution's table. Dates are `YYYY-MM-DD`, checked when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// `12`, `24.04 LTS`; empty for sid and experimental.
    pub version: String,
    /// `Bookworm`, `Noble Numbat`.
    pub codename: String,
    /// `bookworm`, `noble`: what os-release calls `VERSION_CODENAME`.
    pub series: String,
    pub release: Option<String>,
    /// End of the regular security support (Debian) or of standard support (Ubuntu).
    pub eol: Option<String>,
    /// Debian: the end of LTS, which the Debian LTS team runs on the regular archive.
    pub eol_lts: Option<String>,
    /// Debian: the end of ELTS, a commercial offer outside Debian's archive.
    pub eol_elts: Option<String>,
    /// Ubuntu: the end of support for the server flavour of an LTS release.
    pub eol_server: Option<String>,
    /// Ubuntu: the end of ESM (Ubuntu Pro, outside the public archive).
    pub eol_esm: Option<String>,
}

/// Every row of a table. `file` names the table in errors.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Release>, Error> {
    let bad = |line: u64, msg: String| Error::Malformed {
        file: file.to_string(),
        line,
        msg,
        fix: FIX_DISTRO_INFO,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let required = ["version", "codename", "series", "created", "release", "eol"];
    if let Some(missing) = required.iter().find(|c| column(c).is_none()) {
        return Err(bad(
            1,
            format!(
                "no {missing:?} column in the header (want {})",
                required.join(",")
            ),
        ));
    }
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| bad(line, e.to_string()))?;
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let text = |name: &str| {
            column(name)
                .and_then(|i| rec.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let date = |name: &str| match text(name) {
            Some(d) if !is_date(&d) => Err(bad(line, format!("{name} {d:?} is not YYYY-MM-DD"))),
            d => Ok(d),
        };
        let series = text("series").ok_or_else(|| bad(line, "empty series".into()))?;
        date("created")?;
        rows.push(Release {
            version: text("version").unwrap_or_default(),
            codename: text("codename").unwrap_or_default(),
            series,
            release: date("release")?,
            eol: date("eol")?,
            eol_lts: date("eol-lts")?,
            eol_elts: date("eol-elts")?,
            eol_server: date("eol-server")?,
            eol_esm: date("eol-esm")?,
        });
    }
    if rows.is_empty() {
        return Err(bad(1, "no release rows".into()));
    }
    Ok(rows)
}

/// `YYYY-MM-DD` with a month and day in range (what the tables and our clock both use,
/// so dates compare as strings).
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
        10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30\n\
        12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n\
        14,Forky,forky,2025-08-09\n\
        ,Sid,sid,1993-08-16\n";

    #[test]
    fn reads_rows_by_header_names_and_short_rows() {
        let rows = parse("debian.csv", DEBIAN.as_bytes()).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1].series, "bookworm");
        assert_eq!(rows[1].eol.as_deref(), Some("2026-07-11"));
        assert_eq!(rows[1].eol_lts.as_deref(), Some("2028-06-30"));
        assert_eq!(rows[1].eol_elts.as_deref(), Some("2033-06-30"));
        assert_eq!(rows[2].release, None);
        assert_eq!(rows[3].version, "");
    }

    #[test]
    fn ubuntu_columns() {
        let t = "version,codename,series,created,release,eol,eol-server,eol-esm,eol-legacy\n\
                 24.04 LTS,Noble Numbat,noble,2023-10-26,2024-04-25,2029-05-31,2029-05-31,2034-04-25,2036-04-25\n";
        let rows = parse("ubuntu.csv", t.as_bytes()).unwrap();
        assert_eq!(rows[0].eol_server.as_deref(), Some("2029-05-31"));
        assert_eq!(rows[0].eol_esm.as_deref(), Some("2034-04-25"));
        assert_eq!(rows[0].eol_lts, None);
    }

    #[test]
    fn the_shipped_copies_parse() {
        for (name, text) in [
            ("debian.csv", super::super::SHIPPED_DEBIAN),
            ("ubuntu.csv", super::super::SHIPPED_UBUNTU),
        ] {
            let rows = parse(name, text.as_bytes()).unwrap();
            assert!(rows
                .iter()
                .any(|r| r.series == "trixie" || r.series == "noble"));
        }
    }

    #[test]
    fn malformed_tables_name_file_and_line() {
        let e = parse("d.csv", b"version,codename\n12,Bookworm\n").unwrap_err();
        assert!(
            e.to_string().starts_with("d.csv:1: no \"series\" column"),
            "{e}"
        );
        let t = "version,codename,series,created,release,eol\n12,Bookworm,bookworm,2021-08-14,2023-06-10,next year\n";
        let e = parse("d.csv", t.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv:2: eol \"next year\" is not YYYY-MM-DD; reinstall distro-info-data (apt-get install --reinstall distro-info-data) or name a good file"
        );
        let e = parse("d.csv", b"version,codename,series,created,release,eol\n").unwrap_err();
        assert!(e.to_string().contains("no release rows"), "{e}");
        assert!(parse("d.csv", b"\x00\xff garbage").is_err());
    }

    #[test]
    fn dates() {
        assert!(is_date("2026-07-11"));
        for d in [
            "2026-7-11",
            "2026-13-01",
            "2026-00-10",
            "2026-01-32",
            "20260711xx",
            "",
        ] {
            assert!(!is_date(d), "{d}");
        }
    }
}
