//! What the split tests share: the manifests edits a user makes to split `fc-a` in half, the
//! workload through both routers, and the checks after a split (the history, and each cluster
//! holding exactly the keys of its range, the same on every node).

use super::*;
use cleave_e2e::history::History;
use cleave_e2e::workload::{assert_history, Workload};
use cleave_proto::owned::hash_of_key;
use serde_json::Value;
use std::time::Duration;

pub fn cluster<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The manifests of one cluster `fc-a` owning every hash (the samples without `fc-b`).
pub fn one_cluster(sys: &System) {
    std::fs::remove_file(sys.manifests.join("filecluster-b.yaml")).unwrap();
    std::fs::remove_file(sys.manifests.join("hashrange-high.yaml")).unwrap();
    set_low_end(sys, u32::MAX);
}

pub fn set_low_end(sys: &System, end: u32) {
    let file = sys.manifests.join("hashrange-low.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("end:") {
                format!("  end: {end}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
}

/// The last hash `fc-a` keeps when split in half.
pub const MID: u32 = 2_147_483_647;

/// What a user does to split `fc-a` in half: add `fc-b` with the upper half, then halve `low`
/// (in between, the two ranges overlap: refused, nothing moves).
pub fn split_in_half(sys: &System) {
    let samples = samples();
    std::fs::copy(
        samples.join("filecluster-b.yaml"),
        sys.manifests.join("filecluster-b.yaml"),
    )
    .unwrap();
    std::fs::copy(
        samples.join("hashrange-high.yaml"),
        sys.manifests.join("hashrange-high.yaml"),
    )
    .unwrap();
    set_low_end(sys, MID);
}

pub fn workload(sys: &System, secs: u64) -> Workload {
    let mut w = Workload::new(vec![sys.router(), sys.router2()]);
    w.prefix = "sp".into();
    w.clients = 6;
    w.roots = 16;
    w.files_per_root = 3;
    w.duration = Duration::from_secs(secs);
    w.timeout = Duration::from_secs(10);
    w
}

pub async fn finish(w: &Workload, history: History, addr: &str, min_acked: usize) {
    let mut history = history;
    w.final_reads(&mut history, addr).await;
    let table = cleave_proto::Client::connect(addr)
        .await
        .expect("router")
        .table()
        .await
        .expect("the router's table");
    // Seqs are unique and ordered per cluster. A moved path's writes were applied by the
    // source up to the fence and by the target after it, whose seqs go on above the fence:
    // checked together under the path's owner now, they must still never repeat nor go back.
    history.set_clusters(|p| {
        let root = p.trim_start_matches('/').split('/').next().unwrap_or("");
        table
            .lookup(cleave_proto::hash::hash_root(root))
            .map(|r| r.cluster.clone())
            .unwrap_or_default()
    });
    assert_history(&history, min_acked);
}

/// Every key in the Redis servers of `name` names a hash of `ranges`, and every node of the
/// cluster holds exactly the same data.
pub async fn assert_holds_exactly(s: &Value, name: &str, ranges: (u32, u32)) {
    let mut digests = vec![];
    for n in cluster(s, name)["nodes"].as_array().into_iter().flatten() {
        let redis = n["redis"].as_str().unwrap_or_default();
        let addr = redis.trim_start_matches("redis://");
        let mut c = cleave_proto::Client::connect(addr).await.expect("redis");
        let keys = match c
            .raw(&cleave_proto::Frame::command(["KEYS", "*"]))
            .await
            .expect("KEYS")
        {
            cleave_proto::Frame::Array(items) => items,
            other => panic!("KEYS: {other:?}"),
        };
        let mut data = 0;
        for k in keys {
            let cleave_proto::Frame::Bulk(k) = k else {
                continue;
            };
            if let Some(h) = hash_of_key(&k) {
                data += 1;
                assert!(
                    ranges.0 <= h && h <= ranges.1,
                    "{name}: {} holds {:?} (hash {h:#x})",
                    n["name"],
                    String::from_utf8_lossy(&k)
                );
            }
        }
        assert!(data > 0, "{name}: {} holds none of its range", n["name"]);
        let mut store = cleave_node::store::Store::connect(&format!("redis://{addr}"), 1, 1)
            .await
            .expect("store");
        digests.push(store.data_digest().await.expect("digest"));
    }
    assert!(
        digests.windows(2).all(|d| d[0] == d[1]),
        "{name}: its nodes differ: {digests:?}"
    );
}

/// `cleave split CLUSTER --into INTO --wait`, as a user runs it; panics unless it reports the
/// split done.
pub fn cli_split(sys: &System, cluster: &str, into: &str) {
    cli_split_within(sys, cluster, into, 120)
}

/// [`cli_split`] with `cleave split --wait --timeout secs`.
pub fn cli_split_within(sys: &System, cluster: &str, into: &str, secs: u64) {
    let cli = tokio::task::block_in_place(|| {
        std::process::Command::new(bin_dir().join("cleave"))
            .args([
                "split",
                cluster,
                "--into",
                into,
                "--wait",
                "--timeout",
                &secs.to_string(),
            ])
            .arg("--manifests")
            .arg(&sys.manifests)
            .arg("--data")
            .arg(&sys.data)
            .output()
            .expect("run cleave split")
    });
    let out = String::from_utf8_lossy(&cli.stdout);
    println!(
        "cleave split {cluster}:\n{out}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        cli.status.success() && out.contains("split done"),
        "cleave split {cluster} failed"
    );
}

/// The phase of the split in progress, as the status reports it (`None`: no split).
pub fn phase(s: &Value) -> Option<String> {
    s["split"]["phase"].as_str().map(str::to_owned)
}

/// The pid of node `name` as the status reports it.
pub fn node_pid(s: &Value, name: &str) -> i32 {
    s["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["nodes"].as_array().into_iter().flatten())
        .find(|n| n["name"] == name)
        .and_then(|n| n["pid"].as_u64())
        .unwrap_or(0) as i32
}
