//! Interpretation of one cloud's keys into a typed [`CloudConfig`].
//!
//! Owns openstacksdk's rules as far as imgferry needs them: auth keys may sit at the top
//! of the cloud (as `OS_*` variables put them) or under `auth`; `tenant_*` means
//! `project_*`; a missing user or project domain falls back to `default_domain_*` and then
//! to the domain `default` (as the openstack CLI does); `insecure: true` means `verify:
//! false`; interfaces may be spelled `publicURL`. Unknown keys are ignored so an existing
//! clouds.yaml works unchanged. It must not touch the network or the filesystem.

use url::Url;

use super::value::{KeyStyle, Section};
use super::{
    ApplicationCredentialRef, AuthConfig, AuthMethod, CloudConfig, DomainRef, Interface,
    ProjectRef, Scope, TlsSettings, UserRef,
};
use crate::cloud::CloudError;

/// Resolves the cloud `name` of a clouds.yaml (already merged with secure.yaml).
pub(super) fn resolve_file(
    name: &str,
    cloud: &serde_json::Map<String, serde_json::Value>,
    origin: &str,
    region_override: Option<&str>,
) -> Result<CloudConfig, CloudError> {
    let path = format!("clouds.{name}");
    let top = Section {
        map: cloud,
        path: &path,
        origin,
        style: KeyStyle::File,
    };
    resolve(name, top, region_override)
}

/// Resolves the cloud made of `OS_*` variables.
pub(super) fn resolve_environment(
    name: &str,
    cloud: &serde_json::Map<String, serde_json::Value>,
    region_override: Option<&str>,
) -> Result<CloudConfig, CloudError> {
    let top = Section {
        map: cloud,
        path: "",
        origin: "environment variables",
        style: KeyStyle::Environment,
    };
    resolve(name, top, region_override)
}

/// Reads auth keys from `auth` first, then from the top of the cloud.
struct AuthKeys<'a> {
    auth: Option<Section<'a>>,
    top: Section<'a>,
}

