//! `cleave status --watch`: the status view refreshed live, for a person watching a split or a
//! failover. Above the usual tables it shows each router's throughput (requests per second,
//! from the change of `cleave_router_requests_total` on its `/metrics` between refreshes) and
//! each follower's lag behind its leader (entries, from the applied seqs in the status).
//!
//! Router throughput needs the routers' admin addresses, which the local platform records in
//! `status.json`; on Kubernetes the view shows the lag only.

use super::{read, render, to_value, Source};
use crate::error::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clear the terminal and move to its top-left corner.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// The sum of every `cleave_router_requests_total` sample in a Prometheus text exposition.
pub fn requests_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("cleave_router_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each follower's lag behind its cluster's leader, as `(cluster, node, entries)`.
pub fn lags(v: &Value) -> Vec<(String, String, u64)> {
    let mut out = vec![];
    for c in v["clusters"].as_array().into_iter().flatten() {
        let nodes = c["nodes"].as_array().cloned().unwrap_or_default();
        let Some(leader) = nodes.iter().find(|n| n["role"] == "leader") else {
            continue;
        };
        let at = leader["appliedSeq"].as_u64().unwrap_or(0);
        for n in nodes.iter().filter(|n| n["role"] != "leader") {
            out.push((
                c["name"].as_str().unwrap_or("").to_string(),
                n["name"].as_str().unwrap_or("").to_string(),
                at.saturating_sub(n["appliedSeq"].as_u64().unwrap_or(0)),
            ));
        }
    }
    out
}

/// The live lines above the tables: throughput per router (given `rates`) and follower lags.
pub fn live_lines(v: &Value, rates: &BTreeMap<String, Option<f64>>) -> String {
    let mut out = String::new();
    if !rates.is_empty() {
        out.push_str("THROUGHPUT  ");
        let parts: Vec<String> = rates
            .iter()
            .map(|(name, r)| match r {
                Some(r) => format!("{name} {r:.0} req/s"),
                None => format!("{name} -"),
            })
            .collect();
        out.push_str(&parts.join("  "));
        out.push('\n');
    }
    let lags = lags(v);
    if !lags.is_empty() {
        out.push_str("LAG         ");
        let parts: Vec<String> = lags
            .iter()
            .map(|(c, n, e)| format!("{c}/{n} {e}"))
            .collect();
        out.push_str(&parts.join("  "));
        out.push('\n');
    }
    out
}

/// Refresh every `every` until Ctrl-C.
pub async fn run(source: &Source, every: Duration) -> Result<()> {
    let mut last: BTreeMap<String, (Instant, f64)> = BTreeMap::new();
    loop {
        let view = match read(source).await {
            Ok(status) => {
                let v = to_value(&status);
                let mut rates = BTreeMap::new();
                let routers = v["admin"]["routers"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for (name, addr) in routers {
                    let Some(addr) = addr.as_str() else { continue };
                    let now = Instant::now();
                    let total = match cleave_admin::client::get(addr, "/metrics").await {
                        Ok((200, body)) => Some(requests_total(&body)),
                        _ => None,
                    };
                    let rate = match (total, last.get(&name)) {
                        (Some(t), Some((at, before))) if t >= *before => {
                            Some((t - before) / at.elapsed().as_secs_f64().max(0.001))
                        }
                        _ => None,
                    };
                    if let Some(t) = total {
                        last.insert(name.clone(), (now, t));
                    }
                    rates.insert(name, rate);
                }
                format!("{}{}\n{}", CLEAR, live_lines(&v, &rates), render(&v))
            }
            Err(e) => format!("{CLEAR}cleave status --watch: {e}\n"),
        };
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), view.as_bytes());
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_router_requests() {
        let text = "# TYPE cleave_router_requests_total counter\n\
                    cleave_router_requests_total{command=\"INSERT\",outcome=\"ok\"} 5\n\
                    cleave_router_requests_total{command=\"GET\",outcome=\"ok\"} 2\n\
                    cleave_router_retries_total{reason=\"moved\"} 9\n";
        assert_eq!(requests_total(text), 7.0);
    }

    #[test]
    fn lag_and_throughput_lines() {
        let v = serde_json::json!({"clusters": [{"name": "fc-a", "nodes": [
            {"name": "fc-a-0", "role": "leader", "appliedSeq": 120},
            {"name": "fc-a-1", "role": "follower", "appliedSeq": 100},
            {"name": "fc-a-2", "role": "down", "appliedSeq": 0}]}]});
        let mut rates = BTreeMap::new();
        rates.insert("router-0".to_string(), Some(41.6));
        rates.insert("router-1".to_string(), None);
        let text = live_lines(&v, &rates);
        assert_eq!(
            text,
            "THROUGHPUT  router-0 42 req/s  router-1 -\nLAG         fc-a/fc-a-1 20  fc-a/fc-a-2 120\n"
        );
    }
}
