//! Glance v2, write side: create, update (JSON patch) and delete image records, image
//! members, and the import methods a cloud offers.
//!
//! Owns the URLs and answers of these calls; every request here is replayable, so the
//! [`Session`](crate::cloud::keystone::Session) re-authenticates once on a 401. Image data
//! (download, upload, staging) is in `data`. It must not print.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Glance, Image};
use crate::cloud::http::{self, Method, RequestBody};
use crate::cloud::CloudError;

/// Glance's media type for `PATCH /v2/images/{id}`.
const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// One JSON-patch operation on an image record.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    /// Sets a property, creating it if absent (`op: add` replaces an existing value).
    Set { property: String, value: Value },
    /// Removes a property.
    Remove { property: String },
}

impl PatchOp {
    fn to_json(&self) -> Value {
        match self {
            Self::Set { property, value } => {
                json!({"op": "add", "path": format!("/{}", pointer_escape(property)), "value": value})
            }
            Self::Remove { property } => {
                json!({"op": "remove", "path": format!("/{}", pointer_escape(property))})
            }
        }
    }
}

/// An image member: a project an image is shared with, and whether it accepted.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
}

/// What a member may answer to a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Accepted,
    Rejected,
    Pending,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Pending => "pending",
        }
    }
}

#[derive(Deserialize)]
struct ImportInfo {
    #[serde(rename = "import-methods", default)]
    import_methods: Option<ImportMethods>,
}

#[derive(Deserialize)]
struct ImportMethods {
    #[serde(default)]
    value: Vec<String>,
}

impl Glance {
    /// Creates an image record (`POST /v2/images`) from its fields; it starts `queued`.
    pub fn create(&mut self, fields: &Map<String, Value>) -> Result<Image, CloudError> {
        let url = self.images_url(&[]);
        let body = Value::Object(fields.clone());
        let response = self
            .session
            .execute(Method::Post, &url, &[], RequestBody::Json(&body))?;
        match response.status().as_u16() {
            201 | 200 => Ok(http::read_json::<Image>(&url, response)?.without_links()),
            _ => Err(http::status_error(Method::Post, &url, response)),
        }
    }

    /// Applies `ops` to an image record (`PATCH /v2/images/{id}`).
    pub fn update(&mut self, id: &str, ops: &[PatchOp]) -> Result<Image, CloudError> {
        let url = self.images_url(&[id]);
        let body = Value::Array(ops.iter().map(PatchOp::to_json).collect());
        let response = self.session.execute(
            Method::Patch,
            &url,
            &[],
            RequestBody::JsonAs(&body, JSON_PATCH),
        )?;
        match response.status().as_u16() {
            200 => Ok(http::read_json::<Image>(&url, response)?.without_links()),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Patch, &url, response)),
        }
    }

    /// Deletes an image. Returns `false` when it did not exist (any more).
    pub fn delete(&mut self, id: &str) -> Result<bool, CloudError> {
        let url = self.images_url(&[id]);
        let response = self
            .session
            .execute(Method::Delete, &url, &[], RequestBody::Empty)?;
        match response.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(http::status_error(Method::Delete, &url, response)),
        }
    }

    /// Shares an image with a project (`POST /v2/images/{id}/members`); the member
    /// starts `pending` until that project accepts.
    pub fn add_member(&mut self, id: &str, project_id: &str) -> Result<Member, CloudError> {
        let url = self.images_url(&[id, "members"]);
        let body = json!({ "member": project_id });
        let response = self
            .session
            .execute(Method::Post, &url, &[], RequestBody::Json(&body))?;
        match response.status().as_u16() {
            200 | 201 => http::read_json(&url, response),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Post, &url, response)),
        }
    }

    /// One member of an image (`GET /v2/images/{id}/members/{member_id}`), as the owner
    /// or that member sees it.
    pub fn member(&mut self, id: &str, member_id: &str) -> Result<Member, CloudError> {
        let url = self.images_url(&[id, "members", member_id]);
        let response = self.session.send(Method::Get, &url, None)?;
        match response.status().as_u16() {
            200 => http::read_json(&url, response),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// Sets a member's status (run as the member project: accept or reject a share).
    pub fn update_member(
        &mut self,
        id: &str,
        member_id: &str,
        status: MemberStatus,
    ) -> Result<Member, CloudError> {
        let url = self.images_url(&[id, "members", member_id]);
        let body = json!({ "status": status.as_str() });
        let response = self
            .session
            .execute(Method::Put, &url, &[], RequestBody::Json(&body))?;
        match response.status().as_u16() {
            200 => http::read_json(&url, response),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Put, &url, response)),
        }
    }

    /// The interoperable import methods the cloud offers (`GET /v2/info/import`); empty
    /// when the call is not supported.
    pub fn import_methods(&mut self) -> Result<Vec<String>, CloudError> {
        let url = http::join_path(&self.root, "info/import");
        let response = self.session.send(Method::Get, &url, None)?;
        match response.status().as_u16() {
            200 => {
                let info: ImportInfo = http::read_json(&url, response)?;
                Ok(info.import_methods.map(|m| m.value).unwrap_or_default())
            }
            404 => Ok(Vec::new()),
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// Starts an interoperable import of staged data (`POST /v2/images/{id}/import`).
    pub fn import(&mut self, id: &str, method: &str) -> Result<(), CloudError> {
        let url = self.images_url(&[id, "import"]);
        let body = json!({ "method": { "name": method } });
        let response = self
            .session
            .execute(Method::Post, &url, &[], RequestBody::Json(&body))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Post, &url, response)),
        }
    }
}

/// Escapes a property name for a JSON pointer (RFC 6901).
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_ops_are_json_patch_with_escaped_paths() {
        let set = PatchOp::Set {
            property: "a/b~c".into(),
            value: json!("v"),
        };
        assert_eq!(
            set.to_json(),
            json!({"op": "add", "path": "/a~1b~0c", "value": "v"})
        );
        let remove = PatchOp::Remove {
            property: "x".into(),
        };
        assert_eq!(remove.to_json(), json!({"op": "remove", "path": "/x"}));
    }
}
