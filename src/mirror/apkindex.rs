//! Reader of Alpine's repository index: `APKINDEX.tar.gz` (a signature segment, then a tar
//! with `DESCRIPTION` and `APKINDEX`) and the `APKINDEX` text inside it, one block of
//! `K:value` lines per package; and the split of the archive into its signature and the
//! bytes it signs. Plain data from the bytes given; fetching and verifying are the client's.

use std::io::Read;

use super::Error;

/// One package of the index, the fields `outdated` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `P:`
    pub name: String,
    /// `V:`
    pub version: String,
    /// `A:`
    pub arch: String,
    /// `o:`, the origin (source) package, when it differs from the name.
    pub origin: Option<String>,
}

fn bad(msg: String) -> Error {
    Error::Parse {
        what: "APKINDEX".into(),
        msg,
    }
}

/// Parse the `APKINDEX` text. Blocks without `P:` or `V:` are an error: the index is
/// truncated or not an index.
pub fn parse(text: &str) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
        let mut any = false;
        for line in block.lines().filter(|l| !l.is_empty()) {
            any = true;
            let Some((k, v)) = line.split_once(':') else {
                return Err(bad(format!("line {line:?} is not KEY:VALUE")));
            };
            match k {
                "P" => name = Some(v),
                "V" => version = Some(v),
                "A" => arch = Some(v),
                "o" => origin = Some(v),
                _ => {}
            }
        }
        if !any {
            continue;
        }
        let name = name.ok_or_else(|| bad("a block has no P: (name)".into()))?;
        let version = version.ok_or_else(|| bad(format!("package {name} has no V: (version)")))?;
        out.push(Entry {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.unwrap_or("noarch").to_string(),
            origin: origin.filter(|o| *o != name).map(str::to_string),
        });
    }
    Ok(out)
}

/// The digest an index signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// `.SIGN.RSA.KEY`
    Sha1,
    /// `.SIGN.RSA256.KEY`
    Sha256,
}

/// The signature segment of an `APKINDEX.tar.gz` and what it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    pub digest: Digest,
    /// The signing key's file name, as `/etc/apk/keys` holds it (`alpine-devel@…rsa.pub`).
    pub key: String,
    /// RSA PKCS#1 v1.5 signature bytes.
    pub signature: Vec<u8>,
    /// The rest of the file after the signature's gzip member: the signed bytes.
    pub signed: &'a [u8],
}

/// Split an `APKINDEX.tar.gz` into its signature (the first gzip member, a tar holding one
/// `.SIGN.RSA*.KEY` file) and the signed remainder. An index without one is an error.
pub fn signature(bytes: &[u8]) -> Result<Signed<'_>, Error> {
    let mut gz = flate2::bufread::GzDecoder::new(bytes);
    let mut first = Vec::new();
    gz.read_to_end(&mut first)
        .map_err(|e| bad(format!("not a gzip archive: {e}")))?;
    // The bufread decoder stops exactly at the end of the first member.
    let signed = gz.into_inner();
    let mut ar = tar::Archive::new(&first[..]);
    let mut entries = ar
        .entries()
        .map_err(|e| bad(format!("unreadable signature segment: {e}")))?;
    let unsigned = || bad("the index is not signed (no .SIGN.RSA file first)".into());
    let mut e = entries
        .next()
        .ok_or_else(unsigned)?
        .map_err(|e| bad(format!("unreadable signature segment: {e}")))?;
    let name = e
        .path()
        .map_err(|e| bad(e.to_string()))?
        .to_string_lossy()
        .into_owned();
    let (digest, key) = if let Some(k) = name.strip_prefix(".SIGN.RSA256.") {
        (Digest::Sha256, k)
    } else if let Some(k) = name.strip_prefix(".SIGN.RSA.") {
        (Digest::Sha1, k)
    } else {
        return Err(unsigned());
    };
    if key.is_empty() || key.contains('/') || signed.is_empty() {
        return Err(unsigned());
    }
    let key = key.to_string();
    let mut signature = Vec::new();
    e.read_to_end(&mut signature)
        .map_err(|e| bad(format!("signature: {e}")))?;
    Ok(Signed {
        digest,
        key,
        signature,
        signed,
    })
}

