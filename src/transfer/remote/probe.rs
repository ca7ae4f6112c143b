//! [`probe_range`]: does this image's store serve byte ranges?
//!
//! One request, `Range: bytes=0-511` (fewer for a smaller image): only a `206` whose
//! `Content-Range` names exactly those bytes of the recorded size, followed by exactly
//! that many bytes, means yes. A `200` (the store ignores `Range`), a `400`/`416` (rbd,
//! swift and s3 stores refuse it) or any other `206` means no, with the reason. Owns the
//! judgement only; what to do without ranges (run staged) is the pipeline's.

use std::io::Read;

use super::RemoteError;
use crate::cloud::glance::{Glance, Image, RangeAnswer};
use crate::transfer::retry::RetryPolicy;

/// Bytes asked for by the probe.
const PROBE_BYTES: u64 = 512;

/// Whether random access works, and why not when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeSupport {
    Supported,
    Unsupported { reason: String },
}

/// Probes `image`'s data with one range request (transient failures retried a few
/// times). A size of 0 or none is reported as unsupported.
pub fn probe_range(glance: &mut Glance, image: &Image) -> Result<RangeSupport, RemoteError> {
    let unsupported = |reason: String| Ok(RangeSupport::Unsupported { reason });
    let size = match image.size {
        Some(size) if size > 0 => size,
        _ => return unsupported(format!("image {} records no data size", image.id)),
    };
    let end = PROBE_BYTES.min(size) - 1;
    let asked = format!("Range: bytes=0-{end}");
    let answer = RetryPolicy::metadata().run(|| glance.read_range(&image.id, 0, end))?;
    match answer {
        RangeAnswer::Partial {
            start,
            end: to,
            total,
            body,
        } => {
            if start != 0 || to != end || total != Some(size) {
                let total = total.map_or_else(|| "*".to_owned(), |t| t.to_string());
                return unsupported(format!(
                    "the store answered {asked} with Content-Range bytes {start}-{to}/{total} (the image has {size} bytes)"
                ));
            }
            let mut data = Vec::with_capacity(PROBE_BYTES as usize);
            let read = body.take(end + 1).read_to_end(&mut data);
            if data.len() as u64 != end + 1 {
                let cause = read.err().map(|e| format!(": {e}")).unwrap_or_default();
                return unsupported(format!(
                    "the store answered {asked} with {} of {} bytes{cause}",
                    data.len(),
                    end + 1
                ));
            }
            Ok(RangeSupport::Supported)
        }
        RangeAnswer::Ignored { .. } => unsupported(format!(
            "the store ignored {asked} and answered 200 with the whole image"
        )),
        RangeAnswer::Refused { status, message } => unsupported(format!(
            "the store refused {asked} with HTTP {status}{}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
        RangeAnswer::Garbled { content_range } => unsupported(format!(
            "the store answered {asked} with 206 and Content-Range {content_range:?}"
        )),
    }
}
