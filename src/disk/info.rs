//! [`ImageInfo`]: what `imgferry info` reports about an image, gathered from its bytes.
//!
//! Owns the summary only; parsing lives in the format modules.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::detect::{detect, Format};
use super::qcow2::Header;
use super::{DiskError, LocalFile, ReadAt, Result};

/// Format-neutral facts about an image file.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// `raw` or `qcow2`.
    pub format: &'static str,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Length of the file in bytes.
    pub file_size: u64,
    /// Bytes the file occupies on disk (holes excluded).
    pub allocated_bytes: u64,
    /// qcow2 details; absent for raw images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2: Option<Qcow2Info>,
}

/// The qcow2 header, in the terms `qemu-img info` uses.
#[derive(Debug, Clone, Serialize)]
pub struct Qcow2Info {
    pub version: u32,
    pub compat: &'static str,
    pub cluster_size: u64,
    pub refcount_bits: u32,
    pub compression_type: &'static str,
    pub features: Vec<&'static str>,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub dirty: bool,
    pub corrupt: bool,
    pub encrypted: bool,
    pub snapshots: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    pub extensions: Vec<ExtensionInfo>,
}

/// One header extension.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionInfo {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub length: usize,
}

/// Inspects the image at `path`. Formats that are recognised but unsupported are an
/// [`DiskError::Unsupported`] naming the format.
pub fn inspect(path: &Path) -> Result<ImageInfo> {
    let file = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    let format = detect(&file).map_err(|e| DiskError::io("read", path, e))?;
    let meta = file
        .file()
        .metadata()
        .map_err(|e| DiskError::io("stat", path, e))?;
    let allocated_bytes = meta.blocks() * 512;
    match format {
        Format::Raw => Ok(ImageInfo {
            format: "raw",
            virtual_size: file.size(),
            file_size: file.size(),
            allocated_bytes,
            qcow2: None,
        }),
        Format::Qcow2 => {
            let header = Header::read(&file, path)?;
            Ok(ImageInfo {
                format: "qcow2",
                virtual_size: header.size,
                file_size: file.size(),
                allocated_bytes,
                qcow2: Some(qcow2_info(&header)),
            })
        }
        Format::Unsupported(other) => Err(unsupported_format(path, other.name())),
    }
}

/// The error for a recognised format imgferry cannot handle yet.
pub fn unsupported_format(path: &Path, name: &str) -> DiskError {
    DiskError::Refused {
        path: path.to_owned(),
        detail: format!("it is a {name} image, and imgferry supports only raw and qcow2 so far"),
        hint: Some(format!(
            "convert it first, e.g. `qemu-img convert -f {name} -O qcow2 {} out.qcow2`",
            path.display()
        )),
    }
}

fn qcow2_info(header: &Header) -> Qcow2Info {
    use super::qcow2::header::incompatible;
    Qcow2Info {
        version: header.version,
        compat: header.compat(),
        cluster_size: header.cluster_size(),
        refcount_bits: header.refcount_bits(),
        compression_type: header.compression_type.name(),
        features: header.feature_names(),
        incompatible_features: header.incompatible_features,
        compatible_features: header.compatible_features,
        autoclear_features: header.autoclear_features,
        dirty: header.incompatible_features & incompatible::DIRTY != 0,
        corrupt: header.incompatible_features & incompatible::CORRUPT != 0,
        encrypted: header.crypt_method != 0,
        snapshots: header.nb_snapshots,
        backing_file: header.backing_file.clone(),
        extensions: header
            .extensions
            .iter()
            .map(|ext| ExtensionInfo {
                name: ext.name(),
                kind: format!("{:#010x}", ext.kind),
                length: ext.data.len(),
            })
            .collect(),
    }
}
