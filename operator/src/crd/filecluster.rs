//! `FileCluster`: a leader and followers, each node a `cleave-node` with its own Redis.

// `printcolumn(type_ = ..)` repeats by design; clippy mistakes it for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::Condition;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A group of Cleave nodes holding the same data: one leader assigns a sequence number to
/// every change and replicates it to the followers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleave.dev",
    version = "v1alpha1",
    kind = "FileCluster",
    doc = "A Cleave storage cluster: one leader and followers, each node a cleave-node with its own Redis.",
    namespaced,
    status = "FileClusterStatus",
    shortname = "fc",
    category = "cleave",
    derive = "PartialEq",
    cel,
    validation = Rule::new("self.metadata.name.size() <= 52").message(
        "FileCluster names are at most 52 characters: the StatefulSet's pods carry a revision label of the name plus 11 characters, and labels are at most 63"
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
        "FileCluster names must be DNS-1035 labels (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, no dots): the name is also a Service's"
    ),
    validation = Rule::new("self.metadata.name != 'cleave-router'").message(
        "the name cleave-router is taken by the routers' Service"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.minInSync < self.replicas").message(
    "minInSync must be smaller than replicas: it counts followers, and the leader is one of the replicas"
))]
#[serde(rename_all = "camelCase")]
pub struct FileClusterSpec {
    /// Number of nodes (one leader, the rest followers).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 15))]
    pub replicas: i32,
    /// Followers that must have applied a write before the leader acknowledges it.
    #[serde(default = "default_min_in_sync")]
    #[schemars(range(min = 0, max = 14))]
    pub min_in_sync: i32,
    /// Length of the leader's replication log (entries). A follower that falls further behind
    /// than this copies a full snapshot instead of catching up from the log.
    #[serde(default = "default_log_capacity")]
    #[schemars(range(min = 1, max = 100000000))]
    pub log_capacity: i64,
    /// Milliseconds of silence after which a follower counts itself out of sync and asks the
    /// leader for what it missed (the node's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 600000))]
    pub sync_timeout_ms: Option<i64>,
    /// Milliseconds a leader may stay unreachable (gone, hung, cut off) before the operator
    /// promotes the most up-to-date follower (default 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 200, max = 600000))]
    pub failover_timeout_ms: Option<i64>,
    /// The node that should lead (e.g. `fc-a-2`), for a planned switchover: the operator
    /// pauses writes on the current leader, lets this node catch up, and hands it a new epoch.
    /// Unset: whichever node the operator elected keeps leading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Settings of each node's Redis server.
    #[serde(default)]
    pub redis: RedisSpec,
    /// Persistent storage of each node's Redis (Kubernetes only). Immutable: volume claims
    /// cannot be changed in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable"))]
    pub storage: Option<StorageSpec>,
    /// CPU and memory for each node's `node` container (Kubernetes only); Redis has its own,
    /// `redis.resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container images, when not the operator's defaults (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
}

/// Longest FileCluster name: a StatefulSet's pods carry `controller-revision-hash` =
/// `<name>-<10 characters>`, and label values are at most 63 characters.
pub const MAX_NAME_LEN: usize = 52;
/// Names a FileCluster cannot take: its headless Service would collide with these.
pub const RESERVED_NAMES: &[&str] = &["cleave-router"];

/// Why `name` cannot name a FileCluster (the same rules as the CRD's CEL rules on
/// `metadata.name`); `None` when it can.
pub fn name_problem(name: &str) -> Option<String> {
    let dns_label = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if name.len() > MAX_NAME_LEN {
        Some(format!(
            "FileCluster name {name:?} is {} characters; at most {MAX_NAME_LEN} (the StatefulSet's revision label adds 11 to it, and labels are at most 63)",
            name.len()
        ))
    } else if !dns_label {
        Some(format!(
            "FileCluster name {name:?} is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, no dots): the name is also a Service's"
        ))
    } else if RESERVED_NAMES.contains(&name) {
        Some(format!(
            "FileCluster name {name:?} is taken by the routers' Service"
        ))
    } else {
        None
    }
}

/// The failover timeout when the spec leaves it unset.
pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 1500;

impl FileClusterSpec {
    /// How long the leader may stay unreachable before a failover.
    pub fn failover_timeout_ms(&self) -> u64 {
        self.failover_timeout_ms
            .map_or(DEFAULT_FAILOVER_TIMEOUT_MS, |ms| ms.max(0) as u64)
    }
}

fn default_replicas() -> i32 {
    3
}
fn default_min_in_sync() -> i32 {
    1
}
fn default_log_capacity() -> i64 {
    10_000
}

/// When Redis flushes its append-only file to disk.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    /// Once a second: at most a second of writes lost on a machine crash (Redis's default).
    #[default]
    Everysec,
    /// Before every reply: nothing lost, slower.
    Always,
    /// When the operating system decides.
    No,
}

impl AppendFsync {
    /// The value as written in `redis.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Everysec => "everysec",
            AppendFsync::Always => "always",
            AppendFsync::No => "no",
        }
    }
}

/// Settings of each node's Redis server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// AOF fsync policy: `everysec` (default), `always` or `no`.
    #[serde(default)]
    pub appendfsync: AppendFsync,
    /// Redis `maxmemory` (e.g. `2gb`); unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory: Option<String>,
    /// CPU and memory for each node's `redis` container (Kubernetes only): it holds the data,
    /// so its memory limit should exceed `maxmemory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Persistent storage of each node (one volume claim per node).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each node's volume (e.g. `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Storage class of the volumes; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Container images.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image of the `cleave-node` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Image of the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// What the operator observed about a FileCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileClusterStatus {
    /// Name of the node that leads the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The cluster's epoch: it grows by one every time the leader changes.
    #[serde(default)]
    pub epoch: u64,
    /// Every node, in order.
    #[serde(default)]
    pub nodes: Vec<NodeState>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last change of leader (failover or switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<Failover>,
    /// Leader changes since the operator started managing the cluster.
    #[serde(default)]
    pub failovers: u64,
}

/// A change of leader.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// When the operator decided it (RFC 3339).
    pub at: String,
    /// The node that led before.
    pub from: String,
    /// The node that leads now.
    pub to: String,
    /// The epoch the new leader leads.
    pub epoch: u64,
    /// Why: the old leader stopped answering, restarted, stepped down, or a switchover.
    pub reason: String,
    /// Milliseconds from the first sign of trouble (or the switchover's start) until the new
    /// leader was seen leading; unset while it is not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// One node as the operator last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// The node's name (`<cluster>-<index>`), also its id.
    pub name: String,
    /// `leader`, `follower`, `resyncing`, `idle` or `down`.
    pub role: String,
    /// Client address (`host:port`) of the node.
    pub address: String,
    /// Address of the node's own Redis.
    pub redis: String,
    /// Process id (local platform only).
    pub pid: Option<u32>,
    /// The sequence number of the last change the node applied.
    pub applied_seq: u64,
    /// Whether the node may serve reads.
    pub in_sync: bool,
}

impl FileClusterSpec {
    /// The spec with every default filled in (what `kubectl apply` of `{}` yields).
    pub fn defaults() -> FileClusterSpec {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}
