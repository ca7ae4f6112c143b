//! Cinder v3 (Block Storage): volumes, volume snapshots, upload of a volume into Glance,
//! quota usage and volume types, for one project.
//!
//! Owns the Block Storage API's URLs and answers (untrusted: bounded bodies, bounded page
//! counts, a marker that must advance). Waiting for a status, timeouts and clean-up are
//! the pipeline's; token handling is the [`Session`]'s. It must not print.

mod records;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use url::Url;

use crate::cloud::http::{self, display_url, join_path, Method, RequestBody};
use crate::cloud::keystone::Session;
use crate::cloud::CloudError;
use records::{LimitsBody, QuotaSetBody};
pub use records::{QuotaItem, QuotaUsage, Snapshot, UploadedImage, Volume, VolumeType};

/// Records asked for per page.
const PAGE_SIZE: u32 = 200;
/// Most pages followed in one listing (a million volumes): stops a `next` that never ends.
const MAX_PAGES: usize = 5_000;

/// A connection to one project's Block Storage service, v3.
#[derive(Debug, Clone)]
pub struct Cinder {
    session: Session,
    /// `.../v3/{project_id}`.
    root: Url,
    project_id: String,
}

/// What a new volume is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeOrigin {
    Snapshot(String),
    Image(String),
    Empty,
}

/// A volume to create.
#[derive(Debug, Clone)]
pub struct NewVolume {
    pub name: String,
    /// GiB.
    pub size: u64,
    pub origin: VolumeOrigin,
    pub volume_type: Option<String>,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Deserialize)]
struct VolumeBody {
    volume: Volume,
}

#[derive(Deserialize)]
struct SnapshotBody {
    snapshot: Snapshot,
}

#[derive(Deserialize)]
struct UploadBody {
    #[serde(rename = "os-volume_upload_image")]
    upload: UploadedImage,
}

#[derive(Deserialize)]
struct TypesBody {
    volume_types: Vec<VolumeType>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: String,
    #[serde(default)]
    href: String,
}

impl Cinder {
    /// Finds the `volumev3` (or `block-storage`) endpoint of the session's project.
    pub fn connect(session: Session) -> Result<Self, CloudError> {
        let project_id = session
            .token()
            .project
            .as_ref()
            .map(|p| p.id.clone())
            .ok_or_else(|| CloudError::NoBlockStorage {
                cloud: session.cloud().to_owned(),
                reason: "the token is not scoped to a project".into(),
            })?;
        let endpoint = match session.endpoint("volumev3") {
            Ok(url) => url,
            Err(CloudError::NoEndpoint { .. }) => {
                session
                    .endpoint("block-storage")
                    .map_err(|error| match error {
                        CloudError::NoEndpoint { .. } => CloudError::NoBlockStorage {
                            cloud: session.cloud().to_owned(),
                            reason: "the catalog has no `volumev3` or `block-storage` endpoint"
                                .into(),
                        },
                        other => other,
                    })?
            }
            Err(other) => return Err(other),
        };
        let root = project_root(&endpoint, &project_id);
        Ok(Self {
            session,
            root,
            project_id,
        })
    }

    /// The project the calls act in.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `name (id)` of the project.
    pub fn project_label(&self) -> String {
        self.session.project_label()
    }

