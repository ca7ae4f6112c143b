//! Nova's `block_device_mapping` of a volume-backed instance snapshot, read into typed
//! disks, and written back in the same format for a target record.
//!
//! The record is untrusted: it is a JSON string (or list) Nova wrote, bounded here in
//! entries and field lengths, and every entry the pipeline acts on must name a snapshot,
//! a device and a size. Pure: no I/O.

use serde_json::{json, Map, Value};

use crate::cloud::glance::Image;
use crate::pipeline::error::{PipelineError, Result};

/// More mapping entries than any instance has (Nova's own limit per instance is lower).
const MAX_DISKS: usize = 64;
/// Longest device name or id accepted from the record.
const MAX_FIELD_LEN: usize = 255;

/// One disk of a volume-backed snapshot: a Cinder snapshot and where it was attached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disk {
    /// `/dev/vda`, ...
    pub device_name: String,
    /// 0 for the disk the instance boots from; `None` for a data disk.
    pub boot_index: Option<i64>,
    pub snapshot_id: String,
    /// GiB.
    pub volume_size: u64,
    pub disk_bus: Option<String>,
    pub device_type: Option<String>,
    pub volume_type: Option<String>,
    pub delete_on_termination: bool,
}

impl Disk {
    /// The root disk (boot index 0).
    pub fn is_root(&self) -> bool {
        self.boot_index == Some(0)
    }

