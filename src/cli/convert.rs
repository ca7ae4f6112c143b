//! `imgferry convert SRC DST -O raw|qcow2 [--compat 0.10|1.1] [-c] [--compression-type
//! zlib|zstd] [--cluster-size N]`: argument checks and the result line; the work is
//! `disk::convert`'s.

use std::path::PathBuf;

use serde_json::json;

use super::{Failure, Output};
use crate::disk::convert::{convert, ConvertSummary, OutputFormat};
use crate::disk::qcow2::writer::{Compat, Qcow2Format, DEFAULT_CLUSTER_SIZE};
use crate::disk::qcow2::CompressionType;
use crate::exit::ExitCode;

/// Arguments of `imgferry convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The source image (raw or qcow2, judged by its content).
    pub source: PathBuf,
    /// The image to write; an existing file is replaced only once the new one is complete.
    pub destination: PathBuf,
    /// Output format.
    #[arg(short = 'O', long = "output-format", value_enum)]
    pub output_format: FormatArg,
    /// qcow2 compat level: 1.1 (version 3, the default) or 0.10 (version 2, for old guests).
    #[arg(long, value_parser = parse_compat, value_name = "0.10|1.1")]
    pub compat: Option<Compat>,
    /// Compress the qcow2 output's clusters (zlib unless --compression-type zstd).
    #[arg(short = 'c', long)]
    pub compress: bool,
    /// Compression type recorded in the qcow2 header and used by --compress.
    #[arg(long, value_enum, value_name = "zlib|zstd")]
    pub compression_type: Option<CompressionArg>,
    /// qcow2 cluster size: a power of two from 512 to 2M (suffixes k, M); default 64k.
    #[arg(long, value_parser = parse_size, value_name = "N")]
    pub cluster_size: Option<u64>,
}

/// `-O` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Raw,
    Qcow2,
}

/// `--compression-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Zlib,
    Zstd,
}

/// Runs the command.
pub fn run(args: ConvertArgs, output: &Output) -> Result<ExitCode, Failure> {
    let format = output_format(&args)?;
    // Ctrl-C stops between chunks and removes the temporary file (exit 130).
    crate::interrupt::install().map_err(|e| Failure::new(format!("cannot handle signals: {e}")))?;
    let summary = convert(&args.source, &args.destination, &format, &output.reporter())?;
    let mut value = serde_json::to_value(&summary).map_err(Failure::new)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("source".to_owned(), json!(args.source));
        fields.insert("destination".to_owned(), json!(args.destination));
    }
    output.summary("convert", value, &human(&args, &summary));
    Ok(ExitCode::Success)
}

/// Turns the flags into an output format, refusing combinations that make no sense.
fn output_format(args: &ConvertArgs) -> Result<OutputFormat, Failure> {
    let usage = |message: String| Failure::new(message).with_code(ExitCode::Usage);
    if args.output_format == FormatArg::Raw {
        let qcow2_only = [
            (args.compress, "--compress"),
            (args.compat.is_some(), "--compat"),
            (args.compression_type.is_some(), "--compression-type"),
            (args.cluster_size.is_some(), "--cluster-size"),
        ];
        if let Some((_, flag)) = qcow2_only.iter().find(|(given, _)| *given) {
            return Err(usage(format!("{flag} applies to qcow2 output only"))
                .with_hint("use -O qcow2, or drop the flag"));
        }
        return Ok(OutputFormat::Raw);
    }
    let compression = match args.compression_type {
        Some(CompressionArg::Zstd) => CompressionType::Zstd,
        Some(CompressionArg::Zlib) | None => CompressionType::Zlib,
    };
    let format = Qcow2Format::new(
        args.compat.unwrap_or(Compat::V3),
        args.cluster_size.unwrap_or(DEFAULT_CLUSTER_SIZE),
        compression,
    )
    .map_err(|e| usage(e.to_string()))?;
    Ok(OutputFormat::Qcow2 {
        format,
        compress: args.compress,
    })
}

fn human(args: &ConvertArgs, summary: &ConvertSummary) -> String {
    let mut detail = summary.output_format.to_owned();
    if let (Some(compat), Some(cluster)) = (summary.compat, summary.cluster_size) {
        detail.push_str(&format!(" compat {compat}, {cluster}-byte clusters"));
        if let Some(compression) = summary.compression {
            detail.push_str(&format!(", {compression}-compressed"));
        }
    }
    format!(
        "converted {} ({}) to {} ({detail}): {} bytes virtual, read {} bytes, wrote {} bytes",
        args.source.display(),
        summary.input_format,
        args.destination.display(),
        summary.virtual_size,
        summary.bytes_read,
        summary.bytes_written
    )
}

fn parse_compat(text: &str) -> Result<Compat, String> {
    Compat::parse(text).ok_or_else(|| format!("unknown compat {text:?} (expected 0.10 or 1.1)"))
}

/// Parses a byte count with an optional binary suffix: 512, 64k, 64K, 2M, 2MiB.
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at(digits_end);
    let shift = match suffix.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        _ => {
            return Err(format!(
                "cannot read {text:?} as a size (examples: 65536, 64k, 2M)"
            ))
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("cannot read {text:?} as a size (examples: 65536, 64k, 2M)"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert!(parse_size("2G").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("-1").is_err());
    }
}
