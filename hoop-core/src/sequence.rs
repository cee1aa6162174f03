//! The fail-closed security sequence every adapter follows, enforced by proof tokens.
//!
//! ```text
//! SessionCtx::authenticate(credential) -> Authenticated
//! SessionCtx::authorize(Authenticated, resource) -> Authorized   (policy Connect, approval, recording opened)
//! Authorized::connect_upstream(..)            -> verified upstream stream
//! Authorized::check(command)                  -> Allowed | Denied | Pending review
//! Authorized::finish(reason)                  -> recording closed
//! ```
//!
//! With [`crate::Services::end_at_credential_expiry`] on, `authorize` also arms a timer
//! that ends the session (through the registry, reason [`CREDENTIAL_EXPIRED`]) when the
//! identity's credential expires; the [`Authorized`] owns it, so a session that ends
//! first leaves no timer behind.
//!
//! [`Authenticated`] and [`Authorized`] have private fields: the only way to get one is the
//! step before it, so an adapter that opens an upstream connection without authorizing,
//! or authorizes without authenticating, does not compile:
//!
//! ```compile_fail
//! # use hoop_core::sequence::Authorized;
//! // There is no public constructor: this does not compile.
//! let proof = Authorized { identity: todo!() };
//! ```

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

mod expiry;

use expiry::ExpiryTimer;

use crate::approval::{PendingReview, ReviewRequest, Submission, Verdict};
use crate::io::{MaybeTls, UpstreamStream};
use crate::recording::{Event, Recording, SessionMeta};
use crate::tls::{TlsError, UpstreamTls};
use crate::{
    Action, AuthError, Command, Credential, Decision, Identity, Request, Resource, SessionCtx,
};

/// The reason a session ends with when the credential that opened it expires (see
/// [`crate::Services::end_at_credential_expiry`]).
pub const CREDENTIAL_EXPIRED: &str = "credential expired";

/// Proof that the user authenticated. Only [`SessionCtx::authenticate`] makes one.
#[derive(Debug)]
pub struct Authenticated {
    identity: Identity,
}

impl Authenticated {
    /// Who.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// Why a session was not authorized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The policy denied the connect.
    #[error("access denied: {0}")]
    Denied(String),
    /// A review was needed and not approved (rejected or expired).
    #[error("access not approved: {0}")]
    NotApproved(String),
    /// The recording could not be opened and the recorder fails closed.
    #[error("recording unavailable: {0}")]
    Recording(String),
}

/// How the upstream connection is secured.
#[derive(Clone, Debug)]
pub enum UpstreamSecurity {
    /// Verified TLS, checking the certificate for `server_name` (DNS name or IP).
    Tls {
        /// The verifier.
        tls: UpstreamTls,
        /// Name or IP to verify.
        server_name: String,
    },
    /// Plaintext. Only where the resource explicitly opted in; every connection is logged
    /// at warn level and recorded.
    PlaintextOptIn,
}

/// Proof that the session is authorized on a resource, holding its recording.
/// Only [`SessionCtx::authorize`] makes one.
pub struct Authorized {
    identity: Identity,
    resource: Resource,
    recording: Box<dyn Recording>,
    ctx: SessionCtx,
    /// Ends the session when the credential expires; aborted when this drops.
    expiry: std::sync::Mutex<Option<ExpiryTimer>>,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized")
            .field("identity", &self.identity.subject)
            .field("resource", &self.resource.name)
            .finish()
    }
}

/// The outcome of [`Authorized::check`].
#[derive(Debug)]
pub enum Checked {
    /// Forward the command.
    Allowed,
    /// Refuse it with `reason` (protocol-native error; the session goes on where it can).
    Denied {
        /// Shown to the user.
        reason: String,
    },
    /// Held: tell the user the review id, then [`Authorized::await_review`].
    Pending(PendingReview),
}

impl SessionCtx {
    /// A timer that ends this session ([`CREDENTIAL_EXPIRED`]) at `at`.
    fn expiry_timer(&self, at: SystemTime) -> ExpiryTimer {
        ExpiryTimer::arm(
            self.handle.registry().clone(),
            self.id,
            at,
            CREDENTIAL_EXPIRED,
        )
    }

