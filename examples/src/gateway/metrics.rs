//! Prometheus metrics, observed through decorators around the public traits: an
//! [`Adapter`] wrapper counts connections, a [`Policy`] wrapper counts decisions, a
//! [`Masker`] wrapper counts masked values, and a [`Recorder`] wrapper watches session
//! events (command latencies, upstream TLS refusals, approvals).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::BytesMut;
use hoop_core::recording::{RecordError, SessionMeta};
use hoop_core::server::SessionRegistry;
use hoop_core::{
    Action, Adapter, ClientConn, Decision, Event, Field, Masker, Policy, PreparedField, Recorder,
    Recording, Request, SessionCtx,
};

/// Upper bounds (milliseconds) of the command latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// The gateway's counters. Shared (`Arc`) by the decorators and the admin API.
#[derive(Default, Debug)]
pub struct Metrics {
    connections: Mutex<BTreeMap<String, u64>>,
    connections_active: AtomicU64,
    decisions: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    masked_values: AtomicU64,
    tls_refusals: Mutex<BTreeMap<String, u64>>,
    session_errors: AtomicU64,
    recordings_opened: AtomicU64,
    approvals: Mutex<BTreeMap<String, u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
    command_errors: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut g = map.lock().unwrap_or_else(PoisonError::into_inner);
    *g.entry(key).or_insert(0) += 1;
}

fn bump_str(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut g = map.lock().unwrap_or_else(PoisonError::into_inner);
    match g.get_mut(key) {
        Some(v) => *v += 1,
        None => {
            g.insert(key.to_owned(), 1);
        }
    }
}

