//! What a leader answers its followers: `REPL.FETCH` (entries after the follower's position,
//! long-polled, which doubles as its acknowledgement and as its part in confirmation rounds),
//! `REPL.INDEX` (a commit index proven current by a quorum, for follower reads) and `SNAP.NEXT`
//! (a batch of a full-resync snapshot; any in-sync node may serve it).
//!
//! Log matching: a fetch names the follower's last entry `(from, from_epoch)`. The leader serves
//! it only if its own log holds that very entry; otherwise the follower's tail was never
//! committed (or the leader's log no longer reaches back) and it must copy a snapshot. Only a
//! matched fetch counts as an acknowledgement, so the commit index never counts a replica whose
//! log differs from the leader's.

use crate::lease;
use crate::node::{Node, RoleState};
use cleave_proto::command::repl::{FetchReply, SnapBatch};
use cleave_proto::status::Role;
use cleave_proto::{ErrorCode, Frame, Reply};
use std::time::Duration;

/// A follower id that reads without counting as a replica (resync buffering).
pub const ANONYMOUS_READER: &str = "-";
/// Entries read from Redis per fetch when the memory cache does not reach back.
const LOG_READ_BATCH: u64 = 256;
/// How long one snapshot batch may take on the source.
const SNAPSHOT_BATCH_TIMEOUT: Duration = Duration::from_secs(30);

fn check_epoch(node: &Node, epoch: u64) -> Result<RoleState, Reply> {
    let st = node.role_state();
    if epoch != st.epoch {
        return Err(Reply::new(
            ErrorCode::Stale,
            format!(
                "this node is at epoch {}, not {epoch}; ask the operator who leads",
                st.epoch
            ),
        ));
    }
    Ok(st)
}

fn leader_state(node: &Node, epoch: u64) -> Result<RoleState, Reply> {
    let st = check_epoch(node, epoch)?;
    if st.role != Role::Leader {
        return Err(Reply::new(
            ErrorCode::NotLeader,
            st.leader.clone().unwrap_or_else(|| "?".into()),
        ));
    }
    Ok(st)
}

/// Where the follower's position stands against this leader's log.
enum Position {
    /// The leader holds `(from, from_epoch)`: serve what follows.
    Matches,
    /// The log no longer reaches back.
    Trimmed(u64),
    /// The follower's entry is not the leader's.
    Diverged(String),
}

async fn locate(node: &Node, from: u64, from_epoch: u64) -> Result<Position, Reply> {
    let applied = *node.applied.borrow();
    if from > applied {
        return Ok(Position::Diverged(format!(
            "the follower is at seq {from}, beyond this leader's {applied}"
        )));
    }
    let epoch_here = if from == applied {
        Some(node.last_epoch.load(std::sync::atomic::Ordering::SeqCst))
    } else {
        node.cache.lock().expect("lock").epoch_at(from)
    };
    let (epoch_here, first) = match epoch_here {
        Some(e) => (Some(e), 0),
        None => {
            let log = node
                .store
                .clone()
                .read_log(from, 0, 0)
                .await
                .map_err(|e| e.to_reply())?;
            (log.from_epoch, log.first)
        }
    };
    Ok(match epoch_here {
        Some(e) if e == from_epoch => Position::Matches,
        Some(e) => Position::Diverged(format!(
            "seq {from} is an entry of epoch {e} here, not {from_epoch}"
        )),
        None => Position::Trimmed(first),
    })
}

/// `REPL.FETCH epoch follower from from-epoch round max-bytes`.
pub async fn fetch(
    node: &Node,
    epoch: u64,
    follower: &str,
    (from, from_epoch): (u64, u64),
    round: u64,
    max_bytes: u64,
    learner: bool,
) -> Frame {
    if let Err(r) = leader_state(node, epoch) {
        return r.to_frame();
    }
    match locate(node, from, from_epoch).await {
        Err(r) => return r.to_frame(),
        Ok(Position::Trimmed(first)) => return FetchReply::FullSync { first }.to_frame(),
        Ok(Position::Diverged(reason)) => return FetchReply::Diverged { reason }.to_frame(),
        Ok(Position::Matches) => {}
    }
    if follower != ANONYMOUS_READER {
        node.record_ack(follower, from, round, learner);
    }
    // Long poll: answer at once when there is something to send, a newer commit index or a
    // confirmation round to take part in; otherwise a heartbeat after sync_timeout / 4.
    let mut applied = node.applied.subscribe();
    let mut committed = node.committed.subscribe();
    let mut rounds = node.round.subscribe();
    let told = node.told(follower);
    let nothing_new = *applied.borrow_and_update() == from
        && *committed.borrow_and_update() <= told
        && *rounds.borrow_and_update() <= round;
    if nothing_new {
        let heartbeat = node.config.sync_timeout / 4;
        let _ = tokio::time::timeout(heartbeat, async {
            tokio::select! {
                _ = applied.changed() => {},
                _ = committed.changed() => {},
                _ = rounds.changed() => {},
            }
        })
        .await;
    }
    if let Err(r) = leader_state(node, epoch) {
        return r.to_frame();
    }
    let last = *node.applied.borrow();
    let entries = if from >= last {
        vec![]
    } else {
        let cached = node
            .cache
            .lock()
            .expect("lock")
            .after(from, max_bytes as usize);
        match cached {
            Some(entries) => entries,
            None => match node
                .store
                .clone()
                .read_log(from, LOG_READ_BATCH, max_bytes)
                .await
            {
                Ok(log) if !log.entries.is_empty() => log.entries,
                Ok(log) => return FetchReply::FullSync { first: log.first }.to_frame(),
                Err(e) => return e.to_reply().to_frame(),
            },
        }
    };
    let committed = *node.committed.borrow();
    node.set_told(follower, committed);
    FetchReply::Entries {
        committed,
        round: *node.round.borrow(),
        entries,
    }
    .to_frame()
}

