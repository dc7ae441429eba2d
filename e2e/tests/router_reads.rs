//! Reads through the router while a node hangs (`SIGSTOP`): the router sends a read that has
//! not been answered after a short delay to the next node too (a hedged read), so a stopped
//! follower costs a read that delay, not the attempt timeout (half the router's 5 s retry
//! budget), and every read still returns what was written.

use bytes::Bytes;
use cleave_e2e::{wait_until, ClusterOptions, System};
use cleave_proto::{Client, Selected};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Every request of this test is bounded by this (a hung router fails the test).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest a read may be with one node of its cluster stopped. Without hedging, a read
/// sent to the stopped node waits for the attempt timeout, 2.5 s, before anything else.
const SLOWEST_READ: Duration = Duration::from_millis(2000);
const FILES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_does_not_hold_reads_for_the_attempt_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    for c in &sys.clusters {
        c.wait_in_sync(Duration::from_secs(30)).await;
    }
    let connect = || async {
        Client::connect(&sys.router.addr)
            .await
            .expect("router")
            .with_timeout(REQUEST_TIMEOUT)
    };
    wait_until(Duration::from_secs(30), "the router to serve", || async {
        connect()
            .await
            .insert("/hedge0/probe", Bytes::from("x"))
            .await
            .is_ok()
    })
    .await;
    let mut c = connect().await;
    let value = |i: usize| Bytes::from(format!("hedged-{i}"));
    let path = |i: usize| format!("/hedge{}/f{i}", i % 10);
    for i in 0..FILES {
        c.insert(&path(i), value(i)).await.expect("insert");
    }
    // Every follower must hold every file before one of them is stopped.
    for cl in &sys.clusters {
        cl.wait_converged(Duration::from_secs(30)).await;
    }
    let stopped: Vec<_> = sys.clusters.iter().map(|cl| &cl.nodes[1]).collect();
    for n in &stopped {
        n.proc.stop();
    }
    let mut slowest = Duration::ZERO;
    // Three rounds, so reads spread over every node, the stopped ones included.
    for round in 0..3 {
        for i in 0..FILES {
            let t = Instant::now();
            let got = c.select(&path(i)).await.unwrap_or_else(|e| {
                panic!(
                    "round {round}: SELECT {} with a follower stopped: {e}",
                    path(i)
                )
            });
            slowest = slowest.max(t.elapsed());
            assert_eq!(got, Selected::File(value(i)), "{}", path(i));
        }
    }
    for n in &stopped {
        n.proc.signal(Signal::SIGCONT);
    }
    assert!(
        slowest < SLOWEST_READ,
        "a read took {slowest:?} with one follower stopped: it waited on the stopped node \
         instead of asking another"
    );
}
