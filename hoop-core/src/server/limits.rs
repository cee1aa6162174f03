//! Connection limits: a semaphore per listener and an optional global one.
//!
//! A connection beyond a limit is closed at once; nothing waits in a queue inside the
//! gateway (the kernel's accept backlog is the only queue).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most connections one limit may allow (the semaphore's own maximum).
pub const MAX_LIMIT: usize = Semaphore::MAX_PERMITS;

/// Which limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The gateway-wide limit.
    Global,
    /// The listener's own limit.
    Listener,
}

impl LimitHit {
    /// `global` or `listener`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::Global => "global",
            LimitHit::Listener => "listener",
        }
    }
}

/// The permits a live connection holds; dropping them frees the slots.
#[derive(Debug)]
pub struct ConnectionPermit {
    _global: Option<OwnedSemaphorePermit>,
    _listener: OwnedSemaphorePermit,
}

/// The limits that apply to one listener.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    global: Option<Arc<Semaphore>>,
    listener: Arc<Semaphore>,
}

impl ConnectionLimits {
    /// Limits of `max` connections for the listener, and the shared `global` semaphore.
    pub fn new(max: usize, global: Option<Arc<Semaphore>>) -> Self {
        ConnectionLimits {
            global,
            listener: Arc::new(Semaphore::new(max.min(MAX_LIMIT))),
        }
    }

    /// Takes a slot without waiting, or says which limit is reached.
    pub fn try_admit(&self) -> Result<ConnectionPermit, LimitHit> {
        let global = match &self.global {
            Some(g) => Some(
                g.clone()
                    .try_acquire_owned()
                    .map_err(|_| LimitHit::Global)?,
            ),
            None => None,
        };
        let listener = self
            .listener
            .clone()
            .try_acquire_owned()
            .map_err(|_| LimitHit::Listener)?;
        Ok(ConnectionPermit {
            _global: global,
            _listener: listener,
        })
    }

    /// Free slots on this listener.
    pub fn available(&self) -> usize {
        self.listener.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_and_global_limits() {
        let global = Arc::new(Semaphore::new(2));
        let a = ConnectionLimits::new(1, Some(global.clone()));
        let b = ConnectionLimits::new(5, Some(global));
        let p1 = a.try_admit().unwrap();
        assert_eq!(a.try_admit().unwrap_err(), LimitHit::Listener);
        let _p2 = b.try_admit().unwrap();
        assert_eq!(b.try_admit().unwrap_err(), LimitHit::Global);
        drop(p1);
        assert!(b.try_admit().is_ok());
    }
}
