//! `cleave-operator local`: the loop that drives the local platform until Ctrl-C / SIGTERM.

use super::state::{read_json, write_atomic, Layout};
use super::supervisor::kill_stray;
use super::{LocalConfig, LocalPlatform};
use crate::error::{Error, Result};
use crate::reconcile::{self, status::Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Flags of `cleave-operator local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Folder of FileCluster / HashRange YAML manifests (re-read when they change).
    #[arg(long, env = "CLEAVE_MANIFESTS", default_value = "config/samples")]
    pub manifests: PathBuf,
    /// Data folder: state, Redis data, logs. A stop and a start resume from it.
    #[arg(long, env = "CLEAVE_DATA", default_value = ".cleave")]
    pub data: PathBuf,
    /// Folder holding cleave-node and cleave-router (default: the operator's own folder).
    #[arg(long, env = "CLEAVE_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// The redis-server program (a name on PATH, or a path).
    #[arg(long, env = "CLEAVE_REDIS_SERVER", default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// Number of router replicas.
    #[arg(long, env = "CLEAVE_ROUTERS", default_value_t = 2)]
    pub routers: usize,
    /// Port of the first router (on 127.0.0.1).
    #[arg(long, env = "CLEAVE_ROUTER_PORT", default_value_t = 7000)]
    pub router_port: u16,
    /// Nodes, their Redis servers and the other routers get free ports from here upwards.
    #[arg(long, env = "CLEAVE_PORT_BASE", default_value_t = 7001)]
    pub port_base: u16,
    /// Address of the operator's admin HTTP server (`/metrics`, `/healthz`, `/readyz`), e.g.
    /// `127.0.0.1:9120`; port 0 picks a free port. Off when unset.
    #[arg(long, env = "CLEAVE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Milliseconds between reconcile passes (a manifest change starts one at once).
    #[arg(long, env = "CLEAVE_RESYNC_MS", default_value_t = 300)]
    pub resync_ms: u64,
}

/// What `DIR/status.json` holds: the report plus who wrote it and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFile {
    /// Pid of the operator that wrote it.
    pub operator_pid: u32,
    /// When (RFC 3339).
    pub updated_at: String,
    /// The data folder.
    pub data: String,
    /// Admin HTTP addresses (`/metrics`, `/healthz`, `/readyz`) of the operator, nodes and
    /// routers.
    #[serde(default)]
    pub admin: AdminAddresses,
    /// The report.
    #[serde(flatten)]
    pub report: Report,
}

/// Where each process of the local platform serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminAddresses {
    /// The operator (with `--admin-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// By node name.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
    /// By router name.
    #[serde(default)]
    pub routers: BTreeMap<String, String>,
}

fn find_program(p: &PathBuf) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.clone());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|c| c.is_file())
    })
}

fn absolute(p: &PathBuf) -> Result<PathBuf> {
    std::path::absolute(p).map_err(Error::io(p))
}

/// Take the data folder for this process, or say which operator has it.
/// The `namespace` label of the local platform's metrics.
pub const LOCAL_NAMESPACE: &str = "local";

/// How often reconcile passes run while a cluster is not ready.
const UNHEALTHY_PERIOD: Duration = Duration::from_millis(200);

fn lock(layout: &Layout) -> Result<()> {
    // The data folder is the local platform's epoch authority: one operator at a time, enforced
    // by the kernel (an flock dies with its process, so a killed operator never leaves it held).
    let path = layout.root.join("operator.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(guard) => {
            // Held for the life of the process.
            Box::leak(Box::new(guard));
        }
        Err((_, _)) => {
            let pid = std::fs::read_to_string(layout.pid_file())
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            return Err(Error::Locked {
                pid,
                dir: layout.root.clone(),
            });
        }
    }
    if let Ok(text) = std::fs::read_to_string(layout.pid_file()) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            let is_operator = std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|e| e.to_string_lossy().contains("cleave-operator"))
                .unwrap_or(false);
            if alive && is_operator && pid as u32 != std::process::id() {
                return Err(Error::Locked {
                    pid,
                    dir: layout.root.clone(),
                });
            }
        }
    }
    write_atomic(
        &layout.pid_file(),
        format!("{}\n", std::process::id()).as_bytes(),
    )
}

