//! Session identifiers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A gateway-unique session identifier: a random 64-bit prefix fixed per process and a
/// counter, printed as 16 hex digits + `-` + counter (e.g. `3f9a0c12d4e5b6a7-42`).
///
/// Identifiers are unique within a process and unpredictable across processes, so a
/// recording file name or an admin API path cannot be guessed from another session's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    prefix: u64,
    seq: u64,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn process_prefix() -> u64 {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            // Falls back to time: still unique per process start.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            return t;
        }
        u64::from_be_bytes(b)
    })
}

impl SessionId {
    /// A new identifier, distinct from every other one made by this process.
    pub fn new() -> Self {
        SessionId {
            prefix: process_prefix(),
            seq: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Parses the form produced by `Display`.
    pub fn parse(s: &str) -> Option<Self> {
        let (p, n) = s.split_once('-')?;
        if p.len() != 16 {
            return None;
        }
        Some(SessionId {
            prefix: u64::from_str_radix(p, 16).ok()?,
            seq: n.parse().ok()?,
        })
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.prefix, self.seq)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip() {
        let a = SessionId::new();
        let b = SessionId::new();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.to_string()), Some(a));
        assert_eq!(SessionId::parse("nothex-1"), None);
    }
}
