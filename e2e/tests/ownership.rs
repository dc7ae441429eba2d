//! Range ownership on the nodes, the data plane of an online split (issue 9): a cluster that
//! gave a range away (`NODE.OWN`) refuses every write and read for it with `-MOVED`, applies
//! none of them, and deletes its keys on every replica, keeping exactly its own range; a router
//! with a stale table has its writes refused, never lost, and once it serves the new table its
//! retried pipeline lands at the new owner, in order and once.

use cleave_e2e::{wait_until, Cluster, ClusterOptions, RedisProc, System};
use cleave_proto::owned::{hash_of_key, Ownership};
use cleave_proto::range::{split_point, HashRange, RangeTable, HASH_MAX};
use cleave_proto::{Client, Connection, ErrorCode, Frame, Selected};
use std::time::Duration;
use tokio::net::TcpStream;

const CONVERGE: Duration = Duration::from_secs(60);

/// The split point of the whole hash space: the kept half is `[0, MID]`.
fn mid() -> u32 {
    split_point(0, HASH_MAX).expect("splittable")
}

fn kept(path: &str) -> bool {
    cleave_proto::FilePath::parse(path).unwrap().hash() <= mid()
}

fn is_moved(r: &cleave_proto::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(cleave_proto::Error::Reply(reply)) if reply.code == ErrorCode::Moved)
}

/// Every key of a Redis server.
async fn all_keys(redis: &RedisProc) -> Vec<Vec<u8>> {
    let mut c = Client::connect(&format!("127.0.0.1:{}", redis.port))
        .await
        .expect("connect to redis");
    let reply = c.raw(&Frame::command(["KEYS", "*"])).await.expect("KEYS");
    match reply {
        Frame::Array(items) => items
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(b) => b.to_vec(),
                other => panic!("key {other:?}"),
            })
            .collect(),
        other => panic!("KEYS answered {other:?}"),
    }
}

