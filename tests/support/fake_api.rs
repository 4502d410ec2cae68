//! An in-process fake of the uwsgi.it API that behaves like the published server as
//! `platform.md` describes it, traps included, and never kinder: 201 without an id, a bare
//! 403 for every refusal, 500 HTML pages for crashes (echoing the request headers, as a
//! debug page does, so a client that prints pages would leak the password), 413 over
//! 64 KiB, wrong reason phrases, cookies, exact paths, and the cascade delete (deleting a
//! custom distro deletes every container using it). Requests are recorded so tests can
//! assert what was sent; the state is open for assertions and setup.
//!
//! Clients reach it through a gateway (a raw TCP front, as CI proxies are) that can inject
//! faults per request ([`Fault`]): a reply lost after the server applied the request (the
//! gateway answers 502, or drops the connection), 503 or 429 before the server sees it
//! (with or without `Retry-After`), a reply slower than the client waits, a connection
//! reset. The server behind it keeps answering exactly as the real one does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// The customer every test logs in as.
pub const USER: &str = "alice";
/// Distinctive, so a leak is easy to find in any output.
pub const PASSWORD: &str = "Zq7-pw-MUST-NOT-LEAK-31";
/// Another customer, whose objects alice must not reach.
pub const OTHER_USER: &str = "bob";
pub const OTHER_PASSWORD: &str = "bob-pw-2";

const BASE_PATH: &str = "/api";
const MAX_BODY: usize = 65536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    pub uid: u32,
    pub name: String,
    pub owner: String,
    pub server: String,
    pub server_address: String,
    pub custom_distros_storage: bool,
    pub custom_distro: Option<u64>,
    /// How many times the API restarted it (storage enable, assign).
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDistro {
    pub id: u64,
    /// Storage container uid.
    pub container: u32,
    pub name: String,
    pub path: String,
    pub note: String,
    pub uuid: String,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Below the base path (`/containers/30001`), query string dropped.
    pub path: String,
    pub body: String,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct State {
    /// (user, password)
    pub users: Vec<(String, String)>,
    pub containers: BTreeMap<u32, FakeContainer>,
    pub distros: BTreeMap<u64, FakeDistro>,
    pub requests: Vec<Recorded>,
    /// Answer every request with this status (500: an HTML crash page).
    pub fail_all: Option<u16>,
    /// Answer every POST and DELETE with this status (after auth).
    pub fail_writes: Option<u16>,
    /// Faults the gateway injects, first match wins (see [`FakeApi::inject`]).
    pub faults: Vec<FaultRule>,
    /// Every fault injected, in order.
    pub fired: Vec<Fired>,
    next_distro: u64,
}

/// What the gateway in front of the server does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The server applies the request; the gateway loses its reply and answers 502.
    LostReply,
    /// The server applies the request; the gateway closes the connection without a reply.
    DropAfterApply,
    /// The connection is reset before the request reaches the server (nothing applied).
    Reset,
    /// 503 from the gateway before the server sees the request, with `Retry-After`
    /// seconds when given.
    Unavailable { retry_after: Option<u32> },
    /// 429 from the gateway before the server sees the request.
    TooMany { retry_after: u32 },
    /// The server applies the request; its reply comes after this long (longer than
    /// the client waits).
    Slow(Duration),
    /// Another publisher's create of `name` at `path` on `storage` reaches the server
    /// just before this request (a race lost between our check and our write).
    ConcurrentCreate {
        storage: u32,
        name: String,
        path: String,
    },
}

/// Inject `fault` into the next `times` requests of `method` on `path` (below `/api`).
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub method: String,
    pub path: String,
    pub fault: Fault,
    pub times: u32,
}

/// One injected fault: the request it hit and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub method: String,
    pub path: String,
    pub fault: Fault,
}

impl State {
    /// A new distro under the next id (what the server's create does once it accepted).
    fn insert_distro(&mut self, container: u32, name: String, path: String, note: String) -> u64 {
        let id = self.next_distro;
        self.next_distro += 1;
        let uuid = uuid_for(id);
        let d = FakeDistro {
            id,
            container,
            name,
            path,
            note,
            uuid,
        };
        self.distros.insert(id, d);
        id
    }
}

pub struct FakeApi {
    /// Base URL to give the client, e.g. `http://127.0.0.1:PORT/api` (the gateway).
    pub url: String,
    /// The gateway's port.
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    gateway: Option<Gateway>,
}