    /// Step 1: verifies the client's credential. Failures are logged without the secret.
    pub async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Authenticated, AuthError> {
        match self.services.authenticator.authenticate(credential).await {
            Ok(identity) => {
                self.span.record("user", identity.subject.as_str());
                self.handle.set_user(&identity.subject);
                info!(method = ?identity.method, "authenticated");
                Ok(Authenticated { identity })
            }
            Err(e) => {
                warn!(credential = credential.kind(), error = %e, "authentication failed");
                Err(e)
            }
        }
    }

    /// Step 2: asks the policy about the connect (holding for approval where it says so),
    /// then opens the session's recording.
    pub async fn authorize(
        &self,
        auth: Authenticated,
        resource: Resource,
        protocol: &str,
    ) -> Result<Authorized, Refused> {
        let identity = auth.identity;
        self.span.record("resource", resource.name.as_str());
        self.handle.set_resource(&resource.name);
        let action = Action::Connect;
        let decision = self
            .services
            .policy
            .decide(&Request {
                identity: &identity,
                resource: &resource,
                action: &action,
            })
            .await;
        let mut approval_event = None;
        match decision {
            Decision::Allow => {}
            Decision::Deny { reason } => {
                warn!(%reason, "connect denied");
                return Err(Refused::Denied(reason));
            }
            Decision::Review { reason } => {
                let verdict = self
                    .services
                    .approvals
                    .review(
                        ReviewRequest {
                            requester: identity.clone(),
                            resource: resource.name.clone(),
                            action,
                            reason,
                            session_id: self.id,
                        },
                        self.services.approval_hold,
                    )
                    .await;
                if !verdict.is_approved() {
                    warn!(review = verdict.review_id(), "connect not approved");
                    return Err(Refused::NotApproved(verdict_text(&verdict)));
                }
                approval_event = Some(approval_to_event(&verdict));
            }
        }
        let meta = SessionMeta {
            session_id: self.id,
            identity: identity.clone(),
            resource: resource.name.clone(),
            protocol: protocol.to_owned(),
            client: self.peer,
            started_at: SystemTime::now(),
        };
        let recording = self
            .services
            .recorder
            .open(&meta)
            .await
            .map_err(|e| Refused::Recording(e.to_string()))?;
        if let Some(ev) = approval_event {
            recording
                .record(ev)
                .map_err(|e| Refused::Recording(e.to_string()))?;
        }
        let expiry = match identity.expires_at {
            Some(at) if self.services.end_at_credential_expiry => Some(self.expiry_timer(at)),
            _ => None,
        };
        info!(ends_at_expiry = expiry.is_some(), "session authorized");
        Ok(Authorized {
            identity,
            resource,
            recording,
            ctx: self.clone(),
            expiry: std::sync::Mutex::new(expiry),
        })
    }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Approved { review_id, by, .. } => format!("review {review_id} approved by {by}"),
        Verdict::Rejected {
            review_id,
            by,
            reason,
        } => format!("review {review_id} rejected by {by}: {reason}"),
        Verdict::Expired { review_id } => format!("review {review_id} expired without a verdict"),
    }
}

fn approval_to_event(v: &Verdict) -> Event {
    let (state, reviewer, reason) = match v {
        Verdict::Approved { by, reason, .. } => ("approved", Some(by.clone()), reason.clone()),
        Verdict::Rejected { by, reason, .. } => {
            ("rejected", Some(by.clone()), Some(reason.clone()))
        }
        Verdict::Expired { .. } => ("expired", None, None),
    };
    Event::Approval {
        review_id: v.review_id().to_owned(),
        state: state.to_owned(),
        reviewer,
        reason,
    }
}

impl Authorized {
    /// Who.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// On what.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// The session's recording.
    pub fn recording(&self) -> &dyn Recording {
        self.recording.as_ref()
    }

    /// Records an event; an error means the recorder fails closed and the session must end.
    /// Never waits: prefer [`Authorized::record_async`] where the caller can await.
    pub fn record(&self, event: Event) -> Result<(), crate::recording::RecordError> {
        self.recording.record(event)
    }

