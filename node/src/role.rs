//! Role changes: `NODE.LEAD`, `NODE.FOLLOW`, stepping down, and the role a node takes at start.
//!
//! Roles change only through epochs handed out by the operator (fencing). The rules, argued in
//! `docs/replication.md`:
//! - a node leads an epoch at most once: `NODE.LEAD` needs an epoch newer than any it has seen,
//!   and a leader that restarts comes back *idle* — it never resumes creating entries in an
//!   epoch it may have lost the tail of (a Redis restarted from an AOF that missed its last
//!   second), so `(epoch, seq)` names one entry in the whole cluster;
//! - a node in the middle of a full resync cannot lead (its applied seq looks complete but its
//!   data is not);
//! - a deposed leader follows like any other node: log matching on its first fetch tells whether
//!   its tail is in the new leader's log or must be discarded by a full resync.

use crate::leader::commit;
use crate::node::{Node, RoleState};
use crate::op::Op;
use crate::store::SavedRole;
use cleave_proto::owned::Ownership;
use cleave_proto::status::Role;
use cleave_proto::{ErrorCode, Frame, Reply};

/// The role to resume after a restart: a follower follows again; a leader waits for a new
/// epoch (idle), because its store may have lost entries it had handed out.
pub fn resume(saved: &SavedRole) -> RoleState {
    let role = match saved.role.as_str() {
        "follower" | "learner" => Role::Follower,
        _ => Role::Idle,
    };
    if saved.role == "leader" {
        tracing::warn!(
            "restarted as the leader of epoch {}: idle until given a newer epoch",
            saved.epoch
        );
    }
    let learner = saved.role == "learner";
    // Spans that no longer parse cannot say what the store holds: copy again.
    let (spans, unreadable) = match saved.spans.as_str() {
        "" => (Vec::new(), false),
        text => match Ownership::parse_ranges(text) {
            Ok(spans) => (spans, false),
            Err(e) => {
                tracing::warn!("the saved learner spans {text:?} do not parse ({e}): resyncing");
                (Vec::new(), true)
            }
        },
    };
    RoleState {
        role,
        epoch: saved.epoch,
        leader: (role == Role::Follower && !saved.leader.is_empty()).then(|| saved.leader.clone()),
        needs_resync: learner && unreadable,
        learner,
        spans: if learner { spans } else { Vec::new() },
    }
}

/// `NODE.LEAD epoch`: become leader at a newer epoch (idempotent for the epoch it leads now).
pub async fn lead(node: &Node, epoch: u64) -> Frame {
    let st = node.role_state();
    if epoch == st.epoch && st.role == Role::Leader {
        return Frame::ok();
    }
    if epoch <= st.epoch {
        return Reply::new(
            ErrorCode::Stale,
            format!("epoch {epoch} is not newer than {}", st.epoch),
        )
        .to_frame();
    }
    let resyncing = st.role == Role::Resyncing
        || st.needs_resync
        || node.store.clone().is_resyncing().await.unwrap_or(true);
    if resyncing {
        return Reply::new(
            ErrorCode::TryAgain,
            "this node is in the middle of a full resync and cannot lead",
        )
        .to_frame();
    }
    let next = RoleState {
        role: Role::Leader,
        epoch,
        leader: Some(node.address.clone()),
        needs_resync: false,
        learner: false,
        spans: Vec::new(),
    };
    match node.set_role(next).await {
        Ok(()) => {
            // The first entry of the epoch: once a quorum holds it, everything before it is
            // committed too, and reads may proceed.
            drop(commit::submit(node, Op::noop(), None, None));
            tracing::info!("{}: leader at epoch {epoch}", node.id);
            Frame::ok()
        }
        Err(r) => r.to_frame(),
    }
}

/// `NODE.FOLLOW epoch leader [LEARNER [spans]]`: follow `leader` at a newer epoch (idempotent
/// for the current one).
///
/// A learner told other spans at the same epoch and leader (a split aborted, then asked again
/// for another range) takes them and copies again: what it holds no longer covers what it is
/// to take over. The store is marked first, so a restart in between resyncs too.
pub async fn follow(
    node: &Node,
    epoch: u64,
    leader: String,
    learner: bool,
    spans: Vec<(u32, u32)>,
) -> Frame {
    let st = node.role_state();
    if leader == node.address {
        return Reply::new(ErrorCode::Err, "a node cannot follow itself").to_frame();
    }
    let same_leader = epoch == st.epoch
        && st.leader.as_deref() == Some(leader.as_str())
        && st.role != Role::Leader;
    if same_leader && st.learner == learner && st.spans == spans {
        return Frame::ok();
    }
    if same_leader && st.learner && learner {
        if let Err(e) = node.store.clone().require_resync().await {
            return e.to_reply().to_frame();
        }
        let next = RoleState {
            needs_resync: true,
            spans,
            ..st
        };
        return match node.set_role(next).await {
            Ok(()) => {
                tracing::info!(
                    "{}: learning other spans of {leader}: copying again",
                    node.id
                );
                Frame::ok()
            }
            Err(r) => r.to_frame(),
        };
    }
    if epoch < st.epoch || (epoch == st.epoch && st.epoch > 0) {
        return Reply::new(
            ErrorCode::Stale,
            format!("epoch {epoch} is not newer than {}", st.epoch),
        )
        .to_frame();
    }
    let next = RoleState {
        role: Role::Follower,
        epoch,
        leader: Some(leader.clone()),
        needs_resync: st.needs_resync,
        learner,
        spans: if learner { spans } else { Vec::new() },
    };
    match node.set_role(next).await {
        Ok(()) => {
            tracing::info!("{}: following {leader} at epoch {epoch}", node.id);
            Frame::ok()
        }
        Err(r) => r.to_frame(),
    }
}

/// Stop leading (the store lost data): idle at the same epoch until the operator hands out a
/// newer one and a node that holds every acknowledged write leads it.
pub async fn step_down(node: &Node, why: &str) {
    let st = node.role_state();
    if st.role != Role::Leader {
        return;
    }
    tracing::warn!("{}: stepping down from epoch {}: {why}", node.id, st.epoch);
    let next = RoleState {
        role: Role::Idle,
        epoch: st.epoch,
        leader: None,
        needs_resync: false,
        learner: false,
        spans: Vec::new(),
    };
    if let Err(e) = node.set_role(next).await {
        tracing::warn!(
            "{}: could not persist stepping down: {}",
            node.id,
            e.message
        );
    }
    if let Ok(at) = node.store.clone().positions().await {
        node.set_applied(at.applied, at.applied_epoch);
    }
}

/// `NODE.FREEZE epoch ms`: as the leader of `epoch`, apply no more writes for `ms` (a planned
/// switchover), and answer the applied seq once no batch is in flight: from then on nothing
/// changes here, so a follower that reaches this seq holds everything this leader has.
pub async fn freeze(node: &Node, epoch: u64, ms: u64) -> Frame {
    let st = node.role_state();
    if st.role != Role::Leader || st.epoch != epoch {
        return Reply::new(
            ErrorCode::Stale,
            format!("this node does not lead epoch {epoch}"),
        )
        .to_frame();
    }
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    *node.frozen_until.lock().expect("lock") = Some(until);
    let _no_batch_in_flight = node.applying.lock().await;
    Frame::Integer(*node.applied.borrow() as i64)
}
