//! Generic TCP access: [`TcpAdapter`] relays a TLS client to a target over a separate,
//! verified TLS session, after authentication and the policy's connect decision.
//!
//! ```no_run
//! # fn example(upstream_tls: hoop_core::tls::UpstreamTls) {
//! use hoop_core::Resource;
//! use hoop_core::sequence::UpstreamSecurity;
//! use hoop_core::tcp::{TcpAdapter, TcpAdapterConfig};
//!
//! let adapter = TcpAdapter::new(TcpAdapterConfig::new(
//!     Resource::new("redis-prod", "tcp"),
//!     "10.0.0.5:6380".parse().unwrap(),
//!     UpstreamSecurity::Tls { tls: upstream_tls, server_name: "redis.internal".into() },
//! ));
//! # }
//! ```

mod adapter;
pub mod auth_line;

pub use adapter::{TcpAdapter, TcpAdapterConfig};
pub use auth_line::{AuthLineError, MAX_AUTH_LINE};
