//! A real OpenSSH server on loopback for push tests: its own host key, a client key, and
//! local users named by uid (as the platform's storage containers are) whose homes mimic
//! `/containers/UID` with a `distros/` directory. Every piece is undone by `Drop`: the
//! sshd processes are killed, the users deleted, the directory removed.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// useradd/userdel lock /etc/passwd: one at a time within this test process.
static USERS: Mutex<()> = Mutex::new(());

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this machine can run the sshd tests: root (for users) and the programs.
pub fn available() -> Result<(), String> {
    if !super::is_root() {
        return Err("needs root (creates local users for the storage containers)".into());
    }
    for p in [
        "/usr/sbin/sshd",
        "/usr/bin/ssh",
        "/usr/bin/ssh-keygen",
        "/usr/bin/rsync",
    ] {
        if !Path::new(p).exists() {
            return Err(format!(
                "{p} is missing: apt-get install openssh-server openssh-client rsync"
            ));
        }
    }
    Ok(())
}

#[macro_export]
macro_rules! require_sshd {
    () => {
        if let Err(why) = $crate::support::sshd::available() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// One sshd listening on `addr:port`.
struct Server {
    child: Child,
}

/// The servers, users and keys of one test.
pub struct SshLab {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub uids: Vec<u32>,
    servers: Vec<Server>,
}

/// A port free on every address in `addrs`.
fn free_port(addrs: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind(SocketAddrV4::new(addrs[0], 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        if addrs[1..]
            .iter()
            .all(|a| TcpListener::bind(SocketAddrV4::new(*a, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {addrs:?}");
}

impl SshLab {
    /// sshd on each of `addrs` (same port), and a user per uid with home
    /// `DIR/containers/UID` holding `distros/`. `extra` goes at the end of sshd_config
    /// (`Match` blocks).
    pub fn start(addrs: &[Ipv4Addr], uids: &[u32], extra: &str) -> SshLab {
        let dir = super::tempdir();
        let d = dir.path();
        // The users must traverse to their homes.
        sh(Command::new("chmod").arg("755").arg(d));
        for (name, what) in [("host_key", "host"), ("client_key", "client")] {
            sh(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", what, "-f"])
                .arg(d.join(name)));
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let mut lab = SshLab {
            port: free_port(addrs),
            key: d.join("client_key"),
            known_hosts: d.join("known_hosts"),
            uids: Vec::new(),
            servers: Vec::new(),
            dir,
        };
        for &u in uids {
            lab.add_user(u);
        }
        let d = lab.dir.path().to_path_buf();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let allow: Vec<String> = uids.iter().map(u32::to_string).collect();
        for (i, a) in addrs.iter().enumerate() {
            let conf = d.join(format!("sshd_config.{i}"));
            std::fs::write(
                &conf,
                format!(
                    "Port {port}\nListenAddress {a}\nHostKey {d}/host_key\nPidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nAllowUsers {allow}\nLogLevel ERROR\n{extra}\n",
                    port = lab.port,
                    d = d.display(),
                    allow = allow.join(" "),
                ),
            )
            .unwrap();
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join(format!("sshd.{i}.log"))).unwrap())
                .spawn()
                .expect("start sshd");
            lab.servers.push(Server { child });
            lab.wait_ready(*a, i);
        }
        lab
    }

    fn wait_ready(&mut self, a: Ipv4Addr, i: usize) {
        for _ in 0..200 {
            if TcpStream::connect(SocketAddrV4::new(a, self.port)).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.servers[i].child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("sshd.{i}.log")))
                    .unwrap_or_default();
                panic!("sshd on {a}:{} exited with {st}: {log}", self.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("sshd on {a}:{} does not answer", self.port);
    }

    fn add_user(&mut self, uid: u32) {
        let home = self.home(uid);
        std::fs::create_dir_all(home.join("distros")).unwrap();
        let name = uid.to_string();
        {
            let _g = USERS.lock().unwrap_or_else(|e| e.into_inner());
            let exists = Command::new("id")
                .arg(&name)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if exists {
                sh(Command::new("usermod").arg("-d").arg(&home).arg(&name));
            } else {
                // `*`, not the default `!`: sshd without PAM refuses locked accounts.
                sh(Command::new("useradd")
                    .args(["-M", "-s", "/bin/sh", "-p", "*", "-U", "-u", &name, "-d"])
                    .arg(&home)
                    .arg(&name));
            }
        }
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(&home));
        sh(Command::new("chmod").arg("755").arg(&home));
        self.uids.push(uid);
    }

    /// `/containers/UID` of the lab.
    pub fn home(&self, uid: u32) -> PathBuf {
        self.dir.path().join("containers").join(uid.to_string())
    }

    pub fn distros(&self, uid: u32) -> PathBuf {
        self.home(uid).join("distros")
    }

    /// The flags every push in the lab needs (`--ssh-port`, key, a throwaway known_hosts).
    pub fn ssh_flags(&self) -> Vec<String> {
        vec![
            "--ssh-port".into(),
            self.port.to_string(),
            "--identity".into(),
            self.key.display().to_string(),
            "--ssh-option".into(),
            "StrictHostKeyChecking=no".into(),
            "--ssh-option".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "--ssh-option".into(),
            "BatchMode=yes".into(),
            "--ssh-option".into(),
            "LogLevel=ERROR".into(),
        ]
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        let _g = USERS.lock().unwrap_or_else(|e| e.into_inner());
        for u in &self.uids {
            // -f: a session still closing must not keep the user around.
            let _ = Command::new("userdel")
                .arg("-f")
                .arg(u.to_string())
                .output();
        }
    }
}
