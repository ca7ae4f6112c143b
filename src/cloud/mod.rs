//! OpenStack REST: clouds.yaml + environment, a Keystone v3 session, Glance v2.
//!
//! Owns everything that speaks to a cloud: [`config`] (which cloud, which credentials),
//! [`http`] (the blocking HTTP client with TLS, timeouts and bounded bodies),
//! [`keystone`] (tokens, catalog, re-authentication) and [`glance`] (image records).
//! It must not print or read argv, and nothing in it may format a [`Secret`]'s text.

pub mod config;
mod error;
pub mod glance;
pub mod http;
pub mod keystone;
pub mod secret;

pub use error::{CloudError, ImageCandidate};
pub use secret::Secret;