impl FakeApi {
    /// A server with two customers (alice, bob) and no containers.
    pub fn start() -> FakeApi {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind fake API"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let state = Arc::new(Mutex::new(State {
            users: vec![
                (USER.into(), PASSWORD.into()),
                (OTHER_USER.into(), OTHER_PASSWORD.into()),
            ],
            next_distro: 1,
            ..State::default()
        }));
        let (s, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                handle(&st, req);
            }
        });
        let gateway = Gateway::start(port, state.clone());
        FakeApi {
            url: format!("http://127.0.0.1:{}{BASE_PATH}", gateway.port),
            port: gateway.port,
            state,
            server,
            thread: Some(thread),
            gateway: Some(gateway),
        }
    }

    /// Inject `fault` into the next `times` requests `METHOD PATH` (path below `/api`,
    /// e.g. `/custom_distros/30003`).
    pub fn inject(&self, method: &str, path: &str, fault: Fault, times: u32) {
        self.state().faults.push(FaultRule {
            method: method.into(),
            path: path.into(),
            fault,
            times,
        });
    }

    /// The faults injected so far.
    pub fn fired(&self) -> Vec<Fired> {
        self.state().fired.clone()
    }

    /// The custom distros on storage container `storage`, as (name, path), by id.
    pub fn distros_on(&self, storage: u32) -> Vec<(String, String)> {
        self.state()
            .distros
            .values()
            .filter(|d| d.container == storage)
            .map(|d| (d.name.clone(), d.path.clone()))
            .collect()
    }

    /// The scenario most tests use:
    /// - server `s1` (10.0.1.1): alice's 30001 web1, 30002 web2, 30003 store1 (storage),
    ///   30006 plain; bob's 30100 bobstore (storage);
    /// - server `s2` (10.0.2.1): alice's 30004 web3, 30005 store2 (storage);
    /// - custom distros on 30003: ids 1..=4 `debian-00000000000N` (versioned paths), on
    ///   30005: id 5 `alpine`, on 30100: id 6 `bobdistro`;
    /// - 30001 uses distro 1 (the oldest version), 30004 uses 5.
    pub fn standard() -> FakeApi {
        let f = FakeApi::start();
        for (uid, name, owner, server, storage) in [
            (30001, "web1", USER, "s1", false),
            (30002, "web2", USER, "s1", false),
            (30003, "store1", USER, "s1", true),
            (30004, "web3", USER, "s2", false),
            (30005, "store2", USER, "s2", true),
            (30006, "plain", USER, "s1", false),
            (30100, "bobstore", OTHER_USER, "s1", true),
        ] {
            f.add_container(uid, name, owner, server, storage);
        }
        for n in 1..=4 {
            let p = format!("debian-{n:012}");
            f.add_distro(30003, &p, &p);
        }
        f.add_distro(30005, "alpine", "alpine");
        f.add_distro(30100, "bobdistro", "bobdistro");
        f.set_custom_distro(30001, Some(1));
        f.set_custom_distro(30004, Some(5));
        f
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn add_container(&self, uid: u32, name: &str, owner: &str, server: &str, storage: bool) {
        let n: u32 = server.trim_start_matches('s').parse().unwrap_or(9);
        self.state().containers.insert(
            uid,
            FakeContainer {
                uid,
                name: name.into(),
                owner: owner.into(),
                server: server.into(),
                server_address: format!("10.0.{n}.1"),
                custom_distros_storage: storage,
                custom_distro: None,
                restarts: 0,
            },
        );
    }

    /// Register directly (no request recorded); returns the id.
    pub fn add_distro(&self, container: u32, name: &str, path: &str) -> u64 {
        self.state()
            .insert_distro(container, name.into(), path.into(), String::new())
    }

    pub fn set_custom_distro(&self, uid: u32, id: Option<u64>) {
        self.state().containers.get_mut(&uid).unwrap().custom_distro = id;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The requests that change something (not GET), with their bodies parsed.
    pub fn writes(&self) -> Vec<(String, String, Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| {
                let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                (r.method, r.path, body)
            })
            .collect()
    }

    pub fn container_uids(&self) -> Vec<u32> {
        self.state().containers.keys().copied().collect()
    }

    pub fn fail_all(&self, status: Option<u16>) {
        self.state().fail_all = status;
    }

    /// `build-distro ARGS` with the API settings of this server in its environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = super::bin();
        c.env("UWSGI_IT_API", &self.url)
            .env("UWSGI_IT_USER", USER)
            .env("UWSGI_IT_PASSWORD", PASSWORD)
            .env_remove("UWSGI_IT_PASSWORD_FILE")
            .env_remove("UWSGI_IT_CA_FILE")
            .args(args);
        c
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        drop(self.gateway.take());
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn uuid_for(id: u64) -> String {
    format!("00000000-0000-4000-8000-{id:012x}")
}

struct Resp {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(String, String)>,
}

fn json_resp(status: u16, v: Value) -> Resp {
    Resp {
        status,
        content_type: "application/json",
        body: v.to_string(),
        headers: Vec::new(),
    }
}

fn forbidden() -> Resp {
    json_resp(403, json!({"error": "Forbidden"}))
}

fn unauthorized() -> Resp {
    let mut r = json_resp(401, json!({"error": "Unauthorized"}));
    r.headers.push((
        "WWW-Authenticate".into(),
        "Basic realm=\"uwsgi.it api\"".into(),
    ));
    r
}

/// A debug-style crash page: it shows the request headers, credentials included.
fn crash(exception: &str, path: &str, headers: &[(String, String)]) -> Resp {
    let rows: String = headers
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><td>HTTP_{}</td><td>{v}</td></tr>\n",
                k.to_ascii_uppercase().replace('-', "_")
            )
        })
        .collect();
    Resp {
        status: 500,
        content_type: "text/html; charset=utf-8",
        body: format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <title>{exception} at {path}</title>\n\
             </head>\n<body>\n<h1>{exception}</h1>\n<table>\n{rows}</table>\n</body>\n</html>\n"
        ),
        headers: Vec::new(),
    }
}

