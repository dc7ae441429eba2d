//! `CLEAVE_LOG_FORMAT=json`: a real node logs one JSON object per line, each carrying the node's
//! id, its cluster and its epoch from the `node` span.

use cleave_e2e::process::binary;
use cleave_e2e::{free_port, wait_until, RedisProc};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_node_logs_json_lines_with_node_cluster_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&dir.path().join("redis")).await;
    let log = dir.path().join("node.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(binary("cleave-node"))
        .args(["--listen", &addr, "--redis", &redis.url(), "--id", "fc-j-0"])
        .args(["--lead", "--epoch", "3", "--min-in-sync", "0"])
        .env("CLEAVE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("listening on"), "{first}");
    let mut c = cleave_proto::Client::connect(&addr).await.unwrap();
    c.insert("/j/a", "x").await.unwrap();
    wait_until(
        Duration::from_secs(10),
        "the node logged its start",
        || async { std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on")) },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    let listening = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening on"))
        })
        .expect("a 'listening on' line");
    let span = &listening["span"];
    assert_eq!(span["name"], "node", "{listening}");
    assert_eq!(span["node"], "fc-j-0", "{listening}");
    assert_eq!(span["cluster"], "fc-j", "{listening}");
    assert_eq!(span["epoch"], 3, "{listening}");
    assert!(listening["level"].is_string() && listening["timestamp"].is_string());
}
