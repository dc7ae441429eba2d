//! The read barrier that makes follower reads strongly consistent.
//!
//! A read that starts after a write was acknowledged must see it. A follower cannot know that
//! from its own log alone (an acknowledgement may be in flight), so — as the seed document says
//! — it asks the leader for the latest sequence id (`REPL.INDEX`): the leader answers its commit
//! index, and the read waits until the follower has applied at least that far. Concurrent reads
//! share one round trip: requests that arrive while a query is in flight wait for the next one,
//! which is sent as soon as the previous answer arrives.

use crate::node::Node;
use cleave_proto::{Client, Command, ErrorCode, Frame, Reply};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<u64, Reply>>;

/// A handle to the batching task.
#[derive(Clone)]
pub struct ReadIndex {
    requests: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndex {
    /// Start the batching task for `node`.
    pub fn start(node: Arc<Node>) -> ReadIndex {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(node, rx));
        ReadIndex { requests }
    }

    /// The leader's commit index, fetched after this call began.
    pub async fn get(&self) -> Result<u64, Reply> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| unavailable("read-index task stopped"))?;
        rx.await
            .map_err(|_| unavailable("read-index task stopped"))?
    }
}

fn unavailable(why: &str) -> Reply {
    Reply::new(
        ErrorCode::TryAgain,
        format!("cannot confirm freshness with the leader: {why}"),
    )
}

async fn run(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut client: Option<(String, Client)> = None;
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let st = node.role_state();
        let result = match st.leader {
            Some(leader) => ask(&mut client, &leader, st.epoch, node.config.sync_timeout).await,
            None => Err(unavailable("no leader known")),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

async fn ask(
    client: &mut Option<(String, Client)>,
    leader: &str,
    epoch: u64,
    timeout: std::time::Duration,
) -> Result<u64, Reply> {
    if client.as_ref().is_none_or(|(addr, _)| addr != leader) {
        let c = Client::connect(leader)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        *client = Some((leader.to_string(), c));
    }
    let (_, c) = client.as_mut().expect("connected above");
    let answer = tokio::time::timeout(timeout, c.call(&Command::ReplIndex { epoch })).await;
    match answer {
        Ok(Ok(Frame::Integer(n))) => Ok(n as u64),
        Ok(Ok(other)) => {
            *client = None;
            Err(unavailable(&format!("unexpected answer {other:?}")))
        }
        Ok(Err(e)) => {
            *client = None;
            Err(unavailable(&e.to_string()))
        }
        Err(_) => {
            *client = None;
            Err(unavailable("the leader did not answer in time"))
        }
    }
}
