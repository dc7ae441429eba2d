//! Bad input to a node gets a clear error and never takes it down; multipart uploads and ranged
//! reads work for files larger than one frame.

use bytes::Bytes;
use cleave_e2e::process::NodeProc;
use cleave_e2e::{Cluster, ClusterOptions};
use cleave_proto::{Client, ErrorCode, Selected};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on one request, and on waiting for a follower to serve a read: generous for a loaded
/// 2-core machine, but a hung node fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A client of `node` whose every request is bounded by [`TIMEOUT`].
async fn client(node: &NodeProc) -> Client {
    node.client().await.with_timeout(TIMEOUT)
}

/// Send raw bytes, return what the server answered first (within [`TIMEOUT`]).
async fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let what = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer within {TIMEOUT:?} to {what:?}"))
        .unwrap_or_else(|e| panic!("reading the answer to {what:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Run a read until it stops answering `TRYAGAIN` (a follower waiting for its read barrier on
/// a loaded machine), for at most [`TIMEOUT`]; any other error fails the test.
async fn read_retrying<T, F, Fut>(what: &str, mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = cleave_proto::Result<T>>,
{
    let start = Instant::now();
    loop {
        match read().await {
            Ok(v) => return v,
            Err(e) if e.code() == Some(ErrorCode::TryAgain) && start.elapsed() < TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e} (after {:?})", start.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_node_keeps_serving() {
    let c = Cluster::start(
        "badinput",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let addr = &c.nodes[0].addr;
    let cases: &[(&[u8], &str)] = &[
        (b"GARBAGE\r\n", "-ERR Protocol error"),
        (b"*1\r\n$3\r\nFOO\r\n", "-ERR unknown command 'FOO'"),
        (
            b"$99999999999\r\n",
            "-ERR Protocol error: bulk of 99999999999 bytes exceeds",
        ),
        (b"*2\r\n$6\r\nSELECT\r\n$8\r\nrelative\r\n", "-BADPATH"),
        (b"*2\r\n$6\r\nSELECT\r\n$6\r\n/a/../\r\n", "-BADPATH"),
        (
            b"*2\r\n$6\r\nSELECT\r\n$4\r\n/a\xff\xfe\r\n",
            "-BADPATH path is not valid UTF-8",
        ),
        (b"*2\r\n$6\r\nSELECT\r\n$4\r\n/a//\r\n", "-BADPATH"),
        (
            b"*2\r\n$6\r\nINSERT\r\n$2\r\n/a\r\n",
            "-ERR INSERT: missing argument data",
        ),
        (
            b"*4\r\n$4\r\nREAD\r\n$2\r\n/a\r\n$1\r\n0\r\n$11\r\n99999999999\r\n",
            "-TOOLARGE",
        ),
    ];
    for (input, expected) in cases {
        let got = raw(addr, input).await;
        assert!(
            got.starts_with(expected),
            "{:?}: got {got:?}, want {expected:?}",
            String::from_utf8_lossy(input)
        );
    }
    let long = format!("/{}", "x/".repeat(700));
    let mut n = client(&c.nodes[0]).await;
    assert_eq!(
        n.select(&long).await.unwrap_err().code(),
        Some(ErrorCode::BadPath)
    );
    // An oversized value is refused at the frame level and the connection closed; others go on.
    let huge = format!(
        "*3\r\n$6\r\nINSERT\r\n$2\r\n/a\r\n${}\r\n",
        80 * 1024 * 1024
    );
    assert!(raw(addr, huge.as_bytes())
        .await
        .starts_with("-ERR Protocol error: bulk of"));
    n.insert("/ok/file", "still serving").await.unwrap();
    assert_eq!(
        n.select("/ok/file").await.unwrap(),
        Selected::File("still serving".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_commit_atomically_and_read_back_in_ranges() {
    let c = Cluster::start("multipart", ClusterOptions::default()).await;
    let mut n = client(&c.nodes[0]).await;
    let part = |i: u8, len: usize| {
        Bytes::from(
            (0..len)
                .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
                .collect::<Vec<u8>>(),
        )
    };
    let parts = [part(0, 3 << 20), part(1, 3 << 20), part(2, 1000)];
    for (i, p) in parts.iter().enumerate() {
        n.part("/big/file.bin", "up1", i as u32, p.clone())
            .await
            .unwrap();
    }
    // Not visible before COMMIT.
    assert_eq!(
        n.stat("/big/file.bin").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // A COMMIT naming a missing part is refused.
    let err = n
        .commit("/big/file.bin", "up1", 4, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no part 3"), "{err}");
    let seq = n
        .commit("/big/file.bin", "up1", 3, Some("application/x-test".into()))
        .await
        .unwrap();
    let stat = n.stat("/big/file.bin").await.unwrap();
    assert_eq!(
        (stat.size, stat.seq, stat.content_type.as_str()),
        ((6 << 20) + 1000, seq, "application/x-test")
    );
    assert!(stat.etag.ends_with("-3"), "multipart etag {}", stat.etag);
    let whole: Vec<u8> = parts.concat();
    // Ranged reads that straddle part boundaries, on every node.
    for node in &c.nodes {
        let at = &node.addr;
        let mid = read_retrying(&format!("READ across a part boundary at {at}"), || async {
            client(node)
                .await
                .read("/big/file.bin", (3 << 20) - 10, 20, Some(seq))
                .await
        })
        .await;
        assert_eq!(&mid[..], &whole[(3 << 20) - 10..(3 << 20) + 10], "{at}");
        let tail = read_retrying(&format!("READ past the end at {at}"), || async {
            client(node)
                .await
                .read("/big/file.bin", (6 << 20) + 990, 100, Some(seq))
                .await
        })
        .await;
        assert_eq!(&tail[..], &whole[(6 << 20) + 990..], "{at}");
        let file = read_retrying(&format!("SELECT at {at}"), || async {
            client(node).await.select("/big/file.bin").await
        })
        .await;
        assert!(
            file == Selected::File(whole.clone().into()),
            "{at}: the file differs"
        );
    }
    // Unequal parts are refused; ABORT drops staged parts.
    n.part("/big/bad.bin", "up2", 0, part(0, 10)).await.unwrap();
    n.part("/big/bad.bin", "up2", 1, part(1, 20)).await.unwrap();
    n.part("/big/bad.bin", "up2", 2, part(2, 5)).await.unwrap();
    assert!(n
        .commit("/big/bad.bin", "up2", 3, None)
        .await
        .unwrap_err()
        .to_string()
        .contains("all parts but the last"));
    n.abort("/big/bad.bin", "up2").await.unwrap();
    assert_eq!(
        n.abort("/big/bad.bin", "up2").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // Replacing and deleting a multipart file frees its parts everywhere.
    n.insert("/big/file.bin", "small now").await.unwrap();
    n.delete("/big/file.bin").await.unwrap();
    c.assert_identical().await;
    let (keys, _) = c.digest(0).await;
    assert_eq!(keys, 0, "no data key is left behind");
}
