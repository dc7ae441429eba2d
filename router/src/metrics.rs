//! What a router counts, for `/metrics` on its admin port (`--admin-listen`), and what its
//! `/readyz` means.
//!
//! [`RouterMetrics`] is held by the [`Forwarder`](crate::forward::Forwarder) (shared by every
//! connection) and touched by one-line calls: [`RouterMetrics::timed`] around each routed
//! request, [`RouterMetrics::retry`] where a reply is retried, [`RouterMetrics::bytes`] where
//! frames are read and written. The table epoch, pool connections and open client connections
//! are state, read at scrape time by [`register`].

use crate::route::Outcome;
use crate::server::Shared;
use cleave_admin::prometheus_client::metrics::gauge::Gauge;
use cleave_admin::prometheus_client::registry::Unit;
use cleave_admin::{
    command_label, label, outcome_label, seconds_histograms, Admin, Counters, Histograms,
};
use cleave_proto::Frame;
use futures::FutureExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Counters and histograms of one router.
#[derive(Debug)]
pub struct RouterMetrics {
    requests: Counters,
    request_seconds: Histograms,
    retries: Counters,
    in_flight: Gauge,
    bytes: Counters,
    table_pushes: Counters,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        RouterMetrics {
            requests: Counters::default(),
            request_seconds: seconds_histograms(),
            retries: Counters::default(),
            in_flight: Gauge::default(),
            bytes: Counters::default(),
            table_pushes: Counters::default(),
        }
    }
}

/// One request in flight: the gauge goes down when this is dropped, however the request ends.
struct InFlight(Arc<RouterMetrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The command label of a request frame.
pub fn command_of(request: &Frame) -> String {
    command_label(&request.command_name().unwrap_or_default().into_bytes())
}

fn error_line(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Error(line) => Some(line),
        _ => None,
    }
}

impl RouterMetrics {
    /// Count and time `reply`, the answer to a client request of `command`
    /// ([`command_of`]): in flight until it completes, then counted by command and outcome.
    pub fn timed(
        self: &Arc<Self>,
        command: String,
        reply: impl Future<Output = Frame> + Send + 'static,
    ) -> impl Future<Output = Frame> + Send + 'static {
        let (m, started) = (self.clone(), Instant::now());
        m.in_flight.inc();
        // Decremented when the reply completes or is dropped (its client went away).
        let in_flight = InFlight(m.clone());
        reply.map(move |frame| {
            drop(in_flight);
            let labels = vec![
                ("command", command.clone()),
                ("outcome", outcome_label(error_line(&frame))),
            ];
            m.requests.get_or_create(&labels).inc();
            m.request_seconds
                .get_or_create(&label("command", command))
                .observe(started.elapsed().as_secs_f64());
            frame
        })
    }

    /// A node's reply is being retried, for `reason` ([`retry_reason`]).
    pub fn retry(&self, reason: String) {
        self.retries.get_or_create(&label("reason", reason)).inc();
    }

    /// Payload bytes read from clients (`received`) or written to them.
    pub fn bytes(&self, received: bool, n: usize) {
        let dir = if received { "received" } else { "sent" };
        self.bytes
            .get_or_create(&label("direction", dir))
            .inc_by(n as u64);
    }

    /// A `TABLE.PUSH` was answered (`accepted`, `unchanged` or `refused`).
    pub fn table_push(&self, result: &'static str) {
        self.table_pushes
            .get_or_create(&label("result", result))
            .inc();
    }
}

/// The reasons a reply is retried (see [`retry_reason`]).
pub const RETRY_REASONS: [&str; 6] = [
    "moved",
    "notleader",
    "tryagain",
    "stale",
    "readonly",
    "unreachable",
];

/// Why a node's reply (`last`, classified as `outcome`) is retried: its error code in lower
/// case, or `unreachable`.
pub fn retry_reason(outcome: &Outcome, last: &Frame) -> String {
    match outcome {
        Outcome::Unreachable => "unreachable".to_string(),
        _ => outcome_label(error_line(last)),
    }
}

/// Whether this router serves the committed range table: it has a table, and the operator
/// pushed it (or confirmed it by pushing it again) since this process started. A router that
/// started from an older table file is not ready until then.
pub fn serving_committed_table(shared: &Shared) -> Result<(), String> {
    match shared.tables.current() {
        None => Err("no range table loaded yet".into()),
        Some(_) if !shared.tables.serves_committed() => {
            Err("serving a table from its file, not yet confirmed by the operator".into())
        }
        Some(_) => Ok(()),
    }
}

/// Register the router's metrics and readiness in `admin` (names prefixed `cleave_router_`).
pub fn register(admin: &mut Admin, shared: &Arc<Shared>) {
    let m = shared.forwarder.metrics();
    // Series with known label values exist from the start at 0, so `increase()` and alerts
    // see their first step.
    for reason in RETRY_REASONS {
        let _ = m.retries.get_or_create(&label("reason", reason));
    }
    for dir in ["received", "sent"] {
        let _ = m.bytes.get_or_create(&label("direction", dir));
    }
    for result in ["accepted", "unchanged", "refused"] {
        let _ = m.table_pushes.get_or_create(&label("result", result));
    }
    let r = admin.registry().sub_registry_with_prefix("cleave_router");
    r.register(
        "requests",
        "Client requests answered, by command and outcome (ok or the error code).",
        m.requests.clone(),
    );
    r.register_with_unit(
        "request_duration",
        "Time from a routed request's start to its reply, retries included, by command.",
        Unit::Seconds,
        m.request_seconds.clone(),
    );
    r.register(
        "retries",
        "Node replies retried transparently, by reason (moved, notleader, tryagain, stale, \
         readonly, unreachable).",
        m.retries.clone(),
    );
    r.register(
        "in_flight_requests",
        "Routed requests started and not yet answered.",
        m.in_flight.clone(),
    );
    r.register_with_unit(
        "payload",
        "Payload bytes of client requests (received) and replies (sent).",
        Unit::Bytes,
        m.bytes.clone(),
    );
    r.register(
        "table_pushes",
        "TABLE.PUSH requests, by result (accepted, unchanged, refused).",
        m.table_pushes.clone(),
    );
    let epoch: Gauge = Gauge::default();
    let pool: Gauge = Gauge::default();
    let clients: Gauge = Gauge::default();
    r.register(
        "table_epoch",
        "Epoch of the range table this router serves (0: none).",
        epoch.clone(),
    );
    r.register(
        "pool_connections",
        "Open pooled connections to nodes.",
        pool.clone(),
    );
    r.register(
        "client_connections",
        "Open client connections.",
        clients.clone(),
    );
    let s = shared.clone();
    admin.before_scrape(move || {
        epoch.set(s.tables.current().map_or(0, |t| t.epoch) as i64);
        pool.set(s.forwarder.pool().connections() as i64);
        clients.set(s.stats.open.load(Ordering::Relaxed) as i64);
    });
    let s = shared.clone();
    admin.readiness(move || serving_committed_table(&s));
}
