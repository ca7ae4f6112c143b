//! A volume group as its metadata text describes it: its name, UUID and sequence
//! number, its physical volumes (`pv0`... with UUID and `pe_start`), and its logical
//! volumes with, for each, either the linear layout the native backend can read — a
//! list of `(PV name, first physical extent, extent count)` runs — or why it cannot.
//!
//! Readable: every segment `type = "striped"` with `stripe_count = 1`, the segments
//! contiguous from extent 0, each run inside its PV. Everything else (thin, RAID,
//! mirror, cache, VDO, striped over several PVs, the origin or the copy-on-write
//! store of a snapshot, a VG that is exported, partial or a clustered/shared one) is
//! kept with its reason, so a caller can fall back. Must not: touch the disk or
//! decide names (see [`super`]).

use super::super::error::{NativeError, Result};
use super::text::{Section, Value};

/// Most extents counted in one LV or PV: an extent is at least a sector, and
/// extent counts times sizes are checked against the disk anyway; this keeps the
/// arithmetic far from overflow.
const MAX_EXTENTS: u64 = 1 << 40;

/// A PV as the VG metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvEntry {
    /// The key in `physical_volumes` (`pv0`).
    pub key: String,
    /// The UUID without dashes (as in the PV label).
    pub uuid: String,
    /// Where the first extent starts, in sectors from the PV start.
    pub pe_start: u64,
    pub pe_count: u64,
}

/// One run of a linear LV: `extents` extents from extent `pe` of PV `pv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub pv: String,
    pub pe: u64,
    pub extents: u64,
}

/// A logical volume and how it lies on its PVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvEntry {
    pub name: String,
    pub uuid: String,
    /// Whether it is a public LV (`VISIBLE`): the ones with a `/dev/VG/LV` node.
    pub visible: bool,
    /// The runs, in LV order, or why the native backend cannot map it.
    pub layout: std::result::Result<Vec<Run>, String>,
}

/// What one metadata text says about its VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgMetadata {
    pub name: String,
    /// As LVM prints it (dashed).
    pub uuid: String,
    pub seqno: u64,
    /// Sectors per extent.
    pub extent_size: u64,
    pub pvs: Vec<PvEntry>,
    pub lvs: Vec<LvEntry>,
    /// Why none of its LVs can be used at all (an exported or clustered VG...).
    pub refused: Option<String>,
}

fn malformed(detail: String) -> NativeError {
    NativeError::malformed("LVM VG metadata", 0, detail)
}

/// Reads the VG of a parsed metadata text: the one top-level section that has an
/// `id` and `seqno` (the others are `contents`, `version`, `description`...).
pub fn from_text(top: &Section) -> Result<VgMetadata> {
    let mut vgs = top
        .sections()
        .filter(|(_, s)| s.value("id").is_some() && s.value("seqno").is_some());
    let (Some((name, vg)), None) = (vgs.next(), vgs.next()) else {
        return Err(malformed(
            "the text does not describe exactly one volume group".to_owned(),
        ));
    };
    let field = |key: &str| {
        vg.u64(key)
            .ok_or_else(|| malformed(format!("VG {name}: no valid {key}")))
    };
    let extent_size = field("extent_size")?;
    if extent_size == 0 || extent_size > 1 << 32 {
        return Err(malformed(format!(
            "VG {name}: extent size of {extent_size} sectors"
        )));
    }
    let mut pvs = Vec::new();
    for (key, pv) in top_sections(vg, "physical_volumes") {
        let pv_field = |k: &str| {
            pv.u64(k)
                .ok_or_else(|| malformed(format!("VG {name}, {key}: no valid {k}")))
        };
        let pe_count = pv_field("pe_count")?;
        NativeError::check_limit("LVM PV extents", pe_count, MAX_EXTENTS)?;
        pvs.push(PvEntry {
            key: key.to_owned(),
            uuid: pv.str("id").unwrap_or_default().replace('-', ""),
            pe_start: pv_field("pe_start")?,
            pe_count,
        });
    }
    let status = vg.strings("status");
    let refused = if status.contains(&"EXPORTED") {
        Some("the volume group is exported".to_owned())
    } else if status.contains(&"PARTIAL") {
        Some("the volume group's metadata marks it partial".to_owned())
    } else if status.contains(&"CLUSTERED") || vg.value("lock_type").is_some() {
        Some("the volume group is clustered or shared".to_owned())
    } else {
        None
    };
    let lvs = logical_volumes(vg, &pvs)?;
    Ok(VgMetadata {
        name: name.to_owned(),
        uuid: vg.str("id").unwrap_or_default().to_owned(),
        seqno: field("seqno")?,
        extent_size,
        pvs,
        lvs,
        refused,
    })
}

