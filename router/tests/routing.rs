//! The router against stub nodes: leaders, redirects, read spreading, bounded retries, pushes.

mod common;

use cleave_proto::{Command, Connection, Frame, Selected};
use cleave_router::pool::CONNECTIONS_PER_NODE;
use common::{
    bounded, client, dead_addr, leader_like, single_cluster, storing, wait_until, Router, Stub,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn call(router: &Router, parts: &[&str]) -> Frame {
    let mut c = client(&router.addr).await;
    c.raw(&Frame::command(parts.iter().map(|s| s.to_string())))
        .await
        .unwrap_or_else(|e| panic!("{parts:?}: {e}"))
}

#[tokio::test]
async fn writes_follow_notleader_to_the_leader_and_remember_it() {
    let leader = Stub::start(leader_like).await;
    let redirect = format!("NOTLEADER {}", leader.addr);
    let follower = Stub::start(move |_| Frame::Error(redirect.clone())).await;
    let table = single_cluster(1, &[&follower.addr, &leader.addr], None);
    let router = Router::start(Some(&table), 2000).await;

    assert_eq!(
        call(&router, &["INSERT", "/a/x", "hello"]).await,
        Frame::Integer(5)
    );
    assert_eq!(follower.hits(), 1, "first node asked first");
    assert_eq!(leader.hits(), 1);
    for _ in 0..5 {
        assert_eq!(
            call(&router, &["INSERT", "/b/y", "hi"]).await,
            Frame::Integer(2)
        );
    }
    assert_eq!(follower.hits(), 1, "the learned leader is used directly");
    assert_eq!(leader.hits(), 6);
}

#[tokio::test]
async fn writes_use_the_table_hint_and_try_the_next_node_on_unknown_leader() {
    let unknown = Stub::start(|_| Frame::Error("NOTLEADER ?".into())).await;
    let leader = Stub::start(leader_like).await;
    let other = Stub::start(leader_like).await;
    let table = single_cluster(
        1,
        &[&other.addr, &unknown.addr, &leader.addr],
        Some(&unknown.addr),
    );
    let router = Router::start(Some(&table), 2000).await;
    assert_eq!(call(&router, &["DELETE", "/a/x"]).await, Frame::Integer(7));
    assert_eq!(unknown.hits(), 1, "the hint is tried first");
    assert_eq!(leader.hits(), 1, "then the node after it");
    assert_eq!(other.hits(), 0);
}

#[tokio::test]
async fn reads_spread_over_nodes_and_move_on_from_tryagain() {
    let lagging = Stub::start(|_| Frame::Error("TRYAGAIN catching up".into())).await;
    let b = Stub::start(leader_like).await;
    let c = Stub::start(leader_like).await;
    let table = single_cluster(1, &[&lagging.addr, &b.addr, &c.addr], Some(&b.addr));
    let router = Router::start(Some(&table), 2000).await;
    for i in 0..12 {
        let path = format!("/r/{i}");
        let reply = call(&router, &["SELECT", &path]).await;
        assert_eq!(reply, Frame::bulk(format!("contents of {path}")));
    }
    assert!(lagging.hits() >= 1, "round-robin reaches every node");
    assert!(
        b.hits() >= 4 && c.hits() >= 4,
        "b {} c {}",
        b.hits(),
        c.hits()
    );
}

#[tokio::test]
async fn unreachable_nodes_are_skipped_for_reads_and_writes() {
    let dead = dead_addr();
    let alive = Stub::start(leader_like).await;
    let table = single_cluster(1, &[&dead.addr, &alive.addr], Some(&dead.addr));
    let router = Router::start(Some(&table), 2000).await;
    assert_eq!(
        call(&router, &["INSERT", "/a/x", "abc"]).await,
        Frame::Integer(3)
    );
    for _ in 0..4 {
        assert_eq!(
            call(&router, &["SELECT", "/a/x"]).await,
            Frame::bulk("contents of /a/x")
        );
    }
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_error_is_returned() {
    let busy = Stub::start(|_| Frame::Error("TRYAGAIN no quorum".into())).await;
    let table = single_cluster(1, &[&busy.addr], None);
    let router = Router::start(Some(&table), 300).await;
    let start = Instant::now();
    let reply = call(&router, &["INSERT", "/a/x", "v"]).await;
    let took = start.elapsed();
    assert_eq!(reply, Frame::Error("TRYAGAIN no quorum".into()));
    assert!(busy.hits() > 2, "retried {} times", busy.hits());
    assert!(
        took < Duration::from_secs(5),
        "the budget bounds the retries: {took:?}"
    );

    let moved = Stub::start(|_| Frame::Error("MOVED hash 5 not served".into())).await;
    let table = single_cluster(1, &[&moved.addr], None);
    let router = Router::start(Some(&table), 200).await;
    let reply = call(&router, &["SELECT", "/a/x"]).await;
    assert_eq!(reply, Frame::Error("MOVED hash 5 not served".into()));

    let dead = dead_addr();
    let all_dead = single_cluster(1, &[&dead.addr], None);
    let router = Router::start(Some(&all_dead), 200).await;
    let Frame::Error(e) = call(&router, &["STAT", "/a/x"]).await else {
        panic!("expected an error")
    };
    assert!(
        e.starts_with("TRYAGAIN node ") && e.contains("unreachable"),
        "{e}"
    );
}

#[tokio::test]
async fn client_errors_and_versioned_stale_reads_are_not_retried() {
    let node = Stub::start(|cmd| match cmd {
        cleave_proto::Command::Read(_) => Frame::Error("STALE file changed".into()),
        _ => Frame::Error("NOTFOUND no such file /a/x".into()),
    })
    .await;
    let table = single_cluster(1, &[&node.addr], None);
    let router = Router::start(Some(&table), 5000).await;
    let reply = call(&router, &["SELECT", "/a/x"]).await;
    assert_eq!(reply, Frame::Error("NOTFOUND no such file /a/x".into()));
    let reply = call(&router, &["READ", "/a/x", "0", "10", "VERSION", "3"]).await;
    assert_eq!(reply, Frame::Error("STALE file changed".into()));
    assert_eq!(node.hits(), 2);
}

#[tokio::test]
async fn no_table_then_pushes_by_the_epoch_rules() {
    let node = Stub::start(leader_like).await;
    let mut router = Router::start(None, 1000).await;
    let reply = call(&router, &["INSERT", "/a/x", "v"]).await;
    assert_eq!(reply, Frame::Error("TRYAGAIN no range table yet".into()));
    assert_eq!(call(&router, &["TABLE.GET"]).await, Frame::Null);

    let mut c = client(&router.addr).await;
    let t2 = single_cluster(2, &[&node.addr], None);
    c.push_table(&t2).await.unwrap();
    c.push_table(&t2).await.unwrap();
    assert_eq!(c.table().await.unwrap(), t2);
    assert_eq!(
        call(&router, &["INSERT", "/a/x", "v"]).await,
        Frame::Integer(1)
    );

    let older = single_cluster(1, &[&node.addr], None);
    let e = c.push_table(&older).await.unwrap_err();
    assert_eq!(e.code(), Some(cleave_proto::ErrorCode::Stale), "{e}");
    let mut changed = t2.clone();
    changed.clusters.get_mut("fc").unwrap().leader = Some(node.addr.clone());
    let e = c.push_table(&changed).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(cleave_proto::ErrorCode::Stale),
        "same epoch, different table"
    );

    let persisted = std::fs::read_to_string(&router.table_file).unwrap();
    assert!(persisted.contains("epoch: 2"), "{persisted}");

    router.stop();
    common::bounded("the router to stop", router.task.take().unwrap())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn large_values_pass_through_unchanged() {
    let node = Stub::start(storing()).await;
    let table = single_cluster(1, &[&node.addr], None);
    let router = Router::start(Some(&table), 2000).await;
    let mut c = client(&router.addr).await;
    // Every 8-byte word holds its own offset: a dropped, repeated or misplaced chunk shows.
    let big: Vec<u8> = (0..(20u64 << 20) / 8).flat_map(u64::to_le_bytes).collect();
    assert_eq!(c.insert("/big/file", big.clone()).await.unwrap(), 20 << 20);
    let Selected::File(back) = c.select("/big/file").await.unwrap() else {
        panic!("a file, not a directory")
    };
    assert_eq!(back.len(), big.len());
    if let Some(at) = back.iter().zip(&big).position(|(a, b)| a != b) {
        panic!("the file came back changed from byte {at}");
    }
    assert_eq!(node.hits(), 2, "one INSERT and one SELECT reached the node");
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let slow = Stub::start_with_delay(Duration::from_millis(400), leader_like).await;
    let table = single_cluster(1, &[&slow.addr], None);
    let mut router = Router::start(Some(&table), 2000).await;
    let addr = router.addr.clone();
    let request = tokio::spawn(async move { client(&addr).await.insert("/a/x", "four").await });
    // Stop only once the request is at the node, i.e. in flight.
    wait_until("the INSERT to reach the node", || slow.hits() == 1).await;
    router.stop();
    assert_eq!(request.await.unwrap().unwrap(), 4);
    common::bounded("the router to stop", router.task.take().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        cleave_proto::Client::connect(&router.addr).await.is_err(),
        "no longer accepting"
    );
}

/// A node that accepts connections while `mute` is set, acknowledges their `MUX` and then never
/// answers anything on them (not even later: a process that hangs), and answers normally on
/// connections accepted after. Counts the requests that reached muted connections.
struct MuteNode {
    addr: String,
    mute: Arc<AtomicBool>,
    muted_requests: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MuteNode {
    async fn start() -> MuteNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mute = Arc::new(AtomicBool::new(true));
        let muted_requests = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (m, n, a) = (mute.clone(), muted_requests.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let muted = m.load(Ordering::SeqCst);
                let n = n.clone();
                tokio::spawn(async move {
                    let mut conn = Connection::new(socket);
                    while let Ok(Some(frame)) = conn.read_frame().await {
                        let reply = match Command::from_frame(frame) {
                            Ok(Command::Mux) => Frame::ok(),
                            _ if muted => {
                                n.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            Ok(cmd) => leader_like(&cmd),
                            Err(r) => r.to_frame(),
                        };
                        if conn.send(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        MuteNode {
            addr,
            mute,
            muted_requests,
            accepted,
            task,
        }
    }
}

impl Drop for MuteNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pins the router's attempt timeout and connection discard: a request to a node that never
/// answers ends (within the retry budget) with `-TRYAGAIN ... unreachable: timed out` instead
/// of hanging; every connection that timed out is dropped, so once the node answers again the
/// next requests work and none of them is ever sent on a connection that went silent.
#[tokio::test]
async fn a_silent_node_times_out_and_its_connections_are_discarded() {
    let node = MuteNode::start().await;
    let table = single_cluster(1, &[&node.addr], Some(&node.addr));
    let router = Router::start(Some(&table), 1000).await;
    let reply = bounded(
        "a read from a silent node",
        call(&router, &["SELECT", "/a/x"]),
    )
    .await;
    let Frame::Error(e) = reply else {
        panic!("a silent node's read must fail, got {reply:?}")
    };
    assert!(
        e.starts_with("TRYAGAIN node ") && e.contains("unreachable") && e.contains("timed out"),
        "{e}"
    );
    let muted = node.accepted.load(Ordering::SeqCst);
    let sent_while_muted = node.muted_requests.load(Ordering::SeqCst);
    assert!(sent_while_muted >= 1, "the read reached the node");

    // The node comes back (new connections are answered); the silent ones stay silent.
    node.mute.store(false, Ordering::SeqCst);
    for i in 0..4 * CONNECTIONS_PER_NODE {
        let path = format!("/a/{i}");
        assert_eq!(
            bounded(
                "a read once the node answers",
                call(&router, &["SELECT", &path])
            )
            .await,
            Frame::bulk(format!("contents of {path}")),
            "request {i}"
        );
    }
    assert_eq!(
        node.muted_requests.load(Ordering::SeqCst),
        sent_while_muted,
        "a request was sent on a connection that had timed out (not discarded)"
    );
    assert!(
        node.accepted.load(Ordering::SeqCst) > muted,
        "the router reconnected"
    );
}
