//! The node's configuration: flags and env (clap), optionally a YAML file (the ConfigMap on
//! Kubernetes). Resolved once at start and passed down; nothing else reads the environment.

use crate::error::{Error, Result};
use clap::Parser;
use cleave_proto::auth::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Command-line flags and environment of `cleave-node`. Every value may also come from
/// `--config`; a flag wins over the file, the file over the default.
#[derive(Debug, Clone, Parser, Default)]
#[command(name = "cleave-node", version, about = "Cleave storage node")]
pub struct Args {
    /// YAML file with any of the settings below (kebab-case keys).
    #[arg(long, env = "CLEAVE_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on for clients, routers and peers (port 0 picks a free port).
    #[arg(long, env = "CLEAVE_NODE_LISTEN")]
    pub listen: Option<String>,
    /// Address of the admin HTTP server (`/metrics`, `/healthz`, `/readyz`), e.g.
    /// `0.0.0.0:9121`; port 0 picks a free port (printed as `cleave-node admin on ADDR`).
    /// Off when unset.
    #[arg(long, env = "CLEAVE_NODE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Address others use to reach this node (defaults to the bound address).
    #[arg(long, env = "CLEAVE_NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Stable id of this node (defaults to the advertise address).
    #[arg(long, env = "CLEAVE_NODE_ID")]
    pub id: Option<String>,
    /// The FileCluster this node belongs to: it acts only on ownership records (`NODE.OWN`) of
    /// this cluster (a split's new cluster copies its source's records). Empty by default.
    #[arg(long, env = "CLEAVE_NODE_CLUSTER")]
    pub cluster: Option<String>,
    /// URL of this node's own Redis server.
    #[arg(long, env = "CLEAVE_NODE_REDIS")]
    pub redis: Option<String>,
    /// Entries kept in the replication log for followers that fall behind.
    #[arg(long, env = "CLEAVE_NODE_LOG_CAPACITY")]
    pub log_capacity: Option<u64>,
    /// Upper bound on the replication log's size in bytes.
    #[arg(long, env = "CLEAVE_NODE_LOG_MAX_BYTES")]
    pub log_max_bytes: Option<u64>,
    /// Followers that must apply a write before the leader acknowledges it.
    #[arg(long, env = "CLEAVE_NODE_MIN_IN_SYNC")]
    pub min_in_sync: Option<usize>,
    /// Nodes in the cluster, this one included (the operator sets it). Read leases need it, to
    /// know how many followers must back a lease; unset, every read takes a confirmation round.
    #[arg(long, env = "CLEAVE_NODE_REPLICAS")]
    pub replicas: Option<usize>,
    /// Milliseconds of silence from the leader after which a follower counts itself out of sync.
    #[arg(long, env = "CLEAVE_NODE_SYNC_TIMEOUT_MS")]
    pub sync_timeout_ms: Option<u64>,
    /// Milliseconds a leader serves reads after a confirmation round without another one (a
    /// read lease); 0 confirms every read with a round. Every node of a cluster must use the
    /// same value: followers hold back from a newer epoch for 1.1 times it (the clock-drift
    /// bound). Default: half of `sync-timeout-ms`.
    #[arg(long, env = "CLEAVE_NODE_READ_LEASE_MS")]
    pub read_lease_ms: Option<u64>,
    /// Milliseconds a write waits for `min-in-sync` followers before the client is told to retry.
    #[arg(long, env = "CLEAVE_NODE_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Bytes of client writes the node holds queued (read but not yet applied) across all
    /// connections; beyond it the node stops reading requests until there is room, so a flood
    /// of large writes slows its senders instead of growing memory. Default 256 MiB.
    #[arg(long, env = "CLEAVE_NODE_WRITE_QUEUE_BYTES")]
    pub write_queue_bytes: Option<u64>,
    /// Bytes of live entries a full resync may buffer while it copies the snapshot; beyond it
    /// the resync starts over (so a resync under a write load it cannot keep up with never
    /// fills the node's Redis). Default 1 GiB.
    #[arg(long, env = "CLEAVE_NODE_RESYNC_BUFFER_BYTES")]
    pub resync_buffer_bytes: Option<u64>,
    /// At start, become leader at `--epoch` (unless a higher epoch was seen).
    #[arg(long, env = "CLEAVE_NODE_LEAD")]
    pub lead: bool,
    /// At start, follow the leader at this address at `--epoch`.
    #[arg(long, env = "CLEAVE_NODE_FOLLOW")]
    pub follow: Option<String>,
    /// Epoch used with `--lead` / `--follow`.
    #[arg(long, env = "CLEAVE_NODE_EPOCH")]
    pub epoch: Option<u64>,
    /// File holding the installation's admin secret: role changes and replication
    /// (`NODE.LEAD`, `NODE.FOLLOW`, `NODE.FREEZE`, `REPL.*`, `SNAP.NEXT`) then need `AUTH`, and
    /// the node presents it to its leader. Unset: no authentication (development only).
    #[arg(long, env = "CLEAVE_NODE_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
}

