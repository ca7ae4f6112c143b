//! Process exit codes, in one place so the README table and the code cannot drift.
//!
//! Lower layers never exit; they return typed errors that map onto these codes through
//! [`ExitCode::for_failure`] implementations in the CLI.

/// The documented exit codes of every `imgferry` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// The command did what was asked.
    Success = 0,
    /// The command failed (I/O error, unsupported input, server error, ...).
    Failure = 1,
    /// The command line was wrong (unknown flag, missing argument, bad value).
    Usage = 2,
    /// Verification failed: a digest did not match, or `check` found corruption.
    VerificationFailed = 3,
    /// `check` found leaked clusters but no corruption: the data is safe, space is wasted.
    LeaksFound = 4,
    /// Stopped by SIGINT (Ctrl-C) or SIGTERM after cleaning up (128 + SIGINT, as a
    /// shell reports a command killed by Ctrl-C).
    Interrupted = 130,
}

impl ExitCode {
    /// The numeric code handed to the operating system.
    pub fn code(self) -> i32 {
        self as i32
    }
}