fn snapshot<K: Clone + Ord>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(K, u64)> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// New, all zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    fn observe_event(&self, event: &Event) {
        match event {
            Event::CommandResult {
                duration_ms, error, ..
            } => {
                for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
                    if duration_ms <= b
                        && let Some(c) = self.latency_buckets.get(i)
                    {
                        c.fetch_add(1, Relaxed);
                    }
                }
                self.latency_count.fetch_add(1, Relaxed);
                self.latency_sum_ms.fetch_add(*duration_ms, Relaxed);
                if error.is_some() {
                    self.command_errors.fetch_add(1, Relaxed);
                }
            }
            Event::Error { message } => {
                self.session_errors.fetch_add(1, Relaxed);
                if let Some(rest) = message.strip_prefix("upstream TLS refused (") {
                    let reason = rest.split(')').next().unwrap_or("unknown");
                    bump_str(&self.tls_refusals, reason);
                }
            }
            Event::Approval { state, .. } => bump_str(&self.approvals, state),
            _ => {}
        }
    }

    /// Total connections accepted on `listener` so far.
    pub fn connections(&self, listener: &str) -> u64 {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(listener)
            .copied()
            .unwrap_or(0)
    }

    /// Values masked so far.
    pub fn masked_values(&self) -> u64 {
        self.masked_values.load(Relaxed)
    }

    /// Decisions of `kind` (`allow`, `deny`, `review`) on `action` (`connect`, `command`).
    pub fn decisions(&self, action: &str, kind: &str) -> u64 {
        snapshot(&self.decisions)
            .into_iter()
            .filter(|((a, k), _)| *a == action && *k == kind)
            .map(|(_, v)| v)
            .sum()
    }

    /// The Prometheus text exposition of every metric (live sessions from `registry`).
    pub fn render(&self, registry: &SessionRegistry) -> String {
        let mut o = String::with_capacity(4096);
        let _ = writeln!(
            o,
            "# HELP hoop_connections_total Connections accepted, by listener."
        );
        let _ = writeln!(o, "# TYPE hoop_connections_total counter");
        for (l, v) in snapshot(&self.connections) {
            let _ = writeln!(
                o,
                "hoop_connections_total{{listener=\"{}\"}} {v}",
                label(&l)
            );
        }
        let _ = writeln!(
            o,
            "# HELP hoop_connections_active Connections being served."
        );
        let _ = writeln!(o, "# TYPE hoop_connections_active gauge");
        let _ = writeln!(
            o,
            "hoop_connections_active {}",
            self.connections_active.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP hoop_sessions_live Live sessions in the registry."
        );
        let _ = writeln!(o, "# TYPE hoop_sessions_live gauge");
        let _ = writeln!(o, "hoop_sessions_live {}", registry.live_count());
        let _ = writeln!(
            o,
            "# HELP hoop_sessions_recorded_total Session recordings opened."
        );
        let _ = writeln!(o, "# TYPE hoop_sessions_recorded_total counter");
        let _ = writeln!(
            o,
            "hoop_sessions_recorded_total {}",
            self.recordings_opened.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP hoop_policy_decisions_total Policy decisions, by action and kind."
        );
        let _ = writeln!(o, "# TYPE hoop_policy_decisions_total counter");
        for ((a, k), v) in snapshot(&self.decisions) {
            let _ = writeln!(
                o,
                "hoop_policy_decisions_total{{action=\"{a}\",decision=\"{k}\"}} {v}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP hoop_masked_values_total Values masked before leaving the gateway."
        );
        let _ = writeln!(o, "# TYPE hoop_masked_values_total counter");
        let _ = writeln!(
            o,
            "hoop_masked_values_total {}",
            self.masked_values.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP hoop_upstream_tls_refusals_total Upstream TLS sessions refused, by reason."
        );
        let _ = writeln!(o, "# TYPE hoop_upstream_tls_refusals_total counter");
        for (r, v) in snapshot(&self.tls_refusals) {
            let _ = writeln!(
                o,
                "hoop_upstream_tls_refusals_total{{reason=\"{}\"}} {v}",
                label(&r)
            );
        }
        let _ = writeln!(
            o,
            "# HELP hoop_session_errors_total Errors recorded in sessions."
        );
        let _ = writeln!(o, "# TYPE hoop_session_errors_total counter");
        let _ = writeln!(
            o,
            "hoop_session_errors_total {}",
            self.session_errors.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP hoop_approvals_total Review transitions seen in sessions, by state."
        );
        let _ = writeln!(o, "# TYPE hoop_approvals_total counter");
        for (s, v) in snapshot(&self.approvals) {
            let _ = writeln!(o, "hoop_approvals_total{{state=\"{}\"}} {v}", label(&s));
        }
        let _ = writeln!(
            o,
            "# HELP hoop_command_errors_total Commands the target answered with an error."
        );
        let _ = writeln!(o, "# TYPE hoop_command_errors_total counter");
        let _ = writeln!(
            o,
            "hoop_command_errors_total {}",
            self.command_errors.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP hoop_command_duration_seconds Time from forwarding a command to its result."
        );
        let _ = writeln!(o, "# TYPE hoop_command_duration_seconds histogram");
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let v = self.latency_buckets.get(i).map_or(0, |c| c.load(Relaxed));
            let le = *b as f64 / 1000.0;
            let _ = writeln!(o, "hoop_command_duration_seconds_bucket{{le=\"{le}\"}} {v}");
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            o,
            "hoop_command_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_ms.load(Relaxed) as f64 / 1000.0;
        let _ = writeln!(o, "hoop_command_duration_seconds_sum {sum}");
        let _ = writeln!(o, "hoop_command_duration_seconds_count {count}");
        o
    }
}

/// Counts the connections of one listener.
pub struct CountingAdapter {
    inner: Arc<dyn Adapter>,
    listener: String,
    metrics: Arc<Metrics>,
}

impl CountingAdapter {
    /// Wraps `inner`, serving listener `listener`.
    pub fn new(inner: Arc<dyn Adapter>, listener: &str, metrics: Arc<Metrics>) -> Self {
        CountingAdapter {
            inner,
            listener: listener.to_owned(),
            metrics,
        }
    }
}

struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[async_trait]
impl Adapter for CountingAdapter {
    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }

    async fn serve(&self, conn: ClientConn, ctx: SessionCtx) -> hoop_core::error::Result<()> {
        bump_str(&self.metrics.connections, &self.listener);
        self.metrics.connections_active.fetch_add(1, Relaxed);
        let _active = Active(&self.metrics.connections_active);
        self.inner.serve(conn, ctx).await
    }
}

/// Counts policy decisions by action (`connect` / `command`) and kind.
pub struct CountingPolicy {
    inner: Arc<dyn Policy>,
    metrics: Arc<Metrics>,
}

impl CountingPolicy {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Policy>, metrics: Arc<Metrics>) -> Self {
        CountingPolicy { inner, metrics }
    }
}

