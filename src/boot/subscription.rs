//! The HTTP router's side of a subscription: what a vassal's `subscribe2` sends to
//! `/run/subscribe/http`. A uwsgi packet: a 4-byte header (modifier1 224, little-endian
//! body size, modifier2) and a body of `u16 length + bytes` key/value pairs (`key`,
//! `address`, `modifier1`, …, and `unix` + `sign` when signed).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use super::{Status, Step, StepKind};

/// uWSGI's modifier1 for subscription packets.
pub const MODIFIER1: u8 = 224;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subscribed name (`domain = NAME`).
    pub key: String,
    /// Where the router should send requests (the vassal's socket, seen from the server).
    pub address: String,
    /// Whether the packet carries an RSA signature.
    pub signed: bool,
}

/// Read one packet; `None` if it is not a subscription.
pub fn parse(packet: &[u8]) -> Option<Subscription> {
    if packet.len() < 4 || packet[0] != MODIFIER1 {
        return None;
    }
    let size = u16::from_le_bytes([packet[1], packet[2]]) as usize;
    let body = packet.get(4..4 + size)?;
    let mut fields = Vec::new();
    let mut rest = body;
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.len() < 2 {
            return None;
        }
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let v = rest.get(2..2 + n)?.to_vec();
        *rest = &rest[2 + n..];
        Some(v)
    };
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        fields.push((k, v));
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    Some(Subscription {
        key: get("key")?,
        address: get("address").unwrap_or_default(),
        signed: fields.iter().any(|(k, v)| k == b"sign" && !v.is_empty()),
    })
}

/// Wait (until `deadline`) for a subscription of every name in `names`.
pub fn check(
    listener: &UnixDatagram,
    got: &mut Vec<Subscription>,
    names: &[String],
    deadline: Instant,
) -> Step {
    loop {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !got.iter().any(|s| &s.key == *n))
            .collect();
        if missing.is_empty() {
            let lines: Vec<String> = names
                .iter()
                .filter_map(|n| got.iter().find(|s| &s.key == n))
                .map(|s| {
                    format!(
                        "{} -> {} ({})",
                        s.key,
                        s.address,
                        if s.signed { "signed" } else { "unsigned" }
                    )
                })
                .collect();
            return Step {
                step: StepKind::Subscription,
                status: Status::Ok,
                detail: format!("/run/subscribe/http got {}", lines.join(", ")),
            };
        }
        let now = Instant::now();
        if now >= deadline {
            let seen: Vec<&str> = got.iter().map(|s| s.key.as_str()).collect();
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Step {
                step: StepKind::Subscription,
                status: Status::Fail,
                detail: format!(
                    "no subscription for {} reached /run/subscribe/http before the timeout (got: {}); the vassal's `domain` must subscribe there, as shortcuts.ini declares it",
                    missing.join(", "),
                    if seen.is_empty() { "nothing".to_string() } else { seen.join(", ") }
                ),
            };
        }
        if crate::interrupt::interrupted() {
            return Step {
                step: StepKind::Subscription,
                status: Status::Fail,
                detail: "interrupted".into(),
            };
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        let _ = listener.set_read_timeout(Some(wait));
        let _ = listener.set_nonblocking(false);
        let mut buf = vec![0u8; 65536];
        if let Ok(n) = listener.recv(&mut buf) {
            if let Some(s) = parse(&buf[..n]) {
                got.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend((k.len() as u16).to_le_bytes());
            body.extend(k.as_bytes());
            body.extend((v.len() as u16).to_le_bytes());
            body.extend(*v);
        }
        let mut p = vec![MODIFIER1];
        p.extend((body.len() as u16).to_le_bytes());
        p.push(0);
        p.extend(body);
        p
    }

    #[test]
    fn reads_key_address_and_signature() {
        let p = packet(&[
            ("key", b"example.com"),
            (
                "address",
                b"/containers/30001/run/example.com_app.ini.socket",
            ),
            ("modifier1", b"0"),
            ("unix", b"1700000000"),
            ("sign", &[1, 2, 3]),
        ]);
        assert_eq!(
            parse(&p),
            Some(Subscription {
                key: "example.com".into(),
                address: "/containers/30001/run/example.com_app.ini.socket".into(),
                signed: true,
            })
        );
        let unsigned = packet(&[("key", b"a"), ("address", b"b")]);
        assert!(!parse(&unsigned).unwrap().signed);
    }

    #[test]
    fn refuses_other_and_truncated_packets() {
        let mut p = packet(&[("key", b"example.com")]);
        assert!(parse(&p[..p.len() - 1]).is_none());
        p[0] = 0;
        assert!(parse(&p).is_none());
        assert!(parse(&packet(&[("address", b"x")])).is_none());
    }
}
