//! Cinder v3 records as the Block Storage API returns them: volumes, snapshots, quota
//! usage, volume types.
//!
//! Owns the wire shapes only (untrusted: every field the server may leave out has a
//! default). It must not make requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One volume as `GET /volumes/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    /// Size in GiB.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// `"true"` or `"false"` (Cinder sends a string).
    #[serde(default)]
    pub bootable: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The image properties a volume made from an image carries (`hw_*`, `os_*`, ...).
    #[serde(default)]
    pub volume_image_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One volume snapshot as `GET /snapshots/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    /// Size in GiB (that of the volume it was taken of).
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The owning project, shown to whoever the policy allows.
    #[serde(
        default,
        rename = "os-extended-snapshot-attributes:project_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub project_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What `os-volume_upload_image` answers: the image Cinder is filling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UploadedImage {
    pub image_id: String,
    #[serde(default)]
    pub image_name: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
}

/// Limit and use of one quota resource; a negative limit means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuotaItem {
    #[serde(default)]
    pub limit: i64,
    #[serde(default)]
    pub in_use: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default)]
    pub allocated: i64,
}

impl QuotaItem {
    /// How many more fit, or `None` when unlimited.
    pub fn room(&self) -> Option<u64> {
        if self.limit < 0 {
            return None;
        }
        let used = self
            .in_use
            .max(0)
            .saturating_add(self.reserved.max(0))
            .saturating_add(self.allocated.max(0));
        Some(self.limit.saturating_sub(used).max(0) as u64)
    }
}

/// The project's volume, gigabyte and snapshot quotas with their usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QuotaUsage {
    pub volumes: QuotaItem,
    pub gigabytes: QuotaItem,
    pub snapshots: QuotaItem,
}

/// `os-quota-sets/{project}?usage=true`: each resource is an object with its usage.
#[derive(Deserialize)]
pub(super) struct QuotaSetBody {
    pub quota_set: BTreeMap<String, Value>,
}

/// `GET /limits`: what any member may read when the quota API is closed to it.
#[derive(Deserialize)]
pub(super) struct LimitsBody {
    pub limits: Limits,
}

#[derive(Deserialize)]
pub(super) struct Limits {
    #[serde(default)]
    pub absolute: BTreeMap<String, Value>,
}

impl QuotaUsage {
    /// From `os-quota-sets … ?usage=true`.
    pub(super) fn from_quota_set(set: &BTreeMap<String, Value>) -> Self {
        let item = |key: &str| {
            set.get(key)
                .and_then(|v| serde_json::from_value::<QuotaItem>(v.clone()).ok())
                .unwrap_or(QuotaItem {
                    limit: -1,
                    ..QuotaItem::default()
                })
        };
        Self {
            volumes: item("volumes"),
            gigabytes: item("gigabytes"),
            snapshots: item("snapshots"),
        }
    }

    /// From `GET /limits` (`maxTotalVolumes`, `totalVolumesUsed`, ...).
    pub(super) fn from_limits(absolute: &BTreeMap<String, Value>) -> Self {
        let number =
            |key: &str, missing: i64| absolute.get(key).and_then(Value::as_i64).unwrap_or(missing);
        let item = |max: &str, used: &str| QuotaItem {
            limit: number(max, -1),
            in_use: number(used, 0),
            ..QuotaItem::default()
        };
        Self {
            volumes: item("maxTotalVolumes", "totalVolumesUsed"),
            gigabytes: item("maxTotalVolumeGigabytes", "totalGigabytesUsed"),
            snapshots: item("maxTotalSnapshots", "totalSnapshotsUsed"),
        }
    }
}

/// One volume type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VolumeType {
    pub id: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quota_room_counts_use_reservations_and_unlimited() {
        let item = QuotaItem {
            limit: 10,
            in_use: 3,
            reserved: 2,
            allocated: 0,
        };
        assert_eq!(item.room(), Some(5));
        let over = QuotaItem {
            limit: 2,
            in_use: 5,
            ..QuotaItem::default()
        };
        assert_eq!(over.room(), Some(0));
        let unlimited = QuotaItem {
            limit: -1,
            in_use: 5,
            ..QuotaItem::default()
        };
        assert_eq!(unlimited.room(), None);
    }

    #[test]
    fn quota_usage_reads_both_apis_and_tolerates_junk() {
        let set: BTreeMap<String, Value> = serde_json::from_value(json!({
            "id": "p",
            "volumes": {"limit": 10, "in_use": 1, "reserved": 0, "allocated": 0},
            "gigabytes": {"limit": 1000, "in_use": 20},
            "snapshots": "garbage",
        }))
        .unwrap();
        let usage = QuotaUsage::from_quota_set(&set);
        assert_eq!(usage.volumes.room(), Some(9));
        assert_eq!(usage.gigabytes.room(), Some(980));
        assert_eq!(usage.snapshots.room(), None);
        let limits: BTreeMap<String, Value> = serde_json::from_value(json!({
            "maxTotalVolumes": 4, "totalVolumesUsed": 4,
            "maxTotalVolumeGigabytes": -1, "totalGigabytesUsed": 7,
        }))
        .unwrap();
        let usage = QuotaUsage::from_limits(&limits);
        assert_eq!(usage.volumes.room(), Some(0));
        assert_eq!(usage.gigabytes.room(), None);
    }
}
