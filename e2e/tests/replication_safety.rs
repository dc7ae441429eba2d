//! Replication safety with real processes: one connection's pipelined writes keep their order,
//! a retried write applies once, a leader whose Redis lost its tail never leads again with it,
//! a promoted follower acknowledges nothing no replica holds, a committed upload's bytes never
//! change, and a half-resynced node cannot lead. Each scenario ends with the state checked on
//! every node (see docs/replication.md for the invariants).

use bytes::Bytes;
use cleave_e2e::{Cluster, ClusterOptions};
use cleave_proto::command::repl::tag_frame;
use cleave_proto::status::Role;
use cleave_proto::{Client, Connection, ErrorCode, Frame, Selected};
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::net::TcpStream;

const CONVERGE: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// Send every frame on one connection without waiting, then read every reply in order.
async fn pipeline(addr: &str, frames: &[Frame]) -> Vec<Frame> {
    let socket = TcpStream::connect(addr).await.expect("connect");
    let mut conn = Connection::new(socket);
    for f in frames {
        conn.write_frame(f).await.expect("write");
    }
    conn.flush().await.expect("flush");
    let mut replies = Vec::with_capacity(frames.len());
    for i in 0..frames.len() {
        let reply = tokio::time::timeout(REPLY, conn.read_frame())
            .await
            .unwrap_or_else(|_| panic!("reply {i} of {} did not come in {REPLY:?}", frames.len()))
            .expect("read")
            .expect("connection closed early");
        replies.push(reply);
    }
    replies
}

/// A request frame from words.
fn cmd(words: &[&str]) -> Frame {
    Frame::command(words.iter().map(|w| w.to_string()))
}

/// 2 000 `INSERT p a`, `DELETE p`, `INSERT p b` triples over 50 paths, all on one connection.
fn triples(prefix: &str) -> (Vec<Frame>, Vec<(String, String)>) {
    let mut frames = vec![];
    let mut last = vec![(String::new(), String::new()); 50];
    for i in 0..2000 {
        let path = format!("/{prefix}{}/f", i % 50);
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        frames.push(cmd(&["INSERT", &path, &a]));
        frames.push(cmd(&["DELETE", &path]));
        frames.push(cmd(&["INSERT", &path, &b]));
        last[i % 50] = (path, b);
    }
    (frames, last)
}

