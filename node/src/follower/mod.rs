//! The follower's side of replication: pull entries from the leader over one persistent
//! connection (each fetch names the follower's last `(epoch, seq)`, acknowledges it, and echoes
//! the newest confirmation round), apply them strictly in seq order, notice silence, gaps or a
//! store that lost data, and fall back to a full resync ([`resync`]) when the leader's log no
//! longer reaches back or the follower's tail diverged from it. Reads on a follower pass a read
//! barrier ([`read_index`]).

pub mod read_index;
pub mod resync;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::{Entry, Replayed};
use cleave_proto::command::repl::FetchReply;
use cleave_proto::{Client, Command, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of entries asked for per fetch.
pub const FETCH_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Time allowed, beyond the leader's silence limit, to move the largest reply: a full batch
/// plus one entry of the largest write (16 MiB + 2 x 64 MiB with its effects) at 80 MiB/s.
/// Without it, a log of 32 MiB entries could never be fetched within the silence limit.
pub const FETCH_TRANSFER_ALLOWANCE: Duration = Duration::from_secs(2);

/// Send one `REPL.FETCH` from `(from, from_epoch)` and decode the answer. `timeout` is how
/// long the leader may stay silent; [`FETCH_TRANSFER_ALLOWANCE`] is added for the transfer.
pub async fn fetch(
    client: &mut Client,
    epoch: u64,
    me: &str,
    from: (u64, u64),
    round: u64,
    learner: bool,
    timeout: Duration,
) -> Result<FetchReply> {
    let cmd = Command::ReplFetch {
        epoch,
        follower: me.into(),
        from: from.0,
        from_epoch: from.1,
        round,
        max_bytes: FETCH_MAX_BYTES,
        learner,
    };
    let frame = tokio::time::timeout(timeout + FETCH_TRANSFER_ALLOWANCE, client.call(&cmd))
        .await
        .map_err(|_| Error::Peer(cleave_proto::Error::Timeout))??;
    let reply = FetchReply::from_frame(frame).map_err(|r| Error::Apply(r.message))?;
    if let FetchReply::Entries { entries, .. } = &reply {
        if entries.first().is_some_and(|e| e.seq != from.0 + 1) {
            return Err(Error::Apply(format!(
                "the leader answered from seq {}, not {}",
                entries[0].seq,
                from.0 + 1
            )));
        }
    }
    Ok(reply)
}

/// What applying a batch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Every entry is applied (or was already).
    All,
    /// The store is not where the node believed (a gap, or its Redis lost data): the node's
    /// position was reset to the store's; fetch again from there.
    Reset,
}

/// Apply fetched entries in order.
pub async fn apply(node: &Node, entries: &[Entry]) -> Result<Applied> {
    if entries.is_empty() {
        return Ok(Applied::All);
    }
    let expect = *node.applied.borrow();
    let started = Instant::now();
    let results = node.store.clone().apply_replay(entries, Some(expect)).await;
    node.metrics.redis("apply_replay", started.elapsed());
    let results = results?;
    for (r, e) in results.into_iter().zip(entries) {
        match r {
            Replayed::Applied(seq) => node.set_applied(seq, e.epoch),
            Replayed::Duplicate => {}
            Replayed::Gap(at) | Replayed::Lost(at) => {
                tracing::warn!(
                    "{}: the store is at seq {at}, not {expect} as this node believed: resetting",
                    node.id
                );
                reset_to_store(node).await?;
                return Ok(Applied::Reset);
            }
        }
    }
    Ok(Applied::All)
}

/// Take the store's position as the node's (after a gap or a Redis that lost its tail).
pub async fn reset_to_store(node: &Node) -> Result<()> {
    let at = node.store.clone().positions().await?;
    node.set_applied(at.applied, at.applied_epoch);
    Ok(())
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

fn lost_contact(node: &Node) {
    *node.last_contact.lock().expect("lock") = None;
}

/// Fetch and apply until the connection fails, the leader goes silent, or a resync is needed.
async fn follow(node: &Arc<Node>, leader: &str, epoch: u64) -> Result<()> {
    reset_to_store(node).await?;
    let learner = node.role_state().learner;
    if let Some(until) = crate::lease::held_until(node, epoch).filter(|_| !learner) {
        // Bound by a promise to the old leader's lease (or the start-up hold): fetching now
        // would help the new epoch commit while the old leader may still serve lease reads.
        tracing::info!(
            "{}: holding {:?} before following epoch {epoch} (read lease of an older epoch)",
            node.id,
            until - Instant::now()
        );
        tokio::time::sleep_until(until.into()).await;
    }
    let mut client = Client::connect(leader).await?;
    // A fetch that long-polls for a heartbeat answers within sync_timeout / 4; silence for the
    // whole sync_timeout means we are cut off.
    let silence = node.config.sync_timeout;
    let mut catching_up = Some(Instant::now());
    loop {
        let from = (
            *node.applied.borrow(),
            node.last_epoch.load(Ordering::SeqCst),
        );
        let round = node.heard_round.load(Ordering::SeqCst);
        if !learner {
            crate::lease::promise(node, epoch);
        }
        match fetch(&mut client, epoch, &node.id, from, round, learner, silence).await {
            Ok(FetchReply::Entries {
                committed,
                round,
                entries,
            }) => {
                *node.last_contact.lock().expect("lock") = Some(Instant::now());
                node.heard_round.fetch_max(round, Ordering::SeqCst);
                apply(node, &entries).await?;
                node.committed.send_replace(committed);
                if *node.applied.borrow() >= committed {
                    if let Some(since) = catching_up.take() {
                        node.metrics.caught_up(since.elapsed());
                    }
                }
            }
            Ok(FetchReply::FullSync { first }) => {
                tracing::warn!(
                    "{}: leader {leader}'s log starts at seq {first}, after {}: full resync",
                    node.id,
                    from.0 + 1
                );
                return resync::full_resync(node, leader, epoch).await;
            }
            Ok(FetchReply::Diverged { reason }) => {
                tracing::warn!(
                    "{}: this node's log diverged from {leader}'s ({reason}): full resync",
                    node.id
                );
                return resync::full_resync(node, leader, epoch).await;
            }
            Err(Error::Peer(e))
                if e.code() == Some(ErrorCode::Stale) || e.code() == Some(ErrorCode::NotLeader) =>
            {
                lost_contact(node);
                return Err(Error::Peer(e));
            }
            Err(e) => {
                lost_contact(node);
                return Err(e);
            }
        }
    }
}
