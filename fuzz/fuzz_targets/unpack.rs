//! Arbitrary bytes into the tar ingest: as a tar, as gzip, as a layer over a layer of
//! traps, and as two layers (the first input byte chooses; see `tree::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    build_distro::tree::fuzz::fuzz_unpack(data);
});
