//! Splits, the pure part: what moves when the desired HashRanges differ from the served table,
//! and the recorded state of a split in progress. (The steps that talk to nodes are in
//! [`super::cutover`]; the procedure is described in `docs/split.md`.)
//!
//! A split is declarative: the served table (the last one built, `CoreState::table`) says who
//! owns each hash now, the HashRange specs say who should. Their difference is a *move*. The
//! one move carried out is a split into a new cluster: one contiguous range of one source
//! cluster to a cluster that owns nothing yet. Anything else (moving a range between two
//! clusters that both own ranges, several targets at once) is refused with a reason, and the
//! served table stays as it is: nothing moves without its data.

use cleave_proto::range::{HashRange, RangeTable};
use serde::{Deserialize, Serialize};

/// One range changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The cluster that owns the range now.
    pub source: String,
    /// The cluster that should own it.
    pub target: String,
    /// First hash, inclusive.
    pub start: u32,
    /// Last hash, inclusive.
    pub end: u32,
    /// The source's ranges once the move is done.
    pub kept: Vec<(u32, u32)>,
}

/// Where a split is. Each phase is recorded before its step is taken, and every step is safe to
/// repeat, so an operator that restarts resumes where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SplitPhase {
    /// The target's nodes learn from the source's leader (snapshot, then the live log).
    Cloning,
    /// The source is being told to stop owning the moving range (`NODE.OWN`).
    Fencing,
    /// The fence is committed at `fence_seq`; the target must apply it, then the commit point.
    CuttingOver,
    /// Committed: the target leads the moved range under the new table; both sides delete the
    /// other's keys.
    Cleaning,
    /// The desired set stopped asking for a split whose fence may have been sent: the source is
    /// being given back all its served ranges under `table_epoch` (recorded before it is sent).
    /// An aborting split never commits, even if the split is asked for again meanwhile: the
    /// source may already own the range again under that epoch, so a table giving it to the
    /// target would let both accept writes for it.
    Aborting,
}

/// A split in progress, as the operator records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitState {
    /// The cluster giving the range away.
    pub source: String,
    /// The new cluster taking it.
    pub target: String,
    /// First hash of the moving range.
    pub start: u32,
    /// Last hash of the moving range.
    pub end: u32,
    /// The source's ranges after the split.
    pub kept: Vec<(u32, u32)>,
    /// The table epoch of the source's fence (`NODE.OWN` with `kept`).
    pub fence_epoch: u64,
    /// The epoch of the table that moves the range (the commit point); the target's ownership
    /// carries it too.
    pub table_epoch: u64,
    /// Where it is.
    pub phase: SplitPhase,
    /// The seq of the source's fence entry, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_seq: Option<u64>,
    /// When it began (ms since the Unix epoch).
    pub began_ms: u64,
}

impl SplitState {
    /// A new split of `m`, whose table epochs come after `base` (the highest table or ownership
    /// epoch used so far): the fence takes `base + 1`, the new table `base + 2` — at least: each
    /// is raised above every epoch used meanwhile when it is taken (see
    /// [`super::plan::epochs_used`]).
    pub fn begin(m: &Move, base: u64, now_ms: u64) -> SplitState {
        SplitState {
            source: m.source.clone(),
            target: m.target.clone(),
            start: m.start,
            end: m.end,
            kept: m.kept.clone(),
            fence_epoch: base + 1,
            table_epoch: base + 2,
            phase: SplitPhase::Cloning,
            fence_seq: None,
            began_ms: now_ms,
        }
    }

    /// Whether the commit point has passed (the target serves the range).
    pub fn committed(&self) -> bool {
        self.phase == SplitPhase::Cleaning
    }

    /// Whether this split is the move `m` (the desired set still asks for it).
    pub fn is(&self, m: &Move) -> bool {
        self.source == m.source
            && self.target == m.target
            && (self.start, self.end) == (m.start, m.end)
    }
}

/// The owner of every hash under `ranges`, as sorted `(start, end, cluster)` pieces.
fn pieces(ranges: &[HashRange]) -> Vec<(u32, u32, &str)> {
    let mut p: Vec<(u32, u32, &str)> = ranges
        .iter()
        .map(|r| (r.start, r.end, r.cluster.as_str()))
        .collect();
    p.sort();
    p
}

