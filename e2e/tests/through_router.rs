//! The whole data plane through a router over two clusters: routing by the root's hash, every
//! command, redis-cli and redis-benchmark compatibility, a 1 GiB file through the CLI within a
//! memory bound, and bad input at the router.

use cleave_e2e::process::{binary, Proc};
use cleave_e2e::{ClusterOptions, System};
use cleave_proto::hash::hash_root;
use cleave_proto::{ErrorCode, Selected};
use std::process::{Command, Stdio};

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
    let mut r = sys.router.client().await;
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
                let got = node.client().await.stat(&format!("/{root}/dir/file")).await;
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
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert!(cli(&["INSERT", "/cli/hello.txt", "hi there"])
        .parse::<u64>()
        .is_ok());
    assert_eq!(cli(&["SELECT", "/cli/hello.txt"]), "hi there");
    assert_eq!(cli(&["SELECT", "/cli"]), "hello.txt");
    assert!(cli(&["SELECT", "/cli/missing"]).contains("NOTFOUND"));
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-c",
            "10",
            "-n",
            "2000",
            "-r",
            "1000",
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
    // Every benchmark write landed and is readable.
    let mut r = sys.router.client().await;
    let mut found = 0;
    for i in 0..1000 {
        if r.select(&format!("/b{i:012}/f")).await.is_ok() {
            found += 1;
        }
    }
    assert!(found > 800, "only {found} of 1000 benchmark roots readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_round_trips_through_the_cli_within_256_mib_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(dir.path(), ClusterOptions::default()).await;
    let src = dir.path().join("big.bin");
    let dst = dir.path().join("big.out");
    let size: u64 = 1 << 30;
    // A file with position-dependent content (so a misplaced part is caught), made without
    // holding it in memory.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..(size >> 20) {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (i as usize * 7 + j * 13 % 251) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let cleave = binary("cleave");
    let run = |args: Vec<String>| {
        let status = Command::new(&cleave)
            .arg("--router")
            .arg(&sys.router.addr)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "cleave exited with {status}");
    };
    let peak = |p: &Proc| p.peak_rss();
    run(vec![
        "put".into(),
        src.display().to_string(),
        "/huge/file.bin".into(),
    ]);
    run(vec![
        "get".into(),
        "/huge/file.bin".into(),
        dst.display().to_string(),
    ]);
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), size);
    assert!(
        files_equal(&src, &dst),
        "downloaded bytes differ from the uploaded file"
    );
    let limit = 256 << 20;
    let router_peak = peak(&sys.router.proc);
    assert!(
        router_peak < limit,
        "router peak RSS {} MiB",
        router_peak >> 20
    );
    let leader = sys
        .clusters
        .iter()
        .flat_map(|c| &c.nodes)
        .map(|n| peak(&n.proc))
        .max()
        .unwrap();
    assert!(leader < limit, "a node's peak RSS {} MiB", leader >> 20);
    println!(
        "peak RSS: router {} MiB, busiest node {} MiB",
        router_peak >> 20,
        leader >> 20
    );
}

fn files_equal(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::io::Read;
    let mut fa = std::io::BufReader::new(std::fs::File::open(a).unwrap());
    let mut fb = std::io::BufReader::new(std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let nb = fb
            .read_exact(&mut bb[..na])
            .map(|_| na)
            .unwrap_or(usize::MAX);
        if na != nb || ba[..na] != bb[..na] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}
