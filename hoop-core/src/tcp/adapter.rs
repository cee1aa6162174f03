//! [`TcpAdapter`]: generic TCP access through the gateway, with TLS on both legs.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::auth_line::{AuthLineError, OK_LINE, read_auth_line, write_err};
use crate::io::Prefixed;
use crate::recording::Event;
use crate::relay::{RelayEnd, relay};
use crate::sequence::{Authenticated, Authorized, UpstreamSecurity};
use crate::{Adapter, ClientConn, Credential, Error, Resource, SessionCtx};

/// How long the gateway tries to tell a refused client why, or to close a stream
/// cleanly, before it just drops the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The client-side TLS stream of a TCP session.
type ClientTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Settings of a [`TcpAdapter`]: one resource, one target.
#[derive(Clone, Debug)]
pub struct TcpAdapterConfig {
    /// The resource, as policy and audit see it (its protocol is usually `tcp`).
    pub resource: Resource,
    /// The target's address.
    pub upstream_addr: SocketAddr,
    /// How the target connection is secured: verified TLS, or plaintext only when the
    /// resource explicitly opts in ([`UpstreamSecurity::PlaintextOptIn`]).
    pub upstream: UpstreamSecurity,
    /// Accept an `AUTH <token>` line (see [`super::auth_line`]) from clients that did not
    /// present a client certificate. When false, only client certificates are accepted.
    pub allow_auth_line: bool,
}

impl TcpAdapterConfig {
    /// A configuration for `resource` at `upstream_addr`, verified with `upstream`,
    /// accepting `AUTH` lines.
    pub fn new(resource: Resource, upstream_addr: SocketAddr, upstream: UpstreamSecurity) -> Self {
        TcpAdapterConfig {
            resource,
            upstream_addr,
            upstream,
            allow_auth_line: true,
        }
    }
}

/// Generic TCP access (like Teleport's TCP application access): the client connects with
/// TLS to the gateway, proves who it is, the policy decides the connect, the gateway
/// opens its own verified TLS session to the target and relays bytes both ways.
///
/// The client's identity comes from its TLS client certificate when the listener's
/// [`crate::tls::ServerTls`] asked for one; otherwise (when
/// [`TcpAdapterConfig::allow_auth_line`]) from an `AUTH <token>` line sent first inside
/// the TLS session, answered by `OK` or `ERR <reason>` (see [`super::auth_line`]).
///
/// Every refusal closes the client connection (fail closed). The session is recorded:
/// TLS refusals toward the target as errors, and a `tcp_relay` note with the byte
/// counts and how the relay ended.
#[derive(Clone, Debug)]
pub struct TcpAdapter {
    config: TcpAdapterConfig,
}

impl TcpAdapter {
    /// An adapter for one resource.
    pub fn new(config: TcpAdapterConfig) -> Self {
        TcpAdapter { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &TcpAdapterConfig {
        &self.config
    }
}

/// How the client proved its identity (decides whether refusals are reported in-band).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ClientCertificate,
    AuthLine,
}

/// The result of the handshake phase.
struct Handshaken {
    stream: ClientTls,
    rest: Bytes,
    mode: Mode,
    auth: Authenticated,
}

#[async_trait]
impl Adapter for TcpAdapter {
    fn protocol(&self) -> &'static str {
        "tcp"
    }

    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> crate::error::Result<()> {
        let deadline = Instant::now() + ctx.handshake_timeout;
        let hs = tokio::select! {
            r = self.handshake(conn.stream, &ctx, deadline) => r?,
            _ = ctx.cancel.cancelled() => return Err(Error::Ended("cancelled during handshake")),
        };
        let Handshaken {
            mut stream,
            rest,
            mode,
            auth,
        } = hs;

        let authorized = tokio::select! {
            r = ctx.authorize(auth, self.config.resource.clone(), self.protocol()) => r,
            _ = ctx.cancel.cancelled() => return Err(Error::Ended("cancelled during authorization")),
        };
        let authorized = match authorized {
            Ok(a) => a,
            Err(refused) => {
                let reason = refused.to_string();
                refuse(&mut stream, mode, &reason).await;
                return Err(Error::Denied(reason));
            }
        };

        let connected = tokio::select! {
            r = authorized.connect_upstream(self.config.upstream_addr, &self.config.upstream) => Some(r),
            _ = ctx.cancel.cancelled() => None,
        };
        let mut upstream = match connected {
            Some(Ok(u)) => u,
            Some(Err(e)) => {
                let shown = upstream_failure(&e);
                if !matches!(e, Error::Tls(_)) {
                    // TLS refusals are recorded by connect_upstream itself.
                    let _ = authorized.record(Event::Error {
                        message: format!("{shown}: {e}"),
                    });
                }
                refuse(&mut stream, mode, &shown).await;
                authorized.finish(&shown).await?;
                return Err(e);
            }
            None => {
                authorized.finish("cancelled").await?;
                return Err(Error::Ended("cancelled while connecting upstream"));
            }
        };

        if mode == Mode::AuthLine {
            let ok = tokio::time::timeout(CLOSE_TIMEOUT, async {
                stream.write_all(OK_LINE).await?;
                stream.flush().await
            })
            .await;
            if !matches!(ok, Ok(Ok(()))) {
                authorized.finish("client gone before relay").await?;
                return Err(Error::Ended("client gone before relay"));
            }
        }
        info!(upstream = %self.config.upstream_addr, "relaying");

        let mut client = Prefixed::new(rest, stream);
        let stats = relay(&mut client, &mut upstream, ctx.idle_timeout, &ctx.cancel).await;
        if !stats.end.is_clean() {
            // Best effort: close both TLS sessions properly (close_notify) so the peers
            // see an orderly end, without waiting on a stuck peer.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                let _ = tokio::join!(client.shutdown(), upstream.shutdown());
            })
            .await;
        }
        info!(
            bytes_up = stats.bytes_up,
            bytes_down = stats.bytes_down,
            end = %stats.end,
            "relay ended"
        );
        finish_relay(authorized, stats.end, stats.bytes_up, stats.bytes_down).await
    }
}

