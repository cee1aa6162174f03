//! A cache of an identity provider's JSON Web Key Set (see [`JwksCache`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;

use super::algorithm::JwsAlgorithm;
use super::jwk::{KeySet, Selected};
use crate::AuthError;
use crate::http_client::HttpsClient;
use crate::tls::UpstreamTls;

/// Timing and size settings of a [`JwksCache`].
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// Age after which the key set is fetched again (default 10 min).
    pub refresh_interval: Duration,
    /// No fetch starts sooner than this after the previous attempt (default 10 s).
    pub min_refresh_interval: Duration,
    /// Keys older than this (because every refresh failed) are no longer used
    /// (default 24 h).
    pub max_stale: Duration,
    /// Timeout of one HTTPS request (default 10 s).
    pub timeout: Duration,
    /// Largest accepted response body (default 256 KiB).
    pub max_body: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refresh_interval: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(10),
            max_stale: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            max_body: 256 << 10,
        }
    }
}

/// Where the key set comes from.
#[derive(Clone, Debug)]
enum Source {
    /// An explicit JWKS URL.
    Url(String),
    /// `jwks_uri` of `{issuer}/.well-known/openid-configuration`.
    Discovery { issuer: String },
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    /// Number of fetch attempts so far (a generation counter).
    attempts: u64,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    /// The JWKS URL found by discovery.
    discovered_url: Option<String>,
}

struct Inner {
    source: Source,
    client: HttpsClient,
    options: JwksOptions,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

/// A shared, self-refreshing cache of one issuer's signing keys. Cloning is cheap and
/// clones share the cache.
///
/// Fetched over verified TLS ([`HttpsClient`]):
///
/// * The set is fetched on first use and again when it is older than
///   [`JwksOptions::refresh_interval`] (in the background while the old keys are served).
/// * A token whose `kid` is not in the set triggers one refresh, then fails with
///   [`AuthError::UnknownKey`]. Fetches are rate-limited: none starts within
///   [`JwksOptions::min_refresh_interval`] of the previous attempt, so a flood of tokens
///   with bogus `kid`s costs at most one fetch per interval; concurrent misses share one
///   fetch.
/// * When a refresh fails, the previous keys are kept (for at most
///   [`JwksOptions::max_stale`]); with no keys at all, authentication answers
///   [`AuthError::Unavailable`] (fail closed).
/// * A document that is not a JWKS, or holds no usable signing key (only `oct`, `enc`,
///   unknown curves, RSA under 2048 bits...), counts as a failed fetch. At most 64 keys
///   are read; the body is limited to [`JwksOptions::max_body`].

#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache of the key set at `url` (must be `https://`), fetched with `tls`.
    pub fn new(url: impl Into<String>, tls: UpstreamTls, options: JwksOptions) -> Self {
        Self::build(Source::Url(url.into()), tls, options)
    }

    /// A cache that finds its key set through OpenID Connect discovery:
    /// `{issuer}/.well-known/openid-configuration` must name exactly `issuer` as its
    /// issuer and an `https://` `jwks_uri`.
    pub fn discover(issuer: impl Into<String>, tls: UpstreamTls, options: JwksOptions) -> Self {
        Self::build(
            Source::Discovery {
                issuer: issuer.into(),
            },
            tls,
            options,
        )
    }

