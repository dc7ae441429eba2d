//! What `NODE.STATUS` reports from the store (the log's extent, the ownership record), kept in
//! memory and refreshed in the background.
//!
//! The operator judges a node alive by whether its status answers in time. Read from Redis on
//! every call, the status waited behind whatever the node's Redis connection was busy with: a
//! snapshot streamed to three learners of a split, a 32 MiB entry. A leader that was only busy
//! then looked dead, was replaced, and its successor, busy resyncing the others, looked dead in
//! turn: a failover storm (`operator/tests/split_large.rs` saw ten in a minute). So the status
//! answers from memory at once; these two values may be up to a refresh old, which the operator
//! tolerates (it repeats an idempotent `NODE.OWN` until a status shows it).

use crate::node::Node;
use cleave_proto::owned::Ownership;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the view is refreshed from the store.
pub const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// The store's state as last read.
#[derive(Debug, Clone, Default)]
pub struct StoreView {
    /// The log's first seq (0: empty).
    pub log_first: u64,
    /// Entries in the log.
    pub log_len: u64,
    /// The store's ownership record (`None`: none yet, everything is owned).
    pub own: Option<Ownership>,
}

/// Read the view once, now (`None` when the store did not answer). The positions read also
/// feeds `/metrics`: its round trip (`redis_duration{op="positions"}`) and the log's length.
pub async fn read(node: &Node) -> Option<StoreView> {
    let mut store = node.store.clone();
    let started = Instant::now();
    let at = store.positions().await.ok()?;
    node.metrics.redis("positions", started.elapsed());
    node.metrics.log_entries(at.len);
    let own = store.ownership().await.ok()?;
    Some(StoreView {
        log_first: at.first,
        log_len: at.len,
        own,
    })
}

/// Refresh the view for as long as the node runs.
pub async fn refresh(node: Arc<Node>) {
    loop {
        if let Some(view) = read(&node).await {
            *node.store_view.lock().expect("lock") = view;
        }
        tokio::time::sleep(REFRESH_EVERY).await;
    }
}