/// Prove this node still leads, and return the commit index, which then covers every write
/// acknowledged before the call: under a read lease ([`crate::lease`]) at once, otherwise by a
/// new confirmation round (which also renews the lease).
pub async fn confirm(node: &Node) -> Result<u64, Reply> {
    let st = node.role_state();
    if st.role != Role::Leader {
        return Err(Reply::new(
            ErrorCode::NotLeader,
            st.leader.unwrap_or_else(|| "?".into()),
        ));
    }
    let start = node.epoch_start.load(std::sync::atomic::Ordering::SeqCst);
    if let Some(index) = lease::read_index(node, st.epoch, start) {
        node.metrics.read_confirmed(true);
        return Ok(index);
    }
    node.metrics.read_confirmed(false);
    confirm_by_round(node, st.epoch, start).await
}

/// Start a new confirmation round and wait until `min_in_sync` followers fetched with it (each
/// such fetch was sent after the round began, by a follower still at this epoch), and until
/// the first entry of the epoch is committed.
async fn confirm_by_round(node: &Node, epoch: u64, start: u64) -> Result<u64, Reply> {
    let k = node.config.min_in_sync;
    let started = std::time::Instant::now();
    let round = if k > 0 { node.start_round() } else { 0 };
    let mut acks = node.acks_changed.subscribe();
    let mut committed = node.committed.subscribe();
    let mut role = node.role.subscribe();
    let wait = async {
        loop {
            let now = role.borrow_and_update().clone();
            if now.epoch != epoch || now.role != Role::Leader {
                return Err(Reply::new(
                    ErrorCode::TryAgain,
                    "leadership changed during a read; retry",
                ));
            }
            acks.borrow_and_update();
            let index = *committed.borrow_and_update();
            if node.confirmed(round) >= k && (k == 0 || index >= start) {
                if k > 0 {
                    lease::round_confirmed(node, epoch, round, started);
                }
                return Ok(index);
            }
            tokio::select! {
                r = acks.changed() => if r.is_err() { return Err(unavailable()) },
                r = committed.changed() => if r.is_err() { return Err(unavailable()) },
                r = role.changed() => if r.is_err() { return Err(unavailable()) },
            }
        }
    };
    match tokio::time::timeout(node.config.sync_timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(Reply::new(
            ErrorCode::TryAgain,
            format!(
                "could not confirm leadership with {k} follower(s) within {:?}",
                node.config.sync_timeout
            ),
        )),
    }
}

fn unavailable() -> Reply {
    Reply::new(ErrorCode::TryAgain, "node is shutting down")
}

/// `REPL.INDEX epoch`: a commit index proven current, for a follower's read barrier.
pub async fn index(node: &Node, epoch: u64) -> Frame {
    if let Err(r) = leader_state(node, epoch) {
        return r.to_frame();
    }
    match confirm(node).await {
        Ok(index) => Frame::Integer(index as i64),
        Err(r) => r.to_frame(),
    }
}

/// `SNAP.NEXT epoch cursor`: one batch of a snapshot from this node's store.
pub async fn snapshot(node: &Node, epoch: u64, cursor: &str, spans: &[(u32, u32)]) -> Frame {
    let st = match check_epoch(node, epoch) {
        Ok(st) => st,
        Err(r) => return r.to_frame(),
    };
    let serves = st.role == Role::Leader || (st.role == Role::Follower && node.follower_in_sync());
    if !serves {
        return Reply::new(
            ErrorCode::TryAgain,
            "this node is not in sync; take the snapshot elsewhere",
        )
        .to_frame();
    }
    match tokio::time::timeout(
        SNAPSHOT_BATCH_TIMEOUT,
        node.store.clone().snapshot_batch(cursor, spans),
    )
    .await
    {
        Ok(Ok(batch)) => {
            let sent = crate::follower::resync::item_bytes(&batch.items);
            node.metrics.snapshot(true, sent);
            SnapBatch {
                cursor: batch.cursor,
                start_seq: batch.start_seq,
                start_epoch: batch.start_epoch,
                items: batch.items,
            }
            .to_frame()
        }
        Ok(Err(e)) => e.to_reply().to_frame(),
        Err(_) => Reply::new(ErrorCode::TryAgain, "snapshot batch timed out").to_frame(),
    }
}
