//! Splits, the steps that talk to nodes: fence the source, wait for the target to hold the
//! fence, commit, hand the range to the target; or abort before the commit point.
//!
//! Every step is recorded in [`CoreState::split`] before it is taken and is safe to repeat, so
//! an operator killed at any point resumes the split on its next pass:
//!
//! - **Cloning → Fencing**: once every target node learns from the source's current leader, in
//!   sync and within [`MAX_CLONE_LAG`] entries.
//! - **Fencing → CuttingOver**: `NODE.OWN fence-epoch kept` on the source's leader; its answer
//!   is the committed fence seq. From that entry on the source refuses the moving range
//!   (`-MOVED`): writes before it are in the log the target copies, writes after it were never
//!   applied. Repeating it logs a second, harmless entry.
//! - **CuttingOver → Cleaning (the commit point)**: once a target node holds the fence (a
//!   learner of the source's current leader, in sync, applied at or past the fence seq), the
//!   new table, the target's leader and its epoch (above every epoch its nodes or the source
//!   have seen) are recorded; then its other nodes follow that leader, it leads, it is given
//!   the moved range (`NODE.OWN table-epoch moved`), and the table goes to every router.
//! - **Cleaning**: the target is given its range again until its status shows it; the plan
//!   ends the split once every router serves the table and both sides deleted the other's keys.
//! - **Abort** (the desired set no longer asks for the split, before the commit point): the
//!   source is given back its served ranges under the new table epoch, then the split is
//!   forgotten.

use super::split::{merged, SplitPhase, SplitState};
use super::{admin, plan, probe, CoreState, Observed, Platform};
use crate::error::{Error, Result};
use cleave_proto::owned::Ownership;
use cleave_proto::range::{ClusterMembers, RangeTable};
use cleave_proto::status::{NodeStatus, Role};
use std::time::Duration;

/// The target starts the cutover only when it is at most this many entries behind: the moving
/// range's write pause lasts as long as the target takes to apply them.
pub const MAX_CLONE_LAG: u64 = 2_000;
/// How long one pass waits for the target to apply the fence (the write pause of the moving
/// range); a slower target is waited for on the next pass.
pub const FENCE_WAIT: Duration = Duration::from_secs(10);

/// Move the split in progress one or more steps forward. Returns the new table when the commit
/// point was passed in this call (the caller pushes it to the routers).
pub async fn advance<P: Platform>(
    platform: &mut P,
    state: &mut CoreState,
    observed: &Observed,
) -> Result<Option<RangeTable>> {
    let Some(mut sp) = state.split.clone() else {
        return Ok(None);
    };
    if sp.phase == SplitPhase::Aborting {
        return Ok(None); // an aborting split never moves forward (see `abort`)
    }
    let Some((_, src_addr, src_epoch)) = plan::recorded_leader(state, observed, &sp.source) else {
        return Ok(None);
    };
    if sp.phase == SplitPhase::Cloning {
        if !cloned(&sp, observed, &src_addr, src_epoch) {
            return Ok(None);
        }
        // The epochs reserved when the split began may have been taken since by tables a
        // failover published: the fence takes one above every epoch used so far.
        sp.fence_epoch = sp.fence_epoch.max(plan::epochs_used(state, observed) + 1);
        sp.table_epoch = sp.table_epoch.max(sp.fence_epoch + 1);
        sp.phase = SplitPhase::Fencing;
        record(platform, state, &sp).await?;
    }
    if sp.phase == SplitPhase::Fencing {
        // Fenced: the source refuses the moving range but keeps its keys, for an abort.
        let kept = Ownership {
            cluster: sp.source.clone(),
            epoch: sp.fence_epoch,
            ranges: sp.kept.clone(),
            fenced: true,
        };
        platform.may_act()?;
        let seq = admin(&src_addr, async |c| c.own(&kept).await).await?;
        tracing::info!(source = %sp.source, seq, "split fence committed");
        sp.phase = SplitPhase::CuttingOver;
        sp.fence_seq = Some(seq);
        state.owned_epoch = state.owned_epoch.max(sp.fence_epoch);
        record(platform, state, &sp).await?;
    }
    if sp.phase == SplitPhase::CuttingOver {
        return commit(platform, state, sp, observed, (&src_addr, src_epoch)).await;
    }
    // Cleaning: the target must own the moved range, and the source's record must no longer be
    // the fence (so that its replicas delete the moved keys); each repeated until the leader's
    // status shows it.
    if let Some((_, addr, _)) = plan::recorded_leader(state, observed, &sp.target) {
        if !owns_at(observed, &sp.target, &addr, sp.table_epoch) {
            give_target(platform, &sp, &addr).await?;
        }
    }
    if let Some((_, addr, _)) = plan::recorded_leader(state, observed, &sp.source) {
        if !owns_at(observed, &sp.source, &addr, sp.table_epoch) {
            settle_source(platform, &sp, &addr).await?;
        }
    }
    Ok(None)
}