    fn build(source: Source, tls: UpstreamTls, options: JwksOptions) -> Self {
        let client = HttpsClient::new(tls)
            .with_timeout(options.timeout)
            .with_max_body(options.max_body);
        JwksCache {
            inner: Arc::new(Inner {
                source,
                client,
                options,
                state: RwLock::new(State::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// How many HTTPS requests the cache has made (discovery and key set), for metrics
    /// and tests.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Number of usable keys currently cached.
    pub fn key_count(&self) -> usize {
        self.inner.read().keys.as_ref().map_or(0, |k| k.keys.len())
    }

    /// Fetches the key set now (subject to the rate limit) and returns the number of
    /// usable keys, e.g. to warm the cache at start-up.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let seen = self.inner.read().attempts;
        self.inner.refresh(seen).await;
        let (keys, _) = self.inner.usable()?;
        Ok(keys.keys.len())
    }

    /// The keys that may verify a token with `kid` and `alg`.
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Vec<DecodingKey>, AuthError> {
        let (set, generation) = self.fresh().await?;
        match set.select(kid, alg) {
            Selected::Found(k) => return Ok(k),
            Selected::Mismatch => return Err(mismatch(alg)),
            Selected::Missing => {}
        }
        // Unknown key: maybe the issuer rotated. One (rate-limited, shared) refresh.
        self.inner.refresh(generation).await;
        let (set, _) = self.inner.usable()?;
        match set.select(kid, alg) {
            Selected::Found(k) => Ok(k),
            Selected::Mismatch => Err(mismatch(alg)),
            Selected::Missing => Err(AuthError::UnknownKey),
        }
    }

    /// The current keys, fetching first when there are none and refreshing in the
    /// background when they are old.
    async fn fresh(&self) -> Result<(Arc<KeySet>, u64), AuthError> {
        let (usable, stale, generation) = {
            let st = self.inner.read();
            let age = st.fetched_at.map(|t| t.elapsed());
            let usable =
                st.keys.is_some() && age.is_some_and(|a| a <= self.inner.options.max_stale);
            let stale = age.is_none_or(|a| a >= self.inner.options.refresh_interval);
            (usable, stale, st.attempts)
        };
        if !usable {
            self.inner.refresh(generation).await;
        } else if stale && !self.inner.refreshing.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let inner = self.inner.clone();
                    rt.spawn(async move {
                        inner.refresh(generation).await;
                        inner.refreshing.store(false, Ordering::Release);
                    });
                }
                Err(_) => {
                    // Not on a Tokio runtime: refresh inline rather than panic.
                    self.inner.refresh(generation).await;
                    self.inner.refreshing.store(false, Ordering::Release);
                }
            }
        }
        self.inner.usable()
    }
}

fn mismatch(alg: JwsAlgorithm) -> AuthError {
    AuthError::AlgorithmRefused(format!("{alg} does not match the key's type or algorithm"))
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached keys if there are any that are not too old.
    fn usable(&self) -> Result<(Arc<KeySet>, u64), AuthError> {
        let st = self.read();
        match (&st.keys, st.fetched_at) {
            (Some(k), Some(t)) if t.elapsed() <= self.options.max_stale => {
                Ok((k.clone(), st.attempts))
            }
            _ => Err(AuthError::Unavailable(
                st.last_error
                    .clone()
                    .unwrap_or_else(|| "no signing keys".into()),
            )),
        }
    }

    /// Fetches the key set unless another task did since generation `seen` or the last
    /// attempt is too recent.
    async fn refresh(&self, seen: u64) {
        let _guard = self.fetch_lock.lock().await;
        {
            let st = self.read();
            if st.attempts != seen {
                return; // someone else fetched while we waited: use their result
            }
            if st
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.options.min_refresh_interval)
            {
                return;
            }
        }
        let result = self.fetch().await;
        let mut st = self.write();
        st.attempts += 1;
        st.last_attempt = Some(Instant::now());
        match result {
            Ok(set) => {
                tracing::debug!(keys = set.keys.len(), "JWKS refreshed");
                st.keys = Some(Arc::new(set));
                st.fetched_at = Some(Instant::now());
                st.last_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping previous keys");
                st.last_error = Some(e);
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let url = match &self.source {
            Source::Url(u) => u.clone(),
            Source::Discovery { issuer } => {
                let known = self.read().discovered_url.clone();
                match known {
                    Some(u) => u,
                    None => {
                        let u = self.discover(issuer).await?;
                        self.write().discovered_url = Some(u.clone());
                        u
                    }
                }
            }
        };
        let body = self.get(&url).await?;
        KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
    }

    async fn discover(&self, issuer: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
        if doc.issuer != issuer {
            return Err(format!(
                "{url}: names issuer {:?}, expected {issuer:?}",
                doc.issuer
            ));
        }
        if !doc.jwks_uri.starts_with("https://") {
            return Err(format!("{url}: jwks_uri is not an https:// URL"));
        }
        Ok(doc.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (status, body) = self
            .client
            .get(url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if status != http::StatusCode::OK {
            return Err(format!("{url}: HTTP status {status}"));
        }
        Ok(body)
    }
}
