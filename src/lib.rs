//! imgferry: move virtual-machine images between OpenStack projects and clouds.
//!
//! The crate is layered as described in `shared/DESIGN.md`; arrows point down only:
//!
//! - [`cli`] parses argv and is the only code that prints;
//! - [`report`] is the seam through which lower layers announce progress and warnings;
//! - [`disk`] reads, writes, converts, amends and checks raw and qcow2 images;
//! - [`hash`] computes whole-file digests and per-chunk manifests;
//! - [`cloud`] speaks to OpenStack: clouds.yaml, Keystone v3, Glance v2;
//! - [`guest`] reads and edits the filesystems inside an image (libguestfs backend);
//! - [`sysprep`] strips host identity from a guest, written against [`guest::GuestFs`].
//! - [`interrupt`] turns Ctrl-C and SIGTERM into a flag long loops poll, so they stop
//!   through their error path and clean up;
//! - [`transfer`] moves image data to and from Glance, verified, resumable, cleaned up.

pub mod cli;
pub mod cloud;
pub mod disk;
pub mod exit;
pub mod guest;
pub mod hash;
pub mod interrupt;
pub mod pipeline;
pub mod report;
pub mod sysprep;
pub mod transfer;
