//! Cloud configuration: clouds.yaml + secure.yaml + `OS_*` variables -> one [`CloudConfig`].
//!
//! Owns the typed description of a cloud (auth method and scope, region, interface, TLS,
//! endpoint overrides) and the selection of a cloud by name. Reading files and the
//! environment lives in `sources`, key interpretation in `resolve`. This module makes no
//! network calls and prints nothing; the secrets it holds are [`Secret`]s.

mod resolve;
mod sources;
mod value;

use std::path::PathBuf;

use serde_json::{Map, Value};
use url::Url;

use crate::cloud::{CloudError, Secret};
pub use sources::{ConfigEnv, MAX_CONFIG_FILE_BYTES};

/// Everything needed to talk to one cloud.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml (or `envvars`).
    pub name: String,
    /// Where the settings came from, for messages.
    pub origin: String,
    pub auth: AuthConfig,
    pub region_name: Option<String>,
    /// The endpoint interface used for the image service.
    pub interface: Interface,
    pub tls: TlsSettings,
    /// `image_endpoint_override`: used instead of the catalog's image endpoint.
    pub image_endpoint_override: Option<Url>,
}

/// How to obtain a token.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The Keystone v3 root, e.g. `https://keystone.example.com:5000/v3`.
    pub auth_url: Url,
    pub method: AuthMethod,
    pub scope: Scope,
}

/// The credential presented to Keystone.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    /// `auth_type: password` (or `v3password`).
    Password { user: UserRef, password: Secret },
    /// `auth_type: v3applicationcredential`; the credential carries its own scope.
    ApplicationCredential {
        credential: ApplicationCredentialRef,
        secret: Secret,
    },
    /// `auth_type: token` / `v3token`: an existing token, rescoped.
    Token { token: Secret },
}

/// A user, by id or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// A domain, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

/// A project, by id or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// An application credential, by id or by name of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationCredentialRef {
    Id(String),
    Name { name: String, user: UserRef },
}

/// What the token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No scope requested: Keystone scopes to the user's default project, if any.
    Unscoped,
    Project(ProjectRef),
    Domain(DomainRef),
    /// `system_scope: all`.
    System,
}

/// The endpoint interface of the service catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Public,
    Internal,
    Admin,
}

impl Interface {
    /// The catalog's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Admin => "admin",
        }
    }
}

/// Certificate checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `verify: false` (or `insecure: true`) turns certificate checks off.
    pub verify: bool,
    /// `cacert`: a PEM bundle used instead of the system's trust store.
    pub cacert: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            verify: true,
            cacert: None,
        }
    }
}

/// All clouds found in the configuration files and the environment.
#[derive(Debug, Clone)]
pub struct CloudCatalog {
    clouds: Map<String, Value>,
    /// The files read (clouds.yaml, then secure.yaml), for messages.
    files: Vec<PathBuf>,
    /// Every candidate path looked at, for "not found" messages.
    searched: Vec<PathBuf>,
    envvars_name: String,
    envvars_cloud: Option<Map<String, Value>>,
    os_cloud: Option<String>,
    region_override: Option<String>,
}

impl CloudCatalog {
    /// Finds, reads and merges the configuration as openstacksdk would.
    pub fn load(env: &ConfigEnv) -> Result<Self, CloudError> {
        let clouds_file = sources::find_file(env, "clouds", "OS_CLIENT_CONFIG_FILE")?;
        let secure_file = sources::find_file(env, "secure", "OS_CLIENT_SECURE_FILE")?;
        let mut tree = Map::new();
        let mut files = Vec::new();
        for path in [&clouds_file.path, &secure_file.path].into_iter().flatten() {
            sources::deep_merge(&mut tree, sources::read_tree(path)?);
            files.push(path.clone());
        }
        let origin = files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let clouds = match tree.remove("clouds") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(clouds)) => clouds,
            Some(other) => {
                return Err(CloudError::ConfigInvalid {
                    origin,
                    key: "clouds".into(),
                    problem: format!("must be a mapping, not {}", value::kind(&other)),
                })
            }
        };
        let envvars_name = env.var("OS_CLOUD_NAME").unwrap_or("envvars").to_owned();
        let envvars_cloud = env.envvars_cloud();
        if envvars_cloud.is_some() && clouds.contains_key(&envvars_name) {
            return Err(CloudError::ConfigInvalid {
                origin,
                key: format!("clouds.{envvars_name}"),
                problem: "has the name of the cloud made from OS_* variables; rename one, or set OS_CLOUD_NAME".into(),
            });
        }
        let mut searched = clouds_file.searched;
        searched.extend(secure_file.searched);
        Ok(Self {
            clouds,
            files,
            searched,
            envvars_name,
            envvars_cloud,
            os_cloud: env.var("OS_CLOUD").map(str::to_owned),
            region_override: env.var("OS_REGION_NAME").map(str::to_owned),
        })
    }

    /// The names of all clouds, file clouds first.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.clouds.keys().cloned().collect();
        if self.envvars_cloud.is_some() {
            names.push(self.envvars_name.clone());
        }
        names
    }

    /// The files that were read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Resolves the cloud named `name`, or else `OS_CLOUD`, or else the `envvars` cloud,
    /// or else the only cloud defined.
    pub fn select(&self, name: Option<&str>) -> Result<CloudConfig, CloudError> {
        let name = name.or(self.os_cloud.as_deref());
        let chosen = match name {
            Some(name) => name.to_owned(),
            None if self.envvars_cloud.is_some() => self.envvars_name.clone(),
            None => match self.names().as_slice() {
                [] => {
                    return Err(CloudError::NoConfiguration {
                        searched: self.searched.clone(),
                    })
                }
                [only] => only.clone(),
                several => {
                    return Err(CloudError::NoCloudSelected {
                        available: several.to_vec(),
                        files: self.files.clone(),
                    })
                }
            },
        };
        if chosen == self.envvars_name {
            if let Some(cloud) = &self.envvars_cloud {
                return resolve::resolve_environment(
                    &chosen,
                    cloud,
                    self.region_override.as_deref(),
                );
            }
        }
        match self
            .clouds
            .get(&chosen)
            .cloned()
            .map(sources::normalize_keys)
        {
            Some(Value::Object(cloud)) => {
                let origin = self
                    .files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ");
                resolve::resolve_file(&chosen, &cloud, &origin, self.region_override.as_deref())
            }
            Some(other) => Err(CloudError::ConfigInvalid {
                origin: self
                    .files
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                key: format!("clouds.{chosen}"),
                problem: format!("must be a mapping, not {}", value::kind(&other)),
            }),
            None => Err(CloudError::UnknownCloud {
                name: chosen,
                available: self.names(),
                files: self.files.clone(),
                searched: self.searched.clone(),
            }),
        }
    }
}

/// Loads the configuration from the process environment and selects a cloud.
pub fn load_cloud(name: Option<&str>) -> Result<CloudConfig, CloudError> {
    CloudCatalog::load(&ConfigEnv::from_process())?.select(name)
}
