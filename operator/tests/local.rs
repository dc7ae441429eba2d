//! The local platform with real processes: the operator binary, redis-server, cleave-node and
//! cleave-router, driven by the sample manifests in a temporary folder.
//!
//! The node and router binaries are taken from the operator's own target folder, so run these
//! through `cargo test --workspace` (which builds every binary first), as `make test` does.
//! Until the router crate exists in the tree, the tests that need it print SKIPPED and pass.

use cleave_proto::{Client, Selected};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one request through the router may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports one test reserves: the first for router-0, the rest for what the operator assigns
/// from `--port-base` (the second router and 6 nodes x (node + Redis) = 13, with headroom).
const BLOCK: u16 = 40;

/// A block of [`BLOCK`] consecutive free ports, each bound (so neither another test nor another
/// process can take it) until the operator starts. The block lies below the kernel's ephemeral
/// range (32768 and up), so that once released no outgoing connection's source port lands on
/// it, not even while the operator restarts and its nodes rebind the same ports.
fn reserve_block() -> Vec<TcpListener> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap();
    for _ in 0..1000 {
        let base =
            20_000 + (RandomState::new().hash_one(0u8) % (32_768 - 20_000 - BLOCK as u64)) as u16;
        if handed_out.iter().any(|b| b.abs_diff(base) < BLOCK) {
            continue;
        }
        let held: Option<Vec<TcpListener>> = (base..base + BLOCK)
            .map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if let Some(held) = held {
            handed_out.push(base);
            return held;
        }
    }
    panic!("found no {BLOCK} consecutive free ports between 20000 and 32768 in 1000 tries");
}

const OPERATOR: &str = env!("CARGO_BIN_EXE_cleave-operator");

