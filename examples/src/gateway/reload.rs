//! Parts the gateway can swap while it runs (SIGHUP): the policy and the static tokens.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use hoop_core::auth::StaticTokenAuthenticator;
use hoop_core::{AuthError, Authenticator, Credential, Decision, Identity, Policy, Request};

/// A policy that can be replaced while the gateway runs (SIGHUP): each decision uses
/// the policy in force when it starts.
pub struct SwappablePolicy {
    current: std::sync::RwLock<Arc<dyn Policy>>,
}

impl SwappablePolicy {
    /// Starts with `policy`.
    pub fn new(policy: Arc<dyn Policy>) -> Self {
        SwappablePolicy {
            current: std::sync::RwLock::new(policy),
        }
    }

    /// Replaces the policy for the decisions that start from now on.
    pub fn replace(&self, policy: Arc<dyn Policy>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    fn get(&self) -> Arc<dyn Policy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Policy for SwappablePolicy {
    async fn decide(&self, request: &Request<'_>) -> Decision {
        let p = self.get();
        p.decide(request).await
    }
}

/// The static token table, replaceable while the gateway runs (a revoked token stops
/// working for new sessions at the next reload).
pub struct SwappableTokens {
    current: RwLock<Arc<StaticTokenAuthenticator>>,
}

impl SwappableTokens {
    /// Starts with `tokens`.
    pub fn new(tokens: StaticTokenAuthenticator) -> Self {
        SwappableTokens {
            current: RwLock::new(Arc::new(tokens)),
        }
    }

    /// Replaces the table for the authentications that start from now on.
    pub fn replace(&self, tokens: StaticTokenAuthenticator) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
    }

    /// Number of tokens in force.
    pub fn len(&self) -> usize {
        self.get().len()
    }

    /// Whether no token is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self) -> Arc<StaticTokenAuthenticator> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Authenticator for SwappableTokens {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        let t = self.get();
        t.authenticate(credential).await
    }
}
