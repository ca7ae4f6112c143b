//! Stopping a transfer when SIGINT or SIGTERM asked for it (see [`crate::interrupt`]).
//!
//! Transfers look at the flag between chunks: [`StopReader`] makes a body or a file fail
//! its next read once a stop is requested (the caller then checks the flag and returns
//! [`Interrupted`] instead of treating it as a broken connection), and [`pause`] is a
//! backoff wait that ends early. Owns only those two; what to keep or delete after a stop
//! is the download's and the upload's business.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::interrupt::Interrupted;

/// Longest a wait goes without looking at the stop flag.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A reader whose reads fail with [`Interrupted`] (as an `io::Error`) once a stop is
/// requested. A read already blocked in the kernel finishes first.
pub(crate) struct StopReader<R>(pub(crate) R);

impl<R: Read> Read for StopReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::interrupt::check().map_err(io::Error::other)?;
        self.0.read(buf)
    }
}

/// Sleeps for `delay`, or until a stop is requested (then `Err(Interrupted)`).
pub(crate) fn pause(delay: Duration) -> Result<(), Interrupted> {
    let until = Instant::now() + delay;
    loop {
        crate::interrupt::check()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(CHECK_INTERVAL));
    }
}