fn not_found(path: &str) -> Resp {
    Resp {
        status: 404,
        content_type: "text/html",
        body: format!("<h1>Not Found</h1><p>The requested URL {path} was not found.</p>"),
        headers: Vec::new(),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn handle(state: &Mutex<State>, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_string();
    let full = req.url().split('?').next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_string(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let _ = req.as_reader().read_to_end(&mut body);

    let mut st = state.lock().unwrap();
    let path = full.strip_prefix(BASE_PATH).unwrap_or("").to_string();
    let fail = st.fail_all.or(st.fail_writes.filter(|_| method != "GET"));
    let resp = if let Some(code) = fail {
        if code == 500 {
            crash("OperationalError", &full, &headers)
        } else {
            json_resp(code, json!({"error": "Service Unavailable"}))
        }
    } else if !full.starts_with(BASE_PATH) {
        not_found(&full)
    } else {
        route(&mut st, &method, &path, &full, &headers, &body)
    };
    st.requests.push(Recorded {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: resp.status,
    });
    drop(st);

    // Written by hand: the real server's reason phrases are wrong (`201 OK`, `401 OK`).
    let mut out = format!(
        "HTTP/1.1 {} OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Set-Cookie: sessionid=fake{}; expires=Thu, 01 Jan 2099 00:00:00 GMT; HttpOnly; Path=/\r\n\
         Set-Cookie: csrftoken=c5rf; Path=/\r\nVary: Cookie\r\nConnection: close\r\n",
        resp.status,
        resp.content_type,
        resp.body.len(),
        resp.status,
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&resp.body);
    let mut w = req.into_writer();
    let _ = w.write_all(out.as_bytes());
    let _ = w.flush();
}

/// Who is asking: Basic wins over the hex headers; malformed credentials crash.
fn authenticate(st: &State, full: &str, headers: &[(String, String)]) -> Result<String, Resp> {
    let check = |u: &str, p: &str| {
        if st.users.iter().any(|(uu, pp)| uu == u && pp == p) {
            Ok(u.to_string())
        } else {
            Err(unauthorized())
        }
    };
    if let Some(b64) = header(headers, "Authorization").and_then(|a| a.strip_prefix("Basic ")) {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return Err(crash("Error", full, headers));
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Err(crash("UnicodeDecodeError", full, headers));
        };
        let Some((u, p)) = text.split_once(':') else {
            return Err(crash("ValueError", full, headers));
        };
        return check(u, p);
    }
    if let (Some(u), Some(p)) = (
        header(headers, "X-uwsgi-it-username"),
        header(headers, "X-uwsgi-it-password"),
    ) {
        let (Ok(u), Ok(p)) = (hex::decode(u), hex::decode(p)) else {
            return Err(crash("TypeError", full, headers));
        };
        return check(&String::from_utf8_lossy(&u), &String::from_utf8_lossy(&p));
    }
    Err(unauthorized())
}

fn route(
    st: &mut State,
    method: &str,
    path: &str,
    full: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Resp {
    enum R {
        Me,
        Containers,
        Container(u32),
        Distros,
        DistrosOf(u32),
        Distro(u64),
    }
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    // URL routing comes first (no auth needed to get a 404 or the slash redirect).
    let r = match path {
        "/me/" => R::Me,
        "/containers/" => R::Containers,
        "/custom_distros/" => R::Distros,
        "/custom_distros" => {
            let mut r = Resp {
                status: 301,
                content_type: "text/html",
                body: String::new(),
                headers: Vec::new(),
            };
            r.headers
                .push(("Location".into(), format!("{BASE_PATH}/custom_distros/")));
            return r;
        }
        p => {
            let parsed = if let Some(u) = p.strip_prefix("/containers/") {
                num(u).map(|u| R::Container(u as u32))
            } else if let Some(u) = p.strip_prefix("/custom_distros/") {
                num(u).map(|u| R::DistrosOf(u as u32))
            } else if let Some(i) = p.strip_prefix("/custom_distro/") {
                num(i).map(R::Distro)
            } else {
                None
            };
            match parsed {
                Some(r) => r,
                None => return not_found(full),
            }
        }
    };
    let user = match authenticate(st, full, headers) {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    if method == "POST" && body.len() > MAX_BODY {
        return json_resp(413, json!({"error": "Request entity too large"}));
    }
    // A body the server cannot parse crashes it.
    let parse = || -> Result<Value, Resp> {
        if body.is_empty() {
            return Err(crash("ValueError", full, headers));
        }
        serde_json::from_slice(body).map_err(|_| crash("ValueError", full, headers))
    };
    let owns = |st: &State, uid: u32| st.containers.get(&uid).is_some_and(|c| c.owner == user);

    match (r, method) {
        (R::Me, "GET") => {
            let mine: Vec<&FakeContainer> =
                st.containers.values().filter(|c| c.owner == user).collect();
            let mut servers: Vec<&str> = mine.iter().map(|c| c.server_address.as_str()).collect();
            servers.dedup();
            json_resp(
                200,
                json!({"uuid": "c0ffee", "company": "", "vat": "", "email": format!("{user}@example.com"),
                       "containers": mine.iter().map(|c| c.uid).collect::<Vec<_>>(),
                       "servers": servers}),
            )
        }
        (R::Containers, "GET") => {
            let list: Vec<Value> = st
                .containers
                .values()
                .filter(|c| c.owner == user)
                .map(|c| container_json(st, c, false))
                .collect();
            json_resp(200, Value::Array(list))
        }
        (R::Container(uid), m @ ("GET" | "POST")) => {
            if !owns(st, uid) {
                return forbidden();
            }
            if m == "POST" {
                let j = match parse() {
                    Ok(j) => j,
                    Err(r) => return r,
                };
                let Some(obj) = j.as_object() else {
                    return crash("AttributeError", full, headers);
                };
                if obj.is_empty() {
                    return forbidden();
                }
                if let Some(v) = obj.get("custom_distros_storage") {
                    let on = v.as_bool().unwrap_or(false);
                    let c = st.containers.get_mut(&uid).unwrap();
                    c.custom_distros_storage = on;
                    c.restarts += 1;
                }
                if let Some(v) = obj.get("custom_distro") {
                    // Missing, foreign, own or null: the server crashes.
                    let ok = v
                        .as_u64()
                        .and_then(|id| st.distros.get(&id))
                        .is_some_and(|d| {
                            d.container != uid
                                && st
                                    .containers
                                    .get(&d.container)
                                    .is_some_and(|s| s.owner == user)
                        });
                    if !ok {
                        return crash("DoesNotExist", full, headers);
                    }
                    let c = st.containers.get_mut(&uid).unwrap();
                    c.custom_distro = v.as_u64();
                    c.restarts += 1;
                }
            }
            let c = st.containers[&uid].clone();
            json_resp(200, container_json(st, &c, true))
        }
        (R::Distros, "GET") => {
            let list: Vec<Value> = st
                .distros
                .values()
                .filter(|d| owns(st, d.container))
                .map(|d| json!({"id": d.id, "name": d.name, "container": d.container}))
                .collect();
            json_resp(200, Value::Array(list))
        }
        (R::DistrosOf(uid), "GET") => {
            if !owns(st, uid) {
                return forbidden();
            }
            let me = &st.containers[&uid];
            let list: Vec<Value> = if me.custom_distros_storage {
                Vec::new()
            } else {
                st.distros
                    .values()
                    .filter(|d| {
                        d.container != uid
                            && st
                                .containers
                                .get(&d.container)
                                .is_some_and(|s| s.owner == user && s.server == me.server)
                    })
                    .map(|d| json!({"id": d.id, "name": d.name}))
                    .collect()
            };
            json_resp(200, Value::Array(list))
        }
        (R::DistrosOf(uid), "POST") => {
            if !owns(st, uid) || !st.containers[&uid].custom_distros_storage {
                return forbidden();
            }
            let j = match parse() {
                Ok(j) => j,
                Err(r) => return r,
            };
            let field = |k: &str| j.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(name), Some(path)) = (field("name"), field("path")) else {
                return forbidden();
            };
            let note = field("note").unwrap_or_default();
            let charset_ok = !path.is_empty()
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !charset_ok
                || name.is_empty()
                || name.chars().count() > 255
                || path.len() > 255
                || st
                    .distros
                    .values()
                    .any(|d| d.container == uid && (d.name == name || d.path == path))
            {
                return forbidden();
            }
            st.insert_distro(uid, name, path, note);
            json_resp(201, json!({"message": "Created"}))
        }
        (R::Distro(id), m @ ("GET" | "POST" | "DELETE")) => {
            let Some(d) = st.distros.get(&id).cloned() else {
                return forbidden();
            };
            if !owns(st, d.container) {
                return forbidden();
            }
            match m {
                "GET" => json_resp(
                    200,
                    json!({"id": d.id, "container": d.container, "name": d.name,
                           "path": d.path, "note": d.note, "uuid": d.uuid}),
                ),
                // The published update view is broken: nothing changes.
                "POST" => crash("TypeError", full, headers),
                _ => {
                    // Database cascade: the containers using it go too.
                    st.containers.retain(|_, c| c.custom_distro != Some(id));
                    st.distros.remove(&id);
                    json_resp(200, json!({"message": "Ok"}))
                }
            }
        }
        _ => json_resp(405, json!({"error": "Method not allowed"})),
    }
}

fn container_json(st: &State, c: &FakeContainer, full: bool) -> Value {
    let cd_name = c
        .custom_distro
        .and_then(|id| st.distros.get(&id))
        .map(|d| d.name.clone());
    let mut v = json!({
        "uid": c.uid,
        "name": c.name,
        "hostname": format!("{}.example.com", c.name),
        "ip": format!("10.0.0.{}", c.uid - 30000 + 2),
        "memory": 512,
        "storage": 10240,
        "uuid": format!("cccccccc-0000-4000-8000-{:012x}", c.uid),
        "distro": 1,
        "distro_name": "bookworm",
        "custom_distro": c.custom_distro,
        "server": c.server,
        "server_address": c.server_address,
        "tags": [],
    });
    let o = v.as_object_mut().unwrap();
    if full {
        for (k, val) in [
            ("custom_distros_storage", json!(c.custom_distros_storage)),
            ("jid", json!("")),
            ("jid_destinations", json!("")),
            ("jid_secret", json!("")),
            ("quota_threshold", json!(90)),
            ("nofollow", json!(false)),
            ("note", json!("")),
            ("linked_to", json!([])),
            ("ssh_keys", json!([])),
            ("legion_address", json!([])),
            ("alarm_freq", json!(60)),
            ("accounted", json!(true)),
            ("max_alarms", json!(100)),
            ("admin_note", Value::Null),
            ("admin_order", Value::Null),
            ("dmz", json!(false)),
        ] {
            o.insert(k.into(), val);
        }
        if let Some(n) = cd_name {
            o.insert("custom_distro_name".into(), json!(n));
        }
    } else {
        o.insert("custom_distro_name".into(), json!(cd_name));
    }
    v
}

/// The raw TCP front every client goes through: it reads one request, asks the fault
/// rules what to do, forwards it to the server (or not) and passes the reply back (or
/// not). One thread per connection, so a slow reply holds up nobody else.
struct Gateway {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    fn start(backend: u16, state: Arc<Mutex<State>>) -> Gateway {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind gateway");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let st = state.clone();
                std::thread::spawn(move || gateway_one(tcp, backend, &st));
            }
        });
        Gateway {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Close `tcp` with a reset (RST) instead of an orderly end.
fn reset(tcp: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(tcp);
}

fn gateway_page(status: u16, reason: &str, extra: &str) -> Vec<u8> {
    let body = format!("<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center><hr><center>gateway</center></body></html>\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn gateway_one(mut tcp: std::net::TcpStream, backend: u16, state: &Mutex<State>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(request) = read_message(&mut tcp) else {
        return;
    };
    let line = String::from_utf8_lossy(&request[..request.len().min(512)])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target
        .split('?')
        .next()
        .unwrap_or("")
        .strip_prefix(BASE_PATH)
        .unwrap_or("")
        .to_string();
    let fault = {
        let mut st = state.lock().unwrap();
        let hit = st
            .faults
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && r.path == path);
        let fault = hit.map(|r| {
            r.times -= 1;
            r.fault.clone()
        });
        if let Some(f) = &fault {
            st.fired.push(Fired {
                method: method.clone(),
                path: path.clone(),
                fault: f.clone(),
            });
        }
        fault
    };
    let forward = || -> Option<Vec<u8>> {
        let mut up = std::net::TcpStream::connect(("127.0.0.1", backend)).ok()?;
        up.write_all(&request).ok()?;
        read_message(&mut up)
    };
    match fault {
        None => {
            if let Some(resp) = forward() {
                let _ = tcp.write_all(&resp);
            }
        }
        Some(Fault::Reset) => reset(tcp),
        Some(Fault::Unavailable { retry_after }) => {
            let extra = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let _ = tcp.write_all(&gateway_page(503, "Service Unavailable", &extra));
        }
        Some(Fault::TooMany { retry_after }) => {
            let extra = format!("Retry-After: {retry_after}\r\n");
            let _ = tcp.write_all(&gateway_page(429, "Too Many Requests", &extra));
        }
        Some(Fault::LostReply) => {
            let _ = forward();
            let _ = tcp.write_all(&gateway_page(502, "Bad Gateway", ""));
        }
        Some(Fault::DropAfterApply) => {
            let _ = forward();
            drop(tcp);
        }
        Some(Fault::ConcurrentCreate {
            storage,
            name,
            path,
        }) => {
            state
                .lock()
                .unwrap()
                .insert_distro(storage, name, path, "the other job".into());
            if let Some(resp) = forward() {
                let _ = tcp.write_all(&resp);
            }
        }
        Some(Fault::Slow(d)) => {
            let resp = forward();
            std::thread::sleep(d);
            if let Some(resp) = resp {
                let _ = tcp.write_all(&resp);
            }
        }
    }
}

/// A TLS endpoint with a self-signed certificate for 127.0.0.1 in front of a [`FakeApi`]:
/// it terminates TLS and forwards each request. Stopped on drop.
pub struct TlsFront {
    /// `https://127.0.0.1:PORT/api`
    pub url: String,
    /// The self-signed certificate (PEM), to pass as `--ca-file`.
    pub cert: std::path::PathBuf,
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// `None` (after saying why) when `openssl` is missing to make the certificate.
    pub fn start(api: &FakeApi, dir: &std::path::Path) -> Option<TlsFront> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output();
        match made {
            Ok(o) if o.status.success() => {}
            _ => {
                eprintln!("SKIPPED: openssl cannot make a test certificate (scripts/setup.sh installs it)");
                return None;
            }
        }
        let chain = vec![CertificateDer::from_pem_file(&cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let backend = api.port;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let tls = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut stream = rustls::StreamOwned::new(tls, tcp);
                // A failed handshake (the client refused our certificate) ends here.
                let Some(request) = read_message(&mut stream) else {
                    continue;
                };
                let mut up = std::net::TcpStream::connect(("127.0.0.1", backend)).unwrap();
                up.write_all(&request).unwrap();
                if let Some(response) = read_message(&mut up) {
                    let _ = stream.write_all(&response);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
            }
        });
        Some(TlsFront {
            url: format!("https://127.0.0.1:{port}{BASE_PATH}"),
            cert,
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP message (head plus a Content-Length body) from `r`.
fn read_message(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return Some(buf);
            }
        }
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
