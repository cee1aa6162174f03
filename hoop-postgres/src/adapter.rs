//! [`PostgresAdapter`]: the session sequence for one client connection.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hoop_core::io::MaybeTls;
use hoop_core::sequence::{Authenticated, Authorized};
use hoop_core::{Adapter, ClientConn, Credential, Event, SessionCtx};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use crate::cancel::{CancelRegistry, CancelTarget, forward_cancel};
use crate::classify::ClassCache;
use crate::codec::PROTOCOL_3_2;
use crate::config::{PostgresOptions, PostgresTarget};
use crate::error::PgError;
use crate::io::{FrameReader, FrameWriter};
use crate::messages::{Authentication, ErrorResponse, PasswordMessage, Severity, tags};
use crate::relay::{RelayParts, relay};
use crate::startup::{ClientStream, Startup, client_startup};
use crate::upstream::{REFUSED_PARAMS, login};

/// The PostgreSQL adapter: serves clients that connect as to a database (`dbname` selects
/// the resource, the password field carries the user's token), and relays them to their
/// target over a separate, verified TLS session with injected credentials.
///
/// ```no_run
/// # use hoop_postgres::{PostgresAdapter, PostgresOptions};
/// let adapter = PostgresAdapter::new(PostgresOptions::default());
/// // .with_target(PostgresTarget { .. }) for each database, then bind it to a listener.
/// # let _ = adapter;
/// ```
pub struct PostgresAdapter {
    targets: HashMap<String, Arc<PostgresTarget>>,
    opts: PostgresOptions,
    cache: ClassCache,
    cancels: CancelRegistry,
}

impl std::fmt::Debug for PostgresAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresAdapter")
            .field("targets", &self.targets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PostgresAdapter {
    /// An adapter with no targets.
    pub fn new(opts: PostgresOptions) -> Self {
        PostgresAdapter {
            targets: HashMap::new(),
            cache: ClassCache::new(opts.class_cache),
            opts,
            cancels: CancelRegistry::new(),
        }
    }

    /// Adds a target, reachable as `dbname=<resource name>`.
    pub fn with_target(mut self, target: PostgresTarget) -> Self {
        self.targets
            .insert(target.resource.name.clone(), Arc::new(target));
        self
    }

    /// Live cancel keys (one per session that reached its target).
    pub fn cancel_registry(&self) -> &CancelRegistry {
        &self.cancels
    }

    /// Shares `registry` for cancel keys, so that an adapter replacing another one
    /// while its sessions run (new targets from a reloaded configuration) still routes
    /// their `CancelRequest`s: a client sends its cancel on a new connection, which the
    /// replacement serves.
    ///
    /// ```
    /// use hoop_postgres::{PostgresAdapter, PostgresOptions};
    ///
    /// let old = PostgresAdapter::new(PostgresOptions::default());
    /// let new = PostgresAdapter::new(PostgresOptions::default())
    ///     .with_cancel_registry(old.cancel_registry().clone());
    /// assert!(new.cancel_registry().is_empty());
    /// ```
    pub fn with_cancel_registry(mut self, registry: CancelRegistry) -> Self {
        self.cancels = registry;
        self
    }
}

#[async_trait]
impl Adapter for PostgresAdapter {
    fn protocol(&self) -> &'static str {
        "postgres"
    }

    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> hoop_core::error::Result<()> {
        self.serve_session(conn, &ctx).await.map_err(Into::into)
    }
}

async fn fatal<W: AsyncWrite + Unpin>(w: &mut FrameWriter<W>, code: &str, msg: &str) -> PgError {
    let f = ErrorResponse::new(Severity::Fatal, code, msg).encode();
    let _ = w.push(f.as_bytes()).await;
    let _ = w.flush().await;
    PgError::Refused(msg.to_owned())
}

fn client_certificate(stream: &ClientStream) -> Option<CertificateDer<'static>> {
    match stream {
        MaybeTls::Tls { inner } => inner.get_ref().1.peer_certificates()?.first().cloned(),
        MaybeTls::Plain { .. } => None,
    }
}

