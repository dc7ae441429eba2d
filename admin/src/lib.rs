//! `cleave-admin`: the admin HTTP endpoint every Cleave binary serves on its own port —
//! `/metrics`, `/healthz`, `/readyz` — and the few metric helpers they share.
//!
//! Why a crate of its own: `cleave-proto` is the wire protocol with no I/O policy, linked by the
//! CLI and by third-party clients; an HTTP server (warp, hyper) has no place there. The node, the
//! router and the operator (both platforms) all need the same server, the same encoding and the
//! same meaning of health, so it lives here once:
//!
//! - [`Admin`]: a `prometheus-client` [`Registry`] plus the checks behind `/healthz` and
//!   `/readyz`, and hooks run before each scrape (gauges read from live state);
//! - [`server`]: the warp server (Prometheus text 0.0.4 by default, OpenMetrics when asked);
//! - [`Heartbeat`]: "is this loop stuck", for liveness;
//! - [`client`]: a minimal HTTP GET, for tests and `cleave status --watch`.

pub mod client;
pub mod health;
pub mod server;

pub use health::Heartbeat;
pub use prometheus_client;
pub use server::{bind, serve, spawn};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// The admin server's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The admin address could not be bound.
    #[error("cannot listen for admin HTTP on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// An HTTP request of [`client::get`] failed.
    #[error("GET http://{addr}{path}: {message}")]
    Get {
        /// The server.
        addr: String,
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

/// A health check: `Ok` or why not.
pub type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What one binary exposes: its registry and its health checks.
pub struct Admin {
    registry: Registry,
    before_scrape: Vec<Box<dyn Fn() + Send + Sync>>,
    live: Vec<Check>,
    ready: Vec<Check>,
    /// Serialises scrapes, so two hooks never interleave their gauge updates.
    scraping: Mutex<()>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin::new()
    }
}

impl Admin {
    /// An empty registry, always live and ready until checks are added.
    pub fn new() -> Admin {
        Admin {
            registry: Registry::default(),
            before_scrape: Vec::new(),
            live: Vec::new(),
            ready: Vec::new(),
            scraping: Mutex::new(()),
        }
    }

    /// The registry, to register metrics in.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Run `hook` before every scrape (set gauges from live state).
    pub fn before_scrape(&mut self, hook: impl Fn() + Send + Sync + 'static) {
        self.before_scrape.push(Box::new(hook));
    }

    /// Add a liveness check (`/healthz`): failing means "restart me".
    pub fn liveness(&mut self, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.live.push(Box::new(check));
    }

    /// Add a readiness check (`/readyz`): failing means "send me no traffic now".
    pub fn readiness(&mut self, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.ready.push(Box::new(check));
    }

    /// `/healthz`: every liveness check passes.
    pub fn live(&self) -> Result<(), String> {
        self.live.iter().try_for_each(|c| c())
    }

    /// `/readyz`: live, and every readiness check passes.
    pub fn ready(&self) -> Result<(), String> {
        self.live()?;
        self.ready.iter().try_for_each(|c| c())
    }

    /// The exposition: OpenMetrics text (`openmetrics`) or Prometheus text 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        for hook in &self.before_scrape {
            hook();
        }
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing into a String cannot fail; a metric whose encoder failed is left out.
        if encoded.is_err() {
            tracing::warn!("encoding metrics failed; the exposition is incomplete");
        }
        out
    }
}

/// A latency histogram in seconds: 100 µs to ~52 s, doubling (20 buckets).
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// A size histogram (entries, items): 1 to 2^14, doubling (15 buckets).
pub fn count_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// A bounded label value for a command name: upper-case, at most 24 ASCII letters, digits, `.`
/// and `_`; anything else is `other` (labels must not take values from untrusted input).
pub fn command_label(name: &[u8]) -> String {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'_');
    if ok {
        String::from_utf8_lossy(name).to_ascii_uppercase()
    } else {
        "other".into()
    }
}

/// A label set: label names are fixed in code, values are bounded by the caller.
pub type Labels = Vec<(&'static str, String)>;
/// Counters by label set.
pub type Counters = prometheus_client::metrics::family::Family<
    Labels,
    prometheus_client::metrics::counter::Counter,
>;
/// Gauges by label set.
pub type Gauges =
    prometheus_client::metrics::family::Family<Labels, prometheus_client::metrics::gauge::Gauge>;
/// Float gauges by label set.
pub type FloatGauges = prometheus_client::metrics::family::Family<
    Labels,
    prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
>;
/// Latency histograms (seconds, [`seconds_histogram`]) by label set.
pub type Histograms =
    prometheus_client::metrics::family::Family<Labels, Histogram, fn() -> Histogram>;

/// An empty family of latency histograms.
pub fn seconds_histograms() -> Histograms {
    Histograms::new_with_constructor(seconds_histogram)
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

/// The outcome label of a reply: `ok`, or the error code in lower case (`notleader`,
/// `tryagain`, ...), bounded to the codes of the protocol (`err` otherwise).
pub fn outcome_label(error_line: Option<&str>) -> String {
    const CODES: [&str; 12] = [
        "NOTFOUND",
        "EXISTS",
        "BADPATH",
        "TOOLARGE",
        "MOVED",
        "NOTLEADER",
        "STALE",
        "TRYAGAIN",
        "READONLY",
        "WRONGTYPE",
        "NOPROTO",
        "ERR",
    ];
    match error_line {
        None => "ok".into(),
        Some(line) => {
            let code = line.split_whitespace().next().unwrap_or("");
            CODES
                .iter()
                .find(|c| **c == code)
                .map_or("err".into(), |c| c.to_ascii_lowercase())
        }
    }
}
