//! A full resync under a write load it cannot keep up with gives up when the live entries it
//! buffers pass `--resync-buffer-bytes`, and starts over instead of filling its Redis; once the
//! load eases it completes, and the follower ends identical to the leader.

use bytes::Bytes;
use cleave_e2e::{Cluster, ClusterOptions};
use cleave_proto::Client;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const CAP: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_whose_buffer_passes_its_cap_starts_over_then_completes() {
    let opts = ClusterOptions {
        // Long enough that the flood below does not move the log past the snapshot's start
        // before the 1 MiB buffer fills (16 writes of 64 KiB).
        log_capacity: 1000,
        extra_flags: vec!["--resync-buffer-bytes".into(), CAP.to_string()],
        ..ClusterOptions::default()
    };
    let c = Cluster::start("rbuf", opts).await;
    let leader_addr = c.nodes[0].addr.clone();
    let connect = |addr: String| async move {
        Client::connect(&addr)
            .await
            .expect("connect")
            .with_timeout(Duration::from_secs(30))
    };
    // Enough data that the snapshot takes a while to copy.
    let mut l = connect(leader_addr.clone()).await;
    let value = Bytes::from(vec![b'd'; 32 * 1024]);
    for i in 0..1500 {
        l.insert(&format!("/rbuf{}/f{i}", i % 20), value.clone())
            .await
            .expect("insert");
    }
    c.wait_converged(TIMEOUT).await;
    let follower = &c.nodes[2];
    follower.proc.stop();
    // Past the log while it is stopped.
    for i in 0..1100 {
        l.insert(&format!("/rbuf/past{}", i % 40), Bytes::from("p"))
            .await
            .expect("insert");
    }
    // A steady flood of 64 KiB writes: more than a 1 MiB buffer holds during the copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, addr) = (stop.clone(), leader_addr.clone());
            tokio::spawn(async move {
                let mut c = connect(addr).await;
                let v = Bytes::from(vec![b'w'; 64 * 1024]);
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    c.insert(&format!("/flood{w}/f{}", n % 50), v.clone())
                        .await
                        .expect("insert");
                    n += 1;
                }
                n
            })
        })
        .collect();
    follower.proc.signal(Signal::SIGCONT);
    let log = c.dir.join("rbuf-2").join("node.log");
    let needle = format!("the resync buffer passed {CAP} bytes");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&needle) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("the resync never gave up at its {CAP}-byte buffer cap; the follower's log ends:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    c.wait_converged(TIMEOUT).await;
    c.assert_identical().await;
    let st = follower.status_within(TIMEOUT).await;
    assert!(
        st.full_resyncs >= 1,
        "the follower never completed a resync: {st:?}"
    );
}
