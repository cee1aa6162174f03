//! The [`Adapter`] trait: one protocol, served on the connections of a listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::approval::{ApprovalGate, RejectAll};
use crate::masking::NoMasking;
use crate::policy::DenyAll;
use crate::recording::NoRecording;
use crate::server::registry::SessionHandle;
use crate::tls::ServerTls;
use crate::{Authenticator, Masker, Policy, Recorder, SessionId};

/// An accepted client connection, before any TLS.
#[derive(Debug)]
pub struct ClientConn {
    /// The raw TCP stream. The adapter decides when to upgrade it to TLS (some protocols
    /// negotiate TLS in-band, like Postgres `SSLRequest`) with [`SessionCtx::tls`].
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's local address.
    pub local: SocketAddr,
}

/// The gateway services every session uses. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct Services {
    /// Turns credentials into identities.
    pub authenticator: Arc<dyn Authenticator>,
    /// Decides connects and commands.
    pub policy: Arc<dyn Policy>,
    /// Masks values on their way to the client.
    pub masker: Arc<dyn Masker>,
    /// Records sessions.
    pub recorder: Arc<dyn Recorder>,
    /// Holds commands for approval.
    pub approvals: Arc<dyn ApprovalGate>,
    /// How long a held command waits for a verdict.
    pub approval_hold: Duration,
    /// When on, a session ends when the credential that opened it expires
    /// ([`crate::Identity::expires_at`]: an OIDC token's `exp`, a static token's expiry, a
    /// client certificate's `notAfter`): [`SessionCtx::authorize`] arms a timer that ends
    /// the session through the registry with the reason `"credential expired"`, which the
    /// adapter tells the user and the recording and registry keep. Identities without an
    /// expiry are not affected. Off by default: a session then lives as long as its
    /// connection, whatever happens to its credential afterwards.
    pub end_at_credential_expiry: bool,
}

impl Services {
    /// Services that refuse everything (deny-all policy, no approvals), with the given
    /// authenticator. Replace fields to configure.
    pub fn new(authenticator: Arc<dyn Authenticator>) -> Self {
        Services {
            authenticator,
            policy: Arc::new(DenyAll),
            masker: Arc::new(NoMasking),
            recorder: Arc::new(NoRecording),
            approvals: Arc::new(RejectAll),
            approval_hold: Duration::from_secs(60),
            end_at_credential_expiry: false,
        }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("approval_hold", &self.approval_hold)
            .field("end_at_credential_expiry", &self.end_at_credential_expiry)
            .finish_non_exhaustive()
    }
}

/// Everything a session needs besides its connection.
#[derive(Clone, Debug)]
pub struct SessionCtx {
    /// The session's id.
    pub id: SessionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Gateway services.
    pub services: Arc<Services>,
    /// The listener's TLS endpoint, if it has one.
    pub tls: Option<ServerTls>,
    /// Cancelled when an operator kills the session or the gateway shuts down past its
    /// drain deadline. Adapters select on it in their relay loops.
    pub cancel: CancellationToken,
    /// The session's entry in the registry (set user and resource once known).
    pub handle: SessionHandle,
    /// The session's tracing span (fields `session`, `peer`, `user`, `resource`).
    pub span: tracing::Span,
    /// Handshake timeout of the listener (TLS and protocol startup).
    pub handshake_timeout: Duration,
    /// Idle timeout of the listener (no bytes either way).
    pub idle_timeout: Duration,
}

/// One protocol.
///
/// The core accepts connections, enforces limits, creates the [`SessionCtx`] (with its
/// span and registry entry) and calls [`Adapter::serve`] once per connection inside the
/// session's span. The adapter owns the protocol state machine: TLS upgrade (through
/// `ctx.tls`), authentication and authorization (through [`crate::sequence`]), the verified
/// upstream session, and the relay.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Protocol name (`postgres`, `http`, `ssh`, `kafka`, `tcp`).
    fn protocol(&self) -> &'static str;

    /// Serves one client connection until it ends. An error is logged and recorded by the
    /// core; the adapter should already have told the client in its protocol's terms.
    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> crate::error::Result<()>;
}
