//! Configuration of the HTTP adapter: the target, its credential, limits.

use std::net::SocketAddr;
use std::time::Duration;

use hoop_core::Resource;
use hoop_core::sequence::UpstreamSecurity;

pub use hoop_core::secret::Secret;

/// The credential the gateway presents to the target (the user never sees it).
#[derive(Clone, Debug)]
pub enum UpstreamCredential {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// A named header (`X-Api-Key: <value>`).
    Header {
        /// Header name.
        name: String,
        /// Header value.
        value: Secret,
    },
}

/// One HTTP (or Kubernetes API) target behind a listener.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    /// The resource as policy and audit see it. With `protocol == "kubernetes"` request
    /// paths are also read as Kubernetes verbs (see [`crate::kube`]).
    pub resource: Resource,
    /// Target address.
    pub addr: SocketAddr,
    /// How the target connection is secured (verified TLS unless explicitly opted out).
    /// Offer ALPN `h2` and `http/1.1` in its `UpstreamTls` to speak HTTP/2 upstream.
    pub security: UpstreamSecurity,
    /// `Host` / `:authority` sent to the target (e.g. `api.internal:443`).
    pub authority: String,
    /// Credential injected into every request; `None` sends none. A secret kept in a file
    /// or the environment is read again at most once a second, so a rotated one is picked
    /// up without a restart and a request costs no file read.
    pub credential: Option<UpstreamCredential>,
    /// Cookies (by name) removed from requests before they are forwarded.
    pub strip_cookies: Vec<String>,
    /// Largest response body buffered for masking.
    pub max_body: usize,
    /// Over `max_body`, forward the body unmasked instead of failing with 502 (recorded).
    pub passthrough_over_limit: bool,
}

impl HttpTarget {
    /// A target with no credential, no cookies stripped and a 16 MiB masking limit.
    pub fn new(resource: Resource, addr: SocketAddr, security: UpstreamSecurity) -> Self {
        HttpTarget {
            resource,
            addr,
            security,
            authority: addr.to_string(),
            credential: None,
            strip_cookies: Vec::new(),
            max_body: 16 << 20,
            passthrough_over_limit: false,
        }
    }

    /// Sets the `Host` / `:authority` sent to the target.
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }

    /// Sets the injected credential.
    pub fn credential(mut self, credential: UpstreamCredential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Cookies never forwarded.
    pub fn strip_cookies<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.strip_cookies.extend(names.into_iter().map(Into::into));
        self
    }

    /// Sets the masking limit.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Forward bodies over the limit unmasked instead of failing.
    pub fn passthrough_over_limit(mut self, yes: bool) -> Self {
        self.passthrough_over_limit = yes;
        self
    }
}

/// Options of the adapter.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// HTTP/1.1 upstream connections one session may hold open at once (they serve one
    /// request at a time; an HTTP/2 client multiplexing more requests waits for one).
    pub max_upstream_conns: usize,
    /// How long a request may wait for the target's response head.
    pub upstream_timeout: Duration,
    /// Largest request head accepted from the client.
    pub max_header_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_upstream_conns: 8,
            upstream_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}
