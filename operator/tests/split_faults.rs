//! Splits under faults, on the local platform with real processes and concurrent load, each
//! ending with the history check (every acknowledged write readable with its last value, no
//! stale or phantom read, no write applied twice) and each cluster holding exactly its range:
//!
//! - the source's leader killed during the clone with its Redis data and AOF removed: it comes
//!   back empty, at epoch 0, and must never lead again (its followers would resync from it and
//!   drop acknowledged writes); the clone goes on from the new leader;
//! - a split abandoned before its commit point (the HashRanges edited back): nothing moves and
//!   the source keeps serving everything;
//! - a split aborted after its fence (the HashRanges edited back while the fence cannot commit,
//!   because the source's followers are frozen): the split never commits, the source takes the
//!   range back under a new epoch, and the writes it refused meanwhile go through afterwards;
//!   asked again, the split starts afresh and completes;
//! - a router frozen across the commit point: when it continues with the old table, the
//!   source refuses the moved half with `MOVED` until the new table reaches it.

mod common;

use common::split::*;
use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

/// Add FileCluster `fc-b` (its nodes start idle: it owns nothing yet) and wait until every one
/// of its nodes runs.
fn add_target(sys: &System) {
    std::fs::copy(
        samples().join("filecluster-b.yaml"),
        sys.manifests.join("filecluster-b.yaml"),
    )
    .unwrap();
    tokio::task::block_in_place(|| {
        sys.wait_for(60, "fc-b's three nodes running", |s| {
            ["fc-b-0", "fc-b-1", "fc-b-2"]
                .iter()
                .all(|n| node_pid(s, n) > 0)
        })
    });
}