/// Merge adjacent spans.
pub(crate) fn merged(mut spans: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    spans.sort();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(s) => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// What moves from the served table to the desired ranges (both must tile the hash space).
/// `Ok(None)`: every hash keeps its owner (the table may still be re-cut). `Err`: a change that
/// is not a split into a new cluster.
pub fn find_move(served: &RangeTable, desired: &[HashRange]) -> Result<Option<Move>, String> {
    let now = pieces(&served.ranges);
    let want = pieces(desired);
    // Every overlap of a served piece and a desired piece whose owners differ.
    let mut moved: Vec<(u32, u32, &str, &str)> = Vec::new();
    for &(ws, we, to) in &want {
        for &(ns, ne, from) in &now {
            let (s, e) = (ws.max(ns), we.min(ne));
            if s <= e && from != to {
                moved.push((s, e, from, to));
            }
        }
    }
    if moved.is_empty() {
        return Ok(None);
    }
    moved.sort();
    let (s0, _, source, target) = moved[0];
    let mut end = moved[0].1;
    for &(s, e, from, to) in &moved[1..] {
        if (from, to) != (source, target) {
            return Err(format!(
                "only one split at a time: {source} → {target} and {from} → {to} both asked"
            ));
        }
        if end.checked_add(1) != Some(s) {
            return Err(format!(
                "a split moves one contiguous range; {source} → {target} asks for several"
            ));
        }
        end = e;
    }
    if now.iter().any(|&(_, _, c)| c == target) {
        return Err(format!(
            "{target} already owns ranges: a range moves only into a new FileCluster (a split); \
             merges and rebalancing between existing clusters are not supported"
        ));
    }
    let kept = merged(
        want.iter()
            .filter(|&&(_, _, c)| c == source)
            .map(|&(s, e, _)| (s, e))
            .collect(),
    );
    if kept.is_empty() {
        return Err(format!(
            "{source} would own nothing: a split keeps part of the range on the source"
        ));
    }
    Ok(Some(Move {
        source: source.to_string(),
        target: target.to_string(),
        start: s0,
        end,
        kept,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MAX: u32 = u32::MAX;

    fn r(start: u32, end: u32, cluster: &str) -> HashRange {
        HashRange {
            start,
            end,
            cluster: cluster.into(),
        }
    }

    fn table(ranges: Vec<HashRange>) -> RangeTable {
        RangeTable {
            epoch: 3,
            ranges,
            clusters: BTreeMap::new(),
        }
    }

    #[test]
    fn the_same_owners_move_nothing_even_when_recut() {
        let served = table(vec![r(0, 99, "a"), r(100, MAX, "b")]);
        assert_eq!(find_move(&served, &served.ranges), Ok(None));
        let recut = vec![r(0, 49, "a"), r(50, 99, "a"), r(100, MAX, "b")];
        assert_eq!(find_move(&served, &recut), Ok(None));
    }

    #[test]
    fn halving_a_range_into_a_new_cluster_is_a_split() {
        let served = table(vec![r(0, 99, "a"), r(100, MAX, "b")]);
        let desired = vec![r(0, 49, "a"), r(50, 99, "c"), r(100, MAX, "b")];
        let m = find_move(&served, &desired).unwrap().unwrap();
        assert_eq!(
            m,
            Move {
                source: "a".into(),
                target: "c".into(),
                start: 50,
                end: 99,
                kept: vec![(0, 49)],
            }
        );
        let st = SplitState::begin(&m, 7, 1);
        assert_eq!((st.fence_epoch, st.table_epoch), (8, 9));
        assert!(st.is(&m) && !st.committed());
    }

    #[test]
    fn the_moving_half_may_be_the_lower_one_and_kept_ranges_merge() {
        let served = table(vec![r(0, MAX, "a")]);
        let desired = vec![r(0, 9, "n"), r(10, 19, "a"), r(20, MAX, "a")];
        let m = find_move(&served, &desired).unwrap().unwrap();
        assert_eq!((m.start, m.end, m.kept), (0, 9, vec![(10, MAX)]));
    }

    #[test]
    fn anything_but_one_split_into_a_new_cluster_is_refused() {
        let served = table(vec![r(0, 99, "a"), r(100, MAX, "b")]);
        // Into an existing cluster.
        let e = find_move(&served, &[r(0, 49, "a"), r(50, MAX, "b")]).unwrap_err();
        assert!(e.contains("already owns"), "{e}");
        // Two targets at once.
        let e = find_move(
            &served,
            &[
                r(0, 49, "a"),
                r(50, 99, "c"),
                r(100, 199, "b"),
                r(200, MAX, "d"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("one split at a time"), "{e}");
        // Two separate pieces to one target.
        let e = find_move(
            &served,
            &[
                r(0, 9, "c"),
                r(10, 89, "a"),
                r(90, 99, "c"),
                r(100, MAX, "b"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("contiguous"), "{e}");
        // The whole source.
        let e = find_move(&served, &[r(0, 99, "c"), r(100, MAX, "b")]).unwrap_err();
        assert!(e.contains("would own nothing"), "{e}");
    }
}
