//! One range of a remote image, fetched whole: `Range: bytes=A-B`, the answer checked
//! against what was asked, the body read to exactly its length, retried with backoff
//! after transport failures, 5xx answers and bodies cut short.
//!
//! Owns the checks of one answer and the retry loop; the cache and the readahead that
//! decide which range to ask for are [`super`]'s. Memory: one buffer of the range's
//! length, which the caller bounds.

use std::io::Read;

use super::{RemoteError, RemoteStats};
use crate::cloud::glance::{Glance, RangeAnswer};
use crate::transfer::retry::{is_transient, RetryPolicy};
use crate::transfer::stop::{pause, StopReader};

/// What one fetch needs to know besides the range.
pub(super) struct Target<'a> {
    pub(super) image: &'a str,
    pub(super) size: u64,
    pub(super) retry: &'a RetryPolicy,
}

/// The bytes `[start, start + len)` (`len` > 0, inside the image).
pub(super) fn fetch(
    glance: &mut Glance,
    target: &Target<'_>,
    start: u64,
    len: usize,
    stats: &mut RemoteStats,
) -> Result<Vec<u8>, RemoteError> {
    let end = start + len as u64 - 1;
    let image = || target.image.to_owned();
    let mut failures = 0u32;
    loop {
        stats.requests += 1;
        let failure = match glance.read_range(target.image, start, end) {
            Ok(RangeAnswer::Partial {
                start: from,
                end: to,
                total,
                body,
            }) => {
                if from != start || to != end || total.is_some_and(|t| t != target.size) {
                    let total = total.map_or_else(|| "*".to_owned(), |t| t.to_string());
                    return Err(RemoteError::WrongRange {
                        image: image(),
                        start,
                        end,
                        got: format!("bytes {from}-{to}/{total}"),
                    });
                }
                let mut data = Vec::with_capacity(len);
                let result = StopReader(body).take(len as u64).read_to_end(&mut data);
                stats.bytes += data.len() as u64;
                if data.len() == len {
                    return Ok(data);
                }
                crate::interrupt::check()?;
                match result {
                    Err(error) => format!(
                        "the connection broke after {} of {len} bytes: {error}",
                        data.len()
                    ),
                    Ok(_) => format!("the body ended after {} of {len} bytes", data.len()),
                }
            }
            Ok(RangeAnswer::Ignored { .. }) => {
                return Err(RemoteError::RangeIgnored {
                    image: image(),
                    start,
                    end,
                })
            }
            Ok(RangeAnswer::Refused { status, message }) => {
                return Err(RemoteError::RangeRefused {
                    image: image(),
                    start,
                    end,
                    status,
                    message,
                })
            }
            Ok(RangeAnswer::Garbled { content_range }) => {
                return Err(RemoteError::WrongRange {
                    image: image(),
                    start,
                    end,
                    got: content_range,
                })
            }
            Err(error) if is_transient(&error) => error.to_string(),
            Err(error) => return Err(error.into()),
        };
        failures += 1;
        if failures > target.retry.retries {
            return Err(RemoteError::RetriesExhausted {
                image: image(),
                start,
                end,
                attempts: failures,
                last: failure,
            });
        }
        stats.retries += 1;
        pause(target.retry.delay(failures))?;
    }
}
