//! A Keystone v3 session: a token kept fresh, the service catalog, and authenticated
//! requests that survive token expiry.
//!
//! Owns authentication (issue, re-issue ahead of expiry, replay once on a 401),
//! rescoping to another project (`--os-project-name`/`--os-project-id`) and endpoint lookup. Requests sent through [`Session::send`] must
//! be replayable (no streamed body). It must not know any service's API beyond Keystone.

mod catalog;
mod token;

use std::time::Duration;

use ureq::http::Response;
use ureq::Body;
use url::Url;

use crate::cloud::config::{AuthMethod, CloudConfig, Interface, ProjectRef, Scope};
use crate::cloud::http::{HttpClient, HttpOptions, Method, RequestBody};
use crate::cloud::CloudError;
use crate::report::{Event, Reporter};
pub use catalog::{select_endpoint, CatalogEndpoint, CatalogService};
pub use token::{ProjectInfo, Token};

/// A token is re-issued before a request when less than this is left of it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Choices made on the command line rather than in clouds.yaml.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `--os-project-name` / `--os-project-id`: scope to this project (name or id)
    /// instead of the configured one.
    pub project: Option<String>,
    pub http: HttpOptions,
}

/// An authenticated connection to one cloud. A clone shares the HTTP connections and
/// starts from the same token; each clone renews its own.
#[derive(Debug, Clone)]
pub struct Session {
    cloud: String,
    http: HttpClient,
    auth_url: Url,
    method: AuthMethod,
    scope: Scope,
    interface: Interface,
    region: Option<String>,
    image_endpoint_override: Option<Url>,
    token: Token,
    /// Tokens issued after the first (ahead of expiry, or after a 401).
    renewals: u32,
}

impl Session {
    /// Authenticates to `config`'s cloud, rescoped to `options.project` if given.
    pub fn connect(
        config: &CloudConfig,
        options: &SessionOptions,
        reporter: &dyn Reporter,
    ) -> Result<Self, CloudError> {
        if !config.tls.verify {
            reporter.warn(&format!(
                "TLS certificates of cloud `{}` are not verified (verify: false); anyone on the path can read its token",
                config.name
            ));
        }
        let http = HttpClient::new(&config.tls, options.http)?;
        let auth = &config.auth;
        let first = token::issue(
            &http,
            &config.name,
            &auth.auth_url,
            &auth.method,
            &auth.scope,
        )?;
        let (scope, token) = match &options.project {
            None => (auth.scope.clone(), first),
            Some(project) => {
                if matches!(auth.method, AuthMethod::ApplicationCredential { .. }) {
                    return Err(CloudError::CannotRescope {
                        project: project.clone(),
                        reason: "an application credential is bound to the project it was made in",
                    });
                }
                let id = pick_project(
                    project,
                    token::available_projects(&http, &auth.auth_url, &first)?,
                )?;
                let scope = Scope::Project(ProjectRef::Id(id.clone()));
                if first.project.as_ref().is_some_and(|p| p.id == id) {
                    (scope, first)
                } else {
                    let token =
                        token::issue(&http, &config.name, &auth.auth_url, &auth.method, &scope)?;
                    (scope, token)
                }
            }
        };
        let session = Self {
            cloud: config.name.clone(),
            http,
            auth_url: auth.auth_url.clone(),
            method: auth.method.clone(),
            scope,
            interface: config.interface,
            region: config.region_name.clone(),
            image_endpoint_override: config.image_endpoint_override.clone(),
            token,
            renewals: 0,
        };
        reporter.event(session.token_event("cloud.authenticated"));
        Ok(session)
    }

    /// The cloud's name in clouds.yaml.
    pub fn cloud(&self) -> &str {
        &self.cloud
    }

    /// The current token's details (its text stays private).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// `name (id)` of the project the session is scoped to, or `unscoped`.
    pub fn project_label(&self) -> String {
        match &self.token.project {
            Some(p) => format!("{} ({})", p.name, p.id),
            None => "(unscoped)".into(),
        }
    }

    /// How many tokens the session issued after its first one: renewals ahead of expiry
    /// ([`Session::ensure_valid_for`]) and after a 401.
    pub fn renewals(&self) -> u32 {
        self.renewals
    }

