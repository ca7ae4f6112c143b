//! [`CloudError`]: everything that can go wrong talking to an OpenStack cloud.
//!
//! Owns the error type of the `cloud` layer and the hint for each kind. Every variant names
//! what failed (file and key, URL and HTTP status with the server's own message, image or
//! cloud name); none may carry a secret: URLs are stored already stripped of user info and
//! query strings, and config errors name keys, never their values.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::exit::ExitCode;

/// An image that matched an ambiguous name, as listed in [`CloudError::AmbiguousImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCandidate {
    pub id: String,
    pub status: String,
    pub visibility: String,
    pub owner: String,
}

/// Errors of the `cloud` layer.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("cannot read {}", path.display())]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than the {limit}-byte limit for a cloud configuration file", path.display())]
    ConfigTooLarge { path: PathBuf, limit: u64 },
    #[error("{} is not valid {format}: {message}", path.display())]
    ConfigSyntax {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{origin}: `{key}` {problem}")]
    ConfigInvalid {
        /// The file (or "environment variables OS_*") the value came from.
        origin: String,
        /// The dotted key at fault, e.g. `clouds.prod.auth.auth_url`.
        key: String,
        problem: String,
    },
    #[error("cloud `{name}` is not defined")]
    UnknownCloud {
        name: String,
        available: Vec<String>,
        files: Vec<PathBuf>,
        searched: Vec<PathBuf>,
    },
    #[error("no cloud selected, and {} clouds are defined", available.len())]
    NoCloudSelected {
        available: Vec<String>,
        files: Vec<PathBuf>,
    },
    #[error("no cloud configuration found: no clouds.yaml and no OS_* environment variables")]
    NoConfiguration { searched: Vec<PathBuf> },
    #[error("cannot use the CA bundle {}: {problem}", path.display())]
    CaBundle { path: PathBuf, problem: String },
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error(
        "authentication of cloud `{cloud}` at {url} failed: HTTP {status}{}",
        server_says(message)
    )]
    AuthFailed {
        cloud: String,
        url: String,
        status: u16,
        message: Option<String>,
    },
    #[error("{method} {url} failed: HTTP {status}{}", server_says(message))]
    Http {
        method: &'static str,
        url: String,
        status: u16,
        message: Option<String>,
    },
    #[error("{url} sent more than {limit} bytes, the limit for an API response")]
    ResponseTooLarge { url: String, limit: u64 },
    #[error("{url} sent an invalid response: {problem}")]
    InvalidResponse { url: String, problem: String },
    #[error(
        "the service catalog has no `{service}` endpoint for interface {interface}{}",
        in_region(region)
    )]
    NoEndpoint {
        service: String,
        interface: String,
        region: Option<String>,
        /// `interface region url` of each endpoint of that service, for the hint.
        available: Vec<String>,
    },
    #[error("the `{service}` service has endpoints in several regions ({}) and no region_name is set", regions.join(", "))]
    AmbiguousRegion {
        service: String,
        regions: Vec<String>,
    },
    #[error("{url} offers no Image API v2 (it offers: {offered})")]
    NoImageApiV2 { url: String, offered: String },
    #[error("no image `{image}` is visible to project {project}")]
    ImageNotFound { image: String, project: String },
    #[error("{} images are named `{name}`: {}", candidates.len(), list_candidates(candidates))]
    AmbiguousImage {
        name: String,
        candidates: Vec<ImageCandidate>,
    },
    #[error("project `{project}` is not among the projects these credentials may use")]
    ProjectNotFound {
        project: String,
        available: Vec<String>,
    },
    #[error("{} projects are named `{project}`: {}", candidates.len(), candidates.join(", "))]
    AmbiguousProject {
        project: String,
        candidates: Vec<String>,
    },
    #[error("cannot switch to project `{project}`: {reason}")]
    CannotRescope {
        project: String,
        reason: &'static str,
    },
    #[error("listing {url} did not end after {pages} pages")]
    TooManyPages { url: String, pages: usize },
    #[error("cloud `{cloud}` offers no Block Storage (Cinder) API: {reason}")]
    NoBlockStorage { cloud: String, reason: String },
    #[error("no {kind} `{id}` is visible to project {project}")]
    BlockStorageNotFound {
        kind: &'static str,
        id: String,
        project: String,
    },
}

fn server_says(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn in_region(region: &Option<String>) -> String {
    region
        .as_deref()
        .map(|r| format!(" in region {r}"))
        .unwrap_or_default()
}

/// How many candidates an ambiguity error lists before saying "and N more".
const LISTED_CANDIDATES: usize = 10;

fn list_candidates(candidates: &[ImageCandidate]) -> String {
    let mut text = String::new();
    for (index, c) in candidates.iter().take(LISTED_CANDIDATES).enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(
            text,
            "{} ({}, {}, owner {})",
            c.id, c.status, c.visibility, c.owner
        );
    }
    if candidates.len() > LISTED_CANDIDATES {
        let _ = write!(text, " and {} more", candidates.len() - LISTED_CANDIDATES);
    }
    text
}

