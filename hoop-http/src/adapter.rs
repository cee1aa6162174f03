//! [`HttpAdapter`]: one client connection = one hoop session.
//!
//! ## Identity
//!
//! - With a client certificate (listener configured with a client CA), the certificate is
//!   the identity for the whole connection; `Authorization` headers are ignored (and
//!   never forwarded).
//! - Otherwise every request must carry `Authorization: Bearer <token>` (an OIDC JWT or a
//!   gateway token). The first request authenticates and authorizes the session. Later
//!   requests presenting the same token (compared by SHA-256) go on while the identity
//!   has not expired; a different token (or an expired identity) is authenticated again
//!   and must yield the same subject and groups, otherwise the request gets 401 and the
//!   client has to open a new connection for another identity.
//!
//! ## Per request
//!
//! Framing conflicts (`Content-Length` with `Transfer-Encoding`, several
//! `Content-Length`s) → 400; the path is normalised ([`crate::normalize_path`], 400 when
//! refused) and the normalised path is what is forwarded; the policy decides the
//! [`crate::command::command`]; deny → 403 JSON, review → held up to
//! `Services::approval_hold`, then 403 with the review id (an approval creates a grant
//! so the retried request passes). Allowed requests are sent to the target with the
//! headers rewritten ([`crate::headers::prepare_request`]), responses masked
//! ([`crate::body`]) and recorded: the request line with its decision
//! (`Event::Command`) before it is forwarded, and one `Event::CommandResult` when its
//! response ended (status, response and request body bytes, duration, masked values, and
//! an error when the body did not go out whole).
//!
//! ## Upgrades
//!
//! HTTP/1.1 `Upgrade` requests for WebSocket or SPDY (others, like `h2c`, get 400: an
//! `h2c` tunnel would carry requests past the policy) allowed by the policy are sent on a
//! dedicated target connection, never taken from or given back to the pool, whose TLS
//! offers only `http/1.1` by ALPN (so a target that also speaks `h2` agrees on HTTP/1.1);
//! on `101` both sides are upgraded and relayed byte for byte with
//! [`hoop_core::relay::relay`]; the opening and the end are recorded as notes.
//!
//! A WebSocket over HTTP/2 (RFC 8441: extended `CONNECT` with `:protocol websocket`) is
//! decided as the `GET` of its HTTP/1.1 form, and sent to the target as that HTTP/1.1
//! upgrade (with a fresh `Sec-WebSocket-Key`, whose answer is checked); on `101` the
//! client gets `200` and its stream is relayed to the upgraded target connection. The
//! WebSocket frames are the same on both sides. Any other `CONNECT` gets 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use hoop_core::sequence::{Authorized, Checked};
use hoop_core::tls::ClientTlsInfo;
use hoop_core::{Adapter, AuthError, ClientConn, Credential, Event, SessionCtx};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::body::{BodyKind, Coding, decode, mask_body};
use crate::command::command;
use crate::config::{HttpOptions, HttpTarget};
use crate::error::{BoxError, HttpError};
use crate::headers;
use crate::idle::{Activity, IdleIo};
use crate::normalize::normalize_path;
use crate::response::{Outcome, Recorded, empty, error_response, full};
use crate::route::{Route, canonical_host, route_for};
use crate::stream::{LineMasked, is_line_stream};
use crate::upstream::{self, Body, Pool, Sender};

