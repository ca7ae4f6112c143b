//! `migrate`/`template` of a volume-backed instance snapshot: the two projects' Glance
//! and Cinder, the dry run, and the summary. The work is `pipeline::volumes`'.

use serde_json::json;

use super::migrate::{connect_session, flavour_name, Flavour, MigrateArgs};
use super::{Failure, Output};
use crate::cloud::cinder::Cinder;
use crate::cloud::glance::{Glance, Image};
use crate::cloud::keystone::Session;
use crate::exit::ExitCode;
use crate::pipeline::volumes::{
    self, SourceSide, TargetShape, TargetSide, VolumeRequest, VolumeSummary,
};
use crate::pipeline::{PipelineError, Request};

/// Runs the volume-backed migration of `image` (already resolved in `glance`).
pub(super) fn run(
    args: &MigrateArgs,
    flavour: Flavour,
    request: &Request,
    image: Image,
    session: Session,
    glance: Glance,
    output: &Output,
) -> Result<ExitCode, Failure> {
    if args.to_file.is_some() {
        return Err(PipelineError::VolumeBacked {
            snapshots: volumes::mapping::disks_of(&image)
                .map(|disks| disks.into_iter().map(|d| d.snapshot_id).collect())
                .unwrap_or_default(),
            id: image.id,
        }
        .into());
    }
    let reporter = output.reporter();
    let shape = args.target_as.shape();
    let volume_request = VolumeRequest {
        base: request,
        shape,
        keep_images: args.keep_images,
    };
    if args.dry_run {
        let plan = volumes::plan(&volume_request, &image)?;
        let mut value = serde_json::to_value(&plan).map_err(Failure::new)?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("dry_run".into(), json!(true));
            fields.insert("work_dir".into(), json!(request.work_dir));
        }
        let mut text = format!(
            "volume-backed snapshot {} ({} disks), target as {}\n",
            plan.source_id,
            plan.disks.len(),
            shape_word(shape)
        );
        for step in &plan.steps {
            text.push_str(&format!(
                "  {} {} {} in the {} project\n",
                step["action"].as_str().unwrap_or_default(),
                step["object"].as_str().unwrap_or_default(),
                step["name"].as_str().unwrap_or_default(),
                step["project"].as_str().unwrap_or_default(),
            ));
        }
        output.result(flavour_name(flavour), value, &text);
        return Ok(ExitCode::Success);
    }
    crate::interrupt::install().map_err(|e| Failure::new(format!("cannot handle signals: {e}")))?;
    let mut source = SourceSide {
        glance,
        cinder: Cinder::connect(session)?,
    };
    let target_session = connect_session(args.to.as_deref(), args.project.as_deref(), &reporter)?;
    let mut target = TargetSide {
        glance: Glance::connect(target_session.clone())?,
        cinder: match shape {
            TargetShape::Volumes => Some(Cinder::connect(target_session)?),
            TargetShape::Image => None,
        },
    };
    let summary = volumes::run(&volume_request, &image, &mut source, &mut target, &reporter)?;
    let value = serde_json::to_value(&summary).map_err(Failure::new)?;
    output.summary(flavour_name(flavour), value, &summary_text(&summary));
    Ok(ExitCode::Success)
}

fn shape_word(shape: TargetShape) -> &'static str {
    match shape {
        TargetShape::Image => "images",
        TargetShape::Volumes => "volumes",
    }
}

fn summary_text(summary: &VolumeSummary) -> String {
    let mut text = format!(
        "migrated volume-backed snapshot {} as {}\n",
        summary.source_id,
        shape_word(summary.shape)
    );
    for disk in &summary.disks {
        let image = disk.image.as_ref().map_or("-", |i| i.id.as_str());
        text.push_str(&format!(
            "  {} ({} GiB): image {image}",
            disk.device_name, disk.size_gib
        ));
        if disk.image_deleted {
            text.push_str(" (deleted)");
        }
        if let Some(volume) = &disk.volume {
            text.push_str(&format!(", volume {volume}"));
        }
        if let Some(snapshot) = &disk.snapshot {
            text.push_str(&format!(", snapshot {snapshot}"));
        }
        text.push('\n');
    }
    if let Some(record) = &summary.record {
        text.push_str(&format!(
            "launch from image {} ({})\n",
            record.id, record.status
        ));
    }
    text
}
