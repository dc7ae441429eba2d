//! Child processes, supervised as a kubelet would: each child runs in its own process group,
//! its output goes to a log file, a crash restarts it with exponential backoff, and stopping
//! sends SIGTERM to the group, then SIGKILL after a grace period.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// First restart delay; doubled after each quick crash up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A child that ran this long before exiting restarts with [`MIN_BACKOFF`] again.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How to run one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// Name for logs (`fc-a-0`, `fc-a-0-redis`, `router-0`).
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// File that receives its stdout and stderr (appended).
    pub log: PathBuf,
    /// A hash of configuration the child reads from files (e.g. `redis.conf`), so that a
    /// changed file counts as a changed spec.
    pub config_hash: u64,
}

/// A running supervisor of one child.
#[derive(Debug)]
pub struct Supervised {
    /// What it runs.
    pub spec: ChildSpec,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Start supervising `spec` (the first start happens at once).
    pub fn start(spec: ChildSpec) -> Supervised {
        let pid = Arc::new(AtomicU32::new(0));
        let restarts = Arc::new(AtomicU32::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            spec.clone(),
            pid.clone(),
            restarts.clone(),
            stop_rx,
        ));
        Supervised {
            spec,
            pid,
            restarts,
            stop,
            task,
        }
    }

    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }

    /// How many times the child was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Stop the child (SIGTERM, then SIGKILL after [`GRACE`]) and the supervisor.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn supervise(
    spec: ChildSpec,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        match spawn(&spec) {
            Err(e) => {
                tracing::error!(child = %spec.name, "cannot start {}: {e}", spec.program.display())
            }
            Ok(mut child) => {
                let id = child.id().unwrap_or(0);
                pid.store(id, Ordering::SeqCst);
                // Recorded at once, beside its log: an operator killed before it next writes
                // `children.json` must not leave an unknown child holding a port.
                let _ = std::fs::write(pid_file(&spec), id.to_string());
                tracing::debug!(child = %spec.name, pid = id, "started");
                tokio::select! {
                    status = child.wait() => {
                        pid.store(0, Ordering::SeqCst);
                        tracing::warn!(child = %spec.name, pid = id, ?status, "exited; restarting in {backoff:?}");
                    }
                    _ = stop.changed() => {
                        terminate(&spec.name, id, &mut child).await;
                        pid.store(0, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarts.fetch_add(1, Ordering::SeqCst);
    }
}

/// Where a child's pid is recorded while it runs: beside its log (`node.log` → `node.pid`).
pub fn pid_file(spec: &ChildSpec) -> PathBuf {
    spec.log.with_extension("pid")
}

/// How deep under the data folder child logs (and pid files) live:
/// `clusters/<fc>/<node>/node.log`.
const PID_FILE_DEPTH: usize = 3;

/// Pids recorded by [`pid_file`] in the folders under `root` (down to [`PID_FILE_DEPTH`]), for a
/// new operator to kill what an earlier one left behind.
pub fn recorded_pids(root: &std::path::Path) -> Vec<u32> {
    let mut pids = vec![];
    let mut dirs = vec![root.to_path_buf()];
    for _depth in 0..=PID_FILE_DEPTH {
        let mut next = vec![];
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    next.push(path);
                } else if path.extension().is_some_and(|e| e == "pid") {
                    if let Some(pid) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                    {
                        pids.push(pid);
                    }
                }
            }
        }
        dirs = next;
    }
    pids
}

fn spawn(spec: &ChildSpec) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let err = log.try_clone()?;
    Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// SIGTERM the child's group, wait up to [`GRACE`], then SIGKILL it.
async fn terminate(name: &str, id: u32, child: &mut tokio::process::Child) {
    if id != 0 {
        let _ = killpg(Pid::from_raw(id as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        tracing::warn!(child = %name, "did not stop within {GRACE:?}; killing");
        if id != 0 {
            let _ = killpg(Pid::from_raw(id as i32), Signal::SIGKILL);
        }
        let _ = child.wait().await;
    }
    tracing::debug!(child = %name, "stopped");
}

/// Kill a process group left behind by an earlier operator that died without cleaning up, if
/// `pid` still runs one of `programs`.
pub fn kill_stray(pid: u32, programs: &[&str]) -> bool {
    // argv[0], not /proc/PID/exe: Debian's redis-server is a link to redis-check-rdb.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(argv0);
    let name = name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or_default();
    if !programs.contains(&name) {
        return false;
    }
    tracing::warn!(pid, program = %name, "killing a child left behind by an earlier run");
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    true
}

/// Wait until something accepts TCP connections on `addr`, or `timeout` passes.
pub async fn wait_listening(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod pid_tests {
    use super::*;

    #[test]
    fn pid_files_are_found_where_child_logs_live() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("clusters/fc-a/fc-a-0");
        let router = dir.path().join("routers/router-1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::create_dir_all(&router).unwrap();
        std::fs::write(node.join("node.pid"), "41").unwrap();
        std::fs::write(node.join("redis.pid"), "42\n").unwrap();
        std::fs::write(router.join("router.pid"), "43").unwrap();
        std::fs::write(router.join("other.pid"), "not a pid").unwrap();
        let mut pids = recorded_pids(dir.path());
        pids.sort_unstable();
        assert_eq!(pids, vec![41, 42, 43]);
    }
}
