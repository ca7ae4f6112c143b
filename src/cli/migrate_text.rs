//! The human text of `migrate`/`template`: the dry-run plan and the final summary.
//! Text from the source image (names, properties) is made printable first.

use std::fmt::Write as _;

use super::images::printable;
use super::migrate::value_text;
use crate::pipeline::{OutputAction, Plan, PropertyPlan, Request, Summary};

fn properties_text(text: &mut String, plan: &PropertyPlan) {
    let _ = writeln!(
        text,
        "properties of the target ({}):",
        plan.properties.len()
    );
    for (key, value) in &plan.properties {
        let _ = writeln!(
            text,
            "  {} = {}",
            printable(key),
            printable(&value_text(value))
        );
    }
    if !plan.dropped.is_empty() {
        let _ = writeln!(text, "left out:");
        for dropped in &plan.dropped {
            let _ = writeln!(text, "  {} ({})", printable(&dropped.key), dropped.reason);
        }
    }
}

fn output_text(action: &OutputAction) -> String {
    match action {
        OutputAction::None { disk_format } => format!("keep {disk_format}"),
        OutputAction::Amend { compat } => {
            format!("qemu-img-style amend to compat {compat}, in place")
        }
        OutputAction::Convert {
            disk_format,
            compat,
        } => match compat {
            Some(compat) => format!("convert to {disk_format} (compat {compat})"),
            None => format!("convert to {disk_format}"),
        },
    }
}

/// The dry run's plan.
pub fn plan_text(plan: &Plan, request: &Request) -> String {
    let mut text = String::new();
    let source = &plan.source;
    let _ = writeln!(
        text,
        "dry run: nothing was downloaded, written or created\nsource: {} {} ({}, {}, {} bytes, hash {})",
        printable(&source.cloud),
        printable(&source.id),
        printable(&source.name),
        printable(&source.disk_format),
        source.size,
        printable(source.hash.as_deref().unwrap_or("none recorded")),
    );
    let _ = writeln!(text, "target name: {}", printable(&plan.target_name));
    let _ = writeln!(
        text,
        "work dir: {} (needs {} bytes, {} available)",
        request.work_dir.display(),
        plan.space_needed.total(),
        plan.space_available
    );
    let _ = writeln!(text, "format: {}", output_text(&plan.output));
    if let Some(mode) = &plan.mode {
        let _ = writeln!(text, "mode: {} ({})", mode.mode, mode.reason);
    }
    match (&plan.sysprep_operations, &plan.sysprep_plan) {
        (None, _) => {
            let _ = writeln!(text, "sysprep: none (--no-sysprep)");
        }
        (Some(ops), None) => {
            let _ = writeln!(
                text,
                "sysprep: {} ({}); the exact file list is known once the image is downloaded",
                request.sysprep_words,
                ops.join(", ")
            );
        }
        (Some(_), Some(record)) => {
            let _ = writeln!(
                text,
                "sysprep: {} -> {} changes in {} (run with -v to list them)",
                request.sysprep_words,
                record.changes,
                record.roots.join(", ")
            );
        }
    }
    properties_text(&mut text, &plan.properties);
    text
}

/// The summary of a finished run.
pub fn summary_text(summary: &Summary) -> String {
    let mut text = String::new();
    let verb = if summary.target_reused {
        "found (made by an earlier run)"
    } else {
        "ready"
    };
    let _ = writeln!(
        text,
        "{verb}: {} {} ({})",
        printable(&summary.target.location),
        printable(&summary.target.id),
        summary.target.status
    );
    if let Some(mode) = &summary.mode {
        let _ = writeln!(text, "mode: {} ({})", mode.mode, mode.reason);
    }
    if let Some(download) = &summary.download {
        let _ = writeln!(
            text,
            "source: {} bytes, sha512 {}",
            download.bytes, download.sha512
        );
    }
    if let Some(sysprep) = &summary.sysprep {
        let _ = writeln!(
            text,
            "sysprep: {} changes in {}",
            sysprep.changes,
            sysprep.roots.join(", ")
        );
    }
    if let Some(convert) = &summary.convert {
        let _ = writeln!(
            text,
            "format: {} ({}{})",
            convert.disk_format,
            convert.action,
            convert
                .compat
                .as_deref()
                .map(|c| format!(", compat {c}"))
                .unwrap_or_default()
        );
    }
    if let Some(output) = &summary.output {
        let md5 = output
            .md5
            .as_deref()
            .map(|md5| format!(", md5 {md5}"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "uploaded: {} bytes, sha512 {}{md5}",
            output.bytes, output.sha512
        );
    }
    let stages: Vec<String> = summary
        .stages
        .iter()
        .map(|s| {
            if s.skipped {
                format!("{} (not needed)", s.stage)
            } else if s.resumed {
                format!("{} (earlier run)", s.stage)
            } else {
                format!("{} {:.1}s", s.stage, s.seconds)
            }
        })
        .collect();
    let _ = writeln!(text, "stages: {}", stages.join(", "));
    if !summary.work_dir_removed {
        let _ = writeln!(text, "work dir kept: {}", summary.work_dir.display());
    }
    text
}
