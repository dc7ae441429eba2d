//! A read reflects at least its read index, whatever happened to the store underneath: the node
//! reads its store's applied seq atomically with the data and re-checks it against the index
//! (and its role, epoch and resync generation) after the barrier, so a follower whose Redis
//! lost everything while the node process lived (a flushed store, or one a full resync has just
//! flushed) answers `TRYAGAIN` — never `NOTFOUND` for a file that exists — until it has its data
//! back.

use bytes::Bytes;
use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use cleave_proto::{Client, ErrorCode, Frame, Selected};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(addr: &str) -> Client {
    Client::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
        .with_timeout(TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_store_was_flushed_serves_no_read_until_it_has_its_data_back() {
    let opts = ClusterOptions {
        log_capacity: 20,
        ..ClusterOptions::default()
    };
    let c = Cluster::start("rb", opts).await;
    let mut leader = connect(&c.nodes[0].addr).await;
    leader
        .insert("/rb/x", Bytes::from("v1"))
        .await
        .expect("insert");
    // More writes than the log holds: the flushed follower will need a full resync.
    for i in 0..30 {
        leader
            .insert(&format!("/rb/f{i}"), Bytes::from("filler"))
            .await
            .expect("insert");
    }
    c.wait_converged(TIMEOUT).await;

    let follower = &c.nodes[2];
    let redis = format!("127.0.0.1:{}", c.redis[2].port);
    let flushed = connect(&redis)
        .await
        .raw(&Frame::command(["FLUSHALL"]))
        .await
        .expect("FLUSHALL");
    assert_eq!(flushed, Frame::Simple("OK".into()));

    // Nothing tells the node yet (no write is in flight): its memory still says it holds every
    // entry, so the barrier passes at once and only the re-check stands between the client and
    // an empty store.
    let mut f = connect(&follower.addr).await;
    for attempt in 0..5 {
        match f.select("/rb/x").await {
            Err(e) if e.code() == Some(ErrorCode::TryAgain) => {}
            other => panic!(
                "attempt {attempt}: a follower with a flushed store answered {other:?}; it must \
                 refuse with TRYAGAIN"
            ),
        }
    }

    // The next entry shows the follower its store lost everything: it resets, resyncs in full,
    // and serves the file again.
    leader
        .insert("/rb/after", Bytes::from("v"))
        .await
        .expect("insert");
    wait_until(
        TIMEOUT,
        "the flushed follower to serve /rb/x again",
        || async {
            matches!(
                connect(&follower.addr).await.select("/rb/x").await,
                Ok(Selected::File(b)) if b == "v1"
            )
        },
    )
    .await;
    c.wait_converged(TIMEOUT).await;
    c.assert_identical().await;
}
