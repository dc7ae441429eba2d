//! A FileCluster made of real processes: N Redis servers and N nodes, node 0 leading at epoch 1.

use crate::process::{free_port, wait_until, NodeProc, RedisProc};
use cleave_proto::status::Role;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes (leader included).
    pub size: usize,
    /// Replication log capacity.
    pub log_capacity: u64,
    /// Acknowledgement quorum.
    pub min_in_sync: usize,
    /// Follower silence timeout.
    pub sync_timeout_ms: u64,
    /// How long a write waits for its quorum (the node's default when `None`).
    pub write_timeout_ms: Option<u64>,
    /// More flags for every node.
    pub extra_flags: Vec<String>,
    /// Start every node idle (no role, epoch 0), as a new cluster's nodes before the operator
    /// tells them what to do (e.g. to learn from a split's source).
    pub start_idle: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            size: 3,
            log_capacity: 10_000,
            min_in_sync: 1,
            sync_timeout_ms: 1000,
            write_timeout_ms: None,
            extra_flags: Vec::new(),
            start_idle: false,
        }
    }
}

/// A running cluster.
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// Redis servers, one per node.
    pub redis: Vec<RedisProc>,
    /// Nodes; index 0 started as leader.
    pub nodes: Vec<NodeProc>,
    /// Where everything lives.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Start a cluster in a fresh temporary folder.
    pub async fn start(name: &str, opts: ClusterOptions) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cleave-{name}-"))
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut c = Cluster::start_in(name, &dir, opts).await;
        c._tmp = Some(tmp);
        c
    }

    /// Start a cluster in `dir`.
    pub async fn start_in(name: &str, dir: &std::path::Path, opts: ClusterOptions) -> Cluster {
        let addrs: Vec<String> = (0..opts.size)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut redis = vec![];
        let mut nodes = vec![];
        for (i, addr) in addrs.iter().enumerate() {
            let node_dir = dir.join(format!("{name}-{i}"));
            let r = RedisProc::start(&node_dir.join("redis")).await;
            let mut flags = vec![
                "--id".to_string(),
                format!("{name}-{i}"),
                "--cluster".into(),
                name.to_string(),
                "--log-capacity".into(),
                opts.log_capacity.to_string(),
                "--min-in-sync".into(),
                opts.min_in_sync.to_string(),
                "--replicas".into(),
                opts.size.to_string(),
                "--sync-timeout-ms".into(),
                opts.sync_timeout_ms.to_string(),
            ];
            if !opts.start_idle {
                flags.extend(["--epoch".to_string(), "1".into()]);
            }
            if let Some(ms) = opts.write_timeout_ms {
                flags.extend(["--write-timeout-ms".to_string(), ms.to_string()]);
            }
            flags.extend(opts.extra_flags.iter().cloned());
            match (opts.start_idle, i) {
                (true, _) => {}
                (false, 0) => flags.push("--lead".into()),
                (false, _) => flags.extend(["--follow".to_string(), addrs[0].clone()]),
            }
            nodes.push(NodeProc::start(
                addr,
                &r.url(),
                &flags,
                &node_dir.join("node.log"),
            ));
            redis.push(r);
        }
        let c = Cluster {
            name: name.into(),
            redis,
            nodes,
            dir: dir.to_path_buf(),
            _tmp: None,
        };
        if !opts.start_idle {
            c.wait_in_sync(Duration::from_secs(20)).await;
        }
        c
    }

    /// The node addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Index of the node that reports itself leader, waiting (bounded) for one: a status
    /// request can time out on a busy machine, which is not the same as having no leader.
    pub async fn leader(&self) -> usize {
        match self.find_leader(LEADER_WAIT).await {
            Some(i) => i,
            None => panic!(
                "cluster {} has no leader after {LEADER_WAIT:?}: {}",
                self.name,
                self.describe().await
            ),
        }
    }

    /// The leader if one reports itself within `wait`; `None` otherwise.
    pub async fn find_leader(&self, wait: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.status().await.is_some_and(|s| s.role == Role::Leader) {
                    return Some(i);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader, or, when none reports itself (a leader whose Redis lost its last writes
    /// steps down and waits for a new epoch), a new one chosen as the operator would.
    pub async fn leader_or_elect(&self) -> usize {
        if let Some(i) = self.find_leader(LEADER_WAIT).await {
            return i;
        }
        eprintln!(
            "cluster {} has no leader; electing one as the operator would: {}",
            self.name,
            self.describe().await
        );
        self.elect().await
    }

    /// One line per node: role, epoch, applied seq, in sync (for failure messages).
    pub async fn describe(&self) -> String {
        let mut out = vec![];
        for (i, n) in self.nodes.iter().enumerate() {
            out.push(match n.status().await {
                Some(s) => format!(
                    "node {i}: {:?} epoch {} applied {} in_sync {}",
                    s.role, s.epoch, s.applied_seq, s.in_sync
                ),
                None => format!("node {i}: no answer"),
            });
        }
        out.join("; ")
    }

    /// Do what the operator does when a cluster has no leader (a restarted leader comes back
    /// idle): ask every node where its log ends, make the most up-to-date one (by last epoch,
    /// then seq; never a resyncing node) leader at a newer epoch, the others its followers
    /// first. Returns the new leader's index.
    pub async fn elect(&self) -> usize {
        // Every node that answers within a few seconds (a killed one does not).
        let mut statuses = vec![];
        for n in &self.nodes {
            statuses.push(n.try_status_within(Duration::from_secs(5)).await);
        }
        let answered: Vec<(usize, &cleave_proto::status::NodeStatus)> = statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect();
        let epoch = answered.iter().map(|(_, s)| s.epoch).max().unwrap_or(0) + 1;
        let best = answered
            .iter()
            .filter(|(_, s)| s.role != Role::Resyncing)
            .max_by_key(|(_, s)| (s.last_epoch, s.applied_seq))
            .map(|(i, _)| *i)
            .expect("a node that answers and is not resyncing");
        let leader = self.nodes[best].addr.clone();
        for (i, n) in self.nodes.iter().enumerate() {
            if i != best && statuses[i].is_some() {
                n.client()
                    .await
                    .follow(epoch, &leader)
                    .await
                    .unwrap_or_else(|e| panic!("{} follow {leader} at {epoch}: {e}", n.addr));
            }
        }
        self.nodes[best]
            .client()
            .await
            .lead(epoch)
            .await
            .unwrap_or_else(|e| panic!("{leader} lead at {epoch}: {e}"));
        best
    }

    /// Wait until every follower reports itself in sync.
    pub async fn wait_in_sync(&self, timeout: Duration) {
        wait_until(
            timeout,
            &format!("every node of {} in sync", self.name),
            || async {
                for n in &self.nodes {
                    if !n.status().await.is_some_and(|s| s.in_sync) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Wait until every node has applied as far as the leader, then return that seq.
    pub async fn wait_converged(&self, timeout: Duration) -> u64 {
        let leader = self.leader().await;
        let target = std::sync::atomic::AtomicU64::new(0);
        wait_until(
            timeout,
            &format!("every node of {} at the leader's seq", self.name),
            || async {
                let Some(l) = self.nodes[leader].status().await else {
                    return false;
                };
                let target_seq = l.applied_seq;
                target.store(target_seq, std::sync::atomic::Ordering::Relaxed);
                for n in &self.nodes {
                    if !n
                        .status()
                        .await
                        .is_some_and(|s| s.applied_seq == target_seq && s.in_sync)
                    {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        target.into_inner()
    }

    /// The data digest (key count, hash) of node `i`'s Redis.
    pub async fn digest(&self, i: usize) -> (u64, String) {
        self.digest_within(i, &[]).await
    }

    /// Key count and digest of node `i`'s data keys of the hashes in `spans` (empty: all),
    /// keys of the whole cluster (sessions, ownership) included.
    pub async fn digest_within(&self, i: usize, spans: &[(u32, u32)]) -> (u64, String) {
        let mut store = cleave_node::store::Store::connect(&self.redis[i].url(), 1, 1)
            .await
            .expect("store");
        store.data_digest_within(spans).await.expect("digest")
    }

    /// Assert every node holds exactly the leader's data.
    pub async fn assert_identical(&self) {
        let seq = self.wait_converged(Duration::from_secs(30)).await;
        let reference = self.digest(0).await;
        for i in 1..self.nodes.len() {
            assert_eq!(
                self.digest(i).await,
                reference,
                "node {i} of {} differs from node 0 at seq {seq}",
                self.name
            );
        }
    }
}

/// How long [`Cluster::leader`] waits for a node to report itself leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How many lines of each node's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

impl Drop for Cluster {
    /// When a test fails, print the end of every node's log and keep the folder: the logs
    /// are the only account of what the nodes did, and CI shows only what a test prints.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(n.log_path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- cluster {} node {i} ({}), last {} lines of {} ----\n{}",
                self.name,
                n.addr,
                tail.len(),
                n.log_path().display(),
                tail.join("\n")
            );
        }
        if let Some(tmp) = self._tmp.take() {
            eprintln!("kept the cluster's folder: {}", tmp.keep().display());
        }
    }
}
