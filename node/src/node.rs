//! The node's shared state: role and epoch (fencing), applied and committed seqs, and the
//! leader's view of its followers (acknowledgements and confirmation rounds). One `Node` per
//! process, shared by every connection and task. Role changes themselves are in [`crate::role`].

use crate::config::Config;
use crate::leader::cache::LogCache;
use crate::op::Op;
use crate::store::{Led, SavedRole, Store};
use cleave_proto::status::{FollowerView, NodeStatus, Role};
use cleave_proto::{ErrorCode, Reply};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

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
    /// Following as a learner: its acknowledgements never count towards the leader's quorum
    /// (a split's new cluster cloning its source).
    pub learner: bool,
    /// A learner's snapshot spans: the hashes whose data keys its full resyncs copy (empty:
    /// every hash). Only what the learner will take over needs copying; keys of other hashes
    /// that the log replay writes are never read there and are deleted by the cleaning pass
    /// once the split commits.
    pub spans: Vec<(u32, u32)>,
}

impl RoleState {
    /// What a restart must know of this role (see [`crate::role::resume`]).
    pub fn saved(&self) -> SavedRole {
        SavedRole {
            epoch: self.epoch,
            role: match self.role {
                Role::Leader => "leader".into(),
                Role::Follower | Role::Resyncing if self.learner => "learner".into(),
                Role::Follower | Role::Resyncing => "follower".into(),
                Role::Idle => String::new(),
            },
            leader: self.leader.clone().unwrap_or_default(),
            spans: match self.learner {
                true => cleave_proto::owned::spans_text(&self.spans),
                false => String::new(),
            },
        }
    }
}

/// A write waiting for its seq.
#[derive(Debug)]
pub struct WriteRequest {
    /// The change.
    pub op: Op,
    /// Its session tag, for exactly-once retries.
    pub tag: Option<(String, u64)>,
    /// Room in the queue, released once applied.
    pub room: Option<OwnedSemaphorePermit>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Led>,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone)]
pub struct FollowerState {
    /// Highest seq it confirmed applying, with a log that matches the leader's up to there.
    pub acked: u64,
    /// The newest confirmation round its fetches proved it took part in.
    pub round: u64,
    /// The commit index last sent to it.
    pub told: u64,
    /// When it last fetched.
    pub last_seen: Instant,
    /// A learner: never counted towards the quorum or a confirmation round.
    pub learner: bool,
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
    /// Epoch of the entry at `applied` (set before `applied` moves).
    pub last_epoch: AtomicU64,
    /// Leader: highest seq acknowledged (quorum reached). Follower: last value heard.
    pub committed: watch::Sender<u64>,
    /// Leader: the first seq of its epoch. Only entries from here on commit by counting
    /// acknowledgements; earlier ones commit with them (Raft's rule for a new leader).
    pub epoch_start: AtomicU64,
    /// Leader: the current confirmation round (reads prove leadership by a quorum of fetches
    /// that carry a round at least as new as the one they started).
    pub round: watch::Sender<u64>,
    /// Follower: the newest round the leader told us about (echoed in every fetch).
    pub heard_round: AtomicU64,
    /// Follower: bumped whenever a full resync starts, so a read that overlapped one can tell.
    pub resync_gen: AtomicU64,
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
    /// The table epoch whose foreign keys this replica has finished deleting (0: none yet).
    pub cleaned_epoch: AtomicU64,
    /// Leader: bumped on every acknowledgement, to wake confirmation waiters.
    pub acks_changed: watch::Sender<u64>,
    /// Leader: writes are refused until then (a planned switchover hands over).
    pub frozen_until: Mutex<Option<Instant>>,
    /// Held by the committer while a batch is being applied, so a freeze can wait it out.
    pub applying: tokio::sync::Mutex<()>,
    /// What the node counts, for `/metrics`.
    pub metrics: crate::metrics::NodeMetrics,
    /// The store's log extent and ownership as last read, for `NODE.STATUS`.
    pub store_view: Mutex<crate::store_view::StoreView>,
    /// Leader: the read lease and its renewal ([`crate::lease`]).
    pub lease: Mutex<crate::lease::LeaseState>,
    /// This node's promise not to help a newer epoch commit yet ([`crate::lease`]).
    pub promise: Mutex<crate::lease::Promise>,
}

