//! The role a node persists (epoch, role, leader), so a restart knows what it was.

use super::{SavedRole, Store};
use crate::error::{Error, Result};

impl Store {
    /// The persisted role.
    pub async fn load_role(&mut self) -> Result<SavedRole> {
        let (epoch, role, leader): (Option<u64>, Option<String>, Option<String>) = redis::pipe()
            .get("meta:epoch")
            .get("meta:role")
            .get("meta:leader")
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("load role", e))?;
        Ok(SavedRole {
            epoch: epoch.unwrap_or(0),
            role: role.unwrap_or_default(),
            leader: leader.unwrap_or_default(),
        })
    }

    /// Persist the role (atomically).
    pub async fn save_role(&mut self, saved: &SavedRole) -> Result<()> {
        redis::pipe()
            .atomic()
            .set("meta:epoch", saved.epoch)
            .set("meta:role", &saved.role)
            .set("meta:leader", &saved.leader)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("save role", e))
    }
}
