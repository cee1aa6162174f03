//! What reviewers and the audit trail see of a review: [`ReviewInfo`], [`Transition`],
//! and the [`Notifier`] trait.

use std::time::SystemTime;

use crate::recording::time_serde;
use crate::{ActionClass, Fingerprint, SessionId};

/// Where a review stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Waiting for a reviewer.
    Pending,
    /// Approved (a grant was created).
    Approved,
    /// Rejected by a reviewer.
    Rejected,
    /// Nobody decided before the hold ended (it may still be approved for a while, so a
    /// retry passes).
    Expired,
}

impl ReviewState {
    /// `pending`, `approved`, `rejected` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
            ReviewState::Expired => "expired",
        }
    }
}

/// A review as shown to reviewers (admin API, webhook).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReviewInfo {
    /// Review id (`r-` and 10 base32 characters).
    pub id: String,
    /// Requester subject.
    pub requester: String,
    /// Requester groups.
    pub requester_groups: Vec<String>,
    /// Resource name.
    pub resource: String,
    /// The command text (`connect` for a session).
    pub action: String,
    /// The command's class (`None` for a connect).
    pub class: Option<ActionClass>,
    /// Fingerprint of the action (what a grant is keyed on).
    pub fingerprint: Fingerprint,
    /// Why the policy asked for a review.
    pub reason: String,
    /// The session the request comes from.
    pub session_id: SessionId,
    /// When it was submitted.
    #[serde(with = "time_serde")]
    pub created_at: SystemTime,
    /// Where it stands.
    pub state: ReviewState,
    /// Who decided (approved or rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The reviewer's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
}

/// What happened to a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// A review was created.
    Requested,
    /// A reviewer approved it.
    Approved,
    /// A reviewer (or the gate itself, e.g. too many pending reviews) rejected it.
    Rejected,
    /// The hold ended without a verdict.
    Expired,
    /// A live grant let an identical action through without a new review.
    Granted,
}

impl TransitionKind {
    /// `requested`, `approved`, `rejected`, `expired` or `granted` (the `state` of an
    /// [`Event::Approval`](crate::Event::Approval)).
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Requested => "requested",
            TransitionKind::Approved => "approved",
            TransitionKind::Rejected => "rejected",
            TransitionKind::Expired => "expired",
            TransitionKind::Granted => "granted",
        }
    }
}

/// One entry of the approval audit trail.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    /// When.
    #[serde(with = "time_serde")]
    pub at: SystemTime,
    /// What happened.
    pub kind: TransitionKind,
    /// The review (for `granted`, the review whose approval created the grant).
    pub review_id: String,
    /// Requester subject.
    pub requester: String,
    /// Resource name.
    pub resource: String,
    /// Session of the request.
    pub session_id: SessionId,
    /// Reviewer (approved, rejected, and for granted the original approver), or
    /// `gateway` when the gate decided by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Reason (reviewer's, or the gate's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Told about every new review (to page reviewers: webhook, chat, e-mail).
///
/// Called synchronously from [`ApprovalGate::submit`](super::ApprovalGate::submit), outside
/// the gate's lock: implementations must not block (queue the work, like
/// [`WebhookNotifier`](super::WebhookNotifier)).
pub trait Notifier: Send + Sync {
    /// A review was created.
    fn notify(&self, review: &ReviewInfo);
}