impl PostgresAdapter {
    async fn serve_session(&self, conn: ClientConn, ctx: &SessionCtx) -> Result<(), PgError> {
        let startup =
            tokio::time::timeout(ctx.handshake_timeout, client_startup(conn, ctx, &self.opts))
                .await
                .map_err(|_| PgError::Timeout("client startup"))??;
        let (stream, buffered, version, params) = match startup {
            Startup::Cancel { pid, key } => {
                match self.cancels.lookup(pid, &key) {
                    Some(target) => {
                        match tokio::time::timeout(ctx.handshake_timeout, forward_cancel(&target))
                            .await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                warn!(error = %e, "cancel request could not be forwarded")
                            }
                            Err(_) => warn!("cancel request timed out toward the target"),
                        }
                    }
                    None => info!("cancel request with an unknown key ignored"),
                }
                return Ok(());
            }
            Startup::Session {
                stream,
                buffered,
                version,
                params,
            } => (stream, buffered, version, params),
        };
        let cert = client_certificate(&stream);
        let (cr, cw) = tokio::io::split(*stream);
        let mut reader = FrameReader::new(cr, self.opts.max_client_message, buffered);
        let mut writer = FrameWriter::new(cw, self.opts.flush_threshold);

        if let Some(p) = REFUSED_PARAMS.iter().find(|p| params.get(p).is_some()) {
            return Err(fatal(
                &mut writer,
                "42501",
                &format!("hoop: the startup parameter \"{p}\" is not allowed through the gateway"),
            )
            .await);
        }
        let authenticated = tokio::time::timeout(
            ctx.handshake_timeout,
            self.authenticate(ctx, cert.as_ref(), &mut reader, &mut writer),
        )
        .await
        .map_err(|_| PgError::Timeout("client authentication"))??;

        let db = params
            .get("database")
            .or_else(|| params.get("user"))
            .unwrap_or_default()
            .to_owned();
        let Some(target) = self.targets.get(&db).cloned() else {
            return Err(fatal(
                &mut writer,
                "3D000",
                &format!("hoop: no resource named \"{db}\""),
            )
            .await);
        };
        let auth = match ctx
            .authorize(authenticated, target.resource.clone(), "postgres")
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(fatal(&mut writer, "42501", &format!("hoop: {e}")).await),
        };
        let result = self
            .run_authorized(&auth, &target, version, &params, reader, writer, ctx)
            .await;
        let reason = match &result {
            Ok(r) => r.clone(),
            Err(e) => {
                let _ = auth.record(Event::Error {
                    message: e.to_string(),
                });
                format!("error: {e}")
            }
        };
        if let Err(e) = auth.finish(&reason).await {
            warn!(error = %e, "recording could not be finished");
        }
        result.map(|_| ())
    }

    async fn authenticate<R, W>(
        &self,
        ctx: &SessionCtx,
        cert: Option<&CertificateDer<'static>>,
        reader: &mut FrameReader<R>,
        writer: &mut FrameWriter<W>,
    ) -> Result<Authenticated, PgError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // A verified client certificate proves the identity; otherwise the password
        // field carries the token (asked for in clear: the listener requires TLS unless
        // plaintext clients were explicitly allowed).
        let result = if let Some(cert) = cert {
            ctx.authenticate(&Credential::ClientCertificate(cert)).await
        } else {
            writer
                .push(Authentication::CleartextPassword.encode().as_bytes())
                .await?;
            writer.flush().await?;
            let frame = reader.next().await?.ok_or(PgError::Truncated)?;
            if frame.tag() != tags::PASSWORD {
                return Err(fatal(writer, "08P01", "hoop: expected a password message").await);
            }
            let token = PasswordMessage::parse(frame.body())?;
            ctx.authenticate(&Credential::Bearer(token.password.trim()))
                .await
        };
        match result {
            Ok(a) => Ok(a),
            // The gateway could not check the credential (its identity provider is out of
            // reach): 57P03 "cannot connect now", which clients may retry, not a bad
            // password. Nothing passes either way.
            Err(e @ hoop_core::AuthError::Unavailable(_)) => Err(fatal(
                writer,
                "57P03",
                &format!("hoop: cannot check the credential now: {e}"),
            )
            .await),
            Err(e) => Err(fatal(
                writer,
                "28P01",
                &format!("hoop: authentication failed: {e}"),
            )
            .await),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_authorized<R, W>(
        &self,
        auth: &Authorized,
        target: &PostgresTarget,
        version: i32,
        params: &crate::codec::StartupParams,
        reader: FrameReader<R>,
        mut writer: FrameWriter<W>,
        ctx: &SessionCtx,
    ) -> Result<String, PgError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let login = tokio::time::timeout(
            ctx.handshake_timeout,
            login(auth, target, params, self.opts.max_message),
        );
        let session = match login.await.unwrap_or(Err(PgError::Timeout("target login"))) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("hoop: cannot open the session on the target: {e}");
                return Err(fatal(&mut writer, "08001", &msg).await);
            }
        };
        writer.push(Authentication::Ok.encode().as_bytes()).await?;
        for p in &session.parameter_status {
            writer.push(p.as_bytes()).await?;
        }
        let _guard = match &session.key {
            Some(key) => {
                let (ours, guard) = self.cancels.issue(
                    CancelTarget {
                        addr: target.addr,
                        security: target.security.clone(),
                        key: key.clone(),
                    },
                    version >= PROTOCOL_3_2,
                );
                writer.push(ours.encode().as_bytes()).await?;
                Some(guard)
            }
            None => None,
        };
        writer.push(session.ready.as_bytes()).await?;
        writer.flush().await?;
        info!(target = %target.addr, "session established");

        let target_writer = FrameWriter::new(session.writer, self.opts.flush_threshold);
        let (end, masked) = relay(RelayParts {
            auth,
            masker: ctx.services.masker.as_ref(),
            cache: &self.cache,
            client_reader: reader,
            client_writer: writer,
            target_reader: session.reader,
            target_writer,
            read_only: target.read_only,
            cancel: ctx.cancel.clone(),
            idle_timeout: ctx.idle_timeout,
            stream_threshold: self.opts.stream_threshold,
            mask_inspect_max: self.opts.mask_inspect_max,
        })
        .await?;
        auth.record(Event::Note {
            kind: "session_summary".into(),
            detail: serde_json::json!({ "masked_fields": masked }),
        })?;
        Ok(end.reason().to_owned())
    }
}
