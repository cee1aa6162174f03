//! [`InMemoryGate`]: the built-in approval gate, with an API to list, approve and reject
//! reviews, time-bound grants, and an audit trail of every transition.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::info::{Notifier, ReviewInfo, ReviewState, Transition, TransitionKind};
use super::{ApprovalGate, DEFAULT_GRANT, PendingReview, ReviewRequest, Submission, Verdict};
use crate::{Action, Fingerprint, Identity};

/// Why an approval API call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No review with this id (never existed, or pruned).
    #[error("unknown review {0}")]
    UnknownReview(String),
    /// Reviewers never decide their own requests.
    #[error("a requester cannot decide their own review")]
    SelfApproval,
    /// The reviewer is not in any of the configured reviewer groups.
    #[error("not a reviewer")]
    NotReviewer,
    /// The review was already decided (or expired too long ago to be approved).
    #[error("review {id} is already {}", state.as_str())]
    AlreadyDecided {
        /// Review id.
        id: String,
        /// Its state.
        state: ReviewState,
    },
}

/// Settings of an [`InMemoryGate`].
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// How long an approval lets the identical action (same requester, resource and
    /// action fingerprint) through without a new review (default [`DEFAULT_GRANT`]).
    pub grant_duration: Duration,
    /// How long a review whose hold timed out can still be approved (default 15 min).
    /// Approving it creates the grant, so the user's retry passes; the original command
    /// is not run (its wait has ended).
    pub expired_approvable_for: Duration,
    /// Pending reviews older than this are expired even if nobody waits on them (e.g. the
    /// session closed) (default 1 h).
    pub pending_ttl: Duration,
    /// How long decided reviews stay visible to [`InMemoryGate::get`] (default 1 h).
    pub retain_decided: Duration,
    /// At most this many pending reviews; beyond it new submissions are rejected
    /// ("too many pending reviews", fail closed) (default 1000).
    pub max_pending: usize,
    /// At most this many decided reviews are kept; the oldest go first (default 10 000).
    pub max_decided: usize,
    /// At most this many transitions in [`InMemoryGate::history`] (default 10 000).
    pub max_history: usize,
    /// When not empty, only members of one of these groups may approve or reject.
    pub reviewer_groups: Vec<String>,
    /// Log every transition with `tracing` at info level (default true).
    pub log_transitions: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            grant_duration: DEFAULT_GRANT,
            expired_approvable_for: DEFAULT_GRANT,
            pending_ttl: Duration::from_secs(3600),
            retain_decided: Duration::from_secs(3600),
            max_pending: 1000,
            max_decided: 10_000,
            max_history: 10_000,
            reviewer_groups: Vec::new(),
            log_transitions: true,
        }
    }
}

type Sink = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The built-in approval gate: reviews and grants in memory (one gateway process).
///
/// A cheap handle: clones share the same state. `submit` first looks for a live grant for
/// (requester subject, resource, [`Action::fingerprint`]); if there is one the action is
/// approved at once (a `granted` transition). Otherwise a review `r-xxxxxxxxxx` is created,
/// the [`Notifier`]s are told, and the caller waits on the [`PendingReview`]; when the
/// hold ends without a verdict the review is marked expired. A reviewer calls
/// [`approve`](Self::approve) or [`reject`](Self::reject); an approval creates a grant for
/// [`GateConfig::grant_duration`].
///
/// A review that expired stays approvable for [`GateConfig::expired_approvable_for`]:
/// approving it creates the grant, so a client that could not wait retries and passes.
///
/// ```
/// use std::time::Duration;
/// use hoop_core::approval::{ApprovalGate, GateConfig, InMemoryGate, Submission};
/// use hoop_core::{Action, ActionClass, AuthMethod, Command, Identity, ReviewRequest, SessionId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let gate = InMemoryGate::builder(GateConfig::default())
///     .sink(|t| println!("audit: {} {}", t.kind.as_str(), t.review_id))
///     .build();
/// let request = ReviewRequest {
///     requester: Identity::new("alice", AuthMethod::Oidc),
///     resource: "pg-prod".into(),
///     action: Action::Command(Command {
///         text: "drop table t".into(),
///         verb: "DROP TABLE".into(),
///         class: ActionClass::Destructive,
///         objects: vec!["t".into()],
///     }),
///     reason: "destructive statements need a review".into(),
///     session_id: SessionId::new(),
/// };
/// let Submission::Pending(pending) = gate.submit(request).await else { unreachable!() };
/// let bob = Identity::new("bob", AuthMethod::Oidc);
/// gate.approve(&pending.id, &bob, Some("ticket 42")).unwrap();
/// assert!(pending.wait(Duration::from_secs(5)).await.is_approved());
/// # });
/// ```
#[derive(Clone)]
pub struct InMemoryGate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InMemoryGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryGate")
            .field("config", &self.inner.config)
            .field("notifiers", &self.inner.notifiers.len())
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryGate {
    fn default() -> Self {
        InMemoryGate::new(GateConfig::default())
    }
}

