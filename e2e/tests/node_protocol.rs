//! A node's protocol at its edges, with raw frames against real processes: admin, replication
//! and router commands sent where they do not belong, multipart uploads at their limits, `LIST`
//! pages and `READ` ranges at the ends, `SELECT` of a file larger than one frame, and a file
//! next to a directory of the same name.

use bytes::Bytes;
use cleave_e2e::{wait_until, Cluster, ClusterOptions, NodeProc};
use cleave_proto::command::write::MAX_PARTS;
use cleave_proto::status::Role;
use cleave_proto::{Client, Frame, Selected};
use std::time::Duration;

/// Send one request as raw bulk strings and return the reply frame as is.
async fn ask(c: &mut Client, parts: &[&[u8]]) -> Frame {
    let frame = Frame::command(parts.iter().map(|p| Bytes::copy_from_slice(p)));
    c.raw(&frame).await.unwrap_or_else(|e| {
        let words: Vec<_> = parts.iter().map(|p| String::from_utf8_lossy(p)).collect();
        panic!("{words:?}: {e}")
    })
}

/// The error text of a reply that must be an error.
fn error(reply: Frame, what: &str) -> String {
    match reply {
        Frame::Error(e) => e,
        other => panic!("{what}: expected an error, got {other:?}"),
    }
}

/// The names in an array reply.
fn names(reply: Frame, what: &str) -> Vec<String> {
    match reply {
        Frame::Array(items) => items
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("{what}: not a name: {other:?}"),
            })
            .collect(),
        other => panic!("{what}: expected an array, got {other:?}"),
    }
}

