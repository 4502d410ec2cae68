//! Readers every stage that ingests or hashes a stream shares: the one decompression
//! sniffer (gzip or zstd by magic bytes, else as it is) and the hashing reader. Part of
//! the tree floor, so the source backends, the cache, `boot` and `pack` use one copy
//! without importing each other.

use std::io::{BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

/// A reader over a tar that may be gzip- or zstd-compressed (detected by magic bytes).
pub fn decompressed<'a, R: Read + 'a>(r: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let magic = br.fill_buf()?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// A reader that hashes what passes through it: one read serves both the consumer and
/// the sha256 (file content in the manifest, a rootfs tarball, a layer's diff id).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The sha256 of everything read so far, as lowercase hex.
    pub fn hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
