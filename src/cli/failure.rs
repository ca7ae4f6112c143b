//! [`Failure`]: a command's error with its exit code and an optional hint.
//!
//! Library errors convert into a `Failure` here, so the mapping from error kinds to exit
//! codes and hints lives in one place per layer.

use std::error::Error as StdError;

use crate::exit::ExitCode;

/// What a command hands back when it fails.
#[derive(Debug)]
pub struct Failure {
    /// The error; its `source()` chain is printed as `caused by:` lines.
    pub error: Box<dyn StdError + Send + Sync>,
    /// The process exit code.
    pub code: ExitCode,
    /// What the user might do about it.
    pub hint: Option<String>,
}

impl Failure {
    /// A generic failure (exit 1) from any error.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            code: ExitCode::Failure,
            hint: None,
        }
    }

    /// Sets the exit code.
    pub fn with_code(mut self, code: ExitCode) -> Self {
        self.code = code;
        self
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The error message followed by each distinct cause, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut lines = vec![self.error.to_string()];
        let mut next = self.error.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            // A wrapper that already embeds its cause's text would say it twice.
            if !lines.last().is_some_and(|prev| prev.ends_with(&text)) {
                lines.push(text);
            }
            next = cause.source();
        }
        lines
    }
}

impl From<crate::disk::DiskError> for Failure {
    fn from(error: crate::disk::DiskError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}

impl From<crate::hash::HashError> for Failure {
    fn from(error: crate::hash::HashError) -> Self {
        let code = error.exit_code();
        Self {
            error: Box::new(error),
            code,
            hint: None,
        }
    }
}

impl From<crate::cloud::CloudError> for Failure {
    fn from(error: crate::cloud::CloudError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}

impl From<crate::guest::GuestError> for Failure {
    fn from(error: crate::guest::GuestError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}

impl From<crate::sysprep::SysprepError> for Failure {
    fn from(error: crate::sysprep::SysprepError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}

impl From<crate::transfer::TransferError> for Failure {
    fn from(error: crate::transfer::TransferError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}

impl From<crate::pipeline::PipelineError> for Failure {
    fn from(error: crate::pipeline::PipelineError) -> Self {
        let code = error.exit_code();
        let hint = error.hint();
        Self {
            error: Box::new(error),
            code,
            hint,
        }
    }
}
