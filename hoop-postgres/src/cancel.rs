//! CancelRequest routing: each client gets the gateway's own BackendKeyData; a cancel
//! request carrying it is forwarded, over a new verified connection, to the right target
//! backend with the target's key. The target's key never reaches the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hoop_core::sequence::UpstreamSecurity;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::codec::CANCEL_REQUEST_CODE;
use crate::messages::BackendKeyData;

/// Where a cancel goes.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    /// Target address.
    pub addr: SocketAddr,
    /// How to secure the cancel connection (same as the session's).
    pub security: UpstreamSecurity,
    /// The target backend's key.
    pub key: BackendKeyData,
}

type Map = HashMap<(i32, Bytes), CancelTarget>;

/// Gateway-issued cancel keys of live sessions.
#[derive(Clone, Debug, Default)]
pub struct CancelRegistry {
    inner: Arc<Mutex<Map>>,
}

/// Removes a session's key when the session ends.
#[derive(Debug)]
pub struct CancelGuard {
    registry: CancelRegistry,
    id: (i32, Bytes),
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.inner.lock() {
            m.remove(&self.id);
        }
    }
}

impl CancelRegistry {
    /// A new empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a random key for a session (4 bytes for protocol 3.0 clients, 32 for 3.2).
    pub fn issue(&self, target: CancelTarget, long_key: bool) -> (BackendKeyData, CancelGuard) {
        loop {
            let mut raw = [0u8; 36];
            let _ = aws_lc_rs::rand::fill(&mut raw);
            let (pid_bytes, key_bytes) = raw.split_at(4);
            let mut pid_arr = [0u8; 4];
            pid_arr.copy_from_slice(pid_bytes);
            let pid = (i32::from_be_bytes(pid_arr) & 0x7fff_ffff).max(1);
            let key = Bytes::copy_from_slice(
                key_bytes
                    .get(..if long_key { 32 } else { 4 })
                    .unwrap_or(key_bytes),
            );
            let id = (pid, key.clone());
            let Ok(mut m) = self.inner.lock() else {
                continue;
            };
            if m.contains_key(&id) {
                continue;
            }
            m.insert(id.clone(), target);
            return (
                BackendKeyData { pid, key },
                CancelGuard {
                    registry: self.clone(),
                    id,
                },
            );
        }
    }

    /// The target of a gateway key, if a live session has it.
    pub fn lookup(&self, pid: i32, key: &Bytes) -> Option<CancelTarget> {
        self.inner.lock().ok()?.get(&(pid, key.clone())).cloned()
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cancel_packet(key: &BackendKeyData) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + key.key.len());
    b.extend_from_slice(&((12 + key.key.len()) as i32).to_be_bytes());
    b.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    b.extend_from_slice(&key.pid.to_be_bytes());
    b.extend_from_slice(&key.key);
    b
}

/// Sends the cancel request to the target (verified TLS as for the session).
pub async fn forward_cancel(target: &CancelTarget) -> std::io::Result<()> {
    let mut tcp = tokio::net::TcpStream::connect(target.addr).await?;
    let packet = cancel_packet(&target.key);
    match &target.security {
        UpstreamSecurity::Tls { tls, server_name } => {
            crate::upstream::negotiate_tls(&mut tcp).await?;
            let mut s = tls.connect(server_name, tcp).await.map_err(|e| {
                warn!(error = %e, "cancel: target TLS refused");
                std::io::Error::other(e.to_string())
            })?;
            s.write_all(&packet).await?;
            s.flush().await?;
            let _ = s.shutdown().await;
        }
        UpstreamSecurity::PlaintextOptIn => {
            tcp.write_all(&packet).await?;
            let _ = tcp.shutdown().await;
        }
    }
    debug!(addr = %target.addr, "cancel request forwarded");
    Ok(())
}