/// The HTTP / Kubernetes-API adapter for one target.
///
/// ```no_run
/// use hoop_core::Resource;
/// use hoop_core::sequence::UpstreamSecurity;
/// use hoop_core::tls::{UpstreamTls, UpstreamTlsConfig, UpstreamRoots};
/// use hoop_http::{HttpAdapter, HttpOptions, HttpTarget, Secret, UpstreamCredential};
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = UpstreamTls::new(UpstreamTlsConfig {
///     roots: UpstreamRoots::CaFile("k8s-ca.pem".into()),
///     alpn: vec![b"http/1.1".to_vec()],
///     ..Default::default()
/// })?;
/// let target = HttpTarget::new(
///     Resource::new("prod-k8s", "kubernetes"),
///     "10.0.0.1:6443".parse()?,
///     UpstreamSecurity::Tls { tls, server_name: "kubernetes.default".into() },
/// )
/// .credential(UpstreamCredential::Bearer(Secret::File("/run/secrets/k8s-token".into())));
/// let adapter = HttpAdapter::new(target, HttpOptions::default());
/// # let _ = adapter; Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpAdapter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The first route's target (see [`HttpAdapter::target`]).
    first: HttpTarget,
    /// Never empty.
    routes: Vec<Route>,
    opts: HttpOptions,
}

impl HttpAdapter {
    /// An adapter serving `target` (whatever `Host` the requests name).
    pub fn new(target: HttpTarget, opts: HttpOptions) -> Self {
        HttpAdapter {
            inner: Arc::new(Inner {
                first: target.clone(),
                routes: vec![Route::new(0, Vec::new(), target)],
                opts,
            }),
        }
    }

    /// An adapter serving several targets behind one listener, each request going to
    /// the target one of whose host names is the request's `Host` (`:authority` in
    /// HTTP/2; compared without port, case and trailing dot). A request for another host
    /// gets `404` and reaches no target.
    ///
    /// A client connection is one session on one resource: once a request was
    /// authorized for a host's target, a request for another target on the same
    /// connection gets `421 Misdirected Request` (clients retry it on a new connection).
    ///
    /// Fails when no target is given, a target has no host name, or a host name is
    /// given twice.
    ///
    /// ```no_run
    /// # use hoop_core::Resource;
    /// # use hoop_core::sequence::UpstreamSecurity;
    /// # use hoop_core::tls::UpstreamTls;
    /// # use hoop_http::{HttpAdapter, HttpOptions, HttpTarget};
    /// # fn f(tls: UpstreamTls) -> Result<(), Box<dyn std::error::Error>> {
    /// let grafana = HttpTarget::new(
    ///     Resource::new("grafana", "http"),
    ///     "10.0.0.7:3000".parse()?,
    ///     UpstreamSecurity::Tls { tls: tls.clone(), server_name: "grafana.internal".into() },
    /// );
    /// let wiki = HttpTarget::new(
    ///     Resource::new("wiki", "http"),
    ///     "10.0.0.8:443".parse()?,
    ///     UpstreamSecurity::Tls { tls, server_name: "wiki.internal".into() },
    /// );
    /// let adapter = HttpAdapter::by_host(
    ///     [
    ///         (vec!["grafana.gw.example.com"], grafana),
    ///         (vec!["wiki.gw.example.com", "docs.gw.example.com"], wiki),
    ///     ],
    ///     HttpOptions::default(),
    /// )?;
    /// # let _ = adapter; Ok(()) }
    /// ```
    pub fn by_host<R, H, S>(routes: R, opts: HttpOptions) -> Result<Self, HttpError>
    where
        R: IntoIterator<Item = (H, HttpTarget)>,
        H: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut built: Vec<Route> = Vec::new();
        for (index, (hosts, target)) in routes.into_iter().enumerate() {
            let hosts: Vec<String> = hosts
                .into_iter()
                .map(|h| canonical_host(h.as_ref()))
                .collect();
            if hosts.is_empty() || hosts.iter().any(String::is_empty) {
                return Err(HttpError::Config(format!(
                    "target {:?} needs at least one (non-empty) host name",
                    target.resource.name
                )));
            }
            for h in &hosts {
                if built.iter().any(|r| r.hosts.contains(h))
                    || hosts.iter().filter(|x| *x == h).count() > 1
                {
                    return Err(HttpError::Config(format!("host name {h:?} given twice")));
                }
            }
            built.push(Route::new(index, hosts, target));
        }
        let Some(first) = built.first().map(|r| r.target.clone()) else {
            return Err(HttpError::Config(String::from("no target")));
        };
        Ok(HttpAdapter {
            inner: Arc::new(Inner {
                first,
                routes: built,
                opts,
            }),
        })
    }

    /// The target (with [`HttpAdapter::by_host`], the first one).
    pub fn target(&self) -> &HttpTarget {
        &self.inner.first
    }

    /// Every target, in the order given.
    pub fn targets(&self) -> impl Iterator<Item = &HttpTarget> {
        self.inner.routes.iter().map(|r| &r.target)
    }
}

#[async_trait]
impl Adapter for HttpAdapter {
    fn protocol(&self) -> &'static str {
        "http"
    }

    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> hoop_core::error::Result<()> {
        serve_session(self.inner.clone(), conn, ctx)
            .await
            .map_err(Into::into)
    }
}

