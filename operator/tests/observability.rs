//! The monitoring config is checked against what the binaries really export:
//! `config/grafana/cleave.json` parses as a dashboard, `config/prometheus/*.yaml` parse as
//! ServiceMonitor / PodMonitor / PrometheusRule with the alerts docs/operations.md describes,
//! and every `cleave_*` metric that a dashboard query or an alert names is exported by a real
//! `cleave-node`, `cleave-router` or the operator (read from their `/metrics`, whose HELP lines
//! name every family even before it has a sample).
//!
//! (`make k8s-check` renders config/prometheus with `kubectl kustomize` as well.)

use cleave_e2e::metrics::scrape;
use cleave_e2e::{Cluster, ClusterOptions, RouterProc};
use cleave_operator::platform::kubernetes::metrics::Metrics;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `cleave_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = (i..bytes.len())
                .find(|&j| {
                    !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b':')
                })
                .unwrap_or(bytes.len());
            let word = &expr[i..end];
            if word.starts_with("cleave_") {
                out.insert(word.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `name` (as a query names it) is exported: itself, or a histogram's series.
fn exported(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| families.contains(base))
        })
}

/// Every PromQL expression of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = repo().join("config/grafana/cleave.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "cleave-overview");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let panels = dash["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Throughput (router)",
        "Latency p50 / p99 (router)",
        "Replication lag (entries)",
        "Full resyncs and catch-ups",
        "Role changes and failovers",
        "Table epoch",
    ] {
        assert!(
            titles.contains(&want),
            "dashboard lacks panel {want:?}: {titles:?}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut out = vec![];
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        let gp = &p["gridPos"];
        assert!(
            gp["w"].as_u64().unwrap() + gp["x"].as_u64().unwrap() <= 24,
            "panel wider than the grid"
        );
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

/// Every document of the Prometheus config, and every alert expression.
fn prometheus_config() -> (Vec<serde_yaml::Value>, Vec<String>) {
    let mut docs = vec![];
    for f in [
        "monitor.yaml",
        "nodes.yaml",
        "alerts.yaml",
        "kustomization.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join("config/prometheus").join(f)).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value =
                serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{f}: {e}"));
            docs.push(v);
        }
    }
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceMonitor",
            "PodMonitor",
            "PodMonitor",
            "PrometheusRule",
            "Kustomization"
        ]
    );
    let port = |i: usize, key: &str| docs[i]["spec"][key][0]["port"].as_str().map(String::from);
    assert_eq!(port(0, "endpoints").as_deref(), Some("metrics"));
    assert_eq!(port(1, "podMetricsEndpoints").as_deref(), Some("admin"));
    assert_eq!(port(2, "podMetricsEndpoints").as_deref(), Some("admin"));
    let mut alerts = BTreeSet::new();
    let mut exprs = vec![];
    for g in docs[3]["spec"]["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().expect("alert name");
            assert!(alerts.insert(name.to_string()), "duplicate alert {name}");
            assert!(r["for"].as_str().is_some(), "{name}: for");
            let sev = r["labels"]["severity"].as_str();
            assert!(
                matches!(sev, Some("critical" | "warning")),
                "{name}: severity"
            );
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            exprs.push(r["expr"].as_str().expect("expr").to_string());
        }
    }
    for want in [
        "CleaveLeaderMissing",
        "CleaveFollowerLagging",
        "CleaveResyncLoop",
        "CleaveRouterOnOldTable",
    ] {
        assert!(alerts.contains(want), "missing alert {want}");
    }
    (docs, exprs)
}

/// The metric families `/metrics` names (HELP lines and samples).
fn families(scrape: &cleave_e2e::metrics::Metrics) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = scrape.0.docs.keys().cloned().collect();
    out.extend(scrape.names());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    let queries = dashboard_queries();
    let (_, alerts) = prometheus_config();

    let c = Cluster::start(
        "fc-o",
        ClusterOptions {
            size: 2,
            min_in_sync: 1,
            ..Default::default()
        },
    )
    .await;
    let table = c.dir.join("table.yaml");
    std::fs::write(
        &table,
        format!(
            "epoch: 1\nranges:\n- {{start: 0, end: 4294967295, cluster: fc-o}}\nclusters:\n  fc-o:\n    nodes: [\"{}\", \"{}\"]\n    leader: \"{}\"\n",
            c.nodes[0].addr, c.nodes[1].addr, c.nodes[0].addr
        ),
    )
    .unwrap();
    let router = RouterProc::start(&table, &[], &c.dir.join("router.log"));
    // Families whose labels come from traffic (command, outcome, follower) need some.
    router.client().await.insert("/o/a", "x").await.unwrap();
    let mut names = families(&scrape(&c.nodes[0].admin).await);
    names.extend(families(&scrape(&router.admin).await));
    let operator = Metrics::new();
    operator.reconciled("store", "ok", std::time::Duration::from_millis(5));
    operator.observed("store", &sample_report());
    let operator = operator.take_admin().expect("admin").render(false);
    let parsed =
        prometheus_parse::Scrape::parse(operator.lines().map(|l| Ok(l.to_string()))).unwrap();
    names.extend(parsed.docs.keys().cloned());

    let mut unknown = BTreeSet::new();
    for expr in queries.iter().chain(&alerts) {
        let used = metric_names(expr);
        assert!(!used.is_empty(), "a query names no Cleave metric: {expr}");
        for n in used {
            if !exported(&n, &names) {
                unknown.insert(n);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "queried but not exported: {unknown:?}\nexported: {names:?}"
    );
}

/// A report with one cluster and one router, as a pass would publish it.
fn sample_report() -> cleave_operator::reconcile::status::Report {
    serde_json::from_value(serde_json::json!({
        "epoch": 2,
        "ranges": [],
        "routers": [{"name": "router-0", "address": "127.0.0.1:7000", "epoch": 1}],
        "clusters": [{"name": "fc-o", "replicas": 1, "epoch": 1, "failovers": 0}],
        "errors": []
    }))
    .expect("a report")
}

#[test]
fn promql_names_are_found() {
    let n = metric_names("histogram_quantile(0.5, sum by (le) (rate(cleave_a_bucket{x=\"cleave_no\"}[5m]))) / cleave_b");
    assert!(n.contains("cleave_a_bucket") && n.contains("cleave_b"));
    let fams: BTreeSet<String> = ["cleave_a".to_string()].into();
    assert!(exported("cleave_a_bucket", &fams));
    assert!(!exported("cleave_c", &fams));
}
