//! The node's side of range ownership: deleting, in the background, the keys of hashes its
//! cluster no longer owns.
//!
//! What a cluster owns is a replicated record (`NODE.OWN`, applied through the log; see
//! `store/apply.lua`), checked by the leader for every write and by every node for every read.
//! Once a replica has applied a record that gives ranges away, nothing will ever write those
//! keys again there, so each replica deletes them on its own, at its own pace, and records the
//! table epoch it finished (`cleaned_epoch` in `NODE.STATUS`). A replica that is resyncing
//! waits: its store is being replaced, and the pass restarts afterwards.

use crate::error::Result;
use crate::node::Node;
use cleave_proto::status::Role;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a replica looks for a cleaning pass to run.
const CLEAN_INTERVAL: Duration = Duration::from_millis(500);

/// Run cleaning passes for as long as the node runs.
pub async fn clean_foreign_keys(node: Arc<Node>) {
    loop {
        tokio::time::sleep(CLEAN_INTERVAL).await;
        if let Err(e) = clean_once(&node).await {
            tracing::warn!("{}: cleaning foreign keys: {e}", node.id);
        }
    }
}

/// One complete pass, if the store's ownership has not been cleaned yet.
async fn clean_once(node: &Node) -> Result<()> {
    let mut store = node.store.clone();
    let resyncing = || node.role_state().role == Role::Resyncing;
    if resyncing() || store.is_resyncing().await? {
        return Ok(());
    }
    // A record of another cluster (copied from a split's source by a learner) is not this
    // cluster's: deleting by it would delete the very range the split hands over.
    let Some(own) = store
        .ownership()
        .await?
        .filter(|o| o.cluster == store.cluster())
    else {
        return Ok(());
    };
    // A split's fence: the range may still come back (an abort), so its keys stay until the
    // record after the commit point, which is not fenced.
    if own.fenced {
        return Ok(());
    }
    if store.cleaned_epoch().await? == Some(own.epoch) {
        node.cleaned_epoch.store(own.epoch, Ordering::Relaxed);
        return Ok(());
    }
    let gen = node.resync_gen.load(Ordering::SeqCst);
    let (mut cursor, mut deleted) = (0, 0);
    loop {
        let step = store.clean_step(&own, cursor).await?;
        deleted += step.deleted;
        let Some(next) = step.next else { break };
        cursor = next;
        if resyncing() || node.resync_gen.load(Ordering::SeqCst) != gen {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
    // Record the pass only if nothing replaced the store or the ownership meanwhile.
    if node.resync_gen.load(Ordering::SeqCst) != gen
        || store.is_resyncing().await?
        || store.ownership().await?.as_ref() != Some(&own)
    {
        return Ok(());
    }
    store.set_cleaned(&own).await?;
    node.cleaned_epoch.store(own.epoch, Ordering::Relaxed);
    tracing::info!(
        "{}: deleted {deleted} keys outside {own}: this replica holds exactly its ranges",
        node.id
    );
    Ok(())
}
