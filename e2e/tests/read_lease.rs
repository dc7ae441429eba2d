//! Read leases (`docs/replication.md`, "Read leases"): a leader serves reads for a while after
//! a confirmation round without another one, and nothing of a newer epoch is acknowledged
//! before that lease has run out. Each scenario deposes the leader by hand without telling it,
//! so it still believes it leads and still holds a lease, acknowledges a new value in the new
//! epoch, then reads from the old leader: it must refuse, never answer the old value. Each
//! scenario removes one of the three holds that make this true, and fails without it:
//! - a follower that backed the lease does not fetch from a newer leader until its promise ran
//!   out;
//! - a newer leader that backed the lease counts no acknowledgement until then;
//! - a process that restarted (and so forgot its promises) holds for as long from its start.

use cleave_e2e::metrics::scrape;
use cleave_e2e::partition;
use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use cleave_proto::{Client, ErrorCode, Selected};
use std::time::{Duration, Instant};

/// The lease in these tests: long enough that the by-hand promotion and the new write happen
/// well within it, so a missing hold would show every time.
const LEASE_MS: u64 = 3000;
/// How long a node that backed the lease holds back: the lease plus the 10 % clock-drift bound.
const HOLD: Duration = Duration::from_millis(LEASE_MS * 11 / 10);
/// How long one request may take (a held write waits out the hold: 1.1 × the lease).
const REQUEST: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(60);

fn options(size: usize) -> ClusterOptions {
    ClusterOptions {
        size,
        extra_flags: vec!["--read-lease-ms".into(), LEASE_MS.to_string()],
        ..ClusterOptions::default()
    }
}

