//! The whole data plane through a router over two clusters: routing by the root's hash, every
//! command, redis-cli and redis-benchmark compatibility, a 1 GiB file through the CLI within a
//! memory bound, and bad input at the router.

use cleave_e2e::process::binary;
use cleave_e2e::{ClusterOptions, System};
use cleave_proto::frame::{Limits, DEFAULT_MAX_BULK};
use cleave_proto::hash::hash_root;
use cleave_proto::{Client, Connection, ErrorCode, Frame, Selected};
use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Bound on any one request or wait here: generous for a loaded 2-core machine (the 1 GiB
/// transfers have their own), but a hung router fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A client of the router whose every request is bounded by [`TIMEOUT`].
async fn client(sys: &System) -> Client {
    sys.router.client().await.with_timeout(TIMEOUT)
}

/// Await `fut` for at most [`TIMEOUT`], failing with `what` it waited for.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("no answer after {TIMEOUT:?} waiting for {what}"))
}

/// Run a command to completion within `limit`, sampling its peak resident set size (VmHWM,
/// a high-water mark kept by the kernel) until it exits. Returns whether it succeeded and the
/// peak in bytes.
fn run_measured(mut cmd: Command, what: &str, limit: Duration) -> (bool, u64) {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let status_file = format!("/proc/{}/status", child.id());
    let start = Instant::now();
    let mut peak_kb = 0u64;
    loop {
        // Read before try_wait: once the process has exited its memory figures are gone.
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            peak_kb = peak_kb.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.success(), peak_kb * 1024);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_land_only_on_the_cluster_owning_their_root() {
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    let mut r = client(&sys).await;
    let roots: Vec<String> = (0..40).map(|i| format!("root{i}")).collect();
    for root in &roots {
        r.insert(&format!("/{root}/dir/file"), root.clone())
            .await
            .unwrap();
    }
    r.update("/root0/dir/file", "updated").await.unwrap();
    assert_eq!(
        r.update("/root0/nope", "x").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    r.insert("/root1/dir/other", "o").await.unwrap();
    r.delete("/root1/dir/other").await.unwrap();
    assert_eq!(
        r.select("/root0/dir/file").await.unwrap(),
        Selected::File("updated".into())
    );
    assert_eq!(
        r.select("/root1/dir").await.unwrap(),
        Selected::Dir(vec!["file".into()])
    );
    assert_eq!(r.list("/root2", None, 10).await.unwrap(), ["dir/"]);
    assert_eq!(r.stat("/root3/dir/file").await.unwrap().size, 5);
    assert_eq!(r.read("/root3/dir/file", 1, 3, None).await.unwrap(), "oot");

    // Each file is on exactly the cluster whose range holds hash(root), on all three nodes.
    for root in &roots {
        let owner = &sys.table.lookup(hash_root(root)).unwrap().cluster;
        for cluster in &sys.clusters {
            for node in &cluster.nodes {
                let mut node_client = node.client().await.with_timeout(TIMEOUT);
                let got = node_client.stat(&format!("/{root}/dir/file")).await;
                if &cluster.name == owner {
                    assert!(
                        got.is_ok(),
                        "{root} missing on its owner {} at {}",
                        cluster.name,
                        node.addr
                    );
                } else {
                    assert_eq!(
                        got.unwrap_err().code(),
                        Some(ErrorCode::NotFound),
                        "{root} leaked to {}",
                        cluster.name
                    );
                }
            }
        }
    }
    for cluster in &sys.clusters {
        cluster.assert_identical().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_benchmark_work_against_the_router() {
    assert!(
        has("redis-cli") && has("redis-benchmark"),
        "make deps installs redis-tools"
    );
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    let port = sys.router.addr.rsplit(':').next().unwrap().to_string();
    // redis-cli and redis-benchmark have no reply timeout of their own: `timeout` bounds them.
    let cli = |args: &[&str]| {
        let out = Command::new("timeout")
            .args(["60", "redis-cli", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert!(cli(&["INSERT", "/cli/hello.txt", "hi there"])
        .parse::<u64>()
        .is_ok());
    assert_eq!(cli(&["SELECT", "/cli/hello.txt"]), "hi there");
    assert_eq!(cli(&["SELECT", "/cli"]), "hello.txt");
    assert!(cli(&["SELECT", "/cli/missing"]).contains("NOTFOUND"));
    // 5000 writes over 200 random roots: the chance that some root is never drawn is
    // 200 x (1 - 1/200)^5000 < 1e-8, so every root must be there afterwards.
    let (requests, roots) = (5000, 200);
    let out = Command::new("timeout")
        .args([
            "300",
            "redis-benchmark",
            "-p",
            &port,
            "-c",
            "10",
            "-n",
            &requests.to_string(),
            "-r",
            &roots.to_string(),
            "--csv",
            "INSERT",
            "/b__rand_int__/f",
            "payload",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("INSERT"),
        "redis-benchmark: {text}"
    );
    // Every benchmark write landed and is readable, with the value written.
    let mut r = client(&sys).await;
    for i in 0..roots {
        let path = format!("/b{i:012}/f");
        match r.select(&path).await {
            Ok(got) => assert_eq!(got, Selected::File("payload".into()), "{path}"),
            Err(e) => panic!("{path}, written by redis-benchmark, is not readable: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_round_trips_through_the_cli_within_256_mib_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    let src = dir.path().join("big.bin");
    let dst = dir.path().join("big.out");
    let size: u64 = 1 << 30;
    // Every 8-byte word holds its own offset (xor a constant, so zeros are not valid content):
    // a part written at the wrong place, twice, or not at all, changes the bytes. Made a block
    // at a time, without holding the file in memory.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for start in (0..size).step_by(block.len()) {
            for (k, word) in block.chunks_exact_mut(8).enumerate() {
                let offset = start + 8 * k as u64;
                word.copy_from_slice(&(offset ^ 0x5a5a_5a5a_5a5a_5a5a).to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let limit = 256 << 20;
    let cleave = binary("cleave");
    let run = |args: Vec<String>| {
        let mut cmd = Command::new(&cleave);
        cmd.arg("--router").arg(&sys.router.addr).args(&args);
        let what = format!("cleave {}", args.join(" "));
        let (ok, peak) = run_measured(cmd, &what, Duration::from_secs(900));
        assert!(ok, "{what} failed");
        assert!(peak > 0, "{what}: no memory figures were read");
        assert!(peak < limit, "{what}: peak RSS {} MiB", peak >> 20);
        peak
    };
    let put_peak = run(vec![
        "put".into(),
        src.display().to_string(),
        "/huge/file.bin".into(),
    ]);
    let get_peak = run(vec![
        "get".into(),
        "/huge/file.bin".into(),
        dst.display().to_string(),
    ]);
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), size);
    if let Some(at) = first_difference(&src, &dst) {
        panic!("the downloaded file differs from the uploaded one from byte {at}");
    }
    let router_peak = sys.router.proc.peak_rss();
    assert!(
        router_peak < limit,
        "router peak RSS {} MiB",
        router_peak >> 20
    );
    let busiest = sys
        .clusters
        .iter()
        .flat_map(|c| &c.nodes)
        .map(|n| n.proc.peak_rss())
        .max()
        .unwrap();
    assert!(busiest < limit, "a node's peak RSS {} MiB", busiest >> 20);
    println!(
        "peak RSS: cleave put {} MiB, cleave get {} MiB, router {} MiB, busiest node {} MiB",
        put_peak >> 20,
        get_peak >> 20,
        router_peak >> 20,
        busiest >> 20
    );
}

/// Bad input at the router: each kind gets a clear error, the router stays up, other
/// connections (one of them in the middle of a pipeline) are unaffected and nothing written
/// before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_the_router_gets_errors_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sys = System::start(dir.path(), ClusterOptions::default()).await;
    let mut bystander = client(&sys).await;
    let seq = bystander.insert("/keep/me", "precious").await.unwrap();
    assert!(seq > 0);

    // Requests that decode but are wrong: an error reply each, and the connection goes on.
    let mut c = client(&sys).await;
    let too_long = format!("/{}", "x/".repeat(600));
    let huge_read = (cleave_proto::command::read::MAX_READ_LEN + 1).to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["FLUSHALL"], "ERR unknown command 'FLUSHALL'"),
        (
            vec!["GET", "foo"],
            "BADPATH path \"foo\" is not absolute (must start with /): keys are absolute paths",
        ),
        (vec!["SELECT", "relative/path"], "BADPATH "),
        (vec!["SELECT", "/a/../b"], "BADPATH "),
        (vec!["INSERT", "/a//b", "v"], "BADPATH "),
        (vec!["INSERT", "/a/", "v"], "BADPATH "),
        (vec!["DELETE", &too_long], "BADPATH "),
        (vec!["INSERT", "/a/b"], "ERR INSERT: missing argument data"),
        (
            vec!["SELECT", "/a", "extra"],
            "ERR SELECT: 1 unexpected extra",
        ),
        (
            vec!["LIST", "/a", "LIMIT", "0"],
            "ERR LIMIT must be between",
        ),
        (vec!["READ", "/a/b", "0", &huge_read], "TOOLARGE "),
        (
            vec!["PART", "/a/b", "bad id!", "0", "x"],
            "ERR bad upload id",
        ),
        (
            vec!["NODE.LEAD", "9"],
            "ERR NODE.LEAD is not a router command",
        ),
        (vec!["TABLE.PUSH", "{not json"], "ERR invalid range table"),
    ];
    for (request, expected) in &cases {
        let reply = c
            .raw(&Frame::command(request.iter().map(|s| s.to_string())))
            .await
            .unwrap_or_else(|e| panic!("{request:?}: {e}"));
        let Frame::Error(e) = reply else {
            panic!("{request:?} was answered {reply:?}")
        };
        assert!(e.starts_with(expected), "{request:?}: {e}");
    }
    c.ping()
        .await
        .expect("the connection survives error replies");

    // Input that breaks the framing: an error, then that connection (only) is closed. One
    // bystander is mid-pipeline while this happens.
    let mut pipelined = raw(&sys.router.addr).await;
    for i in 0..50 {
        let f = Frame::command(["INSERT".to_string(), format!("/pipe/f{i}"), i.to_string()]);
        pipelined.write_frame(&f).await.unwrap();
    }
    pipelined.flush().await.unwrap();
    let oversize = format!(
        "*3\r\n$6\r\nINSERT\r\n$4\r\n/a/b\r\n${}\r\n",
        DEFAULT_MAX_BULK + 1
    );
    let too_deep = b"*1\r\n".repeat(20);
    let malformed: Vec<(&[u8], &str)> = vec![
        (b"*1\r\n$x\r\n", "invalid number"),
        (b"GET foo\r\n", "unexpected byte"),
        (b"*2\r\n$6\r\nINSERT\r\n$3\r\nabcXY", "missing CRLF"),
        (b"*-5\r\n", "invalid number"),
        (&too_deep, "nesting deeper"),
        (oversize.as_bytes(), "exceeds the limit"),
    ];
    for (input, expected) in malformed {
        let mut s = TcpStream::connect(&sys.router.addr).await.unwrap();
        s.write_all(input).await.unwrap();
        let mut bad = Connection::with_stream(s, Limits::default());
        let what = format!("the reply to {:?}", String::from_utf8_lossy(input));
        let reply = bounded(&what, bad.read_frame()).await;
        let Ok(Some(Frame::Error(e))) = reply else {
            panic!("{what}: {reply:?}")
        };
        assert!(
            e.starts_with("ERR Protocol error: ") && e.contains(expected),
            "{what}: {e}"
        );
        let after = bounded("the close after a protocol error", bad.read_frame()).await;
        assert!(
            matches!(after, Ok(None)),
            "{what}: then closed, got {after:?}"
        );
    }
    for i in 0..50 {
        let reply = bounded("a pipelined reply", pipelined.read_frame()).await;
        assert!(
            matches!(reply, Ok(Some(Frame::Integer(_)))),
            "pipelined INSERT {i}: {reply:?}"
        );
    }

    // The router is up, the bystander connection works, and nothing was lost.
    assert!(sys.router.proc.is_running(), "the router process exited");
    bystander
        .ping()
        .await
        .expect("an earlier connection still works");
    assert_eq!(
        bystander.select("/keep/me").await.unwrap(),
        Selected::File("precious".into())
    );
    for i in 0..50 {
        assert_eq!(
            bystander.select(&format!("/pipe/f{i}")).await.unwrap(),
            Selected::File(i.to_string().into()),
        );
    }
    let mut fresh = client(&sys).await;
    fresh.ping().await.expect("new connections are accepted");
}

async fn raw(addr: &str) -> Connection {
    Connection::new(TcpStream::connect(addr).await.unwrap())
}

/// The offset of the first byte where two files differ (a length difference counts), or
/// `None` when they are equal.
fn first_difference(a: &std::path::Path, b: &std::path::Path) -> Option<u64> {
    use std::io::Read;
    let mut fa = std::io::BufReader::new(std::fs::File::open(a).unwrap());
    let mut fb = std::io::BufReader::new(std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    loop {
        let na = fa.read(&mut ba).unwrap();
        if fb.read_exact(&mut bb[..na]).is_err() {
            return Some(at);
        }
        if let Some(i) = ba[..na].iter().zip(&bb[..na]).position(|(x, y)| x != y) {
            return Some(at + i as u64);
        }
        if na == 0 {
            return (fb.read(&mut bb).unwrap() > 0).then_some(at);
        }
        at += na as u64;
    }
}
