//! Online split on the local platform, with real processes, under concurrent load through both
//! routers, ending with the history check (every acknowledged write readable with its last
//! value, no stale or phantom read, no write applied twice): a user edits the HashRanges (the
//! source's range halved, a new FileCluster with the other half) and the operator clones,
//! fences, cuts over and cleans up; afterwards each cluster holds exactly the keys of its range.

mod common;

use common::split::*;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_under_load_moves_half_a_cluster_and_loses_nothing() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let before = s["epoch"].as_u64().unwrap();
    let w = workload(&sys, 14);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // As a user would: `cleave split fc-a --into fc-b --wait` writes the manifests and follows
    // the split until it is done.
    cli_split(&sys, "fc-a", "fc-b");
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "the split to complete", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    let summary = history.summary();
    println!("split under load: {summary}");
    assert_eq!(
        summary.unknown_writes, 0,
        "the split must cost clients no error: {summary}"
    );
    finish(&w, history, &sys.router(), 100).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_cluster_splits_into_two_then_four_under_load() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    sys.wait_ready();
    let w = workload(&sys, 20);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    cli_split(&sys, "fc-a", "fc-b");
    cli_split(&sys, "fc-a", "fc-c");
    cli_split(&sys, "fc-b", "fc-d");
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "four clusters, all Ready, no split left", |s| {
            ready(s)
                && s["split"].is_null()
                && s["clusters"].as_array().is_some_and(|c| c.len() == 4)
        })
    });
    let history = load.await.expect("the load ran");
    println!("1 -> 2 -> 4 under load: {}", history.summary());
    assert_eq!(
        history.summary().unknown_writes,
        0,
        "splits cost clients no error"
    );
    finish(&w, history, &sys.router(), 100).await;
    let q = 1_073_741_823u32;
    assert_holds_exactly(&s, "fc-a", (0, q)).await;
    assert_holds_exactly(&s, "fc-c", (q + 1, 2 * q + 1)).await;
    assert_holds_exactly(&s, "fc-b", (2 * q + 2, 3 * q + 2)).await;
    assert_holds_exactly(&s, "fc-d", (3 * q + 3, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_killed_again_and_again_during_a_split_resumes_it_and_loses_nothing() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    let s = sys.wait_ready();
    let before = s["epoch"].as_u64().unwrap();
    // Through one router only: every operator start restarts the routers (and every node), and
    // the workload must reach a router that is up.
    let mut w = workload(&sys, 25);
    w.write_addrs = vec![sys.router()];
    w.read_addrs = vec![sys.router()];
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    split_in_half(&sys);
    // Kill the operator (kill -9) at every phase it reports, and a few times more; each new
    // operator restarts every child process and must resume the split from its record.
    let mut kills = vec![];
    for _ in 0..4 {
        let pid = sys.child.as_ref().map(|c| c.id() as u64);
        let s = tokio::task::block_in_place(|| {
            sys.wait_for(60, "the operator to report the split", |s| {
                s["operatorPid"].as_u64() == pid
                    && (phase(s).is_some() || s["epoch"].as_u64() > Some(before))
            })
        });
        if phase(&s).is_none() {
            break; // done before this kill
        }
        kills.push(phase(&s).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(300)).await;
        sys.stop(nix::sys::signal::Signal::SIGKILL);
        sys.start();
    }
    println!("operator killed during the split at phases {kills:?}");
    assert!(
        !kills.is_empty(),
        "the split ended before the operator could be killed"
    );
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(180, "the split to complete after the restarts", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!("split with operator kills: {}", history.summary());
    let _ = std::fs::copy(sys.data.with_extension("log"), "/tmp/split-operator.log");
    finish(&w, history, &sys.router(), 50).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_completes_with_a_source_follower_frozen_and_its_leader_killed() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
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
    // One follower of the source is frozen through the clone and the cutover (the quorum of
    // minInSync 1 still stands). It must come back before the split can end: every replica
    // deletes the moved keys. Then the source's leader is killed while the split cleans up.
    // (Killing the leader while a follower is frozen would leave no safe election: the frozen
    // follower may hold a write nobody else has, so the operator waits, as it should.)
    let s = sys.status();
    let leader = cluster(&s, "fc-a")["leader"].as_str().unwrap().to_string();
    let frozen = ["fc-a-0", "fc-a-1", "fc-a-2"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let frozen_pid = node_pid(&s, frozen);
    kill(Pid::from_raw(frozen_pid), Signal::SIGSTOP).unwrap();
    split_in_half(&sys);
    tokio::task::block_in_place(|| {
        sys.wait_for(
            120,
            "the split committed with a follower of the source frozen",
            |s| phase(s).as_deref() == Some("cleaning"),
        )
    });
    kill(Pid::from_raw(frozen_pid), Signal::SIGCONT).unwrap();
    let leader_pid = node_pid(&sys.status(), &leader);
    kill(Pid::from_raw(leader_pid), Signal::SIGKILL).unwrap();
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(120, "the split to complete after the failover", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
                && cluster(s, "fc-a")["epoch"].as_u64() > Some(1)
        })
    });
    println!(
        "fc-a now led by {} at epoch {}",
        cluster(&s, "fc-a")["leader"],
        cluster(&s, "fc-a")["epoch"]
    );
    let history = load.await.expect("the load ran");
    println!(
        "split with a failover and a frozen follower: {}",
        history.summary()
    );
    finish(&w, history, &sys.router(), 50).await;
    let mid = MID;
    assert_holds_exactly(&s, "fc-a", (0, mid)).await;
    assert_holds_exactly(&s, "fc-b", (mid + 1, u32::MAX)).await;
}
