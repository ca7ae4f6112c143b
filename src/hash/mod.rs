//! Digests: whole-file multi-digest hashing from one read, and per-chunk manifests.
//! (Being written; see issue 2.)

/// Errors of the hash layer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Placeholder until the layer lands.
    #[error("not implemented yet")]
    NotImplemented,
}

impl HashError {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::Failure
    }
}
