//! The mirror client: fetches a suite's `InRelease` over HTTP, has gpgv verify it against
//! the keyrings the caller trusts (refusing anything gpgv does not vouch for) and parses
//! only the text gpgv says was signed; then fetches index files and accepts each only when
//! its size and SHA-256 match that verified release. Verified indexes are kept on disk,
//! named by their SHA-256, so the next run fetches only the small `InRelease` files. For
//! `outdated`'s CVE IDs it also fetches a candidate `.deb`, accepted only when it matches
//! its entry in a verified `Packages` index, and keeps the changelog read from it.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::inrelease::{self, FileHash, Release};
use super::{apkindex, deb, packages, Error};
use crate::runner::{Cmd, Runner};

/// A keyring gpgv may trust (binary OpenPGP, see [`super::keyring::binary`]).
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Where it came from, for messages (`/etc/apt/trusted.gpg.d/x.asc` in the tree).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The cache root: `$BUILD_DISTRO_CACHE_DIR`, else `$XDG_CACHE_HOME/build-distro`, else
/// `~/.cache/build-distro`. Indexes go into its `indexes/` directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(|k| std::env::var_os(k))
}

/// [`default_cache_dir`] with the environment given as a lookup.
pub fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let env = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("BUILD_DISTRO_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("build-distro")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/build-distro")))
}

/// Cached index files not used for this long are removed when a new one is written.
const CACHE_KEEP: Duration = Duration::from_secs(30 * 86400);
/// No release file is this large; a bigger answer is not one.
const RELEASE_MAX: u64 = 32 << 20;

pub struct Client {
    agent: ureq::Agent,
    /// `<cache root>/indexes`, or none to fetch every time.
    cache: Option<PathBuf>,
    runner: Arc<dyn Runner>,
}

