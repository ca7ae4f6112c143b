//! `imgferry convert` (being written).

use super::{Failure, Output};
use crate::exit::ExitCode;

/// Arguments of `imgferry convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {}

/// Runs the command.
pub fn run(_args: ConvertArgs, _output: &Output) -> Result<ExitCode, Failure> {
    Err(Failure::new("not implemented yet"))
}
