//! The admin API: its own TLS listener (hyper 1, HTTP/1.1), callers authenticated by an
//! admin token (checked against stored SHA-256 hashes) or a client certificate.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /healthz` | liveness, no authentication |
//! | `GET /readyz` | readiness (503 while draining), no authentication |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/reviews` | pending reviews |
//! | `POST /v1/reviews/{id}/approve` | approve; body `{"reason": "..."}` (optional) |
//! | `POST /v1/reviews/{id}/reject` | reject; body `{"reason": "..."}` |
//! | `GET /v1/sessions` | live and recent sessions |
//! | `DELETE /v1/sessions/{id}` | end a live session |
//! | `GET /v1/sessions/{id}/recording` | the session's JSONL recording |
//! | `POST /v1/reload` | what SIGHUP does ([`super::Reloader::reload`]); 200, or 422 when a part did not reload (it stays as it was) |
//!
//! The reviewer of an approval is the caller: a requester never approves their own
//! request (403).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hoop_core::approval::{ApprovalError, InMemoryGate};
use hoop_core::auth::{CertSubjectSource, ClientCertAuthenticator, StaticTokenAuthenticator};
use hoop_core::server::SessionRegistry;
use hoop_core::tls::{ClientTlsInfo, ServerTls};
use hoop_core::{Identity, SessionId};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::Metrics;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Admin connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;
/// Time a client gets for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may call the admin API.
pub struct AdminAuth {
    /// Admin tokens (hashes) and the subject each stands for.
    pub tokens: StaticTokenAuthenticator,
    /// Set when the admin listener requires client certificates: their CN is the caller.
    pub certs: Option<ClientCertAuthenticator>,
}

impl AdminAuth {
    /// Tokens only.
    pub fn tokens(tokens: StaticTokenAuthenticator) -> Self {
        AdminAuth {
            tokens,
            certs: None,
        }
    }

    /// Also accepts client certificates (subject from the CN).
    pub fn with_client_certificates(mut self) -> Self {
        self.certs = Some(ClientCertAuthenticator::new(CertSubjectSource::CommonName));
        self
    }
}

/// What the admin API serves.
pub struct AdminState {
    /// The approval gate.
    pub gate: InMemoryGate,
    /// The server's sessions.
    pub registry: SessionRegistry,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Directory of `<session>.jsonl` recordings.
    pub recordings: PathBuf,
    /// Callers.
    pub auth: AdminAuth,
    /// Set while the gateway drains (readyz answers 503).
    pub draining: AtomicBool,
    /// What `POST /v1/reload` runs.
    pub reloader: Arc<super::Reloader>,
}

/// Serves the admin API on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    state: Arc<AdminState>,
    stop: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "admin API: too many connections; closing");
            continue;
        };
        let tls = tls.clone();
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "admin API: TLS refused");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "admin API: TLS handshake timed out");
                    return;
                }
            };
            let cert = ClientTlsInfo::of(&stream).leaf().cloned();
            let cert = Arc::new(cert);
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let cert = cert.clone();
                async move {
                    Ok::<_, Infallible>(handle(&state, cert.as_ref().as_ref(), peer, req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!(%peer, error = %e, "admin API connection ended") },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Resp {
    json(status, &serde_json::json!({ "error": message }))
}

async fn caller(
    state: &AdminState,
    cert: Option<&CertificateDer<'static>>,
    req: &Request<Incoming>,
) -> Option<Identity> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let token = v.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        return state.auth.tokens.verify(token).ok();
    }
    match (&state.auth.certs, cert) {
        (Some(a), Some(c)) => a.verify(c).ok(),
        _ => None,
    }
}

async fn handle(
    state: &AdminState,
    cert: Option<&CertificateDer<'static>>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            return if state.draining.load(Ordering::Relaxed) {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            } else {
                respond(StatusCode::OK, "text/plain", "ready\n")
            };
        }
        _ => {}
    }
    let Some(who) = caller(state, cert, &req).await else {
        info!(%peer, %method, path, "admin API: unauthenticated request refused");
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "admin token or client certificate required",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(&state.registry),
        ),
        (&Method::GET, ["v1", "reviews"]) => {
            let pending = state.gate.list_pending();
            json(StatusCode::OK, &serde_json::json!({ "reviews": pending }))
        }
        (&Method::POST, ["v1", "reviews", id, verb @ ("approve" | "reject")]) => {
            let reason = match read_reason(req).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            decide(state, &who, id, verb, reason.as_deref())
        }
        (&Method::POST, ["v1", "reload"]) => {
            info!(by = %who.subject, "reload requested from the admin API");
            // Files are read (configuration, certificates, tokens): off the event loop.
            let reloader = state.reloader.clone();
            let Ok(report) = tokio::task::spawn_blocking(move || reloader.reload()).await else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the reload did not finish",
                );
            };
            let status = if report.is_complete() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            json(status, &report.to_json())
        }
        (&Method::GET, ["v1", "sessions"]) => json(
            StatusCode::OK,
            &serde_json::json!({
                "live": state.registry.live(),
                "recent": state.registry.recent(),
            }),
        ),
        (&Method::DELETE, ["v1", "sessions", id]) => {
            let Some(id) = SessionId::parse(id) else {
                return error(StatusCode::BAD_REQUEST, "invalid session id");
            };
            if state.registry.kill(id) {
                info!(session = %id, by = %who.subject, "session ended from the admin API");
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "session": id.to_string(), "ended": true, "by": who.subject }),
                )
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "no live session with this id (or it is already ending)",
                )
            }
        }
        (&Method::GET, ["v1", "sessions", id, "recording"]) => {
            let Some(id) = SessionId::parse(id) else {
                return error(StatusCode::BAD_REQUEST, "invalid session id");
            };
            let path = state.recordings.join(format!("{id}.jsonl"));
            match tokio::fs::read(&path).await {
                Ok(b) => respond(StatusCode::OK, "application/x-ndjson", b),
                Err(_) => error(StatusCode::NOT_FOUND, "no recording for this session"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

async fn read_reason(req: Request<Incoming>) -> Result<Option<String>, Resp> {
    // Refuse a declared oversized body before reading it (a client that sent
    // `Expect: 100-continue` then never sends it).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or unreadable",
            )
        })?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        reason: Option<String>,
    }
    let b: Body = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("body must be JSON {{\"reason\": \"...\"}}: {e}"),
        )
    })?;
    Ok(b.reason)
}

fn decide(state: &AdminState, who: &Identity, id: &str, verb: &str, reason: Option<&str>) -> Resp {
    let result = if verb == "approve" {
        state.gate.approve(id, who, reason)
    } else {
        state.gate.reject(id, who, reason.unwrap_or(""))
    };
    match result {
        Ok(v) => json(StatusCode::OK, &serde_json::json!(v)),
        Err(e @ ApprovalError::UnknownReview(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ (ApprovalError::SelfApproval | ApprovalError::NotReviewer)) => {
            warn!(review = id, by = %who.subject, error = %e, "admin API: review decision refused");
            error(StatusCode::FORBIDDEN, &e.to_string())
        }
        Err(e @ ApprovalError::AlreadyDecided { .. }) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