/// The session once authenticated and authorized.
struct Established {
    auth: Arc<Authorized>,
    /// SHA-256 of the bearer token that last authenticated (none for certificates).
    token_hash: Option<[u8; 32]>,
    subject: String,
    groups: Vec<String>,
    expires_at: Option<SystemTime>,
    /// The route the session is authorized on (the only one its requests may use).
    route: usize,
    /// The session's connections to that route's target.
    pool: Arc<Pool>,
}

struct Session {
    inner: Arc<Inner>,
    ctx: SessionCtx,
    peer: SocketAddr,
    cert: Option<CertificateDer<'static>>,
    state: tokio::sync::Mutex<Option<Established>>,
    tasks: TaskTracker,
}

async fn serve_session(
    inner: Arc<Inner>,
    conn: ClientConn,
    ctx: SessionCtx,
) -> Result<(), HttpError> {
    let tls = ctx.tls.clone().ok_or(HttpError::NoTls)?;
    let stream = tokio::time::timeout(ctx.handshake_timeout, tls.accept(conn.stream))
        .await
        .map_err(|_| HttpError::Timeout("client TLS handshake"))?
        .map_err(|e| HttpError::Core(e.into()))?;
    let _ = stream.get_ref().0.set_nodelay(true);
    let info = ClientTlsInfo::of(&stream);
    let h2 = info.alpn.as_deref() == Some(b"h2");
    let session = Arc::new(Session {
        inner: inner.clone(),
        ctx: ctx.clone(),
        peer: conn.peer,
        cert: info.leaf().cloned(),
        state: tokio::sync::Mutex::new(None),
        tasks: TaskTracker::new(),
    });
    let svc = {
        let s = session.clone();
        service_fn(move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(s.handle(req).await) }
        })
    };
    // The upgraded connections are not counted: they have their own idle timeout in the
    // relay, and the HTTP connection has handed them over.
    let activity = Activity::new();
    let io = TokioIo::new(IdleIo::new(stream, activity.clone()));
    let cancel = &ctx.cancel;
    let idle = ctx.idle_timeout;
    let (result, idle_fired) = if h2 {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_header_list_size(u32::try_from(inner.opts.max_header_bytes).unwrap_or(u32::MAX))
            .serve_connection(io, svc);
        drive(
            pin!(conn),
            |c| c.graceful_shutdown(),
            cancel,
            &activity,
            idle,
        )
        .await
    } else {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(ctx.idle_timeout)
            .max_buf_size(inner.opts.max_header_bytes.max(8192))
            .max_header_size(inner.opts.max_header_bytes)
            .serve_connection(io, svc)
            .with_upgrades();
        drive(
            pin!(conn),
            |c| c.graceful_shutdown(),
            cancel,
            &activity,
            idle,
        )
        .await
    };
    // Upgraded connections outlive the HTTP connection: wait for their relays.
    session.tasks.close();
    session.tasks.wait().await;
    let reason = match &result {
        _ if ctx.cancel.is_cancelled() => String::from("cancelled"),
        _ if idle_fired => String::from("idle timeout"),
        // HTTP/1.1: the header read timeout between requests is the idle timeout.
        Err(e) if e.is_timeout() => String::from("idle timeout"),
        Ok(()) => String::from("client closed"),
        Err(e) if e.is_incomplete_message() || e.is_canceled() => String::from("client closed"),
        Err(e) => format!("error: {e}"),
    };
    // Closing an idle connection is not an error, however the client took it.
    let result = if idle_fired { Ok(()) } else { result };
    let established = session.state.lock().await.take();
    drop(session);
    if let Some(est) = established {
        // Response bodies still being dropped by HTTP/2 stream tasks hold the token for
        // a moment after the connection ended.
        let mut auth = est.auth;
        for _ in 0..50 {
            match Arc::try_unwrap(auth) {
                Ok(a) => {
                    if let Err(e) = a.finish(&reason).await {
                        warn!(error = %e, "recording could not be finished");
                    }
                    return finish_result(result);
                }
                Err(shared) => {
                    auth = shared;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        warn!("session state still shared at its end; recording its end only");
        let _ = auth.record(Event::End { reason });
    }
    finish_result(result)
}

fn finish_result(result: Result<(), hyper::Error>) -> Result<(), HttpError> {
    match result {
        Ok(()) => Ok(()),
        // A client that goes away mid-request is not a gateway error.
        Err(e) if e.is_incomplete_message() || e.is_canceled() || e.is_timeout() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn unauthorized(reason: &str) -> Response<Body> {
    error_response(StatusCode::UNAUTHORIZED, "unauthorized", reason, None)
}

/// The answer to a credential that was not accepted: 401, or 503 when the gateway could
/// not check it (the identity provider's keys cannot be fetched): the client is not at
/// fault and may retry; nothing is let through either way.
fn auth_refused(e: &AuthError) -> Response<Body> {
    match e {
        AuthError::Unavailable(_) => {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "identity_unavailable",
                &e.to_string(),
                None,
            );
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            r
        }
        _ => unauthorized(&e.to_string()),
    }
}

fn forbidden(reason: &str, review_id: Option<&str>) -> Response<Body> {
    error_response(StatusCode::FORBIDDEN, "forbidden", reason, review_id)
}

fn bad_gateway(reason: &str) -> Response<Body> {
    error_response(StatusCode::BAD_GATEWAY, "bad_gateway", reason, None)
}

impl Session {
    /// The session's proof token, authenticating / authorizing as needed (see the module
    /// documentation for the rules).
    async fn authorized(
        &self,
        headers: &HeaderMap,
        route: &Route,
        route_index: usize,
    ) -> Result<(Arc<Authorized>, Arc<Pool>), Response<Body>> {
        let mut state = self.state.lock().await;
        let token = if self.cert.is_some() {
            None
        } else {
            headers::bearer(headers)
        };
        if let Some(est) = state.as_mut() {
            if est.route != route_index {
                return Err(error_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "misdirected_request",
                    "this connection serves another host: open a new connection",
                    None,
                ));
            }
            let bound = (est.auth.clone(), est.pool.clone());
            if self.cert.is_some() {
                return Ok(bound);
            }
            let Some(token) = token else {
                return Err(unauthorized("a bearer token is required on every request"));
            };
            let hash = token_hash(token);
            let live = est.expires_at.is_none_or(|t| SystemTime::now() < t);
            if est.token_hash == Some(hash) && live {
                return Ok(bound);
            }
            let authn = self
                .ctx
                .authenticate(&Credential::Bearer(token))
                .await
                .map_err(|e| auth_refused(&e))?;
            let id = authn.identity();
            if id.subject != est.subject || id.groups != est.groups {
                return Err(unauthorized(
                    "another identity on this connection: open a new connection",
                ));
            }
            est.token_hash = Some(hash);
            est.expires_at = id.expires_at;
            // The connection is now carried by this token: it ends when this one expires
            // (with `Services::end_at_credential_expiry`).
            est.auth.credential_renewed(id.expires_at);
            return Ok(bound);
        }
        let authn = match (&self.cert, token) {
            (Some(cert), _) => self
                .ctx
                .authenticate(&Credential::ClientCertificate(cert))
                .await
                .map_err(|e| auth_refused(&e))?,
            (None, Some(t)) => self
                .ctx
                .authenticate(&Credential::Bearer(t))
                .await
                .map_err(|e| auth_refused(&e))?,
            (None, None) => return Err(unauthorized("a bearer token is required")),
        };
        let id = authn.identity();
        let (subject, groups, expires_at) = (id.subject.clone(), id.groups.clone(), id.expires_at);
        let auth = self
            .ctx
            .authorize(authn, route.target.resource.clone(), "http")
            .await
            .map_err(|e| forbidden(&e.to_string(), None))?;
        let auth = Arc::new(auth);
        let pool = Arc::new(Pool::new(
            self.inner.opts.max_upstream_conns,
            route.key.clone(),
        ));
        *state = Some(Established {
            auth: auth.clone(),
            token_hash: token.map(token_hash),
            subject,
            groups,
            expires_at,
            route: route_index,
            pool: pool.clone(),
        });
        Ok((auth, pool))
    }

    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        if headers::framing_conflict(req.headers()) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "conflicting Content-Length / Transfer-Encoding",
                None,
            );
        }
        // RFC 8441: a WebSocket over an HTTP/2 stream (extended CONNECT) is relayed as an
        // HTTP/1.1 upgrade toward the target. Any other CONNECT would open a tunnel past
        // the per-request policy: refused.
        let ws_over_h2 = req.method() == Method::CONNECT;
        if ws_over_h2
            && !(req.version() == Version::HTTP_2
                && req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")))
        {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "CONNECT tunnels are not relayed (only WebSocket over HTTP/2)",
                None,
            );
        }
        let path = match normalize_path(req.uri().path()) {
            Ok(p) => p.into_owned(),
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &e.to_string(),
                    None,
                );
            }
        };
        let h1_upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
        let upgrade = h1_upgrade || ws_over_h2;
        if h1_upgrade && !headers::upgrade_allowed(req.headers()) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "only websocket and SPDY upgrades are relayed",
                None,
            );
        }
        let inner = self.inner.clone();
        let found = route_for(&inner.routes, &req)
            .ok()
            .and_then(|i| Some((i, inner.routes.get(i)?)));
        let Some((route_index, route)) = found else {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no resource is served at this host name",
                None,
            );
        };
        let query = req.uri().query().map(str::to_owned);
        let (auth, pool) = match self.authorized(req.headers(), route, route_index).await {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        // The policy sees a WebSocket over HTTP/2 as the `GET` an HTTP/1.1 client sends.
        let method = if ws_over_h2 {
            Method::GET
        } else {
            req.method().clone()
        };
        let cmd = command(&route.target.resource, &method, &path, query.as_deref());
        let watch = cmd.verb == "watch";
        let head = method == Method::HEAD;
        match auth.check(cmd).await {
            Ok(Checked::Allowed) => {}
            Ok(Checked::Denied { reason }) => return forbidden(&reason, None),
            Ok(Checked::Pending(p)) => {
                let id = p.id.clone();
                info!(review = %id, "request held for review");
                match auth.await_review(p).await {
                    Ok(None) => {}
                    Ok(Some(reason)) => return forbidden(&reason, Some(&id)),
                    Err(e) => return self.recording_failed(&e),
                }
            }
            Err(e) => return self.recording_failed(&e),
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let masking = !self.ctx.services.masker.is_noop();
        let (mut parts, body) = req.into_parts();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let credential = match route.credential.as_ref().map(|c| c.header()).transpose() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "the upstream credential could not be read");
                return bad_gateway(&e);
            }
        };
        if let Err(e) = headers::prepare_request_with(
            &mut parts.headers,
            &route.target,
            self.peer,
            h1_upgrade,
            masking,
            credential,
        ) {
            warn!(error = %e, "request headers could not be prepared");
            return bad_gateway(&e);
        }
        let ws_accept = if ws_over_h2 {
            match websocket_upgrade_headers(&mut parts.headers) {
                Ok(accept) => Some(accept),
                Err(e) => return bad_gateway(&e),
            }
        } else {
            None
        };
        let path_and_query = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let outgoing = OutgoingParts {
            method,
            headers: parts.headers,
            path_and_query,
            body: {
                let counter = bytes_in.clone();
                let credential = route.credential_header.clone();
                body.map_frame(move |mut f| {
                    if let Some(d) = f.data_ref() {
                        counter.fetch_add(d.len() as u64, Ordering::Relaxed);
                    } else if let Some(t) = f.trailers_mut() {
                        headers::clean_request_trailers(t, credential.as_ref());
                    }
                    f
                })
                .map_err(BoxError::from)
                .boxed_unsync()
            },
        };
        let result = match client_upgrade {
            Some(on_client) => {
                self.forward_upgrade(&auth, route, outgoing, on_client, ws_accept)
                    .await
            }
            None => self.forward(&auth, route, &pool, outgoing).await,
        };
        match result {
            Ok((resp, give_back)) => {
                let req = ForwardedRequest {
                    bytes_in,
                    started,
                    head,
                    watch,
                };
                self.finish_response(auth, route, &pool, resp, give_back, req)
                    .await
            }
            Err(e) => {
                let msg = e.to_string();
                warn!(error = %msg, "request could not be forwarded");
                let _ = auth.record(Event::CommandResult {
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
                    rows: None,
                    masked_fields: 0,
                    error: Some(msg.clone()),
                    status: Some(502),
                    bytes_in: None,
                });
                bad_gateway(&msg)
            }
        }
    }

    fn recording_failed(&self, e: &hoop_core::recording::RecordError) -> Response<Body> {
        warn!(error = %e, "recording failed: ending the session");
        self.ctx.cancel.cancel();
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the session could not be recorded",
            None,
        )
    }

    fn build_request(
        &self,
        target: &HttpTarget,
        sender: &Sender,
        out: OutgoingParts,
    ) -> Result<Request<Body>, HttpError> {
        let mut builder = Request::builder().method(out.method);
        let mut headers = out.headers;
        if sender.is_h2() {
            let scheme = match target.security {
                hoop_core::sequence::UpstreamSecurity::PlaintextOptIn => "http",
                _ => "https",
            };
            builder = builder
                .uri(format!(
                    "{scheme}://{}{}",
                    target.authority, out.path_and_query
                ))
                .version(Version::HTTP_2);
            headers.remove(header::HOST);
        } else {
            builder = builder.uri(out.path_and_query).version(Version::HTTP_11);
        }
        let mut req = builder
            .body(out.body)
            .map_err(|e| HttpError::Upstream(format!("request: {e}")))?;
        *req.headers_mut() = headers;
        Ok(req)
    }

    async fn forward(
        &self,
        auth: &Authorized,
        route: &Route,
        pool: &Pool,
        out: OutgoingParts,
    ) -> Result<(Response<Incoming>, Option<Sender>), HttpError> {
        let mut sender = tokio::time::timeout(
            self.inner.opts.upstream_timeout,
            pool.get(auth, &route.target, &route.key),
        )
        .await
        .map_err(|_| HttpError::Timeout("a free upstream connection"))??;
        let req = self.build_request(&route.target, &sender, out)?;
        let resp = tokio::time::timeout(self.inner.opts.upstream_timeout, sender.send(req))
            .await
            .map_err(|_| HttpError::Timeout("upstream response"))??;
        Ok(match sender {
            Sender::H2(_) => {
                pool.put(sender);
                (resp, None)
            }
            Sender::H1(..) => (resp, Some(sender)),
        })
    }

    /// Sends an upgrade request on a new HTTP/1.1-only target connection (never pooled);
    /// on `101` both sides are relayed. `ws_accept` is set for a WebSocket over HTTP/2
    /// (RFC 8441): the `Sec-WebSocket-Accept` the target must answer with, and the client
    /// gets `200` instead of `101`.
    async fn forward_upgrade(
        &self,
        auth: &Arc<Authorized>,
        route: &Route,
        out: OutgoingParts,
        on_client: hyper::upgrade::OnUpgrade,
        ws_accept: Option<HeaderValue>,
    ) -> Result<(Response<Incoming>, Option<Sender>), HttpError> {
        let mut sender = upstream::connect(auth, &route.target, &route.upgrade_security).await?;
        if sender.is_h2() {
            return Err(HttpError::Upstream(String::from(
                "the target chose HTTP/2, which cannot upgrade: offer only http/1.1 by ALPN",
            )));
        }
        let protocol = out
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let req = self.build_request(&route.target, &sender, out)?;
        let mut resp = tokio::time::timeout(self.inner.opts.upstream_timeout, sender.send(req))
            .await
            .map_err(|_| HttpError::Timeout("upstream response"))??;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok((resp, None));
        }
        let detail = match &ws_accept {
            Some(expected) => {
                if resp.headers().get(header::SEC_WEBSOCKET_ACCEPT) != Some(expected) {
                    return Err(HttpError::Upstream(String::from(
                        "the target's WebSocket handshake answer does not match its key",
                    )));
                }
                // RFC 8441 §5: the client's stream is the tunnel once it got a 2xx.
                *resp.status_mut() = StatusCode::OK;
                resp.headers_mut().remove(header::SEC_WEBSOCKET_ACCEPT);
                resp.extensions_mut().insert(Tunnel);
                serde_json::json!({ "protocol": protocol, "client": "h2" })
            }
            None => serde_json::json!({ "protocol": protocol }),
        };
        let on_upstream = hyper::upgrade::on(&mut resp);
        auth.record(Event::Note {
            kind: String::from("upgrade_open"),
            detail,
        })
        .map_err(|e| HttpError::Core(e.into()))?;
        let auth = auth.clone();
        let idle = self.ctx.idle_timeout;
        let cancel = self.ctx.cancel.clone();
        self.tasks.spawn(async move {
            let (c, u) = tokio::join!(on_client, on_upstream);
            let (c, u) = match (c, u) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    let msg = format!(
                        "upgrade failed (client: {:?}, upstream: {:?})",
                        c.err().map(|e| e.to_string()),
                        u.err().map(|e| e.to_string())
                    );
                    let _ = auth.record(Event::Error { message: msg });
                    return;
                }
            };
            let stats =
                hoop_core::relay::relay(TokioIo::new(c), TokioIo::new(u), idle, &cancel).await;
            debug!(?stats, "upgraded connection ended");
            let _ = auth.record(Event::Note {
                kind: String::from("upgrade_close"),
                detail: serde_json::json!({
                    "protocol": protocol,
                    "bytes_up": stats.bytes_up,
                    "bytes_down": stats.bytes_down,
                    "end": stats.end.to_string(),
                }),
            });
        });
        drop(sender);
        Ok((resp, None))
    }

    async fn finish_response(
        &self,
        auth: Arc<Authorized>,
        route: &Route,
        pool: &Arc<Pool>,
        resp: Response<Incoming>,
        give_back: Option<Sender>,
        req: ForwardedRequest,
    ) -> Response<Body> {
        let ForwardedRequest {
            bytes_in,
            started,
            head,
            watch,
        } = req;
        let (mut parts, body) = resp.into_parts();
        let tunnel = parts.extensions.remove::<Tunnel>().is_some();
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        headers::prepare_response(&mut parts.headers, switching);
        let mut outcome = Outcome {
            auth: auth.clone(),
            started,
            status: parts.status.as_u16(),
            masked: 0,
            masked_live: None,
            bytes_in,
            give_back: give_back.map(|s| (pool.clone(), s)),
        };
        if switching || tunnel {
            parts.headers.remove(header::CONTENT_LENGTH);
            outcome.record(0, true);
            return Response::from_parts(parts, empty());
        }
        let no_body = head
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let body = if no_body {
            body.map_err(BoxError::from).boxed_unsync()
        } else {
            match self
                .mask(&auth, &route.target, &mut parts.headers, body, watch)
                .await
            {
                Ok((b, Masked::Count(n))) => {
                    outcome.masked = n;
                    b
                }
                Ok((b, Masked::Live(n))) => {
                    outcome.masked_live = Some(n);
                    b
                }
                Err(e) => {
                    let msg = e.to_string();
                    warn!(error = %msg, "response refused");
                    let _ = auth.record(Event::Error {
                        message: msg.clone(),
                    });
                    outcome.status = StatusCode::BAD_GATEWAY.as_u16();
                    outcome.give_back = None;
                    outcome.record(0, false);
                    return bad_gateway(&msg);
                }
            }
        };
        Response::from_parts(parts, Recorded::new(body, outcome).boxed_unsync())
    }

    /// Masks a response body (buffered up to the target's limit), or passes it on
    /// untouched when there is nothing to mask.
    async fn mask(
        &self,
        auth: &Authorized,
        target: &HttpTarget,
        headers: &mut HeaderMap,
        mut body: Incoming,
        watch: bool,
    ) -> Result<(Body, Masked), HttpError> {
        let masker = self.ctx.services.masker.clone();
        if masker.is_noop() {
            return Ok((
                body.map_err(BoxError::from).boxed_unsync(),
                Masked::Count(0),
            ));
        }
        let limit = target.max_body;
        let coding = Coding::of(headers);
        if let Some(json) = is_line_stream(headers, watch) {
            if coding != Some(Coding::Identity) {
                return Err(HttpError::Body(String::from(
                    "a compressed stream cannot be inspected for masking",
                )));
            }
            headers.remove(header::CONTENT_LENGTH);
            let count = Arc::new(AtomicU64::new(0));
            let b = LineMasked::new(body, masker, json, limit, count.clone());
            return Ok((b.boxed_unsync(), Masked::Live(count)));
        }
        let kind = BodyKind::of(headers);
        if kind == BodyKind::Sealed {
            return Err(HttpError::Body(String::from(
                "the response's content type cannot be inspected for masking (ask for JSON)",
            )));
        }
        if kind == BodyKind::Opaque {
            return Ok((
                body.map_err(BoxError::from).boxed_unsync(),
                Masked::Count(0),
            ));
        }
        let Some(coding) = coding else {
            return Err(HttpError::Body(String::from(
                "the response's content coding cannot be inspected for masking",
            )));
        };
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut trailers: Option<HeaderMap> = None;
        if announced.is_some_and(|n| n > limit as u64) {
            return self.over_limit(auth, target, Bytes::new(), body);
        }
        // An announced length is allocated at once, so the body is not copied again each
        // time the buffer grows; up to 1 MiB only, so that a length announced but never
        // sent does not hold memory.
        let mut buf = BytesMut::with_capacity(
            announced
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
                .min(1 << 20),
        );
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        return self.over_limit(auth, target, buf.freeze(), body);
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.get_or_insert_with(HeaderMap::new).extend(t);
                    }
                }
            }
        }
        let raw = buf.freeze();
        let decoded = decode(&raw, coding, limit).map_err(HttpError::Body)?;
        let (out, n) = match mask_body(masker.as_ref(), kind, &decoded).map_err(HttpError::Body)? {
            None => (raw, 0),
            Some((masked, n)) => {
                headers.remove(header::CONTENT_ENCODING);
                headers.remove(header::ETAG);
                (masked, n)
            }
        };
        match trailers {
            None => {
                if n > 0 || announced != u64::try_from(out.len()).ok() {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
                }
                Ok((full(out), Masked::Count(n)))
            }
            // Trailers need a body of unannounced length (chunked toward an HTTP/1.1
            // client, which only gets them when it asked with `TE: trailers`).
            Some(t) => {
                headers.remove(header::CONTENT_LENGTH);
                Ok((with_trailers(out, t), Masked::Count(n)))
            }
        }
    }

    fn over_limit(
        &self,
        auth: &Authorized,
        target: &HttpTarget,
        prefix: Bytes,
        rest: Incoming,
    ) -> Result<(Body, Masked), HttpError> {
        let limit = target.max_body;
        if !target.passthrough_over_limit {
            return Err(HttpError::Body(format!(
                "the response body is larger than the masking limit of {limit} bytes"
            )));
        }
        auth.record(Event::Note {
            kind: String::from("mask_passthrough"),
            detail: serde_json::json!({ "limit": limit }),
        })
        .map_err(|e| HttpError::Core(e.into()))?;
        let first =
            futures_util::stream::once(async move { Ok::<_, BoxError>(Frame::data(prefix)) });
        let rest = TryStreamExt::map_err(BodyStream::new(rest), BoxError::from);
        Ok((
            StreamBody::new(first.chain(rest)).boxed_unsync(),
            Masked::Count(0),
        ))
    }
}

