//! [`RetryPolicy`]: how often and how patiently a transfer retries, and which failures
//! are worth retrying at all.
//!
//! Transient means the next attempt may succeed: the connection failed or dropped, or
//! the server answered 5xx, 408 or 429. A 4xx such as 403 or 404 will not change by
//! waiting and is returned at once. Owns no I/O besides sleeping.

use std::time::Duration;

use crate::cloud::CloudError;

/// Retries after failures that made no progress, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failures in a row tolerated before giving up (0: fail at the first one). A download
    /// that makes progress between two failures starts counting again.
    pub retries: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `failures + 1` (`failures` >= 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

impl RetryPolicy {
    /// For a metadata request (set a property, add a member, delete a record) whose
    /// failure would waste or strand a finished transfer: a few quick retries of
    /// transient answers (a Glance on SQLite answers a concurrent write with 500
    /// "database is locked").
    pub fn metadata() -> Self {
        Self {
            retries: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
        }
    }

    /// Runs `request` until it succeeds, fails for good, or failed transiently more
    /// than `retries` times in a row. Only for requests that are safe to repeat.
    pub fn run<T>(
        &self,
        mut request: impl FnMut() -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let mut failures = 0u32;
        loop {
            match request() {
                Err(error) if is_transient(&error) && failures < self.retries => {
                    failures += 1;
                    std::thread::sleep(self.delay(failures));
                }
                result => return result,
            }
        }
    }
}

/// Whether waiting and trying again may help.
pub(crate) fn is_transient(error: &CloudError) -> bool {
    match error {
        CloudError::Unreachable { .. } => true,
        CloudError::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            retries: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn only_server_and_transport_failures_are_transient() {
        let http = |status| CloudError::Http {
            method: "GET",
            url: "http://g/".into(),
            status,
            message: None,
        };
        assert!(is_transient(&http(503)));
        assert!(is_transient(&http(429)));
        assert!(!is_transient(&http(403)));
        assert!(!is_transient(&http(404)));
    }

    #[test]
    fn run_retries_transient_failures_only_and_gives_up_after_retries() {
        let policy = RetryPolicy {
            retries: 2,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let http = |status| CloudError::Http {
            method: "PATCH",
            url: "http://g/".into(),
            status,
            message: None,
        };
        let mut calls = 0;
        let ok = policy.run(|| {
            calls += 1;
            if calls < 3 {
                Err(http(500))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(ok.unwrap(), 3);
        let mut calls = 0;
        let failed: Result<(), _> = policy.run(|| {
            calls += 1;
            Err(http(503))
        });
        assert!(failed.is_err());
        assert_eq!(calls, 3, "one attempt and two retries");
        let mut calls = 0;
        let refused: Result<(), _> = policy.run(|| {
            calls += 1;
            Err(http(403))
        });
        assert!(refused.is_err());
        assert_eq!(calls, 1, "a 403 is not retried");
    }
}
