//! # hoop-core
//!
//! Building blocks for layer-7 access gateways. A gateway built with hoop sits in the data
//! path between users and targets (databases, SSH servers, HTTP/Kubernetes APIs, Kafka):
//!
//! 1. it terminates the client's connection with its own certificate ([`tls::ServerTls`]);
//! 2. it authenticates the user ([`Authenticator`]) into an [`Identity`];
//! 3. it asks the [`Policy`] whether this identity may open a session on the [`Resource`],
//!    and, where the policy says so, holds for a just-in-time approval ([`ApprovalGate`]);
//! 4. it opens a **separate, verified** TLS session to the target ([`tls::UpstreamTls`]),
//!    logging in with credentials the user never sees;
//! 5. it relays the protocol, deciding each command ([`Action`]) with the policy, masking
//!    values on their way back ([`Masker`]) and recording the session ([`Recorder`]).
//!
//! hoop-core owns listeners, TLS, identity, policy, masking, recording, approvals and
//! shutdown; protocol crates (`hoop-postgres`, `hoop-http`, ...) implement [`Adapter`].
//!
//! The security steps are tied together by proof tokens in [`sequence`]: an upstream
//! connection can only be opened with an [`sequence::Authorized`] token, which can only be
//! obtained from an [`sequence::Authenticated`] one, so a protocol adapter cannot forget a
//! step or take them in the wrong order.

pub mod action;
pub mod adapter;
pub mod approval;
pub mod auth;
pub mod error;
pub mod glob;
pub mod http_client;
pub mod identity;
pub mod io;
pub mod masking;
pub mod policy;
pub mod recording;
pub mod relay;
pub mod resource;
pub mod sequence;
pub mod server;
pub mod session;
pub mod tcp;
pub mod tls;

pub use action::{Action, ActionClass, Command, Fingerprint};
pub use adapter::{Adapter, ClientConn, Services, SessionCtx};
pub use approval::{ApprovalGate, ReviewRequest, Verdict};
pub use error::Error;
pub use identity::{AuthError, AuthMethod, Authenticator, Credential, Identity};
pub use masking::{Field, FieldKind, Masker};
pub use policy::{Decision, Policy, Request};
pub use recording::{Event, Recorder, Recording};
pub use resource::Resource;
pub use session::SessionId;

/// Installs aws-lc-rs as the process-wide rustls crypto provider, once.
///
/// hoop builds every TLS configuration with an explicit provider, so calling this is only
/// needed by applications that also build rustls configurations of their own with
/// `ClientConfig::builder()`. It is safe to call any number of times.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The crypto provider every hoop TLS configuration is built with.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
