//! Ctrl-C and SIGTERM as a request to stop cleanly.
//!
//! A command that writes files calls [`install`] once; from then on SIGINT or SIGTERM
//! only sets a flag, and long loops call [`check`] between chunks of work and return
//! [`Interrupted`] through their normal error path, which removes temporary files.
//! The command then exits with [`ExitCode::Interrupted`](crate::exit::ExitCode) (130,
//! the shell's code for "killed by SIGINT"). A second signal while the first is still
//! pending ends the process at once with 130, without cleanup.
//!
//! Owns the flag and the handlers. Must not: print, or decide what to clean up.

use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status of a process stopped by a signal it handled (128 + SIGINT).
pub const EXIT_STATUS: i32 = 130;

/// Set by the signal handler; never cleared.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The work stopped because SIGINT or SIGTERM arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted (SIGINT or SIGTERM); nothing was left behind")]
pub struct Interrupted;

/// Routes SIGINT and SIGTERM to the flag (a second one exits at once).
pub fn install() -> std::io::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_STATUS, &REQUESTED)?;
        signal_hook::flag::register(signal, &REQUESTED)?;
    }
    Ok(())
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once a stop was requested: call it between chunks of work.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
