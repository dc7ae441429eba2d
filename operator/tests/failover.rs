//! Failover on the local platform, with real processes, under concurrent load through both
//! routers, every scenario ending with the history check of `cleave_e2e::history` (every
//! acknowledged write readable, no stale, phantom or undone read, no write applied twice):
//!
//! - the leader killed (`kill -9`, some rounds with its Redis), round after round;
//! - the leader frozen (`SIGSTOP`) past `failoverTimeout`: a follower takes over; after
//!   `SIGCONT` the old leader rejoins as a follower and ends identical, and clients connected
//!   to it directly (their reads in the same history) never read a value the new leader had
//!   already replaced;
//! - the leader cut off by a loopback partition (nftables drops every packet to or from its
//!   port) past `failoverTimeout`: a follower takes over; after the heal the old leader rejoins
//!   as a follower and ends identical;
//! - the leader frozen while a follower is down too: nobody is promoted until it is safe, and
//!   the cluster says why it waits;
//! - the operator killed during a failover: the next one finishes it, no epoch used twice;
//! - a switchover through `spec.leader` under load: no client error.
//!
//! `CLEAVE_FAILOVER_ROUNDS` sets the number of kill rounds (default 3; `make soak` runs 50).

mod common;

use cleave_e2e::history::{History, Outcome};
use cleave_e2e::workload::{assert_history, Workload};
use cleave_proto::status::NodeStatus;
use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a failover may take before a test fails (the target is ≤ 3 s; CI is slow).
const FAILOVER_BOUND: u64 = 45;

