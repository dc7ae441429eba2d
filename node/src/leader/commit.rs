//! Group commit: client writes queue up while the previous batch is in Redis, and the next batch
//! takes everything waiting — one pipelined round trip for many writes, each still atomic with
//! its own (epoch, seq). A write is acknowledged only once `min_in_sync` followers hold it (the
//! commit index, see [`crate::node::Node::record_ack`]).
//!
//! The queue is bounded by bytes: a connection acquires room for a write before the server reads
//! the next request, so a flood of large writes slows its senders instead of growing memory.

use crate::error::Error;
use crate::node::{Node, WriteRequest};
use crate::op::Op;
use crate::store::Led;
use cleave_proto::status::Role;
use cleave_proto::{ErrorCode, Reply};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Most writes in one batch.
const BATCH_MAX_OPS: usize = 512;
/// Most bytes in one batch.
const BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The room a write of `bytes` needs in a queue of `queue_bytes` (`write-queue-bytes`; a write
/// larger than the whole queue takes the whole queue).
pub fn room_for(bytes: usize, queue_bytes: usize) -> u32 {
    bytes.clamp(1, queue_bytes.min(u32::MAX as usize)) as u32
}

/// The queue's byte budget of `queue_bytes`, shared by the server (which acquires) and the
/// committer (whose requests hold their room until applied).
pub fn queue_room(queue_bytes: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(queue_bytes))
}

fn refused(reply: Reply) -> Led {
    Led::Rejected { reply, applied: 0 }
}

/// Queue a write; the returned receiver yields its outcome once applied on the leader.
pub fn submit(
    node: &Node,
    op: Op,
    tag: Option<(String, u64)>,
    room: Option<OwnedSemaphorePermit>,
) -> oneshot::Receiver<Led> {
    let (reply, rx) = oneshot::channel();
    let req = WriteRequest {
        op,
        tag,
        room,
        reply,
    };
    if let Err(mpsc::error::SendError(req)) = node.writes.send(req) {
        let _ = req.reply.send(refused(Reply::new(
            ErrorCode::TryAgain,
            "node is shutting down",
        )));
    }
    rx
}

/// Wait until `seq` is committed, as long as this node stays leader of the same epoch.
pub async fn wait_committed(node: &Node, seq: u64) -> Result<(), Reply> {
    let mut committed = node.committed.subscribe();
    let mut role = node.role.subscribe();
    let epoch = role.borrow().epoch;
    let timeout = node.config.write_timeout;
    let wait = async {
        loop {
            let st = role.borrow_and_update().clone();
            if st.epoch != epoch || st.role != Role::Leader {
                return Err(Reply::new(
                    ErrorCode::TryAgain,
                    format!("leadership changed before seq {seq} was committed; retry"),
                ));
            }
            if *committed.borrow_and_update() >= seq {
                return Ok(());
            }
            tokio::select! {
                r = committed.changed() => if r.is_err() { return Err(shutting_down()) },
                r = role.changed() => if r.is_err() { return Err(shutting_down()) },
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(Reply::new(
            ErrorCode::TryAgain,
            format!(
                "seq {seq} is applied on the leader but not yet on {} follower(s) within {:?}",
                node.config.min_in_sync, timeout
            ),
        )),
    }
}

/// The reply to a write while the leader hands over to another node.
pub fn frozen() -> Reply {
    Reply::new(
        ErrorCode::TryAgain,
        "the leader is handing over to another node (switchover); retry",
    )
}

fn shutting_down() -> Reply {
    Reply::new(ErrorCode::TryAgain, "node is shutting down")
}

/// The committer task: runs for the life of the process, whatever the role.
pub async fn run(node: Arc<Node>, mut queue: mpsc::UnboundedReceiver<WriteRequest>) {
    let mut store = node.store.clone();
    while let Some(first) = queue.recv().await {
        let mut bytes = first.op.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX_OPS && bytes < BATCH_MAX_BYTES {
            match queue.try_recv() {
                Ok(req) => {
                    bytes += req.op.len();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        let applying = node.applying.lock().await;
        if node.is_frozen() {
            for req in batch {
                let _ = req.reply.send(refused(frozen()));
            }
            continue;
        }
        let st = node.role_state();
        if st.role != Role::Leader {
            let leader = st.leader.unwrap_or_else(|| "?".into());
            for req in batch {
                let reply = Reply::new(ErrorCode::NotLeader, leader.clone());
                let _ = req.reply.send(refused(reply));
            }
            continue;
        }
        let writes: Vec<(Op, Option<(String, u64)>)> = batch
            .iter()
            .map(|r| (r.op.clone(), r.tag.clone()))
            .collect();
        let expect = *node.applied.borrow();
        let started = std::time::Instant::now();
        let applied = store.apply_lead(&writes, st.epoch, expect).await;
        node.metrics.redis("apply_batch", started.elapsed());
        match applied {
            Ok(results) => {
                let mut last = None;
                {
                    let mut cache = node.cache.lock().expect("lock");
                    for led in &results {
                        if let Led::Applied(e) | Led::Refused { entry: e, .. } = led {
                            last = Some(e.seq);
                            cache.push(e.clone());
                        }
                    }
                }
                node.metrics.batch(writes.len(), started.elapsed(), last);
                if let Some(seq) = last {
                    node.set_applied(seq, st.epoch);
                    node.commit_applied(seq);
                }
                for (req, led) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(led);
                }
            }
            Err(Error::Lost { expected, found }) if found > expected => {
                // The store is *ahead*: an earlier batch ran but its reply was lost (its Redis
                // restarted), and reading the position failed then too. Nothing was lost: take
                // the store's position, and let these clients retry (their tags make it safe).
                tracing::warn!(
                    "{}: the store is at seq {found}, ahead of {expected}: a batch applied \
                     before its reply was lost; taking the store's position",
                    node.id
                );
                if let Ok(at) = store.positions().await {
                    if at.applied > expected {
                        node.set_applied(at.applied, at.applied_epoch);
                        node.commit_applied(at.applied);
                    }
                }
                let reply = Reply::new(ErrorCode::TryAgain, "the store moved ahead; retry");
                for req in batch {
                    let _ = req.reply.send(refused(reply.clone()));
                }
            }
            Err(e @ Error::Lost { .. }) => {
                tracing::error!("{}: {e}; stepping down until given a new epoch", node.id);
                crate::role::step_down(&node, &e.to_string()).await;
                for req in batch {
                    let _ = req.reply.send(refused(e.to_reply()));
                }
            }
            Err(e) => {
                tracing::warn!("applying a batch of {} writes failed: {e}", writes.len());
                // The script may have run before the failure: take the store's position as the
                // truth (the clients were told to retry; their tags make a retry safe).
                match store.positions().await {
                    Ok(at) if at.applied > expect => {
                        node.set_applied(at.applied, at.applied_epoch);
                        node.commit_applied(at.applied);
                    }
                    Ok(at) if at.applied < expect => {
                        let lost = Error::Lost {
                            expected: expect,
                            found: at.applied,
                        };
                        crate::role::step_down(&node, &lost.to_string()).await;
                    }
                    _ => {}
                }
                let reply = e.to_reply();
                for req in batch {
                    let _ = req.reply.send(refused(reply.clone()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        drop(applying);
    }
}
