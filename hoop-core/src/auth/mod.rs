//! Built-in authenticators. (Filled in by the identity work item.)

use async_trait::async_trait;

use crate::{AuthError, Authenticator, Credential, Identity};

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
