//! Built-in authenticators.
//!
//! * [`OidcAuthenticator`]: OIDC JWTs checked against the issuer's key set
//!   ([`JwksCache`]).
//! * [`StaticTokenAuthenticator`]: gateway-issued tokens, stored only as SHA-256 hashes.
//! * [`ClientCertAuthenticator`]: identities from client certificates the TLS layer has
//!   already verified.
//! * [`AuthenticatorChain`]: several of them in order.
//!
//! ```no_run
//! # fn f(oidc: hoop_core::auth::OidcAuthenticator) -> Result<(), hoop_core::auth::AuthConfigError> {
//! use hoop_core::auth::{AuthenticatorChain, StaticTokenAuthenticator};
//! let chain = AuthenticatorChain::new()
//!     .push(oidc) // JWT-shaped bearers
//!     .push(StaticTokenAuthenticator::from_file("/etc/hoop/tokens")?); // the rest
//! # Ok(()) }
//! ```

use async_trait::async_trait;

use crate::{AuthError, Authenticator, Credential, Identity};

mod algorithm;
mod claims;
mod client_cert;
mod error;
mod jwk;
mod jwks;
mod oidc;
mod static_token;

pub use algorithm::JwsAlgorithm;
pub use client_cert::{CertSubjectSource, ClientCertAuthenticator};
pub use error::AuthConfigError;
pub use jwks::{JwksCache, JwksOptions};
pub use oidc::{MAX_TOKEN_LEN, OidcAuthenticator, OidcConfig};
pub use static_token::{
    StaticToken, StaticTokenAuthenticator, TOKEN_PREFIX, generate_token, hash_token,
};

/// Tries several authenticators in order; the first that does not answer
/// [`AuthError::NotApplicable`] decides.
#[derive(Default)]
pub struct AuthenticatorChain {
    members: Vec<Box<dyn Authenticator>>,
}

impl AuthenticatorChain {
    /// An empty chain (refuses everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator.
    pub fn push(mut self, a: impl Authenticator + 'static) -> Self {
        self.members.push(Box::new(a));
        self
    }
}

#[async_trait]
impl Authenticator for AuthenticatorChain {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        for m in &self.members {
            match m.authenticate(credential).await {
                Err(AuthError::NotApplicable) => continue,
                other => return other,
            }
        }
        Err(AuthError::NotApplicable)
    }
}
