//! Errors of the PostgreSQL adapter.

/// A malformed or hostile message. The adapter answers with a FATAL ErrorResponse
/// (SQLSTATE 08P01, protocol violation) and closes that one connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// A length field is below the minimum for its message.
    #[error("invalid message length {len} for {what}")]
    BadLength {
        /// The message kind.
        what: &'static str,
        /// The length field.
        len: i64,
    },
    /// A message is longer than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length field.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message ended before a field it announced.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A string field is not valid UTF-8 or lacks its terminator.
    #[error("invalid string in {0}")]
    BadString(&'static str),
    /// A field holds a value the protocol does not allow.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// An unknown startup request code.
    #[error("unsupported startup request code {0}")]
    UnknownStartupCode(i32),
}

/// Why a PostgreSQL session ended abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The peer sent something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Codec(#[from] CodecError),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed mid-message")]
    Truncated,
    /// The client broke a rule of the gateway (already told with an ErrorResponse).
    #[error("client refused: {0}")]
    Refused(String),
    /// The target refused or failed the login.
    #[error("target login failed: {0}")]
    TargetLogin(String),
    /// A hoop-core step failed (TLS, policy, recording).
    #[error(transparent)]
    Core(#[from] hoop_core::Error),
    /// Recording failed and the recorder fails closed.
    #[error(transparent)]
    Record(#[from] hoop_core::recording::RecordError),
    /// A timeout.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The target started sending output the masking cannot read (binary COPY that
    /// escaped the statement check): the session is ended rather than let it through.
    #[error("output that cannot be masked: {0}")]
    Unmaskable(&'static str),
}

impl From<PgError> for hoop_core::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Core(c) => c,
            PgError::Io(io) => hoop_core::Error::Io(io),
            PgError::Timeout(w) => hoop_core::Error::Timeout(w),
            other => hoop_core::Error::Protocol(other.to_string()),
        }
    }
}
