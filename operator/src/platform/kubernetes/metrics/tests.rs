use super::*;
use cleave_admin::client::get;

fn scrape(m: &Metrics) -> (String, Admin) {
    let admin = m.take_admin().expect("admin");
    (admin.render(false), admin)
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn health_and_readiness() {
    let m = Metrics::with_bound(Duration::from_millis(30));
    let (_, admin) = scrape(&m);
    assert!(admin.live().is_ok());
    assert!(admin.ready().unwrap_err().contains("standby"));
    m.leader.store(true, Ordering::Relaxed);
    assert!(admin.ready().is_ok());
    m.heartbeat.busy();
    std::thread::sleep(Duration::from_millis(40));
    assert!(
        admin.live().is_err(),
        "a pass stuck past the bound fails /healthz"
    );
    assert!(admin.ready().is_err());
    m.heartbeat.idle();
    assert!(admin.ready().is_ok());
}

#[test]
fn metrics_render_in_prometheus_text_format() {
    let m = Metrics::new();
    m.leader.store(true, Ordering::Relaxed);
    m.reconciled("store", "ok", Duration::from_millis(250));
    m.reconciled("store", "ok", Duration::from_millis(250));
    m.lease_renewal(true);
    let (text, _) = scrape(&m);
    let s = parse(&text);
    assert_eq!(value(&s, "cleave_operator_leader", &[]), Some(1.0));
    let renewals = |r| value(&s, "cleave_operator_lease_renewals_total", &[("result", r)]);
    assert_eq!((renewals("ok"), renewals("failed")), (Some(1.0), Some(0.0)));
    assert_eq!(
        value(
            &s,
            "cleave_operator_reconciles_total",
            &[("namespace", "store"), ("result", "ok")]
        ),
        Some(2.0)
    );
    assert!(
        text.contains("cleave_operator_reconcile_duration_seconds_sum{namespace=\"store\"} 0.5\n"),
        "{text}"
    );
}

#[test]
fn failovers_and_role_changes_are_counted_per_cluster_from_status() {
    use crate::crd::{Failover, FileClusterStatus, NodeState};
    use crate::reconcile::status::{ClusterReport, Report};
    let m = Metrics::new();
    let node = |name: &str, role: &str| NodeState {
        name: name.into(),
        role: role.into(),
        address: String::new(),
        redis: String::new(),
        pid: None,
        applied_seq: 0,
        in_sync: true,
    };
    let cluster =
        |name: &str, failovers, epoch, duration_ms: Option<u64>, leader: &str| ClusterReport {
            name: name.into(),
            replicas: 3,
            status: FileClusterStatus {
                failovers,
                epoch,
                nodes: vec![
                    node(
                        &format!("{name}-0"),
                        if leader == "0" { "leader" } else { "follower" },
                    ),
                    node(
                        &format!("{name}-1"),
                        if leader == "1" { "leader" } else { "follower" },
                    ),
                ],
                last_failover: duration_ms.map(|d| Failover {
                    duration_ms: Some(d),
                    ..Failover::default()
                }),
                ..FileClusterStatus::default()
            },
        };
    let report = |leader_a: &str, failovers_a| Report {
        epoch: 3,
        clusters: vec![
            cluster("fc-a", failovers_a, 7, Some(1250), leader_a),
            cluster("fc-b", 0, 1, None, "none"),
        ],
        ..Report::default()
    };
    m.observed("store", &report("0", 3));
    m.observed("store", &report("1", 4));
    let (text, _) = scrape(&m);
    let s = parse(&text);
    let a = [("namespace", "store"), ("filecluster", "fc-a")];
    let b = [("namespace", "store"), ("filecluster", "fc-b")];
    assert_eq!(
        value(&s, "cleave_filecluster_failovers_total", &a),
        Some(4.0)
    );
    assert_eq!(
        value(&s, "cleave_filecluster_failovers_total", &b),
        Some(0.0)
    );
    assert_eq!(value(&s, "cleave_filecluster_epoch", &a), Some(7.0));
    assert_eq!(
        value(&s, "cleave_filecluster_last_failover_duration_seconds", &a),
        Some(1.25)
    );
    assert_eq!(
        value(&s, "cleave_filecluster_last_failover_duration_seconds", &b),
        None
    );
    assert_eq!(value(&s, "cleave_filecluster_ready", &b), Some(0.0));
    assert_eq!(
        value(&s, "cleave_filecluster_role_changes_total", &a),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "cleave_filecluster_leader_missing", &b),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "cleave_filecluster_leader_missing", &a),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "cleave_table_epoch", &[("namespace", "store")]),
        Some(3.0)
    );
}

#[tokio::test]
async fn serves_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let m = Metrics::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let liveness = std::sync::Arc::new(crate::platform::kubernetes::liveness::Liveness::new(
        std::time::Duration::from_secs(15),
        std::time::Duration::from_secs(240),
    ));
    let server = tokio::spawn(serve(listener, m.clone(), liveness, async {
        let _ = rx.await;
    }));
    assert_eq!(get(&addr, "/healthz").await.unwrap(), (200, "ok\n".into()));
    assert_eq!(get(&addr, "/readyz").await.unwrap().0, 503);
    m.leader.store(true, Ordering::Relaxed);
    assert_eq!(get(&addr, "/readyz").await.unwrap().0, 200);
    let (code, body) = get(&addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("cleave_operator_leader 1\n"), "{body}");
    tx.send(()).unwrap();
    server.await.unwrap();
}
