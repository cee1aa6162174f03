//! Server tests with plain-TCP adapters (the TLS end-to-end tests are in
//! `tests/double_termination.rs`).

use hoop_testkit::wait::wait_until;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::auth::AuthenticatorChain;
use crate::{Adapter, ClientConn, Error, Services, SessionCtx};

fn services() -> Arc<Services> {
    Arc::new(Services::new(Arc::new(AuthenticatorChain::new())))
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Echoes until EOF or cancellation; reports what it saw of its context.
#[derive(Default)]
struct Echo {
    registry: Option<SessionRegistry>,
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Adapter for Echo {
    fn protocol(&self) -> &'static str {
        "echo"
    }
    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> crate::error::Result<()> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.push(format!("nodelay={}", conn.stream.nodelay().unwrap()));
            if let Some(r) = &self.registry {
                seen.push(format!("registered={}", r.get(ctx.id).is_some()));
            }
            if let Some(m) = ctx.span.metadata() {
                let fields: Vec<&str> = m.fields().iter().map(|f| f.name()).collect();
                seen.push(format!("span={} {}", m.name(), fields.join(",")));
            }
        }
        let mut s = conn.stream;
        let mut buf = [0u8; 1024];
        loop {
            let n = tokio::select! {
                r = s.read(&mut buf) => r?,
                _ = ctx.cancel.cancelled() => {
                    ctx.handle.set_end_reason("cancelled");
                    return Ok(());
                }
            };
            if n == 0 {
                ctx.handle.set_end_reason("client closed");
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        }
    }
}

/// Ignores cancellation; notes when its future is dropped.
struct Stubborn {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Adapter for Stubborn {
    fn protocol(&self) -> &'static str {
        "stubborn"
    }
    async fn serve(&self, _conn: ClientConn, _ctx: SessionCtx) -> crate::error::Result<()> {
        let _guard = SetOnDrop(self.dropped.clone());
        std::future::pending::<()>().await;
        Ok(())
    }
}

async fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn builder_refuses_bad_configurations() {
    let echo: Arc<dyn Adapter> = Arc::new(Echo::default());
    let l = || ListenerConfig::new("a", any_port(), echo.clone());
    let cases = [
        Server::builder().listener(l()).build().await,
        Server::builder().services(services()).build().await,
        Server::builder()
            .services(services())
            .listener(l().max_connections(0))
            .build()
            .await,
        Server::builder()
            .services(services())
            .listener(l().idle_timeout(Duration::ZERO))
            .build()
            .await,
        Server::builder()
            .services(services())
            .listener(l().handshake_timeout(Duration::ZERO))
            .build()
            .await,
        Server::builder()
            .services(services())
            .listener(l())
            .listener(l())
            .build()
            .await,
        Server::builder()
            .services(services())
            .max_connections(0)
            .listener(l())
            .build()
            .await,
    ];
    for (i, c) in cases.into_iter().enumerate() {
        assert!(matches!(c, Err(Error::Config(_))), "case {i}: {c:?}");
    }
}

#[tokio::test]
async fn sessions_get_registry_entry_span_and_nodelay() {
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::fmt().with_test_writer().finish());
    let registry = SessionRegistry::new();
    let echo = Arc::new(Echo {
        registry: Some(registry.clone()),
        ..Echo::default()
    });
    let server = Server::builder()
        .services(services())
        .registry(registry.clone())
        .listener(ListenerConfig::new("one", any_port(), echo.clone()))
        .build()
        .await
        .unwrap();
    let addr = server.local_addr("one").unwrap();
    let handle = server.spawn();
    let mut c = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut c, b"hi").await;
    let live = handle.registry().live();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].protocol, "echo");
    assert_eq!(live[0].peer, c.local_addr().unwrap());
    drop(c);
    wait_until("no live session", || registry.live_count() == 0).await;
    assert_eq!(
        registry.recent()[0].end_reason.as_deref(),
        Some("client closed")
    );
    let seen = echo.seen.lock().unwrap().clone();
    assert!(seen.contains(&String::from("nodelay=true")), "{seen:?}");
    assert!(seen.contains(&String::from("registered=true")), "{seen:?}");
    assert!(
        seen.contains(&String::from(
            "span=session session,peer,listener,protocol,user,resource"
        )),
        "{seen:?}"
    );
    let report = handle.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report, ShutdownReport::default());
}

#[tokio::test]
async fn global_limit_spans_listeners() {
    let echo: Arc<dyn Adapter> = Arc::new(Echo::default());
    let server = Server::builder()
        .services(services())
        .max_connections(1)
        .listener(ListenerConfig::new("a", any_port(), echo.clone()))
        .listener(ListenerConfig::new("b", any_port(), echo.clone()))
        .build()
        .await
        .unwrap();
    let (a, b) = (server.bound_addrs()[0], server.bound_addrs()[1]);
    assert_ne!(a, b);
    let handle = server.spawn();
    let mut first = TcpStream::connect(a).await.unwrap();
    echo_once(&mut first, b"one").await;
    let mut second = TcpStream::connect(b).await.unwrap();
    let _ = second.write_all(b"two").await;
    assert!(closed(&mut second).await, "second connection was served");
    echo_once(&mut first, b"still").await;
    drop(first);
    let registry = handle.registry();
    wait_until("no live session", || registry.live_count() == 0).await;
    let mut third = TcpStream::connect(b).await.unwrap();
    echo_once(&mut third, b"three").await;
}

#[tokio::test]
async fn shutdown_drops_sessions_that_ignore_cancellation() {
    let dropped = Arc::new(AtomicBool::new(false));
    let server = Server::builder()
        .services(services())
        .cancel_grace(Duration::from_millis(100))
        .listener(ListenerConfig::new(
            "s",
            any_port(),
            Arc::new(Stubborn {
                dropped: dropped.clone(),
            }),
        ))
        .build()
        .await
        .unwrap();
    let addr = server.bound_addrs()[0];
    let handle = server.spawn();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let registry = handle.registry();
    wait_until("one live session", || registry.live_count() == 1).await;
    assert_eq!(handle.live_sessions(), 1);
    let report = handle.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        report,
        ShutdownReport {
            live_at_start: 1,
            drained: 0,
            cancelled: 0,
            aborted: 1
        }
    );
    assert!(dropped.load(Ordering::SeqCst), "session future still alive");
    assert!(closed(&mut c).await);
    assert_eq!(registry.live_count(), 0);
    assert_eq!(
        registry.recent()[0].end_reason.as_deref(),
        Some("session ended: aborted at shutdown")
    );
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn run_serves_until_the_signal() {
    let echo: Arc<dyn Adapter> = Arc::new(Echo::default());
    let server = Server::builder()
        .services(services())
        .listener(ListenerConfig::new("r", any_port(), echo))
        .build()
        .await
        .unwrap();
    let addr = server.bound_addrs()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(
        async move {
            let _ = rx.await;
        },
        Duration::from_millis(200),
    ));
    let mut c = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut c, b"x").await;
    tx.send(()).unwrap();
    let report = run.await.unwrap();
    assert_eq!(report.live_at_start, 1);
    assert_eq!(report.cancelled, 1);
    assert!(closed(&mut c).await);
}
