//! Removing the keys of hashes the cluster no longer owns (after a split, each side keeps
//! exactly its own range).
//!
//! Every data key names its root hash (`cleave_proto::owned::hash_of_key`), so a pass is a
//! `SCAN` that deletes, by name alone, the keys outside the owned ranges. It is safe to run
//! beside writes: once the store's `own` record excludes a hash, no later entry touches a key of
//! that hash (the leader refuses them with `MOVED`, and followers apply only the leader's
//! entries), so nothing a pass deletes can come back, and nothing it keeps is affected.

use super::Store;
use crate::error::{Error, Result};
use cleave_proto::owned::{hash_of_key, Ownership};

/// Keys asked of `SCAN` per step.
const CLEAN_SCAN_COUNT: u64 = 512;
/// The node-local key recording the table epoch whose foreign keys are all gone (not
/// replicated: each replica cleans its own store; a full resync's `FLUSHDB` clears it).
const CLEANED_KEY: &str = "meta:cleaned";

/// One step of a cleaning pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStep {
    /// The cursor to continue from; `None` when the pass is complete.
    pub next: Option<u64>,
    /// Keys deleted by this step.
    pub deleted: u64,
}

impl Store {
    /// The table epoch whose cleaning pass completed on this replica, if any.
    pub async fn cleaned_epoch(&mut self) -> Result<Option<u64>> {
        redis::cmd("GET")
            .arg(CLEANED_KEY)
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("read the cleaned epoch", e))
    }

    /// Record that every key outside `own` is gone.
    pub async fn set_cleaned(&mut self, own: &Ownership) -> Result<()> {
        redis::cmd("SET")
            .arg(CLEANED_KEY)
            .arg(own.epoch)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("record the cleaned epoch", e))
    }

    /// One `SCAN` step from `cursor`: delete (`UNLINK`) the data keys whose hash `own` does not
    /// cover.
    pub async fn clean_step(&mut self, own: &Ownership, cursor: u64) -> Result<CleanStep> {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(CLEAN_SCAN_COUNT)
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("scan for foreign keys", e))?;
        let foreign: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| hash_of_key(k).is_some_and(|h| !own.contains(h)))
            .collect();
        if !foreign.is_empty() {
            redis::cmd("UNLINK")
                .arg(&foreign)
                .query_async::<()>(self.conn())
                .await
                .map_err(|e| Error::redis("delete foreign keys", e))?;
        }
        Ok(CleanStep {
            next: (next != 0).then_some(next),
            deleted: foreign.len() as u64,
        })
    }
}
