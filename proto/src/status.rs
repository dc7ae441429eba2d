//! What a node reports about itself (`NODE.STATUS`), shared by the node, the operator and the
//! CLI so all three read the same JSON.

use serde::{Deserialize, Serialize};

/// A node's role in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Assigns seqs and takes writes.
    Leader,
    /// Applies the leader's log; serves reads when in sync.
    Follower,
    /// Discarding its data and copying a snapshot.
    Resyncing,
    /// Not yet told its role (fresh node).
    Idle,
}

/// One follower as seen by its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowerView {
    /// The follower's id.
    pub id: String,
    /// The highest seq it has confirmed applying.
    pub acked_seq: u64,
    /// Milliseconds since it last fetched.
    pub last_seen_ms: u64,
    /// A learner (never counted towards the quorum).
    #[serde(default)]
    pub learner: bool,
}

/// The reply of `NODE.STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's id (stable across restarts).
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The highest epoch it has seen.
    pub epoch: u64,
    /// The seq of the last change applied to its store.
    pub applied_seq: u64,
    /// The epoch of the log entry at `applied_seq`: with it, `(last_epoch, applied_seq)` orders
    /// logs by how up to date they are (the operator promotes the highest).
    #[serde(default)]
    pub last_epoch: u64,
    /// On a leader: the highest seq acknowledged to clients. On a follower: the last value the
    /// leader told it.
    pub committed_seq: u64,
    /// The leader it follows (followers), or its own address (leaders).
    pub leader: Option<String>,
    /// Whether it may serve reads: a leader always; a follower when it is fetching live and
    /// close to the leader.
    pub in_sync: bool,
    /// Oldest seq still in its replication log (0 when the log is empty).
    pub log_first_seq: u64,
    /// Entries in its replication log.
    pub log_len: u64,
    /// Full resyncs this process has completed.
    pub full_resyncs: u64,
    /// The followers a leader knows about.
    #[serde(default)]
    pub followers: Vec<FollowerView>,
    /// Whether it follows as a learner (copying a split's source without voting).
    #[serde(default)]
    pub learner: bool,
    /// A learner's snapshot spans (`start-end,...`; empty: every hash).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub learn_spans: String,
    /// The range-table epoch of what its cluster owns (0: no `NODE.OWN` yet, it owns every
    /// hash).
    #[serde(default)]
    pub own_epoch: u64,
    /// The owned hash ranges (`start-end,...`; empty: every hash).
    #[serde(default)]
    pub owned_ranges: String,
    /// The cluster the ownership record names (a learner's is its source's: it owns nothing).
    #[serde(default)]
    pub own_cluster: String,
    /// The table epoch whose foreign keys this replica has finished deleting (0: none).
    #[serde(default)]
    pub cleaned_epoch: u64,
}
