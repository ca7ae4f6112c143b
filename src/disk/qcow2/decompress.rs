//! Inflating one compressed qcow2 cluster: zlib (raw deflate) or zstd.
//!
//! Owns the codec calls and their output bound: a compressed cluster must inflate to
//! exactly one cluster, as QEMU writes it (the last cluster of an image whose size is
//! not cluster-aligned is zero-padded before compression). More output is refused as a
//! decompression bomb without producing it; less is refused as truncated. Trailing bytes
//! after the stream are allowed, since descriptors are rounded up to 512-byte sectors.
//! Knows nothing about where the compressed bytes come from.
//!
//! Codec states are kept per thread and reset between clusters: setting one up costs
//! about as much as inflating a small cluster, and readers inflate on several threads.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

use super::CompressionType;

/// Largest zstd window accepted (log2): 8 MiB, four times the largest cluster, so a
/// hostile frame cannot make the decoder allocate more. QEMU compresses each cluster as
/// one frame whose window never exceeds the cluster.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Inflates `input` (a compressed cluster, possibly followed by slack bytes) into `out`,
/// which must be exactly one cluster long. Returns the reason when the data is corrupt.
pub fn decompress_cluster(
    kind: CompressionType,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    // One byte more than a cluster, so "the stream wants to continue" is detectable
    // without letting it produce anything beyond that byte.
    let mut spill = [0u8; 1];
    let produced = match kind {
        CompressionType::Zlib => inflate_zlib(input, out, &mut spill)?,
        CompressionType::Zstd => inflate_zstd(input, out, &mut spill)?,
    };
    if produced > out.len() {
        return Err(format!(
            "compressed data inflates to more than a cluster ({} bytes)",
            out.len()
        ));
    }
    if produced < out.len() {
        return Err(format!(
            "compressed data inflates to {produced} bytes, less than a cluster ({} bytes)",
            out.len()
        ));
    }
    Ok(())
}

thread_local! {
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static ZSTD_DECODER: RefCell<Option<Decoder<'static>>> = const { RefCell::new(None) };
}

/// Raw deflate, as QEMU writes it (no zlib header, window bits 12..=15).
fn inflate_zlib(input: &[u8], out: &mut [u8], spill: &mut [u8; 1]) -> Result<usize, String> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = match slot.as_mut() {
            Some(inflater) => {
                inflater.reset(false);
                inflater
            }
            None => slot.insert(Decompress::new(false)),
        };
        inflate_zlib_with(inflater, input, out, spill)
    })
}

fn inflate_zlib_with(
    inflater: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
    spill: &mut [u8; 1],
) -> Result<usize, String> {
    let ended = run_inflate(inflater, input, out)?;
    let filled = inflater.total_out() as usize;
    if ended || filled < out.len() {
        return Ok(filled);
    }
    // The cluster is full but the stream has not ended: does it want to go on?
    let consumed = inflater.total_in() as usize;
    run_inflate(inflater, input.get(consumed..).unwrap_or_default(), spill)?;
    Ok(inflater.total_out() as usize)
}

/// Inflates from `input` into `target` until the stream ends (`true`), `target` is
/// full or no progress is possible.
fn run_inflate(inflater: &mut Decompress, input: &[u8], target: &mut [u8]) -> Result<bool, String> {
    let (in_start, out_start) = (inflater.total_in(), inflater.total_out());
    loop {
        let consumed = (inflater.total_in() - in_start) as usize;
        let written = (inflater.total_out() - out_start) as usize;
        let (Some(rest), Some(space)) = (input.get(consumed..), target.get_mut(written..)) else {
            return Ok(false);
        };
        if space.is_empty() {
            return Ok(false);
        }
        let before = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(rest, space, FlushDecompress::None)
            .map_err(|e| format!("corrupt deflate data: {e}"))?;
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if (inflater.total_in(), inflater.total_out()) == before {
            return Ok(false);
        }
    }
}

/// One zstd frame (QEMU's framing: a single frame per cluster, slack bytes after it).
fn inflate_zstd(input: &[u8], out: &mut [u8], spill: &mut [u8; 1]) -> Result<usize, String> {
    ZSTD_DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decoder = match slot.as_mut() {
            Some(decoder) => {
                // A session reset keeps the window limit set below.
                decoder
                    .reinit()
                    .map_err(|e| format!("cannot reset zstd: {e}"))?;
                decoder
            }
            None => {
                let mut decoder = Decoder::new().map_err(|e| format!("cannot start zstd: {e}"))?;
                decoder
                    .set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                    .map_err(|e| format!("cannot configure zstd: {e}"))?;
                slot.insert(decoder)
            }
        };
        inflate_zstd_with(decoder, input, out, spill)
    })
}

fn inflate_zstd_with(
    decoder: &mut Decoder<'static>,
    input: &[u8],
    out: &mut [u8],
    spill: &mut [u8; 1],
) -> Result<usize, String> {
    let mut source = InBuffer::around(input);
    let (filled, ended) = run_zstd(decoder, &mut source, out)?;
    if ended || filled < out.len() {
        return Ok(filled);
    }
    let (extra, _) = run_zstd(decoder, &mut source, spill)?;
    Ok(filled + extra)
}

/// Decodes into `target` until the frame ends, `target` is full or no progress is
/// possible. Returns the bytes written and whether the frame ended.
fn run_zstd(
    decoder: &mut Decoder<'_>,
    source: &mut InBuffer<'_>,
    target: &mut [u8],
) -> Result<(usize, bool), String> {
    let mut sink = OutBuffer::around(target);
    loop {
        let before = (source.pos(), sink.pos());
        let remaining = decoder
            .run(source, &mut sink)
            .map_err(|e| format!("corrupt zstd data: {e}"))?;
        if remaining == 0 {
            return Ok((sink.pos(), true));
        }
        if sink.pos() == sink.capacity() || (source.pos(), sink.pos()) == before {
            return Ok((sink.pos(), false));
        }
    }
}