/// Kill node `name` and its Redis (`kill -9`) and remove everything its Redis stored, while the
/// operator is frozen (so that its supervisor cannot restart them before the data is gone).
fn kill_and_wipe(sys: &System, name: &str) {
    let operator = sys.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let node = node_pid(&sys.status(), name) as u32;
    let redis = sys.child_pid(&format!("{name}-redis"));
    signal(operator, Signal::SIGSTOP);
    signal(node, Signal::SIGKILL);
    signal(redis, Signal::SIGKILL);
    let dir = sys.data.join("clusters/fc-a").join(name).join("redis");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(redis) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for entry in std::fs::read_dir(&dir).expect("the node's Redis folder") {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|f| f != "redis.conf") {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    signal(operator, Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_completes_when_the_sources_leader_loses_its_store_during_the_clone() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let before = s["epoch"].as_u64().unwrap();
    let w = workload(&sys, 18);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    add_target(&sys);
    // One target node frozen keeps the split cloning (every target node must be in sync
    // before the fence) for as long as the fault lasts.
    let frozen = node_pid(&sys.status(), "fc-b-2") as u32;
    signal(frozen, Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    split_in_half(&sys);
    tokio::task::block_in_place(|| {
        sys.wait_for(60, "the split cloning", |s| {
            phase(s).as_deref() == Some("cloning")
        })
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = sys.status();
    let (leader, epoch) = (
        cluster(&s, "fc-a")["leader"].as_str().unwrap().to_string(),
        cluster(&s, "fc-a")["epoch"].as_u64().unwrap(),
    );
    tokio::task::block_in_place(|| kill_and_wipe(&sys, &leader));
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(60, "fc-a led by another node at a newer epoch", |s| {
            let c = cluster(s, "fc-a");
            c["epoch"].as_u64() > Some(epoch) && c["leader"].as_str() != Some(leader.as_str())
        })
    });
    println!(
        "{leader} (wiped) replaced: {}",
        cluster(&s, "fc-a")["lastFailover"]
    );
    signal(frozen, Signal::SIGCONT);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "the split to complete after the failover", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!(
        "split with the source's leader wiped: {}",
        history.summary()
    );
    finish(&w, history, &sys.router(), 50).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_abandoned_before_its_commit_point_moves_nothing() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let table_before = s["epoch"].as_u64().unwrap();
    let w = workload(&sys, 12);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    add_target(&sys);
    let frozen = node_pid(&sys.status(), "fc-b-2") as u32;
    signal(frozen, Signal::SIGSTOP);
    split_in_half(&sys);
    tokio::task::block_in_place(|| {
        sys.wait_for(60, "the split cloning", |s| {
            phase(s).as_deref() == Some("cloning")
        })
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The user changes their mind: the HashRanges as they were (fc-a owns everything).
    std::fs::remove_file(sys.manifests.join("hashrange-high.yaml")).unwrap();
    set_low_end(&sys, u32::MAX);
    signal(frozen, Signal::SIGCONT);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(60, "the split abandoned", |s| {
            s["split"].is_null() && cond(cluster(s, "fc-a"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!("split abandoned: {}", history.summary());
    assert_eq!(
        history.summary().unknown_writes,
        0,
        "an abandoned split costs clients no error"
    );
    let table = cleave_proto::Client::connect(&sys.router())
        .await
        .expect("router")
        .table()
        .await
        .expect("the router's table");
    assert!(
        table.ranges.iter().all(|r| r.cluster == "fc-a"),
        "fc-a still owns every hash: {table:?}"
    );
    assert!(table.epoch >= table_before);
    finish(&w, history, &sys.router(), 50).await;
    assert_holds_exactly(&s, "fc-a", (0, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_router_frozen_across_the_commit_point_loses_no_write() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let before = s["epoch"].as_u64().unwrap();
    let w = workload(&sys, 16);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The second router misses the push of the new table: frozen (SIGSTOP) from before the
    // split until after its commit point, with the workload's requests queued on it. When it
    // continues, it sends them with the old table — the moved half to fc-a, which refuses
    // them with MOVED — until the operator pushes it the new table; nothing is lost.
    let router = sys.child_pid("router-1");
    signal(router, Signal::SIGSTOP);
    split_in_half(&sys);
    // The split commits without the frozen router, but cannot end while a router lacks the
    // table: it stays `cleaning` until router-1 acknowledges it.
    tokio::task::block_in_place(|| {
        sys.wait_for(60, "the split committed with router-1 frozen", |s| {
            phase(s).as_deref() == Some("cleaning")
        })
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(router, Signal::SIGCONT);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "the split to complete once router-1 is back", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!("split with a frozen router: {}", history.summary());
    finish(&w, history, &sys.router(), 50).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_aborted_after_its_fence_gives_the_range_back_loses_nothing_and_can_be_asked_again()
{
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let leader = cluster(&s, "fc-a")["leader"]
        .as_str()
        .expect("fc-a's leader")
        .to_string();
    let followers: Vec<u32> = ["fc-a-0", "fc-a-1", "fc-a-2"]
        .iter()
        .filter(|n| **n != leader)
        .map(|n| node_pid(&s, n) as u32)
        .collect();
    let w = workload(&sys, 45);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    add_target(&sys);
    // A frozen target node holds the split in `cloning` until the source's followers are
    // frozen too.
    let target = node_pid(&sys.status(), "fc-b-2") as u32;
    signal(target, Signal::SIGSTOP);
    split_in_half(&sys);
    tokio::task::block_in_place(|| {
        sys.wait_for(60, "the split cloning", |s| {
            phase(s).as_deref() == Some("cloning")
        })
    });
    // With its followers frozen, fc-a's leader cannot commit anything: the fence is sent (and
    // applied by the leader, which refuses the moving range from then on) but never confirmed,
    // so the split stays in `fencing`.
    for &f in &followers {
        signal(f, Signal::SIGSTOP);
    }
    signal(target, Signal::SIGCONT);
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| {
            sys.wait_for(60, "the split held in fencing", |s| {
                phase(s).as_deref() == Some("fencing")
            });
            // The user changes their mind: the HashRanges as they were.
            std::fs::remove_file(sys.manifests.join("hashrange-high.yaml")).unwrap();
            set_low_end(&sys, u32::MAX);
            sys.wait_for(60, "the abort recorded", |s| {
                phase(s).as_deref() == Some("aborting")
            });
        })
    }));
    for &f in &followers {
        signal(f, Signal::SIGCONT);
    }
    if let Err(e) = held {
        std::panic::resume_unwind(e);
    }
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(60, "the abort done", |s| {
            s["split"].is_null() && cond(cluster(s, "fc-a"), "Ready")
        })
    });
    let leader_addr = cluster(&s, "fc-a")["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == leader.as_str())
        .and_then(|n| n["address"].as_str())
        .expect("fc-a's leader's address")
        .to_string();
    // The status reports the store's ownership as refreshed in the background: poll, bounded.
    let mut leader_client = cleave_proto::Client::connect(&leader_addr)
        .await
        .expect("fc-a's leader");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let own = loop {
        let st = leader_client.node_status().await.expect("NODE.STATUS");
        if st.owned_ranges == "0-4294967295" || std::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        own.owned_ranges, "0-4294967295",
        "fc-a owns every hash again"
    );
    let table_epoch = s["epoch"].as_u64().unwrap_or(0);
    assert!(
        own.own_epoch > table_epoch,
        "the abort's epoch {} is above every table epoch ({table_epoch})",
        own.own_epoch
    );
    let table = cleave_proto::Client::connect(&sys.router())
        .await
        .expect("router")
        .table()
        .await
        .expect("the router's table");
    assert!(
        table.ranges.iter().all(|r| r.cluster == "fc-a"),
        "an aborted split moves nothing: {table:?}"
    );
    // Asked again, the split starts afresh (its fence above the abort's epoch, fc-b's nodes
    // still learners of fc-a) and completes, still under load.
    split_in_half(&sys);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "the split asked again to complete", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > own.own_epoch
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!(
        "split aborted after its fence, then asked again: {}",
        history.summary()
    );
    finish(&w, history, &sys.router(), 50).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}
