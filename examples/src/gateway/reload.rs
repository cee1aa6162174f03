//! Parts the gateway can swap while it runs (SIGHUP): the policy, the static tokens, the
//! masking rules and the resources behind each listener.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use hoop_core::auth::StaticTokenAuthenticator;
use hoop_core::{
    Adapter, AuthError, Authenticator, ClientConn, Credential, Decision, Identity, Masker, Policy,
    Request, Services, SessionCtx,
};

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

/// The [`Services`] new sessions start with, replaceable while the gateway runs (a SIGHUP
/// with new masking rules stores a new snapshot).
///
/// Each session takes the snapshot in force when it starts ([`SnapshotAdapter`]) and keeps
/// it to its end: a session already running keeps the masking rules it started with, new
/// sessions get the new ones. Taking a snapshot is one read lock and one `Arc` clone per
/// session; masking a value takes no lock at all (the masker is reached through the
/// session's own `Arc<Services>`), and a field prepared by one masker is never handed to
/// another.
pub struct SessionServices {
    current: RwLock<Arc<Services>>,
}

impl SessionServices {
    /// Starts with `services`.
    pub fn new(services: Arc<Services>) -> Self {
        SessionServices {
            current: RwLock::new(services),
        }
    }

    /// The snapshot for a session starting now.
    pub fn current(&self) -> Arc<Services> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the masker for the sessions that start from now on.
    pub fn replace_masker(&self, masker: Arc<dyn Masker>) {
        self.update(|s| s.masker = masker);
    }

    /// Changes the snapshot for the sessions that start from now on.
    pub fn update(&self, change: impl FnOnce(&mut Services)) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Services::clone(&current);
        change(&mut next);
        *current = Arc::new(next);
    }
}

/// The adapter behind a listener, replaceable while the gateway runs: a SIGHUP that
/// changes the listener's resources builds a new adapter, and each connection accepted
/// from then on is served by it. Connections already open keep the adapter they started
/// with (a PostgreSQL session keeps its target; an HTTP client connection keeps its
/// routes until it closes).
pub struct SwappableAdapter {
    protocol: &'static str,
    current: RwLock<Arc<dyn Adapter>>,
}

impl SwappableAdapter {
    /// Starts with `adapter`.
    pub fn new(adapter: Arc<dyn Adapter>) -> Self {
        SwappableAdapter {
            protocol: adapter.protocol(),
            current: RwLock::new(adapter),
        }
    }

    /// Replaces the adapter for the connections accepted from now on. `false` (and no
    /// change) when `adapter` speaks another protocol than the listener.
    pub fn replace(&self, adapter: Arc<dyn Adapter>) -> bool {
        if adapter.protocol() != self.protocol {
            return false;
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = adapter;
        true
    }

    /// The adapter in force.
    pub fn current(&self) -> Arc<dyn Adapter> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Adapter for SwappableAdapter {
    fn protocol(&self) -> &'static str {
        self.protocol
    }

    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> hoop_core::error::Result<()> {
        let adapter = self.current();
        adapter.serve(conn, ctx).await
    }
}

/// Hands each session of `inner` the [`SessionServices`] snapshot in force when the
/// session starts.
pub struct SnapshotAdapter {
    inner: Arc<dyn Adapter>,
    services: Arc<SessionServices>,
}

impl SnapshotAdapter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Adapter>, services: Arc<SessionServices>) -> Self {
        SnapshotAdapter { inner, services }
    }
}

#[async_trait]
impl Adapter for SnapshotAdapter {
    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }

    async fn serve(&self, conn: ClientConn, mut ctx: SessionCtx) -> hoop_core::error::Result<()> {
        ctx.services = self.services.current();
        self.inner.serve(conn, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use hoop_core::masking::{Field, NoMasking, RuleMasker, Strategy};

    use super::*;

    /// An adapter that only names its protocol.
    struct Named(&'static str);

    #[async_trait]
    impl Adapter for Named {
        fn protocol(&self) -> &'static str {
            self.0
        }

        async fn serve(&self, _: ClientConn, _: SessionCtx) -> hoop_core::error::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_listener_keeps_its_protocol_across_replacements() {
        let first: Arc<dyn Adapter> = Arc::new(Named("postgres"));
        let swap = SwappableAdapter::new(first.clone());
        assert!(Arc::ptr_eq(&swap.current(), &first));
        let second: Arc<dyn Adapter> = Arc::new(Named("postgres"));
        assert!(swap.replace(second.clone()));
        assert!(Arc::ptr_eq(&swap.current(), &second));
        assert!(!swap.replace(Arc::new(Named("http"))));
        assert!(Arc::ptr_eq(&swap.current(), &second));
        assert_eq!(swap.protocol(), "postgres");
    }

    #[test]
    fn a_snapshot_keeps_its_masker_after_a_replace() {
        let auth: Arc<dyn Authenticator> = Arc::new(hoop_core::auth::AuthenticatorChain::new());
        let mut s = Services::new(auth);
        s.masker = Arc::new(NoMasking);
        let swap = SessionServices::new(Arc::new(s));
        let before = swap.current();
        let rules = RuleMasker::builder()
            .field_rule("email", Strategy::Redact)
            .build()
            .unwrap();
        swap.replace_masker(Arc::new(rules));
        let after = swap.current();
        let f = Field::named("email");
        assert!(matches!(
            before.masker.mask(&f, "a@example.com"),
            Cow::Borrowed(_)
        ));
        assert_ne!(after.masker.mask(&f, "a@example.com"), "a@example.com");
        assert_eq!(before.approval_hold, after.approval_hold);
    }
}
