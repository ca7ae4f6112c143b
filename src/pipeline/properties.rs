//! Image property rules: which properties of the source image the target gets, which
//! it must not, what the user adds or removes, and the provenance imgferry records.
//!
//! Pure: a [`SourceImage`]'s properties, the user's [`PropertyEdits`] and a
//! [`Provenance`] in, the final [`PropertyPlan`] out. No I/O, no cloud calls. The
//! rules are docs/commands/migrate.md's "Image properties" section; keep the two in step.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::error::PipelineError;

/// Glance's default `image_property_quota`: more extra properties are refused.
pub const MAX_PROPERTIES: usize = 128;
/// Set on the target image once imgferry has compared Glance's record with what it
/// sent (`sha512:HEX`); counted against [`MAX_PROPERTIES`] from the start.
pub const VERIFIED_PROPERTY: &str = "imgferry_verified";
/// Glance stores property keys and string values in 255-character columns.
pub const MAX_PROPERTY_LEN: usize = 255;

/// Keys that describe the instance a snapshot came from, or that Glance computes,
/// reserves or makes read-only: never copied to the target.
const DROPPED: [(&str, &str); 25] = [
    ("instance_uuid", "describes the source instance"),
    ("user_id", "describes the source instance"),
    ("image_type", "describes the source instance"),
    ("image_location", "describes the source instance"),
    ("image_state", "describes the source instance"),
    ("owner_id", "describes the source instance"),
    ("base_image_ref", "describes the source instance"),
    ("owner_project_name", "describes the source instance"),
    ("owner_user_name", "describes the source instance"),
    ("boot_roles", "describes the source instance"),
    ("block_device_mapping", "describes the source instance"),
    ("bdm_v2", "describes the source instance"),
    ("root_device_name", "describes the source instance"),
    ("instance_owner", "describes the source instance"),
    ("os_hash_algo", "computed by Glance"),
    ("os_hash_value", "computed by Glance"),
    ("checksum", "computed by Glance"),
    ("size", "computed by Glance"),
    ("virtual_size", "computed by Glance"),
    ("stores", "set by Glance"),
    ("direct_url", "set by Glance"),
    ("locations", "set by Glance"),
    (
        "signature_verified",
        "set by Cinder on a volume made from an image",
    ),
    ("kernel_id", "an image id of the source cloud"),
    ("ramdisk_id", "an image id of the source cloud"),
];

/// Prefixes of keys never copied.
const DROPPED_PREFIXES: [(&str, &str); 3] = [
    (
        "owner_specified.openstack.",
        "inherited from the base image, wrong for a snapshot",
    ),
    ("os_glance", "reserved by Glance"),
    ("imgferry_", "replaced by this run's provenance"),
];

/// Core image attributes: set through their own fields, never as properties.
const CORE: [&str; 16] = [
    "id",
    "name",
    "status",
    "visibility",
    "disk_format",
    "container_format",
    "owner",
    "protected",
    "min_disk",
    "min_ram",
    "created_at",
    "updated_at",
    "tags",
    "file",
    "schema",
    "self",
];

/// Where the image came from and what was done to it; recorded on the target under
/// `imgferry_*` keys, and used to find a target an earlier run created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The source cloud's name, or `file` for a local source.
    pub source_cloud: String,
    /// The source image id (or the source file's path).
    pub source_image_id: String,
    /// `ALGO:HEX` of the source data.
    pub source_hash: String,
    /// The imgferry version that made the target.
    pub version: String,
    /// The sysprep applied, in words (`none`, `defaults`, `defaults,-a,+b`, a list).
    pub sysprep: String,
    /// A digest of the request (source, target, every option): runs of the same
    /// command share it, so a re-run finds the image the first one made.
    pub request: String,
}

impl Provenance {
    /// The `imgferry_*` properties, in key order.
    pub fn properties(&self) -> BTreeMap<String, Value> {
        [
            ("imgferry_request", &self.request),
            ("imgferry_source_cloud", &self.source_cloud),
            ("imgferry_source_hash", &self.source_hash),
            ("imgferry_source_image_id", &self.source_image_id),
            ("imgferry_sysprep", &self.sysprep),
            ("imgferry_version", &self.version),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(truncated(v))))
        .collect()
    }
}