/// Pins where admin, replication and table commands are refused, and that a refusal changes
/// nothing: a node told to follow its own address answers `-ERR` and keeps its role, epoch and
/// leader (leader and follower alike); `NODE.LEAD` / `NODE.FOLLOW` at an epoch that is not
/// newer get `-STALE` (following the same leader at the same epoch is an idempotent `+OK`); `REPL.FETCH`, `REPL.INDEX` and `SNAP.NEXT` at an epoch
/// other than the node's get `-STALE`, and `REPL.FETCH` / `REPL.INDEX` sent to a follower get
/// `-NOTLEADER <leader>`, without the sender being counted as a replica; `TABLE.*` sent to a
/// node get `-ERR` saying they go to a router. The cluster still takes and replicates writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_to_the_wrong_node_or_epoch_are_refused_and_change_nothing() {
    let c = Cluster::start(
        "wrongplace",
        ClusterOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    let (leader, follower) = (&c.nodes[0], &c.nodes[1]);
    let before = [
        leader.status_within(Duration::from_secs(30)).await,
        follower.status_within(Duration::from_secs(30)).await,
    ];
    assert_eq!(
        (
            before[0].role,
            before[0].epoch,
            before[1].role,
            before[1].epoch
        ),
        (Role::Leader, 1, Role::Follower, 1)
    );

    // Following oneself, at a newer epoch (one that would otherwise be taken).
    for node in [leader, follower] {
        let mut n = node.client().await;
        let e = error(
            ask(&mut n, &[b"NODE.FOLLOW", b"2", node.addr.as_bytes()]).await,
            "NODE.FOLLOW of itself",
        );
        assert_eq!(e, "ERR a node cannot follow itself", "{}", node.addr);
    }

    // Role changes at an epoch that is not newer.
    let stale: [(&NodeProc, Vec<&[u8]>); 4] = [
        (follower, vec![b"NODE.LEAD", b"1"]),
        (follower, vec![b"NODE.LEAD", b"0"]),
        (leader, vec![b"NODE.FOLLOW", b"1", follower.addr.as_bytes()]),
        (follower, vec![b"NODE.FOLLOW", b"0", leader.addr.as_bytes()]),
    ];
    for (node, req) in stale {
        let mut n = node.client().await;
        let e = error(ask(&mut n, &req).await, "a role change at a stale epoch");
        assert!(e.starts_with("STALE "), "{}: {e}", node.addr);
    }
    // The current role at the current epoch is idempotent.
    let mut f0 = follower.client().await;
    let same = ask(&mut f0, &[b"NODE.FOLLOW", b"1", leader.addr.as_bytes()]).await;
    assert_eq!(same, Frame::ok());

    // Replication at the wrong epoch (older and newer), at the leader.
    let mut l = leader.client().await;
    for epoch in [b"0".as_slice(), b"2"] {
        let ep = String::from_utf8_lossy(epoch);
        let want = format!("STALE this node is at epoch 1, not {ep}");
        let fetch: &[&[u8]] = &[
            b"REPL.FETCH",
            epoch,
            b"intruder",
            b"0",
            b"0",
            b"0",
            b"65536",
        ];
        for (what, reply) in [
            ("REPL.FETCH", ask(&mut l, fetch).await),
            ("REPL.INDEX", ask(&mut l, &[b"REPL.INDEX", epoch]).await),
            ("SNAP.NEXT", ask(&mut l, &[b"SNAP.NEXT", epoch, b"0"]).await),
        ] {
            let e = error(reply, what);
            assert!(e.starts_with(&want), "{what} at epoch {ep}: {e}");
        }
    }
    // Replication at the right epoch, at a follower: it names the leader.
    let mut f = follower.client().await;
    let want = format!("NOTLEADER {}", leader.addr);
    let fetch: &[&[u8]] = &[b"REPL.FETCH", b"1", b"intruder", b"0", b"0", b"0", b"65536"];
    assert_eq!(
        error(ask(&mut f, fetch).await, "REPL.FETCH at a follower"),
        want
    );
    let index = ask(&mut f, &[b"REPL.INDEX", b"1"]).await;
    assert_eq!(error(index, "REPL.INDEX at a follower"), want);

    // Router commands at a node.
    let table = serde_json::to_string(&serde_json::json!({
        "epoch": 9,
        "ranges": [{"start": 0, "end": u32::MAX, "cluster": "fc"}],
        "clusters": {"fc": {"nodes": [leader.addr]}},
    }))
    .unwrap();
    for (node, n) in [(leader, &mut l), (follower, &mut f)] {
        for req in [
            vec![b"TABLE.GET".as_slice()],
            vec![b"TABLE.PUSH", table.as_bytes()],
        ] {
            let e = error(ask(n, &req).await, "TABLE.* at a node");
            assert_eq!(
                e, "ERR this is a node; table commands go to a router",
                "{}",
                node.addr
            );
        }
    }

    // Nothing changed: roles, epochs, leaders, and no replica named "intruder".
    let after = [
        leader.status_within(Duration::from_secs(30)).await,
        follower.status_within(Duration::from_secs(30)).await,
    ];
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (a.role, a.epoch, a.last_epoch, &a.leader),
            (b.role, b.epoch, b.last_epoch, &b.leader),
            "{}",
            a.id
        );
    }
    assert!(
        after[0].followers.iter().all(|f| f.id != "intruder"),
        "a refused fetch counted as a replica: {:?}",
        after[0].followers
    );
    // And the cluster still works.
    let seq = l.insert("/wp/after", "still leading").await.unwrap();
    wait_until(
        Duration::from_secs(30),
        &format!("the follower applies seq {seq}"),
        || async {
            follower
                .status()
                .await
                .is_some_and(|s| s.applied_seq >= seq)
        },
    )
    .await;
    c.assert_identical().await;
}

