//! The [`Policy`] trait and the built-in rule policy.

use async_trait::async_trait;

use crate::{Action, Identity, Resource};

pub mod config;
pub mod rules;

pub use config::{PolicyConfig, PolicyConfigError, RuleConfig};
pub use rules::{ActionMatch, NO_RULE_MATCHED, Rule, RuleDecision, RulePolicy};

/// What the policy is asked: may this identity do this action on this resource?
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who asks.
    pub identity: &'a Identity,
    /// On what.
    pub resource: &'a Resource,
    /// What.
    pub action: &'a Action,
}

/// The policy's answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse; `reason` is shown to the user and recorded.
    Deny {
        /// Why.
        reason: String,
    },
    /// Hold for a just-in-time approval by someone else.
    Review {
        /// Why a review is needed.
        reason: String,
    },
}

impl Decision {
    /// A deny with a reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny {
            reason: reason.into(),
        }
    }

    /// A review with a reason.
    pub fn review(reason: impl Into<String>) -> Self {
        Decision::Review {
            reason: reason.into(),
        }
    }

    /// `allow`, `deny` or `review`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Review { .. } => "review",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Review { .. } => 1,
            Decision::Deny { .. } => 2,
        }
    }

    /// The stricter of two decisions (deny > review > allow); on a tie, `self`.
    /// Used for multi-statement commands: the strictest decision wins.
    pub fn stricter(self, other: Decision) -> Decision {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// Decides what an identity may do.
///
/// Called with [`Action::Connect`] before a session opens (the connect decision) and with
/// every classified command inside it. Implementations must fail closed: return
/// [`Decision::Deny`] for anything they do not positively allow.
#[async_trait]
pub trait Policy: Send + Sync {
    /// Decides `request`. Must be cheap for `Allow` on the hot path (no I/O for built-ins).
    async fn decide(&self, request: &Request<'_>) -> Decision;
}

/// A policy that denies everything; the safe default.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

#[async_trait]
impl Policy for DenyAll {
    async fn decide(&self, _request: &Request<'_>) -> Decision {
        Decision::deny("no policy configured")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stricter_orders_deny_review_allow() {
        let a = Decision::Allow;
        let r = Decision::review("r");
        let d = Decision::deny("d");
        assert_eq!(a.clone().stricter(r.clone()), r);
        assert_eq!(r.clone().stricter(d.clone()), d);
        assert_eq!(d.clone().stricter(a.clone()), d);
        assert_eq!(a.clone().stricter(Decision::Allow), a);
    }
}