/// Drives a client connection (HTTP/1.1 or HTTP/2, `shutdown` starting its graceful
/// shutdown) until it ends; when the session is cancelled, shuts it down and gives it a
/// few seconds; when no byte moved for `idle`, stops taking requests and lets the ones in
/// flight (a quiet watch) go on to their end. Returns the connection's result and whether
/// the idle timeout fired.
async fn drive<C>(
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    cancel: &CancellationToken,
    activity: &Activity,
    idle: Duration,
) -> (hyper::Result<()>, bool)
where
    C: Future<Output = hyper::Result<()>>,
{
    const GRACE: Duration = Duration::from_secs(5);
    tokio::select! {
        r = conn.as_mut() => (r, false),
        () = cancel.cancelled() => {
            shutdown(conn.as_mut());
            (tokio::time::timeout(GRACE, conn).await.unwrap_or(Ok(())), false)
        }
        () = activity.idle(idle) => {
            debug!("client connection idle: closing");
            shutdown(conn.as_mut());
            let r = tokio::select! {
                r = conn.as_mut() => r,
                () = cancel.cancelled() => Ok(()),
            };
            (r, true)
        }
    }
}

/// What the response recording needs to know about its request.
struct ForwardedRequest {
    bytes_in: Arc<AtomicU64>,
    started: Instant,
    /// A `HEAD` request: its response has no body.
    head: bool,
    watch: bool,
}

