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
//!
//! ## Build your own proxy
//!
//! A TLS gateway in front of one TCP target, with tokens, a rule policy and recordings
//! (the same code is in the README):
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use hoop_core::auth::StaticTokenAuthenticator;
//! use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
//! use hoop_core::recording::JsonlRecorder;
//! use hoop_core::sequence::UpstreamSecurity;
//! use hoop_core::server::{ListenerConfig, Server};
//! use hoop_core::tcp::{TcpAdapter, TcpAdapterConfig};
//! use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
//! use hoop_core::{Resource, Services};
//!
//! async fn run() -> Result<(), Box<dyn std::error::Error>> {
//!     // Who may connect: gateway-issued tokens, stored only as hashes.
//!     let tokens = StaticTokenAuthenticator::from_file("tokens.txt")?;
//!     let mut services = Services::new(Arc::new(tokens));
//!     // What they may do: first matching rule wins, nothing matched means deny.
//!     services.policy = Arc::new(RulePolicy::new(vec![
//!         Rule::allow("devs-connect").groups(["dev"]).actions(ActionMatch::connect()),
//!     ]));
//!     // Every session recorded as a hash-chained JSON-lines file.
//!     services.recorder = Arc::new(JsonlRecorder::new("recordings"));
//!
//!     // The target, reached over a separate TLS session verified against its own CA.
//!     let upstream = UpstreamTls::new(UpstreamTlsConfig {
//!         roots: UpstreamRoots::CaFile("redis-ca.pem".into()),
//!         ..Default::default()
//!     })?;
//!     let adapter = TcpAdapter::new(TcpAdapterConfig::new(
//!         Resource::new("cache", "tcp"),
//!         "10.0.0.5:6380".parse()?,
//!         UpstreamSecurity::Tls { tls: upstream, server_name: "redis.internal".into() },
//!     ));
//!
//!     // The gateway's own certificate toward clients (rotated files are picked up).
//!     let tls = ServerTls::new(ServerTlsConfig {
//!         cert_path: "gateway.crt".into(),
//!         key_path: "gateway.key".into(),
//!         ..Default::default()
//!     })?;
//!     let _watch = tls.watch(Duration::from_secs(5));
//!
//!     let server = Server::builder()
//!         .services(Arc::new(services))
//!         .listener(ListenerConfig::new("cache", "0.0.0.0:6380".parse()?, Arc::new(adapter)).tls(tls))
//!         .build()
//!         .await?;
//!     let handle = server.spawn();
//!     tokio::signal::ctrl_c().await?;
//!     handle.shutdown(Duration::from_secs(30)).await; // drain, then close
//!     Ok(())
//! }
//! ```

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
pub mod secret;
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
pub use masking::{Field, FieldKind, Masker, PreparedField};
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
