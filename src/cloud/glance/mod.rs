//! Glance v2: version discovery, listing with pagination, show, and resolving a name or
//! id to one image here; record writes and members in `write`, image data in `data`.
//!
//! Owns the Image API's URLs and its answers (treated as untrusted: bounded bodies,
//! bounded page counts, a marker that must advance). Token handling is the [`Session`]'s.
//! It must not print; retries, resumes and verification of transfers belong to `transfer/`.

mod data;
mod image;
mod write;

use serde::Deserialize;
use url::Url;

use crate::cloud::http::{self, display_url, join_path, Method};
use crate::cloud::keystone::Session;
use crate::cloud::{CloudError, ImageCandidate};
pub use data::{DataResponse, DataTarget, RangeAnswer};
pub use image::Image;
pub use write::{Member, MemberStatus, PatchOp};

/// Images asked for per page by default (Glance caps it with its `api_limit_max`, 1000 by default).
pub const PAGE_SIZE: u32 = 200;
/// Most pages followed in one listing: 10,000 pages of 200 is two million images, far
/// beyond any real project; the cap stops a server whose `next` never ends.
const MAX_PAGES: usize = 10_000;

/// A connection to one cloud's Image service, v2.
#[derive(Debug, Clone)]
pub struct Glance {
    session: Session,
    /// The v2 root, e.g. `https://glance.example.com:9292/v2/`.
    root: Url,
    /// The newest v2 minor version the server offers, e.g. `2.18`.
    version: String,
}

/// Restricts a listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only images with exactly this name.
    pub name: Option<String>,
    /// Images per request (default [`PAGE_SIZE`]); the server may cap it.
    pub page_size: Option<u32>,
}

#[derive(Deserialize)]
struct VersionList {
    versions: Vec<VersionEntry>,
}

