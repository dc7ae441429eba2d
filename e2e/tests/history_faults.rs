//! Concurrent clients under faults, every operation recorded and the history checked
//! afterwards (see `cleave_e2e::history`): no acknowledged write lost, no stale, phantom or
//! non-monotonic read, seqs unique and ordered.

use cleave_e2e::workload::Workload;
use cleave_e2e::{assert_history, wait_until, Cluster, ClusterOptions, System};
use nix::sys::signal::Signal;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// Take final reads through every address given and check the whole history.
async fn finish(
    w: &Workload,
    mut history: cleave_e2e::History,
    addrs: &[String],
    min_acked: usize,
) {
    for addr in addrs {
        w.final_reads(&mut history, addr).await;
    }
    assert_history(&history, min_acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_while_a_follower_is_killed_and_restarted() {
    let mut c = Cluster::start("hkill", ClusterOptions::default()).await;
    let mut w = Workload::new(vec![c.nodes[0].addr.clone()]);
    w.prefix = "k".into();
    w.duration = Duration::from_secs(10);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.nodes[2].proc.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.nodes[2].restart();
    let history = load.await.unwrap();
    c.wait_converged(CONVERGE).await;
    finish(&w, history, &c.addrs(), 100).await;
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_while_a_stalled_follower_resyncs_fully_with_reads_on_every_node() {
    let opts = ClusterOptions {
        log_capacity: 50,
        ..ClusterOptions::default()
    };
    let c = Cluster::start("hstall", opts).await;
    let mut w = Workload::new(vec![c.nodes[0].addr.clone()]);
    w.read_addrs = c.addrs();
    w.prefix = "s".into();
    w.duration = Duration::from_secs(12);
    w.timeout = Duration::from_secs(2);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = c.nodes[2].status().await.unwrap().applied_seq;
    c.nodes[2].proc.stop();
    wait_until(
        Duration::from_secs(20),
        "the leader's log moves past the stopped follower",
        || async {
            c.nodes[0]
                .status()
                .await
                .is_some_and(|s| s.log_first_seq > stopped_at + 1)
        },
    )
    .await;
    c.nodes[2].proc.signal(Signal::SIGCONT);
    wait_until(CONVERGE, "node 2 completes a full resync", || async {
        c.nodes[2]
            .status()
            .await
            .is_some_and(|s| s.full_resyncs >= 1)
    })
    .await;
    let history = load.await.unwrap();
    c.wait_converged(CONVERGE).await;
    finish(&w, history, &c.addrs(), 100).await;
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_through_two_routers_over_two_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let mut sys = System::start(dir.path(), ClusterOptions::default()).await;
    sys.add_router();
    let mut w = Workload::new(sys.router_addrs());
    w.prefix = "r".into();
    w.roots = 6;
    w.files_per_root = 3;
    w.duration = Duration::from_secs(10);
    let clusters: std::collections::BTreeSet<String> =
        w.paths().iter().map(|p| sys.cluster_of(p)).collect();
    assert_eq!(clusters.len(), 2, "the paths span both clusters");
    let mut history = w.run().await;
    history.set_clusters(|p| sys.cluster_of(p));
    for c in &sys.clusters {
        c.wait_converged(CONVERGE).await;
    }
    finish(&w, history, &sys.router_addrs(), 100).await;
}

/// Issue 7 item 5: a leader frozen with `SIGSTOP` is deposed by hand (node 1 leads at epoch 2,
/// node 2 follows it), then continued: while it still believes it leads, it must serve no
/// stale read and acknowledge no write; then it rejoins as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_when_a_frozen_leader_is_deposed_and_continued() {
    let c = Cluster::start("hdepose", ClusterOptions::default()).await;
    let mut w = Workload::new(c.addrs());
    w.read_addrs = c.addrs();
    w.prefix = "d".into();
    w.duration = Duration::from_secs(12);
    w.timeout = Duration::from_secs(2);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.nodes[0].proc.stop();
    c.nodes[1].client().await.lead(2).await.unwrap();
    c.nodes[2]
        .client()
        .await
        .follow(2, &c.nodes[1].addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.nodes[0].proc.signal(Signal::SIGCONT);
    // Readers (and writers) aimed at the old leader only, while it still believes it leads.
    let mut stale = w.clone();
    stale.write_addrs = vec![c.nodes[0].addr.clone()];
    stale.read_addrs = vec![c.nodes[0].addr.clone()];
    stale.duration = Duration::from_secs(2);
    stale.read_ratio = 0.9;
    stale.prefix = "d".into();
    stale.seed = 99;
    // Its values must differ from the main load's: other client ids.
    let old_leader = stale.run_tagged(100).await;
    c.nodes[0]
        .client()
        .await
        .follow(2, &c.nodes[1].addr)
        .await
        .unwrap();
    let mut history = load.await.unwrap();
    history.extend(old_leader);
    c.wait_converged(CONVERGE).await;
    finish(&w, history, &c.addrs(), 100).await;
    c.assert_identical().await;
}
