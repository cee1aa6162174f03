//! Errors of the wire-protocol layer.

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