fn bin_dir() -> PathBuf {
    Path::new(OPERATOR).parent().unwrap().to_path_buf()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

/// Whether the router exists; `false` (skip) only while the router crate is not in the tree.
fn have_router() -> bool {
    if bin_dir().join("cleave-router").is_file() {
        return true;
    }
    let crate_exists = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../router/Cargo.toml")
        .is_file();
    assert!(
        !crate_exists,
        "router/ exists but cleave-router is not built: run `cargo test --workspace`"
    );
    eprintln!("SKIPPED: cleave-router is not in the tree yet");
    false
}

/// One operator run over a manifests folder and a data folder.
struct System {
    manifests: PathBuf,
    data: PathBuf,
    router_port: u16,
    port_base: u16,
    /// The reserved ports, held until the operator starts.
    reserved: Vec<TcpListener>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl System {
    /// A system on its own block of ports (see [`reserve_block`]).
    fn new() -> System {
        let tmp = tempfile::tempdir().unwrap();
        let manifests = tmp.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        for f in std::fs::read_dir(samples()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, manifests.join(f.file_name().unwrap())).unwrap();
        }
        let reserved = reserve_block();
        let base = reserved[0].local_addr().unwrap().port();
        System {
            manifests,
            data: tmp.path().join("data"),
            router_port: base,
            port_base: base + 1,
            reserved,
            child: None,
            _tmp: tmp,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(OPERATOR);
        c.args(["local", "--resync-ms", "300", "--manifests"])
            .arg(&self.manifests)
            .arg("--data")
            .arg(&self.data)
            .args(["--router-port", &self.router_port.to_string()])
            .args(["--port-base", &self.port_base.to_string()])
            .env("CLEAVE_LOG", "info");
        c
    }

    fn start(&mut self) {
        self.reserved.clear(); // the operator binds them now
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn status(&self) -> Value {
        std::fs::read(self.data.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Wait until `pred(status)` holds; panics with the last status after `secs`.
    fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("timed out waiting for {what}\nstatus: {s:#}\noperator log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until this run of the operator (not an earlier one) reports everything ready.
    fn wait_ready(&self) -> Value {
        let pid = self.child.as_ref().map(|c| c.id() as u64);
        self.wait_for(
            90,
            "every cluster Ready and every router on the table",
            |s| s["operatorPid"].as_u64() == pid && ready(s),
        )
    }

    fn router(&self) -> String {
        format!("127.0.0.1:{}", self.router_port)
    }

    /// Every pid the status and children files name.
    fn child_pids(&self) -> Vec<u32> {
        let children: Value = std::fs::read(self.data.join("children.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        children
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(Value::as_u64)
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Send `sig` to the operator and wait for it to exit; returns its exit code.
    fn stop(&mut self, sig: Signal) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the operator did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let pids = self.child_pids();
        self.stop(Signal::SIGTERM);
        for p in pids {
            let _ = kill(Pid::from_raw(-(p as i32)), Signal::SIGKILL);
        }
    }
}

fn cond(obj: &Value, ty: &str) -> bool {
    obj["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn ready(s: &Value) -> bool {
    let epoch = s["epoch"].as_u64().unwrap_or(0);
    epoch > 0
        && s["clusters"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| cond(c, "Ready")))
        && s["routers"].as_array().is_some_and(|rs| {
            !rs.is_empty() && rs.iter().all(|r| r["epoch"].as_u64() == Some(epoch))
        })
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client of the router whose every request is bounded by [`REQUEST_TIMEOUT`].
async fn client(addr: &str) -> Client {
    Client::connect_timeout(addr, REQUEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connecting to the router at {addr}: {e}"))
}

/// Write `n` files under several roots (so both clusters get some) through the router.
fn write(addr: &str, tag: &str, n: usize) -> Vec<(String, String)> {
    rt().block_on(async {
        let mut c = client(addr).await;
        let mut out = Vec::new();
        for i in 0..n {
            let path = format!("/root{}/{tag}/file-{i}", i % 8);
            let data = format!("{tag} data {i}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match c.insert(&path, data.clone()).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("retrying {path}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        c = client(addr).await;
                    }
                    Err(e) => panic!("INSERT {path}: {e}"),
                }
            }
            out.push((path, data));
        }
        out
    })
}

fn read_back(addr: &str, files: &[(String, String)]) {
    rt().block_on(async {
        let mut c = client(addr).await;
        for (path, data) in files {
            match c.select(path).await {
                Ok(Selected::File(b)) => assert_eq!(b, data.as_bytes(), "{path}"),
                other => panic!("SELECT {path}: {other:?}"),
            }
        }
    })
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["nodes"].as_array().unwrap())
        .find(|n| n["name"] == name)
        .unwrap()
}

#[test]
fn a_port_in_use_is_a_clear_error_not_a_panic() {
    let mut sys = System::new();
    // Keep the router's port bound; free the rest.
    let _holder = sys.reserved.remove(0);
    sys.reserved.clear();
    let out = sys.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "port {} (router-0) is already in use",
            sys.router_port
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn from_manifests_to_a_working_system() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    assert_eq!(s["epoch"], 1);
    assert_eq!(s["routers"].as_array().unwrap().len(), 2);
    let ranges = s["ranges"].as_array().unwrap();
    assert_eq!(
        (
            ranges[0]["start"].as_u64(),
            ranges[0]["end"].as_u64(),
            ranges[0]["cluster"].as_str()
        ),
        (Some(0), Some(2147483647), Some("fc-a"))
    );
    assert_eq!(ranges[1]["servedBy"], "fc-b");
    for c in s["clusters"].as_array().unwrap() {
        assert_eq!(c["epoch"], 1);
        assert_eq!(c["leader"], format!("{}-0", c["name"].as_str().unwrap()));
        let nodes = c["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0]["role"], "leader");
        assert_eq!(nodes[1]["role"], "follower");
        for n in nodes {
            assert!(n["pid"].as_u64().is_some_and(|p| alive(p as u32)), "{n}");
            assert!(n["address"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert!(n["redis"].as_str().unwrap().starts_with("127.0.0.1:"));
        }
    }
    let files = write(&sys.router(), "tour", 40);
    read_back(&sys.router(), &files);
    read_back(
        &format!(
            "127.0.0.1:{}",
            s["routers"][1]["address"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
        ),
        &files,
    );
    let s = sys.wait_for(20, "leaders report applied writes", |s| {
        node(s, "fc-a-0")["appliedSeq"].as_u64() > Some(0)
            && node(s, "fc-b-0")["appliedSeq"].as_u64() > Some(0)
    });
    assert!(node(&s, "fc-a-1")["inSync"].as_bool().unwrap());
}

#[test]
fn killed_nodes_and_redis_servers_are_restarted_and_catch_up() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    let mut files = write(&sys.router(), "before", 30);

    // kill -9 a follower's node process.
    let old = node(&s, "fc-a-1")["pid"].as_u64().unwrap() as u32;
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    files.extend(write(&sys.router(), "while-node-down", 30));
    sys.wait_for(60, "fc-a-1 restarted and caught up", |s| {
        let n = node(s, "fc-a-1");
        n["pid"].as_u64().is_some_and(|p| p as u32 != old)
            && n["inSync"] == true
            && n["appliedSeq"] == node(s, "fc-a-0")["appliedSeq"]
    });

    // kill -9 a leader's Redis server.
    let children: Value =
        serde_json::from_slice(&std::fs::read(sys.data.join("children.json")).unwrap()).unwrap();
    let redis = children["fc-b-0-redis"].as_u64().unwrap() as u32;
    kill(Pid::from_raw(redis as i32), Signal::SIGKILL).unwrap();
    files.extend(write(&sys.router(), "after-redis-kill", 30));
    sys.wait_for(60, "fc-b back to Ready with every node in sync", |s| {
        let c = s["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "fc-b")
            .unwrap();
        cond(c, "Ready") && !cond(c, "Degraded")
    });
    read_back(&sys.router(), &files);
}

#[test]
fn bad_edits_are_refused_and_the_system_keeps_serving() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "steady", 20);
    let high = sys.manifests.join("hashrange-high.yaml");
    let original = std::fs::read_to_string(&high).unwrap();

    let refused = |sys: &System, text: &str, file: &Path, expect: &str| {
        std::fs::write(file, text).unwrap();
        let s = sys.wait_for(30, expect, |s| {
            s["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e.as_str().unwrap_or("").contains(expect)))
        });
        assert_eq!(s["epoch"], 1, "nothing moved");
        read_back(&sys.router(), &files);
        s
    };
    // Overlap.
    let s = refused(
        &sys,
        &original.replace("2147483648", "2147483000"),
        &high,
        "overlap",
    );
    let hr = s["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "high")
        .unwrap();
    assert!(!cond(hr, "Valid") && cond(hr, "Degraded"), "{hr}");
    let low = s["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "low")
        .unwrap();
    assert_eq!(
        low["servedBy"], "fc-a",
        "the last valid table is still served"
    );
    // Gap.
    refused(
        &sys,
        &original.replace("2147483648", "2147483650"),
        &high,
        "not covered",
    );
    // Bad YAML.
    refused(&sys, "spec: [unclosed\n", &high, "not valid YAML");
    // Unknown field.
    refused(
        &sys,
        &original.replace("cluster: fc-b", "cluster: fc-b\n  color: blue"),
        &high,
        "spec.color: unknown field",
    );
    // A HashRange naming a FileCluster that does not exist.
    refused(
        &sys,
        &original
            .replace("fc-b", "fc-zzz")
            .replace("name: high", "name: extra"),
        &sys.manifests.join("hashrange-extra.yaml"),
        "does not exist",
    );
    std::fs::remove_file(sys.manifests.join("hashrange-extra.yaml")).unwrap();

    std::fs::write(&high, &original).unwrap();
    let s = sys.wait_for(30, "errors cleared", |s| {
        s["errors"].as_array().is_some_and(|e| e.is_empty()) && ready(s)
    });
    assert_eq!(s["epoch"], 1);
    let more = write(&sys.router(), "after", 10);
    read_back(&sys.router(), &more);
}

#[test]
fn ctrl_c_leaves_no_child_and_a_restart_resumes_every_write() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "durable", 50);
    let pids = sys.child_pids();
    assert_eq!(pids.len(), 6 * 2 + 2, "6 nodes, 6 redis servers, 2 routers");
    assert_eq!(sys.stop(Signal::SIGINT), Some(0));
    for p in &pids {
        assert!(!alive(*p), "child {p} outlived the operator");
    }
    assert!(!sys.data.join("children.json").exists());

    let before = std::fs::read_to_string(sys.data.join("state.json")).unwrap();
    sys.start();
    let s = sys.wait_ready();
    assert_eq!(s["epoch"], 1, "same table, same epoch");
    read_back(&sys.router(), &files);
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(sys.data.join("state.json")).unwrap())
            .unwrap();
    let before: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["nodes"], after["nodes"], "every node kept its ports");
}

#[test]
fn a_restart_after_the_operator_was_killed_reaps_its_orphans() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "orphans", 20);
    let orphans = sys.child_pids();
    sys.stop(Signal::SIGKILL);
    assert!(
        orphans.iter().any(|p| alive(*p)),
        "children outlive a SIGKILLed operator"
    );
    sys.start();
    sys.wait_ready();
    for p in &orphans {
        assert!(!alive(*p), "orphan {p} survived the restart");
    }
    read_back(&sys.router(), &files);
}
