//! The timer that ends a session when the credential that opened it expires.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{Instrument, info};

use crate::SessionId;
use crate::server::registry::SessionRegistry;

/// The longest single sleep: the deadline is a wall-clock time, so the timer wakes at
/// least this often to re-read the clock (a suspended host, a clock step) instead of
/// trusting one long monotonic sleep.
const MAX_STEP: Duration = Duration::from_secs(60);

/// An armed expiry timer; dropping it cancels the timer.
#[derive(Debug)]
pub(crate) struct ExpiryTimer {
    pub(super) task: AbortHandle,
    deadline: watch::Sender<Option<SystemTime>>,
}

impl Drop for ExpiryTimer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ExpiryTimer {
    /// Arms a timer that ends session `id` of `registry` with the reason `why` at `at`
    /// (at once if `at` has passed). The task holds the registry, not a session handle, so
    /// it never keeps the session's entry live.
    pub(crate) fn arm(
        registry: SessionRegistry,
        id: SessionId,
        at: SystemTime,
        why: &'static str,
    ) -> Self {
        let (deadline, rx) = watch::channel(Some(at));
        let task = tokio::spawn(
            async move {
                if wait(rx).await && registry.end(id, why) {
                    info!(reason = why, "session ended by the gateway");
                }
            }
            .instrument(tracing::Span::current()),
        );
        ExpiryTimer {
            task: task.abort_handle(),
            deadline,
        }
    }

    /// Moves the deadline (`None`: no deadline any more); the timer takes it at once.
    pub(crate) fn reset(&self, at: Option<SystemTime>) {
        self.deadline.send_replace(at);
    }
}

/// Waits until the current deadline has passed (`true`), or the timer is gone (`false`).
async fn wait(mut deadline: watch::Receiver<Option<SystemTime>>) -> bool {
    loop {
        let at = *deadline.borrow_and_update();
        let left = match at {
            None => None,
            Some(at) => match at.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => Some(left),
                _ => return true,
            },
        };
        match left {
            Some(left) => {
                tokio::select! {
                    () = tokio::time::sleep(left.min(MAX_STEP)) => {}
                    changed = deadline.changed() => if changed.is_err() { return false },
                }
            }
            None => {
                if deadline.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}
