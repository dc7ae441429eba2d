//! The node's memory is bounded by bytes under a flood of large writes: with the leader's Redis
//! stopped (nothing can be applied), one connection pipelines far more data than the write
//! queue (`--write-queue-bytes`) holds. The node must stop reading at the bound — the sender's
//! socket fills and it waits — instead of buffering the flood; once Redis continues, every write
//! is applied and answered, in order.

use cleave_e2e::{wait_until, Cluster, ClusterOptions};
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;
/// The node's write queue in this test.
const QUEUE: usize = 8 * MIB;
/// Writes of 1 MiB sent in one pipeline: 12 times the queue.
const WRITES: usize = 96;

fn insert_frame(path: &str, value: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(value.len() + 64);
    f.extend_from_slice(format!("*3\r\n$6\r\nINSERT\r\n${}\r\n{path}\r\n", path.len()).as_bytes());
    f.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    f.extend_from_slice(value);
    f.extend_from_slice(b"\r\n");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_writes_is_held_at_the_write_queue_bound() {
    let opts = ClusterOptions {
        write_timeout_ms: Some(120_000),
        extra_flags: vec!["--write-queue-bytes".into(), QUEUE.to_string()],
        ..ClusterOptions::default()
    };
    let c = Cluster::start("wq", opts).await;
    let leader = &c.nodes[0];
    let baseline = leader.proc.rss();
    c.redis[0].proc.stop();

    let socket = TcpStream::connect(&leader.addr).await.expect("connect");
    let (mut rd, mut wr) = socket.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let value = vec![b'q'; MIB];
            for i in 0..WRITES {
                let frame = insert_frame(&format!("/wq/f{i}"), &value);
                wr.write_all(&frame).await.expect("send");
                sent.fetch_add(frame.len() as u64, Ordering::SeqCst);
            }
            wr
        })
    };
    // Wait until the sender is held back: nothing more goes out for a whole second.
    let mut last = (0, Instant::now());
    wait_until(
        Duration::from_secs(60),
        "the sender to be held back",
        || {
            let now = sent.load(Ordering::SeqCst);
            let held = now == last.0 && last.1.elapsed() >= Duration::from_secs(1);
            if now != last.0 {
                last = (now, Instant::now());
            }
            async move { held }
        },
    )
    .await;
    let accepted = sent.load(Ordering::SeqCst) as usize;
    let rss = leader.proc.rss();
    let total = WRITES * (MIB + 40);
    println!(
        "sent {} of {} MiB before being held; node RSS {} MiB (baseline {} MiB)",
        accepted / MIB,
        total / MIB,
        rss / MIB as u64,
        baseline / MIB as u64
    );
    assert!(
        accepted < total,
        "the whole flood ({} MiB) went out: the node read it all while nothing could be applied",
        total / MIB
    );
    // The queue, one frame being decoded, socket buffers and the allocator's slack.
    let bound = baseline + (QUEUE + 24 * MIB) as u64;
    assert!(
        rss < bound,
        "node RSS {} MiB with a {} MiB write queue (baseline {} MiB): the flood was buffered",
        rss / MIB as u64,
        QUEUE / MIB,
        baseline / MIB as u64
    );

    c.redis[0].proc.signal(Signal::SIGCONT);
    let _wr = writer
        .await
        .expect("the sender finished once Redis continued");
    // Every write answered, in order: integers (its seq), increasing.
    let mut replies = Vec::new();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while replies.len() < WRITES {
        assert!(
            Instant::now() < deadline,
            "only {} of {WRITES} replies came",
            replies.len()
        );
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut chunk))
            .await
            .expect("a reply within 60 s")
            .expect("read");
        assert!(
            n > 0,
            "the node closed the connection after {} replies",
            replies.len()
        );
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 2);
            replies.push(line);
        }
    }
    let seqs: Vec<u64> = replies
        .iter()
        .map(|r| {
            r.strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a write was answered {r:?}"))
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "replies out of order: {seqs:?}"
    );
}