/// Run the local platform until Ctrl-C or SIGTERM, then stop every child.
pub async fn run(args: LocalArgs) -> Result<()> {
    let data = absolute(&args.data)?;
    let bin_dir = match &args.bin_dir {
        Some(d) => absolute(d)?,
        None => std::env::current_exe()
            .map_err(Error::io("current executable"))?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let redis_server = find_program(&args.redis_server).ok_or_else(|| Error::MissingBinary {
        name: args.redis_server.display().to_string(),
        dir: PathBuf::from("$PATH"),
    })?;
    if !args.manifests.is_dir() {
        return Err(Error::io(&args.manifests)(
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let layout = Layout { root: data.clone() };
    std::fs::create_dir_all(&data).map_err(Error::io(&data))?;
    lock(&layout)?;
    // Children an earlier operator left behind (it was killed with SIGKILL) would hold the ports.
    let recorded: BTreeMap<String, u32> = read_json(&layout.children())?;
    let mut strays: Vec<u32> = recorded.values().copied().collect();
    strays.extend(super::supervisor::recorded_pids(&data));
    strays.sort_unstable();
    strays.dedup();
    for pid in &strays {
        kill_stray(*pid, &["redis-server", "cleave-node", "cleave-router"]);
    }
    if !strays.is_empty() {
        // Give the killed children a moment to let go of their ports.
        let state: super::state::LocalState = read_json(&layout.state())?;
        let mut ports = state.ports();
        ports.insert(args.router_port);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && !ports.iter().all(|p| super::state::port_free(*p))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Nodes and routers refuse admin and replication commands without this credential; the
    // operator presents it on every connection it makes.
    let auth_file = layout.admin_secret();
    let secret = match crate::platform::secret::ensure(&auth_file) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(layout.pid_file());
            return Err(e);
        }
    };
    cleave_proto::auth::use_credential(Some(secret));
    let cfg = LocalConfig {
        auth_file: Some(auth_file),
        manifests: absolute(&args.manifests)?,
        data,
        bin_dir,
        redis_server,
        routers: args.routers.max(1),
        router_port: args.router_port,
        port_base: args.port_base,
    };
    let mut platform = match LocalPlatform::open(cfg.clone()) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(layout.pid_file());
            return Err(e);
        }
    };
    tracing::info!(manifests = %cfg.manifests.display(), data = %cfg.data.display(), "local platform starting");

    let metrics = crate::platform::kubernetes::metrics::Metrics::new();
    // The data folder's lock is this platform's Lease: held from here on.
    metrics
        .leader
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = &args.admin_listen {
        if let Some(admin) = metrics.take_admin() {
            let stopped = async {
                let _ = admin_stopped.await;
            };
            let admin_error = |e: cleave_admin::Error| Error::Process {
                what: "admin server".into(),
                message: e.to_string(),
            };
            let listener = cleave_admin::bind(addr).await.map_err(admin_error)?;
            let bound = cleave_admin::spawn(
                "cleave-operator",
                listener,
                std::sync::Arc::new(admin),
                stopped,
            )
            .map_err(admin_error)?;
            platform.set_operator_admin(bound.to_string());
        }
    }
    let mut term = signal(SignalKind::terminate()).map_err(Error::io("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::io("SIGINT handler"))?;
    let mut previous: Report = read_json::<Option<StatusFile>>(&layout.status())?
        .map(|s| s.report)
        .unwrap_or_default();
    let mut announced = false;
    let mut last_pass = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        // While a cluster is not ready (a leader lost, a node coming up) pass often, so a
        // failover is noticed within its timeout rather than the resync period.
        let period = if ready(&previous) {
            Duration::from_millis(args.resync_ms)
        } else {
            UNHEALTHY_PERIOD.min(Duration::from_millis(args.resync_ms))
        };
        let due = last_pass.elapsed() >= period || platform.manifests_changed();
        if due {
            last_pass = std::time::Instant::now();
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let running = metrics.pass();
            let pass = reconcile::reconcile(&mut platform, &previous, &now);
            let result = tokio::select! {
                r = pass => Some(r),
                _ = term.recv() => None,
                _ = int.recv() => None,
            };
            drop(running);
            match &result {
                Some(Ok(report)) => {
                    let outcome = if report.errors.is_empty() {
                        "ok"
                    } else {
                        "invalid"
                    };
                    metrics.reconciled(LOCAL_NAMESPACE, outcome, last_pass.elapsed());
                    metrics.observed(LOCAL_NAMESPACE, report);
                }
                Some(Err(_)) => metrics.reconciled(LOCAL_NAMESPACE, "error", last_pass.elapsed()),
                None => {}
            }
            match result {
                None => break,
                Some(Ok(report)) => {
                    if !announced && ready(&report) {
                        announced = true;
                        banner(&report, &layout);
                    }
                    previous = report;
                }
                Some(Err(e)) => tracing::error!("reconcile: {e}"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = stop_admin.send(());
    eprintln!("cleave-operator: stopping every child...");
    platform.shutdown().await;
    let _ = std::fs::remove_file(layout.children());
    let _ = std::fs::remove_file(layout.pid_file());
    eprintln!(
        "cleave-operator: stopped; data kept in {}",
        layout.root.display()
    );
    Ok(())
}

/// Every cluster Ready, a committed table, and every router on it.
pub fn ready(report: &Report) -> bool {
    report.epoch > 0
        && !report.clusters.is_empty()
        && report.clusters.iter().all(|c| {
            c.status
                .conditions
                .iter()
                .any(|k| k.type_ == "Ready" && k.is_true())
        })
        && report.routers.iter().all(|r| r.epoch == Some(report.epoch))
}

fn banner(report: &Report, layout: &Layout) {
    let routers: Vec<&str> = report.routers.iter().map(|r| r.address.as_str()).collect();
    let first = routers.first().copied().unwrap_or("?");
    let port = first.rsplit(':').next().unwrap_or("7000");
    println!(
        "\nCleave is up: {} FileCluster(s), range table epoch {}.\n\
         \n  routers:  {}\n  data:     {}\n\
         \nTry it (in another terminal, from the repository root):\n\
         \n  target/release/cleave put README.md /photos/readme.md\n  target/release/cleave get /photos/readme.md\n  target/release/cleave ls /photos\n  target/release/cleave status\n\
         \n  or with any Redis client:  redis-cli -p {port} INSERT /photos/hello.txt 'hello'\n\
         \nEdit the YAML in the manifests folder to change the system; Ctrl-C stops everything.\n",
        report.clusters.len(),
        report.epoch,
        routers.join(", "),
        layout.root.display(),
    );
}
