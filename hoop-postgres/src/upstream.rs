//! Logging in to the target with injected credentials over a verified TLS session.

use bytes::BytesMut;
use hoop_core::io::{MaybeTls, UpstreamStream};
use hoop_core::sequence::Authorized;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use crate::codec::{Frame, PROTOCOL_3_0, SSL_REQUEST_CODE, StartupParams};
use crate::config::PostgresTarget;
use crate::error::PgError;
use crate::io::FrameReader;
use crate::messages::{
    Authentication, BackendKeyData, ErrorFields, PasswordMessage, SaslInitialResponse, tags,
};
use crate::scram::{ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, md5_password};

/// Startup parameters a client may not set: they would lift the gateway's controls or
/// change the kind of connection.
pub const REFUSED_PARAMS: &[&str] = &[
    "options",
    "replication",
    "role",
    "session_authorization",
    "default_transaction_read_only",
    "transaction_read_only",
    "session_replication_role",
];

/// A logged-in target session.
pub struct TargetSession {
    /// Reader over the target stream (may hold bytes after ReadyForQuery).
    pub reader: FrameReader<tokio::io::ReadHalf<UpstreamStream>>,
    /// Writer half.
    pub writer: tokio::io::WriteHalf<UpstreamStream>,
    /// ParameterStatus messages to pass on to the client, in order.
    pub parameter_status: Vec<Frame>,
    /// The target's cancel key.
    pub key: Option<BackendKeyData>,
    /// The ReadyForQuery that ended the login.
    pub ready: Frame,
}

fn ssl_request() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&8i32.to_be_bytes());
    b[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    b
}

/// Sends `SSLRequest` on a fresh target connection and requires `S`: a target that
/// answers `N` fails closed.
pub async fn negotiate_tls(tcp: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    tcp.write_all(&ssl_request()).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer {
        [b'S'] => Ok(()),
        [b'N'] => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "target refused TLS (answered N to SSLRequest)",
        )),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "target sent an invalid answer to SSLRequest",
        )),
    }
}

fn channel_binding(stream: &UpstreamStream) -> Option<ChannelBinding> {
    let MaybeTls::Tls { inner } = stream else {
        return None;
    };
    let cert = inner.get_ref().1.peer_certificates()?.first()?;
    Some(ChannelBinding::tls_server_end_point(
        cert.as_ref(),
        signature_hash(cert.as_ref()),
    ))
}

/// The hash of a certificate's signature algorithm for `tls-server-end-point`.
fn signature_hash(der: &[u8]) -> Option<&'static str> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Some("sha384"),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Some("sha512"),
        _ => None,
    }
}

/// Connects to `target` (verified TLS through `auth`) and logs in as the target's
/// configured role, forwarding the client's harmless startup parameters.
pub async fn login(
    auth: &Authorized,
    target: &PostgresTarget,
    client_params: &StartupParams,
    max_message: usize,
) -> Result<TargetSession, PgError> {
    let stream = auth
        .connect_upstream_with(target.addr, &target.security, |tcp| {
            Box::pin(negotiate_tls(tcp))
        })
        .await?;
    let binding = channel_binding(&stream);
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read, max_message, BytesMut::new());

    let mut params = StartupParams::new();
    for (k, v) in client_params.iter() {
        if k == "user" || k == "database" || k.starts_with("_pq_.") {
            continue;
        }
        params.set(k, v);
    }
    params.set("user", &target.user);
    params.set("database", &target.database);
    if target.read_only {
        params.set("default_transaction_read_only", "on");
    }
    write.write_all(&params.encode(PROTOCOL_3_0)).await?;
    write.flush().await?;

    let password = target.password.read().map_err(PgError::TargetLogin)?;
    let mut scram: Option<ScramClient> = None;
    // Authentication exchange.
    loop {
        let frame = reader.next().await?.ok_or(PgError::Truncated)?;
        match frame.tag() {
            tags::AUTHENTICATION => match Authentication::parse(frame.body())? {
                Authentication::Ok => break,
                Authentication::CleartextPassword => {
                    write
                        .write_all(PasswordMessage::encode(&password).as_bytes())
                        .await?;
                }
                Authentication::Md5Password { salt } => {
                    let answer = md5_password(&target.user, &password, salt);
                    write
                        .write_all(PasswordMessage::encode(&answer).as_bytes())
                        .await?;
                }
                Authentication::Sasl { mechanisms } => {
                    let cb = match (&binding, mechanisms.contains(&SCRAM_SHA_256_PLUS)) {
                        (Some(cb), true) => cb.clone(),
                        (Some(_), false) => ChannelBinding::NotOffered,
                        (None, _) => ChannelBinding::Unsupported,
                    };
                    if !matches!(cb, ChannelBinding::TlsServerEndPoint(_))
                        && !mechanisms.contains(&SCRAM_SHA_256)
                    {
                        return Err(PgError::TargetLogin(format!(
                            "no supported SASL mechanism in {mechanisms:?}"
                        )));
                    }
                    let mut client = ScramClient::new(&password, cb);
                    let first = client.client_first();
                    write
                        .write_all(
                            SaslInitialResponse::encode(client.mechanism(), &first).as_bytes(),
                        )
                        .await?;
                    debug!(mechanism = client.mechanism(), "SCRAM toward target");
                    scram = Some(client);
                }
                Authentication::SaslContinue { data } => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| PgError::TargetLogin("unexpected SASL continue".into()))?;
                    let fin = client.client_final(data)?;
                    write
                        .write_all(SaslInitialResponse::encode_response(&fin).as_bytes())
                        .await?;
                }
                Authentication::SaslFinal { data } => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| PgError::TargetLogin("unexpected SASL final".into()))?;
                    client.verify_server_final(data)?;
                }
                Authentication::Other(code) => {
                    return Err(PgError::TargetLogin(format!(
                        "unsupported authentication method {code}"
                    )));
                }
            },
            tags::ERROR_RESPONSE => return Err(target_error(&frame)),
            tags::NEGOTIATE_PROTOCOL_VERSION | tags::NOTICE_RESPONSE => {}
            other => {
                return Err(PgError::TargetLogin(format!(
                    "unexpected message {:?} during login",
                    char::from(other)
                )));
            }
        }
        write.flush().await?;
    }
    // A SCRAM login must end with a verified server signature.
    if let Some(c) = &scram
        && !c.is_done()
    {
        return Err(PgError::TargetLogin(
            "target accepted SCRAM without proving its signature".into(),
        ));
    }
    let mut parameter_status = Vec::new();
    let mut key = None;
    loop {
        let frame = reader.next().await?.ok_or(PgError::Truncated)?;
        match frame.tag() {
            tags::PARAMETER_STATUS => parameter_status.push(frame),
            tags::BACKEND_KEY_DATA => key = Some(BackendKeyData::parse(frame.body())?),
            tags::READY_FOR_QUERY => {
                return Ok(TargetSession {
                    reader,
                    writer: write,
                    parameter_status,
                    key,
                    ready: frame,
                });
            }
            tags::ERROR_RESPONSE => return Err(target_error(&frame)),
            tags::NOTICE_RESPONSE | tags::NEGOTIATE_PROTOCOL_VERSION => {}
            other => {
                return Err(PgError::TargetLogin(format!(
                    "unexpected message {:?} after login",
                    char::from(other)
                )));
            }
        }
    }
}

fn target_error(frame: &Frame) -> PgError {
    let msg = ErrorFields::parse(frame.body())
        .ok()
        .and_then(|f| f.message().map(str::to_owned))
        .unwrap_or_else(|| "target error".into());
    PgError::TargetLogin(msg)
}
