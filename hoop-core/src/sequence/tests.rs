//! The expiry timer armed by `authorize`, against a real registry and tokio timers.

use hoop_testkit::wait::wait_until;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::recording::{RecordError, Recorder};
use crate::server::registry::SessionRegistry;
use crate::{AuthMethod, Policy, Services, SessionId};

struct AllowAll;

#[async_trait]
impl Policy for AllowAll {
    async fn decide(&self, _request: &Request<'_>) -> Decision {
        Decision::Allow
    }
}

struct NoAuth;

#[async_trait]
impl crate::Authenticator for NoAuth {
    async fn authenticate(&self, _c: &Credential<'_>) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid(String::from("not used")))
    }
}

/// Keeps the end reasons of the recordings it opened.
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<Vec<String>>>);

struct EndRecording(Ends);

#[async_trait]
impl Recording for EndRecording {
    fn record(&self, _event: Event) -> Result<(), RecordError> {
        Ok(())
    }
    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        self.0.0.lock().unwrap().push(reason.to_owned());
        Ok(())
    }
}

#[async_trait]
impl Recorder for Ends {
    async fn open(&self, _meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        Ok(Box::new(EndRecording(self.clone())))
    }
}

struct Session {
    registry: SessionRegistry,
    ctx: SessionCtx,
    ends: Ends,
}

fn session(end_at_expiry: bool) -> Session {
    let registry = SessionRegistry::new();
    let id = SessionId::new();
    let peer = SocketAddr::from(([127, 0, 0, 1], 5432));
    let cancel = CancellationToken::new();
    let handle = registry.register(id, "test", peer, cancel.clone());
    let ends = Ends::default();
    let mut services = Services::new(Arc::new(NoAuth));
    services.policy = Arc::new(AllowAll);
    services.recorder = Arc::new(ends.clone());
    services.end_at_credential_expiry = end_at_expiry;
    let ctx = SessionCtx {
        id,
        peer,
        services: Arc::new(services),
        tls: None,
        cancel,
        handle,
        span: tracing::Span::none(),
        handshake_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(0),
    };
    Session {
        registry,
        ctx,
        ends,
    }
}

fn alice(expires_in: Option<Duration>) -> Authenticated {
    let mut identity = Identity::new("alice", AuthMethod::StaticToken);
    identity.expires_at = expires_in.map(|d| SystemTime::now() + d);
    Authenticated { identity }
}

async fn authorize(s: &Session, expires_in: Option<Duration>) -> Authorized {
    s.ctx
        .authorize(alice(expires_in), Resource::new("db", "test"), "test")
        .await
        .unwrap()
}

#[tokio::test]
async fn the_session_ends_when_the_credential_expires() {
    let s = session(true);
    let a = authorize(&s, Some(Duration::from_millis(200))).await;
    assert!(a.expiry.lock().unwrap().is_some(), "timer armed");
    tokio::time::timeout(Duration::from_secs(30), s.ctx.cancel.cancelled())
        .await
        .expect("the session outlived its credential");
    assert_eq!(a.termination().as_deref(), Some(CREDENTIAL_EXPIRED));
    assert_eq!(
        s.registry.live()[0].end_reason.as_deref(),
        Some(CREDENTIAL_EXPIRED)
    );
    a.finish("ended by the gateway").await.unwrap();
    assert_eq!(
        *s.ends.0.lock().unwrap(),
        vec![String::from("credential expired: ended by the gateway")]
    );
    drop(s.ctx);
    let ended = s.registry.recent();
    assert_eq!(
        ended[0].end_reason.as_deref(),
        Some("credential expired: ended by the gateway")
    );
}

#[tokio::test]
async fn an_already_expired_credential_ends_the_session_at_once() {
    let s = session(true);
    let mut identity = Identity::new("alice", AuthMethod::StaticToken);
    identity.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    let a = s
        .ctx
        .authorize(Authenticated { identity }, Resource::new("db", "test"), "t")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), s.ctx.cancel.cancelled())
        .await
        .expect("an expired credential's session went on");
    assert_eq!(a.termination().as_deref(), Some(CREDENTIAL_EXPIRED));
}

/// The expiry of the tests that drop, finish or renew a session before it: long enough
/// that a slow machine cannot reach it first.
const EXPIRY_NOT_REACHED: Duration = Duration::from_secs(2);

/// The expiry timer's task of an authorized session.
fn timer_task(a: &Authorized) -> tokio::task::AbortHandle {
    a.expiry
        .lock()
        .unwrap()
        .as_ref()
        .map(|t| t.task.clone())
        .unwrap()
}

