//! Faults around catch-up and full resync, with real processes and the history checker: a
//! follower whose Redis lost its tail while its node process lived resets to what its store holds
//! and catches up (issue 7 item 10); a full resync whose snapshot source's Redis restarts in the
//! middle starts over instead of trusting a stale SCAN cursor, and converges (item 8); a full
//! resync whose follower is killed midway resumes after a restart and converges.

use cleave_e2e::workload::{assert_history, Workload};
use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use nix::sys::signal::Signal;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_whose_redis_lost_its_tail_resets_and_catches_up() {
    let mut c = Cluster::start("ftail", ClusterOptions::default()).await;
    let mut w = Workload::new(vec![c.nodes[0].addr.clone()]);
    w.prefix = "t".into();
    w.duration = Duration::from_secs(6);
    w.read_addrs = c.addrs();
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copy = c.dir.join("f2-copy");
    c.redis[2].copy_data(&copy);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Node 2's Redis comes back from a copy taken 2 s ago; the node process lives on.
    c.redis[2].restart_from(&copy).await;
    let mut history = load.await.expect("load");
    c.wait_converged(CONVERGE).await;
    w.final_reads(&mut history, &c.nodes[2].addr).await;
    assert_history(&history, 100);
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resync_whose_source_redis_restarts_starts_over_and_converges() {
    let opts = ClusterOptions {
        log_capacity: 50,
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("srcrestart", opts).await;
    // Enough data that the snapshot takes several batches.
    let mut leader = c.nodes[0].client().await;
    let big = bytes::Bytes::from(vec![7u8; 256 * 1024]);
    for i in 0..64 {
        leader
            .insert(&format!("/big/{i}"), big.clone())
            .await
            .unwrap();
    }
    // Follower 2 falls far behind the 50-entry log.
    c.nodes[2].proc.stop();
    for i in 0..200 {
        leader.insert(&format!("/small/{i}"), "x").await.unwrap();
    }
    let mut w = Workload::new(vec![c.nodes[0].addr.clone()]);
    w.prefix = "r".into();
    w.duration = Duration::from_secs(6);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    c.nodes[2].proc.signal(Signal::SIGCONT);
    // Restart the source's Redis while the follower copies (AOF keeps every write).
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.redis[0].restart().await;
    let mut history = load.await.expect("load");
    // Usually the leader's node noticed nothing wrong with its data (Redis replayed its AOF)
    // and only a stale SCAN cursor is refused: the follower starts over and ends identical.
    // But `kill -9` of a Redis with `appendfsync everysec` may lose its last writes when its
    // disk is slow (Redis postpones the AOF write behind a pending fsync and still replies):
    // the leader then finds its store behind its applied seq and steps down, and the
    // operator's job (done here by the harness) is to elect the most up-to-date node, which
    // holds every acknowledged write (a quorum acknowledged it).
    let leader = c.leader_or_elect().await;
    c.wait_converged(CONVERGE).await;
    w.final_reads(&mut history, &c.nodes[leader].addr).await;
    assert_history(&history, 50);
    c.assert_identical().await;
    let st = c.nodes[2].status_within(Duration::from_secs(10)).await;
    assert!(st.full_resyncs >= 1, "node 2 resynced fully: {st:?}");
}

/// `GET key` on a Redis server (the raw RESP reply).
async fn redis_get(redis: &cleave_e2e::RedisProc, key: &str) -> cleave_proto::Frame {
    let addr = format!("127.0.0.1:{}", redis.port);
    let mut c = cleave_proto::Client::connect_timeout(&addr, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("connect to redis {addr}: {e}"));
    c.raw(&cleave_proto::Frame::command([
        "GET".to_string(),
        key.to_string(),
    ]))
    .await
    .unwrap_or_else(|e| panic!("GET {key} at {addr}: {e}"))
}

/// Pins that a full resync interrupted by `kill -9` of the follower's node process resumes
/// after a restart: the store still says "resyncing" (its partial copy is not trusted), the
/// restarted node resyncs again from scratch instead of following from the copy's seq, and it
/// converges to the leader's exact data (identical digests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_killed_midway_resumes_after_a_restart_and_converges() {
    let opts = ClusterOptions {
        log_capacity: 50,
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("resynckill", opts).await;
    let mut leader = c.nodes[0].client().await;
    // Enough data that the snapshot takes a while to copy.
    let big = bytes::Bytes::from(vec![9u8; 256 * 1024]);
    for i in 0..128 {
        leader
            .insert(&format!("/rk/big{i}"), big.clone())
            .await
            .unwrap();
    }
    c.wait_converged(CONVERGE).await;
    // Follower 2 falls far behind the 50-entry log, so it must resync fully.
    c.nodes[2].proc.stop();
    for i in 0..200 {
        leader.insert(&format!("/rk/small{i}"), "x").await.unwrap();
    }
    for i in 0..20 {
        leader.delete(&format!("/rk/big{i}")).await.unwrap();
    }
    c.nodes[2].proc.signal(Signal::SIGCONT);
    let redis2 = &c.redis[2];
    wait_until(
        CONVERGE,
        "node 2 starts its full resync (meta:resyncing set)",
        || async { redis_get(redis2, "meta:resyncing").await == cleave_proto::Frame::bulk("1") },
    )
    .await;
    c.nodes[2].proc.kill9();
    assert_eq!(
        redis_get(&c.redis[2], "meta:resyncing").await,
        cleave_proto::Frame::bulk("1"),
        "the killed resync left its store marked as not to be trusted"
    );
    // More writes while it is down, then the node comes back on the same port and Redis.
    for i in 0..20 {
        leader
            .insert(&format!("/rk/late{i}"), "late")
            .await
            .unwrap();
    }
    c.nodes[2].restart();
    c.assert_identical().await;
    let st = c.nodes[2].status_within(Duration::from_secs(10)).await;
    assert!(
        st.full_resyncs >= 1,
        "the restarted node resynced fully: {st:?}"
    );
    assert_eq!(
        redis_get(&c.redis[2], "meta:resyncing").await,
        cleave_proto::Frame::Null,
        "the completed resync cleared the mark"
    );
}
