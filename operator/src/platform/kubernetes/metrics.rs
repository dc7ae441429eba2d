//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` on one small HTTP server.
//!
//! Hand-written on purpose: four endpoints of plain text need no web framework.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The operator's metrics and health flags.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `/readyz` answers 200 once set (the operator reached the API server).
    pub ready: AtomicBool,
    /// Whether this replica holds the Lease.
    pub leader: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `(namespace, result)` → passes.
    reconciles: BTreeMap<(String, String), u64>,
    /// namespace → (sum of seconds, count).
    durations: BTreeMap<String, (f64, u64)>,
    /// namespace → committed table epoch.
    epochs: BTreeMap<String, u64>,
    /// `(namespace, cluster)` → what its status said.
    clusters: BTreeMap<(String, String), ClusterMetrics>,
}

/// A per-cluster metric: name, type, help, and its value for one cluster (`None`: no sample).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ClusterMetrics) -> Option<String>,
);

/// One FileCluster's figures, from its last published status.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ClusterMetrics {
    ready: bool,
    /// Leader changes (kept in the cluster's status, so the count survives operator restarts).
    failovers: u64,
    /// The cluster's epoch.
    epoch: u64,
    /// How long the last failover took, trouble to new leader (seconds), once known.
    last_failover_seconds: Option<f64>,
}

impl Metrics {
    /// A shared, empty registry.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count one pass of namespace `ns` (`result`: `ok`, `invalid` or `error`).
    pub fn reconciled(&self, ns: &str, result: &str, took: Duration) {
        let mut m = self.lock();
        *m.reconciles.entry((ns.into(), result.into())).or_default() += 1;
        let d = m.durations.entry(ns.into()).or_default();
        d.0 += took.as_secs_f64();
        d.1 += 1;
    }

    /// Record what a pass reported.
    pub fn observed(&self, ns: &str, report: &crate::reconcile::status::Report) {
        let mut m = self.lock();
        m.epochs.insert(ns.into(), report.epoch);
        m.clusters.retain(|(n, _), _| n != ns);
        for c in &report.clusters {
            let ready = c
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.is_true());
            let figures = ClusterMetrics {
                ready,
                failovers: c.status.failovers,
                epoch: c.status.epoch,
                last_failover_seconds: c
                    .status
                    .last_failover
                    .as_ref()
                    .and_then(|f| f.duration_ms)
                    .map(|ms| ms as f64 / 1000.0),
            };
            m.clusters.insert((ns.into(), c.name.clone()), figures);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut s = String::new();
        s.push_str("# HELP cleave_operator_leader Whether this replica holds the leader Lease.\n");
        s.push_str("# TYPE cleave_operator_leader gauge\n");
        s.push_str(&format!(
            "cleave_operator_leader {}\n",
            u8::from(self.leader.load(Ordering::Relaxed))
        ));
        s.push_str(
            "# HELP cleave_operator_reconciles_total Reconcile passes per namespace and result.\n",
        );
        s.push_str("# TYPE cleave_operator_reconciles_total counter\n");
        for ((ns, result), n) in &m.reconciles {
            s.push_str(&format!(
                "cleave_operator_reconciles_total{{namespace=\"{ns}\",result=\"{result}\"}} {n}\n"
            ));
        }
        s.push_str(
            "# HELP cleave_operator_reconcile_duration_seconds Time spent in reconcile passes.\n",
        );
        s.push_str("# TYPE cleave_operator_reconcile_duration_seconds summary\n");
        for (ns, (sum, count)) in &m.durations {
            s.push_str(&format!(
                "cleave_operator_reconcile_duration_seconds_sum{{namespace=\"{ns}\"}} {sum}\n\
                 cleave_operator_reconcile_duration_seconds_count{{namespace=\"{ns}\"}} {count}\n"
            ));
        }
        s.push_str(
            "# HELP cleave_table_epoch Epoch of the range table every router acknowledged.\n",
        );
        s.push_str("# TYPE cleave_table_epoch gauge\n");
        for (ns, e) in &m.epochs {
            s.push_str(&format!("cleave_table_epoch{{namespace=\"{ns}\"}} {e}\n"));
        }
        let families: [Family; 4] = [
            (
                "cleave_filecluster_ready",
                "gauge",
                "Whether a FileCluster is Ready.",
                |c| Some(u8::from(c.ready).to_string()),
            ),
            (
                "cleave_filecluster_failovers_total",
                "counter",
                "Leader changes of a FileCluster (failovers and switchovers).",
                |c| Some(c.failovers.to_string()),
            ),
            (
                "cleave_filecluster_epoch",
                "gauge",
                "A FileCluster's leader epoch.",
                |c| Some(c.epoch.to_string()),
            ),
            (
                "cleave_filecluster_last_failover_duration_seconds",
                "gauge",
                "How long the last leader change took, from the trouble to the new leader.",
                |c| c.last_failover_seconds.map(|s| s.to_string()),
            ),
        ];
        for (name, kind, help, value) in families {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for ((ns, c), figures) in &m.clusters {
                if let Some(v) = value(figures) {
                    s.push_str(&format!(
                        "{name}{{namespace=\"{ns}\",filecluster=\"{c}\"}} {v}\n"
                    ));
                }
            }
        }
        s
    }

