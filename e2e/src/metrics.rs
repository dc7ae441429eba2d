//! Scraping a process's `/metrics` in tests: fetched over HTTP, parsed with an independent
//! Prometheus text parser (`prometheus-parse`), looked up by name and labels.

use prometheus_parse::{Scrape, Value};

/// One scrape of a `/metrics` endpoint.
#[derive(Debug)]
pub struct Metrics(pub Scrape);

/// `GET /path` on an admin address: status code and body (panics if it does not answer).
pub async fn get(admin: &str, path: &str) -> (u16, String) {
    cleave_admin::client::get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Scrape `admin`'s `/metrics` and parse it (panics on a bad exposition).
pub async fn scrape(admin: &str) -> Metrics {
    let (code, body) = get(admin, "/metrics").await;
    assert_eq!(code, 200, "GET /metrics on {admin}: {body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    Metrics(Scrape::parse(lines).unwrap_or_else(|e| panic!("parse /metrics: {e}\n{body}")))
}

impl Metrics {
    /// The value of the sample `name` whose labels include `labels` (counter, gauge or
    /// untyped), if there is one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Like [`Metrics::get`], 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The count of the histogram `name` with `labels` (0 when absent).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match &s.value {
                Value::Histogram(h) => h.iter().map(|b| b.count as u64).max(),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Every metric family name in the scrape (samples' names, histograms' base names).
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.0.samples.iter().map(|s| s.metric.clone()).collect()
    }
}