fn top_sections<'s>(vg: &'s Section, key: &str) -> impl Iterator<Item = (&'s str, &'s Section)> {
    vg.section(key).into_iter().flat_map(Section::sections)
}

fn logical_volumes(vg: &Section, pvs: &[PvEntry]) -> Result<Vec<LvEntry>> {
    // Snapshots: the LVs they name as origin or copy-on-write store cannot be read or
    // written as plain linear LVs.
    let mut snapshot_roles: Vec<(String, String)> = Vec::new();
    for (snapshot, lv) in top_sections(vg, "logical_volumes") {
        for (_, segment) in lv.sections() {
            if segment.str("type") == Some("snapshot") {
                for (role, key) in [("origin", "origin"), ("copy-on-write store", "cow_store")] {
                    if let Some(target) = segment.str(key) {
                        snapshot_roles.push((
                            target.to_owned(),
                            format!("the {role} of snapshot {snapshot}"),
                        ));
                    }
                }
            }
        }
    }
    let mut lvs = Vec::new();
    for (name, lv) in top_sections(vg, "logical_volumes") {
        let layout = match snapshot_roles.iter().find(|(target, _)| target == name) {
            Some((_, role)) => Err(format!("it is {role}")),
            None => linear_layout(lv, pvs),
        };
        lvs.push(LvEntry {
            name: name.to_owned(),
            uuid: lv.str("id").unwrap_or_default().to_owned(),
            visible: lv.strings("status").contains(&"VISIBLE"),
            layout,
        });
    }
    Ok(lvs)
}

