//! [`WebhookNotifier`]: POSTs every new review as JSON to an HTTPS endpoint (a chat
//! bridge, an on-call tool), over verified TLS only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::info::{Notifier, ReviewInfo};
use crate::http_client::HttpsClient;
use crate::recording::time_serde;

/// Settings of a [`WebhookNotifier`].
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Where to POST (`https://` only).
    pub url: String,
    /// Link for reviewers, `{id}` replaced by the review id
    /// (e.g. `https://gateway.example/reviews/{id}`); sent as `approve_url`.
    pub approve_url: Option<String>,
    /// Notifications waiting to be sent; beyond it new ones are dropped and logged
    /// (default 256).
    pub queue_capacity: usize,
    /// Tries per notification (default 3: the first and two retries).
    pub attempts: u32,
    /// Pause before a retry, multiplied by the attempt number (default 1 s).
    pub retry_delay: Duration,
}

impl WebhookConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            approve_url: None,
            queue_capacity: 256,
            attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Why a [`WebhookNotifier`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL is not `https://` with a host.
    #[error("webhook URL must be https:// with a host: {0:?}")]
    BadUrl(String),
    /// Not called inside a Tokio runtime (the sender task cannot start).
    #[error("webhook notifier needs a Tokio runtime")]
    NoRuntime,
}

/// Sends each new review to a webhook from a background task: [`Notifier::notify`]
/// only queues (bounded), so `submit` never waits on the network. Each notification is
/// tried [`WebhookConfig::attempts`] times; failures are logged (`tracing` warn) and
/// counted, never returned.
///
/// The body is
/// `{"id","requester","resource","action","class","reason","session_id","created_at","approve_url"?}`.
/// It includes the command text, which reviewers need to decide: point it only at a
/// destination allowed to see commands.
///
/// ```no_run
/// use hoop_core::approval::{GateConfig, InMemoryGate, WebhookConfig, WebhookNotifier};
/// use hoop_core::http_client::HttpsClient;
/// use hoop_core::tls::UpstreamTls;
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = HttpsClient::new(UpstreamTls::webpki()?);
/// let mut hook = WebhookConfig::new("https://hooks.example.com/hoop");
/// hook.approve_url = Some("https://gateway.example.com/reviews/{id}".into());
/// let gate = InMemoryGate::builder(GateConfig::default())
///     .notifier(WebhookNotifier::new(hook, client)?)
///     .build();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebhookNotifier {
    tx: mpsc::Sender<serde_json::Value>,
    approve_url: Option<String>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The JSON body sent for `review`.
pub fn payload(review: &ReviewInfo, approve_url: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": review.id,
        "requester": review.requester,
        "resource": review.resource,
        "action": review.action,
        "class": review.class.map(|c| c.as_str()).unwrap_or("connect"),
        "reason": review.reason,
        "session_id": review.session_id.to_string(),
        "created_at": time_serde::format_ms(review.created_at),
    });
    if let (Some(template), Some(obj)) = (approve_url, v.as_object_mut()) {
        obj.insert(
            String::from("approve_url"),
            serde_json::Value::String(template.replace("{id}", &review.id)),
        );
    }
    v
}

fn check_url(url: &str) -> Result<(), WebhookError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| WebhookError::BadUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err(WebhookError::BadUrl(url.to_owned()));
    }
    Ok(())
}

impl WebhookNotifier {
    /// Starts the sender task (call inside a Tokio runtime). `client` decides which
    /// servers are trusted.
    pub fn new(config: WebhookConfig, client: HttpsClient) -> Result<Self, WebhookError> {
        check_url(&config.url)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(Stats::default());
        handle.spawn(run(
            rx,
            client,
            config.url,
            config.attempts.max(1),
            config.retry_delay,
            stats.clone(),
        ));
        Ok(WebhookNotifier {
            tx,
            approve_url: config.approve_url,
            stats,
        })
    }

    /// Notifications delivered (2xx answer).
    pub fn sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// Notifications given up after every attempt failed.
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Notifications dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }
}

impl Notifier for WebhookNotifier {
    fn notify(&self, review: &ReviewInfo) {
        let body = payload(review, self.approve_url.as_deref());
        if self.tx.try_send(body).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(review = %review.id, "webhook queue full or closed: notification dropped");
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<serde_json::Value>,
    client: HttpsClient,
    url: String,
    attempts: u32,
    retry_delay: Duration,
    stats: Arc<Stats>,
) {
    while let Some(body) = rx.recv().await {
        let id = body
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let mut delivered = false;
        for attempt in 1..=attempts {
            match client.post_json(&url, &body).await {
                Ok((status, _)) if status.is_success() => {
                    debug!(review = %id, %status, "webhook delivered");
                    delivered = true;
                    break;
                }
                Ok((status, _)) => {
                    warn!(review = %id, %status, attempt, "webhook answered with an error status")
                }
                Err(e) => warn!(review = %id, error = %e, attempt, "webhook request failed"),
            }
            if attempt < attempts {
                tokio::time::sleep(retry_delay.saturating_mul(attempt)).await;
            }
        }
        if delivered {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            warn!(review = %id, attempts, "webhook notification given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("http://hooks.example.com/x").is_err());
        assert!(check_url("https:///x").is_err());
        assert!(check_url("hooks.example.com").is_err());
    }
}
