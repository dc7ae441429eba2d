//! Learners (issue 9: how a split's new cluster clones its source): nodes that follow a leader
//! with `NODE.FOLLOW epoch leader LEARNER` copy its data (snapshot, then the live log) and
//! converge to identical data, but never count towards its quorum: with every voting follower
//! stopped, the leader acknowledges no write and confirms no read, however many learners hold
//! the entry.

use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use cleave_proto::owned::Ownership;
use cleave_proto::status::Role;
use cleave_proto::{ErrorCode, Selected};
use nix::sys::signal::Signal;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_copy_the_leader_but_never_count_towards_its_quorum() {
    let a = Cluster::start(
        "learnsrc",
        ClusterOptions {
            write_timeout_ms: Some(1500),
            ..ClusterOptions::default()
        },
    )
    .await;
    let b = Cluster::start(
        "learner",
        ClusterOptions {
            size: 2,
            start_idle: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let mut leader = a.nodes[0].client().await;
    let big = bytes::Bytes::from(vec![5u8; 300 * 1024]);
    for i in 0..20 {
        leader
            .insert(&format!("/l{i}/big"), big.clone())
            .await
            .unwrap();
        leader.insert(&format!("/l{i}/small"), "s").await.unwrap();
    }
    let epoch = a.nodes[0].status().await.unwrap().epoch;
    for n in &b.nodes {
        n.client()
            .await
            .learn(epoch, &a.nodes[0].addr, &[])
            .await
            .expect("NODE.FOLLOW ... LEARNER");
    }
    // Live writes while the learners copy.
    for i in 0..50 {
        leader.insert(&format!("/live/{i}"), "x").await.unwrap();
    }
    let target = a.nodes[0].status().await.unwrap().applied_seq;
    wait_until(CONVERGE, "both learners at the leader's seq", || async {
        let mut all = true;
        for n in &b.nodes {
            all &= n
                .status()
                .await
                .is_some_and(|s| s.applied_seq >= target && s.learner && s.role == Role::Follower);
        }
        all
    })
    .await;
    let st = a.nodes[0].status().await.unwrap();
    let learners = st.followers.iter().filter(|f| f.learner).count();
    assert_eq!(
        learners, 2,
        "the leader sees two learners: {:?}",
        st.followers
    );
    // The learners hold the leader's data (same digest as a voting follower).
    a.wait_converged(CONVERGE).await;
    let reference = a.digest(1).await;
    for i in 0..b.nodes.len() {
        assert_eq!(b.digest(i).await, reference, "learner {i} differs");
    }

    // The source gives half its range away (a split's fence): its replicas delete that half;
    // the learners copy the record but it is not theirs (it names the source), so they keep
    // every key: deleting by it would delete the very half a split hands over.
    let mid = u32::MAX / 2;
    let fence = Ownership {
        cluster: a.name.clone(),
        epoch: 2,
        ranges: vec![(0, mid)],
        fenced: false,
    };
    let seq = leader.own(&fence).await.expect("NODE.OWN on the source");
    wait_until(
        CONVERGE,
        "the source's replicas cleaned, the learners applied the fence",
        || async {
            let mut all = true;
            for n in &a.nodes {
                all &= n.status().await.is_some_and(|s| s.cleaned_epoch == 2);
            }
            for n in &b.nodes {
                all &= n.status().await.is_some_and(|s| s.applied_seq >= seq);
            }
            all
        },
    )
    .await;
    // A learner's cleaner looks every 500 ms: give it three looks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, n) in b.nodes.iter().enumerate() {
        let st = n.status().await.unwrap();
        assert_eq!(
            st.cleaned_epoch, 0,
            "learner {i} cleaned by its source's record"
        );
        assert_eq!(
            st.own_cluster, a.name,
            "learner {i} holds its source's record"
        );
        let upper = (0..20)
            .filter(|i| {
                cleave_proto::FilePath::parse(&format!("/l{i}/big"))
                    .unwrap()
                    .hash()
                    > mid
            })
            .count();
        assert!(upper > 0);
        let keys = b.digest(i).await.0;
        assert!(
            keys > a.digest(0).await.0,
            "learner {i} kept the half its source gave away ({keys} keys)"
        );
        // ... and serves nothing: the record names another cluster.
        let r = n.client().await.select("/l0/small").await;
        assert!(
            matches!(&r, Err(cleave_proto::Error::Reply(e)) if e.code == ErrorCode::Moved || e.code == ErrorCode::TryAgain),
            "a learner serves no read: {r:?}"
        );
    }

    // Every voting follower stopped: learners alone are no quorum.
    a.nodes[1].proc.stop();
    a.nodes[2].proc.stop();
    let before = a.nodes[0].status().await.unwrap().applied_seq;
    let r = leader.insert("/l0/unacked", "u").await;
    assert!(
        matches!(&r, Err(cleave_proto::Error::Reply(e)) if e.code == ErrorCode::TryAgain),
        "a write held only by learners must not be acknowledged: {r:?}"
    );
    // ... although the learners did receive it.
    wait_until(
        CONVERGE,
        "the learners hold the unacknowledged entry",
        || async {
            let mut all = true;
            for n in &b.nodes {
                all &= n.status().await.is_some_and(|s| s.applied_seq > before);
            }
            all
        },
    )
    .await;
    let read = leader.select("/l0/small").await;
    assert!(
        matches!(&read, Err(cleave_proto::Error::Reply(e)) if e.code == ErrorCode::TryAgain),
        "the leader cannot confirm a read with learners only: {read:?}"
    );
    a.nodes[1].proc.signal(Signal::SIGCONT);
    a.nodes[2].proc.signal(Signal::SIGCONT);
    wait_until(CONVERGE, "the leader reads again", || async {
        leader_select(&a, "/l0/small").await == Some(Selected::File("s".into()))
    })
    .await;
    // The learners stay learners across a restart (the role is persisted).
    let mut b = b;
    b.nodes[1].proc.kill9();
    b.nodes[1].restart();
    wait_until(CONVERGE, "the restarted learner learns again", || async {
        b.nodes[1]
            .status()
            .await
            .is_some_and(|s| s.learner && s.role == Role::Follower && s.in_sync)
    })
    .await;
}

async fn leader_select(c: &Cluster, path: &str) -> Option<Selected> {
    c.nodes[0].client().await.select(path).await.ok()
}

/// The hash of `path`'s root: what every key of the file names.
fn hash_of(path: &str) -> u32 {
    cleave_proto::FilePath::parse(path).unwrap().hash()
}

/// Single-hash spans of `paths`' hashes, sorted and distinct.
fn spans_of(paths: &[String]) -> Vec<(u32, u32)> {
    let hashes: std::collections::BTreeSet<u32> = paths.iter().map(|p| hash_of(p)).collect();
    hashes.into_iter().map(|h| (h, h)).collect()
}

/// A split's learner copies only the range it takes over: its snapshot holds the data keys of
/// its spans, so after the copy it holds exactly the source's keys of those hashes, and of the
/// other hashes only what the live log wrote meanwhile (never read there; the cleaning pass
/// deletes it at the commit). It stays a learner, with its spans, across a restart after a
/// snapshot (a learner that came back as a voter would count towards its source's quorum), and
/// told other spans it copies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_with_spans_copies_only_their_keys_and_keeps_its_role_across_restarts() {
    let a = Cluster::start(
        "spansrc",
        ClusterOptions {
            // A short log: the learners cannot replay from seq 1 and must take a snapshot.
            log_capacity: 20,
            ..ClusterOptions::default()
        },
    )
    .await;
    let mut b = Cluster::start(
        "spanlearner",
        ClusterOptions {
            size: 2,
            start_idle: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let mid = u32::MAX / 2;
    let (upper, lower) = (vec![(mid + 1, u32::MAX)], vec![(0, mid)]);
    let mut leader = a.nodes[0].client().await;
    let before: Vec<String> = (0..60).map(|i| format!("/s{i}/f")).collect();
    for (i, p) in before.iter().enumerate() {
        leader.insert(p, vec![i as u8; 2048]).await.unwrap();
    }
    let (pre_upper, pre_lower) = before.iter().partition::<Vec<_>, _>(|p| hash_of(p) > mid);
    assert!(
        pre_upper.len() > 5 && pre_lower.len() > 5,
        "files on both sides"
    );
    let epoch = a.nodes[0].status().await.unwrap().epoch;
    for n in &b.nodes {
        n.client()
            .await
            .learn(epoch, &a.nodes[0].addr, &upper)
            .await
            .expect("NODE.FOLLOW ... LEARNER spans");
    }
    // Live writes on both sides while the learners copy.
    let live: Vec<String> = (0..40).map(|i| format!("/v{i}/x")).collect();
    for p in &live {
        leader.insert(p, "x").await.unwrap();
    }
    let live_lower: Vec<String> = live.iter().filter(|p| hash_of(p) <= mid).cloned().collect();
    let target = a.nodes[0].status().await.unwrap().applied_seq;
    let upper_text = cleave_proto::owned::spans_text(&upper);
    wait_until(CONVERGE, "both learners copied and caught up", || async {
        let mut all = true;
        for n in &b.nodes {
            all &= n.status().await.is_some_and(|s| {
                s.applied_seq >= target
                    && s.learner
                    && s.role == Role::Follower
                    && s.full_resyncs >= 1
                    && s.learn_spans == upper_text
            });
        }
        all
    })
    .await;
    let source_upper = a.digest_within(0, &upper).await;
    let source_lower = a.digest_within(0, &lower).await;
    for i in 0..b.nodes.len() {
        assert_eq!(
            b.digest_within(i, &upper).await,
            source_upper,
            "learner {i}: the moving range is the source's"
        );
        let held_lower = b.digest_within(i, &lower).await.0;
        assert_eq!(
            held_lower,
            b.digest_within(i, &spans_of(&live_lower)).await.0,
            "learner {i}: of the other half it holds only what the live log wrote"
        );
        assert!(
            held_lower < source_lower.0,
            "learner {i} copied the other half ({held_lower} of {} keys)",
            source_lower.0
        );
    }

    // A restart after the snapshot: still a learner, with its spans, and the source still
    // counts it as one.
    b.nodes[1].proc.kill9();
    b.nodes[1].restart();
    wait_until(CONVERGE, "the restarted learner learns again", || async {
        b.nodes[1].status().await.is_some_and(|s| {
            s.learner && s.role == Role::Follower && s.in_sync && s.learn_spans == upper_text
        })
    })
    .await;
    let restarted = b.nodes[1].status().await.unwrap().id;
    wait_until(
        CONVERGE,
        "the source sees the restarted learner",
        || async {
            let seen = a.nodes[0].status().await.unwrap().followers;
            seen.iter()
                .any(|f| f.id == restarted && f.last_seen_ms < 500)
        },
    )
    .await;
    let seen = a.nodes[0].status().await.unwrap().followers;
    assert!(
        seen.iter().filter(|f| f.id == restarted).all(|f| f.learner),
        "the restarted learner counts as a voter of its source: {seen:?}"
    );

    // Other spans at the same epoch: it copies again, and now holds the other half.
    let resyncs = b.nodes[0].status().await.unwrap().full_resyncs;
    b.nodes[0]
        .client()
        .await
        .learn(epoch, &a.nodes[0].addr, &lower)
        .await
        .expect("NODE.FOLLOW with other spans");
    let lower_text = cleave_proto::owned::spans_text(&lower);
    wait_until(CONVERGE, "the learner copied the other half", || async {
        b.nodes[0].status().await.is_some_and(|s| {
            s.full_resyncs > resyncs && s.learn_spans == lower_text && s.applied_seq >= target
        })
    })
    .await;
    assert_eq!(b.digest_within(0, &lower).await, source_lower);
}