#[tokio::test]
async fn dropping_authorized_cancels_the_timer() {
    let s = session(true);
    let a = authorize(&s, Some(EXPIRY_NOT_REACHED)).await;
    let timer_task = timer_task(&a);
    assert!(!timer_task.is_finished());
    drop(a);
    wait_until("timer task gone", || timer_task.is_finished()).await;
    // Well past the expiry: the session was never ended.
    tokio::time::sleep(EXPIRY_NOT_REACHED + Duration::from_millis(500)).await;
    assert!(!s.ctx.cancel.is_cancelled());
    assert_eq!(s.ctx.handle.termination(), None);
}

#[tokio::test]
async fn finishing_first_disarms_the_timer() {
    let s = session(true);
    let a = authorize(&s, Some(EXPIRY_NOT_REACHED)).await;
    let timer_task = timer_task(&a);
    a.finish("client closed").await.unwrap();
    wait_until("timer task gone", || timer_task.is_finished()).await;
    tokio::time::sleep(EXPIRY_NOT_REACHED + Duration::from_millis(500)).await;
    assert!(!s.ctx.cancel.is_cancelled());
    assert_eq!(
        *s.ends.0.lock().unwrap(),
        vec![String::from("client closed")]
    );
    drop(s.ctx);
    assert_eq!(
        s.registry.recent()[0].end_reason.as_deref(),
        Some("client closed")
    );
}

#[tokio::test]
async fn off_by_default_and_no_expiry_arm_nothing() {
    let off = session(false);
    assert!(!Services::new(Arc::new(NoAuth)).end_at_credential_expiry);
    let a = authorize(&off, Some(Duration::from_millis(100))).await;
    assert!(a.expiry.lock().unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !off.ctx.cancel.is_cancelled(),
        "option off: session goes on"
    );
    assert_eq!(a.termination(), None);

    let on = session(true);
    let b = authorize(&on, None).await;
    assert!(b.expiry.lock().unwrap().is_none(), "no expiry: no timer");
    assert!(!on.ctx.cancel.is_cancelled());
}

#[tokio::test]
async fn an_operator_kill_is_recorded_with_its_reason() {
    let s = session(false);
    let a = authorize(&s, None).await;
    assert!(s.registry.kill(s.ctx.id));
    assert_eq!(a.termination().as_deref(), Some("killed by an operator"));
    a.finish("cancelled").await.unwrap();
    assert_eq!(
        *s.ends.0.lock().unwrap(),
        vec![String::from("killed by an operator: cancelled")]
    );
}

#[tokio::test]
async fn a_renewed_credential_moves_the_end() {
    let s = session(true);
    let a = authorize(&s, Some(EXPIRY_NOT_REACHED)).await;
    // Renewed before the first expiry with a credential valid for an hour.
    a.credential_renewed(Some(SystemTime::now() + Duration::from_secs(3600)));
    tokio::time::sleep(EXPIRY_NOT_REACHED + Duration::from_millis(500)).await;
    assert!(!s.ctx.cancel.is_cancelled(), "ended at the old expiry");
    // Renewed with one that expires soon: the session ends then.
    a.credential_renewed(Some(SystemTime::now() + Duration::from_millis(200)));
    tokio::time::timeout(Duration::from_secs(30), s.ctx.cancel.cancelled())
        .await
        .expect("the session outlived the renewed credential");
    assert_eq!(a.termination().as_deref(), Some(CREDENTIAL_EXPIRED));
}

#[tokio::test]
async fn renewing_without_an_expiry_lifts_the_end_and_with_one_arms_it() {
    let s = session(true);
    let a = authorize(&s, Some(EXPIRY_NOT_REACHED)).await;
    a.credential_renewed(None);
    tokio::time::sleep(EXPIRY_NOT_REACHED + Duration::from_millis(500)).await;
    assert!(!s.ctx.cancel.is_cancelled(), "a credential without expiry");

    // Opened without an expiry, renewed with one.
    let t = session(true);
    let b = authorize(&t, None).await;
    assert!(b.expiry.lock().unwrap().is_none());
    b.credential_renewed(Some(SystemTime::now() + Duration::from_millis(200)));
    tokio::time::timeout(Duration::from_secs(30), t.ctx.cancel.cancelled())
        .await
        .expect("the session outlived the renewed credential");

    // With the option off, renewing arms nothing.
    let off = session(false);
    let c = authorize(&off, None).await;
    c.credential_renewed(Some(SystemTime::now()));
    assert!(c.expiry.lock().unwrap().is_none());
}
