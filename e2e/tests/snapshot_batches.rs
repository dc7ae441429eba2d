//! Snapshot batches are bounded by bytes (plus at most one key), against a real Redis: keys of
//! very different sizes, more per SCAN step than fit in a batch, every data key delivered exactly
//! once, bookkeeping keys never; a learner's snapshot limited to hash spans carries exactly the
//! data keys of those hashes and the keys of the whole cluster; and cursors that are malformed
//! or come from another Redis run are refused.

use cleave_e2e::RedisProc;
use cleave_node::store::Store;
use cleave_proto::{Client, Frame};
use std::collections::BTreeSet;
use std::time::Duration;

const KIB: usize = 1024;
const LIMIT: usize = 300 * KIB;

async fn set(c: &mut Client, key: &str, len: usize) {
    let reply = c
        .raw(&Frame::command([
            "SET".to_string(),
            key.to_string(),
            "v".repeat(len),
        ]))
        .await
        .expect("SET");
    assert_eq!(reply, Frame::Simple("OK".into()));
}

#[tokio::test]
async fn batches_stay_within_their_byte_bound_and_deliver_every_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisProc::start(dir.path()).await;
    let mut raw = Client::connect(&format!("127.0.0.1:{}", redis.port))
        .await
        .expect("redis")
        .with_timeout(Duration::from_secs(30));
    let mut expected = BTreeSet::new();
    for i in 0..40 {
        let k = format!("c:t:{i}");
        set(&mut raw, &k, 100 * KIB).await;
        expected.insert(k);
    }
    for i in 0..4 {
        let k = format!("u:/big\nup\n{i}");
        set(&mut raw, &k, 1024 * KIB).await;
        expected.insert(k);
    }
    for i in 0..300 {
        let k = format!("f:/small/{i}");
        set(&mut raw, &k, 10).await;
        expected.insert(k);
    }
    set(&mut raw, "meta:epoch", 1).await;

    let mut store = Store::connect(&redis.url(), 100, 1 << 20)
        .await
        .expect("store");
    let mut cursor = "0".to_string();
    let mut seen = BTreeSet::new();
    let mut batches = 0;
    loop {
        let b = store
            .snapshot_batch_within(&cursor, LIMIT, &[])
            .await
            .expect("batch");
        batches += 1;
        assert!(batches < 1000, "the snapshot does not end");
        let bytes: usize = b.items.iter().map(|(k, d)| k.len() + d.len()).sum();
        let largest = b
            .items
            .iter()
            .map(|(k, d)| k.len() + d.len())
            .max()
            .unwrap_or(0);
        assert!(
            bytes <= LIMIT + largest && (b.items.len() == 1 || bytes <= LIMIT + 8 * KIB),
            "batch {batches}: {} keys, {bytes} bytes over a {LIMIT}-byte bound",
            b.items.len()
        );
        for (k, _) in &b.items {
            let k = String::from_utf8(k.to_vec()).unwrap();
            assert!(seen.insert(k.clone()), "{k:?} delivered twice");
        }
        if b.cursor == "0" {
            break;
        }
        cursor = b.cursor;
    }
    assert_eq!(seen, expected, "every data key once, no bookkeeping key");
    println!("{} keys in {batches} batches", seen.len());

    for bad in ["nonsense", "abc:12", "x:y:zz", ""] {
        assert!(
            store.snapshot_batch_within(bad, LIMIT, &[]).await.is_err(),
            "cursor {bad:?} was accepted"
        );
    }
}

/// Every key a snapshot limited to `spans` delivers, in small batches.
async fn snapshot_keys(store: &mut Store, spans: &[(u32, u32)]) -> BTreeSet<String> {
    let (mut cursor, mut seen, mut batches) = ("0".to_string(), BTreeSet::new(), 0);
    loop {
        let b = store
            .snapshot_batch_within(&cursor, 4 * KIB, spans)
            .await
            .expect("batch");
        batches += 1;
        assert!(batches < 10_000, "the snapshot does not end");
        for (k, _) in &b.items {
            let k = String::from_utf8(k.to_vec()).unwrap();
            assert!(seen.insert(k.clone()), "{k:?} delivered twice");
        }
        if b.cursor == "0" {
            return seen;
        }
        cursor = b.cursor;
    }
}

#[tokio::test]
async fn a_snapshot_limited_to_spans_carries_their_data_keys_and_the_clusters_keys_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisProc::start(dir.path()).await;
    let mut raw = Client::connect(&format!("127.0.0.1:{}", redis.port))
        .await
        .expect("redis")
        .with_timeout(Duration::from_secs(30));
    // Hashes on both sides of each span edge, and every prefix a file's keys use.
    let spans = [(0x4000_0000u32, 0x7fff_ffffu32), (0xffff_fff0, u32::MAX)];
    let hashes = [
        0u32,
        0x3fff_ffff,
        0x4000_0000,
        0x5555_5555,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffef,
        0xffff_fff0,
        u32::MAX,
    ];
    let (mut inside, mut all) = (BTreeSet::new(), BTreeSet::new());
    for h in hashes {
        for prefix in ["f", "c", "u", "up", "dir"] {
            for i in 0..3 {
                let k = format!("{prefix}:{}:/r{i}/x", cleave_proto::owned::key_hash(h));
                set(&mut raw, &k, 300).await;
                all.insert(k.clone());
                if cleave_proto::owned::spans_contain(&spans, h) {
                    inside.insert(k);
                }
            }
        }
    }
    // Keys of the whole cluster travel with any spans; bookkeeping never does.
    for k in ["sess", "sess:r1-7", "own"] {
        set(&mut raw, k, 20).await;
        all.insert(k.to_string());
        inside.insert(k.to_string());
    }
    set(&mut raw, "meta:epoch", 1).await;
    set(&mut raw, "log:1", 10).await;

    let mut store = Store::connect(&redis.url(), 100, 1 << 20)
        .await
        .expect("store");
    assert_eq!(snapshot_keys(&mut store, &spans).await, inside);
    assert_eq!(
        snapshot_keys(&mut store, &[]).await,
        all,
        "no spans: every hash"
    );
    let none_inside = snapshot_keys(&mut store, &[(0x9000_0000, 0x9000_0001)]).await;
    assert_eq!(
        none_inside,
        ["own", "sess", "sess:r1-7"].map(String::from).into(),
        "spans holding no file: only the cluster's keys"
    );
}
