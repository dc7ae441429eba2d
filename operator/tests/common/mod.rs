//! The local-platform harness shared by the process-level operator tests: one operator run
//! over a manifests folder and a data folder, on its own block of ports, with bounded waits on
//! its `status.json`.

#![allow(dead_code)]

pub mod split;

use cleave_e2e::ports::PortBlock;
use cleave_proto::{Client, Selected};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one request through the router may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports one test reserves (the shared block size of [`cleave_e2e::ports`]): the first for
/// router-0, the rest for what the operator assigns from `--port-base` (the second router and 6
/// nodes x (node + Redis) = 13, with headroom).
pub const BLOCK: u16 = cleave_e2e::ports::BLOCK;

/// A block of [`BLOCK`] consecutive ports, claimed across processes for the life of the test
/// (see [`cleave_e2e::ports`]: below the ephemeral range, so that once released no outgoing
/// connection's source port lands on one, not even while the operator restarts and its nodes
/// rebind the same ports), and each also bound until the operator starts (so that a test can
/// keep one bound to make it "in use").
pub fn reserve_block() -> (PortBlock, Vec<TcpListener>) {
    /// Blocks found in use by something else after they were claimed: kept claimed (so this
    /// process never tries them again) for the life of the test process.
    static SKIPPED: Mutex<Vec<PortBlock>> = Mutex::new(Vec::new());
    const ATTEMPTS: usize = 20;
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let block = cleave_e2e::ports::reserve_block();
        match block
            .ports()
            .map(|p| TcpListener::bind(("127.0.0.1", p)).map_err(|e| format!("port {p}: {e}")))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(held) => return (block, held),
            // Something outside the claims (a process of another test that is still exiting,
            // a service of the machine) bound a port between the check and now: take another.
            Err(e) => {
                eprintln!("block {} is in use ({e}); trying another", block.base);
                last_error = e;
                SKIPPED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(block);
            }
        }
    }
    panic!("no free block of {BLOCK} ports after {ATTEMPTS} attempts; last: {last_error}");
}

/// Wait (bounded) until every port of `block` can be bound again, so that a block is released
/// only once the processes that used it are gone, not while they are still exiting.
fn wait_until_released(block: &PortBlock) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if block
            .ports()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "ports of block {} still in use 10 s after the test",
        block.base
    );
}

pub const OPERATOR: &str = env!("CARGO_BIN_EXE_cleave-operator");

pub fn bin_dir() -> PathBuf {
    Path::new(OPERATOR).parent().unwrap().to_path_buf()
}

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

/// Whether the router exists; `false` (skip) only while the router crate is not in the tree.
pub fn have_router() -> bool {
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
pub struct System {
    pub manifests: PathBuf,
    pub data: PathBuf,
    pub router_port: u16,
    pub port_base: u16,
    /// The reserved ports, held until the operator starts.
    pub reserved: Vec<TcpListener>,
    /// The claim on those ports, for the life of the test.
    pub ports: PortBlock,
    pub child: Option<Child>,
    pub _tmp: tempfile::TempDir,
}

impl System {
    /// A system on its own block of ports (see [`reserve_block`]).
    pub fn new() -> System {
        let tmp = tempfile::tempdir().unwrap();
        let manifests = tmp.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        for f in std::fs::read_dir(samples()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, manifests.join(f.file_name().unwrap())).unwrap();
        }
        let (ports, reserved) = reserve_block();
        let base = ports.base;
        System {
            manifests,
            data: tmp.path().join("data"),
            router_port: base,
            port_base: base + 1,
            reserved,
            ports,
            child: None,
            _tmp: tmp,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(OPERATOR);
        c.args(["local", "--resync-ms", "300", "--manifests"])
            .arg(&self.manifests)
            .arg("--data")
            .arg(&self.data)
            .args(["--router-port", &self.router_port.to_string()])
            .args(["--port-base", &self.port_base.to_string()])
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("CLEAVE_LOG", "info");
        c
    }

    pub fn start(&mut self) {
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

    pub fn status(&self) -> Value {
        std::fs::read(self.data.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Wait until `pred(status)` holds; panics with the last status after `secs`.
    pub fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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
    pub fn wait_ready(&self) -> Value {
        let pid = self.child.as_ref().map(|c| c.id() as u64);
        self.wait_for(
            90,
            "every cluster Ready and every router on the table",
            |s| s["operatorPid"].as_u64() == pid && ready(s),
        )
    }

    pub fn router(&self) -> String {
        format!("127.0.0.1:{}", self.router_port)
    }

    /// The second router's address, from the status.
    pub fn router2(&self) -> String {
        let s = self.status();
        s["routers"]
            .as_array()
            .and_then(|rs| rs.get(1))
            .and_then(|r| r["address"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no second router in the status: {s:#}"))
    }

    /// Set `spec.leader` of a sample FileCluster (`fc-a` is in `filecluster-a.yaml`): what a
    /// user does for a planned switchover.
    pub fn set_spec_leader(&self, cluster: &str, node: &str) {
        let file = self.manifests.join(format!(
            "filecluster-{}.yaml",
            cluster.trim_start_matches("fc-")
        ));
        let text = std::fs::read_to_string(&file).unwrap();
        let edited = text.replace(
            "  replicas: 3\n",
            &format!("  replicas: 3\n  leader: {node}\n"),
        );
        assert_ne!(text, edited, "{} has no `replicas: 3` line", file.display());
        std::fs::write(&file, edited).unwrap();
    }

    /// The operator's record of its child processes (`children.json`: name → pid).
    fn children(&self) -> Value {
        std::fs::read(self.data.join("children.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// The pid of child process `name` (`fc-a-0-redis`, `router-1`, ...), 0 when unknown.
    pub fn child_pid(&self, name: &str) -> u32 {
        self.children()[name].as_u64().unwrap_or(0) as u32
    }

    /// Every pid the status and children files name.
    pub fn child_pids(&self) -> Vec<u32> {
        self.children()
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
    pub fn stop(&mut self, sig: Signal) -> Option<i32> {
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
        self.reserved.clear();
        wait_until_released(&self.ports);
    }
}

/// Send `sig` to process `pid` (which must be known: not 0).
pub fn signal(pid: u32, sig: Signal) {
    assert!(pid > 0, "no pid to signal");
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

pub fn cond(obj: &Value, ty: &str) -> bool {
    obj["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

pub fn ready(s: &Value) -> bool {
    let epoch = s["epoch"].as_u64().unwrap_or(0);
    epoch > 0
        && s["clusters"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| cond(c, "Ready")))
        && s["routers"].as_array().is_some_and(|rs| {
            !rs.is_empty() && rs.iter().all(|r| r["epoch"].as_u64() == Some(epoch))
        })
}

pub fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client of the router whose every request is bounded by [`REQUEST_TIMEOUT`].
pub async fn client(addr: &str) -> Client {
    Client::connect_timeout(addr, REQUEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connecting to the router at {addr}: {e}"))
}

/// Write `n` files under several roots (so both clusters get some) through the router.
pub fn write(addr: &str, tag: &str, n: usize) -> Vec<(String, String)> {
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

pub fn read_back(addr: &str, files: &[(String, String)]) {
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

pub fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["nodes"].as_array().unwrap())
        .find(|n| n["name"] == name)
        .unwrap()
}
