//! Glance v2 image data: the streamed download (`GET /v2/images/{id}/file`, with an
//! optional `Range`), a bounded range read (`Range: bytes=A-B`, for random access) and
//! the streamed upload (`PUT .../file`, or `PUT .../stage` for an
//! interoperable import).
//!
//! Owns the wire details: the range header, reading `Content-Range` and
//! `Content-Length` (untrusted: parsed strictly), the upload headers. What to do with the
//! answers (retry, resume, verify) belongs to `transfer/`. It must not print.

use std::io::Read;

use ureq::http::Response;
use ureq::Body;

use super::Glance;
use crate::cloud::http::{self, display_url, Method, RequestBody};
use crate::cloud::CloudError;

/// An open download of an image's data.
pub enum DataResponse {
    /// `200`: the whole image from byte 0.
    Whole {
        /// `Content-Length`, if sent.
        length: Option<u64>,
        body: Box<dyn Read + Send>,
    },
    /// `206`: from `start`, as asked.
    Partial {
        start: u64,
        /// The image's full size, from `Content-Range`.
        total: Option<u64>,
        body: Box<dyn Read + Send>,
    },
    /// `204`: the image has no data.
    NoData,
    /// `400` or `416` to a range request: the store cannot serve ranges (rbd, swift, s3
    /// answer 400), or the range is past the end.
    RangeRefused {
        status: u16,
        message: Option<String>,
    },
}

/// The answer to a request for the bytes `[start, end]` (inclusive) of an image's data.
pub enum RangeAnswer {
    /// `206` with a well-formed `Content-Range`: the bytes `start..=end` of `total` follow.
    /// The caller compares them with what it asked for (a server may send fewer).
    Partial {
        start: u64,
        end: u64,
        total: Option<u64>,
        body: Box<dyn Read + Send>,
    },
    /// `200`: the server ignored `Range` and would send the whole image (the body is
    /// dropped unread, so the connection is closed rather than drained).
    Ignored { length: Option<u64> },
    /// `400` or `416`: the store refuses ranges (rbd, swift, s3) or this one.
    Refused {
        status: u16,
        message: Option<String>,
    },
    /// `206` whose `Content-Range` is missing or malformed (the header as sent).
    Garbled { content_range: String },
}

/// Where uploaded bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTarget {
    /// `PUT /v2/images/{id}/file`: the image's data, it goes `active` when stored.
    File,
    /// `PUT /v2/images/{id}/stage`: the staging area of an interoperable import.
    Stage,
}

impl Glance {
    /// Opens the image's data, from byte `from` when it is not 0. Any other status
    /// (a 5xx, a 404) is an [`CloudError::Http`] whose status the caller may retry on.
    pub fn open_data(&mut self, id: &str, from: u64) -> Result<DataResponse, CloudError> {
        let url = self.images_url(&[id, "file"]);
        let range = format!("bytes={from}-");
        let mut headers = vec![
            ("Accept", "application/octet-stream"),
            ("Accept-Encoding", "identity"),
        ];
        if from > 0 {
            headers.push(("Range", range.as_str()));
        }
        let response = self
            .session
            .execute(Method::Get, &url, &headers, RequestBody::Empty)?;
        let status = response.status().as_u16();
        match status {
            200 => Ok(DataResponse::Whole {
                length: content_length(&response),
                body: Box::new(response.into_body().into_reader()),
            }),
            206 if from > 0 => {
                let header = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let Some((start, total)) = parse_content_range(header) else {
                    return Err(CloudError::InvalidResponse {
                        url: display_url(&url),
                        problem: format!("206 with an unusable Content-Range {header:?}"),
                    });
                };
                Ok(DataResponse::Partial {
                    start,
                    total,
                    body: Box::new(response.into_body().into_reader()),
                })
            }
            204 => Ok(DataResponse::NoData),
            400 | 416 if from > 0 => Ok(DataResponse::RangeRefused {
                status,
                message: http::server_message(response),
            }),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// Asks for the bytes `start..=end` of the image's data (`Range: bytes=START-END`).
    /// A 401 is replayed with a new token by the session; any status other than those of
    /// [`RangeAnswer`] is a [`CloudError::Http`] (a 5xx the caller may retry).
    pub fn read_range(
        &mut self,
        id: &str,
        start: u64,
        end: u64,
    ) -> Result<RangeAnswer, CloudError> {
        let url = self.images_url(&[id, "file"]);
        let range = format!("bytes={start}-{end}");
        let headers = [
            ("Accept", "application/octet-stream"),
            ("Accept-Encoding", "identity"),
            ("Range", range.as_str()),
        ];
        let response = self
            .session
            .execute(Method::Get, &url, &headers, RequestBody::Empty)?;
        let status = response.status().as_u16();
        match status {
            206 => {
                let header = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                match parse_range(&header) {
                    Some((start, end, total)) => Ok(RangeAnswer::Partial {
                        start,
                        end,
                        total,
                        body: Box::new(response.into_body().into_reader()),
                    }),
                    None => Ok(RangeAnswer::Garbled {
                        content_range: header.chars().take(120).collect(),
                    }),
                }
            }
            200 => Ok(RangeAnswer::Ignored {
                length: content_length(&response),
            }),
            400 | 416 => Ok(RangeAnswer::Refused {
                status,
                message: http::server_message(response),
            }),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Get, &url, response)),
        }
    }

    /// Streams `length` bytes from `reader` into the image's data or staging area, with
    /// `Content-Length` and `x-openstack-image-size`. A 401 is returned as
    /// [`CloudError::Http`] (a stream cannot be replayed): re-authenticate and start over.
    pub fn put_data(
        &mut self,
        id: &str,
        target: DataTarget,
        reader: &mut dyn Read,
        length: u64,
    ) -> Result<(), CloudError> {
        let leaf = match target {
            DataTarget::File => "file",
            DataTarget::Stage => "stage",
        };
        let url = self.images_url(&[id, leaf]);
        let size = length.to_string();
        let response = self.session.execute(
            Method::Put,
            &url,
            &[("x-openstack-image-size", size.as_str())],
            RequestBody::Stream { reader, length },
        )?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(self.not_found(id)),
            _ => Err(http::status_error(Method::Put, &url, response)),
        }
    }
}

fn content_length(response: &Response<Body>) -> Option<u64> {
    response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) as `(START, TOTAL)`; `None` when malformed
/// or when END comes before START.
fn parse_content_range(header: &str) -> Option<(u64, Option<u64>)> {
    parse_range(header).map(|(start, _, total)| (start, total))
}

/// `bytes START-END/TOTAL` as `(START, END, TOTAL)`, with the checks of
/// [`parse_content_range`].
fn parse_range(header: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        n => {
            let total: u64 = n.parse().ok()?;
            if total <= end {
                return None;
            }
            Some(total)
        }
    };
    Some((start, end, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed_strictly() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        for bad in [
            "",
            "bytes",
            "bytes 9-1/20",
            "bytes 0-19/20x",
            "bytes 0-19/19",
            "items 0-1/2",
            "bytes -1/2",
            "bytes 0-99999999999999999999/1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
        assert_eq!(parse_range("bytes 0-511/4096"), Some((0, 511, Some(4096))));
    }
}
