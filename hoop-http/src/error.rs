//! Errors of the HTTP adapter.

/// What can end an HTTP session or fail a request toward the target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The adapter's configuration is unusable (see [`crate::HttpAdapter::by_host`]).
    #[error("configuration: {0}")]
    Config(String),
    /// The listener has no TLS: bearer tokens would travel in clear.
    #[error("the HTTP adapter requires a TLS listener")]
    NoTls,
    /// A core error (TLS refusal, recording, I/O).
    #[error(transparent)]
    Core(#[from] hoop_core::Error),
    /// The HTTP protocol failed on the client connection.
    #[error("HTTP: {0}")]
    Hyper(#[from] hyper::Error),
    /// A step took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The target could not be reached or answered badly.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A response body could not be masked (over the limit, unknown encoding, corrupt).
    #[error("response body: {0}")]
    Body(String),
}

impl From<HttpError> for hoop_core::Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Core(c) => c,
            HttpError::Timeout(w) => hoop_core::Error::Timeout(w),
            other => hoop_core::Error::Protocol(other.to_string()),
        }
    }
}

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
