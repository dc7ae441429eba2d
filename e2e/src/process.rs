//! Child processes: Redis servers, nodes and routers, each killed when dropped.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::ports::free_port;

/// How long one request of a harness client may take (a node or router that hangs fails the
/// test with [`cleave_proto::Error::Timeout`] instead of hanging it): generous, for a loaded
/// 2-core machine.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `NODE.STATUS` probe may take before the node counts as not answering (a
/// stopped process still accepts connections, then never replies).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The folder holding the workspace's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, with a clear message if it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (make test does) first",
        path.display()
    );
    path
}

/// Poll `cond` every 20 ms until it is true, or panic after `timeout` saying `what`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process that is killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let err = std::fs::File::create(log).expect("create log file");
        cmd.stderr(err).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("signal {sig} to {}: {e}", self.name));
    }

    /// `SIGSTOP`, and wait (bounded) until every thread of the process is stopped: the signal
    /// is delivered asynchronously, and a thread still running could answer one more request.
    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
        let pid = self.pid();
        let stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the command name, which is in parentheses.
                let state = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next());
                matches!(state, Some('T' | 't'))
            })
        };
        let start = Instant::now();
        while !stopped() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} did not stop within 10 s of SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Resident set size now, from /proc (bytes).
    pub fn rss(&self) -> u64 {
        read_status_kb(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident set size, from /proc (bytes).
    pub fn peak_rss(&self) -> u64 {
        read_status_kb(self.pid(), "VmHWM:") * 1024
    }
}

fn read_status_kb(pid: Pid, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            // A stopped process ignores SIGKILL until continued on some kernels: continue first.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill9();
    }
}

/// A `redis-server` with AOF persistence in its own folder.
#[derive(Debug)]
pub struct RedisProc {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl RedisProc {
    /// Start one in `dir` on a free port and wait until it answers.
    pub async fn start(dir: &Path) -> RedisProc {
        Self::start_on(dir, free_port()).await
    }

    /// Start (or restart) one on a given port.
    pub async fn start_on(dir: &Path, port: u16) -> RedisProc {
        std::fs::create_dir_all(dir).expect("redis dir");
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args([
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null());
        let proc = Proc::spawn(&format!("redis:{port}"), cmd, &dir.join("redis.stderr"));
        let r = RedisProc {
            proc,
            port,
            dir: dir.to_path_buf(),
        };
        let url = r.url();
        wait_until(
            Duration::from_secs(10),
            &format!("redis on {port} answers"),
            || {
                let url = url.clone();
                async move { ping_redis(&url).await }
            },
        )
        .await;
        r
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copy its data folder (the AOF) to `to`, as a host crash would find it a moment later.
    pub fn copy_data(&self, to: &Path) {
        copy_dir(&self.dir, to);
    }

    /// Kill it and restart it from a copy made by [`RedisProc::copy_data`]: a host crash that
    /// lost every write after the copy.
    pub async fn restart_from(&mut self, copy: &Path) {
        self.proc.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
        copy_dir(copy, &self.dir);
        *self = RedisProc::start_on(&self.dir.clone(), self.port).await;
    }

    /// Restart after a kill, same port and folder (AOF is replayed).
    pub async fn restart(&mut self) {
        self.proc.kill9();
        *self = RedisProc::start_on(&self.dir.clone(), self.port).await;
    }
}

/// Copy a folder tree (files and sub-folders).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

async fn ping_redis(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("redis://") else {
        return false;
    };
    let Ok(mut c) = cleave_proto::Client::connect(addr).await else {
        return false;
    };
    c.ping().await.is_ok()
}

/// A `cleave-node` process.
#[derive(Debug)]
pub struct NodeProc {
    /// The process.
    pub proc: Proc,
    /// Its client address.
    pub addr: String,
    /// Its admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
    args: Vec<String>,
    log: PathBuf,
}

impl NodeProc {
    /// Start a node with extra flags; waits for its "listening" line.
    pub fn start(addr: &str, redis_url: &str, extra: &[String], log: &Path) -> NodeProc {
        let mut args = vec![
            "--listen".to_string(),
            addr.to_string(),
            "--redis".into(),
            redis_url.into(),
        ];
        args.extend_from_slice(extra);
        let admin = with_admin(&mut args);
        let proc = spawn_listening("cleave-node", &args, log);
        NodeProc {
            proc,
            addr: addr.to_string(),
            admin,
            args,
            log: log.to_path_buf(),
        }
    }

    /// Restart with the same flags (after a kill).
    pub fn restart(&mut self) {
        self.proc.kill9();
        self.proc = spawn_listening("cleave-node", &self.args, &self.log);
    }

    /// A client connected to it, every request bounded by [`CLIENT_TIMEOUT`].
    pub async fn client(&self) -> cleave_proto::Client {
        cleave_proto::Client::connect_timeout(&self.addr, CLIENT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("connect to node {}: {e}", self.addr))
    }

    /// The node's status, or `None` if it does not answer within `timeout` (polling).
    pub async fn try_status_within(
        &self,
        timeout: Duration,
    ) -> Option<cleave_proto::status::NodeStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.status().await {
                return Some(st);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's status, waiting (bounded, polling) until it answers.
    pub async fn status_within(&self, timeout: Duration) -> cleave_proto::status::NodeStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.status().await {
                return st;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} did not answer NODE.STATUS within {timeout:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the node writes its log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its `NODE.STATUS`, or `None` if it does not answer within [`STATUS_TIMEOUT`].
    pub async fn status(&self) -> Option<cleave_proto::status::NodeStatus> {
        let mut c = cleave_proto::Client::connect_timeout(&self.addr, STATUS_TIMEOUT)
            .await
            .ok()?;
        c.node_status().await.ok()
    }
}

/// The `--admin-listen` address in `args`, adding one on a free port when there is none.
fn with_admin(args: &mut Vec<String>) -> String {
    if let Some(i) = args.iter().position(|a| a == "--admin-listen") {
        return args.get(i + 1).cloned().unwrap_or_default();
    }
    let admin = format!("127.0.0.1:{}", free_port());
    args.extend(["--admin-listen".to_string(), admin.clone()]);
    admin
}

/// Spawn a Cleave binary and wait (bounded) for its "listening on" line.
fn spawn_listening(bin: &str, args: &[String], log: &Path) -> Proc {
    let mut cmd = Command::new(binary(bin));
    cmd.args(args)
        .stdout(Stdio::piped())
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(bin, cmd, log);
    let stdout = proc
        .child
        .as_mut()
        .expect("child")
        .stdout
        .take()
        .expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line.contains("listening on") => proc,
        other => panic!(
            "{bin} {args:?} did not start ({other:?}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// A `cleave-router` process.
#[derive(Debug)]
pub struct RouterProc {
    /// The process.
    pub proc: Proc,
    /// Its client address.
    pub addr: String,
    /// Its admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
}

impl RouterProc {
    /// Start a router on a free port with a table file.
    pub fn start(table: &Path, extra: &[String], log: &Path) -> RouterProc {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--listen".to_string(),
            addr.clone(),
            "--table".into(),
            table.display().to_string(),
        ];
        args.extend_from_slice(extra);
        let admin = with_admin(&mut args);
        RouterProc {
            proc: spawn_listening("cleave-router", &args, log),
            addr,
            admin,
        }
    }

    /// A client connected to it, every request bounded by [`CLIENT_TIMEOUT`].
    pub async fn client(&self) -> cleave_proto::Client {
        cleave_proto::Client::connect_timeout(&self.addr, CLIENT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("connect to router {}: {e}", self.addr))
    }
}
