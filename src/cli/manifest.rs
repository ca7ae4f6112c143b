//! `imgferry manifest FILE -o MANIFEST`: write the per-chunk manifest of a file.
//!
//! Parses the arguments, calls [`crate::hash::build_manifest`], writes the manifest
//! atomically and prints a summary. Owns nothing about digests or the file format.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;

use super::{Failure, Output};
use crate::exit::ExitCode;
use crate::hash::chunked::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use crate::hash::{build_manifest, Algorithm, ChunkAlgorithm, ChunkLayout};

/// Arguments of `imgferry manifest`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Chunks are hashed in parallel on every core. With --digest the file is \
                  read once, sequentially, and the whole-file digests are computed on their \
                  own threads alongside the chunk digests."
)]
pub struct ManifestArgs {
    /// The file to describe.
    pub file: PathBuf,
    /// Where to write the manifest (replaced atomically).
    #[arg(short, long, value_name = "MANIFEST")]
    pub output: PathBuf,
    /// Digest of each chunk: blake3 (fastest) or sha256.
    #[arg(long, value_name = "ALGO", default_value = "blake3")]
    pub algorithm: ChunkAlgorithm,
    /// Chunk size in bytes, a multiple of 4096 (suffixes K, M, G = powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_chunk_size)]
    pub chunk_size: u64,
    /// Also record these whole-file digests (comma-separated: md5,sha256,sha384,sha512).
    #[arg(long, value_name = "ALGO[,ALGO]", value_delimiter = ',')]
    pub digest: Vec<Algorithm>,
}

/// Runs the command.
pub fn run(args: ManifestArgs, output: &Output) -> Result<ExitCode, Failure> {
    let layout = ChunkLayout::new(args.algorithm, args.chunk_size).map_err(Failure::new)?;
    let reporter = output.reporter();
    let manifest = build_manifest(&args.file, layout, &args.digest, &reporter)?;
    manifest.write(&args.output)?;

    let mut human = format!(
        "{}: {} chunks of {} bytes ({}) covering {} bytes of {}\n",
        args.output.display(),
        manifest.chunks.len(),
        layout.chunk_size,
        layout.algorithm,
        manifest.file_size,
        args.file.display()
    );
    for digest in &manifest.digests {
        let _ = writeln!(
            human,
            "{} ({}) = {}",
            digest.algorithm.name().to_uppercase(),
            args.file.display(),
            digest.hex()
        );
    }
    let digests: serde_json::Map<_, _> = manifest
        .digests
        .iter()
        .map(|d| (d.algorithm.name().to_owned(), json!(d.hex())))
        .collect();
    let value = json!({
        "file": args.file,
        "manifest": args.output,
        "algorithm": layout.algorithm.name(),
        "chunk_size": layout.chunk_size,
        "file_size": manifest.file_size,
        "chunks": manifest.chunks.len(),
        "digests": digests,
    });
    output.summary("manifest", value, &human);
    Ok(ExitCode::Success)
}

/// Parses `SIZE[K|M|G]` (binary units) and checks it is a valid chunk size.
fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 65536, 64K, 64M)"))?;
    let bytes = value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&bytes) || bytes % MIN_CHUNK_SIZE != 0 {
        return Err(format!(
            "must be a multiple of 4K between 4K and {}M",
            MAX_CHUNK_SIZE >> 20
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_size;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size("64M"), Ok(64 << 20));
        assert_eq!(parse_chunk_size("4k"), Ok(4096));
        assert_eq!(parse_chunk_size("8192"), Ok(8192));
        assert!(parse_chunk_size("100").is_err());
        assert!(parse_chunk_size("2G").is_err());
        assert!(parse_chunk_size("99999999999999999G").is_err());
        assert!(parse_chunk_size("M").is_err());
    }
}
