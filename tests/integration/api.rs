//! `distros` and `storage` against the fake API (tests/support/fake_api.rs): every command's
//! success path and refusals, the request bodies sent, the cascade-delete guard, the
//! password never printed, and one-line errors that say what to check.

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::fake_api::{FakeApi, TlsFront, PASSWORD, USER};
use crate::support::run;

/// Run, expect `code`, return (stdout, stderr).
fn expect(f: &FakeApi, args: &[&str], code: i32) -> (String, String) {
    let (c, out, err) = run(&mut f.cmd(args));
    assert_eq!(
        c, code,
        "build-distro {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (out, err)
}

fn json_of(f: &FakeApi, args: &[&str]) -> Value {
    let (out, _) = expect(f, args, 0);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

/// The error is one line, prefixed, and holds every `needles`.
fn one_line_error(err: &str, needles: &[&str]) {
    eprintln!("{}", err.trim_end());
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{err}");
    assert!(lines[0].starts_with("build-distro: error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from: {err}");
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

/// A raw HTTP exchange, to see exactly what the fake answers: (status line, head, body).
fn raw(port: u16, request: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = text[end + 4..end + 4 + len].to_string();
                let status = head.lines().next().unwrap().to_string();
                return (status, head, body);
            }
        }
    }
}

fn basic(user: &str, pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
}

fn get(port: u16, path: &str, auth: &str) -> (String, String, String) {
    raw(
        port,
        &format!("GET /api{path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
}

fn post(port: u16, path: &str, body: &str) -> (String, String, String) {
    raw(
        port,
        &format!(
            "POST /api{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            basic(USER, PASSWORD),
            body.len()
        ),
    )
}

/// The fake must be as unkind as the real server, or the other tests prove little.
#[test]
fn fake_api_follows_platform_md() {
    let f = FakeApi::standard();
    let p = f.port;
    let alice = format!("Authorization: Basic {}\r\n", basic(USER, PASSWORD));

    // No, wrong and unknown credentials: 401 with the realm and a lying reason phrase.
    for auth in [
        String::new(),
        format!("Authorization: Basic {}\r\n", basic(USER, "nope")),
        format!("Authorization: Basic {}\r\n", basic("mallory", "x")),
    ] {
        let (status, head, body) = get(p, "/containers/", &auth);
        assert_eq!(status, "HTTP/1.1 401 OK");
        assert!(head.contains("WWW-Authenticate: Basic realm=\"uwsgi.it api\""));
        assert_eq!(body, r#"{"error":"Unauthorized"}"#);
    }
    // Malformed credentials crash the server.
    let b64_no_colon = base64::engine::general_purpose::STANDARD.encode("alice");
    for auth in [
        format!("Authorization: Basic {b64_no_colon}\r\n"),
        "X-uwsgi-it-username: zz\r\nX-uwsgi-it-password: 00\r\n".to_string(),
    ] {
        let (status, _, body) = get(p, "/containers/", &auth);
        assert_eq!(status, "HTTP/1.1 500 OK");
        assert!(body.contains("<html"));
    }
    // Hex headers work; Basic wins when both are sent.
    let hexed = format!(
        "X-uwsgi-it-username: {}\r\nX-uwsgi-it-password: {}\r\n",
        hex::encode(USER),
        hex::encode(PASSWORD)
    );
    assert_eq!(get(p, "/containers/", &hexed).0, "HTTP/1.1 200 OK");
    let wrong_basic = format!("Authorization: Basic {}\r\n", basic(USER, "nope"));
    assert_eq!(
        get(p, "/containers/", &format!("{wrong_basic}{hexed}")).0,
        "HTTP/1.1 401 OK"
    );

    // Exact paths, cookies, uids, the storage flag only on the single container.
    let (_, head, body) = get(p, "/containers/", &alice);
    assert!(head.contains("Set-Cookie: sessionid="), "{head}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["uid"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [30001, 30002, 30003, 30004, 30005, 30006]
    );
    assert!(list[0].get("custom_distros_storage").is_none());
    let one: Value = serde_json::from_str(&get(p, "/containers/30003", &alice).2).unwrap();
    assert_eq!(one["custom_distros_storage"], json!(true));
    assert!(one.get("custom_distro_name").is_none());
    assert_eq!(get(p, "/containers/30003/", &alice).0, "HTTP/1.1 404 OK");
    let (status, head, _) = get(p, "/custom_distros", &alice);
    assert_eq!(status, "HTTP/1.1 301 OK");
    assert!(head.contains("Location: /api/custom_distros/"));
    assert_eq!(get(p, "/containers/30100", &alice).0, "HTTP/1.1 403 OK");
    assert_eq!(get(p, "/custom_distro/6", &alice).0, "HTTP/1.1 403 OK");
    assert_eq!(get(p, "/custom_distros/30100", &alice).0, "HTTP/1.1 403 OK");

    // Create: 201 without an id; every refusal a bare 403.
    let (status, _, body) = post(p, "/custom_distros/30003", r#"{"name":"n","path":"p"}"#);
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 201 OK", r#"{"message":"Created"}"#)
    );
    for (target, body) in [
        ("30003", r#"{"name":"n","path":"other"}"#),
        ("30003", r#"{"name":"other","path":"p"}"#),
        ("30003", r#"{"name":"x"}"#),
        ("30003", r#"{"path":"x"}"#),
        ("30003", r#"{"name":"x","path":"a/b"}"#),
        ("30002", r#"{"name":"x","path":"x"}"#),
        ("30100", r#"{"name":"x","path":"x"}"#),
    ] {
        let (status, _, b) = post(p, &format!("/custom_distros/{target}"), body);
        assert_eq!(
            (status.as_str(), b.as_str()),
            ("HTTP/1.1 403 OK", r#"{"error":"Forbidden"}"#),
            "{target} {body}"
        );
    }
    let long = format!(r#"{{"name":"x","path":"{}"}}"#, "a".repeat(256));
    assert_eq!(post(p, "/custom_distros/30003", &long).0, "HTTP/1.1 403 OK");
    let huge = format!(
        r#"{{"name":"x","path":"y","note":"{}"}}"#,
        "a".repeat(70000)
    );
    assert_eq!(post(p, "/custom_distros/30003", &huge).0, "HTTP/1.1 413 OK");
    assert_eq!(post(p, "/custom_distros/30003", "").0, "HTTP/1.1 500 OK");
    assert_eq!(
        post(p, "/custom_distros/30003", "not json").0,
        "HTTP/1.1 500 OK"
    );

    // Container updates: {} refused; bad assigns crash; the update view always crashes.
    assert_eq!(post(p, "/containers/30002", "{}").0, "HTTP/1.1 403 OK");
    for bad in ["null", "99", "6", "7"] {
        // 7 is the distro created above, stored in 30003 itself.
        let path = if bad == "7" {
            "/containers/30003"
        } else {
            "/containers/30002"
        };
        let (status, _, _) = post(p, path, &format!(r#"{{"custom_distro":{bad}}}"#));
        assert_eq!(status, "HTTP/1.1 500 OK", "custom_distro {bad}");
    }
    assert_eq!(
        post(p, "/custom_distro/2", r#"{"name":"x"}"#).0,
        "HTTP/1.1 500 OK"
    );
    assert_eq!(f.state().distros[&2].name, "debian-000000000002");
    let (status, _, body) = post(p, "/containers/30002", r#"{"custom_distro":2}"#);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["custom_distro_name"],
        json!("debian-000000000002")
    );

    // The cascade: deleting distro 2 deletes 30002, which uses it.
    let (status, _, body) = raw(
        p,
        &format!(
            "DELETE /api/custom_distro/2 HTTP/1.1\r\nHost: x\r\n{alice}Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", r#"{"message":"Ok"}"#)
    );
    assert!(!f.state().containers.contains_key(&30002));
}

#[test]
fn distros_list_shows_storage_server_and_users() {
    let f = FakeApi::standard();
    let v = json_of(&f, &["distros", "list", "--json"]);
    assert_eq!(ids(&v), [1, 2, 3, 4, 5], "bob's distro must not show");
    assert_eq!(
        v[0],
        json!({"id": 1, "name": "debian-000000000001", "container": 30003, "server": "s1", "used_by": [30001]})
    );
    assert_eq!(v[4]["server"], json!("s2"));
    assert_eq!(v[4]["used_by"], json!([30004]));

    let (table, _) = expect(&f, &["distros", "list"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "ID  NAME                 STORAGE  SERVER  USED BY"
    );
    assert_eq!(lines[1], "1   debian-000000000001  30003    s1      30001");
    assert_eq!(lines[2], "2   debian-000000000002  30003    s1      -");
    assert_eq!(lines.len(), 6);
}

#[test]
fn distros_show_and_usable() {
    let f = FakeApi::standard();
    let v = json_of(&f, &["distros", "show", "1", "--json"]);
    assert_eq!(v["path"], json!("debian-000000000001"));
    assert_eq!(v["container"], json!(30003));
    assert_eq!(v["server"], json!("s1"));
    assert_eq!(v["used_by"], json!([{"uid": 30001, "name": "web1"}]));
    let (text, _) = expect(&f, &["distros", "show", "5"], 0);
    assert!(
        text.contains("files:   /containers/30005/distros/alpine"),
        "{text}"
    );
    assert!(text.contains("used by: 30004 (web3)"), "{text}");

    // Another customer's distro and a missing one: 403, said plainly.
    for id in ["6", "99"] {
        let (_, err) = expect(&f, &["distros", "show", id], 1);
        one_line_error(
            &err,
            &[
                "403",
                &format!("/custom_distro/{id}"),
                "does not exist or is not yours",
            ],
        );
    }

    // Usable: same server, another container of alice's; a storage container none.
    assert_eq!(
        ids(&json_of(&f, &["distros", "usable", "30002", "--json"])),
        [1, 2, 3, 4]
    );
    assert_eq!(
        ids(&json_of(&f, &["distros", "usable", "30004", "--json"])),
        [5]
    );
    assert_eq!(
        ids(&json_of(&f, &["distros", "usable", "30003", "--json"])),
        Vec::<u64>::new()
    );
    let (table, _) = expect(&f, &["distros", "usable", "30004"], 0);
    assert_eq!(table, "ID  NAME\n5   alpine\n");
    let (_, err) = expect(&f, &["distros", "usable", "30100"], 1);
    one_line_error(&err, &["403", "/custom_distros/30100", "not yours"]);
    assert!(f.writes().is_empty());
}

#[test]
fn register_creates_then_finds_the_id_and_is_idempotent() {
    let f = FakeApi::standard();
    let args = [
        "distros",
        "register",
        "--storage",
        "30003",
        "--name",
        "ubuntu-noble",
        "--path",
        "ubuntu-noble",
        "--note",
        "Ubuntu 24.04",
    ];
    let (out, err) = expect(&f, &args, 0);
    assert_eq!(out, "7\n");
    assert!(err.contains("registered \"ubuntu-noble\""), "{err}");
    assert_eq!(
        f.writes(),
        [(
            "POST".to_string(),
            "/custom_distros/30003".to_string(),
            json!({"name": "ubuntu-noble", "path": "ubuntu-noble", "note": "Ubuntu 24.04"})
        )]
    );
    let d = f.state().distros[&7].clone();
    assert_eq!((d.container, d.note.as_str()), (30003, "Ubuntu 24.04"));

    // Again: the same id, nothing sent.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v = json_of(&f, &json_args);
    assert_eq!(
        v,
        json!({"id": 7, "created": false, "storage": 30003, "name": "ubuntu-noble", "path": "ubuntu-noble"})
    );
    assert_eq!(f.writes().len(), 1);

    // The same name on another storage container is another entry.
    let v = json_of(
        &f,
        &[
            "distros",
            "register",
            "--storage",
            "30005",
            "--name",
            "ubuntu-noble",
            "--path",
            "ubuntu-noble",
            "--json",
        ],
    );
    assert_eq!(
        (v["id"].clone(), v["created"].clone()),
        (json!(8), json!(true))
    );
    assert_eq!(
        f.writes()[1].2,
        json!({"name": "ubuntu-noble", "path": "ubuntu-noble", "note": ""})
    );
}

#[test]
fn register_refusals_say_why_and_send_nothing() {
    let f = FakeApi::standard();
    let reg = |storage: &str, name: &str, path: &str| {
        vec![
            "distros",
            "register",
            "--storage",
            storage,
            "--name",
            name,
            "--path",
            path,
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, i32, Vec<&str>)> = vec![
        // Name held by another path, path held by another name.
        (
            reg("30003", "debian-000000000002", "elsewhere"),
            2,
            vec![
                "named \"debian-000000000002\" (id 2)",
                "choose another name",
            ],
        ),
        (
            reg("30003", "new-name", "debian-000000000003"),
            2,
            vec![
                "path \"debian-000000000003\"",
                "(id 3)",
                "choose another path",
            ],
        ),
        // Not a storage container; another customer's; path charset; empty name.
        (
            reg("30002", "x", "x"),
            2,
            vec!["30002 is not a storage container", "storage enable 30002"],
        ),
        (
            reg("30100", "x", "x"),
            1,
            vec!["403", "/containers/30100", "not yours"],
        ),
        (
            reg("30003", "x", "a/b"),
            2,
            vec!["invalid custom distro path \"a/b\"", "A-Za-z0-9"],
        ),
        (reg("30003", "", "x"), 2, vec!["invalid custom distro name"]),
    ];
    for (args, code, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, err) = expect(&f, &args, code);
        one_line_error(&err, &needles);
    }
    assert!(f.writes().is_empty(), "{:?}", f.writes());
    assert_eq!(f.state().distros.len(), 6);
}

#[test]
fn register_403_from_the_server_says_what_to_check() {
    // The server refuses the POST itself (here: every write is answered 403, as for a
    // duplicate appearing between our check and our POST).
    let f = FakeApi::standard();
    f.state().fail_writes = Some(403);
    let (_, err) = expect(
        &f,
        &[
            "distros",
            "register",
            "--storage",
            "30003",
            "--name",
            "n",
            "--path",
            "p",
        ],
        1,
    );
    one_line_error(
        &err,
        &[
            "POST",
            "/custom_distros/30003",
            "403",
            "not a storage container of yours",
            "already exists",
            "distros list",
        ],
    );
}

#[test]
fn assign_maps_containers_one_at_a_time() {
    let f = FakeApi::standard();
    let v = json_of(
        &f,
        &[
            "distros", "assign", "30002", "--distro", "3", "--yes", "--json",
        ],
    );
    assert_eq!(v[0]["container"], json!(30002));
    assert_eq!(v[0]["custom_distro"], json!(3));
    let (out, err) = expect(
        &f,
        &[
            "distros", "assign", "30006", "30001", "--distro", "4", "--yes", "--pause", "0",
        ],
        0,
    );
    assert!(
        out.contains("30006      plain  4       debian-000000000004"),
        "{out}"
    );
    assert!(
        err.contains("container 30006 (plain) now uses custom distro 4"),
        "{err}"
    );
    assert_eq!(
        f.writes(),
        [
            (
                "POST".into(),
                "/containers/30002".into(),
                json!({"custom_distro": 3})
            ),
            (
                "POST".into(),
                "/containers/30006".into(),
                json!({"custom_distro": 4})
            ),
            (
                "POST".into(),
                "/containers/30001".into(),
                json!({"custom_distro": 4})
            ),
        ]
    );
    let st = f.state();
    assert_eq!(st.containers[&30002].custom_distro, Some(3));
    assert_eq!(st.containers[&30001].custom_distro, Some(4));
    assert_eq!(st.containers[&30006].restarts, 1);
}

#[test]
fn assign_refusals() {
    let f = FakeApi::standard();
    // Detaching is impossible through the API: refused before any request.
    let (_, err) = expect(
        &f,
        &["distros", "assign", "30001", "--distro", "none", "--yes"],
        2,
    );
    one_line_error(&err, &["cannot detach a custom distro", "assign another"]);
    assert!(f.requests().is_empty());

    // Unusable ids (another server, another customer's, missing) and a storage container:
    // refused by the usable list, so the server never crashes. A bad second container
    // stops the rollout before the first restarts.
    for args in [
        ["distros", "assign", "30004", "--distro", "1", "--yes"].as_slice(),
        &["distros", "assign", "30002", "--distro", "6", "--yes"],
        &["distros", "assign", "30002", "--distro", "99", "--yes"],
        &["distros", "assign", "30003", "--distro", "5", "--yes"],
        &[
            "distros", "assign", "30002", "30004", "--distro", "2", "--yes",
        ],
    ] {
        let (_, err) = expect(&f, args, 2);
        one_line_error(&err, &["is not usable by container", "distros usable"]);
    }
    let (_, err) = expect(
        &f,
        &["distros", "assign", "30100", "--distro", "6", "--yes"],
        1,
    );
    one_line_error(&err, &["403", "not yours"]);

    // Restarts need a yes: no terminal here, so refuse.
    let (_, err) = expect(&f, &["distros", "assign", "30002", "--distro", "2"], 2);
    one_line_error(&err, &["restarts", "pass --yes"]);
    assert!(f.writes().is_empty(), "{:?}", f.writes());
    assert_eq!(f.state().containers[&30002].custom_distro, None);
}

#[test]
fn rm_deletes_an_unused_distro() {
    let f = FakeApi::standard();
    let before = f.container_uids();
    let v = json_of(&f, &["distros", "rm", "2", "--yes", "--json"]);
    assert_eq!(v["deleted"]["id"], json!(2));
    assert_eq!(
        v["files_kept"],
        json!("/containers/30003/distros/debian-000000000002")
    );
    let (out, _) = expect(&f, &["distros", "rm", "3", "--yes"], 0);
    assert!(out.starts_with("deleted custom distro 3"), "{out}");
    assert_eq!(
        f.writes(),
        [
            ("DELETE".into(), "/custom_distro/2".into(), Value::Null),
            ("DELETE".into(), "/custom_distro/3".into(), Value::Null),
        ]
    );
    assert!(!f.state().distros.contains_key(&2));
    assert_eq!(f.container_uids(), before);

    // Confirmation needed; another customer's distro is a 403.
    let (_, err) = expect(&f, &["distros", "rm", "4"], 2);
    one_line_error(&err, &["delete custom distro 4", "pass --yes"]);
    let (_, err) = expect(&f, &["distros", "rm", "6", "--yes"], 1);
    one_line_error(&err, &["403", "/custom_distro/6"]);
    assert_eq!(f.writes().len(), 2);
}

/// The server deletes every container using a deleted distro: rm and gc must refuse, name
/// the containers, and leave every container in place.
#[test]
fn rm_and_gc_never_trigger_the_cascade() {
    let f = FakeApi::standard();
    let before = f.container_uids();

    let (_, err) = expect(&f, &["distros", "rm", "1", "--yes"], 1);
    one_line_error(
        &err,
        &[
            "refusing to delete custom distro 1",
            "30001 (web1)",
            "delete them",
        ],
    );
    let (_, err) = expect(&f, &["distros", "rm", "5", "--yes"], 1);
    one_line_error(&err, &["30004 (web3)"]);

    // gc with keep 0 wants every versioned entry gone; 1 is in use.
    let v = json_of(
        &f,
        &[
            "distros",
            "gc",
            "--keep",
            "0",
            "--yes",
            "--json",
            "--keep-files",
        ],
    );
    assert_eq!(v["deleted"], json!([4, 3, 2]));
    let one = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == json!(1))
        .unwrap();
    assert_eq!(one["action"], json!("in-use"));
    assert_eq!(one["used_by"], json!([30001]));

    let deletes: Vec<String> = f
        .writes()
        .into_iter()
        .filter(|w| w.0 == "DELETE")
        .map(|w| w.1)
        .collect();
    assert_eq!(
        deletes,
        ["/custom_distro/4", "/custom_distro/3", "/custom_distro/2"]
    );
    assert_eq!(f.container_uids(), before, "a container disappeared");
    assert!(f.state().distros.contains_key(&1));
    assert!(
        f.state().distros.contains_key(&5),
        "non-versioned paths are not gc's"
    );
}

#[test]
fn gc_is_a_dry_run_unless_yes() {
    let f = FakeApi::standard();
    let v = json_of(
        &f,
        &["distros", "gc", "--keep", "2", "--json", "--keep-files"],
    );
    assert_eq!(v["dry_run"], json!(true));
    let actions: Vec<(u64, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().unwrap(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (4, "keep".into()),
            (3, "keep".into()),
            (2, "delete".into()),
            (1, "in-use".into())
        ]
    );
    let (table, err) = expect(&f, &["distros", "gc", "--keep", "2", "--keep-files"], 0);
    assert!(
        table.contains("2   30003    debian-000000000002  would delete   -"),
        "{table}"
    );
    assert!(
        table.contains("1   30003    debian-000000000001  keep (in use)  30001"),
        "{table}"
    );
    assert!(
        err.contains("dry run: 1 entry would be deleted; pass --yes"),
        "{err}"
    );
    assert!(f.writes().is_empty());

    let (table, _) = expect(
        &f,
        &["distros", "gc", "--keep", "2", "--yes", "--keep-files"],
        0,
    );
    assert!(table.contains("debian-000000000002  deleted"), "{table}");
    assert_eq!(
        f.writes(),
        [("DELETE".into(), "/custom_distro/2".into(), Value::Null)]
    );
}

#[test]
fn storage_list_per_server() {
    let f = FakeApi::standard();
    f.add_container(30007, "lonely", USER, "s3", false);
    let v = json_of(&f, &["storage", "list", "--json"]);
    assert_eq!(
        v,
        json!([
            {"server": "s1", "server_address": "10.0.1.1", "storage_containers": [{"uid": 30003, "name": "store1"}]},
            {"server": "s2", "server_address": "10.0.2.1", "storage_containers": [{"uid": 30005, "name": "store2"}]},
            {"server": "s3", "server_address": "10.0.3.1", "storage_containers": []},
        ])
    );
    // The list lacks the flag: each container was asked for.
    let singles = f
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/containers/3"))
        .count();
    assert_eq!(singles, 7);
    let (table, _) = expect(&f, &["storage", "list"], 0);
    assert!(table.contains("s1      10.0.1.1  30003  store1"), "{table}");
    assert!(
        table.contains("s3      10.0.3.1  -      (none: `build-distro storage enable UID`)"),
        "{table}"
    );
}

#[test]
fn storage_enable() {
    let f = FakeApi::standard();
    let (_, err) = expect(&f, &["storage", "enable", "30006"], 2);
    one_line_error(&err, &["30006 (plain)", "restarts", "pass --yes"]);
    assert!(f.writes().is_empty());

    let (out, _) = expect(&f, &["storage", "enable", "30006", "--yes"], 0);
    assert!(out.contains("is now a storage container"), "{out}");
    assert_eq!(
        f.writes(),
        [(
            "POST".into(),
            "/containers/30006".into(),
            json!({"custom_distros_storage": true})
        )]
    );
    assert!(f.state().containers[&30006].custom_distros_storage);

    // Already one: nothing sent, no restart, no question.
    let v = json_of(&f, &["storage", "enable", "30006", "--json"]);
    assert_eq!(v["custom_distros_storage"], json!(true));
    assert_eq!(f.writes().len(), 1);
    assert_eq!(f.state().containers[&30006].restarts, 1);

    let (_, err) = expect(&f, &["storage", "enable", "30100", "--yes"], 1);
    one_line_error(&err, &["403", "/containers/30100", "not yours"]);
}

/// Every command, with `-v`, against a crashing server, a server refusing the
/// credentials, and a working one: the password shows nowhere.
#[test]
fn the_password_never_appears() {
    let commands: Vec<Vec<&str>> = vec![
        vec!["distros", "list"],
        vec!["distros", "list", "--json"],
        vec!["distros", "show", "1"],
        vec!["distros", "usable", "30002"],
        vec![
            "distros",
            "register",
            "--storage",
            "30003",
            "--name",
            "n",
            "--path",
            "p",
        ],
        vec![
            "distros", "assign", "30002", "--distro", "2", "--yes", "--pause", "0",
        ],
        vec!["distros", "rm", "3", "--yes"],
        vec!["distros", "rm", "1", "--yes"],
        vec!["distros", "gc", "--keep", "1", "--yes", "--keep-files"],
        vec!["storage", "list"],
        vec!["storage", "enable", "30006", "--yes"],
    ];
    let dir = crate::support::tempdir();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    let forbidden_texts = [
        PASSWORD.to_string(),
        basic(USER, PASSWORD),
        hex::encode(PASSWORD),
    ];
    let mut traced = 0;
    for mode in ["ok", "500", "401", "file"] {
        for args in &commands {
            let f = FakeApi::standard();
            let mut cmd = f.cmd(&["-v"]);
            cmd.args(args);
            match mode {
                "500" => f.fail_all(Some(500)),
                "401" => {
                    f.state().users.retain(|(u, _)| u != USER);
                }
                "file" => {
                    cmd.env_remove("UWSGI_IT_PASSWORD")
                        .env("UWSGI_IT_PASSWORD_FILE", &pw_file);
                }
                _ => {}
            }
            let (code, out, err) = run(&mut cmd);
            for secret in &forbidden_texts {
                assert!(
                    !out.contains(secret.as_str()) && !err.contains(secret.as_str()),
                    "{mode} {args:?} leaked the password:\n{out}\n{err}"
                );
            }
            if mode == "500" {
                // The crash page echoed the Authorization header; we showed its title only.
                assert_ne!(code, 0);
                assert!(
                    err.contains("HTML page: OperationalError at /api/"),
                    "{err}"
                );
            }
            if mode == "401" {
                assert_eq!(code, 2, "{args:?}: {err}");
            }
            traced += err.matches("api: > GET").count();
        }
    }
    assert!(traced > 40, "-v should trace API calls");
}

#[test]
fn errors_say_what_to_check() {
    let f = FakeApi::standard();

    // 401
    let mut c = f.cmd(&["distros", "list"]);
    c.env("UWSGI_IT_PASSWORD", "wrong");
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2);
    one_line_error(
        &err,
        &[
            "GET",
            &format!("{}/containers/", f.url),
            "401",
            "check UWSGI_IT_USER",
        ],
    );

    // Connection refused: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api");
    let mut c = f.cmd(&["distros", "list"]);
    c.env("UWSGI_IT_API", &url);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 1);
    one_line_error(&err, &[&url, "connection refused", "check UWSGI_IT_API"]);

    // TLS with a certificate nobody vouches for; then trusted through --ca-file.
    let dir = crate::support::tempdir();
    if let Some(tls) = TlsFront::start(&f, dir.path()) {
        let mut c = f.cmd(&["storage", "list"]);
        c.env("UWSGI_IT_API", &tls.url);
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 1);
        one_line_error(&err, &[&tls.url, "TLS failure", "certificate"]);
        let before = f.requests().len();
        let mut c = f.cmd(&["distros", "list", "--json", "--ca-file"]);
        c.arg(&tls.cert).env("UWSGI_IT_API", &tls.url);
        let (code, out, err) = run(&mut c);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("debian-000000000001"), "{out}");
        assert!(f.requests().len() > before);
    }

    // Missing settings.
    let mut c = f.cmd(&["distros", "list"]);
    c.env_remove("UWSGI_IT_API");
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2);
    one_line_error(&err, &["UWSGI_IT_API"]);
    let mut c = f.cmd(&["distros", "list"]);
    c.env_remove("UWSGI_IT_PASSWORD");
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2);
    one_line_error(&err, &["UWSGI_IT_PASSWORD"]);

    // Flags win over the environment.
    let mut c = f.cmd(&["distros", "list", "--json", "--api", &f.url, "--user", USER]);
    c.env("UWSGI_IT_API", "http://127.0.0.1:1/nothing")
        .env("UWSGI_IT_USER", "nobody");
    assert_eq!(run(&mut c).0, 0);
}

#[test]
fn gets_are_retried_writes_never() {
    let f = FakeApi::standard();
    f.fail_all(Some(503));
    let (_, err) = expect(&f, &["distros", "list"], 1);
    one_line_error(&err, &["503", "/containers/"]);
    assert_eq!(f.requests().len(), 4, "one GET and three retries");

    let f = FakeApi::standard();
    f.state().fail_writes = Some(503);
    let (_, err) = expect(&f, &["storage", "enable", "30006", "--yes"], 1);
    one_line_error(&err, &["POST", "/containers/30006", "503"]);
    assert_eq!(f.writes().len(), 1, "a POST is sent once");
}
