//! Flattening: apply an image's layers, in order, onto an empty tree. The one path every
//! daemonless image source takes (an image archive read in place, a registry's blobs as
//! they arrive), so whiteouts (`.wh.NAME`), opaque directories (`.wh..wh..opq`) and hard
//! links to files of lower layers mean the same whatever the image came from. The rules
//! themselves are in [`crate::tree::unpack`]; this module sequences the layers,
//! decompresses them (gzip, zstd or plain, by magic bytes) and checks each one's
//! uncompressed content against the config's `rootfs.diff_ids`, so a corrupt layer is an
//! error, never a quietly different tree.

use std::io::Read;

use super::{Error, Interruptible, SourceCtx};
use crate::tree::{decompressed, HashingReader};
use crate::tree::{unpack_overlapped, Root, UnpackOptions};

/// One layer to apply: its name for messages (a digest, an archive path) and its bytes
/// as stored (compressed or not).
pub struct Layer<'a> {
    pub name: String,
    pub reader: Box<dyn Read + 'a>,
}

/// Apply `layers` onto `root` in the order they come, checking the i-th against
/// `diff_ids[i]` (when the config lists them; an empty list checks nothing). `origin`
/// names the image in messages; `count` is the number of layers the manifest lists.
/// The iterator may block (a layer still downloading) and may fail (a download that
/// gave up): its error ends the flattening.
pub fn flatten<'a>(
    layers: impl Iterator<Item = Result<Layer<'a>, Error>>,
    count: usize,
    diff_ids: &[String],
    root: &Root,
    origin: &str,
    ctx: &SourceCtx,
) -> Result<(), Error> {
    let input = |msg: String| Error::Input {
        path: origin.to_string(),
        msg,
    };
    if !diff_ids.is_empty() && diff_ids.len() != count {
        return Err(input(format!(
            "the config lists {} layers but the manifest {count}",
            diff_ids.len()
        )));
    }
    for (i, layer) in layers.enumerate() {
        crate::interrupt::check_interrupted().map_err(|_| Error::Interrupted)?;
        let Layer { name, reader } = layer?;
        let label = format!("{origin}: layer {}/{count} ({name})", i + 1);
        let stream = decompressed(Interruptible(reader))
            .map_err(|e| input(format!("layer {name}: cannot read: {e}")))?;
        // Hashed as it is read, to check the layer against its diff id.
        let mut hashing = HashingReader::new(stream);
        let opts = UnpackOptions {
            whiteouts: true,
            label,
            max_bytes: ctx.max_unpack_bytes,
        };
        let result = unpack_overlapped(&mut hashing, root, &opts);
        if crate::interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let stats = result?;
        ctx.reporter.debug(&format!(
            "{origin}: layer {}/{count}: {} entries, {} whiteouts",
            i + 1,
            stats.entries,
            stats.whiteouts
        ));
        // The tar reader stops at the end marker: hash the padding after it too.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| input(format!("layer {name}: corrupt: {e}")))?;
        if let Some(want) = diff_ids.get(i) {
            let got = format!("sha256:{}", hashing.hex());
            if &got != want {
                return Err(input(format!(
                    "layer {name} is corrupt: its content hashes to {got}, the config says {want}"
                )));
            }
        }
    }
    Ok(())
}
