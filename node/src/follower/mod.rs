//! The follower's side of replication: pull entries from the leader over one persistent
//! connection (each fetch also acknowledges what was applied), apply them strictly in seq
//! order, notice silence or gaps, and fall back to a full resync ([`resync`]) when the
//! leader's log no longer reaches back. Reads on a follower pass a read barrier
//! ([`read_index`]).

pub mod read_index;
pub mod resync;

use crate::error::{Error, Result};
use crate::leader::serve::{ENTRIES, FULLSYNC};
use crate::node::Node;
use crate::store::{Entry, Replayed};
use cleave_proto::{Client, Command, ErrorCode, Frame};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of entries asked for per fetch.
pub const FETCH_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// What one fetch brought.
pub enum Fetched {
    /// Entries (possibly none) and the leader's commit index.
    Entries {
        /// Leader's commit index.
        committed: u64,
        /// The entries, in seq order.
        entries: Vec<Entry>,
    },
    /// The leader's log does not reach back: resync fully.
    FullSync,
}

/// Send one `REPL.FETCH` and decode the answer.
pub async fn fetch(
    client: &mut Client,
    epoch: u64,
    me: &str,
    from: u64,
    timeout: Duration,
) -> Result<Fetched> {
    let cmd = Command::ReplFetch {
        epoch,
        follower: me.into(),
        from,
        from_epoch: 0,
        max_bytes: FETCH_MAX_BYTES,
    };
    let frame = tokio::time::timeout(timeout, client.call(&cmd))
        .await
        .map_err(|_| Error::Peer(cleave_proto::Error::Timeout))??;
    let Frame::Array(items) = frame else {
        return Err(Error::Apply(format!("unexpected fetch reply {frame:?}")));
    };
    let mut it = items.into_iter();
    match it.next() {
        Some(Frame::Simple(tag)) if tag == FULLSYNC => Ok(Fetched::FullSync),
        Some(Frame::Simple(tag)) if tag == ENTRIES => {
            let committed = match it.next() {
                Some(Frame::Integer(n)) => n as u64,
                _ => 0,
            };
            let mut seq = match it.next() {
                Some(Frame::Integer(n)) => n as u64,
                _ => from + 1,
            };
            let mut entries = vec![];
            while let (Some(Frame::Bulk(op)), Some(Frame::Bulk(fx))) = (it.next(), it.next()) {
                entries.push(Entry { seq, op, fx });
                seq += 1;
            }
            Ok(Fetched::Entries { committed, entries })
        }
        other => Err(Error::Apply(format!("unexpected fetch reply {other:?}"))),
    }
}

/// Apply fetched entries; returns false if a gap was found (refetch from the applied seq).
pub async fn apply(node: &Node, entries: &[Entry]) -> Result<bool> {
    if entries.is_empty() {
        return Ok(true);
    }
    let results = node.store.clone().apply_replay(entries).await?;
    let mut ok = true;
    for r in results {
        match r {
            Replayed::Applied(seq) => {
                node.applied.send_replace(seq);
            }
            Replayed::Duplicate => {}
            Replayed::Gap(at) => {
                tracing::warn!("gap in the log: store is at {at}");
                ok = false;
                break;
            }
        }
    }
    Ok(ok)
}

/// The follower loop for one (leader, epoch). Runs until cancelled by a role change.
pub async fn run(node: Arc<Node>, leader: String, epoch: u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let needs_resync = node.role_state().needs_resync
            || node.store.clone().is_resyncing().await.unwrap_or(false);
        let result = if needs_resync {
            resync::full_resync(&node, &leader, epoch).await
        } else {
            follow(&node, &leader, epoch).await
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                tracing::info!("following {leader} at epoch {epoch}: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Fetch and apply until the connection fails, the leader goes silent, or a resync is needed.
async fn follow(node: &Arc<Node>, leader: &str, epoch: u64) -> Result<()> {
    let mut client = Client::connect(leader).await?;
    // A fetch that long-polls for a heartbeat answers within sync_timeout / 4; silence for the
    // whole sync_timeout means we are cut off.
    let silence = node.config.sync_timeout;
    loop {
        let from = *node.applied.borrow();
        match fetch(&mut client, epoch, &node.id, from, silence).await {
            Ok(Fetched::Entries { committed, entries }) => {
                *node.last_contact.lock().expect("lock") = Some(Instant::now());
                node.committed.send_replace(committed);
                if !apply(node, &entries).await? {
                    continue;
                }
            }
            Ok(Fetched::FullSync) => {
                tracing::warn!(
                    "leader {leader}'s log no longer reaches seq {}: full resync",
                    from + 1
                );
                return resync::full_resync(node, leader, epoch).await;
            }
            Err(Error::Peer(e))
                if e.code() == Some(ErrorCode::Stale) || e.code() == Some(ErrorCode::NotLeader) =>
            {
                *node.last_contact.lock().expect("lock") = None;
                return Err(Error::Peer(e));
            }
            Err(e) => {
                *node.last_contact.lock().expect("lock") = None;
                return Err(e);
            }
        }
    }
}
