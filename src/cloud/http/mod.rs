//! The blocking HTTP client every OpenStack call goes through.
//!
//! Owns transport policy: TLS roots (the system's, or `cacert`, or none with `verify:
//! false`), a connect timeout and a per-read idle timeout but no overall timeout (image
//! bodies take as long as they take), no redirects (a token must not follow a redirect to
//! another host), `User-Agent: imgferry/<version>`, bounded reads of JSON and error
//! bodies, and the extraction of a server's own error message. It knows nothing of
//! Keystone or Glance semantics, and never logs headers (the token travels in one).

use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::http::Response;
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::Body;
use url::Url;

use crate::cloud::config::TlsSettings;
use crate::cloud::{CloudError, Secret};

mod server_message;
use server_message::message_from_body;

/// Largest JSON document accepted from a server (an image list page of a few hundred
/// records with properties is well under 1 MiB; a catalog rarely reaches 100 KiB).
pub const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// Largest error body read to find the server's message.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;
/// Largest CA bundle read.
const MAX_CA_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

/// Timeouts. There is deliberately no overall timeout: a transfer of many GiB is fine as
/// long as bytes keep moving.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Time allowed to open a connection, TLS handshake included.
    pub connect_timeout: Duration,
    /// Longest silence allowed while waiting for any read or write to make progress.
    pub idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// HTTP methods used against OpenStack APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// What a request carries.
pub enum RequestBody<'a> {
    /// Nothing.
    Empty,
    /// A JSON document (`Content-Type: application/json`).
    Json(&'a serde_json::Value),
    /// A JSON document with another media type, e.g. Glance's
    /// `application/openstack-images-v2.1-json-patch`.
    JsonAs(&'a serde_json::Value, &'static str),
    /// Bytes streamed from a reader, announced with `Content-Length: length`
    /// (`Content-Type: application/octet-stream`). Not replayable.
    Stream {
        reader: &'a mut dyn Read,
        length: u64,
    },
}

impl RequestBody<'_> {
    /// Whether the same request can be sent again (everything but a stream).
    pub fn is_replayable(&self) -> bool {
        !matches!(self, Self::Stream { .. })
    }
}

/// Longest idle time after which a pooled connection is still reused.
const POOLED_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A configured client; cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client with the given TLS settings and timeouts.
    pub fn new(tls: &TlsSettings, options: HttpOptions) -> Result<Self, CloudError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // A pooled connection idle for longer may already be closed by the server
            // (gunicorn's keep-alive is 2 s, Apache's 5 s): reusing it is a reset that
            // the request never reached. Status polls pause longer than that.
            .max_idle_age(POOLED_IDLE_LIMIT)
            .user_agent(concat!("imgferry/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.idle_timeout))
            .timeout_per_write(Some(options.idle_timeout))
            .tls_config(tls_config(tls)?)
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// Sends a request with an optional JSON body. Any HTTP status is returned as a
    /// response; only transport failures are errors.
    pub fn send(
        &self,
        method: Method,
        url: &Url,
        token: Option<&Secret>,
        json: Option<&serde_json::Value>,
    ) -> Result<Response<Body>, CloudError> {
        let body = json.map_or(RequestBody::Empty, RequestBody::Json);
        self.execute(method, url, token, &[], body)
    }

    /// Sends a request with extra headers and any [`RequestBody`]. Any HTTP status is
    /// returned as a response; only transport failures are errors. A response body is
    /// read without a size limit by [`Body::into_reader`]: callers bound it.
    pub fn execute(
        &self,
        method: Method,
        url: &Url,
        token: Option<&Secret>,
        headers: &[(&str, &str)],
        body: RequestBody<'_>,
    ) -> Result<Response<Body>, CloudError> {
        let mut request = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str());
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
        {
            request = request.header("Accept", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token.expose());
        }
        let json_bytes = |value: &serde_json::Value| {
            serde_json::to_vec(value).map_err(|e| invalid(url, e.to_string()))
        };
        let built = match body {
            RequestBody::Empty => request.body(()).map(|r| self.agent.run(r)),
            RequestBody::Json(value) => request
                .header("Content-Type", "application/json")
                .body(json_bytes(value)?)
                .map(|r| self.agent.run(r)),
            RequestBody::JsonAs(value, media_type) => request
                .header("Content-Type", media_type)
                .body(json_bytes(value)?)
                .map(|r| self.agent.run(r)),
            RequestBody::Stream { reader, length } => request
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", length)
                .body(ureq::SendBody::from_reader(reader))
                .map(|r| self.agent.run(r)),
        };
        match built {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(CloudError::Unreachable {
                url: display_url(url),
                source,
            }),
            Err(e) => Err(invalid(url, format!("cannot build the request: {e}"))),
        }
    }
}