    /// The answer to `GET path`: status code and body.
    pub fn respond(&self, path: &str) -> (u16, String) {
        match path {
            "/metrics" => (200, self.render()),
            "/healthz" | "/livez" => (200, "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => (200, "ok\n".into()),
            "/readyz" => (503, "not ready\n".into()),
            _ => (404, "not found\n".into()),
        }
    }
}

/// Serve the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            _ = &mut shutdown => return,
            c = listener.accept() => c,
        };
        let Ok((mut sock, _)) = conn else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let read = async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let mut parts = head.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            let (code, body) = if method == "GET" {
                metrics.respond(path)
            } else {
                (405, "method not allowed\n".into())
            };
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let ctype = if path == "/metrics" {
                "text/plain; version=0.0.4; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_readiness() {
        let m = Metrics::new();
        assert_eq!(m.respond("/healthz").0, 200);
        assert_eq!(m.respond("/readyz").0, 503);
        m.ready.store(true, Ordering::Relaxed);
        assert_eq!(m.respond("/readyz").0, 200);
        assert_eq!(m.respond("/nope").0, 404);
    }

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::new();
        m.leader.store(true, Ordering::Relaxed);
        m.reconciled("store", "ok", Duration::from_millis(250));
        m.reconciled("store", "ok", Duration::from_millis(250));
        let text = m.respond("/metrics").1;
        assert!(text.contains("cleave_operator_leader 1\n"));
        assert!(text
            .contains("cleave_operator_reconciles_total{namespace=\"store\",result=\"ok\"} 2\n"));
        assert!(text
            .contains("cleave_operator_reconcile_duration_seconds_sum{namespace=\"store\"} 0.5\n"));
        assert!(text.contains("# TYPE cleave_table_epoch gauge\n"));
    }

    #[test]
    fn failovers_are_counted_per_cluster_from_status() {
        use crate::crd::{Failover, FileClusterStatus};
        use crate::reconcile::status::{ClusterReport, Report};
        let m = Metrics::new();
        let cluster = |name: &str, failovers, epoch, duration_ms: Option<u64>| ClusterReport {
            name: name.into(),
            replicas: 3,
            status: FileClusterStatus {
                failovers,
                epoch,
                last_failover: duration_ms.map(|d| Failover {
                    duration_ms: Some(d),
                    ..Failover::default()
                }),
                ..FileClusterStatus::default()
            },
        };
        let report = Report {
            clusters: vec![
                cluster("fc-a", 3, 7, Some(1250)),
                cluster("fc-b", 0, 1, None),
            ],
            ..Report::default()
        };
        m.observed("store", &report);
        let text = m.render();
        for line in [
            "# TYPE cleave_filecluster_failovers_total counter\n",
            "cleave_filecluster_failovers_total{namespace=\"store\",filecluster=\"fc-a\"} 3\n",
            "cleave_filecluster_failovers_total{namespace=\"store\",filecluster=\"fc-b\"} 0\n",
            "cleave_filecluster_epoch{namespace=\"store\",filecluster=\"fc-a\"} 7\n",
            "cleave_filecluster_last_failover_duration_seconds{namespace=\"store\",filecluster=\"fc-a\"} 1.25\n",
            "cleave_filecluster_ready{namespace=\"store\",filecluster=\"fc-b\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("duration_seconds{namespace=\"store\",filecluster=\"fc-b\"}"));
    }

    #[tokio::test]
    async fn serves_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Metrics::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, m, async {
            let _ = rx.await;
        }));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("ok\n"));
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
