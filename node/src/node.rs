//! The node's shared state: role and epoch (fencing), applied and committed seqs, and the
//! leader's view of its followers. One `Node` per process, shared by every connection and task.

use crate::config::Config;
use crate::leader::cache::LogCache;
use crate::leader::commit::WriteRequest;
use crate::store::{SavedRole, Store};
use cleave_proto::status::{FollowerView, NodeStatus, Role};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Role, epoch and leader: changed only together, and only to a higher or equal epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    /// Current role.
    pub role: Role,
    /// Highest epoch seen.
    pub epoch: u64,
    /// The leader followed (followers) or own address (leader).
    pub leader: Option<String>,
    /// Set when this node must discard its data before following (e.g. a deposed leader).
    pub needs_resync: bool,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone)]
pub struct FollowerState {
    /// Highest seq it confirmed applying.
    pub acked: u64,
    /// When it last fetched.
    pub last_seen: Instant,
}

/// The shared state of a node.
pub struct Node {
    /// Resolved configuration.
    pub config: Config,
    /// This node's id.
    pub id: String,
    /// The address peers use.
    pub address: String,
    /// The Redis store (clone it to use it).
    pub store: Store,
    /// Role, observable for changes.
    pub role: watch::Sender<RoleState>,
    /// Seq of the last change applied to the store.
    pub applied: watch::Sender<u64>,
    /// Leader: highest seq acknowledged (quorum reached). Follower: last value heard.
    pub committed: watch::Sender<u64>,
    /// Leader: followers by id.
    pub followers: Mutex<HashMap<String, FollowerState>>,
    /// Leader: recent log entries in memory.
    pub cache: Mutex<LogCache>,
    /// Leader: the group-commit queue.
    pub writes: mpsc::UnboundedSender<WriteRequest>,
    /// Follower: last successful fetch from the leader.
    pub last_contact: Mutex<Option<Instant>>,
    /// Full resyncs completed by this process.
    pub full_resyncs: AtomicU64,
}

impl Node {
    /// Assemble the state (tasks are started by [`crate::run`]).
    pub fn new(
        config: Config,
        id: String,
        address: String,
        store: Store,
        role: RoleState,
        applied: u64,
        writes: mpsc::UnboundedSender<WriteRequest>,
    ) -> Node {
        let cache = LogCache::new(config.log_capacity as usize);
        Node {
            config,
            id,
            address,
            store,
            role: watch::channel(role).0,
            applied: watch::channel(applied).0,
            committed: watch::channel(applied).0,
            followers: Mutex::new(HashMap::new()),
            cache: Mutex::new(cache),
            writes,
            last_contact: Mutex::new(None),
            full_resyncs: AtomicU64::new(0),
        }
    }

    /// A copy of the current role state.
    pub fn role_state(&self) -> RoleState {
        self.role.borrow().clone()
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.role.borrow().role == Role::Leader
    }

    /// Whether a follower may serve reads: it hears from its leader and is not resyncing.
    pub fn follower_in_sync(&self) -> bool {
        let st = self.role.borrow();
        if st.role != Role::Follower {
            return false;
        }
        let contact = *self.last_contact.lock().expect("lock");
        contact.is_some_and(|t| t.elapsed() < self.config.sync_timeout)
    }

    /// Change role, persisting it first. Refuses to go back in epochs.
    pub async fn set_role(&self, next: RoleState) -> Result<(), cleave_proto::Reply> {
        let current = self.role_state();
        if next.epoch < current.epoch {
            return Err(cleave_proto::Reply::new(
                cleave_proto::ErrorCode::Stale,
                format!(
                    "epoch {} is older than this node's epoch {}",
                    next.epoch, current.epoch
                ),
            ));
        }
        let saved = SavedRole {
            epoch: next.epoch,
            role: match next.role {
                Role::Leader => "leader".into(),
                Role::Follower | Role::Resyncing => "follower".into(),
                Role::Idle => String::new(),
            },
            leader: next.leader.clone().unwrap_or_default(),
        };
        self.store
            .clone()
            .save_role(&saved)
            .await
            .map_err(|e| e.to_reply())?;
        if next.role == Role::Leader && current.role != Role::Leader {
            // A new leader has acknowledged nothing yet; it must not claim less than it has
            // applied, or a follower's read-index could miss a write acknowledged earlier.
            let applied = *self.applied.borrow();
            self.committed.send_modify(|c| *c = (*c).max(applied));
            self.followers.lock().expect("lock").clear();
            self.cache.lock().expect("lock").clear();
        }
        if next.epoch != current.epoch {
            self.followers.lock().expect("lock").clear();
        }
        self.role.send_replace(next);
        Ok(())
    }

    /// Leader: record a follower's position and advance the commit index if the quorum moved.
    pub fn record_ack(&self, follower: &str, acked: u64) {
        let mut followers = self.followers.lock().expect("lock");
        followers.insert(
            follower.to_string(),
            FollowerState {
                acked,
                last_seen: Instant::now(),
            },
        );
        let k = self.config.min_in_sync;
        if k == 0 {
            return;
        }
        let mut acks: Vec<u64> = followers.values().map(|f| f.acked).collect();
        drop(followers);
        if acks.len() < k {
            return;
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let applied = *self.applied.borrow();
        self.raise_committed(acks[k - 1].min(applied));
    }

    /// Move the commit index forward to `seq` (never back), waking writers waiting on it.
    fn raise_committed(&self, seq: u64) {
        self.committed.send_if_modified(|c| {
            let moved = seq > *c;
            if moved {
                *c = seq;
            }
            moved
        });
    }

    /// Leader with `min_in_sync == 0`: everything applied is committed.
    pub fn commit_applied(&self, seq: u64) {
        if self.config.min_in_sync == 0 {
            self.raise_committed(seq);
        }
    }

    /// The status report (`NODE.STATUS`).
    pub async fn status(&self) -> NodeStatus {
        let st = self.role_state();
        let (applied, first, len) =
            self.store
                .clone()
                .positions()
                .await
                .unwrap_or((*self.applied.borrow(), 0, 0));
        let in_sync = match st.role {
            Role::Leader => true,
            Role::Follower => self.follower_in_sync(),
            _ => false,
        };
        let followers = self
            .followers
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, f)| FollowerView {
                id: id.clone(),
                acked_seq: f.acked,
                last_seen_ms: f.last_seen.elapsed().as_millis() as u64,
            })
            .collect();
        NodeStatus {
            id: self.id.clone(),
            role: st.role,
            epoch: st.epoch,
            applied_seq: applied,
            last_epoch: 0,
            committed_seq: *self.committed.borrow(),
            leader: st.leader,
            in_sync,
            log_first_seq: first,
            log_len: len,
            full_resyncs: self.full_resyncs.load(Ordering::Relaxed),
            followers,
        }
    }
}
