//! `imgferry amend` (being written).

use super::{Failure, Output};
use crate::exit::ExitCode;

/// Arguments of `imgferry amend`.
#[derive(Debug, clap::Args)]
pub struct AmendArgs {}

/// Runs the command.
pub fn run(_args: AmendArgs, _output: &Output) -> Result<ExitCode, Failure> {
    Err(Failure::new("not implemented yet"))
}
