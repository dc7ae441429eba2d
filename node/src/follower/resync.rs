//! Full resync: discard the local dataset, copy a snapshot from the leader, and replay the log
//! from the seq the snapshot started at.
//!
//! The classic failure of this scheme under write load is a loop: the snapshot takes longer than
//! the leader's log lasts, so the replay point is gone by the time the copy ends. Here a second
//! task starts fetching entries from the snapshot's start seq *as soon as the seq is known* and
//! buffers them in the follower's own Redis while the copy runs, so the leader's log only has to
//! hold the few milliseconds between the first snapshot batch and the first fetch, whatever the
//! snapshot's size.

use super::fetch;
use crate::error::{Error, Result};
use crate::leader::serve::ANONYMOUS_READER;
use crate::node::{Node, RoleState};
use crate::store::SavedRole;
use cleave_proto::command::repl::{FetchReply, SnapBatch};
use cleave_proto::status::Role;
use cleave_proto::{Client, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Entries applied per replay step after the copy.
const REPLAY_BATCH: usize = 256;
/// How long one snapshot batch may take to arrive (the source bounds its side at 30 s).
const BATCH_TIMEOUT: Duration = Duration::from_secs(40);

async fn next_batch(
    client: &mut Client,
    epoch: u64,
    cursor: &str,
    spans: &[(u32, u32)],
) -> Result<SnapBatch> {
    let cmd = Command::SnapNext {
        epoch,
        cursor: cursor.into(),
        spans: spans.to_vec(),
    };
    let call = client.call(&cmd);
    let frame = tokio::time::timeout(BATCH_TIMEOUT, call)
        .await
        .map_err(|_| Error::Apply("snapshot batch did not arrive in time".into()))??;
    SnapBatch::from_frame(frame).map_err(|r| Error::Apply(r.message))
}

/// Run one complete full resync against `leader` (counted and timed in the node's metrics).
pub async fn full_resync(node: &Arc<Node>, leader: &str, epoch: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let result = resync_once(node, leader, epoch).await;
    node.metrics.resync(result.is_ok(), started.elapsed());
    result
}

async fn resync_once(node: &Arc<Node>, leader: &str, epoch: u64) -> Result<()> {
    tracing::warn!("{}: full resync from {leader} at epoch {epoch}", node.id);
    mark(node, Role::Resyncing, true);
    node.resync_gen.fetch_add(1, Ordering::SeqCst);
    *node.last_contact.lock().expect("lock") = None;
    let mut store = node.store.clone();
    // The role as it is now, learner spans included, is what a restart in the middle must
    // resume (a learner that came back as a voter would count towards the source's quorum).
    let st = node.role_state();
    if st.epoch != epoch || st.leader.as_deref() != Some(leader) {
        return Err(Error::Apply(
            "the role changed before the resync began".into(),
        ));
    }
    let saved: SavedRole = st.saved();
    let spans = st.spans;
    let mut client = Client::connect(leader).await?;
    let first = next_batch(&mut client, epoch, "0", &spans).await?;
    let (start, start_epoch) = (first.start_seq, first.start_epoch);
    store.begin_resync(start, start_epoch, &saved).await?;
    node.set_applied(start, start_epoch);

    // Buffer live entries from `start` while the snapshot is copied.
    let stop = Arc::new(AtomicBool::new(false));
    let buffering = tokio::spawn(buffer_entries(
        node.clone(),
        leader.to_string(),
        epoch,
        (start, start_epoch),
        stop.clone(),
    ));

    let copy = async {
        node.metrics.snapshot(false, item_bytes(&first.items));
        store.restore(&first.items).await?;
        let mut cursor = first.cursor;
        let mut keys = first.items.len();
        while cursor != "0" {
            let batch = next_batch(&mut client, epoch, &cursor, &spans).await?;
            keys += batch.items.len();
            node.metrics.snapshot(false, item_bytes(&batch.items));
            store.restore(&batch.items).await?;
            cursor = batch.cursor;
        }
        Ok::<usize, Error>(keys)
    };
    // A failed buffer ends the resync at once, not after the whole copy.
    tokio::pin!(buffering);
    let copied = tokio::select! {
        copied = copy => copied,
        buffered = &mut buffering => {
            let why = match buffered {
                Ok(Ok(())) => "the buffer task ended early".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("buffer task: {e}"),
            };
            return Err(Error::Apply(format!("resync abandoned: {why}")));
        }
    };
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
        if super::apply(node, &entries).await? != super::Applied::All {
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

/// Payload bytes of snapshot items (keys and dumps).
pub fn item_bytes(items: &[(bytes::Bytes, bytes::Bytes)]) -> u64 {
    items.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
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
    mut from: (u64, u64),
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut client = Client::connect(&leader).await?;
    let mut store = node.store.clone();
    // Stopping leaves no gap: the buffer is contiguous from `start`, and normal following
    // resumes from the last replayed entry.
    while !stop.load(Ordering::Relaxed) {
        let reply = fetch(
            &mut client,
            epoch,
            ANONYMOUS_READER,
            from,
            0,
            false,
            node.config.sync_timeout,
        )
        .await?;
        match reply {
            FetchReply::Entries { entries, .. } => {
                if let Some(last) = entries.last() {
                    from = (last.seq, last.epoch);
                }
                store.buffer_push(&entries).await?;
                let cap = node.config.resync_buffer_bytes;
                if !entries.is_empty() && store.buffer_bytes().await? > cap {
                    return Err(Error::Apply(format!(
                        "the resync buffer passed {cap} bytes; starting over"
                    )));
                }
            }
            FetchReply::FullSync { .. } | FetchReply::Diverged { .. } => {
                return Err(Error::Apply(
                    "the leader's log moved past the snapshot's start; restarting the resync"
                        .into(),
                ))
            }
        }
    }
    Ok(())
}