    /// Issues a new token with the same credentials and scope.
    pub fn reauthenticate(&mut self) -> Result<(), CloudError> {
        self.token = token::issue(
            &self.http,
            &self.cloud,
            &self.auth_url,
            &self.method,
            &self.scope,
        )?;
        self.renewals = self.renewals.saturating_add(1);
        Ok(())
    }

    /// Makes sure the token outlives an operation expected to take `needed` (plus the
    /// refresh margin), re-issuing it if the credentials allow. A `token` auth cannot
    /// outlive its own token, so it is left as is.
    pub fn ensure_valid_for(&mut self, needed: Duration) -> Result<(), CloudError> {
        let renewable = !matches!(self.method, AuthMethod::Token { .. });
        let short = self
            .token
            .remaining()
            .is_some_and(|left| left < needed.saturating_add(REFRESH_MARGIN));
        if renewable && short {
            self.reauthenticate()?;
        }
        Ok(())
    }

    /// The endpoint of `service_type` (honouring `image_endpoint_override` for `image`).
    pub fn endpoint(&self, service_type: &str) -> Result<Url, CloudError> {
        if service_type == "image" {
            if let Some(url) = &self.image_endpoint_override {
                return Ok(url.clone());
            }
        }
        select_endpoint(
            &self.token.catalog,
            service_type,
            self.interface,
            self.region.as_deref(),
        )
    }

    /// The underlying client, for requests that manage the token themselves (streams).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Sends a replayable request with the token: re-authenticates first when the token is
    /// about to expire, and once more (then replays) when the server answers 401.
    pub fn send(
        &mut self,
        method: Method,
        url: &Url,
        json: Option<&serde_json::Value>,
    ) -> Result<Response<Body>, CloudError> {
        self.ensure_valid_for(Duration::ZERO)?;
        let response = self.http.send(method, url, Some(&self.token.value), json)?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        self.reauthenticate()?;
        self.http.send(method, url, Some(&self.token.value), json)
    }

    /// Sends a request with extra headers and any body. Like [`Session::send`], a
    /// replayable request is re-sent once after a 401 with a new token; a streamed body
    /// cannot be, so its 401 is returned for the caller to re-authenticate and start over.
    pub fn execute(
        &mut self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<Response<Body>, CloudError> {
        self.ensure_valid_for(Duration::ZERO)?;
        if !body.is_replayable() {
            return self
                .http
                .execute(method, url, Some(&self.token.value), headers, body);
        }
        let replay = match &body {
            RequestBody::Json(value) => RequestBody::Json(value),
            RequestBody::JsonAs(value, media) => RequestBody::JsonAs(value, media),
            _ => RequestBody::Empty,
        };
        let response = self
            .http
            .execute(method, url, Some(&self.token.value), headers, body)?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        self.reauthenticate()?;
        self.http
            .execute(method, url, Some(&self.token.value), headers, replay)
    }

    fn token_event(&self, kind: &'static str) -> Event {
        let ms = self.token.issue_time.as_millis() as u64;
        Event::new(
            kind,
            format!(
                "authenticated to cloud `{}` as {} in project {} ({ms} ms)",
                self.cloud,
                self.token.user_name,
                self.project_label()
            ),
        )
        .with("cloud", self.cloud.clone())
        .with(
            "project_id",
            self.token.project.as_ref().map(|p| p.id.clone()),
        )
        .with("token_ms", ms)
        .with("expires_in_s", self.token.remaining().map(|d| d.as_secs()))
    }
}

/// The id of `wanted` (an id or a unique name) among `projects`.
fn pick_project(wanted: &str, projects: Vec<ProjectInfo>) -> Result<String, CloudError> {
    if let Some(p) = projects.iter().find(|p| p.id == wanted) {
        return Ok(p.id.clone());
    }
    let named: Vec<&ProjectInfo> = projects.iter().filter(|p| p.name == wanted).collect();
    match named.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CloudError::ProjectNotFound {
            project: wanted.to_owned(),
            available: projects
                .iter()
                .map(|p| format!("{} ({})", p.name, p.id))
                .collect(),
        }),
        several => Err(CloudError::AmbiguousProject {
            project: wanted.to_owned(),
            candidates: several
                .iter()
                .map(|p| {
                    format!(
                        "{} (domain {})",
                        p.id,
                        p.domain_id.as_deref().unwrap_or("?")
                    )
                })
                .collect(),
        }),
    }
}