/// The `APKINDEX` member of an `APKINDEX.tar.gz` (its gzip segments read as one tar
/// stream), parsed.
pub fn from_tar_gz(bytes: &[u8]) -> Result<Vec<Entry>, Error> {
    let gz = flate2::read::MultiGzDecoder::new(bytes);
    let mut ar = tar::Archive::new(gz);
    // The signature segment ends with its own end-of-archive blocks: read past them.
    ar.set_ignore_zeros(true);
    let entries = ar
        .entries()
        .map_err(|e| bad(format!("not a tar.gz archive: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| bad(format!("unreadable archive: {e}")))?;
        let is_index = e
            .path()
            .map(|p| p.as_os_str() == "APKINDEX")
            .unwrap_or(false);
        if is_index {
            let mut text = String::new();
            e.read_to_string(&mut text)
                .map_err(|e| bad(format!("APKINDEX member: {e}")))?;
            return parse(&text);
        }
    }
    Err(bad("the archive has no APKINDEX member".into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub const INDEX: &str = "C:Q1abc=
P:musl
V:1.2.5-r0
A:x86_64
S:411323
I:637056
T:the musl c library (libc) implementation
o:musl
L:MIT

C:Q1def=
P:libcrypto3
V:3.3.2-r0
A:x86_64
o:openssl

P:alpine-baselayout-data
V:3.6.5-r0
A:x86_64
o:alpine-baselayout
";

    /// An `APKINDEX.tar.gz` as the Alpine tooling lays it out: a signature segment (its own
    /// gzip member and tar end) before the gzip member holding DESCRIPTION and APKINDEX.
    pub fn tar_gz(index: &str) -> Vec<u8> {
        fn segment(files: &[(&str, &[u8])], end: bool) -> Vec<u8> {
            let mut tar = tar::Builder::new(Vec::new());
            for (name, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, name, *data).unwrap();
            }
            let mut raw = if end {
                tar.into_inner().unwrap()
            } else {
                tar.get_mut().clone()
            };
            if !end {
                raw.extend_from_slice(&[0u8; 1024]);
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw).unwrap();
            gz.finish().unwrap()
        }
        let mut out = segment(&[(".SIGN.RSA.alpine-devel.rsa.pub", b"sig")], false);
        out.extend(segment(
            &[("DESCRIPTION", b"v3.20.3"), ("APKINDEX", index.as_bytes())],
            true,
        ));
        out
    }

    #[test]
    fn blocks_become_entries() {
        let got = parse(INDEX).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            Entry {
                name: "libcrypto3".into(),
                version: "3.3.2-r0".into(),
                arch: "x86_64".into(),
                origin: Some("openssl".into()),
            }
        );
        assert_eq!(got[0].origin, None, "origin equal to the name is dropped");
        assert_eq!(got[2].origin.as_deref(), Some("alpine-baselayout"));
    }

    #[test]
    fn archive_member_is_found_past_the_signature() {
        let got = from_tar_gz(&tar_gz(INDEX)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(from_tar_gz(b"not gzip").is_err());
        let e = from_tar_gz(&tar_gz(INDEX)[..40]).unwrap_err().to_string();
        assert!(e.contains("APKINDEX"), "{e}");
    }

    #[test]
    fn the_signature_segment_is_split_from_what_it_signs() {
        let all = tar_gz(INDEX);
        let s = signature(&all).unwrap();
        assert_eq!(s.digest, Digest::Sha1);
        assert_eq!(s.key, "alpine-devel.rsa.pub");
        assert_eq!(s.signature, b"sig");
        // The signed part is the second gzip member, whole.
        assert!(s.signed.starts_with(&[0x1f, 0x8b]));
        assert_eq!(from_tar_gz(s.signed).unwrap().len(), 3);
        let unsigned = &all[all.len() - s.signed.len()..];
        let e = signature(unsigned).unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
        assert!(signature(b"junk").is_err());
    }

    #[test]
    fn broken_blocks_are_errors() {
        assert!(parse("P:a\nV:1-r0\n\nV:2-r0\n")
            .unwrap_err()
            .to_string()
            .contains("no P:"));
        assert!(parse("P:a\n")
            .unwrap_err()
            .to_string()
            .contains("package a has no V:"));
        assert!(parse("garbage\n").is_err());
        assert_eq!(parse("\n\n").unwrap(), vec![]);
    }
}
