//! The registry of live (and recently ended) sessions.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::SessionId;

/// How many ended sessions the registry remembers.
const RECENT: usize = 256;

/// What the registry knows about a session.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: SessionId,
    /// Protocol of its listener.
    pub protocol: String,
    /// Client address.
    pub peer: SocketAddr,
    /// Authenticated subject, once known.
    pub user: Option<String>,
    /// Resource, once known.
    pub resource: Option<String>,
    /// Start time.
    #[serde(with = "crate::recording::time_serde")]
    pub started_at: SystemTime,
    /// End time, for ended sessions.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub ended_at: Option<SystemTime>,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => crate::recording::time_serde::serialize(t, s),
        None => s.serialize_none(),
    }
}

struct Live {
    info: SessionInfo,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Inner {
    live: HashMap<SessionId, Live>,
    recent: VecDeque<SessionInfo>,
}

/// Live and recent sessions; cheap to clone.
#[derive(Clone, Default)]
pub struct SessionRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("live", &self.live_count())
            .finish()
    }
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new live session; dropping the returned handle (its last clone) moves
    /// it to the recent list, with the reason set by [`SessionHandle::set_end_reason`].
    pub fn register(
        &self,
        id: SessionId,
        protocol: &str,
        peer: SocketAddr,
        cancel: CancellationToken,
    ) -> SessionHandle {
        let info = SessionInfo {
            id,
            protocol: protocol.to_owned(),
            peer,
            user: None,
            resource: None,
            started_at: SystemTime::now(),
            ended_at: None,
            end_reason: None,
        };
        self.lock().live.insert(id, Live { info, cancel });
        SessionHandle {
            inner: Arc::new(HandleInner {
                id,
                registry: self.clone(),
                end_reason: Mutex::new(None),
            }),
        }
    }

    /// Live sessions, oldest first.
    pub fn live(&self) -> Vec<SessionInfo> {
        let mut v: Vec<_> = self.lock().live.values().map(|l| l.info.clone()).collect();
        v.sort_by_key(|i| i.started_at);
        v
    }

    /// Recently ended sessions, newest first.
    pub fn recent(&self) -> Vec<SessionInfo> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// One session, live or recent.
    pub fn get(&self, id: SessionId) -> Option<SessionInfo> {
        let g = self.lock();
        g.live
            .get(&id)
            .map(|l| l.info.clone())
            .or_else(|| g.recent.iter().find(|i| i.id == id).cloned())
    }

    /// Number of live sessions.
    pub fn live_count(&self) -> usize {
        self.lock().live.len()
    }

    /// Ends a live session (its adapter sees `ctx.cancel` fire). Returns whether it was live
    /// and not already ending: a session that is being killed, or shut down, but has not yet
    /// left the list is not killed twice. The session's end reason says it was killed by an
    /// operator. Same as [`SessionRegistry::end`] with `"killed by an operator"`.
    pub fn kill(&self, id: SessionId) -> bool {
        self.end(id, "killed by an operator")
    }

    /// Ends a live session for the reason `why` (its adapter sees `ctx.cancel` fire and can
    /// read `why` with [`SessionHandle::termination`]). Returns whether it was live and not
    /// already ending: a session that is already ending (ended by the gateway, or cancelled
    /// at shutdown) is not ended twice, and keeps its first reason. The reason leads the
    /// session's end reason in the registry (`"{why}: {adapter's reason}"`) and in its
    /// recording (see [`crate::sequence::Authorized::finish`]).
    ///
    /// ```
    /// # use hoop_core::server::registry::SessionRegistry;
    /// # use hoop_core::SessionId;
    /// # use tokio_util::sync::CancellationToken;
    /// let registry = SessionRegistry::new();
    /// let id = SessionId::new();
    /// let cancel = CancellationToken::new();
    /// let handle = registry.register(id, "tcp", ([127, 0, 0, 1], 9).into(), cancel.clone());
    /// assert!(registry.end(id, "credential expired"));
    /// assert!(cancel.is_cancelled());
    /// assert_eq!(handle.termination().as_deref(), Some("credential expired"));
    /// assert!(!registry.end(id, "killed by an operator"), "not ended twice");
    /// ```
    pub fn end(&self, id: SessionId, why: &str) -> bool {
        let mut g = self.lock();
        match g.live.get_mut(&id) {
            Some(l) if !l.cancel.is_cancelled() => {
                l.info.end_reason = Some(why.to_owned());
                l.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Why the gateway ended a live session ([`SessionRegistry::end`],
    /// [`SessionRegistry::kill`]); `None` if it did not, or the session left the list.
    pub fn termination(&self, id: SessionId) -> Option<String> {
        self.lock()
            .live
            .get(&id)
            .and_then(|l| l.info.end_reason.clone())
    }

    fn update(&self, id: SessionId, f: impl FnOnce(&mut SessionInfo)) {
        if let Some(l) = self.lock().live.get_mut(&id) {
            f(&mut l.info);
        }
    }

    fn finish(&self, id: SessionId, reason: String) {
        let mut g = self.lock();
        if let Some(mut l) = g.live.remove(&id) {
            l.info.ended_at = Some(SystemTime::now());
            l.info.end_reason = Some(match l.info.end_reason.take() {
                Some(why) => format!("{why}: {reason}"),
                None => reason,
            });
            if g.recent.len() >= RECENT {
                g.recent.pop_front();
            }
            g.recent.push_back(l.info);
        }
    }
}

struct HandleInner {
    id: SessionId,
    registry: SessionRegistry,
    end_reason: Mutex<Option<String>>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        let reason = self
            .end_reason
            .lock()
            .map(|mut g| g.take())
            .unwrap_or_default()
            .unwrap_or_else(|| String::from("closed"));
        self.registry.finish(self.id, reason);
    }
}

/// A session's entry in the registry. Clones share the entry; it moves to the recent list
/// when the last clone drops.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl SessionHandle {
    /// A handle in a private registry, for adapters driven outside a [`super`] server
    /// (tests, embedding).
    pub fn detached(id: SessionId) -> Self {
        SessionRegistry::new().register(
            id,
            "detached",
            SocketAddr::from(([127, 0, 0, 1], 0)),
            CancellationToken::new(),
        )
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// Records the authenticated user.
    pub fn set_user(&self, user: &str) {
        self.inner
            .registry
            .update(self.inner.id, |i| i.user = Some(user.to_owned()));
    }

    /// Records the resource.
    pub fn set_resource(&self, resource: &str) {
        self.inner
            .registry
            .update(self.inner.id, |i| i.resource = Some(resource.to_owned()));
    }

    /// Sets how the session ended (kept when the handle drops).
    pub fn set_end_reason(&self, reason: impl Into<String>) {
        if let Ok(mut g) = self.inner.end_reason.lock() {
            *g = Some(reason.into());
        }
    }

    /// How the session ended, if that was set already.
    pub fn end_reason(&self) -> Option<String> {
        self.inner.end_reason.lock().ok().and_then(|g| g.clone())
    }

    /// Ends this session for the reason `why`: [`SessionRegistry::end`] on its entry.
    /// Returns whether it was live and not already ending.
    pub fn terminate(&self, why: &str) -> bool {
        self.inner.registry.end(self.inner.id, why)
    }

    /// Why the gateway ended this session (an operator's kill, an expired credential), so
    /// the adapter can tell the user; `None` if the gateway did not end it (the client
    /// left, or it was cancelled at shutdown).
    pub fn termination(&self) -> Option<String> {
        self.inner.registry.termination(self.inner.id)
    }

    /// The registry holding this session (for a task that must not keep the entry live,
    /// unlike a handle clone).
    pub(crate) fn registry(&self) -> &SessionRegistry {
        &self.inner.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new live session of `protocol` in `r`: its id, cancel token and handle.
    fn live(r: &SessionRegistry, protocol: &str) -> (SessionId, CancellationToken, SessionHandle) {
        let (id, cancel) = (SessionId::new(), CancellationToken::new());
        let h = r.register(
            id,
            protocol,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            cancel.clone(),
        );
        (id, cancel, h)
    }

    #[test]
    fn register_update_kill_finish() {
        let r = SessionRegistry::new();
        let (id, cancel, h) = live(&r, "tcp");
        h.set_user("alice");
        h.set_resource("db");
        let live = r.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].user.as_deref(), Some("alice"));
        assert!(r.kill(id));
        assert!(cancel.is_cancelled());
        assert!(!r.kill(id), "a session still ending is not killed twice");
        assert_eq!(r.live_count(), 1);
        h.set_end_reason("killed");
        drop(h);
        assert_eq!(r.live_count(), 0);
        let recent = r.recent();
        assert_eq!(
            recent[0].end_reason.as_deref(),
            Some("killed by an operator: killed")
        );
        assert!(!r.kill(id));
    }

    #[test]
    fn end_terminate_termination() {
        let r = SessionRegistry::new();
        let (id, cancel, h) = live(&r, "postgres");
        let (_, other_cancel, other) = live(&r, "postgres");
        assert_eq!(h.termination(), None, "not ended yet");
        assert!(h.terminate("credential expired"));
        assert!(cancel.is_cancelled());
        assert_eq!(h.termination().as_deref(), Some("credential expired"));
        assert_eq!(r.termination(id).as_deref(), Some("credential expired"));
        // Ending again, by any path, neither succeeds nor replaces the first reason.
        assert!(!h.terminate("again"));
        assert!(!r.kill(id));
        assert!(!r.end(id, "something else"));
        assert_eq!(h.termination().as_deref(), Some("credential expired"));
        // The other session is untouched.
        assert!(!other_cancel.is_cancelled());
        assert_eq!(other.termination(), None);

        h.set_end_reason("cancelled");
        drop(h);
        assert_eq!(r.termination(id), None, "left the live list");
        assert_eq!(
            r.get(id).unwrap().end_reason.as_deref(),
            Some("credential expired: cancelled")
        );
        assert!(!r.end(id, "late"));
        assert_eq!(r.live_count(), 1);
    }

    #[test]
    fn a_session_cancelled_at_shutdown_is_not_ended_again() {
        let r = SessionRegistry::new();
        let (_, cancel, h) = live(&r, "tcp");
        cancel.cancel();
        assert!(!h.terminate("credential expired"));
        assert_eq!(h.termination(), None);
    }

    #[test]
    fn kill_is_end_by_an_operator() {
        let r = SessionRegistry::new();
        let (id, _, h) = live(&r, "tcp");
        assert!(r.kill(id));
        assert_eq!(h.termination().as_deref(), Some("killed by an operator"));
    }
}