    /// `vda` from `/dev/vda`: the short name used in temporary and target names.
    pub fn short_name(&self) -> String {
        let name = self
            .device_name
            .rsplit('/')
            .next()
            .unwrap_or(&self.device_name);
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

/// The disks of a volume-backed snapshot record, root first, or why it has none we can use.
pub fn disks_of(image: &Image) -> Result<Vec<Disk>> {
    let invalid = |problem: String| PipelineError::InvalidMapping {
        id: image.id.clone(),
        problem,
    };
    let raw = image
        .properties
        .get("block_device_mapping")
        .ok_or_else(|| invalid("it has no block_device_mapping".into()))?;
    let parsed = match raw {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| invalid(format!("block_device_mapping is not JSON ({e})")))?,
        other => other.clone(),
    };
    let entries = parsed
        .as_array()
        .ok_or_else(|| invalid("block_device_mapping is not a list".into()))?;
    if entries.len() > MAX_DISKS {
        return Err(invalid(format!(
            "block_device_mapping has {} entries, more than {MAX_DISKS}",
            entries.len()
        )));
    }
    let root_device = image
        .properties
        .get("root_device_name")
        .and_then(Value::as_str);
    let mut disks = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |key: &str| -> Result<Option<String>> {
            match entry.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) if text.len() <= MAX_FIELD_LEN => Ok(Some(text.clone())),
                Some(Value::String(_)) => Err(invalid(format!(
                    "entry {index}: {key} is longer than {MAX_FIELD_LEN} characters"
                ))),
                Some(other) => Err(invalid(format!(
                    "entry {index}: {key} is {other}, not text"
                ))),
            }
        };
        let source_type = field("source_type")?;
        let destination = field("destination_type")?;
        if destination.as_deref() == Some("local") {
            // Swap or ephemeral disks: Nova makes them empty at boot; nothing to carry.
            continue;
        }
        let Some(snapshot_id) = field("snapshot_id")? else {
            return Err(invalid(format!(
                "entry {index} ({}) has no snapshot_id (source_type {})",
                field("device_name")?.unwrap_or_else(|| "no device".into()),
                source_type.unwrap_or_else(|| "missing".into())
            )));
        };
        let mut boot_index = match entry.get("boot_index") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(text)) => text.parse().ok(),
            _ => None,
        };
        if boot_index.is_some_and(|i| i < 0) {
            boot_index = None;
        }
        let device_name = match field("device_name")? {
            Some(name) => name,
            None if boot_index == Some(0) => root_device
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("entry {index} has no device_name")))?,
            None => return Err(invalid(format!("entry {index} has no device_name"))),
        };
        let volume_size = match entry.get("volume_size") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(text)) => text.parse().ok(),
            _ => None,
        }
        .filter(|&size| size > 0)
        .ok_or_else(|| invalid(format!("entry {index} ({device_name}) has no volume_size")))?;
        disks.push(Disk {
            device_name,
            boot_index,
            snapshot_id,
            volume_size,
            disk_bus: field("disk_bus")?,
            device_type: field("device_type")?,
            volume_type: field("volume_type")?,
            delete_on_termination: entry
                .get("delete_on_termination")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    if disks.iter().filter(|d| d.is_root()).count() != 1 {
        return Err(invalid(
            "exactly one entry must have boot_index 0 (the root disk)".into(),
        ));
    }
    let mut names: Vec<String> = disks.iter().map(Disk::short_name).collect();
    names.sort();
    names.dedup();
    if names.len() != disks.len() || names.iter().any(String::is_empty) {
        return Err(invalid("device names are missing or repeated".into()));
    }
    disks.sort_by_key(|d| (!d.is_root(), d.device_name.clone()));
    Ok(disks)
}

/// One entry of a target record's mapping: the disk as it was, on a new snapshot.
pub fn mapping_entry(disk: &Disk, snapshot_id: &str) -> Value {
    let mut entry = Map::new();
    entry.insert("source_type".into(), json!("snapshot"));
    entry.insert("destination_type".into(), json!("volume"));
    entry.insert("snapshot_id".into(), json!(snapshot_id));
    entry.insert("volume_size".into(), json!(disk.volume_size));
    entry.insert("device_name".into(), json!(disk.device_name));
    entry.insert("boot_index".into(), json!(disk.boot_index));
    entry.insert(
        "delete_on_termination".into(),
        json!(disk.delete_on_termination),
    );
    entry.insert("volume_id".into(), Value::Null);
    entry.insert("image_id".into(), Value::Null);
    entry.insert("no_device".into(), Value::Null);
    entry.insert("tag".into(), Value::Null);
    entry.insert("guest_format".into(), Value::Null);
    for (key, value) in [
        ("disk_bus", &disk.disk_bus),
        ("device_type", &disk.device_type),
        ("volume_type", &disk.volume_type),
    ] {
        entry.insert(key.into(), json!(value));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(mapping: Value) -> Image {
        serde_json::from_value(json!({
            "id": "snap", "status": "active", "size": 0,
            "root_device_name": "/dev/vda", "bdm_v2": "True",
            "block_device_mapping": mapping,
        }))
        .unwrap()
    }

    fn nova_two_disks() -> Value {
        json!(serde_json::to_string(&json!([
            {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": "s-data",
             "volume_size": 2, "device_name": "/dev/vdb", "boot_index": null,
             "delete_on_termination": false, "disk_bus": "virtio"},
            {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": "s-root",
             "volume_size": 1, "device_name": "/dev/vda", "boot_index": 0,
             "delete_on_termination": true, "disk_bus": "virtio", "device_type": "disk"},
            {"source_type": "blank", "destination_type": "local", "device_name": "/dev/vdc",
             "guest_format": "swap", "boot_index": -1},
        ]))
        .unwrap())
    }

    #[test]
    fn novas_mapping_gives_the_root_first_and_skips_local_disks() {
        let disks = disks_of(&image(nova_two_disks())).unwrap();
        assert_eq!(disks.len(), 2);
        assert!(disks[0].is_root());
        assert_eq!(disks[0].snapshot_id, "s-root");
        assert_eq!(disks[0].short_name(), "vda");
        assert_eq!(disks[1].device_name, "/dev/vdb");
        assert_eq!(disks[1].volume_size, 2);
        assert!(!disks[1].delete_on_termination);
        let entry = mapping_entry(&disks[0], "new");
        assert_eq!(entry["snapshot_id"], "new");
        assert_eq!(entry["boot_index"], 0);
        assert_eq!(entry["device_type"], "disk");
    }

    #[test]
    fn broken_mappings_are_refused_with_the_reason() {
        for (mapping, words) in [
            (json!("not json"), "not JSON"),
            (json!({"a": 1}), "not a list"),
            (
                json!([{"snapshot_id": "s", "volume_size": 1, "device_name": "/dev/vdb"}]),
                "boot_index 0",
            ),
            (
                json!([{"snapshot_id": "s", "boot_index": 0, "device_name": "/dev/vda"}]),
                "volume_size",
            ),
            (
                json!([{"source_type": "volume", "volume_id": "v", "boot_index": 0,
                        "volume_size": 1}]),
                "no snapshot_id",
            ),
            (
                json!([{"snapshot_id": "a", "boot_index": 0, "volume_size": 1, "device_name": "/dev/vda"},
                       {"snapshot_id": "b", "volume_size": 1, "device_name": "/dev/vda"}]),
                "repeated",
            ),
            (
                json!([{"snapshot_id": 5, "boot_index": 0, "volume_size": 1}]),
                "not text",
            ),
        ] {
            let error = disks_of(&image(mapping.clone())).unwrap_err().to_string();
            assert!(error.contains(words), "{mapping}: {error}");
        }
        let many: Vec<Value> = (0..=MAX_DISKS)
            .map(|i| json!({"snapshot_id": i.to_string()}))
            .collect();
        assert!(disks_of(&image(json!(many)))
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }
}
