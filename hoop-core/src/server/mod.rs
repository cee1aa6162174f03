//! Listeners, connection limits, timeouts, graceful shutdown and the session registry.
//!
//! A [`Server`] binds one or more listeners ([`ListenerConfig`]), each serving one
//! [`crate::Adapter`]. For every accepted connection it:
//!
//! - refuses it at once when the listener's (or the global) connection limit is reached;
//! - sets `TCP_NODELAY`;
//! - registers the session in the [`SessionRegistry`] (listed, inspected, killed by an
//!   admin API) and creates its `session` tracing span (fields `session`, `peer`,
//!   `listener`, `protocol`, `user`, `resource`);
//! - runs [`crate::Adapter::serve`] inside that span and logs the end with its duration and
//!   outcome.
//!
//! [`ServerHandle::shutdown`] stops accepting, lets live sessions drain until a deadline,
//! then cancels them (`ctx.cancel`) and finally drops whatever did not end.

mod builder;
pub mod limits;
mod listener;
pub mod registry;
mod shutdown;

pub use builder::{DEFAULT_CANCEL_GRACE, Server, ServerBuilder};
pub use limits::{ConnectionLimits, LimitHit};
pub use listener::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ListenerConfig,
};
pub use registry::{SessionHandle, SessionInfo, SessionRegistry};
pub use shutdown::{ServerHandle, ShutdownReport};

#[cfg(test)]
mod tests;