/// Undo a split whose fence may have been sent: the source owns its served ranges again, then
/// the split is forgotten. The abort's epoch (above every epoch used, the fence's included) is
/// recorded with phase `aborting` before it is sent: from then on the split never commits (the
/// source may own the range again under that epoch even if its answer was lost) and no later
/// table takes that epoch. Repeated on every pass until the source confirms.
pub async fn abort<P: Platform>(
    platform: &mut P,
    state: &mut CoreState,
    sp: &SplitState,
    observed: &Observed,
) -> Result<()> {
    let mut sp = sp.clone();
    if sp.phase != SplitPhase::Aborting {
        sp.table_epoch = sp.table_epoch.max(plan::epochs_used(state, observed) + 1);
        sp.phase = SplitPhase::Aborting;
        record(platform, state, &sp).await?;
    }
    let Some((_, addr, _)) = plan::recorded_leader(state, observed, &sp.source) else {
        return Ok(());
    };
    let ranges: Vec<(u32, u32)> = state
        .table
        .iter()
        .flat_map(|t| t.ranges.iter())
        .filter(|r| r.cluster == sp.source)
        .map(|r| (r.start, r.end))
        .collect();
    let epoch = sp.table_epoch;
    let all = Ownership {
        cluster: sp.source.clone(),
        epoch,
        ranges: merged(ranges),
        fenced: false,
    };
    platform.may_act()?;
    admin(&addr, async |c| c.own(&all).await).await?;
    tracing::warn!(source = %sp.source, target = %sp.target, "split aborted: the source owns its ranges again");
    state.owned_epoch = state.owned_epoch.max(epoch);
    state.split = None;
    platform.save_state(state).await
}

/// Whether every target node learns from the source's leader, in sync and close enough.
fn cloned(sp: &SplitState, observed: &Observed, src_addr: &str, src_epoch: u64) -> bool {
    let src_applied = observed
        .clusters
        .get(&sp.source)
        .into_iter()
        .flatten()
        .find(|n| n.address == src_addr)
        .and_then(|n| n.status.as_ref())
        .map_or(0, |s| s.applied_seq);
    let target = observed
        .clusters
        .get(&sp.target)
        .cloned()
        .unwrap_or_default();
    !target.is_empty()
        && target.iter().all(|n| {
            n.status.as_ref().is_some_and(|s| {
                learns_from(s, src_addr, src_epoch) && s.applied_seq + MAX_CLONE_LAG >= src_applied
            })
        })
}

/// A learner of `leader` at `epoch`, in sync: its log matched the leader's when it last
/// fetched, so every entry it applied is the leader's.
fn learns_from(s: &NodeStatus, leader: &str, epoch: u64) -> bool {
    s.learner
        && s.role == Role::Follower
        && s.in_sync
        && s.epoch == epoch
        && s.leader.as_deref() == Some(leader)
}

