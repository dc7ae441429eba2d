//! What a leader answers its followers: `REPL.FETCH` (entries after a seq, long-polled, which
//! doubles as the follower's acknowledgement), `REPL.INDEX` (the commit index for read-index
//! reads) and `SNAP.NEXT` (a batch of a full-resync snapshot; any in-sync node may serve it).

use crate::node::{Node, RoleState};
use crate::store::Entry;
use cleave_proto::status::Role;
use cleave_proto::{ErrorCode, Frame, Reply};
use std::time::Duration;

/// A follower id that reads without counting as a replica (resync buffering).
pub const ANONYMOUS_READER: &str = "-";
/// Entries read from Redis per fetch when the memory cache does not reach back.
const LOG_READ_BATCH: u64 = 256;

/// The fetch reply tags.
pub const ENTRIES: &str = "ENTRIES";
/// Tells the follower the log does not reach back to it: resync fully.
pub const FULLSYNC: &str = "FULLSYNC";

fn check_epoch(node: &Node, epoch: u64) -> Result<RoleState, Reply> {
    let st = node.role_state();
    if epoch < st.epoch {
        return Err(Reply::new(
            ErrorCode::Stale,
            format!("epoch {epoch} is older than {}", st.epoch),
        ));
    }
    if epoch > st.epoch {
        return Err(Reply::new(
            ErrorCode::Stale,
            format!(
                "this node is at epoch {} and does not lead epoch {epoch}",
                st.epoch
            ),
        ));
    }
    Ok(st)
}

/// `REPL.FETCH epoch follower from max-bytes`.
pub async fn fetch(node: &Node, epoch: u64, follower: &str, from: u64, max_bytes: u64) -> Frame {
    let st = match check_epoch(node, epoch) {
        Ok(st) => st,
        Err(r) => return r.to_frame(),
    };
    if st.role != Role::Leader {
        return Reply::new(
            ErrorCode::NotLeader,
            st.leader.unwrap_or_else(|| "?".into()),
        )
        .to_frame();
    }
    if follower != ANONYMOUS_READER {
        node.record_ack(follower, from);
    }
    let mut applied = node.applied.subscribe();
    let mut last = *applied.borrow_and_update();
    if from > last {
        // The follower holds changes this leader never had (e.g. a deposed leader's unacknowledged
        // writes): it must discard its data.
        return fullsync(last);
    }
    if from == last {
        let heartbeat = node.config.sync_timeout / 4;
        let _ = tokio::time::timeout(heartbeat, applied.changed()).await;
        last = *applied.borrow();
    }
    let entries = if from == last {
        vec![]
    } else {
        let cached = node
            .cache
            .lock()
            .expect("lock")
            .after(from, max_bytes as usize);
        match cached {
            Some(entries) => entries,
            None => match node.store.clone().read_log(from, LOG_READ_BATCH).await {
                Ok((_, _, entries)) if !entries.is_empty() => trim_to(entries, max_bytes as usize),
                Ok((first, _, _)) => return fullsync(first),
                Err(e) => return e.to_reply().to_frame(),
            },
        }
    };
    let committed = *node.committed.borrow();
    let mut items = vec![
        Frame::Simple(ENTRIES.into()),
        Frame::Integer(committed as i64),
        Frame::Integer((from + 1) as i64),
    ];
    for e in entries {
        items.push(Frame::Bulk(e.op));
        items.push(Frame::Bulk(e.fx));
    }
    Frame::Array(items)
}

fn trim_to(mut entries: Vec<Entry>, max_bytes: usize) -> Vec<Entry> {
    let mut size = 0;
    let keep = entries
        .iter()
        .position(|e| {
            size += e.op.len() + e.fx.len();
            size > max_bytes
        })
        .unwrap_or(entries.len())
        .max(1);
    entries.truncate(keep);
    entries
}

fn fullsync(first: u64) -> Frame {
    Frame::Array(vec![
        Frame::Simple(FULLSYNC.into()),
        Frame::Integer(first as i64),
    ])
}

/// `REPL.INDEX epoch`: the commit index, for a follower's read barrier.
pub fn index(node: &Node, epoch: u64) -> Frame {
    match check_epoch(node, epoch) {
        Ok(st) if st.role == Role::Leader => Frame::Integer(*node.committed.borrow() as i64),
        Ok(st) => Reply::new(
            ErrorCode::NotLeader,
            st.leader.unwrap_or_else(|| "?".into()),
        )
        .to_frame(),
        Err(r) => r.to_frame(),
    }
}

/// `SNAP.NEXT epoch cursor`: one batch of a snapshot from this node's store.
pub async fn snapshot(node: &Node, epoch: u64, cursor: &str) -> Frame {
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
        Duration::from_secs(30),
        node.store.clone().snapshot_batch(cursor),
    )
    .await
    {
        Ok(Ok(batch)) => {
            let mut items = Vec::with_capacity(batch.items.len() * 2);
            for (k, d) in batch.items {
                items.push(Frame::Bulk(k));
                items.push(Frame::Bulk(d));
            }
            Frame::Array(vec![
                Frame::bulk(batch.cursor),
                Frame::Integer(batch.start_seq as i64),
                Frame::Array(items),
            ])
        }
        Ok(Err(e)) => e.to_reply().to_frame(),
        Err(_) => Reply::new(ErrorCode::TryAgain, "snapshot batch timed out").to_frame(),
    }
}
