//! `imgferry manifest` (being written).

use super::{Failure, Output};
use crate::exit::ExitCode;

/// Arguments of `imgferry manifest`.
#[derive(Debug, clap::Args)]
pub struct ManifestArgs {}

/// Runs the command.
pub fn run(_args: ManifestArgs, _output: &Output) -> Result<ExitCode, Failure> {
    Err(crate::hash::HashError::NotImplemented.into())
}
