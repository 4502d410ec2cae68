//! Reader of OpenPGP keyring files as apt finds them: binary keyrings (`.gpg`) pass as they
//! are, ASCII-armored ones (`.asc`, what `/etc/apt/trusted.gpg.d` holds on a fresh Debian)
//! are turned into binary, because gpgv reads binary keyrings only.

use base64::Engine;

use super::Error;

/// The binary keyring of `bytes` (armored or not).
pub fn binary(name: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let text = match std::str::from_utf8(bytes) {
        Ok(t) if t.trim_start().starts_with(BEGIN) => t,
        // Binary OpenPGP packets start with a tag byte with the high bit set.
        _ if bytes.first().is_some_and(|b| b & 0x80 != 0) => return Ok(bytes.to_vec()),
        _ => {
            return Err(Error::Keyring {
                name: name.into(),
                msg: "neither a binary nor an armored OpenPGP keyring".into(),
            })
        }
    };
    let mut out = Vec::new();
    // Several armored blocks may follow each other; each body is the base64 between the
    // blank line after the armor headers and the `=CRC` line.
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        if l != BEGIN {
            continue;
        }
        let mut body = String::new();
        let mut in_headers = true;
        for l in lines.by_ref() {
            if l.starts_with("-----END PGP") {
                break;
            }
            if in_headers {
                if l.is_empty() {
                    in_headers = false;
                } else if !l.contains(": ") {
                    // No armor headers at all: this line is data already.
                    in_headers = false;
                    body.push_str(l);
                }
                continue;
            }
            if l.starts_with('=') {
                continue;
            }
            body.push_str(l);
        }
        let bin = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| Error::Keyring {
                name: name.into(),
                msg: format!("bad armor: {e}"),
            })?;
        out.extend(bin);
    }
    if out.is_empty() {
        return Err(Error::Keyring {
            name: name.into(),
            msg: "armored keyring without a key block".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armored_and_binary() {
        let bin = vec![0x99, 0x01, 0x0d, 0x04, 0x42];
        assert_eq!(binary("k.gpg", &bin).unwrap(), bin);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bin);
        let armored = format!(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n{b64}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
        );
        assert_eq!(binary("k.asc", armored.as_bytes()).unwrap(), bin);
        let twice = format!("{armored}{armored}");
        assert_eq!(
            binary("k.asc", twice.as_bytes()).unwrap().len(),
            2 * bin.len()
        );
        assert!(binary("x", b"hello").is_err());
        assert!(binary(
            "x",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"
        )
        .is_err());
    }
}