fn interrupted() -> Result<(), Error> {
    if crate::interrupt::interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `base/dists/suite/path` (`base` without a trailing slash).
pub fn dists_url(base: &str, suite: &str, path: &str) -> String {
    format!("{}/dists/{suite}/{path}", base.trim_end_matches('/'))
}

/// The gpgv run that checks `signed` (a clear-signed file) against `keyrings` and writes
/// the signed text to `out`. `--homedir` keeps the user's own trusted keys out of it.
pub fn gpgv_cmd(home: &Path, keyrings: &[PathBuf], signed: &Path, out: &Path) -> Cmd {
    let mut c = Cmd::new("gpgv")
        .arg("--homedir")
        .arg(home)
        .args(["--status-fd", "1"]);
    for k in keyrings {
        c = c.arg("--keyring").arg(k);
    }
    c.arg("--output").arg(out).arg(signed)
}

/// Whether gpgv's status output says a signature is good *and* valid (a good signature by
/// an expired or revoked key is not enough, as for apt).
pub fn gpgv_says_valid(status: &str) -> bool {
    let has = |tag: &str| {
        status
            .lines()
            .any(|l| l.starts_with(&format!("[GNUPG:] {tag} ")))
    };
    has("GOODSIG") && has("VALIDSIG") && !has("BADSIG") && !has("ERRSIG")
}

impl Client {
    /// `cache_root` as from [`default_cache_dir`]; `None` disables the cache.
    pub fn new(cache_root: Option<PathBuf>, runner: Arc<dyn Runner>) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(300)))
            .user_agent(format!("build-distro/{}", crate::build_inputs::VERSION))
            .build();
        Client {
            agent: config.into(),
            cache: cache_root.map(|r| r.join("indexes")),
            runner,
        }
    }

    /// GET `url`: the body reader on 200, an error naming the URL otherwise.
    fn get(&self, url: &str) -> Result<ureq::Body, Error> {
        interrupted()?;
        let resp = self.agent.get(url).call().map_err(|e| Error::Unreachable {
            url: url.to_string(),
            detail: match e {
                ureq::Error::Io(io) => io.to_string(),
                ureq::Error::HostNotFound => "host not found".into(),
                ureq::Error::ConnectionFailed => "connection refused".into(),
                other => other.to_string(),
            },
        })?;
        match resp.status().as_u16() {
            200 => Ok(resp.into_body()),
            404 => Err(Error::NotFound {
                url: url.to_string(),
            }),
            status => Err(Error::Http {
                url: url.to_string(),
                status,
            }),
        }
    }

    /// The whole body of `url`, at most `limit` bytes. A `file://` URL (a local mirror a
    /// recipe may name) is read from disk.
    pub fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let bytes = self.read_upto(url, limit + 1)?;
        if bytes.len() as u64 > limit {
            return Err(Error::Unreachable {
                url: url.to_string(),
                detail: format!("larger than {limit} bytes"),
            });
        }
        Ok(bytes)
    }

    /// The first `limit` bytes of `url` (all of it when shorter), from disk for `file://`.
    /// Reading one byte more than a verified size promises is enough to know the file is
    /// wrong, so a caller that checks the size asks for that much and no more.
    fn read_upto(&self, url: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let unreachable = |detail: String| Error::Unreachable {
            url: url.to_string(),
            detail,
        };
        let mut bytes = Vec::with_capacity(limit.min(64 << 20) as usize);
        if let Some(path) = url.strip_prefix("file://") {
            interrupted()?;
            let f = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound {
                        url: url.to_string(),
                    })
                }
                Err(e) => return Err(unreachable(e.to_string())),
            };
            f.take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| unreachable(e.to_string()))?;
            return Ok(bytes);
        }
        let mut body = self.get(url)?;
        body.as_reader()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(bytes)
    }

    /// The verified release of `suite` at `base`: `InRelease` fetched, its signature
    /// checked by gpgv against `keyrings`, the signed text parsed, its suite and freshness
    /// checked.
    pub fn release(&self, base: &str, suite: &str, keyrings: &[Keyring]) -> Result<Release, Error> {
        Ok(self.release_signed(base, suite, keyrings)?.0)
    }

    /// [`Client::release`] and the `InRelease` bytes as fetched (the build cache keys on
    /// their SHA-256).
    pub fn release_signed(
        &self,
        base: &str,
        suite: &str,
        keyrings: &[Keyring],
    ) -> Result<(Release, Vec<u8>), Error> {
        let url = dists_url(base, suite, "InRelease");
        let signed = self.fetch(&url, RELEASE_MAX)?;
        let text = self.verify(&url, &signed, keyrings)?;
        let rel = inrelease::parse(&text).map_err(|e| match e {
            Error::Parse { msg, .. } => Error::Parse {
                what: url.clone(),
                msg,
            },
            e => e,
        })?;
        // A signed release of another suite (an older stable, say) must not stand in for
        // this one. Old-style names (`buster/updates`) carry only the codename.
        let names = [rel.suite.as_deref(), rel.codename.as_deref()];
        let wanted = suite.split('/').next().unwrap_or(suite);
        if !names.iter().flatten().any(|n| *n == suite || *n == wanted) {
            return Err(Error::WrongSuite {
                url,
                wanted: suite.to_string(),
                found: names
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
            });
        }
        if let (Some(until), Some(text)) = (rel.valid_until_epoch(), rel.valid_until.as_ref()) {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if until < now {
                return Err(Error::Expired {
                    url,
                    valid_until: text.clone(),
                });
            }
        }
        Ok((rel, signed))
    }

    /// gpgv over `signed`; the signed text on success.
    fn verify(&self, url: &str, signed: &[u8], keyrings: &[Keyring]) -> Result<Vec<u8>, Error> {
        let refuse = |detail: String| Error::Signature {
            url: url.to_string(),
            detail,
        };
        if keyrings.is_empty() {
            return Err(refuse("no keyring given".into()));
        }
        if !signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(refuse("not a clear-signed file".into()));
        }
        let dir = tempfile::Builder::new()
            .prefix("build-distro-gpgv.")
            .tempdir()
            .map_err(|e| refuse(format!("cannot make a temporary directory: {e}")))?;
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, Error> {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).map_err(|e| refuse(format!("write {}: {e}", p.display())))?;
            Ok(p)
        };
        let mut rings = Vec::new();
        for (i, k) in keyrings.iter().enumerate() {
            rings.push(write(&format!("keyring-{i}.gpg"), &k.bytes)?);
        }
        let input = write("InRelease", signed)?;
        let out = dir.path().join("signed-text");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).map_err(|e| refuse(e.to_string()))?;
        let cmd = gpgv_cmd(&home, &rings, &input, &out);
        let status = match self.runner.run(&cmd) {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(crate::runner::Error::Failed { tail, .. }) => {
                let tail = tail.trim_start_matches(": ").to_string();
                return Err(refuse(if tail.is_empty() {
                    "gpgv failed".into()
                } else {
                    format!("gpgv: {tail}")
                }));
            }
            Err(e) => return Err(e.into()),
        };
        if !gpgv_says_valid(&status) {
            return Err(refuse("gpgv reported no good, valid signature".into()));
        }
        std::fs::read(&out).map_err(|e| refuse(format!("gpgv wrote no signed text: {e}")))
    }

    /// The compressed bytes of `path` (as listed in `rel`), verified against `rel`: from
    /// the cache when a verified copy is there, else fetched (by hash when the mirror
    /// offers it, which survives a mirror update between the two requests).
    pub fn index(
        &self,
        base: &str,
        suite: &str,
        rel: &Release,
        path: &str,
    ) -> Result<Vec<u8>, Error> {
        let fh = rel.file(path).ok_or_else(|| Error::Parse {
            what: dists_url(base, suite, "InRelease"),
            msg: format!("does not list {path}"),
        })?;
        if let Some(bytes) = self.cached(fh)? {
            return Ok(bytes);
        }
        let url = if rel.acquire_by_hash {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            dists_url(base, suite, &format!("{dir}/by-hash/SHA256/{}", fh.sha256))
        } else {
            dists_url(base, suite, path)
        };
        let bytes = self.read_upto(&url, fh.size + 1)?;
        check(fh.size, &fh.sha256, &bytes).map_err(|(detail, expected)| Error::Mismatch {
            url: url.clone(),
            detail,
            expected,
        })?;
        self.store(&fh.sha256, &bytes)?;
        Ok(bytes)
    }

    /// A verified cached copy of `fh`, if any (a damaged one is removed).
    fn cached(&self, fh: &FileHash) -> Result<Option<Vec<u8>>, Error> {
        let Some(dir) = &self.cache else {
            return Ok(None);
        };
        let p = dir.join(&fh.sha256);
        let Ok(bytes) = std::fs::read(&p) else {
            return Ok(None);
        };
        if bytes.len() as u64 != fh.size || hex_sha256(&bytes) != fh.sha256 {
            let _ = std::fs::remove_file(&p);
            return Ok(None);
        }
        touch(&p);
        Ok(Some(bytes))
    }

    /// Write a verified file into the cache as `name`: a temporary file renamed into
    /// place, so a reader never sees half a file; then drop entries unused for
    /// [`CACHE_KEEP`].
    fn store(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let Some(dir) = &self.cache else {
            return Ok(());
        };
        let cache_err = |source| Error::Cache {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(cache_err)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(cache_err)?;
        tmp.write_all(bytes).map_err(cache_err)?;
        tmp.persist(dir.join(name))
            .map_err(|e| cache_err(e.error))?;
        if let Ok(rd) = std::fs::read_dir(dir) {
            let now = SystemTime::now();
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > CACHE_KEEP);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Stream the `Packages` index of `component`/`arch` of a verified release through
    /// `each`. `Ok(false)` when the release has no such index (a component or
    /// architecture the suite does not carry).
    pub fn packages(
        &self,
        base: &str,
        suite: &str,
        rel: &Release,
        component: &str,
        arch: &str,
        each: &mut dyn FnMut(packages::Entry),
    ) -> Result<bool, Error> {
        let stem = format!("{component}/binary-{arch}/Packages");
        let Some(path) = [".xz", ".gz", ""]
            .iter()
            .map(|ext| format!("{stem}{ext}"))
            .find(|p| rel.file(p).is_some())
        else {
            return Ok(false);
        };
        let bytes = self.index(base, suite, rel, &path)?;
        let url = dists_url(base, suite, &path);
        let reader: Box<dyn Read + '_> = if path.ends_with(".xz") {
            Box::new(liblzma::read::XzDecoder::new_multi_decoder(&bytes[..]))
        } else if path.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(&bytes[..]))
        } else {
            Box::new(&bytes[..])
        };
        for (i, e) in packages::entries(BufReader::with_capacity(1 << 16, reader)).enumerate() {
            if i % 4096 == 0 {
                interrupted()?;
            }
            let e = e.map_err(|e| match e {
                Error::Parse { msg, .. } => Error::Parse {
                    what: url.clone(),
                    msg,
                },
                e => e,
            })?;
            each(e);
        }
        Ok(true)
    }

    /// The Debian changelog (decompressed) shared by `binaries`, the binary packages of
    /// one source at `source_version` in one suite of the archive at `base`. The smallest
    /// package is fetched first (the changelog is the same in each); one whose doc
    /// directory links to a sibling's leads to that sibling; one without a changelog to
    /// the next. Each `.deb` is accepted only when its size and SHA-256 match its entry
    /// in the signed index. The changelog is cached by the first package's SHA-256
    /// (`SHA256.changelog.gz`, as the package holds it: gzip's check catches damage).
    pub fn changelog(
        &self,
        base: &str,
        source_version: &str,
        binaries: &[Binary],
    ) -> Result<Vec<u8>, Error> {
        let name = deb::changelog_name(source_version);
        let mut order: Vec<&Binary> = binaries.iter().collect();
        order.sort_by(|a, b| (a.file.size, &a.package).cmp(&(b.file.size, &b.package)));
        let first = order.first().ok_or_else(|| Error::Parse {
            what: base.to_string(),
            msg: "no binary package to read a changelog from".into(),
        })?;
        let cache_name = format!("{}.changelog.gz", first.file.sha256);
        if let Some(text) = self.cached_changelog(&cache_name) {
            return Ok(text);
        }
        let url = |b: &Binary| format!("{}/{}", base.trim_end_matches('/'), b.file.filename);
        let mut tried: Vec<&str> = Vec::new();
        let mut next = order.iter().copied();
        let mut link: Option<&Binary> = None;
        while let Some(b) = link
            .take()
            .or_else(|| next.find(|b| !tried.contains(&b.package.as_str())))
        {
            tried.push(&b.package);
            let u = url(b);
            let deb = self.verified_package(&u, &b.file)?;
            match deb::changelog(&u, &deb, &b.package, name)? {
                deb::Doc::Changelog(gz) => {
                    let text = gunzip(&gz).map_err(|e| Error::Parse {
                        what: u.clone(),
                        msg: format!("usr/share/doc/{}/{name}: {e}", b.package),
                    })?;
                    self.store(&cache_name, &gz)?;
                    return Ok(text);
                }
                deb::Doc::Link(other) => {
                    link = order
                        .iter()
                        .copied()
                        .find(|s| s.package == other && !tried.contains(&s.package.as_str()));
                }
                deb::Doc::Missing => {}
            }
        }
        Err(Error::Parse {
            what: url(first),
            msg: format!(
                "no usr/share/doc/PACKAGE/{name} in {} of this source",
                tried.join(", ")
            ),
        })
    }

    /// The `.deb` at `url`, accepted only when its size and SHA-256 are what the signed
    /// index says of it (`file`).
    fn verified_package(&self, url: &str, file: &packages::DebFile) -> Result<Vec<u8>, Error> {
        let deb = self.read_upto(url, file.size + 1)?;
        check(file.size, &file.sha256, &deb).map_err(|(detail, expected)| {
            Error::PackageMismatch {
                url: url.to_string(),
                detail,
                expected,
            }
        })?;
        Ok(deb)
    }

    /// The binary package `file` of the archive at `base`, verified against its signed
    /// index entry; cached by its SHA-256, as indexes are.
    pub fn package(&self, base: &str, file: &packages::DebFile) -> Result<Vec<u8>, Error> {
        let hash = FileHash {
            path: file.filename.clone(),
            sha256: file.sha256.clone(),
            size: file.size,
        };
        if let Some(deb) = self.cached(&hash)? {
            return Ok(deb);
        }
        let url = format!("{}/{}", base.trim_end_matches('/'), file.filename);
        let deb = self.verified_package(&url, file)?;
        self.store(&file.sha256, &deb)?;
        Ok(deb)
    }

    /// A cached changelog that still decompresses (a damaged one is removed).
    fn cached_changelog(&self, name: &str) -> Option<Vec<u8>> {
        let p = self.cache.as_ref()?.join(name);
        let gz = std::fs::read(&p).ok()?;
        match gunzip(&gz) {
            Ok(text) => {
                touch(&p);
                Some(text)
            }
            Err(_) => {
                let _ = std::fs::remove_file(&p);
                None
            }
        }
    }

    /// An Alpine repository's index, its signature verified with `openssl` against `keys`
    /// (the tree's `/etc/apk/keys`, by file name): `repo` is the repository
    /// (`…/v3.20/main`), `arch` the apk architecture.
    pub fn apk_index(
        &self,
        repo: &str,
        arch: &str,
        keys: &[Keyring],
    ) -> Result<Vec<apkindex::Entry>, Error> {
        let url = format!("{}/{arch}/APKINDEX.tar.gz", repo.trim_end_matches('/'));
        let bytes = self.fetch(&url, 256 << 20)?;
        let with_url = |e: Error| match e {
            Error::Parse { msg, .. } => Error::Parse {
                what: url.clone(),
                msg,
            },
            e => e,
        };
        let signed = apkindex::signature(&bytes).map_err(|e| Error::Signature {
            url: url.clone(),
            detail: match e {
                Error::Parse { msg, .. } => msg,
                e => e.to_string(),
            },
        })?;
        self.verify_apk(&url, &signed, keys)?;
        apkindex::from_tar_gz(signed.signed).map_err(with_url)
    }

    fn verify_apk(
        &self,
        url: &str,
        s: &apkindex::Signed<'_>,
        keys: &[Keyring],
    ) -> Result<(), Error> {
        let refuse = |detail: String| Error::Signature {
            url: url.to_string(),
            detail,
        };
        let key = keys
            .iter()
            .find(|k| k.name.rsplit('/').next() == Some(s.key.as_str()))
            .ok_or_else(|| {
                refuse(format!(
                    "signed by {}, a key the tree does not have in /etc/apk/keys",
                    s.key
                ))
            })?;
        let dir = tempfile::Builder::new()
            .prefix("build-distro-apk.")
            .tempdir()
            .map_err(|e| refuse(format!("cannot make a temporary directory: {e}")))?;
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, Error> {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).map_err(|e| refuse(format!("write {}: {e}", p.display())))?;
            Ok(p)
        };
        let cmd = openssl_verify_cmd(
            s.digest,
            &write("key.pem", &key.bytes)?,
            &write("signature", &s.signature)?,
            &write("signed", s.signed)?,
        );
        match self.runner.run(&cmd) {
            Ok(_) => Ok(()),
            Err(crate::runner::Error::Failed { tail, .. }) => Err(refuse(format!(
                "openssl: {}",
                tail.trim_start_matches(": ")
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// `openssl dgst` checking an RSA signature of `data` with the PEM public `key`.
pub fn openssl_verify_cmd(digest: apkindex::Digest, key: &Path, sig: &Path, data: &Path) -> Cmd {
    let d = match digest {
        apkindex::Digest::Sha1 => "-sha1",
        apkindex::Digest::Sha256 => "-sha256",
    };
    Cmd::new("openssl")
        .args(["dgst", d, "-verify"])
        .arg(key)
        .arg("-signature")
        .arg(sig)
        .arg(data)
}

/// One binary package of a source, for [`Client::changelog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub package: String,
    pub file: packages::DebFile,
}

/// A whole gzip stream (every member), its checksum verified.
fn gunzip(gz: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out)?;
    Ok(out)
}

/// Mark a cache entry used, for the pruning in `store`.
fn touch(p: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Size and SHA-256 of fetched bytes against a verified entry: on a mismatch, what was
/// wrong and what was expected.
fn check(size: u64, sha256: &str, bytes: &[u8]) -> Result<(), (String, String)> {
    let expected = format!("{size} bytes, sha256 {sha256}");
    if bytes.len() as u64 != size {
        return Err((
            format!("size mismatch: got {} bytes", bytes.len()),
            expected,
        ));
    }
    let got = hex_sha256(bytes);
    if got != sha256 {
        return Err((format!("sha256 mismatch: got {got}"), expected));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("InRelease");
        std::fs::write(&p, b"signed").unwrap();
        let c = Client::new(None, Arc::new(crate::runner::Recording::default()));
        let url = format!("file://{}", p.display());
        assert_eq!(c.fetch(&url, 100).unwrap(), b"signed");
        assert!(c.fetch(&url, 3).is_err(), "over the limit");
        let missing = format!("file://{}/nope", dir.path().display());
        assert!(matches!(
            c.fetch(&missing, 100),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn gpgv_vector() {
        let c = gpgv_cmd(
            Path::new("/t/home"),
            &[PathBuf::from("/t/k0.gpg"), PathBuf::from("/t/k1.gpg")],
            Path::new("/t/InRelease"),
            Path::new("/t/out"),
        );
        assert_eq!(
            c.display(),
            "gpgv --homedir /t/home --status-fd 1 --keyring /t/k0.gpg --keyring /t/k1.gpg --output /t/out /t/InRelease"
        );
    }

    #[test]
    fn openssl_vector() {
        let c = openssl_verify_cmd(
            apkindex::Digest::Sha256,
            Path::new("/t/k.pem"),
            Path::new("/t/sig"),
            Path::new("/t/data"),
        );
        assert_eq!(
            c.display(),
            "openssl dgst -sha256 -verify /t/k.pem -signature /t/sig /t/data"
        );
    }

    #[test]
    fn gpgv_status_needs_good_and_valid() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 54404762BBB6E853 Debian\n[GNUPG:] VALIDSIG ED54 2026-11-30\n";
        assert!(gpgv_says_valid(good));
        assert!(!gpgv_says_valid(
            "[GNUPG:] GOODSIG 1 x\n[GNUPG:] EXPKEYSIG 1 x\n"
        ));
        assert!(!gpgv_says_valid(&format!("{good}[GNUPG:] BADSIG 2 y\n")));
        assert!(!gpgv_says_valid(""));
    }

    #[test]
    fn index_check_names_size_and_hash() {
        let data = b"Package: a\n";
        let fh = FileHash {
            path: "main/binary-amd64/Packages".into(),
            size: data.len() as u64,
            sha256: hex_sha256(data),
        };
        assert!(check(fh.size, &fh.sha256, data).is_ok());
        let (detail, expected) = check(fh.size, &fh.sha256, b"Package: b\n").unwrap_err();
        assert!(detail.starts_with("sha256 mismatch: got "), "{detail}");
        assert_eq!(expected, format!("11 bytes, sha256 {}", fh.sha256));
        let (detail, _) = check(fh.size, &fh.sha256, b"short").unwrap_err();
        assert_eq!(detail, "size mismatch: got 5 bytes");
    }

    #[test]
    fn cache_stores_verified_files_and_drops_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(
            Some(dir.path().to_path_buf()),
            Arc::new(crate::runner::Recording::default()),
        );
        let data = b"xz bytes".to_vec();
        let fh = FileHash {
            path: "main/binary-amd64/Packages.xz".into(),
            size: data.len() as u64,
            sha256: hex_sha256(&data),
        };
        assert_eq!(c.cached(&fh).unwrap(), None);
        c.store(&fh.sha256, &data).unwrap();
        let file = dir.path().join("indexes").join(&fh.sha256);
        assert!(file.is_file());
        assert_eq!(c.cached(&fh).unwrap(), Some(data));
        std::fs::write(&file, b"damaged!").unwrap();
        assert_eq!(c.cached(&fh).unwrap(), None);
        assert!(!file.exists(), "a damaged entry is removed");
    }

    #[test]
    fn cache_dir_follows_the_environment_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        static ALL: [(&str, &str); 3] = [
            ("BUILD_DISTRO_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir_from(env(&ALL)), Some("/c".into()));
        assert_eq!(
            cache_dir_from(env(&ALL[1..])),
            Some("/x/build-distro".into())
        );
        assert_eq!(
            cache_dir_from(env(&ALL[2..])),
            Some("/h/.cache/build-distro".into())
        );
        assert_eq!(
            cache_dir_from(env(&[("BUILD_DISTRO_CACHE_DIR", ""), ("HOME", "/h")])),
            Some("/h/.cache/build-distro".into()),
            "an empty variable counts as unset"
        );
        assert_eq!(cache_dir_from(env(&[])), None);
    }
}
