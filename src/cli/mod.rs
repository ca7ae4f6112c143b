//! Command-line front end: clap definitions, one module per command, and dispatch.
//!
//! This layer owns argv and all printing. Commands turn their arguments into calls on
//! the library layers and hand results to [`output::Output`]; they never print directly.

mod amend;
mod check;
mod cloud_args;
mod convert;
mod download;
mod failure;
mod generate;
mod images;
mod info;
mod manifest;
mod migrate;
mod migrate_text;
mod migrate_volumes;
mod output;
mod share;
mod sysprep;
mod transfer_args;
mod upload;
mod verify;

use clap::{Parser, Subcommand};

use crate::exit::ExitCode;
use cloud_args::CloudArgs;
pub use failure::Failure;
pub use generate::reference_markdown;
pub use output::{Output, OutputOptions};

/// Move VM images between OpenStack projects and clouds, verified, clean and resumable.
#[derive(Debug, Parser)]
#[command(name = "imgferry", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Print only errors (and the command's data on stdout).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail about what happens (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Emit JSON Lines on stdout (schema: docs/json.md) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// The cloud and project, accepted before or after the subcommand (as `openstack`
    /// does); commands that do not talk to a cloud ignore them, as they ignore `OS_CLOUD`.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the format and metadata of a disk image.
    Info(info::InfoArgs),
    /// Convert an image between raw and qcow2 (sparse, allocation-driven).
    Convert(convert::ConvertArgs),
    /// Change a qcow2 image's compat level in place (0.10 = v2, 1.1 = v3).
    Amend(amend::AmendArgs),
    /// Check a qcow2 image's metadata for corruption and leaks.
    Check(check::CheckArgs),
    /// Verify a file against digests and/or a per-chunk manifest.
    Verify(verify::VerifyArgs),
    /// Write a per-chunk manifest of a file.
    Manifest(manifest::ManifestArgs),
    /// List or show the images of an OpenStack project (Glance v2).
    Images(images::ImagesArgs),
    /// Download an image to a file, verified against Glance's checksum and os_hash_value.
    Download(download::DownloadArgs),
    /// Upload a file as a new image, verified against what Glance recorded.
    Upload(upload::UploadArgs),
    /// Share an image with another project, or accept a share (run as that project).
    Share(share::ShareArgs),
    /// Strip host identity from a guest image (virt-sysprep's operation words).
    Sysprep(sysprep::SysprepArgs),
    /// Move an image to another project or cloud: verified, sysprepped, resumable.
    Migrate(migrate::MigrateArgs),
    /// `migrate` with every default sysprep operation: a clean template from a clone.
    Template(migrate::MigrateArgs),
    /// Write shell completions, man pages or the command reference (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Parses argv, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            let _ = err.print();
            return code.code();
        }
    };
    let output = Output::new(OutputOptions::from_global(&cli.global));
    let result = match cli.command {
        Command::Info(args) => info::run(args, &output),
        Command::Convert(args) => convert::run(args, &output),
        Command::Amend(args) => amend::run(args, &output),
        Command::Check(args) => check::run(args, &output),
        Command::Verify(args) => verify::run(args, &output),
        Command::Manifest(args) => manifest::run(args, &output),
        Command::Images(args) => images::run(args, &cli.global.cloud, &output),
        Command::Download(args) => download::run(args, &cli.global.cloud, &output),
        Command::Upload(args) => upload::run(args, &cli.global.cloud, &output),
        Command::Share(args) => share::run(args, &cli.global.cloud, &output),
        Command::Sysprep(args) => sysprep::run(args, &output),
        Command::Migrate(args) => {
            migrate::run(args, migrate::Flavour::Migrate, &cli.global.cloud, &output)
        }
        Command::Template(args) => {
            migrate::run(args, migrate::Flavour::Template, &cli.global.cloud, &output)
        }
        Command::Generate(args) => generate::run(args, &output),
    };
    match result {
        Ok(code) => code.code(),
        Err(failure) => {
            output.failure(&failure);
            failure.code.code()
        }
    }
}