fn paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CloudError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Failure
    }

    /// What the user might do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::ConfigRead { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => {
                    Some("fix or unset OS_CLIENT_CONFIG_FILE / OS_CLIENT_SECURE_FILE".into())
                }
                std::io::ErrorKind::PermissionDenied => Some("check the file's permissions".into()),
                _ => None,
            },
            Self::ConfigTooLarge { .. } => {
                Some("a clouds.yaml is a few KiB; is OS_CLIENT_CONFIG_FILE pointing at the right file?".into())
            }
            Self::ConfigSyntax { .. } => {
                Some("fix the file, or point OS_CLIENT_CONFIG_FILE at another one".into())
            }
            Self::ConfigInvalid { .. } => Some(
                "the keys follow openstacksdk's clouds.yaml (auth, auth_type, region_name, interface, verify, cacert)".into(),
            ),
            Self::UnknownCloud {
                available,
                files,
                searched,
                ..
            } => Some(if files.is_empty() {
                format!(
                    "no clouds.yaml was found (searched {}); set OS_CLIENT_CONFIG_FILE to yours",
                    paths(searched)
                )
            } else if available.is_empty() {
                format!("{} defines no clouds", paths(files))
            } else {
                format!(
                    "clouds defined: {} (read from {})",
                    available.join(", "),
                    paths(files)
                )
            }),
            Self::NoCloudSelected { available, files } => Some(format!(
                "pick one with --os-cloud NAME or OS_CLOUD: {} (read from {})",
                available.join(", "),
                paths(files)
            )),
            Self::NoConfiguration { searched } => Some(format!(
                "write a clouds.yaml (searched {}) or set OS_CLIENT_CONFIG_FILE, or source an openrc file",
                paths(searched)
            )),
            Self::CaBundle { .. } => Some("`cacert` must name a PEM file of CA certificates".into()),
            Self::Unreachable { .. } => Some(
                "check the URL (auth_url in clouds.yaml, or the catalog's endpoint), that the service is up, and any proxy settings".into(),
            ),
            Self::AuthFailed { cloud, status, .. } => Some(match status {
                401 => format!(
                    "check the credentials of cloud `{cloud}`: username or user_id, password (or application credential), user_domain_name, and the project it is scoped to"
                ),
                _ => format!("check the auth section of cloud `{cloud}` and that auth_url is the Keystone v3 endpoint"),
            }),
            Self::Http { status, .. } => match status {
                401 => Some("the token was refused; it may have been revoked".into()),
                403 => Some("the project's role does not allow this under the cloud's policy".into()),
                404 => Some("the resource does not exist, or is not visible to this project".into()),
                500..=599 => Some("the server failed; try again, or ask the cloud's operators".into()),
                _ => None,
            },
            Self::ResponseTooLarge { .. } | Self::InvalidResponse { .. } | Self::NoImageApiV2 { .. } => {
                Some("is this URL really the service it should be (Keystone v3, Glance v2)?".into())
            }
            Self::NoEndpoint { available, .. } => Some(if available.is_empty() {
                "the catalog has no image service; set image_endpoint_override in clouds.yaml".into()
            } else {
                format!(
                    "endpoints in the catalog: {}; set region_name or interface, or image_endpoint_override",
                    available.join("; ")
                )
            }),
            Self::AmbiguousRegion { .. } => Some("set region_name in clouds.yaml or OS_REGION_NAME".into()),
            Self::ImageNotFound { .. } => Some(
                "`imgferry images list` shows the images this project can see; private images of other projects are invisible".into(),
            ),
            Self::AmbiguousImage { .. } => Some("name the image by its id".into()),
            Self::ProjectNotFound { available, .. } => Some(if available.is_empty() {
                "these credentials may use no project".into()
            } else {
                format!("projects available: {}", available.join(", "))
            }),
            Self::AmbiguousProject { .. } => Some("name the project by its id".into()),
            Self::CannotRescope { .. } => Some("use a cloud entry whose credentials are for that project".into()),
            Self::TooManyPages { .. } => None,
            Self::NoBlockStorage { .. } => Some(
                "volume-backed snapshots and volumes need the cloud's Cinder; ask its operator for a `volumev3` endpoint".into(),
            ),
            Self::BlockStorageNotFound { .. } => Some(
                "Cinder shows only the project's own volumes and snapshots: pass the owning project with --os-project-name, or check the id".into(),
            ),
        }
    }
}
