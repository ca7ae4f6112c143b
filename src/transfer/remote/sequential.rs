//! [`SequentialBody`]: an image's whole data as one `Read`, from ONE `GET /file` that is
//! resumed with `Range: bytes=N-` when its connection drops or the server answers 5xx.
//!
//! For the one-pass producer: whoever reads (the producer, and the upload it feeds) just
//! waits while the body is re-opened; no byte is delivered twice or skipped. A server
//! that answers a resume with the whole image (`200`), another start, or refuses the
//! range cannot continue this stream: that is an error (the caller restarts from byte 0,
//! with a fresh digest). Counts the requests and resumes.

use std::io::{self, Read};

use super::RemoteError;
use crate::cloud::glance::{DataResponse, Glance};
use crate::transfer::retry::{is_transient, RetryPolicy};
use crate::transfer::stop::pause;

/// The data of one image, read front to back; see the module doc.
pub struct SequentialBody<'a> {
    glance: &'a mut Glance,
    image: String,
    size: u64,
    retry: RetryPolicy,
    body: Option<Box<dyn Read + Send>>,
    position: u64,
    /// Requests sent (the first GET and every resume attempt).
    pub requests: u32,
    /// Times the body was re-opened at a later byte.
    pub resumes: u32,
}

impl<'a> SequentialBody<'a> {
    /// The data of image `image` (`size` bytes, from its record); nothing is requested
    /// before the first read.
    pub fn new(glance: &'a mut Glance, image: &str, size: u64, retry: RetryPolicy) -> Self {
        Self {
            glance,
            image: image.to_owned(),
            size,
            retry,
            body: None,
            position: 0,
            requests: 0,
            resumes: 0,
        }
    }

    /// Opens the body at `position`, retrying transient failures.
    fn open(&mut self) -> Result<Box<dyn Read + Send>, RemoteError> {
        let mut failures = 0u32;
        loop {
            self.requests += 1;
            let failure = match self.glance.open_data(&self.image, self.position) {
                Ok(DataResponse::Whole { body, .. }) if self.position == 0 => return Ok(body),
                Ok(DataResponse::Partial { start, body, .. }) if start == self.position => {
                    self.resumes += 1;
                    return Ok(body);
                }
                Ok(DataResponse::Whole { .. }) => {
                    return Err(RemoteError::RangeIgnored {
                        image: self.image.clone(),
                        start: self.position,
                        end: self.size.saturating_sub(1),
                    })
                }
                Ok(DataResponse::Partial { start, .. }) => {
                    return Err(RemoteError::WrongRange {
                        image: self.image.clone(),
                        start: self.position,
                        end: self.size.saturating_sub(1),
                        got: format!("bytes {start}-"),
                    })
                }
                Ok(DataResponse::RangeRefused { status, message }) => {
                    return Err(RemoteError::RangeRefused {
                        image: self.image.clone(),
                        start: self.position,
                        end: self.size.saturating_sub(1),
                        status,
                        message,
                    })
                }
                Ok(DataResponse::NoData) => format!("image {} answered 204 (no data)", self.image),
                Err(error) if is_transient(&error) => error.to_string(),
                Err(error) => return Err(error.into()),
            };
            failures += 1;
            if failures > self.retry.retries {
                return Err(RemoteError::RetriesExhausted {
                    image: self.image.clone(),
                    start: self.position,
                    end: self.size.saturating_sub(1),
                    attempts: failures,
                    last: failure,
                });
            }
            pause(self.retry.delay(failures))?;
        }
    }
}

impl Read for SequentialBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut failures = 0u32;
        while self.position < self.size && !buf.is_empty() {
            let mut body = match self.body.take() {
                Some(body) => body,
                None => self.open()?,
            };
            let want = buf.len().min((self.size - self.position) as usize);
            let broke = match body.read(&mut buf[..want]) {
                Ok(0) => format!("the body ended at byte {} of {}", self.position, self.size),
                Ok(n) => {
                    self.position += n as u64;
                    self.body = Some(body);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.body = Some(body);
                    continue;
                }
                Err(e) => format!("the connection broke at byte {}: {e}", self.position),
            };
            crate::interrupt::check().map_err(io::Error::other)?;
            failures += 1;
            if failures > self.retry.retries {
                return Err(RemoteError::RetriesExhausted {
                    image: self.image.clone(),
                    start: self.position,
                    end: self.size.saturating_sub(1),
                    attempts: failures,
                    last: broke,
                }
                .into());
            }
            pause(self.retry.delay(failures)).map_err(io::Error::other)?;
        }
        Ok(0)
    }
}
