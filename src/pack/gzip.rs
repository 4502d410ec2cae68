//! The parallel gzip writer of `.tar.gz` outputs, with compressed pieces that a later
//! build can reuse.
//!
//! The tar stream is cut into pieces of 1 to 2 MiB and each piece is deflated on its own
//! (no dictionary from the piece before, a sync flush at its end) on every core, so a
//! piece's compressed bytes depend on nothing but its own bytes and the level. The pieces
//! are written in order into one standard gzip member, closed by an empty final block
//! and the CRC-32 and length of the whole stream; `gzip -t`, `tar -z` and every other
//! reader see one ordinary member.
//!
//! **Where pieces are cut.** A piece ends at the start of a tar entry whose name's CRC-32
//! is divisible by [`CANDIDATE`] once it holds [`MIN_PIECE`], or at [`MAX_PIECE`] bytes.
//! The cut points follow the entries' names, not offsets in the stream, so a file added,
//! grown or removed shifts the cuts only until the next chosen name: the pieces after it
//! are the same bytes as before. The same stream always gives the same pieces, whatever
//! the thread count and whether a store is used, so the output is the same bytes with
//! the build cache, without it, and built twice.
//!
//! **Reuse.** With a [`BlockStore`] (the build cache's `blocks/`), each piece is looked up
//! by a key over its bytes, the level and the compressor's fingerprint (the deflate of a
//! fixed probe, so a changed compressor never serves old bytes), and compressed only when
//! missing. An unchanged tree on a warm cache is hashed, not compressed.
//!
//! The framing (a 10-byte header, the final block, an 8-byte trailer) is written here
//! because no crate deflates pieces that can be stored and reused; the deflate itself is
//! flate2's (zlib-rs) and the CRC crc32fast's.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use flate2::{Compress, Compression, FlushCompress};
use sha2::{Digest, Sha256};

/// A piece ends at a chosen entry only once it holds this much: smaller pieces lose
/// ratio (each restarts the deflate window).
const MIN_PIECE: usize = 1 << 20;
/// The longest piece (a large file is cut inside).
const MAX_PIECE: usize = 2 << 20;
/// One entry name in this many may end a piece.
const CANDIDATE: u32 = 8;

/// Where compressed pieces are kept between builds. `get` returns only bytes that are
/// intact (a damaged piece is a miss); `put` never fails the build.
pub trait BlockStore: Sync {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&self, key: &str, deflated: &[u8]);
}