/// Pins multipart uploads at their limits: a part index past the last allowed part (the limit is
/// `MAX_PARTS` parts, indexes `0..MAX_PARTS`) and a `COMMIT` of more than `MAX_PARTS` parts get
/// `-TOOLARGE`; a `COMMIT` of fewer parts than were staged is refused (`-ERR ... beyond`) and
/// publishes nothing; after a `COMMIT`, `ABORT` is refused (`-ERR ... DELETE the file instead`),
/// a new `PART` or a second `COMMIT` of that upload is `-EXISTS`, and the file is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_limits_and_commit_rules() {
    let c = Cluster::start(
        "partlimits",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let mut n = c.nodes[0].client().await;
    let last = (MAX_PARTS - 1).to_string();
    let beyond = MAX_PARTS.to_string();
    let too_many = (MAX_PARTS + 1).to_string();
    // The last allowed index is accepted (and can be aborted); one more is refused.
    let reply = ask(&mut n, &[b"PART", b"/pl/f", b"u0", last.as_bytes(), b"x"]).await;
    assert!(matches!(reply, Frame::Integer(_)), "PART {last}: {reply:?}");
    let reply = ask(&mut n, &[b"PART", b"/pl/f", b"u0", beyond.as_bytes(), b"x"]).await;
    let e = error(reply, "PART at index MAX_PARTS");
    assert!(e.starts_with("TOOLARGE "), "{e}");
    n.abort("/pl/f", "u0").await.unwrap();
    let reply = ask(&mut n, &[b"COMMIT", b"/pl/f", b"u0", too_many.as_bytes()]).await;
    let e = error(reply, "COMMIT of MAX_PARTS + 1 parts");
    assert!(e.starts_with("TOOLARGE "), "{e}");

    // Extra staged parts at COMMIT.
    for i in 0..3u32 {
        n.part("/pl/f", "u1", i, format!("part{i}").into())
            .await
            .unwrap();
    }
    let e = n
        .commit("/pl/f", "u1", 2, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 1 part(s) beyond 2"), "{e}");
    assert!(
        n.stat("/pl/f").await.is_err(),
        "a refused COMMIT published nothing"
    );
    let seq = n.commit("/pl/f", "u1", 3, None).await.unwrap();
    let published = Selected::File("part0part1part2".into());
    assert_eq!(n.select("/pl/f").await.unwrap(), published);

    // After COMMIT the upload is closed.
    let e = error(
        ask(&mut n, &[b"ABORT", b"/pl/f", b"u1"]).await,
        "ABORT after COMMIT",
    );
    assert!(
        e.starts_with("ERR ") && e.contains("is committed; DELETE the file instead"),
        "{e}"
    );
    let e = error(
        ask(&mut n, &[b"PART", b"/pl/f", b"u1", b"0", b"new"]).await,
        "PART after COMMIT",
    );
    assert!(e.starts_with("EXISTS "), "{e}");
    let e = error(
        ask(&mut n, &[b"COMMIT", b"/pl/f", b"u1", b"3"]).await,
        "a second COMMIT",
    );
    assert!(
        e.starts_with("EXISTS ") && e.contains("already committed"),
        "{e}"
    );
    assert_eq!(n.select("/pl/f").await.unwrap(), published);
    assert_eq!(
        n.stat("/pl/f").await.unwrap().seq,
        seq,
        "the file is unchanged"
    );
}

/// Pins `LIST` paging and its limits, `READ` ranges at and past the end of a file, and `SELECT`
/// of a file over the frame limit, at the protocol level: `LIMIT` must be 1..=10000 (`-ERR`
/// otherwise), pages are sorted by bytes and strictly after `AFTER`, a page past the last entry
/// is empty, a missing directory is `-NOTFOUND`; `READ` at or past the end is an empty bulk,
/// a range that runs over the end is cut short, `VERSION` of a replaced file is `-STALE`;
/// `SELECT` of a file over 64 MiB is `-TOOLARGE` (read it with `READ`), which still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_read_ranges_and_select_limits() {
    let c = Cluster::start(
        "edges",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let mut n = c.nodes[0].client().await;
    for name in ["f4", "f0", "f2", "f1", "f3"] {
        n.insert(&format!("/ed/d/{name}"), name).await.unwrap();
    }
    n.insert("/ed/d/sub/x", "x").await.unwrap();
    for bad in [b"0".as_slice(), b"10001"] {
        let e = error(
            ask(&mut n, &[b"LIST", b"/ed/d", b"LIMIT", bad]).await,
            "LIST LIMIT out of range",
        );
        assert_eq!(e, "ERR LIMIT must be between 1 and 10000");
    }
    let page = |after: Option<&'static str>, limit: &'static str| {
        let mut req: Vec<&[u8]> = vec![b"LIST", b"/ed/d"];
        if let Some(a) = after {
            req.extend([b"AFTER".as_slice(), a.as_bytes()]);
        }
        req.extend([b"LIMIT".as_slice(), limit.as_bytes()]);
        req
    };
    let pages = [
        (None, "2", vec!["f0", "f1"]),
        (Some("f1"), "2", vec!["f2", "f3"]),
        (Some("f3"), "2", vec!["f4", "sub/"]),
        (Some("sub/"), "2", vec![]),
        (
            Some("f"),
            "10000",
            vec!["f0", "f1", "f2", "f3", "f4", "sub/"],
        ),
        (Some("zzz"), "1", vec![]),
    ];
    for (after, limit, want) in pages {
        let got = names(ask(&mut n, &page(after, limit)).await, "LIST page");
        assert_eq!(got, want, "LIST AFTER {after:?} LIMIT {limit}");
    }
    let e = error(
        ask(&mut n, &[b"LIST", b"/ed/none"]).await,
        "LIST of nothing",
    );
    assert!(e.starts_with("NOTFOUND "), "{e}");

    let seq = n.insert("/ed/r", "hello").await.unwrap();
    let v = seq.to_string();
    let reads: [(&[&[u8]], &[u8]); 5] = [
        (&[b"READ", b"/ed/r", b"3", b"10"], b"lo"),
        (&[b"READ", b"/ed/r", b"5", b"10"], b""),
        (&[b"READ", b"/ed/r", b"1000", b"1"], b""),
        (&[b"READ", b"/ed/r", b"0", b"0"], b""),
        (
            &[b"READ", b"/ed/r", b"4", b"1", b"VERSION", v.as_bytes()],
            b"o",
        ),
    ];
    for (req, want) in reads {
        let words: Vec<_> = req.iter().map(|p| String::from_utf8_lossy(p)).collect();
        assert_eq!(
            ask(&mut n, req).await,
            Frame::Bulk(Bytes::from_static(want)),
            "{words:?}"
        );
    }
    let e = error(
        ask(&mut n, &[b"READ", b"/ed/none", b"0", b"1"]).await,
        "READ of a missing file",
    );
    assert!(e.starts_with("NOTFOUND "), "{e}");
    n.insert("/ed/r", "replaced").await.unwrap();
    let e = error(
        ask(
            &mut n,
            &[b"READ", b"/ed/r", b"0", b"1", b"VERSION", v.as_bytes()],
        )
        .await,
        "READ VERSION of a replaced file",
    );
    assert!(e.starts_with("STALE "), "{e}");

    // One byte over the SELECT limit, uploaded in two parts.
    let half = Bytes::from(vec![7u8; 32 << 20]);
    n.part("/ed/big", "up", 0, half.clone()).await.unwrap();
    n.part("/ed/big", "up", 1, half).await.unwrap();
    n.part("/ed/big", "up", 2, "!".into()).await.unwrap();
    n.commit("/ed/big", "up", 3, None).await.unwrap();
    let e = error(
        ask(&mut n, &[b"SELECT", b"/ed/big"]).await,
        "SELECT over the limit",
    );
    assert_eq!(
        e,
        format!(
            "TOOLARGE /ed/big is {} bytes; read it in ranges with READ",
            (64 << 20) + 1
        )
    );
    assert_eq!(
        n.read("/ed/big", (64 << 20) - 1, 10, None).await.unwrap(),
        Bytes::from_static(b"\x07!")
    );
    n.ping().await.unwrap();
}

/// Pins what a file and a directory of the same name do (S3 keys `b/x` and `b/x/y` coexist):
/// both exist side by side; the parent lists `x` and `x/`; `SELECT` and `STAT` of the name
/// answer the file while it exists, `LIST` of it answers the directory; deleting the file
/// leaves the directory (then `SELECT` lists it), deleting the directory's last file leaves
/// the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_and_a_directory_may_share_a_name() {
    let c = Cluster::start(
        "samename",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let mut n = c.nodes[0].client().await;
    n.insert("/sn/b/x", "file x").await.unwrap();
    n.insert("/sn/b/x/y", "file y").await.unwrap();
    assert_eq!(n.list("/sn/b", None, 10).await.unwrap(), ["x", "x/"]);
    assert_eq!(
        n.select("/sn/b/x").await.unwrap(),
        Selected::File("file x".into())
    );
    assert_eq!(n.stat("/sn/b/x").await.unwrap().kind, "file");
    assert_eq!(n.list("/sn/b/x", None, 10).await.unwrap(), ["y"]);
    assert_eq!(
        n.select("/sn/b/x/y").await.unwrap(),
        Selected::File("file y".into())
    );
    // Deleting the file leaves the directory.
    n.delete("/sn/b/x").await.unwrap();
    assert_eq!(n.list("/sn/b", None, 10).await.unwrap(), ["x/"]);
    assert_eq!(
        n.select("/sn/b/x").await.unwrap(),
        Selected::Dir(vec!["y".into()])
    );
    assert_eq!(n.stat("/sn/b/x").await.unwrap().kind, "dir");
    // And the other way round.
    n.insert("/sn/b/x", "file x again").await.unwrap();
    n.delete("/sn/b/x/y").await.unwrap();
    assert_eq!(n.list("/sn/b", None, 10).await.unwrap(), ["x"]);
    assert_eq!(
        n.select("/sn/b/x").await.unwrap(),
        Selected::File("file x again".into())
    );
}
