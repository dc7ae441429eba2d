//! A split of a cluster that holds large and multipart files, under concurrent load: files
//! written with one `INSERT` (stored in 1 MiB chunks) and with a multipart upload move whole,
//! an upload still open at the split can be finished at the new owner, and afterwards each
//! cluster holds exactly the keys of its range. The history check covers the small files the
//! load writes meanwhile.
//!
//! The multipart file is 32 MiB in `make test`; `make soak` sets `CLEAVE_SPLIT_LARGE_MIB=256`.
//! Files written with one `INSERT` stay at most [`INSERT_MIB`] (one request is one frame).

mod common;

use bytes::Bytes;
use cleave_proto::Client;
use common::split::*;
use common::*;
use std::time::Duration;

/// Parts of a multipart upload (the last may be shorter).
const PART_BYTES: usize = 8 << 20;
/// Bytes asked for per `READ` when checking a file.
const READ_BYTES: u64 = 8 << 20;
/// The largest file written with one `INSERT` here, in MiB (a frame is at most 64 MiB).
const INSERT_MIB: usize = 32;

/// Size of the multipart file, in MiB.
fn large_mib() -> usize {
    std::env::var("CLEAVE_SPLIT_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

/// The bytes of a test file: a pattern that differs by `seed` and by offset, so a chunk or a
/// part out of place shows.
fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i / 4096 * 7 + i * 31 + seed * 131) % 251) as u8)
        .collect()
}

/// The first root named `<prefix><i>` whose hash is on the side `moving` says.
fn root_on(prefix: &str, moving: bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|r| (cleave_proto::hash::hash_root(r) > MID) == moving)
        .expect("some root hashes on each side")
}

/// One request through the router, bounded.
async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = cleave_proto::Result<T>>,
) -> T {
    match tokio::time::timeout(REQUEST_TIMEOUT * 4, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {:?}", REQUEST_TIMEOUT * 4),
    }
}

/// Upload `data` as parts of `upload` (not committed).
async fn upload_parts(c: &mut Client, path: &str, upload: &str, data: &[u8]) -> u32 {
    let mut n = 0;
    for (i, part) in data.chunks(PART_BYTES).enumerate() {
        let what = format!("PART {i} of {path}");
        bounded(
            &what,
            c.part(path, upload, i as u32, Bytes::copy_from_slice(part)),
        )
        .await;
        n += 1;
    }
    n
}

/// `path` reads back as exactly `want`, in ranges.
async fn assert_file(c: &mut Client, path: &str, want: &[u8]) {
    let st = bounded(&format!("STAT {path}"), c.stat(path)).await;
    assert_eq!(st.size, want.len() as u64, "size of {path}");
    let mut offset = 0u64;
    while offset < want.len() as u64 {
        let got = bounded(
            &format!("READ {path}"),
            c.read(path, offset, READ_BYTES, None),
        )
        .await;
        let end = (offset as usize + got.len()).min(want.len());
        assert!(!got.is_empty(), "{path}: empty read at {offset}");
        assert!(
            got[..] == want[offset as usize..end],
            "{path}: bytes differ in [{offset}, {end})"
        );
        offset += got.len() as u64;
    }
}

/// The learners clone a log of 32 MiB entries: the leader reads its log within each fetch's
/// byte budget (entry by entry in Redis), so a fetch moves one large entry at a time. Before
/// that, a fetch read 256 entries and trimmed afterwards, outlasted the fetch timeout, and
/// the clone never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_moves_large_and_multipart_files_whole() {
    if !have_router() {
        return;
    }
    let large = large_mib() << 20;
    let small = large.min(INSERT_MIB << 20);
    let mut sys = System::new();
    one_cluster(&sys);
    sys.start();
    sys.wait_ready();
    let kept = format!("/{}/inserted", root_on("bigk", false));
    let moved = format!("/{}/inserted", root_on("bigm", true));
    let uploaded = format!("/{}/uploaded", root_on("bigu", true));
    let pending = format!("/{}/pending", root_on("bigp", true));
    let mut c = Client::connect(&sys.router()).await.expect("router");
    let files = [
        (&kept, 1, small),
        (&moved, 2, small),
        (&uploaded, 3, large),
        (&pending, 4, small),
    ];
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(|(_, seed, len)| content(*seed, *len))
        .collect();
    bounded("INSERT kept", c.insert(&kept, data[0].clone())).await;
    bounded("INSERT moved", c.insert(&moved, data[1].clone())).await;
    let parts = upload_parts(&mut c, &uploaded, "u1", &data[2]).await;
    bounded("COMMIT", c.commit(&uploaded, "u1", parts, None)).await;
    // Left open across the split: its parts move with the range.
    let pending_parts = upload_parts(&mut c, &pending, "u1", &data[3]).await;

    let w = workload(&sys, 20);
    let load = {
        let w = w.clone();
        tokio::spawn(async move { w.run().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sys.status()["epoch"].as_u64().unwrap_or(0);
    cli_split_within(&sys, "fc-a", "fc-b", 600);
    let s = tokio::task::block_in_place(|| {
        sys.wait_for(600, "the split to complete", |s| {
            ready(s)
                && s["split"].is_null()
                && s["epoch"].as_u64().unwrap_or(0) > before
                && cond(cluster(s, "fc-b"), "Ready")
        })
    });
    let history = load.await.expect("the load ran");
    println!(
        "split with {} MiB files: {}",
        large_mib(),
        history.summary()
    );

    // Every file whole, wherever it lives now; the open upload is finished at fc-b.
    let mut c = Client::connect(&sys.router()).await.expect("router");
    bounded(
        "COMMIT after the split",
        c.commit(&pending, "u1", pending_parts, None),
    )
    .await;
    for ((path, _, _), want) in files.iter().zip(&data) {
        assert_file(&mut c, path, want).await;
    }
    finish(&w, history, &sys.router(), 50).await;
    assert_holds_exactly(&s, "fc-a", (0, MID)).await;
    assert_holds_exactly(&s, "fc-b", (MID + 1, u32::MAX)).await;
}