    /// The session (its cloud name, token renewals).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.root.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Option<T>, CloudError> {
        let body = body.map_or(RequestBody::Empty, RequestBody::Json);
        let response = self.session.execute(method, url, &[], body)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if !ok.contains(&status) {
            return Err(http::status_error(method, url, response));
        }
        Ok(Some(http::read_json(url, response)?))
    }

    fn not_found(&self, kind: &'static str, id: &str) -> CloudError {
        CloudError::BlockStorageNotFound {
            kind,
            id: id.to_owned(),
            project: self.session.project_label(),
        }
    }

    /// The volume with this id.
    pub fn volume(&mut self, id: &str) -> Result<Volume, CloudError> {
        let url = self.url(&["volumes", id]);
        self.call::<VolumeBody>(Method::Get, &url, None, &[200])?
            .map(|b| b.volume)
            .ok_or_else(|| self.not_found("volume", id))
    }

    /// The snapshot with this id. A snapshot of another project is "not found" here:
    /// Cinder shows a member only its own project's.
    pub fn snapshot(&mut self, id: &str) -> Result<Snapshot, CloudError> {
        let url = self.url(&["snapshots", id]);
        self.call::<SnapshotBody>(Method::Get, &url, None, &[200])?
            .map(|b| b.snapshot)
            .ok_or_else(|| self.not_found("snapshot", id))
    }

    /// Creates a volume; it starts `creating`.
    pub fn create_volume(&mut self, new: &NewVolume) -> Result<Volume, CloudError> {
        let mut fields = Map::new();
        fields.insert("name".into(), json!(new.name));
        fields.insert("size".into(), json!(new.size));
        fields.insert("metadata".into(), Value::Object(new.metadata.clone()));
        match &new.origin {
            VolumeOrigin::Snapshot(id) => {
                fields.insert("snapshot_id".into(), json!(id));
            }
            VolumeOrigin::Image(id) => {
                fields.insert("imageRef".into(), json!(id));
            }
            VolumeOrigin::Empty => {}
        }
        if let Some(kind) = &new.volume_type {
            fields.insert("volume_type".into(), json!(kind));
        }
        if let Some(text) = &new.description {
            fields.insert("description".into(), json!(text));
        }
        let url = self.url(&["volumes"]);
        let body = json!({ "volume": fields });
        self.call::<VolumeBody>(Method::Post, &url, Some(&body), &[200, 202])?
            .map(|b| b.volume)
            .ok_or_else(|| self.not_found("volume origin", &new.name))
    }

    /// Deletes a volume. Returns `false` when it did not exist (any more).
    pub fn delete_volume(&mut self, id: &str) -> Result<bool, CloudError> {
        self.delete(&["volumes", id])
    }

    /// Snapshots a volume (`force`: also when it is attached); it starts `creating`.
    pub fn create_snapshot(
        &mut self,
        volume_id: &str,
        name: &str,
        metadata: &Map<String, Value>,
    ) -> Result<Snapshot, CloudError> {
        let url = self.url(&["snapshots"]);
        let body = json!({"snapshot": {
            "volume_id": volume_id, "name": name, "force": true, "metadata": metadata,
        }});
        self.call::<SnapshotBody>(Method::Post, &url, Some(&body), &[200, 202])?
            .map(|b| b.snapshot)
            .ok_or_else(|| self.not_found("volume", volume_id))
    }

    /// Deletes a snapshot. Returns `false` when it did not exist (any more).
    pub fn delete_snapshot(&mut self, id: &str) -> Result<bool, CloudError> {
        self.delete(&["snapshots", id])
    }

    fn delete(&mut self, segments: &[&str]) -> Result<bool, CloudError> {
        let url = self.url(segments);
        let response = self
            .session
            .execute(Method::Delete, &url, &[], RequestBody::Empty)?;
        match response.status().as_u16() {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(http::status_error(Method::Delete, &url, response)),
        }
    }

    /// `os-volume_upload_image`: Cinder copies the volume into a new Glance image named
    /// `image_name` in `disk_format` (the volume goes `uploading`, then back to
    /// `available`; the image goes `queued` → `saving` → `active`).
    pub fn upload_to_image(
        &mut self,
        volume_id: &str,
        image_name: &str,
        disk_format: &str,
    ) -> Result<UploadedImage, CloudError> {
        let url = self.url(&["volumes", volume_id, "action"]);
        let body = json!({"os-volume_upload_image": {
            "image_name": image_name,
            "force": false,
            "disk_format": disk_format,
            "container_format": "bare",
        }});
        self.call::<UploadBody>(Method::Post, &url, Some(&body), &[200, 202])?
            .map(|b| b.upload)
            .ok_or_else(|| self.not_found("volume", volume_id))
    }

    /// Every volume of the project, optionally only those named `name`.
    pub fn volumes(&mut self, name: Option<&str>) -> Result<Vec<Volume>, CloudError> {
        self.list("volumes", name)
    }

    /// Every snapshot of the project, optionally only those named `name`.
    pub fn snapshots(&mut self, name: Option<&str>) -> Result<Vec<Snapshot>, CloudError> {
        self.list("snapshots", name)
    }

    fn list<T: DeserializeOwned>(
        &mut self,
        kind: &'static str,
        name: Option<&str>,
    ) -> Result<Vec<T>, CloudError> {
        let links_key = format!("{kind}_links");
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.url(&[kind, "detail"]);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", &PAGE_SIZE.to_string());
                if let Some(name) = name {
                    query.append_pair("name", name);
                }
                if let Some(marker) = &marker {
                    query.append_pair("marker", marker);
                }
            }
            let mut page: Map<String, Value> = self
                .call(Method::Get, &url, None, &[200])?
                .ok_or_else(|| self.not_found("listing", kind))?;
            let records = page.remove(kind).unwrap_or(Value::Array(Vec::new()));
            let records: Vec<Value> =
                serde_json::from_value(records).map_err(|e| invalid(&url, e))?;
            let mut last_id = None;
            for record in records {
                last_id = record.get("id").and_then(Value::as_str).map(str::to_owned);
                items.push(serde_json::from_value(record).map_err(|e| invalid(&url, e))?);
            }
            let links: Vec<Link> = page
                .remove(&links_key)
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            if !links.iter().any(|l| l.rel == "next" && !l.href.is_empty()) {
                return Ok(items);
            }
            let Some(next) = last_id else {
                return Ok(items);
            };
            if marker.as_deref() == Some(next.as_str()) {
                return Err(CloudError::InvalidResponse {
                    url: display_url(&url),
                    problem: "its `next` link repeats the same page".into(),
                });
            }
            marker = Some(next);
        }
        Err(CloudError::TooManyPages {
            url: display_url(&self.url(&[kind, "detail"])),
            pages: MAX_PAGES,
        })
    }

    /// The project's volume, gigabyte and snapshot quotas with their usage
    /// (`os-quota-sets/{project}?usage=true`; `GET /limits` when a member may not read
    /// the quota API).
    pub fn quota_usage(&mut self) -> Result<QuotaUsage, CloudError> {
        let mut url = self.url(&["os-quota-sets", &self.project_id.clone()]);
        url.query_pairs_mut().append_pair("usage", "true");
        let response = self
            .session
            .execute(Method::Get, &url, &[], RequestBody::Empty)?;
        match response.status().as_u16() {
            200 => {
                let body: QuotaSetBody = http::read_json(&url, response)?;
                Ok(QuotaUsage::from_quota_set(&body.quota_set))
            }
            403 => {
                let url = self.url(&["limits"]);
                let body: LimitsBody = self
                    .call(Method::Get, &url, None, &[200])?
                    .ok_or_else(|| self.not_found("limits", "limits"))?;
                Ok(QuotaUsage::from_limits(&body.limits.absolute))
            }
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// The volume types this project may use.
    pub fn volume_types(&mut self) -> Result<Vec<VolumeType>, CloudError> {
        let url = self.url(&["types"]);
        Ok(self
            .call::<TypesBody>(Method::Get, &url, None, &[200])?
            .map(|b| b.volume_types)
            .unwrap_or_default())
    }
}

fn invalid(url: &Url, error: serde_json::Error) -> CloudError {
    CloudError::InvalidResponse {
        url: display_url(url),
        problem: format!("not the JSON expected ({error})"),
    }
}

/// The project's API root: the catalog URL as is when it already names the project
/// (`.../v3/{project_id}`), else with the project id appended (Cinder accepts both since
/// microversion 3.67, and older ones need it).
fn project_root(endpoint: &Url, project_id: &str) -> Url {
    let path = endpoint.path().trim_end_matches('/');
    if path.rsplit('/').next() == Some(project_id) {
        let mut url = endpoint.clone();
        url.set_path(path);
        url.set_query(None);
        url
    } else {
        let mut url = join_path(endpoint, project_id);
        url.set_query(None);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_root_appends_the_project_only_when_missing() {
        let with = Url::parse("http://c:8776/v3/abc/").unwrap();
        assert_eq!(project_root(&with, "abc").as_str(), "http://c:8776/v3/abc");
        let without = Url::parse("http://c:8776/volume/v3").unwrap();
        assert_eq!(
            project_root(&without, "abc").as_str(),
            "http://c:8776/volume/v3/abc"
        );
    }
}
