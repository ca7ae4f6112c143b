//! qcow2 (versions 2 and 3): on-disk structures, metadata walk, reading and writing.
//!
//! Split three ways: on-disk structs and their validation (`header`, `entries`,
//! `limits`); the metadata walk that answers "what is at this guest offset" (`layout`,
//! with its bounded L2 cache); and the I/O that moves bytes (`reader`, which inflates
//! compressed clusters through `decompress`; `writer` for output).

pub mod amend;
pub mod bitmaps;
pub mod check;
pub(crate) mod decompress;
pub mod entries;
pub mod header;
mod l2_cache;
pub mod layout;
pub mod limits;
pub mod reader;
pub mod refcount;
pub mod snapshot;
pub mod writer;

pub use header::{CompressionType, Header};
pub use reader::Qcow2Image;
