//! [`RemoteError`]: what can go wrong reading an image's data at random offsets.
//!
//! Each variant names the image and the bytes asked for. A server that answers wrongly
//! (ignores `Range`, names other bytes, sends fewer) is an error, never a panic; only
//! transport failures, 5xx answers and bodies cut short are retried.

use crate::cloud::CloudError;

/// Errors of the remote random-access reader.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("image {image} has no recorded size: it cannot be read at random offsets")]
    SizeUnknown { image: String },
    #[error("reading bytes {start}-{end} of image {image}: the server ignored Range and answered 200 (the store cannot serve ranges)")]
    RangeIgnored { image: String, start: u64, end: u64 },
    #[error("reading bytes {start}-{end} of image {image}: the server refused the range with HTTP {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    RangeRefused {
        image: String,
        start: u64,
        end: u64,
        status: u16,
        message: Option<String>,
    },
    #[error("reading bytes {start}-{end} of image {image}: the server answered 206 with Content-Range {got:?}")]
    WrongRange {
        image: String,
        start: u64,
        end: u64,
        got: String,
    },
    #[error("reading {len} bytes at {offset} of image {image}: past its end ({size} bytes)")]
    PastEnd {
        image: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error(
        "reading bytes {start}-{end} of image {image} failed after {attempts} attempts: {last}"
    )]
    RetriesExhausted {
        image: String,
        start: u64,
        end: u64,
        attempts: u32,
        last: String,
    },
    #[error("interrupted (SIGINT or SIGTERM)")]
    Interrupted(#[from] crate::interrupt::Interrupted),
}

impl From<RemoteError> for std::io::Error {
    fn from(error: RemoteError) -> Self {
        let kind = match error {
            RemoteError::PastEnd { .. } => std::io::ErrorKind::UnexpectedEof,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}