/// Builds an [`InMemoryGate`] with notifiers and an audit sink.
#[must_use]
pub struct InMemoryGateBuilder {
    config: GateConfig,
    notifiers: Vec<Arc<dyn Notifier>>,
    sink: Option<Sink>,
}

impl InMemoryGateBuilder {
    /// Adds a notifier told about every new review.
    pub fn notifier(mut self, notifier: impl Notifier + 'static) -> Self {
        self.notifiers.push(Arc::new(notifier));
        self
    }

    /// Adds a shared notifier.
    pub fn notifier_shared(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Calls `sink` with every transition, in the order of [`InMemoryGate::history`],
    /// e.g. to put it in the gateway's audit trail. It must not block and must not call
    /// back into the gate: to hand transitions to a task, `try_send` them into a bounded
    /// channel.
    pub fn sink(mut self, sink: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The gate.
    pub fn build(self) -> InMemoryGate {
        InMemoryGate {
            inner: Arc::new(Inner {
                config: self.config,
                notifiers: self.notifiers,
                sink: self.sink,
                publish: Mutex::new(()),
                state: Mutex::new(State {
                    reviews: HashMap::new(),
                    grants: HashMap::new(),
                    history: VecDeque::new(),
                    pending: 0,
                    last_prune: Instant::now(),
                }),
            }),
        }
    }
}

struct Inner {
    config: GateConfig,
    notifiers: Vec<Arc<dyn Notifier>>,
    sink: Option<Sink>,
    state: Mutex<State>,
    /// Taken before the state lock is released and held while publishing, so the sink
    /// and the log see transitions in the order of the history.
    publish: Mutex<()>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct GrantKey {
    subject: String,
    resource: String,
    fingerprint: Fingerprint,
}

struct Grant {
    deadline: Instant,
    until: SystemTime,
    by: String,
    review_id: String,
}

struct Review {
    info: ReviewInfo,
    key: GrantKey,
    created: Instant,
    decided: Option<Instant>,
    until: Option<SystemTime>,
    tx: Option<oneshot::Sender<Verdict>>,
}

struct State {
    reviews: HashMap<String, Review>,
    grants: HashMap<GrantKey, Grant>,
    history: VecDeque<Transition>,
    pending: usize,
    last_prune: Instant,
}

/// Transitions collected under the lock and published after it is released.
type Out = Vec<Transition>;

const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `r-` + 10 random base32 characters (50 bits).
fn random_id() -> Option<String> {
    let mut b = [0u8; 10];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    let mut s = String::with_capacity(12);
    s.push_str("r-");
    for x in b {
        s.push(char::from(
            ID_ALPHABET
                .get(usize::from(x & 31))
                .copied()
                .unwrap_or(b'a'),
        ));
    }
    Some(s)
}

fn action_text(action: &Action) -> String {
    match action {
        Action::Connect => String::from("connect"),
        Action::Command(c) => c.text.clone(),
    }
}

fn verdict_of(r: &Review) -> Verdict {
    let review_id = r.info.id.clone();
    match r.info.state {
        ReviewState::Approved => Verdict::Approved {
            review_id,
            by: r.info.decided_by.clone().unwrap_or_default(),
            reason: r.info.decision_reason.clone(),
            until: r.until,
        },
        ReviewState::Rejected => Verdict::Rejected {
            review_id,
            by: r.info.decided_by.clone().unwrap_or_default(),
            reason: r.info.decision_reason.clone().unwrap_or_default(),
        },
        ReviewState::Pending | ReviewState::Expired => Verdict::Expired { review_id },
    }
}

impl State {
    fn push(&mut self, config: &GateConfig, out: &mut Out, t: Transition) {
        self.history.push_back(t.clone());
        while self.history.len() > config.max_history {
            self.history.pop_front();
        }
        out.push(t);
    }

    fn transition(
        &mut self,
        config: &GateConfig,
        out: &mut Out,
        kind: TransitionKind,
        info: &ReviewInfo,
        actor: Option<&str>,
        reason: Option<&str>,
    ) {
        let t = Transition {
            at: SystemTime::now(),
            kind,
            review_id: info.id.clone(),
            requester: info.requester.clone(),
            resource: info.resource.clone(),
            session_id: info.session_id,
            actor: actor.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.push(config, out, t);
    }

    /// Marks the pending review `id` expired.
    fn expire(&mut self, config: &GateConfig, out: &mut Out, id: &str, why: Option<&str>) {
        let now = Instant::now();
        let Some(r) = self.reviews.get_mut(id) else {
            return;
        };
        if r.info.state != ReviewState::Pending {
            return;
        }
        r.info.state = ReviewState::Expired;
        r.decided = Some(now);
        r.tx = None;
        let info = r.info.clone();
        self.pending = self.pending.saturating_sub(1);
        self.transition(config, out, TransitionKind::Expired, &info, None, why);
    }

    /// Drops expired grants and old reviews, expires forgotten pending reviews. Runs at
    /// most once a second unless the decided reviews are over their cap.
    fn prune(&mut self, config: &GateConfig, out: &mut Out) {
        let now = Instant::now();
        let decided = self.reviews.len().saturating_sub(self.pending);
        if now.duration_since(self.last_prune) < Duration::from_secs(1)
            && decided <= config.max_decided
        {
            return;
        }
        self.last_prune = now;
        self.grants.retain(|_, g| g.deadline > now);
        let stale: Vec<String> = self
            .reviews
            .values()
            .filter(|r| {
                r.info.state == ReviewState::Pending
                    && now.duration_since(r.created) > config.pending_ttl
            })
            .map(|r| r.info.id.clone())
            .collect();
        for id in stale {
            self.expire(config, out, &id, Some("pending too long"));
        }
        let keep_for = config.retain_decided.max(config.expired_approvable_for);
        self.reviews.retain(|_, r| match r.decided {
            Some(d) => now.duration_since(d) <= keep_for,
            None => true,
        });
        let decided = self.reviews.len().saturating_sub(self.pending);
        if decided > config.max_decided {
            // Remove the oldest decided reviews, down to 90% of the cap.
            let mut old: Vec<(Instant, String)> = self
                .reviews
                .values()
                .filter_map(|r| r.decided.map(|d| (d, r.info.id.clone())))
                .collect();
            old.sort();
            let target = config.max_decided - config.max_decided / 10;
            for (_, id) in old.into_iter().take(decided.saturating_sub(target)) {
                self.reviews.remove(&id);
            }
        }
    }
}

impl InMemoryGate {
    /// A gate with `config`, no notifier and no sink.
    pub fn new(config: GateConfig) -> Self {
        Self::builder(config).build()
    }

    /// A builder to add notifiers and an audit sink.
    pub fn builder(config: GateConfig) -> InMemoryGateBuilder {
        InMemoryGateBuilder {
            config,
            notifiers: Vec::new(),
            sink: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-made decision visible: every
        // mutation is completed before anything that could panic. Keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the publish lock (while the caller still holds the state lock).
    fn publish_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .publish
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, out: Out, _order: MutexGuard<'_, ()>) {
        for t in &out {
            if self.inner.config.log_transitions {
                info!(
                    review = %t.review_id,
                    transition = t.kind.as_str(),
                    requester = %t.requester,
                    resource = %t.resource,
                    session = %t.session_id,
                    actor = t.actor.as_deref().unwrap_or(""),
                    reason = t.reason.as_deref().unwrap_or(""),
                    "approval"
                );
            }
            if let Some(sink) = &self.inner.sink {
                sink(t);
            }
        }
    }

    /// Reviews waiting for a verdict, oldest first.
    pub fn list_pending(&self) -> Vec<ReviewInfo> {
        let mut out = Vec::new();
        let (mut v, order) = {
            let mut st = self.lock();
            let order = self.publish_lock();
            st.prune(&self.inner.config, &mut out);
            let v: Vec<ReviewInfo> = st
                .reviews
                .values()
                .filter(|r| r.info.state == ReviewState::Pending)
                .map(|r| r.info.clone())
                .collect();
            (v, order)
        };
        self.publish(out, order);
        v.sort_by_key(|r| r.created_at);
        v
    }

    /// Every review still kept (pending and recently decided), oldest first.
    pub fn list(&self) -> Vec<ReviewInfo> {
        let mut v: Vec<ReviewInfo> = self
            .lock()
            .reviews
            .values()
            .map(|r| r.info.clone())
            .collect();
        v.sort_by_key(|r| r.created_at);
        v
    }

    /// One review.
    pub fn get(&self, id: &str) -> Option<ReviewInfo> {
        self.lock().reviews.get(id).map(|r| r.info.clone())
    }

    /// The audit trail of transitions, oldest first (at most
    /// [`GateConfig::max_history`]).
    pub fn history(&self) -> Vec<Transition> {
        self.lock().history.iter().cloned().collect()
    }

    fn check_reviewer(&self, r: &Review, reviewer: &Identity) -> Result<(), ApprovalError> {
        if reviewer.subject == r.info.requester {
            return Err(ApprovalError::SelfApproval);
        }
        let groups = &self.inner.config.reviewer_groups;
        if !groups.is_empty() && !groups.iter().any(|g| reviewer.in_group(g)) {
            return Err(ApprovalError::NotReviewer);
        }
        Ok(())
    }

    /// Approves review `id`: the waiting command (if any) goes ahead and a grant lets the
    /// identical action through until [`GateConfig::grant_duration`] from now.
    ///
    /// Refused for the requester themself, for non-reviewers, and for reviews already
    /// decided (an expired review can be approved for
    /// [`GateConfig::expired_approvable_for`]).
    pub fn approve(
        &self,
        id: &str,
        reviewer: &Identity,
        reason: Option<&str>,
    ) -> Result<Verdict, ApprovalError> {
        let config = &self.inner.config;
        let mut out = Vec::new();
        let (verdict, order) = {
            let mut guard = self.lock();
            let order = self.publish_lock();
            let st = &mut *guard;
            let r = st
                .reviews
                .get_mut(id)
                .ok_or_else(|| ApprovalError::UnknownReview(id.to_owned()))?;
            self.check_reviewer(r, reviewer)?;
            let now = Instant::now();
            match (r.info.state, r.decided) {
                (ReviewState::Pending, _) => st.pending = st.pending.saturating_sub(1),
                (ReviewState::Expired, Some(d))
                    if now.duration_since(d) <= config.expired_approvable_for => {}
                (state, _) => {
                    return Err(ApprovalError::AlreadyDecided {
                        id: id.to_owned(),
                        state,
                    });
                }
            }
            let until = SystemTime::now() + config.grant_duration;
            let deadline = now + config.grant_duration;
            r.info.state = ReviewState::Approved;
            r.info.decided_by = Some(reviewer.subject.clone());
            r.info.decision_reason = reason.map(str::to_owned);
            r.decided = Some(now);
            r.until = Some(until);
            let verdict = Verdict::Approved {
                review_id: id.to_owned(),
                by: reviewer.subject.clone(),
                reason: reason.map(str::to_owned),
                until: Some(until),
            };
            if let Some(tx) = r.tx.take() {
                // The waiter may be gone (hold ended, session closed): the grant remains.
                let _ = tx.send(verdict.clone());
            }
            let info = r.info.clone();
            let key = r.key.clone();
            st.grants.insert(
                key,
                Grant {
                    deadline,
                    until,
                    by: reviewer.subject.clone(),
                    review_id: id.to_owned(),
                },
            );
            st.transition(
                config,
                &mut out,
                TransitionKind::Approved,
                &info,
                Some(&reviewer.subject),
                reason,
            );
            (verdict, order)
        };
        self.publish(out, order);
        Ok(verdict)
    }

    /// Rejects review `id` with `reason` (shown to the requester). A pending or expired
    /// review can be rejected (rejecting an expired one makes sure nobody approves it
    /// later); the requester themself and non-reviewers are refused.
    pub fn reject(
        &self,
        id: &str,
        reviewer: &Identity,
        reason: &str,
    ) -> Result<Verdict, ApprovalError> {
        let config = &self.inner.config;
        let reason = if reason.trim().is_empty() {
            "rejected by reviewer"
        } else {
            reason
        };
        let mut out = Vec::new();
        let (verdict, order) = {
            let mut guard = self.lock();
            let order = self.publish_lock();
            let st = &mut *guard;
            let r = st
                .reviews
                .get_mut(id)
                .ok_or_else(|| ApprovalError::UnknownReview(id.to_owned()))?;
            self.check_reviewer(r, reviewer)?;
            match r.info.state {
                ReviewState::Pending => st.pending = st.pending.saturating_sub(1),
                ReviewState::Expired => {}
                state => {
                    return Err(ApprovalError::AlreadyDecided {
                        id: id.to_owned(),
                        state,
                    });
                }
            }
            r.info.state = ReviewState::Rejected;
            r.info.decided_by = Some(reviewer.subject.clone());
            r.info.decision_reason = Some(reason.to_owned());
            r.decided = Some(Instant::now());
            let verdict = Verdict::Rejected {
                review_id: id.to_owned(),
                by: reviewer.subject.clone(),
                reason: reason.to_owned(),
            };
            if let Some(tx) = r.tx.take() {
                let _ = tx.send(verdict.clone());
            }
            let info = r.info.clone();
            st.transition(
                config,
                &mut out,
                TransitionKind::Rejected,
                &info,
                Some(&reviewer.subject),
                Some(reason),
            );
            (verdict, order)
        };
        self.publish(out, order);
        Ok(verdict)
    }

    /// Called when a hold ends: marks the review expired if still pending and returns the
    /// verdict (a decision that raced with the timeout wins).
    fn on_hold_timeout(&self, id: &str) -> Verdict {
        let mut out = Vec::new();
        let (verdict, order) = {
            let mut st = self.lock();
            let order = self.publish_lock();
            st.expire(&self.inner.config, &mut out, id, None);
            let v = match st.reviews.get(id) {
                Some(r) => verdict_of(r),
                None => Verdict::Expired {
                    review_id: id.to_owned(),
                },
            };
            (v, order)
        };
        self.publish(out, order);
        verdict
    }
}

#[async_trait]
impl ApprovalGate for InMemoryGate {
    async fn submit(&self, request: ReviewRequest) -> Submission {
        let config = &self.inner.config;
        let key = GrantKey {
            subject: request.requester.subject.clone(),
            resource: request.resource.clone(),
            fingerprint: request.action.fingerprint(),
        };
        let info = ReviewInfo {
            id: String::new(),
            requester: request.requester.subject.clone(),
            requester_groups: request.requester.groups.clone(),
            resource: request.resource.clone(),
            action: action_text(&request.action),
            class: request.action.class(),
            fingerprint: key.fingerprint,
            reason: request.reason.clone(),
            session_id: request.session_id,
            created_at: SystemTime::now(),
            state: ReviewState::Pending,
            decided_by: None,
            decision_reason: None,
        };
        let mut out = Vec::new();
        let mut notify = None;
        let (submission, order) = {
            let mut st = self.lock();
            let order = self.publish_lock();
            st.prune(config, &mut out);
            let now = Instant::now();
            let live = st
                .grants
                .get(&key)
                .filter(|g| g.deadline > now)
                .map(|g| (g.review_id.clone(), g.by.clone(), g.until));
            let submission = if let Some((review_id, by, until)) = live {
                let info = ReviewInfo {
                    id: review_id.clone(),
                    ..info
                };
                st.transition(
                    config,
                    &mut out,
                    TransitionKind::Granted,
                    &info,
                    Some(&by),
                    None,
                );
                Submission::Decided(Verdict::Approved {
                    review_id,
                    by,
                    reason: None,
                    until: Some(until),
                })
            } else {
                let id = loop {
                    match random_id() {
                        Some(id) if !st.reviews.contains_key(&id) => break Some(id),
                        Some(_) => continue,
                        None => break None,
                    }
                };
                match id {
                    Some(id) if st.pending < config.max_pending => {
                        let info = ReviewInfo {
                            id: id.clone(),
                            ..info
                        };
                        let (tx, rx) = oneshot::channel();
                        st.reviews.insert(
                            id.clone(),
                            Review {
                                info: info.clone(),
                                key,
                                created: now,
                                decided: None,
                                until: None,
                                tx: Some(tx),
                            },
                        );
                        st.pending += 1;
                        st.transition(
                            config,
                            &mut out,
                            TransitionKind::Requested,
                            &info,
                            None,
                            Some(&info.reason),
                        );
                        notify = Some(info);
                        let gate = self.clone();
                        let id2 = id.clone();
                        Submission::Pending(PendingReview::new(id, rx, move || {
                            gate.on_hold_timeout(&id2)
                        }))
                    }
                    id => {
                        let why = if id.is_some() {
                            "too many pending reviews"
                        } else {
                            "no random review id available"
                        };
                        warn!(requester = %info.requester, resource = %info.resource, why, "review refused");
                        let info = ReviewInfo {
                            id: id.unwrap_or_else(|| String::from("none")),
                            ..info
                        };
                        st.transition(
                            config,
                            &mut out,
                            TransitionKind::Rejected,
                            &info,
                            Some("gateway"),
                            Some(why),
                        );
                        Submission::Decided(Verdict::Rejected {
                            review_id: info.id,
                            by: String::from("gateway"),
                            reason: String::from(why),
                        })
                    }
                }
            };
            (submission, order)
        };
        self.publish(out, order);
        if let Some(info) = notify {
            for n in &self.inner.notifiers {
                n.notify(&info);
            }
        }
        submission
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_safe_and_distinct() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("r-"));
        assert!(a[2..].bytes().all(|c| ID_ALPHABET.contains(&c)));
    }
}
