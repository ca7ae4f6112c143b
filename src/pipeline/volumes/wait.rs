//! Waiting for a Cinder or Glance object to reach a status, with a deadline that grows
//! with the data involved (a fixed limit fails large volumes: 200 GiB can take hours on
//! a slow backend), polling less often as the wait goes on, and stopping on Ctrl-C.
//!
//! Owns the timing of waits only; what to ask the cloud is the caller's closure.

use std::time::{Duration, Instant};

use crate::cloud::CloudError;
use crate::pipeline::error::{PipelineError, Result};
use crate::transfer::RetryPolicy;

/// Time every wait gets, whatever the size.
const BASE: Duration = Duration::from_secs(300);
/// Time added per GiB of data (about 17 MiB/s, slower than any working backend).
const PER_GIB: Duration = Duration::from_secs(60);
/// Longest pause between two looks.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

/// The deadline for an operation moving `gib` GiB.
pub fn deadline_for(gib: u64) -> Duration {
    BASE.saturating_add(PER_GIB.saturating_mul(u32::try_from(gib).unwrap_or(u32::MAX)))
}

/// Repeats an idempotent call (a read, a listing, a delete) after a transient failure:
/// a reset connection (a pooled one the server closed during a long wait), a 5xx.
pub fn retry<T>(
    call: impl FnMut() -> std::result::Result<T, CloudError>,
) -> std::result::Result<T, CloudError> {
    RetryPolicy::metadata().run(call)
}

/// What one look found.
pub enum Look<T> {
    /// Reached the wanted status.
    Done(T),
    /// Still on its way, with the status it has now.
    Pending(String),
}

/// Whether Ctrl-C ends a wait (not while cleaning up after one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    Stop,
    Continue,
}

/// Calls `look` until it says done, fails, or `limit` has passed; `what` names the
/// object in the timeout error.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    look: impl FnMut() -> Result<Look<T>>,
) -> Result<T> {
    wait_with(what, limit, OnInterrupt::Stop, look)
}

/// [`wait_until`], choosing what Ctrl-C does.
pub fn wait_with<T>(
    what: &str,
    limit: Duration,
    on_interrupt: OnInterrupt,
    mut look: impl FnMut() -> Result<Look<T>>,
) -> Result<T> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(250);
    loop {
        match look()? {
            Look::Done(value) => return Ok(value),
            Look::Pending(status) => {
                if started.elapsed() >= limit {
                    return Err(PipelineError::WaitTimedOut {
                        what: what.to_owned(),
                        status,
                        seconds: limit.as_secs(),
                    });
                }
            }
        }
        if on_interrupt == OnInterrupt::Stop {
            crate::interrupt::check()?;
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_grow_with_size_and_never_overflow() {
        assert!(deadline_for(200) > deadline_for(1));
        assert!(deadline_for(200) >= Duration::from_secs(200 * 60));
        let _ = deadline_for(u64::MAX);
    }

    #[test]
    fn a_wait_ends_done_failed_or_timed_out() {
        let mut looks = 0;
        let value = wait_until("x", Duration::from_secs(60), || {
            looks += 1;
            Ok(if looks < 2 {
                Look::Pending("creating".into())
            } else {
                Look::Done(7)
            })
        })
        .unwrap();
        assert_eq!(value, 7);
        let error = wait_until::<()>("volume v", Duration::ZERO, || {
            Ok(Look::Pending("creating".into()))
        })
        .unwrap_err();
        assert!(error.to_string().contains("volume v"), "{error}");
        assert!(error.to_string().contains("creating"), "{error}");
    }
}