impl TcpAdapter {
    /// TLS, then the credential, then authentication, all before `deadline`.
    async fn handshake(
        &self,
        tcp: TcpStream,
        ctx: &SessionCtx,
        deadline: Instant,
    ) -> crate::error::Result<Handshaken> {
        let Some(tls) = ctx.tls.as_ref() else {
            warn!("tcp adapter on a listener without TLS: refusing");
            return Err(Error::Config(String::from(
                "the tcp adapter needs a TLS listener",
            )));
        };
        let mut stream = match tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // Scanners and plaintext clients land here: the session end is logged
                // (info) with the error by the server.
                debug!(error = %e, "client TLS handshake failed");
                return Err(e.into());
            }
            Err(_) => {
                debug!("client TLS handshake timed out");
                return Err(Error::Timeout("client TLS handshake"));
            }
        };
        let client_cert: Option<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        if let Some(cert) = client_cert {
            let auth = tokio::time::timeout_at(
                deadline,
                ctx.authenticate(&Credential::ClientCertificate(&cert)),
            )
            .await;
            return match auth {
                Ok(Ok(auth)) => Ok(Handshaken {
                    stream,
                    rest: Bytes::new(),
                    mode: Mode::ClientCertificate,
                    auth,
                }),
                Ok(Err(e)) => {
                    close(&mut stream).await;
                    Err(e.into())
                }
                Err(_) => {
                    close(&mut stream).await;
                    Err(Error::Timeout("authentication"))
                }
            };
        }
        if !self.config.allow_auth_line {
            warn!("client presented no certificate and AUTH lines are not accepted");
            close(&mut stream).await;
            return Err(Error::Auth(crate::AuthError::NotApplicable));
        }
        let line = match tokio::time::timeout_at(deadline, read_auth_line(&mut stream)).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                warn!(error = %e, "bad AUTH line");
                if !matches!(e, AuthLineError::Closed | AuthLineError::Io(_)) {
                    refuse(&mut stream, Mode::AuthLine, &e.to_string()).await;
                }
                return Err(Error::Protocol(e.to_string()));
            }
            Err(_) => {
                refuse(&mut stream, Mode::AuthLine, "handshake timed out").await;
                return Err(Error::Timeout("AUTH line"));
            }
        };
        let auth = tokio::time::timeout_at(
            deadline,
            ctx.authenticate(&Credential::Bearer(line.token())),
        )
        .await;
        match auth {
            Ok(Ok(auth)) => Ok(Handshaken {
                stream,
                rest: line.rest,
                mode: Mode::AuthLine,
                auth,
            }),
            Ok(Err(e)) => {
                refuse(
                    &mut stream,
                    Mode::AuthLine,
                    &format!("authentication failed: {e}"),
                )
                .await;
                Err(e.into())
            }
            Err(_) => {
                refuse(&mut stream, Mode::AuthLine, "authentication timed out").await;
                Err(Error::Timeout("authentication"))
            }
        }
    }
}

/// What the client is told when the target cannot be reached (no target detail beyond
/// the typed TLS refusal).
fn upstream_failure(e: &Error) -> String {
    match e {
        Error::Tls(t) => match t.refusal() {
            Some(r) => format!("upstream TLS refused ({r})"),
            None => String::from("upstream TLS configuration error"),
        },
        Error::Timeout(_) => String::from("upstream connect timed out"),
        Error::Record(_) => String::from("recording unavailable"),
        _ => String::from("upstream unreachable"),
    }
}

/// Tells an `AUTH`-line client why (certificate clients just see the close), then closes.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, mode: Mode, reason: &str) {
    if mode == Mode::AuthLine {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, write_err(stream, reason)).await;
    }
    close(stream).await;
}

/// Closes the TLS session properly, without waiting on a stuck peer.
async fn close<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
}

async fn finish_relay(
    authorized: Authorized,
    end: RelayEnd,
    bytes_up: u64,
    bytes_down: u64,
) -> crate::error::Result<()> {
    let note = authorized.record(Event::Note {
        kind: String::from("tcp_relay"),
        detail: serde_json::json!({
            "bytes_up": bytes_up,
            "bytes_down": bytes_down,
            "end": end.to_string(),
        }),
    });
    if let RelayEnd::Error { side, kind } = end {
        let _ = authorized.record(Event::Error {
            message: format!("relay ended: {} socket error ({kind})", side.as_str()),
        });
    }
    let reason = end.to_string();
    authorized.finish(&reason).await?;
    note?;
    match end {
        RelayEnd::Error { kind, .. } => Err(Error::Io(std::io::Error::new(kind, reason))),
        _ => Ok(()),
    }
}
