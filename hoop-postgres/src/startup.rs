//! The client's startup phase: TLS negotiation (SSLRequest or direct TLS with ALPN
//! `postgresql`), GSSENCRequest refused, CancelRequest, and the StartupMessage.

use bytes::{Bytes, BytesMut};
use hoop_core::io::{MaybeTls, Prefixed};
use hoop_core::{ClientConn, SessionCtx};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::PostgresOptions;
use crate::codec::{
    MAX_STARTUP_PACKET, PROTOCOL_3_0, PROTOCOL_3_2, StartupFrame, StartupParams, decode_startup,
};
use crate::error::PgError;
use crate::messages::{ErrorResponse, NegotiateProtocolVersion, Severity};

/// The TLS stream toward a client.
pub type ClientTls = tokio_rustls::server::TlsStream<Prefixed<TcpStream>>;
/// A client connection after the startup phase.
pub type ClientStream = MaybeTls<TcpStream, ClientTls>;

/// ALPN protocol id of PostgreSQL direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// What the startup phase produced.
#[derive(Debug)]
pub enum Startup {
    /// A session to serve.
    Session {
        /// The (possibly TLS) stream.
        stream: Box<ClientStream>,
        /// Bytes the client sent after its StartupMessage.
        buffered: BytesMut,
        /// The protocol version spoken with the client (3.0 or 3.2).
        version: i32,
        /// Startup parameters.
        params: StartupParams,
    },
    /// A cancel request for the session with this gateway key.
    Cancel {
        /// Gateway-issued process id.
        pid: i32,
        /// Gateway-issued key.
        key: Bytes,
    },
}

/// Sends a FATAL error to a client and returns the matching error.
pub async fn fatal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: &str,
    message: impl Into<String>,
) -> PgError {
    let message = message.into();
    let frame = ErrorResponse::new(Severity::Fatal, code, message.clone()).encode();
    let _ = stream.write_all(frame.as_bytes()).await;
    let _ = stream.flush().await;
    PgError::Refused(message)
}

/// Reads one startup packet; a malformed one gets a FATAL 08P01 before the error.
async fn read_startup<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<StartupFrame, PgError> {
    loop {
        match decode_startup(buf, MAX_STARTUP_PACKET) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => {
                return Err(fatal(stream, "08P01", format!("invalid startup packet: {e}")).await);
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(PgError::Truncated);
        }
    }
}

/// Runs the startup phase on a fresh connection.
pub async fn client_startup(
    conn: ClientConn,
    ctx: &SessionCtx,
    opts: &PostgresOptions,
) -> Result<Startup, PgError> {
    let mut tcp = conn.stream;
    let mut buf = BytesMut::with_capacity(1024);
    // Direct TLS (libpq 17+ `sslnegotiation=direct`): the first byte is a TLS handshake
    // record.
    if tcp.read_buf(&mut buf).await? == 0 {
        return Err(PgError::Truncated);
    }
    if buf.first() == Some(&0x16) {
        let Some(tls) = &ctx.tls else {
            return Err(PgError::Refused(
                "direct TLS on a listener without TLS".into(),
            ));
        };
        let prefix = buf.split().freeze();
        let stream = tls
            .accept_with_prefix(tcp, prefix)
            .await
            .map_err(hoop_core::Error::from)?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
            return Err(PgError::Refused(
                "direct TLS without ALPN \"postgresql\"".into(),
            ));
        }
        return after_tls(MaybeTls::Tls { inner: stream }, ctx, opts).await;
    }
    let mut gss_refused = false;
    loop {
        match read_startup(&mut tcp, &mut buf).await? {
            StartupFrame::SslRequest => {
                // Bytes after an SSLRequest would be read as if they came over TLS
                // (CVE-2021-23214): refuse.
                if !buf.is_empty() {
                    return Err(fatal(&mut tcp, "08P01", "unexpected data after SSLRequest").await);
                }
                match &ctx.tls {
                    Some(tls) => {
                        tcp.write_all(b"S").await?;
                        let stream = tls
                            .accept_with_prefix(tcp, Bytes::new())
                            .await
                            .map_err(hoop_core::Error::from)?;
                        return after_tls(MaybeTls::Tls { inner: stream }, ctx, opts).await;
                    }
                    None => tcp.write_all(b"N").await?,
                }
            }
            StartupFrame::GssEncRequest if !gss_refused => {
                gss_refused = true;
                if !buf.is_empty() {
                    return Err(
                        fatal(&mut tcp, "08P01", "unexpected data after GSSENCRequest").await,
                    );
                }
                tcp.write_all(b"N").await?;
            }
            StartupFrame::GssEncRequest => {
                return Err(fatal(&mut tcp, "08P01", "repeated GSSENCRequest").await);
            }
            StartupFrame::CancelRequest { pid, key } => return Ok(Startup::Cancel { pid, key }),
            StartupFrame::Startup { version, params } => {
                if !opts.allow_plaintext_clients {
                    return Err(fatal(
                        &mut tcp,
                        "28000",
                        "the gateway requires TLS: connect with sslmode=require or stronger",
                    )
                    .await);
                }
                let mut stream = MaybeTls::Plain { inner: tcp };
                let version = negotiate_version(&mut stream, version, &params).await?;
                return Ok(Startup::Session {
                    stream: Box::new(stream),
                    buffered: buf,
                    version,
                    params,
                });
            }
        }
    }
}

async fn after_tls(
    mut stream: ClientStream,
    _ctx: &SessionCtx,
    _opts: &PostgresOptions,
) -> Result<Startup, PgError> {
    let mut buf = BytesMut::with_capacity(1024);
    match read_startup(&mut stream, &mut buf).await? {
        StartupFrame::Startup { version, params } => {
            let version = negotiate_version(&mut stream, version, &params).await?;
            Ok(Startup::Session {
                stream: Box::new(stream),
                buffered: buf,
                version,
                params,
            })
        }
        StartupFrame::CancelRequest { pid, key } => Ok(Startup::Cancel { pid, key }),
        StartupFrame::SslRequest | StartupFrame::GssEncRequest => {
            Err(fatal(&mut stream, "08P01", "TLS or GSS requested twice").await)
        }
    }
}

/// Agrees on 3.0 or 3.2 and reports unsupported `_pq_.` options.
async fn negotiate_version<S: AsyncWrite + Unpin>(
    stream: &mut S,
    requested: i32,
    params: &StartupParams,
) -> Result<i32, PgError> {
    let unrecognized: Vec<&str> = params
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    let version = if requested >= PROTOCOL_3_2 {
        PROTOCOL_3_2
    } else {
        PROTOCOL_3_0
    };
    if requested != version || !unrecognized.is_empty() {
        let v = NegotiateProtocolVersion {
            newest_minor: version & 0xffff,
            unrecognized,
        };
        stream.write_all(v.encode().as_bytes()).await?;
    }
    Ok(version)
}