/// The YAML file's shape: the same settings as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    advertise: Option<String>,
    id: Option<String>,
    cluster: Option<String>,
    redis: Option<String>,
    log_capacity: Option<u64>,
    log_max_bytes: Option<u64>,
    min_in_sync: Option<usize>,
    replicas: Option<usize>,
    sync_timeout_ms: Option<u64>,
    read_lease_ms: Option<u64>,
    write_timeout_ms: Option<u64>,
    write_queue_bytes: Option<u64>,
    resync_buffer_bytes: Option<u64>,
    lead: Option<bool>,
    follow: Option<String>,
    epoch: Option<u64>,
    auth_file: Option<PathBuf>,
}

/// How the node starts, when told by flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRole {
    /// Keep whatever role was persisted.
    Resume,
    /// Become leader.
    Lead,
    /// Follow this address.
    Follow(String),
}

/// The smallest write queue or resync buffer accepted (a write larger than the queue takes all
/// of it).
pub const MIN_BUFFER_BYTES: usize = 1024 * 1024;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: String,
    /// Admin HTTP address (None: no admin server).
    pub admin_listen: Option<String>,
    /// Advertised address (None: use the bound address).
    pub advertise: Option<String>,
    /// Node id (None: use the advertised address).
    pub id: Option<String>,
    /// The FileCluster this node belongs to (empty: unnamed).
    pub cluster: String,
    /// Redis URL.
    pub redis: String,
    /// Log capacity in entries.
    pub log_capacity: u64,
    /// Log size cap in bytes.
    pub log_max_bytes: u64,
    /// The acknowledgement quorum, in followers.
    pub min_in_sync: usize,
    /// Nodes in the cluster, this one included (0: unknown, no read lease).
    pub replicas: usize,
    /// Silence after which a follower is out of sync.
    pub sync_timeout: Duration,
    /// How long a confirmation round lets the leader serve reads without another (0: none).
    pub read_lease: Duration,
    /// How long a write waits for its quorum.
    pub write_timeout: Duration,
    /// Bytes of writes queued across all connections before the node stops reading requests.
    pub write_queue_bytes: usize,
    /// Bytes a full resync may buffer before it starts over.
    pub resync_buffer_bytes: u64,
    /// Role at start.
    pub start_role: StartRole,
    /// Epoch for the start role.
    pub epoch: u64,
    /// The admin secret privileged commands need (`None`: no authentication).
    pub admin_secret: Option<Arc<Secret>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7100".into(),
            admin_listen: None,
            advertise: None,
            id: None,
            cluster: String::new(),
            redis: "redis://127.0.0.1:6379".into(),
            log_capacity: 10_000,
            log_max_bytes: 256 * 1024 * 1024,
            min_in_sync: 1,
            replicas: 0,
            sync_timeout: Duration::from_millis(2000),
            read_lease: Duration::from_millis(1000),
            write_timeout: Duration::from_millis(10_000),
            write_queue_bytes: 256 * 1024 * 1024,
            resync_buffer_bytes: 1024 * 1024 * 1024,
            start_role: StartRole::Resume,
            epoch: 1,
            admin_secret: None,
        }
    }
}

