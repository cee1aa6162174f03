//! The [`ApprovalGate`] trait: just-in-time approval of held commands.
//!
//! Two modes work together: a command can be *held* until a reviewer decides or a timeout
//! passes, and an approval creates a time-bound *grant* for the same action fingerprint,
//! so a client that could not wait retries and passes.
//!
//! Built-in: [`InMemoryGate`] (reviews and grants in memory, with an API to list,
//! approve and reject, and an audit trail of every transition) and [`WebhookNotifier`]
//! (tells reviewers about new reviews over HTTPS). [`RejectAll`] is the safe default when
//! nobody reviews.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{Action, Identity, SessionId};

pub mod info;
pub mod memory;
pub mod webhook;

pub use info::{Notifier, ReviewInfo, ReviewState, Transition, TransitionKind};
pub use memory::{ApprovalError, GateConfig, InMemoryGate, InMemoryGateBuilder};
pub use webhook::{WebhookConfig, WebhookError, WebhookNotifier};

/// A request for review.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReviewRequest {
    /// Who asks (never allowed to approve it).
    pub requester: Identity,
    /// Resource name.
    pub resource: String,
    /// What is held.
    pub action: Action,
    /// Why the policy asked for a review.
    pub reason: String,
    /// The session it comes from.
    pub session_id: SessionId,
}

/// A reviewer's verdict or the end of a wait.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Approved; the grant lasts until `until`.
    Approved {
        /// Review id.
        review_id: String,
        /// Reviewer subject (for an existing grant, who granted it).
        by: String,
        /// The reviewer's reason, if given.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// End of the grant.
        #[serde(skip)]
        until: Option<SystemTime>,
    },
    /// Rejected by a reviewer.
    Rejected {
        /// Review id.
        review_id: String,
        /// Reviewer subject.
        by: String,
        /// Reviewer's reason.
        reason: String,
    },
    /// Nobody decided in time.
    Expired {
        /// Review id.
        review_id: String,
    },
}

impl Verdict {
    /// Whether the action may go ahead.
    pub fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved { .. })
    }

    /// The review id.
    pub fn review_id(&self) -> &str {
        match self {
            Verdict::Approved { review_id, .. }
            | Verdict::Rejected { review_id, .. }
            | Verdict::Expired { review_id } => review_id,
        }
    }
}

/// Holds actions for approval.
#[async_trait]
pub trait ApprovalGate: Send + Sync {
    /// Submits a request. If a live grant covers it (same requester, resource and action
    /// fingerprint), returns [`Submission::Decided`] at once; otherwise a pending review
    /// the caller can announce (its id) and then wait on.
    async fn submit(&self, request: ReviewRequest) -> Submission;

    /// Submits and waits up to `hold` for a verdict ([`Verdict::Expired`] after it).
    async fn review(&self, request: ReviewRequest, hold: Duration) -> Verdict {
        match self.submit(request).await {
            Submission::Decided(v) => v,
            Submission::Pending(p) => p.wait(hold).await,
        }
    }
}

/// The result of [`ApprovalGate::submit`].
#[derive(Debug)]
pub enum Submission {
    /// Decided at once: a live grant covers the action (approved), or the gate refuses
    /// it without a review (rejected).
    Decided(Verdict),
    /// A reviewer must decide.
    Pending(PendingReview),
}

/// A review waiting for a verdict.
pub struct PendingReview {
    /// Review id to show to the user.
    pub id: String,
    rx: tokio::sync::oneshot::Receiver<Verdict>,
    on_timeout: Option<Box<dyn FnOnce() -> Verdict + Send>>,
}

impl std::fmt::Debug for PendingReview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReview")
            .field("id", &self.id)
            .finish()
    }
}

impl PendingReview {
    /// A pending review fed by `rx`; `on_timeout` is called when the wait times out and
    /// returns the verdict to report (it should also mark the review expired).
    pub fn new(
        id: String,
        rx: tokio::sync::oneshot::Receiver<Verdict>,
        on_timeout: impl FnOnce() -> Verdict + Send + 'static,
    ) -> Self {
        PendingReview {
            id,
            rx,
            on_timeout: Some(Box::new(on_timeout)),
        }
    }

    /// Waits up to `hold` for a verdict.
    pub async fn wait(self, hold: Duration) -> Verdict {
        self.wait_or_cancel(hold, &tokio_util::sync::CancellationToken::new())
            .await
    }

    /// Waits up to `hold` for a verdict, or until `cancel` fires (the session ended):
    /// either way the review is marked expired through the gate's timeout hook, so it
    /// does not stay pending for a requester who is gone.
    pub async fn wait_or_cancel(
        mut self,
        hold: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Verdict {
        let waited = tokio::select! {
            r = tokio::time::timeout(hold, &mut self.rx) => r.ok().and_then(Result::ok),
            _ = cancel.cancelled() => None,
        };
        match waited {
            Some(v) => v,
            // Timed out, cancelled, or the gate dropped the sender: expired.
            None => match self.on_timeout.take() {
                Some(f) => f(),
                None => Verdict::Expired {
                    review_id: self.id.clone(),
                },
            },
        }
    }
}

/// A gate that rejects every review; the safe default when no reviewers exist.
#[derive(Debug, Default, Clone, Copy)]
pub struct RejectAll;

#[async_trait]
impl ApprovalGate for RejectAll {
    async fn submit(&self, _request: ReviewRequest) -> Submission {
        Submission::Decided(Verdict::Rejected {
            review_id: String::from("none"),
            by: String::from("gateway"),
            reason: String::from("no approval gate configured"),
        })
    }
}

/// How long grants live by default.
pub const DEFAULT_GRANT: Duration = Duration::from_secs(15 * 60);
