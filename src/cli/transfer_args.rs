//! Flags shared by `download` and `upload`: how patiently to retry.
//!
//! Owns turning `--retries` / `--retry-delay` into a [`RetryPolicy`]. It must not print.

use std::time::Duration;

use crate::transfer::RetryPolicy;

/// Retry flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// Failures in a row tolerated (dropped connection, HTTP 5xx/408/429) before giving up;
    /// 0 fails at the first.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// Seconds to wait after the first failure (doubled after each further one, at most 30).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = seconds)]
    pub retry_delay: f64,
}

impl RetryArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> RetryPolicy {
        let first_delay = Duration::from_secs_f64(self.retry_delay);
        RetryPolicy {
            retries: self.retries,
            first_delay,
            max_delay: Duration::from_secs(30).max(first_delay),
        }
    }
}

/// A non-negative, finite number of seconds of at most a day.
pub fn seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&value) {
        return Err(format!("{text} is not between 0 and 86400 seconds"));
    }
    Ok(value)
}
