//! Publishing survives faults (issue 20): the fake API's gateway loses replies after
//! applying writes, answers 503/429 first, replies slower than the client waits, resets
//! connections; the client retries what is safe, reads state back before sending a write
//! again, and every test ends by asserting the API's recorded state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_api::{FakeApi, Fault, PASSWORD, USER};
use crate::support::run;

fn basic() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// A raw exchange through the gateway: `Err` when the connection failed.
fn raw(f: &FakeApi, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", f.port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(
        format!(
            "{method} /api{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            basic(),
            body.len()
        )
        .as_bytes(),
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `build-distro ARGS -v` with a short timeout, for the fault tests.
fn bd(f: &FakeApi, args: &[&str]) -> (i32, String, String) {
    let mut c = f.cmd(args);
    c.args(["-v", "--api-timeout", "1"]);
    let (code, out, err) = run(&mut c);
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "the password leaked:\n{out}\n{err}"
    );
    (code, out, err)
}

fn count(f: &FakeApi, method: &str, path: &str) -> usize {
    f.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

#[test]
fn the_gateway_injects_faults_and_the_server_stays_as_unkind_as_the_real_one() {
    let f = FakeApi::standard();
    let create = r#"{"name": "n", "path": "p"}"#;
    // Lost reply: the gateway says 502, the server has the entry.
    f.inject("POST", "/custom_distros/30003", Fault::LostReply, 1);
    let r = raw(&f, "POST", "/custom_distros/30003", create).unwrap();
    assert!(r.starts_with("HTTP/1.1 502 "), "{r}");
    assert_eq!(
        f.distros_on(30003).last().unwrap(),
        &("n".into(), "p".into())
    );
    // The duplicate is a bare 403, as on the real server.
    let r = raw(&f, "POST", "/custom_distros/30003", create).unwrap();
    assert!(r.starts_with("HTTP/1.1 403 OK"), "{r}");
    assert!(r.ends_with(r#"{"error":"Forbidden"}"#), "{r}");
    // A create still answers 201 with no id and a lying reason phrase.
    let r = raw(
        &f,
        "POST",
        "/custom_distros/30003",
        r#"{"name": "m", "path": "q"}"#,
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 201 OK"), "{r}");
    assert!(r.ends_with(r#"{"message":"Created"}"#), "{r}");
    // 503 before the server: with and without Retry-After; nothing reaches the server.
    let before = f.requests().len();
    f.inject(
        "GET",
        "/containers/",
        Fault::Unavailable {
            retry_after: Some(2),
        },
        1,
    );
    f.inject(
        "GET",
        "/containers/",
        Fault::Unavailable { retry_after: None },
        1,
    );
    let r = raw(&f, "GET", "/containers/", "").unwrap();
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    assert!(r.contains("Retry-After: 2\r\n"), "{r}");
    let r = raw(&f, "GET", "/containers/", "").unwrap();
    assert!(
        r.starts_with("HTTP/1.1 503 ") && !r.contains("Retry-After"),
        "{r}"
    );
    f.inject("GET", "/containers/", Fault::TooMany { retry_after: 1 }, 1);
    let r = raw(&f, "GET", "/containers/", "").unwrap();
    assert!(
        r.starts_with("HTTP/1.1 429 ") && r.contains("Retry-After: 1"),
        "{r}"
    );
    assert_eq!(f.requests().len(), before, "the server saw none of them");
    // Reset: the client sees a failed connection, the server nothing.
    f.inject("DELETE", "/custom_distro/2", Fault::Reset, 1);
    let r = raw(&f, "DELETE", "/custom_distro/2", "");
    assert!(
        r.is_err() || r.as_ref().unwrap().is_empty(),
        "a reset, not a reply: {r:?}"
    );
    assert!(f.state().distros.contains_key(&2));
    // Dropped after applying: no reply, but the delete happened.
    f.inject("DELETE", "/custom_distro/2", Fault::DropAfterApply, 1);
    let r = raw(&f, "DELETE", "/custom_distro/2", "");
    assert!(r.map(|t| t.is_empty()).unwrap_or(true));
    assert!(!f.state().distros.contains_key(&2));
    // Slow: the reply comes, late, and the change is applied before it.
    f.inject(
        "GET",
        "/custom_distro/1",
        Fault::Slow(Duration::from_millis(300)),
        1,
    );
    let r = raw(&f, "GET", "/custom_distro/1", "").unwrap();
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    // Rules are used up: the next request passes untouched.
    let r = raw(&f, "GET", "/containers/", "").unwrap();
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert_eq!(f.fired().len(), 7);
}

#[test]
fn gets_are_retried_on_transient_failures_honouring_retry_after_and_shown_with_v() {
    let f = FakeApi::standard();
    f.inject(
        "GET",
        "/containers/",
        Fault::Unavailable {
            retry_after: Some(1),
        },
        1,
    );
    f.inject("GET", "/containers/", Fault::Reset, 1);
    f.inject(
        "GET",
        "/custom_distros/",
        Fault::TooMany { retry_after: 1 },
        1,
    );
    f.inject(
        "GET",
        "/custom_distros/",
        Fault::Slow(Duration::from_secs(3)),
        1,
    );
    let (code, out, err) = bd(&f, &["distros", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5, "{v}");
    let retries: Vec<&str> = err.lines().filter(|l| l.contains("retrying GET")).collect();
    assert_eq!(retries.len(), 4, "{err}");
    assert!(retries[0].contains("server asked 1 s"), "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(f.fired().len(), 4);
    assert!(f.writes().is_empty());
}

#[test]
fn a_create_whose_reply_is_lost_ends_with_exactly_one_entry() {
    for fault in [
        Fault::LostReply,
        Fault::DropAfterApply,
        Fault::Slow(Duration::from_secs(3)),
        Fault::Reset,
        Fault::Unavailable { retry_after: None },
    ] {
        let f = FakeApi::standard();
        let before = f.distros_on(30003).len();
        f.inject("POST", "/custom_distros/30003", fault.clone(), 1);
        let (code, out, err) = bd(
            &f,
            &[
                "distros",
                "register",
                "--storage",
                "30003",
                "--name",
                "deb-x",
                "--path",
                "deb-x",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{fault:?}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let on = f.distros_on(30003);
        assert_eq!(on.len(), before + 1, "{fault:?}: {on:?}");
        let st = f.state();
        let mine: Vec<_> = st.distros.values().filter(|d| d.name == "deb-x").collect();
        assert_eq!(mine.len(), 1, "{fault:?}");
        assert_eq!((mine[0].container, mine[0].path.as_str()), (30003, "deb-x"));
        assert_eq!(v["id"], json!(mine[0].id), "{fault:?}");
        assert_eq!(v["created"], json!(true));
        drop(st);
        // The server got exactly one create: a lost reply is read back, not re-sent.
        assert_eq!(count(&f, "POST", "/custom_distros/30003"), 1, "{fault:?}");
        assert_eq!(f.fired().len(), 1);
        // Each outcome was unknown to the client: it read the state back before acting.
        assert!(err.contains("reading the state back"), "{fault:?}: {err}");
    }
}

#[test]
fn a_403_on_create_is_success_when_our_entry_is_there_and_explained_otherwise() {
    // Another publisher creates the same name and path between our check and our POST.
    let f = FakeApi::standard();
    let fault = |name: &str, path: &str| Fault::ConcurrentCreate {
        storage: 30003,
        name: name.into(),
        path: path.into(),
    };
    f.inject("POST", "/custom_distros/30003", fault("deb-x", "deb-x"), 1);
    let args = [
        "distros",
        "register",
        "--storage",
        "30003",
        "--name",
        "deb-x",
        "--path",
        "deb-x",
        "--json",
    ];
    let (code, out, err) = bd(&f, &args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = f
        .state()
        .distros
        .values()
        .find(|d| d.name == "deb-x")
        .unwrap()
        .id;
    assert_eq!(
        (v["id"].clone(), v["created"].clone()),
        (json!(id), json!(false))
    );
    assert_eq!(
        f.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [403]
    );
    assert_eq!(
        f.distros_on(30003)
            .iter()
            .filter(|d| d.0 == "deb-x")
            .count(),
        1
    );

    // The other job took the name with another path: say so, naming its id.
    f.inject("POST", "/custom_distros/30003", fault("deb-y", "other"), 1);
    let (code, _, err) = bd(
        &f,
        &[
            "distros",
            "register",
            "--storage",
            "30003",
            "--name",
            "deb-y",
            "--path",
            "deb-y",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("already has a custom distro named \"deb-y\"") && err.contains("\"other\""),
        "{err}"
    );
    // ...or the path under another name.
    f.inject("POST", "/custom_distros/30003", fault("zzz", "deb-z"), 1);
    let (code, _, err) = bd(
        &f,
        &[
            "distros",
            "register",
            "--storage",
            "30003",
            "--name",
            "deb-z",
            "--path",
            "deb-z",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("already has path \"deb-z\" registered as \"zzz\""),
        "{err}"
    );
    // Only the other job's entries: nothing of ours was created.
    let on = f.distros_on(30003);
    assert_eq!(
        on[4..],
        [
            ("deb-x".to_string(), "deb-x".to_string()),
            ("deb-y".into(), "other".into()),
            ("zzz".into(), "deb-z".into())
        ],
        "{on:?}"
    );
}

#[test]
fn assign_and_rm_read_state_back_after_a_lost_reply() {
    let f = FakeApi::standard();
    f.inject("POST", "/containers/30002", Fault::LostReply, 1);
    let (code, _, err) = bd(
        &f,
        &["distros", "assign", "30002", "--distro", "3", "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("was applied"), "{err}");
    {
        let st = f.state();
        assert_eq!(st.containers[&30002].custom_distro, Some(3));
        assert_eq!(
            st.containers[&30002].restarts, 1,
            "restarted once, not twice"
        );
    }
    assert_eq!(count(&f, "POST", "/containers/30002"), 1);

    // Not applied (503 before the server): sent again once it is known not to be.
    f.inject(
        "POST",
        "/containers/30006",
        Fault::Unavailable { retry_after: None },
        1,
    );
    let (code, _, err) = bd(
        &f,
        &["distros", "assign", "30006", "--distro", "4", "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.state().containers[&30006].custom_distro, Some(4));
    assert_eq!(f.state().containers[&30006].restarts, 1);

    let uids = f.container_uids();
    f.inject(
        "DELETE",
        "/custom_distro/2",
        Fault::Slow(Duration::from_secs(3)),
        1,
    );
    let (code, _, err) = bd(&f, &["distros", "rm", "2", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(!f.state().distros.contains_key(&2));
    assert_eq!(count(&f, "DELETE", "/custom_distro/2"), 1);
    assert_eq!(f.container_uids(), uids, "no container went with it");

    // A distro in use is never deleted, whatever failed before.
    f.inject("DELETE", "/custom_distro/3", Fault::Reset, 1);
    let (code, _, err) = bd(&f, &["distros", "rm", "3", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("containers 30002"), "{err}");
    assert_eq!(count(&f, "DELETE", "/custom_distro/3"), 0);
    assert!(f.state().distros.contains_key(&3));
}

#[test]
fn writes_that_keep_failing_give_up_after_the_budget_reading_back_each_time() {
    let f = FakeApi::standard();
    f.state().fail_writes = Some(503);
    let (code, _, err) = bd(
        &f,
        &["storage", "enable", "30006", "--yes", "--api-retries", "2"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.lines().last().unwrap().contains("503"), "{err}");
    assert_eq!(
        count(&f, "POST", "/containers/30006"),
        3,
        "first try and two retries"
    );
    // Each retry was preceded by a read-back of the container.
    assert!(count(&f, "GET", "/containers/30006") >= 4);
    assert!(!f.state().containers[&30006].custom_distros_storage);
}
