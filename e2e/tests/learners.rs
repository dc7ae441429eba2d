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
            .learn(epoch, &a.nodes[0].addr)
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
