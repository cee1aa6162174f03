//! Listeners, connection limits, timeouts, graceful shutdown and the session registry.

pub mod registry;

pub use registry::{SessionHandle, SessionInfo, SessionRegistry};