/// Glance refuses longer values; provenance is informational past that length.
fn truncated(text: &str) -> String {
    if text.len() <= MAX_PROPERTY_LEN {
        return text.to_owned();
    }
    let mut end = MAX_PROPERTY_LEN - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// What the user asked to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyEdits {
    /// `--property k=v`, in order (a later one wins).
    pub set: Vec<(String, String)>,
    /// `--drop-property k`; a trailing `*` matches every key with that prefix.
    pub drop: Vec<String>,
}

impl PropertyEdits {
    /// Parses one `--property` value, `KEY=VALUE`.
    pub fn parse_assignment(text: &str) -> Result<(String, String), PipelineError> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(PipelineError::InvalidProperty {
                key: text.to_owned(),
                problem: "expected KEY=VALUE".to_owned(),
            });
        };
        Ok((key.trim().to_owned(), value.to_owned()))
    }
}

impl PropertyEdits {
    /// Refuses `--property` keys that can never be set, before anything is read.
    pub fn validate(&self) -> Result<(), PipelineError> {
        self.set
            .iter()
            .try_for_each(|(key, value)| check_assignment(key, value))
    }
}

/// One key not carried over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedProperty {
    pub key: String,
    pub reason: &'static str,
}

/// The target's properties and what was left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyPlan {
    /// The final extra properties (kept, set by the user, provenance).
    pub properties: BTreeMap<String, Value>,
    /// Source keys not carried over.
    pub dropped: Vec<DroppedProperty>,
}

/// Why `key` must not be copied, if it must not.
pub fn drop_reason(key: &str) -> Option<&'static str> {
    if CORE.contains(&key) {
        return Some("a core attribute, set on its own");
    }
    if let Some((_, reason)) = DROPPED.iter().find(|(name, _)| *name == key) {
        return Some(reason);
    }
    DROPPED_PREFIXES
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map(|(_, reason)| *reason)
}

fn matches_drop(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    }
}

/// Applies the rules: source properties minus the dropped ones, minus `--drop-property`,
/// plus `--property`, plus provenance; at most [`MAX_PROPERTIES`].
pub fn plan_properties(
    source: &BTreeMap<String, Value>,
    edits: &PropertyEdits,
    provenance: &Provenance,
) -> Result<PropertyPlan, PipelineError> {
    let mut properties = BTreeMap::new();
    let mut dropped = Vec::new();
    for (key, value) in source {
        if let Some(reason) = drop_reason(key) {
            dropped.push(DroppedProperty {
                key: key.clone(),
                reason,
            });
        } else if edits.drop.iter().any(|p| matches_drop(p, key)) {
            dropped.push(DroppedProperty {
                key: key.clone(),
                reason: "--drop-property",
            });
        } else {
            properties.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in &edits.set {
        check_assignment(key, value)?;
        properties.insert(key.clone(), Value::String(value.clone()));
    }
    properties.extend(provenance.properties());
    // The image ends with one more: VERIFIED_PROPERTY, set after the upload.
    let count = properties.len() + 1;
    if count > MAX_PROPERTIES {
        return Err(PipelineError::TooManyProperties {
            count,
            limit: MAX_PROPERTIES,
        });
    }
    Ok(PropertyPlan {
        properties,
        dropped,
    })
}

fn check_assignment(key: &str, value: &str) -> Result<(), PipelineError> {
    let problem = if key.is_empty() {
        Some("the key is empty".to_owned())
    } else if key.len() > MAX_PROPERTY_LEN || value.len() > MAX_PROPERTY_LEN {
        Some(format!(
            "keys and values are limited to {MAX_PROPERTY_LEN} characters"
        ))
    } else if key.starts_with("imgferry_") {
        Some("imgferry_* keys hold provenance and are set by imgferry".to_owned())
    } else {
        drop_reason(key).map(|reason| format!("not settable as a property: {reason}"))
    };
    match problem {
        Some(problem) => Err(PipelineError::InvalidProperty {
            key: key.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "properties_tests.rs"]
mod tests;
