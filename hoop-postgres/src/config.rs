//! Configuration of the PostgreSQL adapter: resources (targets) and listener options.

use std::net::SocketAddr;

use hoop_core::Resource;
use hoop_core::sequence::UpstreamSecurity;

pub use hoop_core::secret::Secret;

/// One PostgreSQL target reachable through the gateway.
#[derive(Clone, Debug)]
pub struct PostgresTarget {
    /// The resource as policy and audit see it. Clients select it with
    /// `dbname=<resource name>`.
    pub resource: Resource,
    /// Target address.
    pub addr: SocketAddr,
    /// How the target connection is secured (verified TLS unless explicitly opted out).
    pub security: UpstreamSecurity,
    /// Database on the target.
    pub database: String,
    /// Login role on the target.
    pub user: String,
    /// Its password (never shown to the client, never logged).
    pub password: Secret,
    /// Open the target session with `default_transaction_read_only=on` and refuse
    /// attempts to turn it off.
    pub read_only: bool,
}

/// Options of the adapter.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Accept clients that do not negotiate TLS (the token would travel in clear: off by
    /// default; plaintext CancelRequests are always accepted, they carry no credential).
    pub allow_plaintext_clients: bool,
    /// Largest message accepted from the target (default 1 GiB, PostgreSQL's own limit).
    pub max_message: usize,
    /// Largest message accepted from a client (default 256 MiB): what one unauthenticated
    /// or hostile connection can make the gateway buffer.
    pub max_client_message: usize,
    /// Flush coalesced writes once this many bytes are buffered.
    pub flush_threshold: usize,
    /// Classification cache size (query texts).
    pub class_cache: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            allow_plaintext_clients: false,
            max_message: crate::codec::DEFAULT_MAX_MESSAGE,
            max_client_message: 256 << 20,
            flush_threshold: 64 * 1024,
            class_cache: 10_000,
        }
    }
}
