//! OpenStack REST: clouds.yaml + environment, a Keystone v3 session, Glance v2, Cinder v3.
//!
//! Owns everything that speaks to a cloud: [`config`] (which cloud, which credentials),
//! [`http`] (the blocking HTTP client with TLS, timeouts and bounded bodies),
//! [`keystone`] (tokens, catalog, re-authentication), [`glance`] (image records) and
//! [`cinder`] (volumes, volume snapshots, upload of a volume into Glance).
//! It must not print or read argv, and nothing in it may format a [`Secret`]'s text.

pub mod cinder;
pub mod config;
mod error;
pub mod glance;
pub mod http;
pub mod keystone;
pub mod secret;

pub use error::{CloudError, ImageCandidate};
pub use secret::Secret;