#[derive(Deserialize)]
struct VersionEntry {
    id: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct ImagePage {
    images: Vec<Image>,
    #[serde(default)]
    next: Option<String>,
}

impl Glance {
    /// Finds the image endpoint and checks at its root that it speaks v2.
    pub fn connect(session: Session) -> Result<Self, CloudError> {
        let endpoint = session.endpoint("image")?;
        let base = unversioned(&endpoint);
        let response = session.http().send(Method::Get, &base, None, None)?;
        let status = response.status().as_u16();
        let version = match status {
            200 | 300 => {
                let list: VersionList = http::read_json(&base, response)?;
                newest_v2(&list.versions).ok_or_else(|| CloudError::NoImageApiV2 {
                    url: display_url(&base),
                    offered: list
                        .versions
                        .iter()
                        .map(|v| v.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
            }
            // Some deployments hide the version document behind auth or a proxy; v2 is
            // then the only Image API there can be.
            401 | 403 | 404 => "2".to_owned(),
            _ => return Err(http::status_error(Method::Get, &base, response)),
        };
        Ok(Self {
            root: join_path(&base, "v2/"),
            session,
            version,
        })
    }

    /// The session, e.g. to refresh the token before a long transfer.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The newest v2 minor version offered, e.g. `2.18`.
    pub fn api_version(&self) -> &str {
        &self.version
    }

    /// The v2 root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// All images visible to the project, following `next` links.
    pub fn list(&mut self, filter: &ListFilter) -> Result<Vec<Image>, CloudError> {
        let mut images = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = join_path(&self.root, "images");
            {
                let mut query = url.query_pairs_mut();
                let limit = filter.page_size.unwrap_or(PAGE_SIZE).max(1);
                query.append_pair("limit", &limit.to_string());
                if let Some(name) = &filter.name {
                    query.append_pair("name", name);
                }
                if let Some(marker) = &marker {
                    query.append_pair("marker", marker);
                }
            }
            let response = self.session.send(Method::Get, &url, None)?;
            if !response.status().is_success() {
                return Err(http::status_error(Method::Get, &url, response));
            }
            let page: ImagePage = http::read_json(&url, response)?;
            images.extend(page.images.into_iter().map(Image::without_links));
            let Some(next) = page.next else {
                return Ok(images);
            };
            let next_marker =
                marker_of(&self.root, &next).ok_or_else(|| CloudError::InvalidResponse {
                    url: display_url(&url),
                    problem: "its `next` link has no marker".into(),
                })?;
            if marker.as_deref() == Some(next_marker.as_str()) {
                return Err(CloudError::InvalidResponse {
                    url: display_url(&url),
                    problem: "its `next` link repeats the same page".into(),
                });
            }
            marker = Some(next_marker);
        }
        Err(CloudError::TooManyPages {
            url: display_url(&join_path(&self.root, "images")),
            pages: MAX_PAGES,
        })
    }

    /// `{root}/images/{segments...}`, each segment percent-encoded.
    fn images_url(&self, segments: &[&str]) -> Url {
        let mut url = join_path(&self.root, "images");
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// The image with this id.
    pub fn show(&mut self, id: &str) -> Result<Image, CloudError> {
        let url = self.images_url(&[id]);
        let response = self.session.send(Method::Get, &url, None)?;
        match response.status().as_u16() {
            200 => Ok(http::read_json::<Image>(&url, response)?.without_links()),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// The one image whose id or name is `wanted`: an id-shaped value is looked up by id
    /// first; a name must match exactly one image.
    pub fn resolve(&mut self, wanted: &str) -> Result<Image, CloudError> {
        if looks_like_uuid(wanted) {
            match self.show(wanted) {
                Err(CloudError::ImageNotFound { .. }) => {}
                other => return other,
            }
        }
        // Glance reads `name=in:a,b` as a list; such a name is matched here instead.
        let server_filter = ListFilter {
            name: (!wanted.starts_with("in:")).then(|| wanted.to_owned()),
            page_size: None,
        };
        let mut matches: Vec<Image> = self
            .list(&server_filter)?
            .into_iter()
            .filter(|image| image.name.as_deref() == Some(wanted))
            .collect();
        match matches.len() {
            0 => Err(self.not_found(wanted)),
            1 => Ok(matches.remove(0)),
            _ => Err(CloudError::AmbiguousImage {
                name: wanted.to_owned(),
                candidates: matches
                    .iter()
                    .map(|image| ImageCandidate {
                        id: image.id.clone(),
                        status: image.status.clone(),
                        visibility: image.visibility.clone().unwrap_or_default(),
                        owner: image.owner.clone().unwrap_or_default(),
                    })
                    .collect(),
            }),
        }
    }

    fn not_found(&self, image: &str) -> CloudError {
        CloudError::ImageNotFound {
            image: image.to_owned(),
            project: self.session.project_label(),
        }
    }
}

/// The endpoint without a trailing `/v2` or `/v2.N` (catalogs list both forms).
fn unversioned(endpoint: &Url) -> Url {
    let mut url = endpoint.clone();
    let path = endpoint.path().trim_end_matches('/');
    let base = match path.rsplit_once('/') {
        Some((head, last)) if last == "v2" || last.starts_with("v2.") => head,
        _ => path,
    };
    url.set_path(if base.is_empty() { "/" } else { base });
    url.set_query(None);
    url
}

/// `2.N` of the newest CURRENT or SUPPORTED `v2.N` entry.
fn newest_v2(versions: &[VersionEntry]) -> Option<String> {
    versions
        .iter()
        .filter(|v| {
            matches!(
                v.status.to_ascii_uppercase().as_str(),
                "CURRENT" | "SUPPORTED" | "STABLE"
            )
        })
        .filter_map(|v| {
            let number = v.id.strip_prefix('v').unwrap_or(&v.id);
            let minor = match number.strip_prefix("2.") {
                Some(minor) => minor.parse::<u32>().ok()?,
                None if number == "2" => 0,
                None => return None,
            };
            Some(minor)
        })
        .max()
        .map(|minor| format!("2.{minor}"))
}

/// The `marker` query parameter of a `next` link (relative to the API root or absolute).
fn marker_of(root: &Url, next: &str) -> Option<String> {
    let url = Url::options().base_url(Some(root)).parse(next).ok()?;
    let marker = url
        .query_pairs()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.into_owned());
    marker.filter(|m| !m.is_empty())
}

fn looks_like_uuid(text: &str) -> bool {
    let hex_groups = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = text.split('-').collect();
    let dashed = parts.len() == 5
        && parts
            .iter()
            .zip(hex_groups)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    dashed || (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_endpoints_are_reduced_to_their_root() {
        for (endpoint, root) in [
            ("http://g:9292", "http://g:9292/"),
            ("http://g:9292/v2", "http://g:9292/"),
            ("http://g:9292/v2.1/", "http://g:9292/"),
            ("https://cloud/image", "https://cloud/image"),
            ("https://cloud/image/v2/", "https://cloud/image"),
        ] {
            assert_eq!(
                unversioned(&Url::parse(endpoint).unwrap()).as_str(),
                root,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn newest_supported_v2_is_chosen() {
        let entry = |id: &str, status: &str| VersionEntry {
            id: id.into(),
            status: status.into(),
        };
        let versions = [
            entry("v2.9", "SUPPORTED"),
            entry("v2.18", "CURRENT"),
            entry("v1.1", "DEPRECATED"),
            entry("v2.19", "EXPERIMENTAL"),
        ];
        assert_eq!(newest_v2(&versions).as_deref(), Some("2.18"));
        assert_eq!(newest_v2(&[entry("v1.0", "CURRENT")]), None);
    }

    #[test]
    fn markers_come_from_relative_or_absolute_next_links() {
        let root = Url::parse("https://cloud/image/v2/").unwrap();
        assert_eq!(
            marker_of(&root, "/v2/images?limit=2&marker=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            marker_of(&root, "https://other/v2/images?marker=x%20y").as_deref(),
            Some("x y")
        );
        assert_eq!(marker_of(&root, "/v2/images?limit=2"), None);
    }

    #[test]
    fn uuid_shapes() {
        assert!(looks_like_uuid("cd5e32b3-1a87-4fa1-adf0-7a0e2031df7f"));
        assert!(looks_like_uuid("cd5e32b31a874fa1adf07a0e2031df7f"));
        assert!(!looks_like_uuid("cirros"));
        assert!(!looks_like_uuid("cd5e32b3-1a87-4fa1-adf0-7a0e2031df7g"));
    }
}