/// A compressed piece, back from a worker.
struct Done {
    seq: u64,
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// The gzip writer: [`Write`] the stream, call [`GzipPieces::entry_starts`] before each
/// tar entry, then [`GzipPieces::finish`]. Workers live in the caller's thread scope.
pub struct GzipPieces<W: Write> {
    out: W,
    piece: Vec<u8>,
    jobs: Option<SyncSender<(u64, Vec<u8>)>>,
    done: Receiver<Done>,
    /// Pieces back from workers, waiting for the ones before them.
    pending: BTreeMap<u64, Done>,
    sent: u64,
    written: u64,
    /// Pieces sent and not yet written, at most: bounds memory.
    in_flight: u64,
    crc: crc32fast::Hasher,
    total: u64,
}

fn workers_gone() -> io::Error {
    io::Error::other("a compression thread stopped")
}

/// Deflate `input` as a run of blocks ending on a byte boundary (a sync flush), with no
/// final block: pieces deflated this way can be concatenated in any order.
fn deflate(c: &mut Compress, input: &[u8]) -> Vec<u8> {
    c.reset();
    let mut out = Vec::with_capacity(input.len() / 2 + 4096);
    loop {
        let read = c.total_in() as usize;
        c.compress_vec(&input[read..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory");
        // The flush is complete when all input is in and output space was left over.
        if c.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// What identifies the compressor at `level`: the SHA-256 of its deflate of a fixed
/// probe (text-like and random-like bytes, so both matching and coding are exercised).
fn fingerprint(level: u32) -> [u8; 32] {
    let mut x: u32 = 0x9e37_79b9;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut probe: Vec<u8> = (0..64 * 1024)
        .map(|_| b"etc/usr/lib/share/doc/ \n"[(next() % 24) as usize])
        .collect();
    for _ in 0..8 * 1024 {
        probe.extend_from_slice(&next().to_le_bytes());
    }
    let mut c = Compress::new(Compression::new(level), false);
    Sha256::new()
        .chain_update(level.to_le_bytes())
        .chain_update(deflate(&mut c, &probe))
        .finalize()
        .into()
}

/// A worker: take pieces, find or deflate them, send them back.
fn work(
    jobs: &Mutex<Receiver<(u64, Vec<u8>)>>,
    done: SyncSender<Done>,
    level: u32,
    store: Option<(&dyn BlockStore, [u8; 32])>,
) {
    let mut c = Compress::new(Compression::new(level), false);
    loop {
        let job = jobs
            .lock()
            .map_err(|_| ())
            .and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok((seq, piece)) = job else { return };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&piece);
        let deflated = match store {
            Some((store, print)) => {
                let key = hex::encode(
                    Sha256::new()
                        .chain_update(print)
                        .chain_update(&piece)
                        .finalize(),
                );
                store.get(&key).unwrap_or_else(|| {
                    let d = deflate(&mut c, &piece);
                    store.put(&key, &d);
                    d
                })
            }
            None => deflate(&mut c, &piece),
        };
        if done.send(Done { seq, deflated, crc }).is_err() {
            return;
        }
    }
}

impl<W: Write> GzipPieces<W> {
    /// Write the gzip header to `out` and start `threads` workers in `scope`.
    pub fn new<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        mut out: W,
        level: u32,
        threads: usize,
        store: Option<&'env dyn BlockStore>,
    ) -> io::Result<Self> {
        // No name, no time; XFL says "best" or "fastest" as gzip does; OS: Unix.
        let xfl = match level {
            9.. => 2,
            0 | 1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        let threads = threads.max(1);
        let in_flight = 2 * threads as u64 + 1;
        let (jobs, job_rx) = mpsc::sync_channel(in_flight as usize);
        let (done_tx, done) = mpsc::sync_channel(in_flight as usize);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let store = store.map(|s| (s, fingerprint(level)));
        for _ in 0..threads {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || work(&job_rx, done_tx, level, store));
        }
        Ok(GzipPieces {
            out,
            piece: Vec::with_capacity(MAX_PIECE),
            jobs: Some(jobs),
            done,
            pending: BTreeMap::new(),
            sent: 0,
            written: 0,
            in_flight,
            crc: crc32fast::Hasher::new(),
            total: 0,
        })
    }

    /// A tar entry named `path` starts here: the piece may end before it.
    pub fn entry_starts(&mut self, path: &Path) -> io::Result<()> {
        if self.piece.len() >= MIN_PIECE
            && crc32fast::hash(path.as_os_str().as_bytes()).is_multiple_of(CANDIDATE)
        {
            self.send_piece()?;
        }
        Ok(())
    }

    fn send_piece(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        while self.sent - self.written >= self.in_flight {
            self.collect(true)?;
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(MAX_PIECE));
        let jobs = self.jobs.as_ref().ok_or_else(workers_gone)?;
        jobs.send((self.sent, piece)).map_err(|_| workers_gone())?;
        self.sent += 1;
        self.collect(false)
    }

    /// Take what the workers finished (waiting for one piece when `wait`) and write
    /// every piece whose turn has come.
    fn collect(&mut self, wait: bool) -> io::Result<()> {
        if wait {
            let d = self.done.recv().map_err(|_| workers_gone())?;
            self.pending.insert(d.seq, d);
        }
        while let Ok(d) = self.done.try_recv() {
            self.pending.insert(d.seq, d);
        }
        while let Some(d) = self.pending.remove(&self.written) {
            self.out.write_all(&d.deflated)?;
            self.crc.combine(&d.crc);
            self.written += 1;
        }
        Ok(())
    }

    /// Send the last piece, write everything, close the stream; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_piece()?;
        self.jobs = None;
        while self.written < self.sent {
            self.collect(true)?;
        }
        let mut last = Vec::with_capacity(16);
        Compress::new(Compression::default(), false)
            .compress_vec(&[], &mut last, FlushCompress::Finish)
            .expect("deflate into memory");
        self.out.write_all(&last)?;
        self.out
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        self.out.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzipPieces<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        self.total += n as u64;
        if self.piece.len() == MAX_PIECE {
            self.send_piece()?;
        }
        Ok(n)
    }

    /// Pieces are cut by content, never by flushes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory store that counts hits.
    #[derive(Default)]
    struct Memory {
        map: Mutex<std::collections::HashMap<String, Vec<u8>>>,
        hits: AtomicUsize,
    }

    impl BlockStore for Memory {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            let got = self.map.lock().unwrap().get(key).cloned();
            if got.is_some() {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            got
        }
        fn put(&self, key: &str, deflated: &[u8]) {
            self.map
                .lock()
                .unwrap()
                .insert(key.into(), deflated.to_vec());
        }
    }

    /// A stream of named "entries": (name, bytes) written with a mark before each.
    fn compress(
        entries: &[(String, Vec<u8>)],
        threads: usize,
        store: Option<&dyn BlockStore>,
    ) -> Vec<u8> {
        std::thread::scope(|s| {
            let mut gz = GzipPieces::new(s, Vec::new(), 6, threads, store).unwrap();
            for (name, bytes) in entries {
                gz.entry_starts(Path::new(name)).unwrap();
                gz.write_all(bytes).unwrap();
            }
            gz.finish().unwrap()
        })
    }

    fn entries(n: usize, seed: u32) -> Vec<(String, Vec<u8>)> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                let len = 20_000 + (i * 7919) % 300_000;
                let bytes = (0..len)
                    .map(|j| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        if j % 3 == 0 {
                            (x % 251) as u8
                        } else {
                            b"abcdefgh"[(x % 8) as usize]
                        }
                    })
                    .collect();
                (format!("usr/share/f{i:05}"), bytes)
            })
            .collect()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // One member: the single-member decoder reads all of it.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn one_member_that_gunzips_to_the_stream_whatever_the_threads() {
        let e = entries(60, 7);
        let stream: Vec<u8> = e.iter().flat_map(|(_, b)| b.clone()).collect();
        let one = compress(&e, 1, None);
        assert_eq!(gunzip(&one), stream);
        assert_eq!(compress(&e, 3, None), one);
        // gzip itself agrees (CRC, length, one member).
        let mut child = std::process::Command::new("gzip")
            .args(["-t"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&one).unwrap();
        assert!(child.wait().unwrap().success());
        // An empty stream is a valid gzip of nothing.
        assert_eq!(gunzip(&compress(&[], 2, None)), b"");
    }

    #[test]
    fn a_store_gives_the_same_bytes_and_an_edit_recompresses_little() {
        let e = entries(80, 11);
        let plain = compress(&e, 2, None);
        let store = Memory::default();
        assert_eq!(compress(&e, 2, Some(&store)), plain);
        let stored = store.map.lock().unwrap().len();
        assert!(stored > 4, "{stored} pieces");
        assert_eq!(store.hits.load(Ordering::Relaxed), 0);
        // Unchanged: every piece comes from the store.
        assert_eq!(compress(&e, 2, Some(&store)), plain);
        assert_eq!(store.hits.load(Ordering::Relaxed), stored);
        // A file grown near the start: the cuts resynchronise, most pieces are reused,
        // and the bytes are what a fresh compression gives.
        let mut edited = e.clone();
        edited[3].1.extend_from_slice(b"a few more bytes");
        store.hits.store(0, Ordering::Relaxed);
        let warm = compress(&edited, 2, Some(&store));
        assert_eq!(warm, compress(&edited, 2, None));
        let hits = store.hits.load(Ordering::Relaxed);
        assert!(hits + 4 >= stored, "only {hits} of {stored} pieces reused");
    }
}