impl AuthKeys<'_> {
    fn string(&self, keys: &[&str]) -> Result<Option<String>, CloudError> {
        for section in self.auth.iter().chain([&self.top]) {
            for key in keys {
                if let Some(value) = section.string(key)? {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    fn secret(&self, key: &str) -> Result<Option<crate::cloud::Secret>, CloudError> {
        for section in self.auth.iter().chain([&self.top]) {
            if let Some(value) = section.secret(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn domain(&self, id_key: &str, name_key: &str) -> Result<Option<DomainRef>, CloudError> {
        if let Some(id) = self.string(&[id_key])? {
            return Ok(Some(DomainRef::Id(id)));
        }
        Ok(self.string(&[name_key])?.map(DomainRef::Name))
    }

    /// Where an auth key should be written, for "missing" errors.
    fn missing(&self, key: &str, problem: &str) -> CloudError {
        self.auth
            .as_ref()
            .unwrap_or(&self.top)
            .invalid(key, problem)
    }
}

fn resolve(
    name: &str,
    top: Section<'_>,
    region_override: Option<&str>,
) -> Result<CloudConfig, CloudError> {
    let auth_path = format!("{}.auth", top.path);
    let auth = top.mapping("auth")?.map(|map| Section {
        map,
        path: &auth_path,
        ..top
    });
    let keys = AuthKeys { auth, top };

    check_api_version(&top, "identity_api_version", "3")?;
    check_api_version(&top, "image_api_version", "2")?;
    for unsupported in ["cert", "key"] {
        if top.string(unsupported)?.is_some() {
            return Err(top.invalid(
                unsupported,
                "(TLS client certificates) is not supported yet",
            ));
        }
    }

    let auth_url = keys.string(&["auth_url"])?.ok_or_else(|| {
        keys.missing(
            "auth_url",
            "is missing (vendor profiles are not supported: write the Keystone URL)",
        )
    })?;
    let auth_url = keystone_v3_url(&auth_url).map_err(|p| keys.missing("auth_url", &p))?;

    let default_domain = keys
        .domain("default_domain_id", "default_domain_name")?
        .unwrap_or_else(|| DomainRef::Id("default".into()));
    let user = user(&keys, &default_domain)?;
    let auth_type = top
        .string("auth_type")?
        .or(top.string("auth_plugin")?)
        .unwrap_or_else(|| "password".into());
    let (method, scope) = match auth_type.as_str() {
        "password" | "v3password" => {
            let user = user.ok_or_else(|| {
                keys.missing("username", "or user_id is required for auth_type password")
            })?;
            let password = keys
                .secret("password")?
                .ok_or_else(|| keys.missing("password", "is required for auth_type password"))?;
            (
                AuthMethod::Password { user, password },
                scope(&keys, &default_domain)?,
            )
        }
        "v3applicationcredential" | "applicationcredential" | "v3_application_credential" => {
            let secret = keys
                .secret("application_credential_secret")?
                .ok_or_else(|| {
                    keys.missing(
                        "application_credential_secret",
                        "is required for auth_type v3applicationcredential",
                    )
                })?;
            let credential = match keys.string(&["application_credential_id"])? {
                Some(id) => ApplicationCredentialRef::Id(id),
                None => {
                    let name = keys
                        .string(&["application_credential_name"])?
                        .ok_or_else(|| {
                            keys.missing(
                                "application_credential_id",
                                "or application_credential_name is required",
                            )
                        })?;
                    let user = user.ok_or_else(|| {
                        keys.missing(
                            "username",
                            "or user_id is required with application_credential_name",
                        )
                    })?;
                    ApplicationCredentialRef::Name { name, user }
                }
            };
            // An application credential is bound to its project; Keystone refuses a scope.
            (
                AuthMethod::ApplicationCredential { credential, secret },
                Scope::Unscoped,
            )
        }
        "token" | "v3token" => {
            let token = keys
                .secret("token")?
                .ok_or_else(|| keys.missing("token", "is required for auth_type token"))?;
            (AuthMethod::Token { token }, scope(&keys, &default_domain)?)
        }
        other => {
            return Err(top.invalid(
                "auth_type",
                format!(
                    "`{other}` is not supported; use password, v3applicationcredential or token"
                ),
            ))
        }
    };

    Ok(CloudConfig {
        name: name.to_owned(),
        origin: top.origin.to_owned(),
        auth: AuthConfig {
            auth_url,
            method,
            scope,
        },
        region_name: match region_override {
            Some(region) => Some(region.to_owned()),
            None => region(&top)?,
        },
        interface: interface(&top)?,
        tls: tls(&top)?,
        image_endpoint_override: image_endpoint_override(&top)?,
    })
}

fn user(keys: &AuthKeys<'_>, default_domain: &DomainRef) -> Result<Option<UserRef>, CloudError> {
    if let Some(id) = keys.string(&["user_id"])? {
        return Ok(Some(UserRef::Id(id)));
    }
    let Some(name) = keys.string(&["username"])? else {
        return Ok(None);
    };
    let domain = keys
        .domain("user_domain_id", "user_domain_name")?
        .unwrap_or_else(|| default_domain.clone());
    Ok(Some(UserRef::Name { name, domain }))
}

fn scope(keys: &AuthKeys<'_>, default_domain: &DomainRef) -> Result<Scope, CloudError> {
    if let Some(id) = keys.string(&["project_id", "tenant_id"])? {
        return Ok(Scope::Project(ProjectRef::Id(id)));
    }
    if let Some(name) = keys.string(&["project_name", "tenant_name"])? {
        let domain = keys
            .domain("project_domain_id", "project_domain_name")?
            .unwrap_or_else(|| default_domain.clone());
        return Ok(Scope::Project(ProjectRef::Name { name, domain }));
    }
    if let Some(domain) = keys.domain("domain_id", "domain_name")? {
        return Ok(Scope::Domain(domain));
    }
    match keys.string(&["system_scope"])?.as_deref() {
        None => Ok(Scope::Unscoped),
        Some("all") => Ok(Scope::System),
        Some(_) => Err(keys.missing("system_scope", "must be `all`")),
    }
}

/// Normalizes a Keystone URL to its v3 root: `…/v3` is kept, `…/v2.0` becomes `…/v3`,
/// anything else gets `/v3` appended (`https://host:5000` -> `https://host:5000/v3`).
fn keystone_v3_url(raw: &str) -> Result<Url, String> {
    let mut url = http_url(raw)?;
    let path = url.path().trim_end_matches('/').to_owned();
    let v3 = if path.ends_with("/v3") {
        path
    } else if let Some(base) = path.strip_suffix("/v2.0") {
        format!("{base}/v3")
    } else {
        format!("{path}/v3")
    };
    url.set_path(&v3);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(url)
}

fn check_api_version(top: &Section<'_>, key: &str, major: &str) -> Result<(), CloudError> {
    match top.string(key)? {
        None => Ok(()),
        Some(v) if v == major || v.starts_with(&format!("{major}.")) => Ok(()),
        Some(_) => Err(top.invalid(
            key,
            format!("must be {major}: imgferry speaks only that API version"),
        )),
    }
}

fn region(top: &Section<'_>) -> Result<Option<String>, CloudError> {
    if let Some(region) = top.string("region_name")? {
        return Ok(Some(region));
    }
    let Some(regions) = top.list("regions")? else {
        return Ok(None);
    };
    match regions.first() {
        None => Ok(None),
        Some(serde_json::Value::String(name)) => Ok(Some(name.clone())),
        Some(serde_json::Value::Object(entry)) => match entry.get("name") {
            Some(serde_json::Value::String(name)) => Ok(Some(name.clone())),
            _ => Err(top.invalid("regions", "entries must be names or mappings with a `name`")),
        },
        Some(_) => Err(top.invalid("regions", "entries must be names or mappings with a `name`")),
    }
}

fn interface(top: &Section<'_>) -> Result<Interface, CloudError> {
    for key in ["image_interface", "interface", "endpoint_type"] {
        let Some(raw) = top.string(key)? else {
            continue;
        };
        let lower = raw.to_ascii_lowercase();
        return match lower.strip_suffix("url").unwrap_or(&lower) {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            _ => Err(top.invalid(key, "must be public, internal or admin")),
        };
    }
    Ok(Interface::Public)
}

fn tls(top: &Section<'_>) -> Result<TlsSettings, CloudError> {
    let mut verify = top.boolean("verify")?.unwrap_or(true);
    if top.boolean("insecure")? == Some(true) {
        verify = false;
    }
    Ok(TlsSettings {
        verify,
        cacert: top.string("cacert")?.map(Into::into),
    })
}

fn image_endpoint_override(top: &Section<'_>) -> Result<Option<Url>, CloudError> {
    for key in ["image_endpoint_override", "image_endpoint"] {
        if let Some(raw) = top.string(key)? {
            return http_url(&raw).map(Some).map_err(|p| top.invalid(key, p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_urls_are_normalized_to_v3() {
        let cases = [
            ("https://k:5000", "https://k:5000/v3"),
            ("https://k:5000/", "https://k:5000/v3"),
            ("https://k/identity", "https://k/identity/v3"),
            ("https://k/identity/v3/", "https://k/identity/v3"),
            ("http://k:5000/v2.0", "http://k:5000/v3"),
            ("http://k:5000/v3?x=1", "http://k:5000/v3"),
        ];
        for (raw, want) in cases {
            assert_eq!(keystone_v3_url(raw).unwrap().as_str(), want, "{raw}");
        }
        assert!(keystone_v3_url("ftp://k/v3").is_err());
        assert!(keystone_v3_url("k:5000").is_err());
    }
}
