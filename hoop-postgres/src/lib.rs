//! # hoop-postgres
//!
//! The PostgreSQL adapter of hoop. This crate currently provides the wire-protocol layer:
//!
//! - [`codec`]: cancel-safe framing of the startup phase and of tagged messages, with
//!   length limits checked before anything is buffered;
//! - [`messages`]: one type per message, decoded lazily from the original bytes and
//!   re-encoded only when rewritten;
//! - [`scram`]: the client side of SCRAM-SHA-256 (and `-PLUS` with
//!   `tls-server-end-point` channel binding) and md5, for logging in to targets with
//!   injected credentials.

pub mod adapter;
pub mod binary_text;
pub mod cancel;
pub mod classify;
pub mod codec;
pub mod config;
pub mod error;
pub mod io;
pub mod mask;
pub mod messages;
pub mod relay;
pub mod scram;
pub mod startup;
pub mod upstream;

pub use adapter::PostgresAdapter;
pub use config::{PostgresOptions, PostgresTarget, Secret};
pub use error::{CodecError, PgError};
