//! Which target a request is for: the single target of an adapter made with
//! [`HttpAdapter::new`](crate::HttpAdapter::new), or the one whose host names match the
//! request's `Host` (`:authority`) with [`HttpAdapter::by_host`](crate::HttpAdapter::by_host).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hoop_core::sequence::UpstreamSecurity;
use http::Request;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;

use crate::config::{HttpTarget, UpstreamCredential};
use crate::headers;
use crate::upstream::{self, PoolKey};

/// One target and what is derived from it once.
#[derive(Debug)]
pub(crate) struct Route {
    /// Host names routed here (lower case, without port or trailing dot); empty: every
    /// request (an adapter with one target).
    pub hosts: Vec<String>,
    pub target: HttpTarget,
    /// The target's security offering only `http/1.1` by ALPN, for upgrades.
    pub upgrade_security: UpstreamSecurity,
    /// What a pooled connection to this target must have been opened with.
    pub key: PoolKey,
    /// The header carrying the injected credential, when it is not `Authorization`.
    pub credential_header: Option<HeaderName>,
    /// The injected credential, read from its source at most once per
    /// [`CREDENTIAL_REFRESH`].
    pub credential: Option<CredentialCache>,
}

/// How long an injected credential read from its source (a file, the environment) is
/// used before it is read again: a rotated secret is picked up within this time, and a
/// request costs no file read.
pub(crate) const CREDENTIAL_REFRESH: Duration = Duration::from_secs(1);

/// The header of an injected credential, as last read from its source.
#[derive(Debug)]
pub(crate) struct CredentialCache {
    credential: UpstreamCredential,
    last: Mutex<Option<(Instant, HeaderName, HeaderValue)>>,
}

impl CredentialCache {
    fn new(credential: UpstreamCredential) -> Self {
        CredentialCache {
            credential,
            last: Mutex::new(None),
        }
    }

    /// The header to inject: the one read less than [`CREDENTIAL_REFRESH`] ago, or a
    /// fresh read. A failed read is not cached (the request fails, the next one reads
    /// again).
    pub(crate) fn header(&self) -> Result<(HeaderName, HeaderValue), String> {
        self.header_at(Instant::now())
    }

    /// [`header`](Self::header) at the instant `now`.
    fn header_at(&self, now: Instant) -> Result<(HeaderName, HeaderValue), String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, name, value)) = last.as_ref()
            && now.saturating_duration_since(*at) < CREDENTIAL_REFRESH
        {
            return Ok((name.clone(), value.clone()));
        }
        let (name, value) = headers::credential_header(&self.credential)?;
        *last = Some((now, name.clone(), value.clone()));
        Ok((name, value))
    }
}

impl Route {
    pub(crate) fn new(index: usize, hosts: Vec<String>, target: HttpTarget) -> Route {
        let credential_header = match &target.credential {
            Some(UpstreamCredential::Header { name, .. }) => {
                HeaderName::from_bytes(name.as_bytes()).ok()
            }
            _ => None,
        };
        Route {
            credential_header,
            credential: target.credential.clone().map(CredentialCache::new),
            hosts,
            upgrade_security: upstream::http1_only(&target.security),
            key: PoolKey::of(index, &target),
            target,
        }
    }
}

/// A configured host name as it is compared: lower case, no trailing dot.
pub(crate) fn canonical_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Why a request has no route.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoRoute {
    /// Neither an authority in the request target nor a usable `Host` header.
    NoHost,
    /// No target serves this host.
    Unknown,
}

/// The index of the route serving `req`. The authority of the request target wins over
/// the `Host` header (RFC 9112 §3.2.2; HTTP/2's `:authority` is the URI's authority).
pub(crate) fn route_for<B>(routes: &[Route], req: &Request<B>) -> Result<usize, NoRoute> {
    if let [only] = routes
        && only.hosts.is_empty()
    {
        return Ok(0);
    }
    let from_header;
    let authority = match req.uri().authority() {
        Some(a) => a,
        None => {
            let v = req
                .headers()
                .get(header::HOST)
                .ok_or(NoRoute::NoHost)?
                .as_bytes();
            from_header = Authority::try_from(v).map_err(|_| NoRoute::NoHost)?;
            &from_header
        }
    };
    let host = authority.host();
    let host = host.strip_suffix('.').unwrap_or(host);
    routes
        .iter()
        .position(|r| r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
        .ok_or(NoRoute::Unknown)
}

#[cfg(test)]
mod tests {
    use super::CredentialCache;
    use crate::config::{Secret, UpstreamCredential};
    use std::time::{Duration, Instant};

    /// A file secret is read once per refresh period, and a rotated one is picked up
    /// after it; a failed read is not cached.
    #[test]
    fn credential_read_at_most_once_per_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let cache = CredentialCache::new(UpstreamCredential::Bearer(Secret::File(path.clone())));
        let t0 = Instant::now();
        let value =
            |c: &CredentialCache, t| c.header_at(t).map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(value(&cache, t0).unwrap(), "Bearer first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(
            value(&cache, t0 + Duration::from_millis(500)).unwrap(),
            "Bearer first"
        );
        assert_eq!(
            value(&cache, t0 + Duration::from_millis(1500)).unwrap(),
            "Bearer second"
        );
        std::fs::remove_file(&path).unwrap();
        let later = t0 + Duration::from_secs(3);
        assert!(
            value(&cache, later)
                .unwrap_err()
                .contains("cannot read secret file")
        );
        std::fs::write(&path, "third\n").unwrap();
        assert_eq!(value(&cache, later).unwrap(), "Bearer third");
    }

    use super::*;
    use hoop_core::Resource;

    fn routes() -> Vec<Route> {
        let t = |name: &str| {
            HttpTarget::new(
                Resource::new(name, "http"),
                "127.0.0.1:1".parse().unwrap(),
                UpstreamSecurity::PlaintextOptIn,
            )
        };
        vec![
            Route::new(0, vec!["a.example".into(), "www.a.example".into()], t("a")),
            Route::new(1, vec![canonical_host("B.Example.")], t("b")),
        ]
    }

    fn req(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_choose_the_route() {
        let r = routes();
        assert_eq!(route_for(&r, &req("/", Some("a.example"))), Ok(0));
        assert_eq!(route_for(&r, &req("/", Some("WWW.A.example:8443"))), Ok(0));
        assert_eq!(route_for(&r, &req("/", Some("b.example."))), Ok(1));
        assert_eq!(route_for(&r, &req("https://b.example/x", None)), Ok(1));
        // The request target's authority wins over the Host header.
        assert_eq!(
            route_for(&r, &req("https://b.example/x", Some("a.example"))),
            Ok(1)
        );
        assert_eq!(
            route_for(&r, &req("/", Some("c.example"))),
            Err(NoRoute::Unknown)
        );
        assert_eq!(
            route_for(&r, &req("/", Some("a.example.evil"))),
            Err(NoRoute::Unknown)
        );
        assert_eq!(route_for(&r, &req("/", None)), Err(NoRoute::NoHost));
        assert_eq!(route_for(&r, &req("/", Some("a b"))), Err(NoRoute::NoHost));
    }

    #[test]
    fn a_single_target_takes_every_host() {
        let r = vec![Route::new(
            0,
            Vec::new(),
            HttpTarget::new(
                Resource::new("a", "http"),
                "127.0.0.1:1".parse().unwrap(),
                UpstreamSecurity::PlaintextOptIn,
            ),
        )];
        assert_eq!(route_for(&r, &req("/", None)), Ok(0));
        assert_eq!(route_for(&r, &req("/", Some("anything"))), Ok(0));
    }
}