/// The runs of a linear LV, or why it is not one the backend maps.
fn linear_layout(lv: &Section, pvs: &[PvEntry]) -> std::result::Result<Vec<Run>, String> {
    let mut segments: Vec<(u64, &Section)> = Vec::new();
    for (key, segment) in lv.sections() {
        let start = segment
            .u64("start_extent")
            .ok_or_else(|| format!("{key} has no valid start_extent"))?;
        segments.push((start, segment));
    }
    if segments.is_empty() {
        return Err("it has no segments".to_owned());
    }
    segments.sort_by_key(|(start, _)| *start);
    let mut runs = Vec::with_capacity(segments.len());
    let mut next = 0u64;
    for (start, segment) in segments {
        let kind = segment.str("type").unwrap_or("");
        if kind != "striped" {
            return Err(format!(
                "a segment of type {kind:?} (only linear ones are read)"
            ));
        }
        if segment.u64("stripe_count") != Some(1) {
            return Err("a segment striped over several PVs".to_owned());
        }
        let extents = segment
            .u64("extent_count")
            .filter(|&n| n > 0 && n <= MAX_EXTENTS)
            .ok_or("a segment without a valid extent_count")?;
        if start != next {
            return Err(format!(
                "its segments are not contiguous (extent {start} follows {next})"
            ));
        }
        let (pv, pe) = match segment.value("stripes") {
            Some(Value::List(items)) => match items.as_slice() {
                [Value::Str(pv), Value::Int(pe)] => (pv.clone(), u64::try_from(*pe).ok()),
                _ => (String::new(), None),
            },
            _ => (String::new(), None),
        };
        let pe = pe.ok_or("a segment without a valid stripes = [\"pvN\", extent]")?;
        let Some(entry) = pvs.iter().find(|p| p.key == pv) else {
            return Err(format!(
                "a segment names {pv:?}, which the VG does not list"
            ));
        };
        if pe
            .checked_add(extents)
            .is_none_or(|end| end > entry.pe_count)
        {
            return Err(format!(
                "a segment runs past the {} extents of {pv}",
                entry.pe_count
            ));
        }
        next = start + extents; // both <= MAX_EXTENTS
        runs.push(Run { pv, pe, extents });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::super::text::parse;
    use super::*;

    fn segment(start: u64, count: u64, body: &str) -> String {
        format!("segment{start} {{\nstart_extent = {start}\nextent_count = {count}\n{body}\n}}\n")
    }

    fn linear(start: u64, count: u64, pv: &str, pe: u64) -> String {
        let body = format!("type = \"striped\"\nstripe_count = 1\nstripes = [\"{pv}\", {pe}]");
        segment(start, count, &body)
    }

    fn lv(name: &str, status: &str, segments: &[String]) -> String {
        format!(
            "{name} {{\nid = \"{name}-id\"\nstatus = [{status}]\n{}}}\n",
            segments.concat()
        )
    }

    fn vg_text(vg_status: &str, lvs: &[String]) -> String {
        format!(
            "vg0 {{\nid = \"vg-id\"\nseqno = 7\nstatus = [{vg_status}]\nextent_size = 8192\n\
             physical_volumes {{\npv0 {{\nid = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\"\n\
             pe_start = 2048\npe_count = 100\n}}\n}}\nlogical_volumes {{\n{}}}\n}}\n\
             contents = \"Text Format Volume Group\"\nversion = 1\n",
            lvs.concat()
        )
    }

    fn read(text: &str) -> VgMetadata {
        from_text(&parse(text.as_bytes()).unwrap()).unwrap()
    }

    fn layout<'v>(vg: &'v VgMetadata, name: &str) -> &'v std::result::Result<Vec<Run>, String> {
        &vg.lvs.iter().find(|lv| lv.name == name).unwrap().layout
    }

    const VISIBLE: &str = "\"READ\", \"WRITE\", \"VISIBLE\"";

    #[test]
    fn linear_lvs_map_and_the_rest_keep_a_reason() {
        let text = vg_text(
            "\"RESIZEABLE\", \"READ\", \"WRITE\"",
            &[
                // Segments listed out of order: sorted by start_extent.
                lv(
                    "two",
                    VISIBLE,
                    &[linear(2, 3, "pv0", 20), linear(0, 2, "pv0", 8)],
                ),
                lv(
                    "thin",
                    VISIBLE,
                    &[segment(0, 1, "type = \"thin\"\nthin_pool = \"pool\"")],
                ),
                lv("raid", VISIBLE, &[segment(0, 1, "type = \"raid1\"")]),
                lv(
                    "wide",
                    VISIBLE,
                    &[segment(
                        0,
                        2,
                        "type = \"striped\"\nstripe_count = 2\nstripes = [\"pv0\", 0, \"pv0\", 50]",
                    )],
                ),
                lv(
                    "gap",
                    VISIBLE,
                    &[linear(0, 1, "pv0", 0), linear(2, 1, "pv0", 1)],
                ),
                lv("past", VISIBLE, &[linear(0, 10, "pv0", 95)]),
                lv("elsewhere", VISIBLE, &[linear(0, 1, "pv9", 0)]),
                lv("origin", VISIBLE, &[linear(0, 1, "pv0", 60)]),
                lv("cow", VISIBLE, &[linear(0, 1, "pv0", 61)]),
                lv(
                    "snapshot0",
                    "\"READ\"",
                    &[segment(
                        0,
                        1,
                        "type = \"snapshot\"\norigin = \"origin\"\ncow_store = \"cow\"",
                    )],
                ),
                lv("hidden", "\"READ\", \"WRITE\"", &[linear(0, 1, "pv0", 70)]),
            ],
        );
        let vg = read(&text);
        assert_eq!(
            (vg.name.as_str(), vg.seqno, vg.extent_size),
            ("vg0", 7, 8192)
        );
        assert_eq!(vg.pvs[0].uuid, "aaaaaabbbbccccddddeeeeffffgggggg");
        assert_eq!(vg.refused, None);
        assert_eq!(
            layout(&vg, "two").as_ref().unwrap(),
            &[
                Run {
                    pv: "pv0".into(),
                    pe: 8,
                    extents: 2
                },
                Run {
                    pv: "pv0".into(),
                    pe: 20,
                    extents: 3
                },
            ]
        );
        for (name, reason) in [
            ("thin", "\"thin\""),
            ("raid", "\"raid1\""),
            ("wide", "several PVs"),
            ("gap", "not contiguous"),
            ("past", "runs past"),
            ("elsewhere", "pv9"),
            ("origin", "origin of snapshot snapshot0"),
            ("cow", "copy-on-write store of snapshot snapshot0"),
        ] {
            let err = layout(&vg, name).as_ref().unwrap_err();
            assert!(err.contains(reason), "{name}: {err}");
        }
        assert!(
            !vg.lvs
                .iter()
                .find(|lv| lv.name == "hidden")
                .unwrap()
                .visible
        );
    }

    #[test]
    fn exported_or_clustered_vgs_are_refused_and_bad_ones_are_errors() {
        let exported = read(&vg_text("\"READ\", \"WRITE\", \"EXPORTED\"", &[]));
        assert!(exported.refused.unwrap().contains("exported"));
        let text = vg_text("\"READ\", \"WRITE\"", &[])
            .replace("seqno = 7", "seqno = 7\nlock_type = \"sanlock\"");
        assert!(read(&text).refused.unwrap().contains("shared"));
        let no_extent = vg_text("\"READ\"", &[]).replace("extent_size = 8192", "extent_size = 0");
        assert!(from_text(&parse(no_extent.as_bytes()).unwrap()).is_err());
        let two = format!(
            "{}{}",
            vg_text("\"READ\"", &[]),
            vg_text("\"READ\"", &[]).replace("vg0", "vg1")
        );
        assert!(from_text(&parse(two.as_bytes()).unwrap()).is_err());
        assert!(from_text(&parse(b"contents = \"x\"").unwrap()).is_err());
    }
}
