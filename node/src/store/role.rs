//! The role a node persists (epoch, role, leader, a learner's spans), so a restart knows what
//! it was.

use super::{SavedRole, Store};
use crate::error::{Error, Result};

impl Store {
    /// The persisted role.
    pub async fn load_role(&mut self) -> Result<SavedRole> {
        type Saved = (Option<u64>, Option<String>, Option<String>, Option<String>);
        let (epoch, role, leader, spans): Saved = redis::pipe()
            .get("meta:epoch")
            .get("meta:role")
            .get("meta:leader")
            .get("meta:learn")
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("load role", e))?;
        Ok(SavedRole {
            epoch: epoch.unwrap_or(0),
            role: role.unwrap_or_default(),
            leader: leader.unwrap_or_default(),
            spans: spans.unwrap_or_default(),
        })
    }

    /// Persist the role (atomically).
    pub async fn save_role(&mut self, saved: &SavedRole) -> Result<()> {
        redis::pipe()
            .atomic()
            .set("meta:epoch", saved.epoch)
            .set("meta:role", &saved.role)
            .set("meta:leader", &saved.leader)
            .set("meta:learn", &saved.spans)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("save role", e))
    }

    /// Mark the store as needing a full resync before it may serve or lead again (a learner
    /// told to copy other hashes than it holds). Survives a restart: the follower loop
    /// resyncs a store so marked.
    pub async fn require_resync(&mut self) -> Result<()> {
        redis::cmd("SET")
            .arg("meta:resyncing")
            .arg(1)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("mark resync", e))
    }
}
