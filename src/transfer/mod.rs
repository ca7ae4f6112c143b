//! Verified transfers of image data between a local file and Glance.
//!
//! - [`download`]: IMAGE -> FILE through `FILE.part`: streamed in large buffers, md5 and
//!   the image's `os_hash_algo` computed on their own threads, holes kept, retried with
//!   backoff and resumed with `Range` after a dropped connection or a 5xx, verified
//!   against Glance's record, renamed only when verified;
//! - [`remote`]: IMAGE read at random offsets (HTTP `Range`, a bounded block cache)
//!   behind the disk layer's `ReadAt`, for streaming;
//! - [`upload`]: FILE -> new image: the format checked against the content before
//!   anything is created, streamed with `Content-Length` (or staged and imported),
//!   hashed while sending, compared with what Glance recorded, and the half-created
//!   image deleted on any failure.
//!
//! Sits on `cloud` (requests) and `hash` (digests); used by the CLI and by `pipeline`.
//! It must not print: progress, events and warnings go through [`Reporter`].
//!
//! [`Reporter`]: crate::report::Reporter

mod download;
mod error;
pub mod remote;
mod retry;
mod sparse;
mod stop;
mod upload;

pub use download::{download, part_path, DownloadOptions, Downloaded};
pub use error::TransferError;
pub use retry::RetryPolicy;
pub use upload::{upload, UploadMethod, UploadOptions, Uploaded};

/// Bytes moved per read and write: large enough that syscalls and channel hand-offs are
/// noise next to hashing (the issue asks for at least 1 MiB).
pub const BUFFER_SIZE: usize = 4 << 20;