/// How long a replica's cleaner takes at most to notice a record (a few of its 500 ms rounds).
const CLEANER_ROUNDS: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_range_is_refused_but_its_keys_stay_until_the_record_is_settled() {
    let c = Cluster::start("fence", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    let paths: Vec<String> = (0..40).map(|i| format!("/r{i}/f")).collect();
    for p in &paths {
        leader.insert(p, format!("v1 {p}")).await.unwrap();
    }
    let own = |epoch, ranges, fenced| Ownership {
        cluster: c.name.clone(),
        epoch,
        ranges,
        fenced,
    };
    // A split's fence: the upper half is refused from here on, on every replica.
    leader
        .own(&own(2, vec![(0, mid())], true))
        .await
        .expect("the fence");
    for p in paths.iter().filter(|p| !kept(p)) {
        assert!(
            is_moved(&leader.update(p, "v2").await),
            "write of fenced {p}"
        );
    }
    c.wait_converged(CONVERGE).await;
    for n in &c.nodes {
        let mut client = n.client().await;
        for p in paths.iter().filter(|p| !kept(p)) {
            assert!(is_moved(&client.select(p).await), "read of fenced {p}");
        }
    }
    // ... but no replica deletes its keys: the split may still be aborted. (A cleaner that
    // acted on the fence would have done so within a few of its rounds.)
    let mut before = vec![];
    for r in &c.redis {
        before.push(all_keys(r).await.len());
    }
    tokio::time::sleep(CLEANER_ROUNDS).await;
    for (i, r) in c.redis.iter().enumerate() {
        assert_eq!(
            all_keys(r).await.len(),
            before[i],
            "node {i} deleted keys of a fence"
        );
        assert_eq!(c.nodes[i].status().await.map(|s| s.cleaned_epoch), Some(0));
    }
    // The abort: the cluster owns everything again, and every file is there.
    leader
        .own(&own(3, vec![(0, HASH_MAX)], false))
        .await
        .expect("the abort");
    c.wait_converged(CONVERGE).await;
    for n in &c.nodes {
        let mut client = n.client().await;
        for p in &paths {
            assert_eq!(
                client.select(p).await.unwrap(),
                Selected::File(format!("v1 {p}").into()),
                "{p} at {} after the abort",
                n.addr
            );
        }
    }
    // A settled record (after a commit point) does let the replicas delete the other half.
    leader
        .own(&own(4, vec![(0, mid())], false))
        .await
        .expect("settled");
    wait_until(CONVERGE, "every replica cleaned table epoch 4", || async {
        let mut all = true;
        for n in &c.nodes {
            all &= n.status().await.is_some_and(|s| s.cleaned_epoch == 4);
        }
        all
    })
    .await;
    for (i, r) in c.redis.iter().enumerate() {
        let foreign = all_keys(r)
            .await
            .into_iter()
            .filter(|k| hash_of_key(k).is_some_and(|h| h > mid()))
            .count();
        assert_eq!(
            foreign, 0,
            "node {i} still holds keys of the half it gave away"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_refuses_and_deletes_what_it_gave_away_and_keeps_exactly_its_range() {
    let c = Cluster::start("own", ClusterOptions::default()).await;
    let mut leader = c.nodes[0].client().await;
    let paths: Vec<String> = (0..40).map(|i| format!("/r{i}/d/f")).collect();
    assert!(paths.iter().any(|p| kept(p)) && paths.iter().any(|p| !kept(p)));
    for p in &paths {
        leader.insert(p, format!("v1 {p}")).await.unwrap();
    }
    // Multipart uploads, committed and pending, in both halves.
    for p in ["/r0/up", "/r1/up", "/r2/up", "/r3/up"] {
        leader
            .part(p, "u1", 0, vec![1u8; 1000].into())
            .await
            .unwrap();
        leader.part(p, "u1", 1, vec![2u8; 10].into()).await.unwrap();
        leader.commit(p, "u1", 2, None).await.unwrap();
        leader.part(p, "u2", 0, vec![3u8; 10].into()).await.unwrap();
    }

    let half = Ownership {
        cluster: c.name.clone(),
        epoch: 2,
        ranges: vec![(0, mid())],
        fenced: false,
    };
    let fence = leader.own(&half).await.expect("NODE.OWN");
    assert!(
        leader.own(&half).await.expect("NODE.OWN again") > fence,
        "a repeated NODE.OWN is accepted (idempotent) and logged after the first"
    );

    // Writes: the kept half is applied, the other refused and not applied.
    for p in &paths {
        let r = leader.update(p, format!("v2 {p}")).await;
        if kept(p) {
            r.unwrap_or_else(|e| panic!("update of kept {p}: {e}"));
        } else {
            assert!(is_moved(&r), "update of moved {p}: {r:?}");
            assert!(is_moved(&leader.delete(p).await), "delete of moved {p}");
        }
    }
    // Reads on every node: MOVED for the moved half, the last value for the kept one.
    c.wait_converged(CONVERGE).await;
    for n in &c.nodes {
        let mut client = n.client().await;
        for p in &paths {
            let r = client.select(p).await;
            if kept(p) {
                assert_eq!(
                    r.unwrap(),
                    Selected::File(format!("v2 {p}").into()),
                    "{p} at {}",
                    n.addr
                );
            } else {
                assert!(is_moved(&r), "select of moved {p} at {}: {r:?}", n.addr);
                assert!(is_moved(&client.stat(p).await), "stat of moved {p}");
            }
        }
    }

    // Every replica deletes the moved half's keys and records it.
    wait_until(CONVERGE, "every replica cleaned table epoch 2", || async {
        let mut all = true;
        for n in &c.nodes {
            all &= n.status().await.is_some_and(|s| s.cleaned_epoch == 2);
        }
        all
    })
    .await;
    for (i, r) in c.redis.iter().enumerate() {
        let keys = all_keys(r).await;
        let foreign: Vec<String> = keys
            .iter()
            .filter(|k| hash_of_key(k).is_some_and(|h| !half.contains(h)))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert!(foreign.is_empty(), "node {i} still holds {foreign:?}");
        let data = keys.iter().filter(|k| hash_of_key(k).is_some()).count();
        assert!(data > 0, "node {i} kept its own half");
    }
    // The kept half is whole, uploads included, and every replica is identical.
    let mut client = c.nodes[1].client().await;
    for p in ["/r0/up", "/r1/up", "/r2/up", "/r3/up"]
        .into_iter()
        .filter(|p| kept(p))
    {
        let st = client.stat(p).await.unwrap();
        assert_eq!(st.size, 1010, "{p}");
    }
    c.assert_identical().await;
    let st = c.nodes[2].status().await.unwrap();
    assert_eq!(
        (st.own_epoch, st.owned_ranges.as_str()),
        (2, &*format!("0-{}", mid()))
    );

    // An older table's ownership, or another answer for the same table, is refused.
    let older = Ownership {
        cluster: c.name.clone(),
        epoch: 1,
        ranges: vec![(0, HASH_MAX)],
        fenced: false,
    };
    let r = leader.own(&older).await;
    assert!(
        matches!(&r, Err(cleave_proto::Error::Reply(e)) if e.code == ErrorCode::Stale),
        "{r:?}"
    );
    let other = Ownership {
        cluster: c.name.clone(),
        epoch: 2,
        ranges: vec![(0, 10)],
        fenced: false,
    };
    assert!(
        leader.own(&other).await.is_err(),
        "same epoch, other ranges"
    );
    // Bad input: a clear error, and the node stays up.
    for words in [
        vec!["NODE.OWN", "3", "9-3"],
        vec!["NODE.OWN", "3", "0-10,5-20"],
        vec!["NODE.OWN", "3", "x"],
        vec!["NODE.OWN", "3"],
        vec!["NODE.OWN", "-1", "0-1"],
        vec!["NODE.OWN", "3", "0-1", "own", "FENCE"],
        vec!["NODE.OWN", "3", "0-1", "own", "FENCED", "extra"],
    ] {
        let reply = leader.raw(&Frame::command(words.clone())).await.unwrap();
        assert!(matches!(reply, Frame::Error(_)), "{words:?}: {reply:?}");
    }
    leader.ping().await.expect("the node is still up");
    assert_eq!(
        c.nodes[0].status().await.unwrap().owned_ranges,
        format!("0-{}", mid())
    );
}

/// A table naming `owner` for the whole hash space (`b` listed but owning nothing).
fn one_owner(sys: &System, epoch: u64) -> RangeTable {
    let mut t = sys.table.clone();
    t.epoch = epoch;
    let owner = t.ranges[0].cluster.clone();
    t.ranges = vec![HashRange {
        start: 0,
        end: HASH_MAX,
        cluster: owner,
    }];
    t
}

/// Send every frame on one connection without waiting, then read every reply in order.
async fn pipeline(addr: &str, frames: &[Frame]) -> Vec<Frame> {
    let mut conn = Connection::new(TcpStream::connect(addr).await.expect("connect"));
    for f in frames {
        conn.write_frame(f).await.expect("write");
    }
    conn.flush().await.expect("flush");
    let mut replies = Vec::with_capacity(frames.len());
    for i in 0..frames.len() {
        let reply = tokio::time::timeout(Duration::from_secs(60), conn.read_frame())
            .await
            .unwrap_or_else(|_| panic!("reply {i} did not come"))
            .expect("read")
            .expect("connection closed early");
        replies.push(reply);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_routers_writes_are_refused_then_land_in_order_once_at_the_new_owner() {
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    let (a, b) = (&sys.clusters[0], &sys.clusters[1]);
    let mut router = sys.router.client().await;
    // Cluster a serves everything (b is empty and owns nothing yet).
    router.push_table(&one_owner(&sys, 2)).await.unwrap();
    let paths: Vec<String> = (0..16).map(|i| format!("/m{i}/f")).collect();
    assert!(paths.iter().any(|p| kept(p)) && paths.iter().any(|p| !kept(p)));
    for p in &paths {
        router.insert(p, "v0").await.unwrap();
    }
    // The cutover's fence on a: from here a owns only the low half; the router still has
    // the old table, so its writes of the high half are refused (and retried).
    let low = Ownership {
        cluster: a.name.clone(),
        epoch: 3,
        ranges: vec![(0, mid())],
        fenced: false,
    };
    a.nodes[0].client().await.own(&low).await.unwrap();
    let b_before = b.nodes[0].status().await.unwrap().applied_seq;
    // One connection pipelines 30 rounds of INSERT over every path; midway the new table
    // (b owns the high half) reaches the router.
    let rounds = 30;
    let mut frames = vec![];
    for k in 1..=rounds {
        for p in &paths {
            frames.push(Frame::command([
                "INSERT".to_string(),
                p.clone(),
                format!("v{k}"),
            ]));
        }
    }
    let addr = sys.router.addr.clone();
    let sent = tokio::spawn(async move { pipeline(&addr, &frames).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let high = Ownership {
        cluster: b.name.clone(),
        epoch: 3,
        ranges: vec![(mid() + 1, HASH_MAX)],
        fenced: false,
    };
    b.nodes[0].client().await.own(&high).await.unwrap();
    let mut table = sys.table.clone();
    table.epoch = 3;
    router.push_table(&table).await.unwrap();
    let replies = sent.await.unwrap();
    for (i, r) in replies.iter().enumerate() {
        assert!(
            matches!(r, Frame::Integer(_)),
            "write {i} ({}) got {r:?}",
            paths[i % paths.len()]
        );
    }
    // Every path ends with the last value, at its owner; the old owner of the high half never
    // applied a write after the fence (its value there is the pre-fence one, or nothing).
    for p in &paths {
        assert_eq!(
            router.select(p).await.unwrap(),
            Selected::File(format!("v{rounds}").into()),
            "{p}"
        );
        let (owner, other) = if kept(p) { (a, b) } else { (b, a) };
        let mut o = owner.nodes[0].client().await;
        assert_eq!(
            o.select(p).await.unwrap(),
            Selected::File(format!("v{rounds}").into())
        );
        let r = other.nodes[0].client().await.select(p).await;
        assert!(is_moved(&r), "{p} at {}: {r:?}", other.name);
    }
    // Exactly once: b's log grew by its NODE.OWN entry and one entry per high-half write
    // (every one was refused by a after the fence, so all of them applied at b, none twice).
    let st_b = b.nodes[0].status().await.unwrap();
    let high_paths = paths.iter().filter(|p| !kept(p)).count() as u64;
    assert_eq!(
        st_b.applied_seq - b_before,
        1 + high_paths * rounds,
        "b's entries after the fence: its NODE.OWN and {} writes",
        high_paths * rounds
    );
}
