//! `make bench`: raw Redis and Cleave side by side, driven by `redis-benchmark` in the same run
//! with the same concurrency and value size, printed as ratios.
//!
//! Raw Redis runs `SET`/`GET`; Cleave (2 clusters × 3 nodes, `minInSync` 1, behind one router)
//! runs `INSERT /r__rand_int__/f <value>` and `SELECT /r__rand_int__/f`, so keys spread over
//! `KEYSPACE` roots and both clusters. Before `SELECT`, every root is filled so no read misses.

use anyhow::{bail, Context, Result};
use cleave_e2e::{ClusterOptions, RedisProc, System};
use std::process::Command;

const CLIENTS: usize = 50;
const KEYSPACE: usize = 10_000;

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
}

/// Run redis-benchmark and parse its CSV line.
fn benchmark(port: u16, requests: usize, args: &[&str]) -> Result<Run> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &CLIENTS.to_string(),
        ])
        .args([
            "-n",
            &requests.to_string(),
            "-r",
            &KEYSPACE.to_string(),
            "--csv",
        ])
        .args(args)
        .output()
        .context("run redis-benchmark (make deps installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('"') && !l.starts_with("\"test\""));
    let Some(line) = line else {
        bail!(
            "no result from redis-benchmark {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let cols: Vec<f64> = line
        .split("\",\"")
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(0.0))
        .collect();
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    if cols.len() < 6 {
        bail!("unexpected redis-benchmark line {line}");
    }
    Ok(Run {
        rps: cols[0],
        p50: cols[3],
        p99: cols[5],
    })
}

fn print_row(what: &str, raw: &Run, cleave: &Run) {
    println!(
        "{what:<22} raw {:>10.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms | cleave {:>10.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms | ratio {:.2}",
        raw.rps, raw.p50, raw.p99, cleave.rps, cleave.p50, cleave.p99, cleave.rps / raw.rps
    );
}

async fn fill(router: &str, value: &[u8]) -> Result<()> {
    let mut tasks = vec![];
    for t in 0..8 {
        let router = router.to_string();
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut c = cleave_proto::Client::connect(&router).await?;
            for i in (t..KEYSPACE).step_by(8) {
                c.insert(&format!("/r{i:012}/f"), value.clone()).await?;
            }
            Ok::<_, cleave_proto::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::Builder::new().prefix("cleave-bench-").tempdir()?;
    println!(
        "machine: {} cores; {CLIENTS} clients; {requests} requests per run; {KEYSPACE} roots",
        num_cpus()
    );
    let raw = RedisProc::start(&dir.path().join("raw")).await;
    let system = System::start(dir.path(), ClusterOptions::default()).await;
    let router_port: u16 = system
        .router
        .addr
        .rsplit(':')
        .next()
        .unwrap_or("0")
        .parse()?;
    let mut targets = vec![];
    for size in [1024usize, 64 * 1024] {
        let value = "x".repeat(size);
        let n = if size > 4096 { requests / 4 } else { requests };
        let raw_set = benchmark(raw.port, n, &["-d", &size.to_string(), "-t", "set"])?;
        let raw_get = benchmark(raw.port, n, &["-d", &size.to_string(), "-t", "get"])?;
        let insert = benchmark(router_port, n, &["INSERT", "/r__rand_int__/f", &value])?;
        fill(&system.router.addr, value.as_bytes()).await?;
        let select = benchmark(router_port, n, &["SELECT", "/r__rand_int__/f"])?;
        print_row(&format!("write {}", human(size)), &raw_set, &insert);
        print_row(&format!("read {}", human(size)), &raw_get, &select);
        targets.push((
            format!("INSERT {}", human(size)),
            insert.rps / raw_set.rps,
            0.25,
        ));
        targets.push((
            format!("SELECT {}", human(size)),
            select.rps / raw_get.rps,
            0.5,
        ));
    }
    println!();
    for (what, ratio, target) in targets {
        let verdict = if ratio >= target { "meets" } else { "BELOW" };
        println!("{what:<14} ratio {ratio:.2}  target >= {target:.2}  {verdict}");
    }
    Ok(())
}

fn human(bytes: usize) -> String {
    format!("{} KiB", bytes / 1024)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
