//! The Glance v2 image record: typed core fields plus every other key, kept.
//!
//! Owns the record's wire shape. Glance puts custom properties at the top level next to
//! its own fields, so unknown keys are collected into [`Image::properties`] rather than
//! dropped; serializing gives the same flat shape back. It must not make requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One image as `GET /v2/images/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    /// Bytes of image data; `None` until data is uploaded.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// MD5 of the data (legacy; absent for images created by location).
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub protected: Option<bool>,
    #[serde(default)]
    pub min_disk: Option<u64>,
    #[serde(default)]
    pub min_ram: Option<u64>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Path of the data below the API root, e.g. `/v2/images/{id}/file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Every other key: custom and service properties (`hw_*`, `os_*`, `stores`, ...).
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

/// Keys Glance adds to every record that describe the API, not the image.
const LINK_KEYS: [&str; 2] = ["self", "schema"];

impl Image {
    /// Drops API links (`self`, `schema`) from the properties.
    pub(super) fn without_links(mut self) -> Self {
        for key in LINK_KEYS {
            self.properties.remove(key);
        }
        self
    }

    /// The name, or an empty string for an unnamed image.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_kept_as_properties_and_round_trip() {
        let record = json!({
            "id": "cd5e32b3-1a87-4fa1-adf0-7a0e2031df7f", "name": "big", "status": "active",
            "visibility": "shared", "disk_format": "raw", "container_format": "bare",
            "size": 1073741824u64, "virtual_size": null, "checksum": "1a36", "os_hash_algo": "sha512",
            "os_hash_value": "1180", "owner": "be0b", "protected": false, "min_disk": 0, "min_ram": 0,
            "created_at": "2026-11-22T04:50:28Z", "updated_at": "2026-11-22T04:50:39Z", "tags": ["t"],
            "file": "/v2/images/cd5e/file", "self": "/v2/images/cd5e", "schema": "/v2/schemas/image",
            "hw_disk_bus": "scsi", "os_hidden": false, "stores": "local"
        });
        let image: Image = serde_json::from_value(record).unwrap();
        let image = image.without_links();
        assert_eq!(image.size, Some(1 << 30));
        assert_eq!(image.virtual_size, None);
        assert_eq!(
            image.properties.keys().collect::<Vec<_>>(),
            ["hw_disk_bus", "os_hidden", "stores"]
        );
        let back = serde_json::to_value(&image).unwrap();
        assert_eq!(back["hw_disk_bus"], "scsi");
        assert_eq!(back["size"], 1073741824u64);
        assert!(back.get("self").is_none());
    }

    #[test]
    fn a_queued_image_has_no_size_or_hash() {
        let image: Image = serde_json::from_value(
            json!({"id": "x", "status": "queued", "size": null, "checksum": null}),
        )
        .unwrap();
        assert_eq!((image.size, image.checksum.as_deref()), (None, None));
        assert_eq!(image.display_name(), "");
    }
}
