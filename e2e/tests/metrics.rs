//! `/metrics`, `/healthz` and `/readyz` of real nodes and a router after real traffic: every
//! exposition parses with an independent Prometheus parser, and the figures move as the
//! system does — a write raises the write counters and the followers' applied seq, a killed
//! follower's lag grows on the leader and returns to zero once it is back, and a follower cut
//! off from its leader is not ready.

use cleave_e2e::metrics::{get, scrape};
use cleave_e2e::{wait_until, Cluster, ClusterOptions, RouterProc};
use cleave_proto::range::{ClusterMembers, HashRange, RangeTable, HASH_MAX};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn one_cluster_table(c: &Cluster) -> RangeTable {
    let mut clusters = BTreeMap::new();
    clusters.insert(
        c.name.clone(),
        ClusterMembers {
            nodes: c.addrs(),
            leader: Some(c.nodes[0].addr.clone()),
        },
    );
    RangeTable {
        epoch: 1,
        ranges: vec![HashRange {
            start: 0,
            end: HASH_MAX,
            cluster: c.name.clone(),
        }],
        clusters,
    }
}

/// Wait until `admin`'s metric `name{labels}` satisfies `ok`.
async fn wait_metric(
    admin: &str,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(f64) -> bool,
) {
    wait_until(WAIT, what, || async {
        ok(scrape(admin).await.value(name, labels))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_router_metrics_follow_real_traffic() {
    let mut c = Cluster::start(
        "fc-m",
        ClusterOptions {
            size: 3,
            min_in_sync: 1,
            ..Default::default()
        },
    )
    .await;
    let table_path = c.dir.join("table.yaml");
    std::fs::write(
        &table_path,
        serde_yaml::to_string(&one_cluster_table(&c)).unwrap(),
    )
    .unwrap();
    let router = RouterProc::start(&table_path, &[], &c.dir.join("router.log"));
    let (leader, follower) = (c.nodes[0].admin.clone(), c.nodes[1].admin.clone());

    // A router that started from its table file serves it, but is not ready until the
    // operator (here: the test) confirms it is the committed one by pushing it.
    let (code, _) = get(&router.admin, "/readyz").await;
    assert_eq!(
        code, 503,
        "a router on an unconfirmed table file is not ready"
    );
    router
        .client()
        .await
        .push_table(&one_cluster_table(&c))
        .await
        .expect("the same table, pushed again, is acknowledged");
    for admin in [&leader, &follower, &router.admin] {
        assert_eq!(get(admin, "/healthz").await, (200, "ok\n".into()));
        assert_eq!(get(admin, "/readyz").await, (200, "ok\n".into()), "{admin}");
    }
    let before = scrape(&leader).await;
    let inserts_before = before.value(
        "cleave_node_requests_total",
        &[("command", "INSERT"), ("outcome", "ok")],
    );

    // Real traffic through the router: 20 writes, 5 reads, one miss.
    let mut client = router.client().await;
    let mut last_seq = 0;
    for i in 0..20 {
        last_seq = client
            .insert(&format!("/m/f{i}"), vec![b'x'; 100])
            .await
            .unwrap();
    }
    for i in 0..5 {
        client.select(&format!("/m/f{i}")).await.unwrap();
    }
    assert!(client.select("/m/missing").await.is_err());

    let r = scrape(&router.admin).await;
    assert_eq!(
        r.value(
            "cleave_router_requests_total",
            &[("command", "INSERT"), ("outcome", "ok")]
        ),
        20.0
    );
    assert_eq!(
        r.value(
            "cleave_router_requests_total",
            &[("command", "SELECT"), ("outcome", "ok")]
        ),
        5.0
    );
    assert_eq!(
        r.value(
            "cleave_router_requests_total",
            &[("command", "SELECT"), ("outcome", "notfound")]
        ),
        1.0
    );
    assert_eq!(
        r.histogram_count(
            "cleave_router_request_duration_seconds",
            &[("command", "INSERT")]
        ),
        20
    );
    assert_eq!(r.value("cleave_router_table_epoch", &[]), 1.0);
    assert!(r.value("cleave_router_pool_connections", &[]) >= 1.0);
    assert_eq!(r.value("cleave_router_in_flight_requests", &[]), 0.0);
    assert!(
        r.value(
            "cleave_router_payload_bytes_total",
            &[("direction", "received")]
        ) >= 2000.0
    );
    assert!(
        r.value(
            "cleave_router_payload_bytes_total",
            &[("direction", "sent")]
        ) >= 500.0
    );

    let l = scrape(&leader).await;
    let inserts = l.value(
        "cleave_node_requests_total",
        &[("command", "INSERT"), ("outcome", "ok")],
    );
    assert_eq!(
        inserts - inserts_before,
        20.0,
        "the leader counted every write"
    );
    assert!(l.value("cleave_node_applied_seq", &[]) >= last_seq as f64);
    assert_eq!(l.value("cleave_node_role", &[("role", "leader")]), 1.0);
    assert_eq!(l.value("cleave_node_in_sync", &[]), 1.0);
    assert_eq!(l.value("cleave_node_epoch", &[]), 1.0);
    assert!(l.histogram_count("cleave_node_group_commit_batch_writes", &[]) >= 1);
    assert!(
        l.histogram_count(
            "cleave_node_redis_duration_seconds",
            &[("op", "apply_batch")]
        ) >= 1
    );
    wait_metric(
        &follower,
        "cleave_node_applied_seq",
        &[],
        "the follower's applied seq reaches the last write",
        |v| v >= last_seq as f64,
    )
    .await;
    let f = scrape(&follower).await;
    assert_eq!(f.value("cleave_node_role", &[("role", "follower")]), 1.0);
    assert!(
        f.histogram_count(
            "cleave_node_redis_duration_seconds",
            &[("op", "apply_replay")]
        ) >= 1
    );
    assert!(f.value("cleave_node_catchups_total", &[]) >= 1.0);

    // A killed follower falls behind on the leader's books, and catches up once back.
    let lagging = [("follower", "fc-m-2")];
    c.nodes[2].proc.kill9();
    for i in 0..30 {
        client
            .insert(&format!("/m/g{i}"), vec![b'y'; 10])
            .await
            .unwrap();
    }
    wait_metric(
        &leader,
        "cleave_node_follower_lag_entries",
        &lagging,
        "lag of the killed follower >= 30",
        |v| v >= 30.0,
    )
    .await;
    let l = scrape(&leader).await;
    assert!(l.value("cleave_node_follower_lag_seconds", &lagging) > 0.0);
    assert_eq!(
        l.value(
            "cleave_node_follower_lag_entries",
            &[("follower", "fc-m-1")]
        ),
        0.0
    );
    c.nodes[2].restart();
    wait_metric(
        &leader,
        "cleave_node_follower_lag_entries",
        &lagging,
        "lag of the restarted follower back to 0",
        |v| v == 0.0,
    )
    .await;
    assert_eq!(
        scrape(&leader)
            .await
            .value("cleave_node_follower_lag_seconds", &lagging),
        0.0
    );

    // A follower that cannot hear its leader is out of sync: not ready; ready again after.
    c.nodes[0].proc.stop();
    wait_until(WAIT, "the follower reports not ready", || async {
        get(&follower, "/readyz").await.0 == 503
    })
    .await;
    let (_, why) = get(&follower, "/readyz").await;
    assert!(why.contains("out of sync"), "{why}");
    assert_eq!(
        scrape(&follower).await.value("cleave_node_in_sync", &[]),
        0.0
    );
    assert_eq!(
        get(&follower, "/healthz").await.0,
        200,
        "out of sync is not dead"
    );
    c.nodes[0].proc.signal(nix::sys::signal::Signal::SIGCONT);
    wait_until(WAIT, "the follower is ready again", || async {
        get(&follower, "/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_is_ready_once_it_serves_a_table_and_counts_pushes() {
    let c = Cluster::start(
        "fc-r",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let router = RouterProc::start(&c.dir.join("none.yaml"), &[], &c.dir.join("router.log"));
    assert_eq!(get(&router.admin, "/healthz").await.0, 200);
    let (code, why) = get(&router.admin, "/readyz").await;
    assert_eq!((code, why.as_str()), (503, "no range table loaded yet\n"));
    assert_eq!(
        scrape(&router.admin)
            .await
            .value("cleave_router_table_epoch", &[]),
        0.0
    );

    let mut admin = router.client().await;
    let mut table = one_cluster_table(&c);
    table.epoch = 2;
    admin.push_table(&table).await.unwrap();
    admin.push_table(&table).await.unwrap();
    table.epoch = 1;
    assert!(
        admin.push_table(&table).await.is_err(),
        "an older table is refused"
    );

    assert_eq!(get(&router.admin, "/readyz").await, (200, "ok\n".into()));
    let m = scrape(&router.admin).await;
    assert_eq!(m.value("cleave_router_table_epoch", &[]), 2.0);
    let pushes = |r: &str| m.value("cleave_router_table_pushes_total", &[("result", r)]);
    assert_eq!(
        (pushes("accepted"), pushes("unchanged"), pushes("refused")),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(
        m.value("cleave_router_retries_total", &[("reason", "moved")]),
        0.0,
        "from 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_past_the_log_counts_a_full_resync_and_snapshot_bytes() {
    let mut c = Cluster::start(
        "fc-s",
        ClusterOptions {
            size: 2,
            min_in_sync: 0,
            log_capacity: 10,
            ..Default::default()
        },
    )
    .await;
    let (leader, follower) = (c.nodes[0].admin.clone(), c.nodes[1].admin.clone());
    c.nodes[1].proc.kill9();
    let mut client = c.nodes[0].client().await;
    for i in 0..60 {
        client
            .insert(&format!("/s/f{i}"), vec![b'z'; 1000])
            .await
            .unwrap();
    }
    c.nodes[1].restart();
    let ok = [("result", "ok")];
    wait_metric(
        &follower,
        "cleave_node_full_resyncs_total",
        &ok,
        "the follower resynced",
        |v| v >= 1.0,
    )
    .await;
    let f = scrape(&follower).await;
    assert!(f.histogram_count("cleave_node_full_resync_duration_seconds", &[]) >= 1);
    // DUMP payloads are compressed: count bytes, not file sizes; what one received, one sent.
    let received = f.value(
        "cleave_node_snapshot_bytes_total",
        &[("direction", "received")],
    );
    assert!(received > 0.0);
    let l = scrape(&leader).await;
    assert!(l.value("cleave_node_snapshot_bytes_total", &[("direction", "sent")]) >= received);
    wait_metric(
        &leader,
        "cleave_node_log_entries",
        &[],
        "the log is sampled at its cap",
        |v| (1.0..=10.0).contains(&v),
    )
    .await;
    wait_metric(
        &follower,
        "cleave_node_in_sync",
        &[],
        "the resynced follower is in sync",
        |v| v == 1.0,
    )
    .await;
}
