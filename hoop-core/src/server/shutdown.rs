//! Graceful shutdown: stop accepting, drain, cancel, and finally drop what is left.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::listener::SessionShared;
use super::registry::SessionRegistry;

/// How long dropped session futures get to be collected after the last step.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// What a shutdown did with the sessions that were live when it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions live when accepting stopped.
    pub live_at_start: usize,
    /// Sessions that ended on their own before the drain deadline.
    pub drained: usize,
    /// Sessions that ended after their cancellation token fired.
    pub cancelled: usize,
    /// Sessions that had to be dropped (did not react to cancellation in time).
    pub aborted: usize,
}

/// Controls a running [`super::Server`].
///
/// Dropping the handle without calling [`ServerHandle::shutdown`] stops accepting and
/// cancels every session at once (nothing keeps running unowned).
#[derive(Debug)]
pub struct ServerHandle {
    shared: SessionShared,
    stop_accept: CancellationToken,
    accept_tasks: Vec<JoinHandle<()>>,
    addrs: Vec<(String, SocketAddr)>,
    cancel_grace: Duration,
    finished: bool,
}

impl ServerHandle {
    pub(crate) fn new(
        shared: SessionShared,
        stop_accept: CancellationToken,
        accept_tasks: Vec<JoinHandle<()>>,
        addrs: Vec<(String, SocketAddr)>,
        cancel_grace: Duration,
    ) -> Self {
        ServerHandle {
            shared,
            stop_accept,
            accept_tasks,
            addrs,
            cancel_grace,
            finished: false,
        }
    }

    /// The registry of this server's sessions.
    pub fn registry(&self) -> SessionRegistry {
        self.shared.registry.clone()
    }

    /// The bound addresses, in the order the listeners were added.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(_, a)| *a).collect()
    }

    /// The bound address of the listener named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Number of sessions whose tasks are still running.
    pub fn live_sessions(&self) -> usize {
        self.shared.tracker.len()
    }

    /// Stops accepting on every listener and closes the listening sockets (new
    /// connections are refused from then on). Live sessions go on. Idempotent.
    pub async fn stop_accepting(&mut self) {
        self.stop_accept.cancel();
        for t in self.accept_tasks.drain(..) {
            if let Err(e) = t.await {
                warn!(error = %e, "accept task ended abnormally");
            }
        }
    }

    /// Graceful shutdown: stops accepting, lets live sessions end on their own for up to
    /// `deadline`, then fires every session's `ctx.cancel` and gives them the server's
    /// cancel grace to end; whatever is still running then is dropped.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.stop_accepting().await;
        let tracker = self.shared.tracker.clone();
        tracker.close();
        let mut report = ShutdownReport {
            live_at_start: tracker.len(),
            ..ShutdownReport::default()
        };
        info!(
            sessions = report.live_at_start,
            deadline_ms = millis(deadline),
            "shutting down: draining sessions"
        );
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            let left = tracker.len();
            report.drained = report.live_at_start.saturating_sub(left);
            info!(
                sessions = left,
                "drain deadline passed: cancelling sessions"
            );
            self.shared.sessions_cancel.cancel();
            if tokio::time::timeout(self.cancel_grace, tracker.wait())
                .await
                .is_err()
            {
                let stuck = tracker.len();
                report.cancelled = left.saturating_sub(stuck);
                report.aborted = stuck;
                warn!(
                    sessions = stuck,
                    "sessions did not end after cancellation: dropping them"
                );
                self.shared.abort.cancel();
                if tokio::time::timeout(ABORT_WAIT, tracker.wait())
                    .await
                    .is_err()
                {
                    warn!(sessions = tracker.len(), "session tasks still running");
                }
            } else {
                report.cancelled = left;
            }
        } else {
            report.drained = report.live_at_start;
        }
        self.finished = true;
        info!(?report, "shutdown complete");
        report
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.stop_accept.cancel();
            self.shared.tracker.close();
            self.shared.sessions_cancel.cancel();
            self.shared.abort.cancel();
        }
    }
}
