//! The relay of a logged-in session: two halves joined by the queue of expected answers.

mod backend;
mod expect;
mod frontend;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hoop_core::Masker;
use hoop_core::sequence::Authorized;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use backend::{Backend, BackendEnd};
pub use expect::{Expect, FAILING_STATEMENT};
pub use frontend::{Frontend, FrontendEnd};

use crate::classify::ClassCache;
use crate::error::PgError;
use crate::io::{FrameReader, FrameWriter};
use crate::messages::{ErrorResponse, Severity};

/// Last activity of a session, for the idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Now.
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Marks activity.
    pub fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last activity.
    pub fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client terminated or closed.
    Client,
    /// The target closed the connection (the client got a FATAL error).
    Target,
    /// The session was ended by the gateway (operator kill, credential expiry, shutdown);
    /// the client gets FATAL 57P01 naming the reason when the registry has one.
    Killed,
    /// No traffic for the idle timeout.
    Idle,
    /// The target began output that the masking cannot read (binary COPY): the session
    /// was ended with FATAL 42501 instead of letting it through.
    Unmaskable,
}

impl RelayEnd {
    /// Text for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayEnd::Client => "client closed",
            RelayEnd::Target => "target closed the connection",
            RelayEnd::Killed => "ended by the gateway",
            RelayEnd::Idle => "idle timeout",
            RelayEnd::Unmaskable => "output that cannot be masked (binary COPY)",
        }
    }
}

/// The FATAL message of a session the gateway ended, with why when it said
/// (`hoop: session terminated by the gateway: credential expired`).
fn killed_message(why: Option<&str>) -> String {
    const BASE: &str = "hoop: session terminated by the gateway";
    match why {
        Some(why) => format!("{BASE}: {why}"),
        None => String::from(BASE),
    }
}

/// Everything the relay needs.
pub struct RelayParts<'a, CR, CW, TR, TW> {
    /// Proof of authorization.
    pub auth: &'a Authorized,
    /// Masker.
    pub masker: &'a dyn Masker,
    /// Classification cache.
    pub cache: &'a ClassCache,
    /// Client reader.
    pub client_reader: FrameReader<CR>,
    /// Client writer.
    pub client_writer: FrameWriter<CW>,
    /// Target reader.
    pub target_reader: FrameReader<TR>,
    /// Target writer.
    pub target_writer: FrameWriter<TW>,
    /// Read-only target.
    pub read_only: bool,
    /// Session cancellation (operator kill, shutdown).
    pub cancel: CancellationToken,
    /// Idle timeout (zero: none).
    pub idle_timeout: Duration,
    /// Messages longer than this are streamed (see
    /// [`PostgresOptions::stream_threshold`](crate::PostgresOptions::stream_threshold)).
    pub stream_threshold: usize,
    /// Largest value the masking inspects (see
    /// [`PostgresOptions::mask_inspect_max`](crate::PostgresOptions::mask_inspect_max)).
    pub mask_inspect_max: usize,
}

/// Relays until either side ends. Returns how it ended and the number of masked values.
pub async fn relay<CR, CW, TR, TW>(
    parts: RelayParts<'_, CR, CW, TR, TW>,
) -> Result<(RelayEnd, u64), PgError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    TR: AsyncRead + Unpin,
    TW: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut parts = parts;
    parts
        .client_reader
        .set_stream_threshold(parts.stream_threshold);
    parts
        .target_reader
        .set_stream_threshold(parts.stream_threshold);
    let (etx, erx) = mpsc::channel(4096);
    let (ntx, nrx) = mpsc::channel(16);
    let stop = parts.cancel.child_token();
    let frontend = Frontend {
        auth: parts.auth,
        reader: parts.client_reader,
        writer: parts.target_writer,
        expects: etx,
        notices: ntx,
        cache: parts.cache,
        read_only: parts.read_only,
        masker: parts.masker,
        activity: &activity,
        statements: HashMap::new(),
        portals: HashMap::new(),
    };
    let mut backend = Backend::new(
        parts.auth,
        parts.masker,
        parts.target_reader,
        parts.client_writer,
        erx,
        nrx,
        &activity,
    )
    .with_inspect_max(parts.mask_inspect_max);
    let idle = parts.idle_timeout;
    let idle_watch = async {
        if idle.is_zero() {
            std::future::pending::<()>().await;
        }
        loop {
            let left = idle.saturating_sub(activity.idle());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    };
    let idle_hit = std::sync::atomic::AtomicBool::new(false);
    let (front, back) = {
        let front = async {
            let r = frontend.run(&stop).await;
            stop.cancel();
            r
        };
        let back = async {
            let r = backend.run(&stop).await;
            stop.cancel();
            r
        };
        // Fires `stop` after the idle timeout, then never completes: the halves end.
        let watch = async {
            idle_watch.await;
            idle_hit.store(true, Ordering::Relaxed);
            stop.cancel();
            std::future::pending::<()>().await;
        };
        let both = async { tokio::join!(front, back) };
        tokio::select! {
            r = both => r,
            () = watch => (Ok(FrontendEnd::Stopped), Ok(BackendEnd::Stopped)),
        }
    };
    let end = if parts.cancel.is_cancelled() {
        RelayEnd::Killed
    } else if idle_hit.load(Ordering::Relaxed) {
        RelayEnd::Idle
    } else {
        match (&front, &back) {
            (_, Err(PgError::Unmaskable(_))) => RelayEnd::Unmaskable,
            (_, Ok(BackendEnd::TargetClosed)) | (_, Err(_)) => RelayEnd::Target,
            _ => RelayEnd::Client,
        }
    };
    let protocol_error = match &front {
        Err(PgError::Codec(e)) => Some(format!("hoop: protocol violation: {e}")),
        Err(PgError::Truncated) => None,
        _ => None,
    };
    let fatal = match end {
        RelayEnd::Client => protocol_error.map(|m| ErrorResponse::new(Severity::Fatal, "08P01", m)),
        RelayEnd::Target => Some(ErrorResponse::new(
            Severity::Fatal,
            "08006",
            "hoop: the target closed the connection",
        )),
        RelayEnd::Killed => Some(ErrorResponse::new(
            Severity::Fatal,
            "57P01",
            killed_message(parts.auth.termination().as_deref()),
        )),
        RelayEnd::Idle => Some(ErrorResponse::new(
            Severity::Fatal,
            "57P05",
            "hoop: session closed after the idle timeout",
        )),
        RelayEnd::Unmaskable => Some(ErrorResponse::new(
            Severity::Fatal,
            "42501",
            "hoop: binary COPY output cannot be masked; the session is ended (use the text or CSV format)",
        )),
    };
    // A message cut short by the end cannot be followed by anything the client could
    // read as a message: the connection just closes.
    if let Some(f) = fatal.filter(|_| !backend.mid_message()) {
        let w = backend.writer();
        let _ = w.push(f.encode().as_bytes()).await;
        let _ = w.flush().await;
    }
    let _ = backend.writer().shutdown().await;
    if let Err(e) = front {
        // A protocol violation by the client: it was refused.
        if !matches!(e, PgError::Refused(_)) {
            return Err(e);
        }
    }
    Ok((end, backend.masked_total()))
}
