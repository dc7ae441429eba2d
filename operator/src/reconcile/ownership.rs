//! Ownership outside splits: every cluster's leader is told which hash ranges its cluster owns.
//!
//! A node without an ownership record (`NODE.OWN`) owns every hash in its own eyes: the
//! routers never send it another cluster's paths, but a client connected straight to one of
//! its nodes would be answered `NotFound` (or served bytes long replaced) for a path that
//! another cluster owns, instead of `-MOVED`. So once a table is committed (every ready router
//! serves it) and no split is in progress, the leader of each cluster in it that has no record
//! yet is given its ranges of that table, under that table's epoch.
//!
//! Why this is safe to repeat and to race: the record is a log entry like any write, so every
//! replica and every later leader agrees on it; a table gives each cluster one answer, so a
//! repeat with the same epoch logs the same ranges again; and a split records epochs above
//! every table, so a late repeat arriving after a split's record is refused as older (`STALE`).

use super::{admin, CoreState, Observed, Platform};
use crate::error::Result;
use cleave_proto::owned::Ownership;
use cleave_proto::range::RangeTable;
use cleave_proto::status::Role;

/// The ownership records the committed table asks for and the leaders do not have yet: for
/// each cluster of `table` whose recorded leader answers as leader at the recorded epoch with
/// no record at all, its ranges of `table`. Pure.
pub fn missing(
    table: &RangeTable,
    state: &CoreState,
    observed: &Observed,
) -> Vec<(String, Ownership)> {
    if state.split.is_some() || state.committed_epoch != table.epoch {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (cluster, cs) in &state.clusters {
        let Some(leader) = cs.leader.as_deref() else {
            continue;
        };
        let ranges: Vec<(u32, u32)> = table
            .ranges
            .iter()
            .filter(|r| &r.cluster == cluster)
            .map(|r| (r.start, r.end))
            .collect();
        if ranges.is_empty() {
            continue;
        }
        let answered = observed
            .clusters
            .get(cluster)
            .into_iter()
            .flatten()
            .find(|n| n.name == leader)
            .and_then(|n| n.status.as_ref().map(|s| (n.address.clone(), s)));
        let Some((address, status)) = answered else {
            continue;
        };
        if status.role == Role::Leader && status.epoch == cs.epoch && status.own_epoch == 0 {
            let own = Ownership {
                cluster: cluster.clone(),
                epoch: table.epoch,
                ranges,
                fenced: false,
            };
            out.push((address, own));
        }
    }
    out
}

/// Give every leader [`missing`] names its ranges. The epoch is recorded as given first, so
/// that later tables and splits take epochs above it.
pub async fn give_missing<P: Platform>(
    platform: &mut P,
    table: &RangeTable,
    state: &mut CoreState,
    observed: &Observed,
) -> Result<Vec<String>> {
    let wanted = missing(table, state, observed);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    if state.owned_epoch < table.epoch {
        platform.may_act()?;
        state.owned_epoch = table.epoch;
        platform.save_state(state).await?;
    }
    let mut errors = Vec::new();
    for (address, own) in wanted {
        platform.may_act()?;
        tracing::info!(cluster = %own.cluster, epoch = own.epoch, ranges = ?own.ranges, "giving the leader its ranges");
        if let Err(e) = admin(&address, async |c| c.own(&own).await).await {
            errors.push(format!("ownership of {}: {e}", own.cluster));
        }
    }
    Ok(errors)
}
