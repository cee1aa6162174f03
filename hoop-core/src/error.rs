//! The crate-wide error type.

use crate::identity::AuthError;
use crate::recording::RecordError;
use crate::tls::TlsError;

/// Errors of hoop-core operations. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// I/O error on a socket or file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration or handshake failure (client or upstream side).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The policy denied the action.
    #[error("denied: {0}")]
    Denied(String),
    /// Recording failed and the recorder fails closed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A protocol violation by a peer.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A timeout (handshake, idle, approval).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Invalid configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// The session was ended by an operator or by shutdown.
    #[error("session ended: {0}")]
    Ended(&'static str),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
