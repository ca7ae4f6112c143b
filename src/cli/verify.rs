//! `imgferry verify` (being written).

use super::{Failure, Output};
use crate::exit::ExitCode;

/// Arguments of `imgferry verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

/// Runs the command.
pub fn run(_args: VerifyArgs, _output: &Output) -> Result<ExitCode, Failure> {
    Err(crate::hash::HashError::NotImplemented.into())
}
