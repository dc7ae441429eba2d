//! Full resync: discard the local dataset, copy a snapshot from the leader, and replay the log
//! from the seq the snapshot started at.
//!
//! The classic failure of this scheme under write load is a loop: the snapshot takes longer than
//! the leader's log lasts, so the replay point is gone by the time the copy ends. Here a second
//! task starts fetching entries from the snapshot's start seq *as soon as the seq is known* and
//! buffers them in the follower's own Redis while the copy runs, so the leader's log only has to
//! hold the few milliseconds between the first snapshot batch and the first fetch, whatever the
//! snapshot's size.

use super::{fetch, Fetched};
use crate::error::{Error, Result};
use crate::leader::serve::ANONYMOUS_READER;
use crate::node::{Node, RoleState};
use crate::store::SavedRole;
use bytes::Bytes;
use cleave_proto::status::Role;
use cleave_proto::{Client, Command, Frame};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Entries applied per replay step after the copy.
const REPLAY_BATCH: usize = 256;

struct Batch {
    cursor: String,
    start_seq: u64,
    items: Vec<(Bytes, Bytes)>,
}

async fn next_batch(client: &mut Client, epoch: u64, cursor: &str) -> Result<Batch> {
    let frame = client
        .call(&Command::SnapNext {
            epoch,
            cursor: cursor.into(),
        })
        .await?;
    let Frame::Array(mut parts) = frame else {
        return Err(Error::Apply(format!("unexpected snapshot reply {frame:?}")));
    };
    if parts.len() != 3 {
        return Err(Error::Apply("snapshot reply must have 3 parts".into()));
    }
    let items = match parts.pop() {
        Some(Frame::Array(items)) => items,
        other => return Err(Error::Apply(format!("unexpected snapshot items {other:?}"))),
    };
    let start_seq = match parts.pop() {
        Some(Frame::Integer(n)) => n as u64,
        _ => 0,
    };
    let cursor = parts.pop().and_then(|f| {
        f.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    });
    let mut pairs = vec![];
    let mut it = items.into_iter();
    while let (Some(Frame::Bulk(k)), Some(Frame::Bulk(d))) = (it.next(), it.next()) {
        pairs.push((k, d));
    }
    Ok(Batch {
        cursor: cursor.unwrap_or_else(|| "0".into()),
        start_seq,
        items: pairs,
    })
}

/// Run one complete full resync against `leader`.
pub async fn full_resync(node: &Arc<Node>, leader: &str, epoch: u64) -> Result<()> {
    tracing::warn!("{}: full resync from {leader} at epoch {epoch}", node.id);
    mark(node, Role::Resyncing, true);
    *node.last_contact.lock().expect("lock") = None;
    let mut store = node.store.clone();
    let mut client = Client::connect(leader).await?;
    let first = next_batch(&mut client, epoch, "0").await?;
    let start = first.start_seq;
    let saved = SavedRole {
        epoch,
        role: "follower".into(),
        leader: leader.into(),
    };
    store.begin_resync(start, &saved).await?;
    node.applied.send_replace(start);

    // Buffer live entries from `start` while the snapshot is copied.
    let stop = Arc::new(AtomicBool::new(false));
    let buffering = tokio::spawn(buffer_entries(
        node.clone(),
        leader.to_string(),
        epoch,
        start,
        stop.clone(),
    ));

    let copy = async {
        store.restore(&first.items).await?;
        let mut cursor = first.cursor;
        let mut keys = first.items.len();
        while cursor != "0" {
            let batch = next_batch(&mut client, epoch, &cursor).await?;
            keys += batch.items.len();
            store.restore(&batch.items).await?;
            cursor = batch.cursor;
        }
        Ok::<usize, Error>(keys)
    };
    let copied = copy.await;
    stop.store(true, Ordering::Relaxed);
    let buffered = buffering
        .await
        .map_err(|e| Error::Apply(format!("buffer task: {e}")))?;
    let keys = copied?;
    buffered?;

    // Replay what was buffered, in order, then resume normal following.
    loop {
        let entries = store.buffer_take(REPLAY_BATCH).await?;
        if entries.is_empty() {
            break;
        }
        if !super::apply(node, &entries).await? {
            return Err(Error::Apply("gap while replaying the resync buffer".into()));
        }
    }
    store.finish_resync().await?;
    node.full_resyncs.fetch_add(1, Ordering::Relaxed);
    mark(node, Role::Follower, false);
    tracing::info!(
        "{}: full resync done: {keys} keys from seq {start}, now at {}",
        node.id,
        *node.applied.borrow()
    );
    Ok(())
}

fn mark(node: &Node, role: Role, needs_resync: bool) {
    node.role.send_modify(|st: &mut RoleState| {
        if matches!(st.role, Role::Follower | Role::Resyncing) {
            st.role = role;
            st.needs_resync = needs_resync;
        }
    });
}

/// Fetch entries after `from` into the local buffer until told to stop (then one last fetch).
async fn buffer_entries(
    node: Arc<Node>,
    leader: String,
    epoch: u64,
    mut from: u64,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut client = Client::connect(&leader).await?;
    let mut store = node.store.clone();
    // Stopping leaves no gap: the buffer is contiguous from `start`, and normal following
    // resumes from the last replayed entry.
    while !stop.load(Ordering::Relaxed) {
        match fetch(
            &mut client,
            epoch,
            ANONYMOUS_READER,
            from,
            node.config.sync_timeout,
        )
        .await?
        {
            Fetched::Entries { entries, .. } => {
                if let Some(last) = entries.last() {
                    from = last.seq;
                }
                store.buffer_push(&entries).await?;
            }
            Fetched::FullSync => {
                return Err(Error::Apply(
                    "the leader's log moved past the snapshot's start; restarting the resync"
                        .into(),
                ))
            }
        }
    }
    Ok(())
}