fn cluster<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The leader's name, epoch and pid as the status reports them.
fn leader_of(s: &Value, name: &str) -> (String, u64, u32) {
    let c = cluster(s, name);
    let leader = c["leader"].as_str().unwrap_or_default().to_string();
    let pid = c["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == leader.as_str())
        .and_then(|n| n["pid"].as_u64())
        .unwrap_or(0) as u32;
    (leader, c["epoch"].as_u64().unwrap_or(0), pid)
}

fn node_pid(s: &Value, name: &str) -> u32 {
    s["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["nodes"].as_array().into_iter().flatten())
        .find(|n| n["name"] == name)
        .and_then(|n| n["pid"].as_u64())
        .unwrap_or(0) as u32
}

/// A load through both routers over roots of both clusters.
fn workload(sys: &System, prefix: &str, secs: u64) -> Workload {
    let mut w = Workload::new(vec![sys.router(), sys.router2()]);
    w.prefix = prefix.into();
    w.clients = 6;
    w.roots = 8;
    w.files_per_root = 4;
    w.duration = Duration::from_secs(secs);
    w.timeout = Duration::from_secs(10);
    w
}

/// Wait (blocking, bounded) until `cluster` is led by another node than `old` at a higher
/// epoch, and is Ready again.
fn wait_new_leader(sys: &System, name: &str, old: &str, old_epoch: u64) -> Value {
    sys.wait_for(
        FAILOVER_BOUND,
        &format!("{name} led by another node than {old} at an epoch above {old_epoch}"),
        |s| {
            let (l, e, _) = leader_of(s, name);
            let c = cluster(s, name);
            l != old && e > old_epoch && cond(c, "Ready")
        },
    )
}

/// Wait (blocking, bounded) until `cluster` is led at an epoch above `old_epoch` and is Ready
/// again (a killed leader that restarts with all its data may well be elected again).
fn wait_new_epoch(sys: &System, name: &str, old_epoch: u64) -> Value {
    sys.wait_for(
        FAILOVER_BOUND,
        &format!("{name} led at an epoch above {old_epoch}"),
        |s| leader_of(s, name).1 > old_epoch && cond(cluster(s, name), "Ready"),
    )
}

/// Final reads through `addr`, then the history check; each path counted in the cluster the
/// router's table names (seqs are per cluster).
async fn finish(w: &Workload, history: History, addr: &str, min_acked: usize) {
    let mut history = history;
    w.final_reads(&mut history, addr).await;
    let table = cleave_proto::Client::connect(addr)
        .await
        .expect("router")
        .table()
        .await
        .expect("the router's table");
    history.set_clusters(|p| {
        let root = p.trim_start_matches('/').split('/').next().unwrap_or("");
        table
            .lookup(cleave_proto::hash::hash_root(root))
            .map(|r| r.cluster.clone())
            .unwrap_or_default()
    });
    assert_history(&history, min_acked);
}

fn rounds() -> usize {
    std::env::var("CLEAVE_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_round_after_round_loses_no_acknowledged_write() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let rounds = rounds();
    let w = workload(&sys, "k", 8 + 6 * rounds as u64);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    let mut epochs = BTreeSet::new();
    let started = Instant::now();
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let s = sys.status();
        let (old, epoch, pid) = leader_of(&s, "fc-a");
        assert!(epochs.insert(epoch), "epoch {epoch} led twice");
        if round % 2 == 1 {
            signal(sys.child_pid(&format!("{old}-redis")), Signal::SIGKILL);
        }
        signal(pid, Signal::SIGKILL);
        let s = tokio::task::block_in_place(|| wait_new_epoch(&sys, "fc-a", epoch));
        let f = &cluster(&s, "fc-a")["lastFailover"];
        println!(
            "round {round}: {old} -> {} at epoch {} ({}), {} ms",
            f["to"], f["epoch"], f["reason"], f["durationMs"]
        );
    }
    let history = load.await.expect("the load ran");
    println!("{rounds} rounds in {:?}", started.elapsed());
    tokio::task::block_in_place(|| sys.wait_ready());
    finish(&w, history, &sys.router(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_leader_is_replaced_and_rejoins_as_an_identical_follower() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let s = sys.status();
    let (old, epoch, pid) = leader_of(&s, "fc-a");
    let old_addr = address(&s, &old);
    wait_owning(&old_addr).await;
    // Readers connected to the old leader itself, not through a router, for the whole test.
    let readers = pinned_readers(&workload(&sys, "z", 16), old_addr.clone());
    let reads = {
        let r = readers.clone();
        tokio::spawn(async move { r.run_tagged(100).await })
    };
    // Writes before the freeze, all answered before it: the old leader then holds no write it
    // applied but did not commit, so nothing but its own proof of leadership (the lease, the
    // confirmation round) stands between a read and its old store: a leader that served reads
    // without that proof fails this test, which it would pass if writes ran throughout.
    let mut before = workload(&sys, "z", 3);
    before.clock = readers.clock;
    let mut history = before.run().await;
    wait_until_committed(&old_addr).await;
    signal(pid, Signal::SIGSTOP);
    let s = tokio::task::block_in_place(|| wait_new_leader(&sys, "fc-a", &old, epoch));
    // Writes again, only once the routers send them to the new leader: none is parked at the
    // old one, which would otherwise apply it on waking and hold every read back until it
    // commits (never), hiding whether the read checked its leadership at all.
    let mut after = workload(&sys, "z", 8);
    after.clock = readers.clock;
    let load = {
        let w = after.clone();
        tokio::spawn(async move { w.run_tagged(50).await })
    };
    let f = &cluster(&s, "fc-a")["lastFailover"];
    assert!(
        f["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{f}"
    );
    assert!(cond(cluster(&s, "fc-a"), "FailedOver"));
    // New values acknowledged by the new leader meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The old leader wakes up while nobody can tell it that it was deposed (the operator is
    // frozen too): it still believes it leads, and the reads parked at it and those sent for
    // the next seconds must be refused, not answered from its own store.
    let operator = sys
        .child
        .as_ref()
        .map(|c| c.id())
        .expect("the operator runs");
    signal(operator, Signal::SIGSTOP);
    signal(pid, Signal::SIGCONT);
    let resumed = readers.clock.now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(operator, Signal::SIGCONT);
    // The old leader comes back at the old epoch: it must rejoin as a follower, in sync.
    tokio::task::block_in_place(|| {
        sys.wait_for(
            FAILOVER_BOUND,
            &format!("{old} back as an in-sync follower"),
            |s| {
                let n = node(s, &old);
                n["role"] == "follower" && n["inSync"] == true
            },
        )
    });
    history.extend(load.await.expect("the load ran"));
    let direct = reads.await.expect("the readers ran");
    let answered = |after: u64| {
        direct
            .ops()
            .iter()
            .filter(|o| o.invoke >= after && matches!(o.outcome, Outcome::Read(_)))
            .count()
    };
    println!(
        "reads at the old leader {old}: {} in all, {} answered, {} of them begun after SIGCONT",
        direct.ops().len(),
        answered(0),
        answered(resumed)
    );
    assert!(answered(0) > 0, "the readers never read at {old}");
    history.extend(direct);
    tokio::task::block_in_place(|| sys.wait_ready());
    finish(&after, history, &sys.router(), 50).await;
    assert_identical(&sys, "fc-a").await;
}

/// Wait (bounded, 30 s) until `NODE.STATUS` of the node at `addr` satisfies `pred`.
async fn wait_node(addr: &str, what: &str, pred: impl Fn(&NodeStatus) -> bool) {
    cleave_e2e::wait_until(
        Duration::from_secs(30),
        &format!("{addr} {what}"),
        || async {
            let mut c = cleave_proto::Client::connect(addr).await.expect("connect");
            pred(&c.node_status().await.expect("NODE.STATUS"))
        },
    )
    .await;
}

/// Wait until the leader at `addr` has committed everything it applied.
async fn wait_until_committed(addr: &str) {
    wait_node(addr, "commits all it applied", |st| {
        st.committed_seq == st.applied_seq
    })
    .await;
}

/// A node's client address as the status reports it.
fn address(s: &Value, name: &str) -> String {
    node(s, name)["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Wait (bounded) until the node at `addr` holds its cluster's ownership record: the operator
/// gives it once the first table is committed, and from then on the node answers `-MOVED` for
/// the other cluster's paths instead of `NotFound`.
async fn wait_owning(addr: &str) {
    wait_node(addr, "holds an ownership record", |st| st.own_epoch > 0).await;
}

/// Clients of `w`'s paths that only read, all at `addr` (they come back to it after every
/// error), with a short timeout so that new reads keep arriving while it is frozen.
fn pinned_readers(w: &Workload, addr: String) -> Workload {
    let mut r = w.clone();
    r.write_addrs = vec![addr];
    r.read_addrs = vec![];
    r.clients = 3;
    r.read_ratio = 1.0;
    r.timeout = Duration::from_secs(2);
    r.error_backoff = Duration::from_millis(20);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_is_replaced_and_rejoins_after_the_heal() {
    if !have_router() {
        return;
    }
    if let Some(why) = cleave_e2e::partition::unavailable() {
        eprintln!("SKIPPED: partitions unavailable here: {why}");
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let w = workload(&sys, "p", 14);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = sys.status();
    let (old, epoch, _) = leader_of(&s, "fc-a");
    let port: u16 = address(&s, &old)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the leader's port");
    // The leader keeps running, cut off from followers, routers and the operator alike: it
    // can neither commit nor be told anything. Clients must not see an error they cannot
    // retry, and nothing it held uncommitted may surface later.
    let cut = cleave_e2e::partition::Partition::isolate(&[port]);
    let s = tokio::task::block_in_place(|| wait_new_leader(&sys, "fc-a", &old, epoch));
    let f = &cluster(&s, "fc-a")["lastFailover"];
    assert!(
        f["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{f}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    cut.heal();
    tokio::task::block_in_place(|| {
        sys.wait_for(
            FAILOVER_BOUND,
            &format!("{old} back as an in-sync follower after the heal"),
            |s| {
                let n = node(s, &old);
                n["role"] == "follower" && n["inSync"] == true
            },
        )
    });
    let history = load.await.expect("the load ran");
    tokio::task::block_in_place(|| sys.wait_ready());
    finish(&w, history, &sys.router(), 50).await;
    assert_identical(&sys, "fc-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_promotion_while_too_few_followers_answer() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let w = workload(&sys, "w", 16);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = sys.status();
    let (old, epoch, pid) = leader_of(&s, "fc-a");
    let follower = ["fc-a-0", "fc-a-1", "fc-a-2"]
        .into_iter()
        .find(|n| *n != old)
        .unwrap();
    let follower_pid = node_pid(&s, follower);
    signal(follower_pid, Signal::SIGSTOP);
    signal(pid, Signal::SIGSTOP);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(FAILOVER_BOUND, "fc-a waiting to elect, saying why", |s| {
            cond(cluster(s, "fc-a"), "Progressing")
                && cluster(s, "fc-a")["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("needed to be sure"))
                    })
        })
    });
    assert_eq!(leader_of(&s, "fc-a").1, epoch, "no new epoch while unsafe");
    // The follower comes back: now the promotion is safe.
    signal(follower_pid, Signal::SIGCONT);
    tokio::task::block_in_place(|| wait_new_leader(&sys, "fc-a", &old, epoch));
    signal(pid, Signal::SIGCONT);
    let history = load.await.expect("the load ran");
    tokio::task::block_in_place(|| sys.wait_ready());
    finish(&w, history, &sys.router(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_killed_during_a_failover_is_finished_by_the_next_one() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let w = workload(&sys, "o", 16);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, epoch, pid) = leader_of(&sys.status(), "fc-a");
    signal(pid, Signal::SIGSTOP);
    // Kill the operator once it has noticed the silence, before or while it acts.
    tokio::task::block_in_place(|| {
        sys.wait_for(
            FAILOVER_BOUND,
            "the operator noticing the silent leader",
            |s| {
                cluster(s, "fc-a")["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("does not answer"))
                    })
            },
        )
    });
    let children = sys.child_pids();
    sys.stop(Signal::SIGKILL);
    // Its children live on (they are in their own process groups); the next operator adopts
    // or restarts them.
    assert!(children.iter().any(|p| alive(*p)));
    sys.start();
    // The new operator reaps the children its predecessor left (the frozen leader among them)
    // and restarts them: whichever node it elects, it is at a newer epoch.
    let s = tokio::task::block_in_place(|| wait_new_epoch(&sys, "fc-a", epoch));
    let (new, new_epoch, _) = leader_of(&s, "fc-a");
    signal(pid, Signal::SIGCONT);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(
            FAILOVER_BOUND,
            "every other node following the new leader",
            |s| {
                cluster(s, "fc-a")["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["name"] != new.as_str())
                    .all(|n| n["role"] == "follower")
            },
        )
    });
    let leaders: Vec<&Value> = cluster(&s, "fc-a")["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "leader")
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "one leader at epoch {new_epoch}: {leaders:?}"
    );
    let history = load.await.expect("the load ran");
    tokio::task::block_in_place(|| sys.wait_ready());
    finish(&w, history, &sys.router(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_under_load_costs_clients_no_error() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let w = workload(&sys, "s", 10);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (old, epoch, _) = leader_of(&sys.status(), "fc-a");
    let target = if old == "fc-a-2" { "fc-a-1" } else { "fc-a-2" };
    sys.set_spec_leader("fc-a", target);
    let s = tokio::task::block_in_place(|| wait_new_leader(&sys, "fc-a", &old, epoch));
    assert_eq!(leader_of(&s, "fc-a").0, target);
    let f = &cluster(&s, "fc-a")["lastFailover"];
    assert!(
        f["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("switchover"),
        "{f}"
    );
    let history = load.await.expect("the load ran");
    let summary = history.summary();
    assert_eq!(
        summary.unknown_writes, 0,
        "a switchover must cost clients no error: {summary}"
    );
    finish(&w, history, &sys.router(), 50).await;
}

/// Every node of `name` holds exactly the same data (after the leader's last write reached it).
async fn assert_identical(sys: &System, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sys.status();
        let nodes: Vec<(String, String)> = cluster(&s, name)["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["redis"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut digests = vec![];
        for (_, redis) in &nodes {
            let url = format!("redis://{}", redis.trim_start_matches("redis://"));
            let mut store = cleave_node::store::Store::connect(&url, 1, 1)
                .await
                .expect("store");
            digests.push(store.data_digest().await.expect("digest"));
        }
        if digests.windows(2).all(|d| d[0] == d[1]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes of {name} differ: {nodes:?} {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `make bench-failover`: the time from `kill -9` (and from `SIGSTOP`) of fc-a's leader to the
/// first write acknowledged by its successor, over `CLEAVE_BENCH_ROUNDS` rounds (default 20)
/// each, default settings, printed as max and p99. A benchmark, not a test: it asserts nothing
/// about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: make bench-failover"]
async fn bench_failover() {
    let rounds: usize = std::env::var("CLEAVE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let router = sys.router();
    // A root that fc-a owns.
    let table = cleave_proto::Client::connect(&router)
        .await
        .unwrap()
        .table()
        .await
        .unwrap();
    let root = (0..)
        .map(|i| format!("bench{i}"))
        .find(|r| {
            table
                .lookup(cleave_proto::hash::hash_root(r))
                .is_some_and(|x| x.cluster == "fc-a")
        })
        .unwrap();
    let mut report = vec![];
    for (kind, sig) in [("kill -9", Signal::SIGKILL), ("SIGSTOP", Signal::SIGSTOP)] {
        let mut times = vec![];
        for round in 0..rounds {
            tokio::task::block_in_place(|| sys.wait_ready());
            let (old, epoch, pid) = leader_of(&sys.status(), "fc-a");
            let t0 = Instant::now();
            signal(pid, sig);
            // Write until a write invoked after the fault is acknowledged.
            let mut c = cleave_proto::Client::connect_timeout(&router, Duration::from_secs(10))
                .await
                .unwrap();
            let took = loop {
                match c.insert(&format!("/{root}/f{round}"), "x").await {
                    Ok(_) => break t0.elapsed(),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if let Ok(n) =
                            cleave_proto::Client::connect_timeout(&router, Duration::from_secs(10))
                                .await
                        {
                            c = n;
                        }
                    }
                }
                assert!(t0.elapsed() < Duration::from_secs(60), "no write for 60 s");
            };
            times.push(took);
            println!("{kind} round {round}: first acknowledged write after {took:?}");
            if sig == Signal::SIGSTOP {
                let s = tokio::task::block_in_place(|| wait_new_leader(&sys, "fc-a", &old, epoch));
                let f = &cluster(&s, "fc-a")["lastFailover"];
                println!(
                    "  operator: {} ms from the first silence to the new leader leading",
                    f["durationMs"]
                );
                signal(pid, Signal::SIGCONT);
                tokio::task::block_in_place(|| {
                    sys.wait_for(FAILOVER_BOUND, &format!("{old} following again"), |s| {
                        node(s, &old)["role"] == "follower" && node(s, &old)["inSync"] == true
                    })
                });
            } else {
                tokio::task::block_in_place(|| wait_new_epoch(&sys, "fc-a", epoch));
            }
        }
        times.sort();
        let p99 = times[((times.len() * 99).div_ceil(100)).saturating_sub(1)];
        let max = *times.last().unwrap();
        let median = times[times.len() / 2];
        report.push(format!(
            "{kind:8} {rounds} rounds: median {median:?}, p99 {p99:?}, max {max:?} (target max <= 3 s)"
        ));
    }
    println!("\nfailover, from the fault to the first acknowledged write on the successor:");
    for line in report {
        println!("  {line}");
    }
}
