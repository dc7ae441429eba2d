//! Group commit: client writes queue up while the previous batch is in Redis, and the next batch
//! takes everything waiting — one pipelined round trip for many writes, each still atomic with
//! its own seq. A write is acknowledged only once `min_in_sync` followers have applied it.

use crate::node::Node;
use crate::op::Op;
use cleave_proto::{ErrorCode, Reply};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes in one batch.
const BATCH_MAX_OPS: usize = 512;
/// Most bytes in one batch.
const BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A write waiting for its seq.
#[derive(Debug)]
pub struct WriteRequest {
    /// The change.
    pub op: Op,
    /// Where its seq (or refusal) goes.
    pub reply: oneshot::Sender<Result<u64, Reply>>,
}

/// Queue a write; the returned receiver yields its seq once applied on the leader.
pub fn submit(node: &Node, op: Op) -> oneshot::Receiver<Result<u64, Reply>> {
    let (reply, rx) = oneshot::channel();
    if let Err(mpsc::error::SendError(req)) = node.writes.send(WriteRequest { op, reply }) {
        let _ = req.reply.send(Err(Reply::new(
            ErrorCode::TryAgain,
            "node is shutting down",
        )));
    }
    rx
}

/// Wait until `seq` is acknowledged by the quorum, as long as this node stays leader.
pub async fn wait_committed(node: &Node, seq: u64) -> Result<(), Reply> {
    let mut committed = node.committed.subscribe();
    let mut role = node.role.subscribe();
    let epoch = role.borrow().epoch;
    let timeout = node.config.write_timeout;
    let wait = async {
        loop {
            if *committed.borrow_and_update() >= seq {
                return Ok(());
            }
            let st = role.borrow_and_update().clone();
            if st.epoch != epoch || st.role != cleave_proto::status::Role::Leader {
                return Err(Reply::new(
                    ErrorCode::TryAgain,
                    format!("leadership changed before write {seq} was replicated; retry"),
                ));
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
                "write {seq} is applied on the leader but not yet on {} follower(s) within {:?}",
                node.config.min_in_sync, timeout
            ),
        )),
    }
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
        if !node.is_leader() {
            let leader = node.role_state().leader.unwrap_or_else(|| "?".into());
            for req in batch {
                let _ = req
                    .reply
                    .send(Err(Reply::new(ErrorCode::NotLeader, leader.clone())));
            }
            continue;
        }
        let ops: Vec<Op> = batch.iter().map(|r| r.op.clone()).collect();
        match store.apply_lead(&ops).await {
            Ok(results) => {
                let mut last = None;
                {
                    let mut cache = node.cache.lock().expect("lock");
                    for entry in results.iter().flatten() {
                        last = Some(entry.seq);
                        cache.push(entry.clone());
                    }
                }
                if let Some(seq) = last {
                    node.applied.send_replace(seq);
                    node.commit_applied(seq);
                }
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(result.map(|e| e.seq));
                }
            }
            Err(e) => {
                tracing::warn!("applying a batch of {} writes failed: {e}", ops.len());
                let reply = e.to_reply();
                for req in batch {
                    let _ = req.reply.send(Err(reply.clone()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
