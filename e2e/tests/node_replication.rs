//! A FileCluster of real processes: writes are sequenced by the leader, replicated in order,
//! readable on every in-sync node, and survive follower crashes, long stalls and restarts.

use cleave_e2e::{wait_until, Checker, Cluster, ClusterOptions};
use cleave_proto::{Client, ErrorCode, Selected};
use nix::sys::signal::Signal;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sequences_and_followers_replicate_every_command() {
    let c = Cluster::start("basic", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;

    let s1 = leader.insert("/photos/2024/cat.jpg", "meow").await.unwrap();
    let s2 = leader.insert("/photos/2024/dog.jpg", "woof").await.unwrap();
    let s3 = leader.update("/photos/2024/cat.jpg", "MEOW").await.unwrap();
    assert!(s1 < s2 && s2 < s3, "seqs increase: {s1} {s2} {s3}");
    assert_eq!(
        leader.update("/photos/none", "x").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        leader.delete("/photos/none").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    leader.insert("/photos/2025/a", "1").await.unwrap();
    leader.insert("/photos/top.txt", "t").await.unwrap();
    let s4 = leader.delete("/photos/2025/a").await.unwrap();
    assert!(s4 > s3);

    // Every node, followers included, serves the same answers.
    for node in &c.nodes {
        let mut n = node.client().await;
        assert_eq!(
            n.select("/photos/2024/cat.jpg").await.unwrap(),
            Selected::File("MEOW".into())
        );
        assert_eq!(
            n.select("/photos").await.unwrap(),
            Selected::Dir(vec!["2024/".into(), "top.txt".into()]),
            "the emptied directory 2025 disappears from its parent"
        );
        assert_eq!(
            n.list("/photos/2024", None, 10).await.unwrap(),
            ["cat.jpg", "dog.jpg"]
        );
        assert_eq!(
            n.list("/photos/2024", Some("cat.jpg"), 10).await.unwrap(),
            ["dog.jpg"]
        );
        let stat = n.stat("/photos/2024/cat.jpg").await.unwrap();
        assert_eq!((stat.kind.as_str(), stat.size, stat.seq), ("file", 4, s3));
        assert_eq!(n.stat("/photos/2024").await.unwrap().kind, "dir");
        assert_eq!(
            n.select("/photos/2025/a").await.unwrap_err().code(),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            n.read("/photos/2024/cat.jpg", 1, 2, Some(s3))
                .await
                .unwrap(),
            "EO"
        );
        assert_eq!(
            n.read("/photos/2024/cat.jpg", 0, 2, Some(s1))
                .await
                .unwrap_err()
                .code(),
            Some(ErrorCode::Stale)
        );
    }
    // Followers refuse writes and name the leader.
    let mut f = c.nodes[1].client().await;
    let err = f.insert("/photos/x", "y").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotLeader));
    assert!(err.to_string().contains(&c.nodes[0].addr), "{err}");

    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_an_acknowledged_write_sees_it_on_every_follower() {
    let c = Cluster::start("readyourwrites", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    let mut followers = vec![c.nodes[1].client().await, c.nodes[2].client().await];
    for i in 0..200 {
        let value = format!("v{i}");
        leader.insert("/r/key", value.clone()).await.unwrap();
        for f in &mut followers {
            assert_eq!(
                f.select("/r/key").await.unwrap(),
                Selected::File(value.clone().into()),
                "write {i}"
            );
        }
    }
}

/// Write `count` files from one task, recording each outcome.
async fn write_load(addr: String, prefix: String, count: usize) -> Checker {
    let mut checker = Checker::default();
    let mut client = cleave_proto::Client::connect(&addr).await.unwrap();
    for i in 0..count {
        let path = format!("/{prefix}/f{}", i % 97);
        let value = format!("{prefix}-{i}").into_bytes();
        let acked = client.insert(&path, value.clone()).await.is_ok();
        checker.record(&path, &value, acked);
    }
    checker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_restarts_and_catches_up_from_the_log() {
    let mut c = Cluster::start("kill9", ClusterOptions::default()).await;
    let load = tokio::spawn(write_load(c.nodes[0].addr.clone(), "k".into(), 3000));
    wait_until(Duration::from_secs(20), "some writes applied", || async {
        c.nodes[0]
            .status()
            .await
            .is_some_and(|s| s.applied_seq > 300)
    })
    .await;
    c.nodes[2].proc.kill9();
    let before = c.nodes[0].status().await.unwrap().applied_seq;
    wait_until(
        Duration::from_secs(20),
        "writes keep being acknowledged without node 2",
        || async {
            c.nodes[0]
                .status()
                .await
                .is_some_and(|s| s.committed_seq > before + 300)
        },
    )
    .await;
    c.nodes[2].restart();
    let checker = load.await.unwrap();
    assert_eq!(
        checker.acked(),
        3000,
        "every write was acknowledged while one follower was down"
    );
    c.assert_identical().await;
    let st = c.nodes[2].status().await.unwrap();
    assert_eq!(st.full_resyncs, 0, "caught up from the log, no full resync");
    checker.verify(&mut c.nodes[2].client().await).await;
}

/// Entries of [`LARGE_ENTRY_MIB`] each that a frozen follower falls behind by: 192 MiB of log,
/// far past the leader's 32 MiB memory cache but within the log's 256 MiB.
const LARGE_ENTRIES: usize = 16;
/// Size of each large write, above a fetch's 16 MiB budget.
const LARGE_ENTRY_MIB: usize = 12;

/// A follower behind a log of large entries catches up from the log (not by a full resync),
/// one fetch budget at a time. (That each fetch reads only its budget from Redis is checked by
/// `a_fetch_reads_no_more_than_its_budget_from_the_leaders_redis`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_a_log_of_large_entries_catches_up_from_the_log() {
    let c = Cluster::start("bigfetch", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    leader.insert("/b/first", "x").await.unwrap();
    c.wait_converged(CONVERGE).await;
    c.nodes[2].proc.stop();
    for i in 0..LARGE_ENTRIES {
        let body = bytes::Bytes::from(vec![i as u8; LARGE_ENTRY_MIB << 20]);
        leader.insert(&format!("/b/{i}"), body).await.unwrap();
    }
    let target = c.nodes[0].status().await.unwrap().applied_seq;
    c.nodes[2].proc.signal(Signal::SIGCONT);
    wait_until(CONVERGE, "node 2 catches up the large entries", || async {
        c.nodes[2]
            .status()
            .await
            .is_some_and(|s| s.applied_seq >= target)
    })
    .await;
    let st = c.nodes[2].status().await.unwrap();
    assert_eq!(st.full_resyncs, 0, "caught up from the log, no full resync");
    c.assert_identical().await;
}

/// `used_memory_peak` of the Redis at `addr`, in bytes.
async fn redis_peak(addr: &str) -> u64 {
    let mut redis = Client::connect_timeout(addr, CONVERGE).await.unwrap();
    let info = redis
        .raw(&cleave_proto::Frame::command(["INFO", "memory"]))
        .await
        .unwrap();
    let text = match info {
        cleave_proto::Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO memory answered {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory_peak:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory_peak in {text}"))
}

/// A fetch reads at most its byte budget (or one entry) from the leader's Redis, however many
/// entries it may take: while a reader fetches a log of 40 entries of 4 MiB from the start,
/// past the leader's 32 MiB memory cache, the Redis's peak memory grows by far less than the
/// log. Before the budget was applied inside Redis, a fetch read 256 entries (here the whole
/// 160 MiB log) into the script and trimmed the batch afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_reads_no_more_than_its_budget_from_the_leaders_redis() {
    let c = Cluster::start("fetchbudget", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    for i in 0..40u8 {
        let body = bytes::Bytes::from(vec![i; 4 << 20]);
        leader.insert(&format!("/fb/{i}"), body).await.unwrap();
    }
    c.wait_converged(CONVERGE).await;
    let redis = format!("127.0.0.1:{}", c.redis[0].port);
    let before = redis_peak(&redis).await;
    let epoch = c.nodes[0].status().await.unwrap().epoch;
    // As a new learner would: from seq 0, asking for 1 MiB (the reply holds one entry).
    let fetch = cleave_proto::Command::ReplFetch {
        epoch,
        follower: "-".into(),
        from: 0,
        from_epoch: 0,
        round: 0,
        max_bytes: 1 << 20,
        learner: false,
    };
    let reply = leader.call(&fetch).await.expect("REPL.FETCH");
    let reply = cleave_proto::command::repl::FetchReply::from_frame(reply).expect("a fetch reply");
    match reply {
        cleave_proto::command::repl::FetchReply::Entries { entries, .. } => {
            assert_eq!(
                entries.len(),
                1,
                "one 4 MiB entry exceeds a 1 MiB budget alone"
            )
        }
        other => panic!("expected entries from seq 1, got {other:?}"),
    }
    let after = redis_peak(&redis).await;
    let grew = after.saturating_sub(before);
    assert!(
        grew < 32 << 20,
        "the leader's Redis peak grew by {} MiB for one fetch of a 1 MiB budget: the log was \
         read whole, not within the budget",
        grew >> 20
    );
}

/// The log holds exactly its capacity in entries, and stays under its byte cap, however the
/// writes are batched: it is trimmed once per batch, at the end of the apply script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_its_capacity_and_byte_cap_under_batched_writes() {
    let opts = ClusterOptions {
        log_capacity: 50,
        extra_flags: vec!["--log-max-bytes".into(), (64 * 1024).to_string()],
        ..ClusterOptions::default()
    };
    let c = Cluster::start("logcap", opts).await;
    let write = |size: usize, writers: usize, each: usize, tag: &'static str| {
        let addr = c.nodes[0].addr.clone();
        async move {
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let addr = addr.clone();
                    tokio::spawn(async move {
                        let mut client = Client::connect_timeout(&addr, CONVERGE).await.unwrap();
                        for i in 0..each {
                            let body = bytes::Bytes::from(vec![b'x'; size]);
                            client
                                .insert(&format!("/{tag}{w}/{i}"), body)
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    // The status reports the log's extent as last read (every 100 ms): wait until that view
    // reaches the applied seq (no write runs meanwhile, so it then stays).
    let log_view = || async {
        wait_until(
            CONVERGE,
            "the status's log view at the applied seq",
            || async {
                c.nodes[0]
                    .status()
                    .await
                    .is_some_and(|s| s.log_first_seq + s.log_len == s.applied_seq + 1)
            },
        )
        .await;
        c.nodes[0].status().await.unwrap()
    };
    // 20 concurrent writers: the leader applies them in batches of many entries.
    write(1024, 20, 20, "small").await;
    let st = log_view().await;
    assert_eq!(st.log_len, 50, "the count cap binds: {st:?}");
    // Entries of 20 KiB: the byte cap (64 KiB) binds first.
    write(20 * 1024, 4, 3, "large").await;
    let st = log_view().await;
    assert!(
        (1..=3).contains(&st.log_len),
        "64 KiB holds at most three entries of 20 KiB: {st:?}"
    );
    c.wait_converged(CONVERGE).await;
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stalled_past_the_log_discards_its_data_and_resyncs_fully() {
    let opts = ClusterOptions {
        log_capacity: 100,
        ..ClusterOptions::default()
    };
    let c = Cluster::start("stall", opts).await;
    let mut leader = c.nodes[0].client().await;
    for i in 0..50 {
        leader.insert(&format!("/s/old{i}"), "old").await.unwrap();
    }
    c.wait_converged(CONVERGE).await;
    c.nodes[2].proc.stop();
    // Far more than the log holds, while node 2 is frozen. Node 1 keeps the quorum.
    let checker = write_load(c.nodes[0].addr.clone(), "s".into(), 600).await;
    assert_eq!(
        checker.acked(),
        600,
        "node 1 alone keeps the quorum: every write is acked"
    );
    for i in 0..50 {
        let acked = leader.delete(&format!("/s/old{i}")).await.is_ok();
        assert!(acked);
    }
    let st = c.nodes[0].status().await.unwrap();
    assert!(
        st.log_first_seq > 60,
        "the log was trimmed past node 2's position: {st:?}"
    );
    c.nodes[2].proc.signal(Signal::SIGCONT);
    wait_until(CONVERGE, "node 2 completes a full resync", || async {
        c.nodes[2]
            .status()
            .await
            .is_some_and(|s| s.full_resyncs >= 1)
    })
    .await;
    c.assert_identical().await;
    let mut n2 = c.nodes[2].client().await;
    assert_eq!(
        n2.select("/s/old7").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    checker.verify(&mut n2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_under_continuous_writes_terminates() {
    let opts = ClusterOptions {
        log_capacity: 50,
        ..ClusterOptions::default()
    };
    let c = Cluster::start("resyncload", opts).await;
    let mut leader = c.nodes[0].client().await;
    for i in 0..3000 {
        leader
            .insert(&format!("/big/f{i}"), vec![b'x'; 512])
            .await
            .unwrap();
    }
    c.wait_converged(CONVERGE).await;
    c.nodes[2].proc.stop();
    let mut checker = write_load(c.nodes[0].addr.clone(), "w".into(), 300).await;
    assert_eq!(
        checker.acked(),
        300,
        "node 1 keeps the quorum while node 2 is frozen"
    );
    // Keep writing while node 2 resyncs: the log (50 entries) turns over many times during the
    // snapshot copy.
    let load = tokio::spawn(write_load(c.nodes[0].addr.clone(), "during".into(), 3000));
    c.nodes[2].proc.signal(Signal::SIGCONT);
    wait_until(
        CONVERGE,
        "node 2 completes a full resync under load",
        || async {
            c.nodes[2]
                .status()
                .await
                .is_some_and(|s| s.full_resyncs >= 1 && s.in_sync)
        },
    )
    .await;
    let during = load.await.unwrap();
    assert_eq!(
        during.acked(),
        3000,
        "every write during the resync is acked"
    );
    checker.merge(during);
    c.assert_identical().await;
    checker.verify(&mut c.nodes[2].client().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_process_keeps_every_acknowledged_write() {
    let mut c = Cluster::start("restart", ClusterOptions::default()).await;
    let checker = write_load(c.nodes[0].addr.clone(), "p".into(), 500).await;
    assert_eq!(checker.acked(), 500);
    // Kill everything, Redis included, right away: Redis writes its AOF before it replies, so a
    // process crash (unlike a power loss) cannot lose an acknowledged write even with everysec.
    for n in &mut c.nodes {
        n.proc.kill9();
    }
    for r in &mut c.redis {
        r.restart().await;
    }
    for n in &mut c.nodes {
        n.restart();
    }
    // A restarted leader never resumes its epoch (its Redis may have lost the tail it handed
    // out): it waits, idle, for a newer one.
    let st = c.nodes[0].status_within(Duration::from_secs(20)).await;
    assert_eq!(
        st.role,
        cleave_proto::status::Role::Idle,
        "a restarted leader is idle"
    );
    let leader = c.elect().await;
    c.wait_in_sync(CONVERGE).await;
    assert_eq!(c.leader().await, leader);
    for n in &c.nodes {
        checker.verify(&mut n.client().await).await;
    }
    c.assert_identical().await;
}
