//! The committer's acknowledgement rule with real processes and `SIGSTOP`: a write is answered
//! only once `minInSync` followers hold it, and a write whose quorum does not come within
//! `writeTimeout` gets `-TRYAGAIN`, is never served before it is committed, and is applied
//! exactly once however often it is retried; a write pending on a leader that is deposed is
//! answered `-TRYAGAIN` at once.

use bytes::Bytes;
use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use cleave_proto::{Frame, Selected};
use nix::sys::signal::Signal;
use std::time::Duration;

/// Generous bound for anything that must happen, on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// Pins `minInSync = 2` with three followers: while only one follower runs, a write that it has
/// applied is still not acknowledged; once a second follower runs again, the same write is
/// acknowledged (with its seq), and every node ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_in_sync_2_a_write_waits_for_a_second_follower() {
    let c = Cluster::start(
        "quorum2",
        ClusterOptions {
            size: 4,
            min_in_sync: 2,
            write_timeout_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await;
    let mut leader = c.nodes[0].client().await;
    leader.insert("/q2/before", "all up").await.unwrap();

    c.nodes[2].proc.stop();
    c.nodes[3].proc.stop();
    let leader_node = &c.nodes[0];
    let before = leader_node.status_within(WAIT).await.applied_seq;
    let mut pending = {
        let mut l = c.nodes[0].client().await;
        tokio::spawn(async move { l.insert("/q2/x", "needs two").await })
    };
    // Follower 1 applies it: wait until the leader holds it and follower 1 caught up with that.
    wait_until(WAIT, "the leader applies the pending write", || async {
        leader_node
            .status()
            .await
            .is_some_and(|s| s.applied_seq > before)
    })
    .await;
    let target = leader_node.status_within(WAIT).await.applied_seq;
    wait_until(
        WAIT,
        &format!("follower 1 applies seq {target}"),
        || async {
            c.nodes[1]
                .status()
                .await
                .is_some_and(|s| s.applied_seq >= target)
        },
    )
    .await;
    // One follower holds it: not enough. (A correct node never answers here, however long we
    // wait; a node that counted one follower as a quorum would have answered already.)
    let early = tokio::time::timeout(Duration::from_millis(500), &mut pending).await;
    assert!(
        early.is_err(),
        "a write held by one follower was answered with minInSync 2: {early:?}; leader: {:?}",
        leader_node.status().await
    );

    c.nodes[2].proc.signal(Signal::SIGCONT);
    let seq = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the write is answered once a second follower holds it")
        .expect("write task")
        .expect("the write is acknowledged");
    assert!(
        seq > before && seq <= target,
        "seq {seq} in ({before}, {target}]"
    );
    c.nodes[3].proc.signal(Signal::SIGCONT);
    c.assert_identical().await;
    assert_eq!(
        leader.select("/q2/x").await.unwrap(),
        Selected::File("needs two".into())
    );
}

/// Pins the committer's write timeout (`minInSync 1`, `writeTimeout` 1 s, both followers
/// stopped): a tagged write gets `-TRYAGAIN` instead of waiting forever; while it is not
/// committed no read serves it; once the followers run again, the same `(session, seq)` sent
/// again gets the first application's seq back without being applied a second time (the
/// leader's applied seq does not move), the file holds it, and every node ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_quorum_times_out_and_is_applied_at_most_once() {
    let c = Cluster::start(
        "wtimeout",
        ClusterOptions {
            size: 3,
            min_in_sync: 1,
            write_timeout_ms: Some(1000),
            ..Default::default()
        },
    )
    .await;
    let leader_node = &c.nodes[0];
    let mut leader = leader_node.client().await;
    let tagged = |n: &str, value: &str| {
        Frame::command([
            "REQ".to_string(),
            "wt-session".into(),
            n.into(),
            "INSERT".into(),
            "/wt/a".into(),
            value.into(),
        ])
    };
    let first = leader.raw(&tagged("1", "v1")).await.unwrap();
    assert!(matches!(first, Frame::Integer(_)), "{first:?}");

    c.nodes[1].proc.stop();
    c.nodes[2].proc.stop();
    let before = leader_node.status_within(WAIT).await.applied_seq;
    let reply = leader.raw(&tagged("2", "v2")).await.unwrap();
    let Frame::Error(e) = &reply else {
        panic!("a write without quorum was answered {reply:?}")
    };
    assert!(e.starts_with("TRYAGAIN "), "{e}");
    let applied = leader_node.status_within(WAIT).await.applied_seq;
    assert_eq!(
        applied,
        before + 1,
        "the leader applied it once, unacknowledged"
    );
    // Not committed: no read may return it (the leader cannot prove it is current).
    let mut reader = leader_node
        .client()
        .await
        .with_timeout(Duration::from_secs(5));
    match reader.select("/wt/a").await {
        Ok(Selected::File(v)) => assert_ne!(v, Bytes::from("v2"), "an uncommitted write was read"),
        other => assert!(other.is_err(), "unexpected {other:?}"),
    }

    c.nodes[1].proc.signal(Signal::SIGCONT);
    c.nodes[2].proc.signal(Signal::SIGCONT);
    let converged = c.wait_converged(WAIT).await;
    // Sent again (as a router does after TRYAGAIN): answered with the first seq, not re-applied.
    let again = leader.raw(&tagged("2", "v2")).await.unwrap();
    assert_eq!(again, Frame::Integer(applied as i64), "the retry's answer");
    let st = leader_node.status_within(WAIT).await;
    assert_eq!(st.applied_seq, converged, "the retry applied nothing");
    assert_eq!(leader.stat("/wt/a").await.unwrap().seq, applied);
    assert_eq!(
        leader.select("/wt/a").await.unwrap(),
        Selected::File("v2".into())
    );
    c.assert_identical().await;
}

/// Pins the committer's leadership-change path: a write waiting for its quorum on a leader that
/// is told to follow another node at a newer epoch is answered `-TRYAGAIN leadership changed
/// ...` at once (not after `writeTimeout`, which is a minute here), and the deposed node refuses
/// new writes with `-NOTLEADER`: a deposed leader acknowledges nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_pending_on_a_deposed_leader_is_answered_tryagain() {
    let c = Cluster::start(
        "deposed",
        ClusterOptions {
            size: 3,
            min_in_sync: 1,
            write_timeout_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await;
    let leader_node = &c.nodes[0];
    let before = leader_node.status_within(WAIT).await.applied_seq;
    c.nodes[1].proc.stop();
    c.nodes[2].proc.stop();
    let pending = {
        let mut l = leader_node.client().await;
        tokio::spawn(async move { l.insert("/dp/x", "never acknowledged").await })
    };
    wait_until(WAIT, "the leader applies the pending write", || async {
        leader_node
            .status()
            .await
            .is_some_and(|s| s.applied_seq > before)
    })
    .await;
    leader_node
        .client()
        .await
        .follow(2, &c.nodes[1].addr)
        .await
        .expect("the leader follows node 1 at epoch 2");
    let reply = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the pending write is answered when its leader is deposed")
        .expect("write task");
    let e = reply.expect_err("a deposed leader acknowledged a write");
    assert!(
        e.to_string().contains("leadership changed before seq"),
        "{e}"
    );
    let e = leader_node
        .client()
        .await
        .insert("/dp/y", "refused")
        .await
        .expect_err("a deposed leader took a write");
    assert_eq!(e.code(), Some(cleave_proto::ErrorCode::NotLeader), "{e}");
}