impl Node {
    /// Assemble the state (tasks are started by [`crate::run`]).
    pub fn new(
        config: Config,
        id: String,
        address: String,
        store: Store,
        role: RoleState,
        applied: (u64, u64),
        writes: mpsc::UnboundedSender<WriteRequest>,
    ) -> Node {
        let cache = LogCache::new(config.log_capacity as usize);
        let promise = crate::lease::Promise::at_start(crate::lease::hold(config.read_lease));
        Node {
            config,
            id,
            address,
            store,
            role: watch::channel(role).0,
            applied: watch::channel(applied.0).0,
            last_epoch: AtomicU64::new(applied.1),
            committed: watch::channel(0).0,
            epoch_start: AtomicU64::new(u64::MAX),
            round: watch::channel(0).0,
            heard_round: AtomicU64::new(0),
            resync_gen: AtomicU64::new(0),
            followers: Mutex::new(HashMap::new()),
            cache: Mutex::new(cache),
            writes,
            last_contact: Mutex::new(None),
            full_resyncs: AtomicU64::new(0),
            cleaned_epoch: AtomicU64::new(0),
            acks_changed: watch::channel(0).0,
            frozen_until: Mutex::new(None),
            applying: tokio::sync::Mutex::new(()),
            metrics: Default::default(),
            store_view: Mutex::new(Default::default()),
            lease: Mutex::new(Default::default()),
            promise: Mutex::new(promise),
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
    pub async fn set_role(&self, next: RoleState) -> Result<(), Reply> {
        let current = self.role_state();
        if next.epoch < current.epoch {
            return Err(Reply::new(
                ErrorCode::Stale,
                format!(
                    "epoch {} is older than this node's epoch {}",
                    next.epoch, current.epoch
                ),
            ));
        }
        let saved = next.saved();
        self.store
            .clone()
            .save_role(&saved)
            .await
            .map_err(|e| e.to_reply())?;
        if next.role == Role::Leader && current.role != Role::Leader {
            // A new leader has acknowledged nothing yet. Its commit index is what it heard as a
            // follower, never more than it holds; entries of its own epoch start after what it
            // holds, and only they commit by counting acknowledgements.
            let applied = *self.applied.borrow();
            self.committed.send_modify(|c| *c = (*c).min(applied));
            self.epoch_start.store(applied + 1, Ordering::SeqCst);
            self.cache.lock().expect("lock").clear();
        }
        if next.role != Role::Leader {
            self.epoch_start.store(u64::MAX, Ordering::SeqCst);
        }
        if next.epoch != current.epoch || next.role != current.role {
            self.followers.lock().expect("lock").clear();
            *self.frozen_until.lock().expect("lock") = None;
        }
        self.role.send_replace(next);
        Ok(())
    }

    /// Whether writes are frozen for a switchover.
    pub fn is_frozen(&self) -> bool {
        self.frozen_until
            .lock()
            .expect("lock")
            .is_some_and(|t| Instant::now() < t)
    }

    /// Record that the store is now at `seq`, an entry of `epoch`.
    pub fn set_applied(&self, seq: u64, epoch: u64) {
        self.last_epoch.store(epoch, Ordering::SeqCst);
        self.applied.send_replace(seq);
    }

    /// Leader: a follower fetched with a log matching ours up to `acked`, carrying `round`.
    /// Advance the commit index if the quorum moved, and wake confirmation waiters.
    /// A learner's fetch is recorded (for its view and its commit index) but never counted.
    pub fn record_ack(&self, follower: &str, acked: u64, round: u64, learner: bool) {
        let mut followers = self.followers.lock().expect("lock");
        let told = followers.get(follower).map_or(0, |f| f.told);
        followers.insert(
            follower.to_string(),
            FollowerState {
                acked,
                round,
                told,
                last_seen: Instant::now(),
                learner,
            },
        );
        let k = self.config.min_in_sync;
        if k == 0 || learner {
            return;
        }
        let mut acks: Vec<u64> = followers
            .values()
            .filter(|f| !f.learner)
            .map(|f| f.acked)
            .collect();
        drop(followers);
        self.acks_changed.send_modify(|n| *n += 1);
        let epoch = self.role.borrow().epoch;
        crate::lease::on_ack(self, epoch);
        if acks.len() < k {
            return;
        }
        // Bound by a promise to an older epoch (or the start-up hold): count nothing yet. The
        // followers' next fetches (at least every sync_timeout / 4) count again afterwards.
        if crate::lease::held_until(self, epoch).is_some() {
            return;
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let applied = *self.applied.borrow();
        let quorum = acks[k - 1].min(applied);
        if quorum >= self.epoch_start.load(Ordering::SeqCst) {
            self.raise_committed(quorum);
        }
    }

    /// The commit index last sent to `follower` (0 if unknown).
    pub fn told(&self, follower: &str) -> u64 {
        self.followers
            .lock()
            .expect("lock")
            .get(follower)
            .map_or(0, |f| f.told)
    }

    /// Remember the commit index sent to `follower`.
    pub fn set_told(&self, follower: &str, committed: u64) {
        if let Some(f) = self.followers.lock().expect("lock").get_mut(follower) {
            f.told = committed;
        }
    }

    /// Leader: start a new confirmation round (waking every follower's long poll) and return
    /// its number.
    pub fn start_round(&self) -> u64 {
        let mut round = 0;
        self.round.send_modify(|r| {
            *r += 1;
            round = *r;
        });
        round
    }

    /// Followers whose fetches proved they took part in round `round` or a later one.
    pub fn confirmed(&self, round: u64) -> usize {
        self.followers
            .lock()
            .expect("lock")
            .values()
            .filter(|f| !f.learner && f.round >= round)
            .count()
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
        // From memory: a status must answer even while the store is busy (see `store_view`).
        let view = self.store_view.lock().expect("lock").clone();
        let own = view.own;
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
                learner: f.learner,
            })
            .collect();
        NodeStatus {
            id: self.id.clone(),
            role: st.role,
            epoch: st.epoch,
            applied_seq: *self.applied.borrow(),
            last_epoch: self.last_epoch.load(Ordering::SeqCst),
            committed_seq: *self.committed.borrow(),
            leader: st.leader,
            in_sync,
            log_first_seq: view.log_first,
            log_len: view.log_len,
            full_resyncs: self.full_resyncs.load(Ordering::Relaxed),
            followers,
            learner: st.learner,
            learn_spans: cleave_proto::owned::spans_text(&st.spans),
            own_epoch: own.as_ref().map_or(0, |o| o.epoch),
            own_cluster: own.as_ref().map(|o| o.cluster.clone()).unwrap_or_default(),
            owned_ranges: own.as_ref().map(|o| o.ranges_text()).unwrap_or_default(),
            cleaned_epoch: self.cleaned_epoch.load(Ordering::Relaxed),
        }
    }
}