    /// Records an event, waiting (bounded) for room in the recording's queue: the
    /// session slows to the recorder's pace during a storage stall instead of ending.
    pub async fn record_async(&self, event: Event) -> Result<(), crate::recording::RecordError> {
        self.recording.record_async(event).await
    }

    /// Step 3: opens the connection to the target at `addr`, verified as `security` says.
    /// A TLS refusal is logged and recorded with its typed reason before it is returned.
    pub async fn connect_upstream(
        &self,
        addr: SocketAddr,
        security: &UpstreamSecurity,
    ) -> Result<UpstreamStream, crate::Error> {
        self.connect_upstream_with(addr, security, |_| Box::pin(async { Ok(()) }))
            .await
    }

    /// Like [`Authorized::connect_upstream`], for protocols that negotiate TLS inside the
    /// protocol (Postgres `SSLRequest`, STARTTLS): `negotiate` runs on the plain TCP
    /// stream first, and must leave it ready for the TLS handshake. With
    /// [`UpstreamSecurity::PlaintextOptIn`] it is not called.
    pub async fn connect_upstream_with<F>(
        &self,
        addr: SocketAddr,
        security: &UpstreamSecurity,
        negotiate: F,
    ) -> Result<UpstreamStream, crate::Error>
    where
        F: for<'s> FnOnce(
            &'s mut tokio::net::TcpStream,
        ) -> futures_util::future::BoxFuture<'s, std::io::Result<()>>,
    {
        let mut tcp = tokio::time::timeout(
            self.ctx.handshake_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| crate::Error::Timeout("upstream connect"))??;
        let _ = tcp.set_nodelay(true);
        if matches!(security, UpstreamSecurity::Tls { .. }) {
            tokio::time::timeout(self.ctx.handshake_timeout, negotiate(&mut tcp))
                .await
                .map_err(|_| crate::Error::Timeout("upstream TLS negotiation"))??;
        }
        match security {
            UpstreamSecurity::Tls { tls, server_name } => {
                match tokio::time::timeout(
                    self.ctx.handshake_timeout,
                    tls.connect(server_name, tcp),
                )
                .await
                {
                    Ok(Ok(s)) => Ok(MaybeTls::Tls { inner: s }),
                    Ok(Err(e)) => {
                        self.upstream_refused(&e);
                        Err(e.into())
                    }
                    Err(_) => Err(crate::Error::Timeout("upstream TLS handshake")),
                }
            }
            UpstreamSecurity::PlaintextOptIn => {
                warn!(%addr, "plaintext upstream connection (resource opted in)");
                self.record(Event::Note {
                    kind: String::from("plaintext_upstream"),
                    detail: serde_json::json!({ "addr": addr.to_string() }),
                })?;
                Ok(MaybeTls::Plain { inner: tcp })
            }
        }
    }

    fn upstream_refused(&self, e: &TlsError) {
        let refusal = e.refusal().map(|r| r.as_str()).unwrap_or("config");
        warn!(refusal, error = %e, "upstream TLS refused");
        let _ = self.record(Event::Error {
            message: format!("upstream TLS refused ({refusal}): {e}"),
        });
    }

    /// Decides one command: policy, then (for a review) submission to the approval gate.
    /// The command and its decision are recorded.
    pub async fn check(&self, command: Command) -> Result<Checked, crate::recording::RecordError> {
        let action = Action::Command(command);
        let decision = self
            .ctx
            .services
            .policy
            .decide(&Request {
                identity: &self.identity,
                resource: &self.resource,
                action: &action,
            })
            .await;
        let Action::Command(command) = action else {
            return Ok(Checked::Denied {
                reason: String::from("internal: not a command"),
            });
        };
        let reason = match &decision {
            Decision::Allow => None,
            Decision::Deny { reason } | Decision::Review { reason } => Some(reason.clone()),
        };
        self.record_async(Event::Command {
            text: command.text.clone(),
            class: command.class,
            decision: decision.kind().to_owned(),
            reason,
        })
        .await?;
        match decision {
            Decision::Allow => Ok(Checked::Allowed),
            Decision::Deny { reason } => Ok(Checked::Denied { reason }),
            Decision::Review { reason } => {
                let submission = self
                    .ctx
                    .services
                    .approvals
                    .submit(ReviewRequest {
                        requester: self.identity.clone(),
                        resource: self.resource.name.clone(),
                        action: Action::Command(command),
                        reason,
                        session_id: self.ctx.id,
                    })
                    .await;
                match submission {
                    Submission::Decided(v) => {
                        self.record_async(approval_to_event(&v)).await?;
                        if v.is_approved() {
                            Ok(Checked::Allowed)
                        } else {
                            Ok(Checked::Denied {
                                reason: verdict_text(&v),
                            })
                        }
                    }
                    Submission::Pending(p) => {
                        self.record_async(Event::Approval {
                            review_id: p.id.clone(),
                            state: String::from("requested"),
                            reviewer: None,
                            reason: None,
                        })
                        .await?;
                        Ok(Checked::Pending(p))
                    }
                }
            }
        }
    }

    /// Waits for a held command's verdict (up to the configured hold time, or until the
    /// session is cancelled). `Ok(None)` means approved; `Ok(Some(reason))` refused.
    pub async fn await_review(
        &self,
        pending: PendingReview,
    ) -> Result<Option<String>, crate::recording::RecordError> {
        let cancel = self.ctx.cancel.clone();
        self.await_review_until(pending, &cancel).await
    }

    /// Like [`Authorized::await_review`], ending the wait when `stop` fires (pass a child
    /// of the session's cancellation token so an operator kill ends it too). A wait that
    /// ends early marks the review expired.
    pub async fn await_review_until(
        &self,
        pending: PendingReview,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<String>, crate::recording::RecordError> {
        let started = Instant::now();
        let verdict = pending
            .wait_or_cancel(self.ctx.services.approval_hold, stop)
            .await;
        info!(
            review = verdict.review_id(),
            approved = verdict.is_approved(),
            waited_ms = started.elapsed().as_millis() as u64,
            "review ended"
        );
        self.record_async(approval_to_event(&verdict)).await?;
        Ok(if verdict.is_approved() {
            None
        } else {
            Some(verdict_text(&verdict))
        })
    }

    /// Why the gateway ended this session, if it did ([`SessionHandle::termination`]):
    /// an operator's kill, or the credential's expiry ([`CREDENTIAL_EXPIRED`]). An adapter
    /// whose relay saw `ctx.cancel` fire reads it to tell the user why.
    ///
    /// [`SessionHandle::termination`]: crate::server::registry::SessionHandle::termination
    pub fn termination(&self) -> Option<String> {
        self.ctx.handle.termination()
    }

    /// A long-lived session was authenticated again, for the same identity, with a new
    /// credential (HTTP re-authenticates every request, a client may refresh its token):
    /// with [`crate::Services::end_at_credential_expiry`] on, the session now ends when
    /// that credential expires (`expires_at`; `None`: it does not expire) instead of the
    /// one it was opened with. Does nothing when the option is off; cannot bring back a
    /// session the gateway already ended. The adapter checks that the identity is the same.
    pub fn credential_renewed(&self, expires_at: Option<SystemTime>) {
        if !self.ctx.services.end_at_credential_expiry {
            return;
        }
        let mut timer = self.expiry.lock().unwrap_or_else(|e| e.into_inner());
        match (timer.as_ref(), expires_at) {
            (Some(t), at) => t.reset(at),
            (None, Some(at)) => {
                *timer = Some(self.ctx.expiry_timer(at));
            }
            (None, None) => {}
        }
    }

    /// Step 4: records the end and closes the recording. The expiry timer, if any, is
    /// disarmed first. When the gateway ended the session ([`Authorized::termination`]),
    /// the recorded end reason leads with why (`"credential expired: {reason}"`), as the
    /// registry's does.
    pub async fn finish(self, reason: &str) -> Result<(), crate::recording::RecordError> {
        let Authorized {
            recording,
            ctx,
            expiry,
            ..
        } = self;
        drop(expiry);
        ctx.handle.set_end_reason(reason);
        match ctx.handle.termination() {
            Some(why) => recording.finish(&format!("{why}: {reason}")).await,
            None => recording.finish(reason).await,
        }
    }
}

#[cfg(test)]
mod tests;
