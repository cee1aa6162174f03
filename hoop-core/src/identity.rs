//! Identities and the [`Authenticator`] trait.

use std::time::SystemTime;

use async_trait::async_trait;
use rustls_pki_types::CertificateDer;

/// Who a user is, as proven to the gateway.
///
/// Built only by an [`Authenticator`]; adapters never construct one from client-supplied
/// names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Stable subject (OIDC `sub` or a configured claim, certificate subject, token name).
    pub subject: String,
    /// Groups the subject belongs to (from a configurable claim or a static mapping).
    pub groups: Vec<String>,
    /// How the identity was proven.
    pub method: AuthMethod,
    /// Issuer of the proof (OIDC issuer URL, CA subject), when there is one.
    pub issuer: Option<String>,
    /// When the proof stops being valid (token `exp`, certificate `notAfter`).
    #[serde(skip)]
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// An identity with no groups, issuer or expiry.
    pub fn new(subject: impl Into<String>, method: AuthMethod) -> Self {
        Identity {
            subject: subject.into(),
            groups: Vec::new(),
            method,
            issuer: None,
            expires_at: None,
        }
    }

    /// Adds groups.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Whether the identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// How an [`Identity`] was proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An OIDC ID or access token (JWT) checked against the issuer's JWKS.
    Oidc,
    /// A token issued by the gateway (stored as a hash).
    StaticToken,
    /// A client certificate verified during the TLS handshake.
    ClientCertificate,
    /// An SSH public key or SSH certificate.
    SshKey,
}

/// What a client presented to prove who it is.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// A bearer token: an OIDC JWT or a gateway-issued token. Protocols without a token
    /// field carry it in their password field (e.g. Postgres).
    Bearer(&'a str),
    /// The end-entity client certificate the TLS layer already verified against the
    /// listener's client CA.
    ClientCertificate(&'a CertificateDer<'a>),
}

impl Credential<'_> {
    /// A short name of the credential kind, for logs (never the secret itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Bearer(_) => "bearer",
            Credential::ClientCertificate(_) => "client_certificate",
        }
    }
}

/// Why authentication failed. The message is safe to show to the client and to log:
/// it never contains the credential.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// This authenticator does not handle this kind of credential (a chain tries the next).
    #[error("credential kind not accepted")]
    NotApplicable,
    /// The credential is malformed or its signature/hash does not verify.
    #[error("invalid credential: {0}")]
    Invalid(String),
    /// The credential has expired.
    #[error("credential expired")]
    Expired,
    /// The credential is not valid yet (`nbf` in the future).
    #[error("credential not valid yet")]
    NotYetValid,
    /// Issuer not trusted.
    #[error("untrusted issuer: {0}")]
    UntrustedIssuer(String),
    /// Audience does not include this gateway.
    #[error("wrong audience")]
    WrongAudience,
    /// The signing algorithm is refused (`none`, HS* for OIDC, or not the key's algorithm).
    #[error("algorithm refused: {0}")]
    AlgorithmRefused(String),
    /// No key with the token's `kid`, even after refreshing the key set.
    #[error("unknown signing key")]
    UnknownKey,
    /// The issuer's key set could not be fetched (fail closed).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

/// Turns a [`Credential`] into an [`Identity`].
///
/// Implementations must fail closed: anything they cannot verify is an error. A
/// [`chain`](crate::auth::AuthenticatorChain) tries several in order, skipping those that
/// answer [`AuthError::NotApplicable`].
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Verifies `credential`; called once per session (and again by long-lived protocols
    /// that re-authenticate).
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError>;
}