/// Wait for a target node that holds the fence, then pass the commit point and hand over.
async fn commit<P: Platform>(
    platform: &mut P,
    state: &mut CoreState,
    mut sp: SplitState,
    observed: &Observed,
    (src_addr, src_epoch): (&str, u64),
) -> Result<Option<RangeTable>> {
    let fence = sp.fence_seq.unwrap_or(u64::MAX);
    let nodes = observed
        .clusters
        .get(&sp.target)
        .cloned()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + FENCE_WAIT;
    let (leader, statuses) = loop {
        let statuses: Vec<Option<NodeStatus>> =
            futures::future::join_all(nodes.iter().map(|n| probe(&n.address)))
                .await
                .into_iter()
                .map(|r| r.ok())
                .collect();
        let best = nodes
            .iter()
            .zip(&statuses)
            .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
            .filter(|(_, s)| learns_from(s, src_addr, src_epoch) && s.applied_seq >= fence)
            .max_by_key(|(_, s)| s.applied_seq)
            .map(|(n, _)| n.clone());
        if let Some(n) = best {
            break (n, statuses);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotYet {
                what: format!("split of {} into {}", sp.source, sp.target),
                why: format!(
                    "no node of {} holds the fence at seq {fence} yet",
                    sp.target
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Above every epoch the target's nodes and the source have seen.
    let seen = statuses
        .iter()
        .flatten()
        .map(|s| s.epoch)
        .chain(
            observed
                .clusters
                .get(&sp.source)
                .into_iter()
                .flatten()
                .filter_map(|n| n.status.as_ref().map(|s| s.epoch)),
        )
        .max()
        .unwrap_or(0);
    let epoch = seen.max(src_epoch) + 1;
    let Some(mut table) = state.table.clone() else {
        return Ok(None); // a split begins only from a served table
    };
    // Tables published since the fence (a failover's) may have taken the epoch reserved for
    // this one; a router that holds such a table would never be pushed an equal epoch.
    sp.table_epoch = sp.table_epoch.max(plan::epochs_used(state, observed) + 1);
    table.epoch = sp.table_epoch;
    table.ranges = split_ranges(&table, &sp);
    let mut addrs = vec![leader.address.clone()];
    addrs.extend(
        nodes
            .iter()
            .filter(|n| n.name != leader.name)
            .map(|n| n.address.clone()),
    );
    table.clusters.insert(
        sp.target.clone(),
        ClusterMembers {
            nodes: addrs,
            leader: Some(leader.address.clone()),
        },
    );
    // The commit point.
    let cs = state.clusters.entry(sp.target.clone()).or_default();
    cs.leader = Some(leader.name.clone());
    cs.epoch = epoch;
    state.table = Some(table.clone());
    state.owned_epoch = state.owned_epoch.max(sp.table_epoch);
    sp.phase = SplitPhase::Cleaning;
    record(platform, state, &sp).await?;
    tracing::info!(source = %sp.source, target = %sp.target, leader = %leader.name, epoch, table = sp.table_epoch, "split committed");
    for n in nodes.iter().filter(|n| n.name != leader.name) {
        platform.may_act()?;
        if let Err(e) = admin(&n.address, async |c| c.follow(epoch, &leader.address).await).await {
            tracing::warn!("split: {} did not follow {} yet: {e}", n.name, leader.name);
        }
    }
    platform.may_act()?;
    admin(&leader.address, async |c| c.lead(epoch).await).await?;
    give_target(platform, &sp, &leader.address).await?;
    // Repeated in the cleaning phase until it took: the table must not wait for it.
    if let Err(e) = settle_source(platform, &sp, src_addr).await {
        tracing::warn!("split: {} keeps its fence record for now: {e}", sp.source);
    }
    Ok(Some(table))
}

/// `NODE.OWN table-epoch moved` on the target's leader.
async fn give_target<P: Platform>(platform: &mut P, sp: &SplitState, addr: &str) -> Result<()> {
    let moved = Ownership {
        cluster: sp.target.clone(),
        epoch: sp.table_epoch,
        ranges: vec![(sp.start, sp.end)],
        fenced: false,
    };
    platform.may_act()?;
    admin(addr, async |c| c.own(&moved).await).await?;
    Ok(())
}

/// `NODE.OWN table-epoch kept` on the source's leader, after the commit point: the same ranges
/// as the fence, no longer fenced, so the source's replicas delete the moved keys.
async fn settle_source<P: Platform>(platform: &mut P, sp: &SplitState, addr: &str) -> Result<()> {
    let kept = Ownership {
        cluster: sp.source.clone(),
        epoch: sp.table_epoch,
        ranges: sp.kept.clone(),
        fenced: false,
    };
    platform.may_act()?;
    admin(addr, async |c| c.own(&kept).await).await?;
    Ok(())
}

/// Whether the node of `cluster` at `addr` reports an ownership record of `epoch` or later.
fn owns_at(observed: &Observed, cluster: &str, addr: &str, epoch: u64) -> bool {
    observed
        .clusters
        .get(cluster)
        .into_iter()
        .flatten()
        .any(|n| n.address == addr && n.status.as_ref().is_some_and(|s| s.own_epoch >= epoch))
}

/// The table's ranges with the moving range cut out of the source's and given to the target.
fn split_ranges(table: &RangeTable, sp: &SplitState) -> Vec<cleave_proto::HashRange> {
    let mut out = Vec::new();
    for r in &table.ranges {
        let (s, e) = (r.start.max(sp.start), r.end.min(sp.end));
        if r.cluster != sp.source || s > e {
            out.push(r.clone());
            continue;
        }
        if r.start < s {
            out.push(cleave_proto::HashRange {
                start: r.start,
                end: s - 1,
                cluster: r.cluster.clone(),
            });
        }
        out.push(cleave_proto::HashRange {
            start: s,
            end: e,
            cluster: sp.target.clone(),
        });
        if e < r.end {
            out.push(cleave_proto::HashRange {
                start: e + 1,
                end: r.end,
                cluster: r.cluster.clone(),
            });
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

/// Record the split's new phase before acting on it.
async fn record<P: Platform>(
    platform: &mut P,
    state: &mut CoreState,
    sp: &SplitState,
) -> Result<()> {
    platform.may_act()?;
    state.split = Some(sp.clone());
    platform.save_state(state).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_proto::HashRange;

    #[test]
    fn the_moving_range_is_cut_out_of_the_source() {
        let table = RangeTable {
            epoch: 1,
            ranges: vec![
                HashRange {
                    start: 0,
                    end: 99,
                    cluster: "a".into(),
                },
                HashRange {
                    start: 100,
                    end: u32::MAX,
                    cluster: "b".into(),
                },
            ],
            clusters: Default::default(),
        };
        let sp = SplitState::begin(
            &super::super::split::Move {
                source: "a".into(),
                target: "c".into(),
                start: 50,
                end: 99,
                kept: vec![(0, 49)],
            },
            1,
            0,
        );
        let got: Vec<(u32, u32, String)> = split_ranges(&table, &sp)
            .into_iter()
            .map(|r| (r.start, r.end, r.cluster))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 49, "a".into()),
                (50, 99, "c".into()),
                (100, u32::MAX, "b".into())
            ]
        );
        assert_eq!(
            merged(vec![(5, 9), (0, 4), (20, 30)]),
            vec![(0, 9), (20, 30)]
        );
    }
}