impl Config {
    /// Resolve flags over the optional file over defaults.
    pub fn resolve(args: Args) -> Result<Config> {
        let file: FileConfig = match &args.config {
            Some(path) => cleave_proto::runtime::read_yaml_file(path).map_err(Error::Config)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let follow = args.follow.or(file.follow);
        let lead = args.lead || file.lead.unwrap_or(false);
        let start_role = match (lead, follow) {
            (true, Some(_)) => {
                return Err(Error::Config(
                    "--lead and --follow exclude each other".into(),
                ))
            }
            (true, None) => StartRole::Lead,
            (false, Some(addr)) => StartRole::Follow(addr),
            (false, None) => StartRole::Resume,
        };
        let sync_timeout = args
            .sync_timeout_ms
            .or(file.sync_timeout_ms)
            .map_or(d.sync_timeout, Duration::from_millis);
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            admin_listen: args.admin_listen.or(file.admin_listen),
            advertise: args.advertise.or(file.advertise),
            id: args.id.or(file.id),
            cluster: args.cluster.or(file.cluster).unwrap_or_default(),
            redis: args.redis.or(file.redis).unwrap_or(d.redis),
            log_capacity: args
                .log_capacity
                .or(file.log_capacity)
                .unwrap_or(d.log_capacity),
            log_max_bytes: args
                .log_max_bytes
                .or(file.log_max_bytes)
                .unwrap_or(d.log_max_bytes),
            min_in_sync: args
                .min_in_sync
                .or(file.min_in_sync)
                .unwrap_or(d.min_in_sync),
            replicas: args.replicas.or(file.replicas).unwrap_or(d.replicas),
            sync_timeout,
            read_lease: args
                .read_lease_ms
                .or(file.read_lease_ms)
                .map_or(sync_timeout / 2, Duration::from_millis),
            write_timeout: args
                .write_timeout_ms
                .or(file.write_timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.write_timeout),
            write_queue_bytes: args
                .write_queue_bytes
                .or(file.write_queue_bytes)
                .map_or(d.write_queue_bytes, |b| b.min(u32::MAX as u64) as usize),
            resync_buffer_bytes: args
                .resync_buffer_bytes
                .or(file.resync_buffer_bytes)
                .unwrap_or(d.resync_buffer_bytes),
            start_role,
            epoch: args.epoch.or(file.epoch).unwrap_or(d.epoch),
            admin_secret: match args.auth_file.or(file.auth_file) {
                None => None,
                Some(path) => Some(Arc::new(
                    Secret::load(&path).map_err(|e| Error::Config(e.to_string()))?,
                )),
            },
        };
        if config.log_capacity == 0 {
            return Err(Error::Config("log-capacity must be at least 1".into()));
        }
        for (name, bytes) in [
            ("write-queue-bytes", config.write_queue_bytes as u64),
            ("resync-buffer-bytes", config.resync_buffer_bytes),
        ] {
            if bytes < MIN_BUFFER_BYTES as u64 {
                return Err(Error::Config(format!(
                    "{name} must be at least {MIN_BUFFER_BYTES} (1 MiB)"
                )));
            }
        }
        if config.sync_timeout < Duration::from_millis(100) {
            return Err(Error::Config("sync-timeout-ms must be at least 100".into()));
        }
        if config.replicas > 0 && config.min_in_sync >= config.replicas {
            return Err(Error::Config(
                "min-in-sync counts followers: it must be smaller than replicas".into(),
            ));
        }
        if config.read_lease > config.sync_timeout * 10 {
            return Err(Error::Config(
                "read-lease-ms must be at most ten times sync-timeout-ms".into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], file: Option<&str>) -> Result<Config> {
        let mut argv = vec!["cleave-node"];
        argv.extend_from_slice(args);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.yaml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.push("--config");
            argv.push(path.to_str().unwrap());
        }
        Config::resolve(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn flags_win_over_file_over_defaults() {
        let c = resolve(
            &["--min-in-sync", "2"],
            Some("min-in-sync: 0\nlog-capacity: 50\n"),
        )
        .unwrap();
        assert_eq!(c.min_in_sync, 2);
        assert_eq!(c.log_capacity, 50);
        assert_eq!(c.sync_timeout, Duration::from_millis(2000));
        assert_eq!(c.start_role, StartRole::Resume);
        assert_eq!(c.replicas, 0, "unknown unless the operator says");
        assert_eq!(
            c.read_lease,
            Duration::from_millis(1000),
            "half of sync-timeout"
        );
        let c = resolve(&["--sync-timeout-ms", "600"], Some("replicas: 3\n")).unwrap();
        assert_eq!((c.replicas, c.read_lease), (3, Duration::from_millis(300)));
        let c = resolve(&["--read-lease-ms", "0"], None).unwrap();
        assert!(c.read_lease.is_zero());
    }

    #[test]
    fn a_lease_or_a_size_that_cannot_hold_is_refused() {
        let e = resolve(&["--min-in-sync", "3", "--replicas", "3"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("smaller than replicas"), "{e}");
        let e = resolve(
            &["--sync-timeout-ms", "100", "--read-lease-ms", "5000"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("read-lease-ms"), "{e}");
    }

    #[test]
    fn bad_files_and_values_are_clear_errors() {
        let e = resolve(&[], Some("min-in-sync: [1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.yaml"), "{e}");
        let e = resolve(&[], Some("colour: blue\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = resolve(&["--log-capacity", "0"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("log-capacity"), "{e}");
        let e = resolve(&["--lead", "--follow", "x:1"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exclude"), "{e}");
        let e = resolve(&["--write-queue-bytes", "1000"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("write-queue-bytes must be at least"), "{e}");
        let e = resolve(&[], Some("write-queue-bytes: -5\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.yaml"), "{e}");
        let e = resolve(&["--resync-buffer-bytes", "10"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("resync-buffer-bytes must be at least"), "{e}");
        let c = resolve(&[], Some("write-queue-bytes: 8388608\n")).unwrap();
        assert_eq!(c.write_queue_bytes, 8 * 1024 * 1024);
    }
}