async fn connect(addr: &str) -> Client {
    Client::connect_timeout(addr, REQUEST)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Write `v1` at the leader and wait until every node holds it.
async fn write_v1(c: &Cluster) {
    let mut leader = connect(&c.nodes[0].addr).await;
    leader.insert("/lease/k", "v1").await.expect("insert v1");
    c.wait_converged(CONVERGE).await;
}

/// Read `v1` on the leader until a read was served under its lease.
async fn leader_with_a_lease(c: &Cluster) -> Client {
    let leader = connect(&c.nodes[0].addr).await;
    wait_until(CONVERGE, "a read served under the lease", || async {
        let read = connect(&c.nodes[0].addr).await.select("/lease/k").await;
        assert!(
            matches!(&read, Ok(Selected::File(b)) if b == "v1"),
            "the leader reads v1: {read:?}"
        );
        scrape(&c.nodes[0].admin)
            .await
            .value("cleave_node_read_confirmations_total", &[("by", "lease")])
            > 0.0
    })
    .await;
    leader
}

/// Acknowledge `v2` at the new leader, then read at the deposed one: it must refuse.
async fn assert_no_stale_read(old_leader: &mut Client, new_leader: &str) {
    connect(new_leader)
        .await
        .update("/lease/k", "v2")
        .await
        .expect("the new leader acknowledges v2");
    assert_no_stale_read_after_ack(old_leader, new_leader).await;
}

/// `v2` was acknowledged at the new leader: a read at the deposed one must refuse.
async fn assert_no_stale_read_after_ack(old_leader: &mut Client, new_leader: &str) {
    match old_leader.select("/lease/k").await {
        Err(e) if e.code() == Some(ErrorCode::TryAgain) => {}
        other => panic!(
            "after v2 was acknowledged in the new epoch, the deposed leader answered {other:?}; \
             it must refuse (TRYAGAIN): its lease must have run out before v2 was acknowledged"
        ),
    }
    assert_eq!(
        connect(new_leader).await.select("/lease/k").await.unwrap(),
        Selected::File("v2".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_backed_a_lease_help_no_newer_epoch_until_it_ran_out() {
    let c = Cluster::start("lease-f", options(3)).await;
    let mut n1 = connect(&c.nodes[1].addr).await;
    write_v1(&c).await;
    let epoch = c.nodes[0].status().await.unwrap().epoch;
    // Node 1 stops backing node 0 (it follows a newer epoch whose leader is nowhere), and its
    // promise runs out: as the next leader it holds nothing back, so only node 2's hold as a
    // follower stands between the new epoch and a stale read. Time itself is the condition.
    n1.follow(epoch + 1, "127.0.0.1:1").await.unwrap();
    tokio::time::sleep(HOLD + Duration::from_millis(300)).await;
    let mut old = leader_with_a_lease(&c).await;
    n1.lead(epoch + 2).await.unwrap();
    connect(&c.nodes[2].addr)
        .await
        .follow(epoch + 2, &c.nodes[1].addr)
        .await
        .unwrap();
    assert_no_stale_read(&mut old, &c.nodes[1].addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_that_backed_the_old_lease_counts_no_acknowledgement_until_it_ran_out() {
    // Nodes 0 and 1 hold the lease; node 2 (a replacement) never followed node 0, so only
    // node 1's own hold stands between the new epoch and a stale read.
    let spare_started = Instant::now();
    let spare = Cluster::start(
        "lease-spare",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            start_idle: true,
            ..options(1)
        },
    )
    .await;
    let c = Cluster::start("lease-l", options(2)).await;
    write_v1(&c).await;
    // The spare's own start-up hold must be over, or it would hold back in node 1's place.
    tokio::time::sleep_until((spare_started + HOLD + Duration::from_millis(300)).into()).await;
    let mut old = leader_with_a_lease(&c).await;
    let epoch = c.nodes[0].status().await.unwrap().epoch;
    connect(&c.nodes[1].addr)
        .await
        .lead(epoch + 1)
        .await
        .unwrap();
    connect(&spare.nodes[0].addr)
        .await
        .follow(epoch + 1, &c.nodes[1].addr)
        .await
        .unwrap();
    assert_no_stale_read(&mut old, &c.nodes[1].addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_restarted_after_backing_a_lease_hold_from_their_start() {
    if let Some(why) = partition::unavailable() {
        eprintln!("SKIPPED: partitions unavailable here: {why}");
        return;
    }
    let mut c = Cluster::start("lease-r", options(3)).await;
    write_v1(&c).await;
    let mut old = leader_with_a_lease(&c).await;
    let epoch = c.nodes[0].status().await.unwrap().epoch;
    // Node 0 is cut off, so the restarted followers cannot fetch from it (and so promise it
    // anything afresh): only the start-up hold of the processes that forgot their promises
    // stands between the new epoch and a stale read.
    let port: u16 = c.nodes[0].addr.rsplit(':').next().unwrap().parse().unwrap();
    let cut = partition::Partition::isolate(&[port]);
    c.nodes[1].restart();
    c.nodes[2].restart();
    connect(&c.nodes[1].addr)
        .await
        .lead(epoch + 1)
        .await
        .unwrap();
    connect(&c.nodes[2].addr)
        .await
        .follow(epoch + 1, &c.nodes[1].addr)
        .await
        .unwrap();
    connect(&c.nodes[1].addr)
        .await
        .update("/lease/k", "v2")
        .await
        .expect("the new leader acknowledges v2");
    drop(cut);
    assert_no_stale_read_after_ack(&mut old, &c.nodes[1].addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_lease_off_every_read_takes_a_confirmation_round() {
    let c = Cluster::start(
        "lease-off",
        ClusterOptions {
            extra_flags: vec!["--read-lease-ms".into(), "0".into()],
            ..ClusterOptions::default()
        },
    )
    .await;
    let mut leader = connect(&c.nodes[0].addr).await;
    leader.insert("/lease/k", "v1").await.unwrap();
    for _ in 0..20 {
        assert_eq!(
            leader.select("/lease/k").await.unwrap(),
            Selected::File("v1".into())
        );
    }
    let m = scrape(&c.nodes[0].admin).await;
    let by = |how| m.value("cleave_node_read_confirmations_total", &[("by", how)]);
    assert_eq!(by("lease"), 0.0, "no read used a lease");
    assert!(by("round") >= 20.0, "every read took a round");
}
