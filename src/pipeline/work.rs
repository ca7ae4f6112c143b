//! The stages that change the image in the work dir: sysprep (through the libguestfs
//! backend, committed only when every change succeeded) and the format step (nothing,
//! `amend` in place for a qcow2 compat change, or `convert` to a new file).
//!
//! Owns the choice between amend and convert ([`plan_output`]). Must not print.

use std::path::Path;

use serde::Serialize;

use super::backend::{run_on_image, BackendChoice};
use super::error::Result;
use super::state::{ConvertRecord, SysprepRecord, OUTPUT_FILE, SOURCE_FILE};
use crate::disk::convert::{convert, OutputFormat};
use crate::disk::info::inspect;
use crate::disk::qcow2::amend::{amend, AmendOptions, Compat as AmendCompat};
use crate::disk::qcow2::writer::{Compat, Qcow2Format, DEFAULT_CLUSTER_SIZE};
use crate::disk::qcow2::CompressionType;
use crate::report::Reporter;
use crate::sysprep;

/// `--disk-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// Glance's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// What the user asked of the output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputChoice {
    /// `None`: the source's format.
    pub disk_format: Option<DiskFormat>,
    /// qcow2 compat; `None`: as it is (a new qcow2 file gets 1.1).
    pub compat: Option<Compat>,
}

/// What the format step will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum OutputAction {
    /// Upload the (sysprepped) download as it is.
    None { disk_format: &'static str },
    /// Change the qcow2 compat in place.
    Amend { compat: &'static str },
    /// Write a new file in another format.
    Convert {
        disk_format: &'static str,
        compat: Option<&'static str>,
    },
}

impl OutputAction {
    /// The disk format the target gets.
    pub fn disk_format(&self) -> &'static str {
        match self {
            Self::None { disk_format } | Self::Convert { disk_format, .. } => disk_format,
            Self::Amend { .. } => "qcow2",
        }
    }
}

/// Decides the format step for a source in `current` format (`raw`/`qcow2`) with
/// qcow2 compat `current_compat` (unknown before download: `None`).
pub fn plan_output(
    current: &str,
    current_compat: Option<&str>,
    choice: OutputChoice,
) -> OutputAction {
    let wanted: &str = match choice.disk_format {
        Some(format) => format.name(),
        None => current,
    };
    if wanted != current || !["raw", "qcow2"].contains(&current) {
        let compat = (wanted == "qcow2").then(|| choice.compat.unwrap_or(Compat::V3).name());
        return OutputAction::Convert {
            disk_format: if wanted == "qcow2" { "qcow2" } else { "raw" },
            compat,
        };
    }
    match (wanted, choice.compat) {
        ("qcow2", Some(compat)) if current_compat != Some(compat.name()) => OutputAction::Amend {
            compat: compat.name(),
        },
        ("qcow2", _) => OutputAction::None {
            disk_format: "qcow2",
        },
        _ => OutputAction::None { disk_format: "raw" },
    }
}

/// Runs the format step on `work_dir/source.img`.
pub fn format_step(
    work_dir: &Path,
    choice: OutputChoice,
    reporter: &dyn Reporter,
) -> Result<ConvertRecord> {
    let image = work_dir.join(SOURCE_FILE);
    let info = inspect(&image)?;
    let current_compat = info.qcow2.as_ref().map(|q| q.compat);
    let action = plan_output(info.format, current_compat, choice);
    match action {
        OutputAction::None { disk_format } => Ok(ConvertRecord {
            file: SOURCE_FILE.to_owned(),
            disk_format: disk_format.to_owned(),
            compat: current_compat.map(str::to_owned),
            action: "none".to_owned(),
        }),
        OutputAction::Amend { compat } => {
            let options = AmendOptions {
                compat: if compat == "0.10" {
                    AmendCompat::V0_10
                } else {
                    AmendCompat::V1_1
                },
                drop_bitmaps: false,
                stop_after_writes: None,
            };
            amend(&image, &options, reporter)?;
            Ok(ConvertRecord {
                file: SOURCE_FILE.to_owned(),
                disk_format: "qcow2".to_owned(),
                compat: Some(compat.to_owned()),
                action: "amend".to_owned(),
            })
        }
        OutputAction::Convert {
            disk_format,
            compat,
        } => {
            let format = match compat {
                None => OutputFormat::Raw,
                Some(name) => OutputFormat::Qcow2 {
                    format: Qcow2Format::new(
                        Compat::parse(name).unwrap_or(Compat::V3),
                        DEFAULT_CLUSTER_SIZE,
                        CompressionType::Zlib,
                    )?,
                    compress: false,
                },
            };
            convert(&image, &work_dir.join(OUTPUT_FILE), &format, reporter)?;
            Ok(ConvertRecord {
                file: OUTPUT_FILE.to_owned(),
                disk_format: disk_format.to_owned(),
                compat: compat.map(str::to_owned),
                action: "convert".to_owned(),
            })
        }
    }
}

/// Runs sysprep on `image` with the `backend` chosen (or, with `options.dry_run`, only
/// plans it, read-only).
pub fn sysprep_image(
    image: &Path,
    options: &sysprep::Options,
    backend: BackendChoice,
    reporter: &dyn Reporter,
) -> Result<SysprepRecord> {
    let run = run_on_image(image, options, backend, reporter)?;
    Ok(SysprepRecord {
        operations: options
            .operations
            .iter()
            .map(|op| op.name.to_owned())
            .collect(),
        changes: run.changes(),
        roots: run
            .reports
            .iter()
            .map(|r| {
                format!(
                    "{} ({} {}.{})",
                    r.os.root, r.os.distro, r.os.major_version, r.os.minor_version
                )
            })
            .collect(),
        backend: run.backend.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_step_amends_converts_or_leaves_alone() {
        let keep = OutputChoice::default();
        assert_eq!(
            plan_output("qcow2", Some("1.1"), keep),
            OutputAction::None {
                disk_format: "qcow2"
            }
        );
        assert_eq!(
            plan_output("raw", None, keep),
            OutputAction::None { disk_format: "raw" }
        );
        let v2 = OutputChoice {
            disk_format: None,
            compat: Some(Compat::V2),
        };
        assert_eq!(
            plan_output("qcow2", Some("1.1"), v2),
            OutputAction::Amend { compat: "0.10" }
        );
        assert_eq!(
            plan_output("qcow2", Some("0.10"), v2),
            OutputAction::None {
                disk_format: "qcow2"
            }
        );
        assert_eq!(
            plan_output("raw", None, v2),
            OutputAction::None { disk_format: "raw" },
            "compat alone does not turn raw into qcow2"
        );
        let to_raw = OutputChoice {
            disk_format: Some(DiskFormat::Raw),
            compat: None,
        };
        assert_eq!(
            plan_output("qcow2", Some("1.1"), to_raw),
            OutputAction::Convert {
                disk_format: "raw",
                compat: None
            }
        );
        let to_qcow2 = OutputChoice {
            disk_format: Some(DiskFormat::Qcow2),
            compat: Some(Compat::V2),
        };
        assert_eq!(
            plan_output("raw", None, to_qcow2),
            OutputAction::Convert {
                disk_format: "qcow2",
                compat: Some("0.10")
            }
        );
        assert_eq!(
            plan_output("vmdk", None, keep),
            OutputAction::Convert {
                disk_format: "raw",
                compat: None
            },
            "an unsupported source format is converted (and refused there with its name)"
        );
    }
}
