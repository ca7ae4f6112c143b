//! The downgrade to compat 0.10: what it refuses, then the ordered writes (zero
//! clusters, the v2 header, dropped bitmaps) described in the parent module.
//!
//! Owns the downgrade-only refusals and collecting the clusters persistent bitmaps use.
//! The writes themselves go through [`ImageWriter`]; nothing here prints.

use std::path::Path;

use super::writes::ImageWriter;
use super::{header_update, refused, zeros, AmendOptions, AmendOutcome};
use crate::disk::qcow2::bitmaps::{
    read_directory, visit_bitmap_clusters, BitmapRange, BitmapsExtension,
};
use crate::disk::qcow2::header::{autoclear, extension, incompatible};
use crate::disk::qcow2::refcount::RefcountTable;
use crate::disk::qcow2::snapshot::read_snapshot_table;
use crate::disk::qcow2::{CompressionType, Header};
use crate::disk::{DiskError, LocalFile, ReadAt, Result};
use crate::report::{Event, Reporter};

/// Downgrades the v3 image `header` describes to v2.
pub(super) fn downgrade(
    source: &LocalFile,
    writer: &mut ImageWriter<'_>,
    path: &Path,
    header: &Header,
    options: &AmendOptions,
    outcome: &mut AmendOutcome,
    reporter: &dyn Reporter,
) -> Result<()> {
    let convert = Some("`imgferry convert --compat 0.10` writes a new v2 image instead");
    if header.refcount_order != 4 {
        let detail = format!(
            "refcount_bits={} (compat 0.10 supports only 16)",
            header.refcount_bits()
        );
        return Err(refused(path, &detail, convert));
    }
    for (bit, feature) in [
        (incompatible::EXTERNAL_DATA_FILE, "an external data file"),
        (
            incompatible::EXTENDED_L2,
            "extended L2 entries (subclusters)",
        ),
    ] {
        if header.incompatible_features & bit != 0 {
            return Err(refused(
                path,
                &format!("compat 0.10 cannot represent {feature}"),
                convert,
            ));
        }
    }
    let bitmaps_in_use = header.autoclear_features & autoclear::BITMAPS != 0;
    let has_bitmaps_extension = header
        .extensions
        .iter()
        .any(|e| e.kind == extension::BITMAPS);
    if (bitmaps_in_use || has_bitmaps_extension) && !options.drop_bitmaps {
        return Err(refused(
            path,
            "the image has persistent dirty bitmaps, which compat 0.10 cannot keep",
            Some("add --drop-bitmaps to delete them (a backup tool may then need a full backup)"),
        ));
    }
    let snapshots = read_snapshot_table(source, path, header)?;
    let scan = zeros::scan(source, path, header, &snapshots)?;
    if header.compression_type == CompressionType::Zstd && scan.compressed_entries > 0 {
        return Err(refused(
            path,
            &format!(
                "{} clusters are zstd-compressed; compat 0.10 reads only zlib",
                scan.compressed_entries
            ),
            convert,
        ));
    }
    if header.backing_file.is_some() && scan.zero_entries > 0 {
        return Err(refused(
            path,
            "it has a backing file and zero clusters; unallocating them would expose the backing file's data",
            Some("`imgferry convert` can flatten it into a standalone image first"),
        ));
    }
    let mut bitmap_decrements = Vec::new();
    if options.drop_bitmaps && bitmaps_in_use {
        outcome.bitmaps_dropped = bitmap_names(source, path, header)?;
        bitmap_decrements = bitmap_clusters(source, path, header)?;
    }

    let refcounts = RefcountTable::read(source, path, header)?;
    let expansion = zeros::expand(
        writer,
        source,
        path,
        header,
        &refcounts,
        &scan.tables_with_zeros,
    )?;
    outcome.zero_clusters_expanded = expansion.zero_clusters;
    outcome.l2_tables_rewritten = expansion.tables_rewritten;
    outcome.preallocated_clusters_freed = expansion.preallocated_clusters_freed;
    if expansion.zero_clusters > 0 {
        reporter.event(
            Event::new(
                "amend.zero_clusters_expanded",
                format!(
                    "{} zero clusters made unallocated in {} L2 tables, {} preallocated clusters freed",
                    expansion.zero_clusters, expansion.tables_rewritten, expansion.preallocated_clusters_freed
                ),
            )
            .with("zero_clusters", expansion.zero_clusters)
            .with("l2_tables", expansion.tables_rewritten)
            .with("preallocated_clusters_freed", expansion.preallocated_clusters_freed),
        );
    }
    header_update::write_header(writer, path, header, &header_update::downgraded(header))?;
    if options.drop_bitmaps && (bitmaps_in_use || has_bitmaps_extension) {
        let clusters = bitmap_decrements.len() as u64;
        if !bitmap_decrements.is_empty() {
            writer.apply_decrements(source, &refcounts, &mut bitmap_decrements)?;
        }
        outcome.bitmap_clusters_freed = clusters;
        reporter.event(
            Event::new(
                "amend.bitmaps_dropped",
                format!(
                    "dropped bitmaps {:?}, freed {clusters} clusters",
                    outcome.bitmaps_dropped
                ),
            )
            .with("bitmaps", outcome.bitmaps_dropped.clone())
            .with("clusters_freed", clusters),
        );
    }
    Ok(())
}

fn bitmap_names(source: &dyn ReadAt, path: &Path, header: &Header) -> Result<Vec<String>> {
    let Some(ext) = BitmapsExtension::of(header) else {
        return Ok(Vec::new());
    };
    let ext = ext.map_err(|detail| DiskError::malformed(path, "qcow2", detail))?;
    let bitmaps = read_directory(source, path, header, &ext)?;
    Ok(bitmaps.into_iter().map(|b| b.name).collect())
}

/// One decrement per host cluster reference the bitmaps hold.
fn bitmap_clusters(source: &dyn ReadAt, path: &Path, header: &Header) -> Result<Vec<(u64, u64)>> {
    let cluster = header.cluster_size();
    let mut decrements = Vec::new();
    let mut bad = None;
    let add_range = |offset: u64, len: u64, decrements: &mut Vec<(u64, u64)>| {
        if len > 0 {
            let first = offset / cluster;
            let last = (offset + len - 1) / cluster;
            decrements.extend((first..=last).map(|c| (c, 1)));
        }
    };
    visit_bitmap_clusters(source, path, header, &mut |range| match range {
        BitmapRange::Directory { offset, len } | BitmapRange::Table { offset, len } => {
            add_range(offset, len, &mut decrements)
        }
        BitmapRange::Data { offset } => decrements.push((offset / cluster, 1)),
        BitmapRange::BadEntry { detail } => bad = Some(detail),
    })?;
    match bad {
        Some(detail) => Err(DiskError::malformed(path, "qcow2", detail)),
        None => Ok(decrements),
    }
}
