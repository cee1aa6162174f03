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
    /// Messages longer than this (on the wire, default 1 MiB) are streamed instead of
    /// buffered whole, so a 100 MB value or COPY row costs the gateway a bounded amount
    /// of memory:
    ///
    /// - target to client: a DataRow, CopyData or other pass-through message is
    ///   forwarded piece by piece when no masking applies (no masking rules, or binary
    ///   COPY). With masking rules, a row up to
    ///   [`mask_inspect_max`](Self::mask_inspect_max) is buffered and masked as usual; a
    ///   longer one is read column by column (see there). Messages the gateway parses
    ///   (RowDescription, ErrorResponse, ...) are still read whole, up to
    ///   [`max_message`](Self::max_message);
    /// - client to target: CopyData (COPY FROM STDIN) and Bind (parameters) are
    ///   forwarded piece by piece; Query and Parse are classified, so they are read
    ///   whole, up to [`max_client_message`](Self::max_client_message).
    pub stream_threshold: usize,
    /// Largest value (and, for a result row, largest whole row) the masking inspects
    /// (default 16 MiB). A masked result row longer than this is read column by column:
    /// each value up to this size is buffered and masked as usual, and the rewritten row
    /// is held until complete (up to four times this size). A value that is longer, or
    /// that would take the held row past that bound, cannot be inspected with bounded
    /// memory and is masked whole, failing closed: a text-like column gets
    /// [`TOO_LARGE_REDACTION`](crate::mask::TOO_LARGE_REDACTION), any other type becomes
    /// NULL. It counts as a masked value and the session goes on. A COPY TO STDOUT row
    /// (text or CSV) longer than this becomes a row of redacted fields. Without masking
    /// rules nothing is inspected and nothing is redacted.
    pub mask_inspect_max: usize,
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
            stream_threshold: 1 << 20,
            mask_inspect_max: 16 << 20,
            flush_threshold: 64 * 1024,
            class_cache: 10_000,
        }
    }
}
