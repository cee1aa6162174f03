//! Errors in authenticator configuration (not in authentication itself, see
//! [`AuthError`](crate::AuthError)).

/// An authenticator could not be built from its configuration.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// A setting is missing or has a bad value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting's name (`issuer`, `audiences`, `jwks_url`, ...).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A token file could not be read or parsed.
    #[error("token file {path}: {message}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong, with the line number where there is one.
        message: String,
    },
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

impl AuthConfigError {
    pub(crate) fn invalid(setting: &'static str, message: impl Into<String>) -> Self {
        AuthConfigError::Invalid {
            setting,
            message: message.into(),
        }
    }
}