/// How many values a body had masked: known now, or counted as it streams.
enum Masked {
    Count(u64),
    Live(Arc<AtomicU64>),
}

/// A body of `data` followed by `trailers`, of unannounced length.
fn with_trailers(data: Bytes, trailers: HeaderMap) -> Body {
    let frames = [
        Ok::<_, BoxError>(Frame::data(data)),
        Ok(Frame::trailers(trailers)),
    ];
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// Marks a target's `101` turned into the `200` that opens an RFC 8441 tunnel.
#[derive(Clone, Copy, Debug)]
struct Tunnel;

/// Turns the headers of a WebSocket over HTTP/2 request into those of the HTTP/1.1
/// upgrade sent to the target (`Upgrade`, `Connection`, a fresh `Sec-WebSocket-Key`; the
/// client's version, subprotocols and extensions go as they are). Returns the
/// `Sec-WebSocket-Accept` the target must answer with.
fn websocket_upgrade_headers(headers: &mut HeaderMap) -> Result<HeaderValue, String> {
    use base64::Engine;
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| String::from("no random source"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let accept = websocket_accept(key.as_bytes());
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).map_err(|e| e.to_string())?,
    );
    if !headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    HeaderValue::from_str(&accept).map_err(|e| e.to_string())
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// A request on its way to the target, before its URI form is chosen.
struct OutgoingParts {
    method: Method,
    headers: HeaderMap,
    path_and_query: String,
    body: Body,
}
