//! Issuing a Keystone v3 token: the request body for each auth method and scope, and the
//! token response (subject token header, expiry, project, catalog).
//!
//! Owns `POST /v3/auth/tokens` and `GET /v3/auth/projects`. The request body holds the
//! credential, so it is built, sent and dropped here and never formatted.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::catalog::CatalogService;
use crate::cloud::config::{
    ApplicationCredentialRef, AuthMethod, DomainRef, ProjectRef, Scope, UserRef,
};
use crate::cloud::http::{self, display_url, HttpClient, Method};
use crate::cloud::{CloudError, Secret};

/// A project as Keystone describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
}

/// An issued token and what came with it.
#[derive(Debug, Clone)]
pub struct Token {
    pub(super) value: Secret,
    /// Expiry in seconds since the Unix epoch, when Keystone said.
    pub expires_at: Option<u64>,
    /// The project the token is scoped to, if any.
    pub project: Option<ProjectInfo>,
    pub user_name: String,
    pub catalog: Vec<CatalogService>,
    /// How long Keystone took to issue it.
    pub issue_time: Duration,
}

impl Token {
    /// Time left before expiry (zero once expired); `None` when the expiry is unknown.
    pub fn remaining(&self) -> Option<Duration> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        self.expires_at
            .map(|at| Duration::from_secs(at.saturating_sub(now)))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: Option<String>,
    #[serde(default)]
    project: Option<TokenProject>,
    user: TokenUser,
    #[serde(default)]
    catalog: Vec<CatalogService>,
}

#[derive(Deserialize)]
struct TokenProject {
    id: String,
    name: String,
    #[serde(default)]
    domain: Option<TokenDomain>,
}

#[derive(Deserialize)]
struct TokenDomain {
    id: String,
}

#[derive(Deserialize)]
struct TokenUser {
    name: String,
}

/// `POST {auth_url}/auth/tokens` with `method` and `scope`.
pub(super) fn issue(
    client: &HttpClient,
    cloud: &str,
    auth_url: &Url,
    method: &AuthMethod,
    scope: &Scope,
) -> Result<Token, CloudError> {
    let url = http::join_path(auth_url, "auth/tokens");
    let body = auth_request(method, scope);
    let started = Instant::now();
    let response = client.send(Method::Post, &url, None, Some(&body))?;
    drop(body);
    let status = response.status().as_u16();
    if status != 201 && status != 200 {
        return Err(CloudError::AuthFailed {
            cloud: cloud.to_owned(),
            url: display_url(&url),
            status,
            message: http::server_message(response),
        });
    }
    let value = response
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .map(Secret::new)
        .ok_or_else(|| CloudError::InvalidResponse {
            url: display_url(&url),
            problem: "no X-Subject-Token header".into(),
        })?;
    let parsed: TokenResponse = http::read_json(&url, response)?;
    let issue_time = started.elapsed();
    let body = parsed.token;
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(text) => Some(
            parse_timestamp(text).ok_or_else(|| CloudError::InvalidResponse {
                url: display_url(&url),
                problem: "expires_at is not an ISO 8601 timestamp".into(),
            })?,
        ),
    };
    Ok(Token {
        value,
        expires_at,
        project: body.project.map(|p| ProjectInfo {
            id: p.id,
            name: p.name,
            domain_id: p.domain.map(|d| d.id),
        }),
        user_name: body.user.name,
        catalog: body.catalog,
        issue_time,
    })
}

/// `GET {auth_url}/auth/projects`: the projects `token` may be scoped to.
pub(super) fn available_projects(
    client: &HttpClient,
    auth_url: &Url,
    token: &Token,
) -> Result<Vec<ProjectInfo>, CloudError> {
    #[derive(Deserialize)]
    struct Projects {
        projects: Vec<ProjectInfo>,
    }
    let url = http::join_path(auth_url, "auth/projects");
    let response = client.send(Method::Get, &url, Some(&token.value), None)?;
    if !response.status().is_success() {
        return Err(http::status_error(Method::Get, &url, response));
    }
    Ok(http::read_json::<Projects>(&url, response)?.projects)
}

fn auth_request(method: &AuthMethod, scope: &Scope) -> Value {
    let identity = match method {
        AuthMethod::Password { user, password } => {
            let mut user = user_json(user);
            user["password"] = Value::String(password.expose().to_owned());
            json!({"methods": ["password"], "password": {"user": user}})
        }
        AuthMethod::ApplicationCredential { credential, secret } => {
            let mut credential = match credential {
                ApplicationCredentialRef::Id(id) => json!({"id": id}),
                ApplicationCredentialRef::Name { name, user } => {
                    json!({"name": name, "user": user_json(user)})
                }
            };
            credential["secret"] = Value::String(secret.expose().to_owned());
            json!({"methods": ["application_credential"], "application_credential": credential})
        }
        AuthMethod::Token { token } => {
            json!({"methods": ["token"], "token": {"id": token.expose()}})
        }
    };
    let mut auth = json!({"identity": identity});
    let scope = match scope {
        Scope::Unscoped => None,
        Scope::Project(ProjectRef::Id(id)) => Some(json!({"project": {"id": id}})),
        Scope::Project(ProjectRef::Name { name, domain }) => {
            Some(json!({"project": {"name": name, "domain": domain_json(domain)}}))
        }
        Scope::Domain(domain) => Some(json!({"domain": domain_json(domain)})),
        Scope::System => Some(json!({"system": {"all": true}})),
    };
    if let Some(scope) = scope {
        auth["scope"] = scope;
    }
    json!({"auth": auth})
}

fn user_json(user: &UserRef) -> Value {
    match user {
        UserRef::Id(id) => json!({"id": id}),
        UserRef::Name { name, domain } => json!({"name": name, "domain": domain_json(domain)}),
    }
}

fn domain_json(domain: &DomainRef) -> Value {
    match domain {
        DomainRef::Id(id) => json!({"id": id}),
        DomainRef::Name(name) => json!({"name": name}),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into seconds since the Unix epoch.
fn parse_timestamp(text: &str) -> Option<u64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, c)| text.as_bytes().get(at) != Some(&c))
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't' | b' '))
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = fraction.get(digits..)?;
    }
    let offset_seconds = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_like_keystone_writes_them() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_timestamp("2026-11-22T05:52:03.000000Z"),
            Some(1_795_326_723)
        );
        assert_eq!(
            parse_timestamp("2026-11-22T06:52:03+01:00"),
            Some(1_795_326_723)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T05:52:03+0100",
            "x026-11-22T05:52:03Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn password_request_scopes_by_project_name_and_domain() {
        let method = AuthMethod::Password {
            user: UserRef::Name {
                name: "u".into(),
                domain: DomainRef::Id("default".into()),
            },
            password: Secret::new("pw"),
        };
        let scope = Scope::Project(ProjectRef::Name {
            name: "p".into(),
            domain: DomainRef::Name("Default".into()),
        });
        assert_eq!(
            auth_request(&method, &scope),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "u", "domain": {"id": "default"}, "password": "pw"}}},
                "scope": {"project": {"name": "p", "domain": {"name": "Default"}}}
            }})
        );
    }

    #[test]
    fn application_credentials_carry_no_scope() {
        let method = AuthMethod::ApplicationCredential {
            credential: ApplicationCredentialRef::Id("ac".into()),
            secret: Secret::new("s"),
        };
        assert_eq!(
            auth_request(&method, &Scope::Unscoped),
            json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": "ac", "secret": "s"}}}})
        );
    }
}
