//! The body of the `unpack` fuzz target (`fuzz/fuzz_targets/unpack.rs`), here so that
//! the cargo-fuzz run and the deterministic smoke test in `cargo test` exercise the same
//! code: arbitrary bytes as a tar, as gzip, and as layers over a layer of traps, into a
//! fresh root beside a sentinel directory. Errors are expected; a panic, a change to the
//! sentinel or a cleanup that fails is a finding.

use std::io::Write;
use std::path::Path;

use super::{remove_tree, unpack, Root, UnpackOptions};

/// Small enough that a run never waits on the disk.
const FUZZ_LIMIT: u64 = 8 << 20;

/// Make the blocks that sit where tar headers go carry a correct checksum, so the
/// fuzzer spends its time past the checksum test rather than on it.
pub fn fix_checksums(data: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= data.len() {
        let block = &mut data[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            return;
        }
        let h = tar::Header::from_byte_slice(block);
        let size = h.entry_size().unwrap_or(0);
        let mut h = h.clone();
        h.set_cksum();
        block.copy_from_slice(h.as_bytes());
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| s.checked_add(at + 512))
        else {
            return;
        };
        at = next;
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.expect("walk sentinel");
        let data = if e.file_type().is_file() {
            std::fs::read(e.path()).expect("read sentinel")
        } else {
            Vec::new()
        };
        out.push((e.path().display().to_string(), data));
    }
    out
}

/// A layer that plants links to `outside`, absolute and relative, for the next layer.
fn trap_layer(outside: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "trap", outside).expect("trap");
    b.append_link(&mut h, "up", "../../../../..").expect("trap");
    let mut f = tar::Header::new_gnu();
    f.set_size(1);
    f.set_mode(0o644);
    b.append_data(&mut f, "lower/x", &b"x"[..]).expect("trap");
    b.into_inner().expect("trap")
}

/// One fuzz input. The first byte picks the reader: plain tar, gzip, a layer over the
/// trap layer, or two layers split at the second byte; bit 2 fixes header checksums.
pub fn fuzz_unpack(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rest = rest.to_vec();
    if mode & 4 != 0 {
        fix_checksums(&mut rest);
    }
    let work = tempfile::Builder::new()
        .prefix("bd-fuzz.")
        .tempdir()
        .expect("tempdir");
    let outside = work.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).expect("sentinel");
    std::fs::write(outside.join("a"), b"sentinel").expect("sentinel");
    let before = snapshot(&outside);
    let root_dir = work.path().join("root");
    std::fs::create_dir(&root_dir).expect("root");
    let root = Root::open(&root_dir).expect("root");
    let opts = |whiteouts| UnpackOptions {
        whiteouts,
        max_bytes: FUZZ_LIMIT,
        label: "fuzz".into(),
    };
    match mode & 3 {
        0 => {
            let _ = unpack(rest.as_slice(), &root, &opts(false));
        }
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&rest).expect("gzip");
            let gz = e.finish().expect("gzip");
            let _ = unpack(gz.as_slice(), &root, &opts(false));
        }
        2 => {
            unpack(trap_layer(&outside).as_slice(), &root, &opts(true)).expect("trap layer");
            let _ = unpack(rest.as_slice(), &root, &opts(true));
        }
        _ => {
            let cut = rest
                .first()
                .map_or(0, |b| *b as usize * 512)
                .min(rest.len());
            let (a, b) = rest.split_at(cut);
            let _ = unpack(a, &root, &opts(true));
            let _ = unpack(b, &root, &opts(true));
        }
    }
    assert_eq!(
        before,
        snapshot(&outside),
        "unpack changed a file outside the root"
    );
    let left = remove_tree(&root_dir).expect("cleanup");
    assert!(left.is_empty(), "cleanup left {left:?}");
}