async fn assert_final(client: &mut Client, last: &[(String, String)]) {
    for (path, value) in last {
        assert_eq!(
            client.select(path).await.expect("select"),
            Selected::File(Bytes::from(value.clone())),
            "{path} must hold the last write of the pipeline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_writes_on_one_connection_take_effect_in_order_at_a_node() {
    let c = Cluster::start("pipeline", ClusterOptions::default()).await;
    let (frames, last) = triples("p");
    let replies = pipeline(&c.nodes[0].addr, &frames).await;
    let mut previous = 0;
    for (i, r) in replies.iter().enumerate() {
        let Frame::Integer(seq) = r else {
            panic!("request {i} ({:?}) got {r:?}", frames[i]);
        };
        assert!(
            *seq > previous,
            "seqs follow the order the requests were sent"
        );
        previous = *seq;
    }
    for n in &c.nodes {
        assert_final(&mut n.client().await, &last).await;
    }
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_writes_and_reads_through_a_router_take_effect_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sys = cleave_e2e::System::start(dir.path(), ClusterOptions::default()).await;
    let (mut frames, last) = triples("q");
    // A read right after each path's last write must see it.
    for (path, _) in &last {
        frames.push(cmd(&["SELECT", path]));
    }
    let replies = pipeline(&sys.router_addrs()[0], &frames).await;
    let writes = frames.len() - last.len();
    for (i, r) in replies[..writes].iter().enumerate() {
        assert!(
            matches!(r, Frame::Integer(_)),
            "write {i} ({:?}) got {r:?}",
            frames[i]
        );
    }
    for (r, (path, value)) in replies[writes..].iter().zip(&last) {
        assert_eq!(
            r,
            &Frame::Bulk(Bytes::from(value.clone())),
            "a read pipelined after {path}'s last write sees it"
        );
    }
    let mut client = Client::connect(&sys.router_addrs()[0])
        .await
        .expect("router");
    assert_final(&mut client, &last).await;
}

async fn call(addr: &str, frame: Frame) -> Frame {
    let mut c = Client::connect(addr).await.expect("connect");
    tokio::time::timeout(REPLY, c.raw(&frame))
        .await
        .expect("reply in time")
        .unwrap_or_else(|e| Frame::Error(e.to_string()))
}

fn tagged(session: &str, seq: u64, parts: &[&str]) -> Frame {
    tag_frame(session, seq, cmd(parts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_is_answered_with_its_first_outcome_and_applied_once() {
    let mut c = Cluster::start("retry", ClusterOptions::default()).await;
    let leader = c.nodes[0].addr.clone();
    let s1 = call(&leader, tagged("s1", 1, &["INSERT", "/r/a", "v1"])).await;
    let s2 = call(&leader, tagged("s1", 2, &["DELETE", "/r/a"])).await;
    let s3 = call(&leader, tagged("s1", 3, &["INSERT", "/r/a", "v3"])).await;
    assert!(matches!(
        (&s1, &s2, &s3),
        (Frame::Integer(_), Frame::Integer(_), Frame::Integer(_))
    ));
    // A retried DELETE must not delete the later INSERT, nor answer -NOTFOUND.
    assert_eq!(
        call(&leader, tagged("s1", 2, &["DELETE", "/r/a"])).await,
        s2
    );
    assert_eq!(
        call(&leader, tagged("s1", 1, &["INSERT", "/r/a", "v1"])).await,
        s1
    );
    let mut client = c.nodes[0].client().await;
    assert_eq!(
        client.select("/r/a").await.unwrap(),
        Selected::File("v3".into())
    );

    // A write beyond the next one is refused, not applied, until its predecessor comes.
    let early = call(&leader, tagged("s1", 5, &["INSERT", "/r/b", "early"])).await;
    assert!(
        matches!(&early, Frame::Error(e) if e.starts_with("TRYAGAIN")),
        "{early:?}"
    );
    assert_eq!(
        client.select("/r/b").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert!(matches!(
        call(&leader, tagged("s1", 4, &["INSERT", "/r/b", "four"])).await,
        Frame::Integer(_)
    ));
    assert!(matches!(
        call(&leader, tagged("s1", 5, &["INSERT", "/r/b", "five"])).await,
        Frame::Integer(_)
    ));

    // A refusal is remembered too: the retry gets the same error, and the session moves on.
    let missing = call(&leader, tagged("s2", 1, &["DELETE", "/r/none"])).await;
    assert!(
        matches!(&missing, Frame::Error(e) if e.starts_with("NOTFOUND")),
        "{missing:?}"
    );
    client.insert("/r/none", "now it exists").await.unwrap();
    assert_eq!(
        call(&leader, tagged("s2", 1, &["DELETE", "/r/none"])).await,
        missing
    );
    assert!(matches!(
        call(&leader, tagged("s2", 2, &["INSERT", "/r/c", "x"])).await,
        Frame::Integer(_)
    ));

    // The sessions are replicated: after a promotion the new leader answers a retry the same.
    c.wait_converged(CONVERGE).await;
    c.nodes[0].proc.kill9();
    let new = c.elect().await;
    assert_ne!(new, 0);
    let new_leader = c.nodes[new].addr.clone();
    let mut again = Frame::Null;
    for _ in 0..100 {
        again = call(&new_leader, tagged("s1", 3, &["INSERT", "/r/a", "v3"])).await;
        if !matches!(&again, Frame::Error(e) if e.starts_with("TRYAGAIN")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again, s3, "the new leader knows the first outcome");
    assert_eq!(
        call(&new_leader, tagged("s2", 1, &["DELETE", "/r/none"])).await,
        missing
    );
    c.nodes[0].restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_redis_lost_its_tail_never_leads_with_it_and_nothing_acknowledged_is_lost() {
    let mut c = Cluster::start("hostcrash", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    let mut acked = vec![];
    for i in 0..200 {
        let v = format!("before-{i}");
        leader
            .insert(&format!("/h/{}", i % 40), v.clone())
            .await
            .unwrap();
        acked.push((format!("/h/{}", i % 40), v));
    }
    // A host crash: the leader's Redis comes back from its AOF as it was a moment ago.
    let copy = c.dir.join("aof-copy");
    c.redis[0].copy_data(&copy);
    for i in 0..200 {
        let v = format!("after-{i}");
        leader
            .insert(&format!("/h/{}", i % 40), v.clone())
            .await
            .unwrap();
        acked.push((format!("/h/{}", i % 40), v));
    }
    c.nodes[0].proc.kill9();
    c.redis[0].restart_from(&copy).await;
    c.nodes[0].restart();
    let st = c.nodes[0].status_within(Duration::from_secs(20)).await;
    assert_eq!(
        st.role,
        Role::Idle,
        "a restarted leader waits for a newer epoch"
    );
    let mut back = c.nodes[0].client().await;
    assert_eq!(
        back.insert("/h/x", "must not be taken")
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotLeader)
    );
    let new = c.elect().await;
    assert_ne!(
        new, 0,
        "the node that lost its tail is not the most up to date"
    );
    c.wait_in_sync(CONVERGE).await;
    c.assert_identical().await;
    let mut last = std::collections::BTreeMap::new();
    for (p, v) in &acked {
        last.insert(p.clone(), v.clone());
    }
    for n in &c.nodes {
        let mut client = n.client().await;
        for (p, v) in &last {
            assert_eq!(
                client.select(p).await.unwrap(),
                Selected::File(Bytes::from(v.clone())),
                "{p} on {}",
                n.addr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_redis_lost_its_tail_while_running_steps_down() {
    let mut c = Cluster::start("redislost", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    for i in 0..50 {
        leader.insert(&format!("/l/{i}"), "before").await.unwrap();
    }
    let copy = c.dir.join("aof-copy");
    c.redis[0].copy_data(&copy);
    for i in 0..50 {
        leader.insert(&format!("/l/{i}"), "after").await.unwrap();
    }
    c.redis[0].restart_from(&copy).await;
    // The node process lived on: its next writes find the store behind (the first may only
    // meet the broken Redis connection); it steps down and acknowledges none of them.
    let mut stepped_down = false;
    for attempt in 0..50 {
        match leader.insert("/l/next", format!("x{attempt}")).await {
            Ok(seq) => panic!("a leader whose store lost data acknowledged seq {seq}"),
            Err(e) => assert!(
                matches!(e.code(), Some(ErrorCode::TryAgain | ErrorCode::NotLeader)),
                "{e}"
            ),
        }
        let st = c.nodes[0].status_within(Duration::from_secs(20)).await;
        if st.role == Role::Idle {
            stepped_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stepped_down, "the leader stepped down");
    c.elect().await;
    c.wait_in_sync(CONVERGE).await;
    c.assert_identical().await;
    let mut client = c.nodes[0].client().await;
    for i in 0..50 {
        assert_eq!(
            client.select(&format!("/l/{i}")).await.unwrap(),
            Selected::File("after".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_follower_acknowledges_nothing_that_no_replica_holds() {
    let opts = ClusterOptions {
        write_timeout_ms: Some(1500),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start("promote", opts).await;
    let mut leader = c.nodes[0].client().await;
    for i in 0..100 {
        leader.insert(&format!("/m/{i}"), "v").await.unwrap();
    }
    c.wait_converged(CONVERGE).await;
    // Node 2 lags (frozen); node 0 dies; node 1 is promoted by hand at epoch 2.
    c.nodes[2].proc.stop();
    c.nodes[0].proc.kill9();
    let mut n1 = c.nodes[1].client().await;
    n1.lead(2).await.unwrap();
    // No follower holds anything of epoch 2: a write must not be acknowledged.
    let err = n1.insert("/m/new", "unreplicated").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TryAgain), "{err}");
    // Once a follower joins the epoch, writes are acknowledged again.
    c.nodes[2].proc.signal(Signal::SIGCONT);
    c.nodes[2]
        .client()
        .await
        .follow(2, &c.nodes[1].addr)
        .await
        .unwrap();
    let mut acked = false;
    for _ in 0..100 {
        if n1.insert("/m/new", "replicated").await.is_ok() {
            acked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked, "writes are acknowledged once a follower holds them");
    assert_eq!(
        c.nodes[2].client().await.select("/m/new").await.unwrap(),
        Selected::File("replicated".into())
    );
    c.nodes[0].restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_unfinished_resync_cannot_lead() {
    let c = Cluster::start("halfsync", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    leader.insert("/u/a", "1").await.unwrap();
    c.wait_converged(CONVERGE).await;
    // What an interrupted full resync leaves behind: the flag that says the data is partial.
    let mut redis = Client::connect(c.redis[2].url().trim_start_matches("redis://"))
        .await
        .unwrap();
    redis
        .raw(&cmd(&["SET", "meta:resyncing", "1"]))
        .await
        .unwrap();
    let err = c.nodes[2].client().await.lead(2).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TryAgain), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_upload_is_never_rewritten_by_a_reused_upload_id() {
    let c = Cluster::start("upload", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    leader
        .part("/up/f", "u1", 0, Bytes::from("aaaa"))
        .await
        .unwrap();
    leader
        .part("/up/f", "u1", 1, Bytes::from("bb"))
        .await
        .unwrap();
    leader.commit("/up/f", "u1", 2, None).await.unwrap();
    let err = leader
        .part("/up/f", "u1", 0, Bytes::from("XXXX"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Exists), "{err}");
    let err = leader.commit("/up/f", "u1", 2, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Exists), "{err}");
    c.wait_converged(CONVERGE).await;
    for n in &c.nodes {
        assert_eq!(
            n.client().await.select("/up/f").await.unwrap(),
            Selected::File("aaaabb".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_write_replicates_and_anything_larger_is_refused_up_front() {
    use cleave_proto::command::write::{MAX_CONTENT_TYPE, MAX_WRITE};
    let c = Cluster::start("largest", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    // The longest path, the longest content type and the largest payload in one entry: it must
    // still fit in one replication frame, or no follower could ever decode it.
    let path = format!(
        "/{}/{}/{}/{}",
        "a".repeat(255),
        "b".repeat(255),
        "c".repeat(255),
        "d".repeat(255)
    );
    assert_eq!(path.len(), cleave_proto::path::MAX_PATH_LEN);
    let data = Bytes::from(vec![9u8; MAX_WRITE]);
    leader
        .insert_typed(&path, data.clone(), Some("t".repeat(MAX_CONTENT_TYPE)))
        .await
        .expect("the largest write is accepted");
    c.wait_converged(CONVERGE).await;
    for n in &c.nodes {
        let got = n.client().await.select(&path).await.unwrap();
        assert!(
            matches!(&got, Selected::File(b) if *b == data),
            "{} has it",
            n.addr
        );
    }
    let err = leader
        .insert("/big/over", Bytes::from(vec![1u8; MAX_WRITE + 1]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    let err = leader
        .insert_typed(
            "/big/type",
            Bytes::from("x"),
            Some("t".repeat(MAX_CONTENT_TYPE + 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
}

/// The size of the effects of the newest log entry on the node whose Redis is `redis`.
async fn newest_effects_len(redis: &str) -> usize {
    let mut c = Client::connect(redis)
        .await
        .expect("redis")
        .with_timeout(REPLY);
    match c.raw(&cmd(&["LINDEX", "log", "-1"])).await.expect("LINDEX") {
        Frame::Bulk(b) => b.len(),
        other => panic!("the log's newest element: {other:?}"),
    }
}

/// Replacing or aborting an upload of many parts on a long path logs effects whose size does not
/// grow with the number of parts (they carry the old version's blob prefix and chunk count, and
/// an aborted upload's part indices, not every key), so the largest upload (100 000 parts with
/// 1 KiB paths) can never produce an entry beyond the 64 MiB frame limit. Every replica ends
/// with the same data and no part left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_an_upload_of_many_parts_logs_small_effects_and_leaves_nothing_behind() {
    const PARTS: u32 = 3000;
    let c = Cluster::start("bigup", ClusterOptions::default()).await;
    // Segments are at most 255 bytes: four of 220 make a 900-byte path.
    let seg = "p".repeat(220);
    let path = format!("/bigup/{seg}/{seg}/{seg}/{seg}");
    let redis = format!("127.0.0.1:{}", c.redis[0].port);
    let parts = |upload: &str| -> Vec<Frame> {
        (0..PARTS)
            .map(|i| cmd(&["PART", &path, upload, &i.to_string(), "z"]))
            .collect()
    };
    for reply in pipeline(&c.nodes[0].addr, &parts("u1")).await {
        assert!(matches!(reply, Frame::Integer(_)), "PART: {reply:?}");
    }
    let mut leader = c.nodes[0].client().await.with_timeout(REPLY);
    leader
        .commit(&path, "u1", PARTS, None)
        .await
        .expect("commit");
    // Staged parts of a second upload, then aborted: the abort's effects name each part once,
    // by index, under one prefix.
    for reply in pipeline(&c.nodes[0].addr, &parts("u2")).await {
        assert!(matches!(reply, Frame::Integer(_)), "PART: {reply:?}");
    }
    leader.abort(&path, "u2").await.expect("abort");
    let abort_fx = newest_effects_len(&redis).await;
    // Replace the committed upload with a small file.
    leader
        .insert(&path, Bytes::from("small"))
        .await
        .expect("insert");
    let replace_fx = newest_effects_len(&redis).await;
    println!("effects: replace {replace_fx} bytes, abort {abort_fx} bytes");
    assert!(
        replace_fx < 4096,
        "replacing {PARTS} parts with a 900-byte path logged {replace_fx} bytes of effects: \
         they list every key (that would exceed 64 MiB for 100 000 parts of a 1 KiB path)"
    );
    assert!(
        abort_fx < 4096 + 8 * PARTS as usize,
        "aborting {PARTS} parts logged {abort_fx} bytes of effects"
    );
    c.wait_converged(CONVERGE).await;
    c.assert_identical().await;
    for (i, n) in c.nodes.iter().enumerate() {
        assert_eq!(
            n.client().await.select(&path).await.unwrap(),
            Selected::File("small".into()),
            "node {i}"
        );
        let mut r = Client::connect(&format!("127.0.0.1:{}", c.redis[i].port))
            .await
            .expect("redis");
        let left = r.raw(&cmd(&["KEYS", "u:*"])).await.expect("KEYS");
        assert_eq!(left, Frame::Array(vec![]), "node {i}: parts left behind");
        let sets = r.raw(&cmd(&["KEYS", "up:*"])).await.expect("KEYS");
        assert_eq!(
            sets,
            Frame::Array(vec![]),
            "node {i}: upload sets left behind"
        );
    }
}