#[async_trait]
impl Policy for CountingPolicy {
    async fn decide(&self, request: &Request<'_>) -> Decision {
        let d = self.inner.decide(request).await;
        let action = match request.action {
            Action::Connect => "connect",
            Action::Command(_) => "command",
        };
        bump(&self.metrics.decisions, (action, d.kind()));
        d
    }
}

/// Counts values the inner masker changed (`Cow::Owned`).
pub struct CountingMasker {
    inner: Arc<dyn Masker>,
    metrics: Arc<Metrics>,
}

impl CountingMasker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Masker>, metrics: Arc<Metrics>) -> Self {
        CountingMasker { inner, metrics }
    }
}

impl Masker for CountingMasker {
    fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
        let out = self.inner.mask(field, value);
        if matches!(out, Cow::Owned(_)) {
            self.metrics.masked_values.fetch_add(1, Relaxed);
        }
        out
    }

    fn mask_counted<'v>(&self, field: &Field<'_>, value: &'v str) -> (Cow<'v, str>, u32) {
        let (out, n) = self.inner.mask_counted(field, value);
        if matches!(out, Cow::Owned(_)) {
            self.metrics.masked_values.fetch_add(1, Relaxed);
        }
        (out, n)
    }

    fn masks_field(&self, field: &Field<'_>) -> bool {
        self.inner.masks_field(field)
    }

    /// Counted here: an adapter that gets a fixed replacement writes it in place of the
    /// value without another call.
    fn replacement_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> Option<&str> {
        let r = self.inner.replacement_prepared(prepared, field);
        if r.is_some() {
            self.metrics.masked_values.fetch_add(1, Relaxed);
        }
        r
    }

    fn is_noop(&self) -> bool {
        self.inner.is_noop()
    }

    fn prepare(&self, field: &Field<'_>) -> PreparedField {
        self.inner.prepare(field)
    }

    fn mask_prepared<'v>(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &'v str,
    ) -> (Cow<'v, str>, u32) {
        let (out, n) = self.inner.mask_prepared(prepared, field, value);
        if matches!(out, Cow::Owned(_)) {
            self.metrics.masked_values.fetch_add(1, Relaxed);
        }
        (out, n)
    }

    fn mask_prepared_into(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &str,
        out: &mut BytesMut,
    ) -> Option<u32> {
        let n = self.inner.mask_prepared_into(prepared, field, value, out);
        if n.is_some() {
            self.metrics.masked_values.fetch_add(1, Relaxed);
        }
        n
    }

    fn masks_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> bool {
        self.inner.masks_prepared(prepared, field)
    }
}

/// Watches the events of every session on their way to the inner recorder.
pub struct ObservingRecorder {
    inner: Arc<dyn Recorder>,
    metrics: Arc<Metrics>,
}

impl ObservingRecorder {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Recorder>, metrics: Arc<Metrics>) -> Self {
        ObservingRecorder { inner, metrics }
    }
}

#[async_trait]
impl Recorder for ObservingRecorder {
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        let inner = self.inner.open(meta).await?;
        self.metrics.recordings_opened.fetch_add(1, Relaxed);
        Ok(Box::new(ObservedRecording {
            inner,
            metrics: self.metrics.clone(),
        }))
    }
}

struct ObservedRecording {
    inner: Box<dyn Recording>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl Recording for ObservedRecording {
    fn record(&self, event: Event) -> Result<(), RecordError> {
        self.metrics.observe_event(&event);
        self.inner.record(event)
    }

    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        self.inner.finish(reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_refusals() {
        let m = Metrics::default();
        m.observe_event(&Event::CommandResult {
            duration_ms: 7,
            rows: Some(1),
            masked_fields: 0,
            error: None,
            status: None,
            bytes_in: None,
        });
        m.observe_event(&Event::Error {
            message: "upstream TLS refused (expired): certificate expired".into(),
        });
        let text = m.render(&SessionRegistry::new());
        assert!(
            text.contains("hoop_command_duration_seconds_bucket{le=\"0.005\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hoop_command_duration_seconds_bucket{le=\"0.01\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hoop_command_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("hoop_upstream_tls_refusals_total{reason=\"expired\"} 1"),
            "{text}"
        );
    }
}
