//! `imgferry check` (being written).

use super::{Failure, Output};
use crate::exit::ExitCode;

/// Arguments of `imgferry check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

/// Runs the command.
pub fn run(_args: CheckArgs, _output: &Output) -> Result<ExitCode, Failure> {
    Err(Failure::new("not implemented yet"))
}