fn tls_config(tls: &TlsSettings) -> Result<TlsConfig, CloudError> {
    let builder = TlsConfig::builder();
    if !tls.verify {
        return Ok(builder.disable_verification(true).build());
    }
    let Some(path) = &tls.cacert else {
        return Ok(builder.root_certs(RootCerts::PlatformVerifier).build());
    };
    let problem = |problem: String| CloudError::CaBundle {
        path: path.clone(),
        problem,
    };
    let mut pem = Vec::new();
    fs_err::File::open(path)
        .and_then(|f| f.take(MAX_CA_BUNDLE_BYTES + 1).read_to_end(&mut pem))
        .map_err(|e| problem(e.to_string()))?;
    if pem.len() as u64 > MAX_CA_BUNDLE_BYTES {
        return Err(problem(format!("larger than {MAX_CA_BUNDLE_BYTES} bytes")));
    }
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| problem(e.to_string()))? {
            PemItem::Certificate(certificate) => certificates.push(certificate),
            PemItem::PrivateKey(_) => {
                return Err(problem(
                    "holds a private key; give only certificates".into(),
                ))
            }
            _ => {}
        }
    }
    if certificates.is_empty() {
        return Err(problem("holds no PEM certificate".into()));
    }
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&certificates))
        .build())
}

/// Reads a JSON body of at most [`MAX_JSON_BYTES`] and parses it as `T`.
pub fn read_json<T: DeserializeOwned>(
    url: &Url,
    response: Response<Body>,
) -> Result<T, CloudError> {
    let bytes = read_bounded(url, response, MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(url, format!("not the JSON expected ({e})")))
}

fn read_bounded(url: &Url, response: Response<Body>, limit: u64) -> Result<Vec<u8>, CloudError> {
    let mut body = response.into_body();
    body.with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|source| match source {
            ureq::Error::BodyExceedsLimit(_) => CloudError::ResponseTooLarge {
                url: display_url(url),
                limit,
            },
            source => CloudError::Unreachable {
                url: display_url(url),
                source,
            },
        })
}

/// The error for a response whose status says the request failed, with the server's
/// own message when its body has one.
pub fn status_error(method: Method, url: &Url, response: Response<Body>) -> CloudError {
    let status = response.status().as_u16();
    CloudError::Http {
        method: method.as_str(),
        url: display_url(url),
        status,
        message: server_message(response),
    }
}

/// The message in an error response: Keystone's `{"error": {"message"}}`, other JSON
/// shapes, or the text of Glance's HTML error pages. Cleaned of control characters and
/// cut to a readable length, since the body is untrusted.
pub fn server_message(response: Response<Body>) -> Option<String> {
    let mut body = response.into_body();
    let bytes = body
        .with_config()
        .limit(MAX_ERROR_BODY_BYTES)
        .read_to_vec()
        .ok()?;
    message_from_body(&bytes)
}

/// `base` + `/` + `path`, whether or not `base` ends in a slash.
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// A URL as shown in messages: without user info or fragment.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn invalid(url: &Url, problem: String) -> CloudError {
    CloudError::InvalidResponse {
        url: display_url(url),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_path_handles_trailing_slashes() {
        let base = Url::parse("http://k:5000/identity/v3/").unwrap();
        assert_eq!(
            join_path(&base, "auth/tokens").as_str(),
            "http://k:5000/identity/v3/auth/tokens"
        );
        let base = Url::parse("http://g:9292").unwrap();
        assert_eq!(join_path(&base, "v2/").as_str(), "http://g:9292/v2/");
    }

    #[test]
    fn display_url_drops_user_info() {
        let url = Url::parse("https://user:pw@k.example/v3?x=1#f").unwrap();
        assert_eq!(display_url(&url), "https://k.example/v3?x=1");
    }
}
