//! The range table: which cluster owns which hash keys, and where that cluster's nodes are.
//!
//! Pure data and arithmetic, no I/O. The table is versioned by an *epoch*: a router accepts a
//! pushed table only when its epoch is higher than the one it serves, so concurrent or replayed
//! pushes can never move it backwards.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The smallest hash key.
pub const HASH_MIN: u32 = 0;
/// The largest hash key.
pub const HASH_MAX: u32 = u32::MAX;

/// An inclusive range of hash keys owned by one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashRange {
    /// First key, inclusive.
    pub start: u32,
    /// Last key, inclusive.
    pub end: u32,
    /// Name of the owning FileCluster.
    pub cluster: String,
}

impl HashRange {
    /// Whether `hash` falls in this range.
    pub fn contains(&self, hash: u32) -> bool {
        self.start <= hash && hash <= self.end
    }
}

/// The midpoint of a split: `[s, e]` becomes `[s, m]` and `[m + 1, e]`.
///
/// Returns `None` for a single-key range, which cannot be split.
pub fn split_point(start: u32, end: u32) -> Option<u32> {
    (start < end).then(|| start + (end - start) / 2)
}

/// The nodes of one cluster, as the router needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClusterMembers {
    /// Client addresses (`host:port`) of the cluster's nodes, leader hint first.
    pub nodes: Vec<String>,
    /// The address of the current leader, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// Why a table is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No ranges at all.
    #[error("the table has no ranges")]
    Empty,
    /// A range with start > end.
    #[error("range [{0}, {1}] has start greater than end")]
    Inverted(u32, u32),
    /// Keys not covered by any range.
    #[error("hash keys [{0}, {1}] are not covered by any range")]
    Gap(u32, u32),
    /// Keys covered by two ranges.
    #[error("ranges [{0}, {1}] and [{2}, {3}] overlap")]
    Overlap(u32, u32, u32, u32),
    /// A range owned by a cluster the table does not describe.
    #[error("range [{0}, {1}] names cluster {2:?}, which has no members in the table")]
    UnknownCluster(u32, u32, String),
    /// A cluster with no nodes.
    #[error("cluster {0:?} has no nodes")]
    NoNodes(String),
}

/// A complete routing table: epoch, ranges tiling the hash space, and cluster members.
///
/// Unknown fields are refused (in the router's table file and in `TABLE.PUSH`): a misspelt
/// field such as `leadr` would otherwise be silently dropped and the table misread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeTable {
    /// Monotonic version; higher wins.
    pub epoch: u64,
    /// Ranges, sorted by start after [`RangeTable::validate`].
    pub ranges: Vec<HashRange>,
    /// Members of every cluster named by a range.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterMembers>,
}

impl RangeTable {
    /// Check that the ranges tile `[0, 2^32-1]` exactly, then sort them by start.
    pub fn validate(&mut self) -> Result<(), TableError> {
        validate_tiling(&mut self.ranges)?;
        for r in &self.ranges {
            match self.clusters.get(&r.cluster) {
                None => {
                    return Err(TableError::UnknownCluster(
                        r.start,
                        r.end,
                        r.cluster.clone(),
                    ))
                }
                Some(m) if m.nodes.is_empty() => {
                    return Err(TableError::NoNodes(r.cluster.clone()))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The range owning `hash`. Assumes a validated (sorted, tiling) table.
    pub fn lookup(&self, hash: u32) -> Option<&HashRange> {
        let i = self.ranges.partition_point(|r| r.start <= hash);
        self.ranges
            .get(i.checked_sub(1)?)
            .filter(|r| r.contains(hash))
    }

    /// The members of the cluster owning `hash`.
    pub fn route(&self, hash: u32) -> Option<(&HashRange, &ClusterMembers)> {
        let range = self.lookup(hash)?;
        Some((range, self.clusters.get(&range.cluster)?))
    }
}

/// Check that `ranges` tile the whole hash space with no gap and no overlap; sorts them.
pub fn validate_tiling(ranges: &mut [HashRange]) -> Result<(), TableError> {
    if ranges.is_empty() {
        return Err(TableError::Empty);
    }
    if let Some(r) = ranges.iter().find(|r| r.start > r.end) {
        return Err(TableError::Inverted(r.start, r.end));
    }
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut next: u64 = HASH_MIN as u64;
    let mut prev: Option<&HashRange> = None;
    for r in ranges.iter() {
        let start = r.start as u64;
        if start > next {
            return Err(TableError::Gap(next as u32, r.start - 1));
        }
        if start < next {
            let p = prev.expect("an overlap needs a previous range");
            return Err(TableError::Overlap(p.start, p.end, r.start, r.end));
        }
        next = r.end as u64 + 1;
        prev = Some(r);
    }
    if next <= HASH_MAX as u64 {
        return Err(TableError::Gap(next as u32, HASH_MAX));
    }
    Ok(())
}

impl fmt::Display for HashRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}] -> {}", self.start, self.end, self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u32, end: u32, cluster: &str) -> HashRange {
        HashRange {
            start,
            end,
            cluster: cluster.into(),
        }
    }

    fn table(ranges: Vec<HashRange>) -> RangeTable {
        let mut clusters = BTreeMap::new();
        for c in ["a", "b", "c"] {
            clusters.insert(
                c.into(),
                ClusterMembers {
                    nodes: vec![format!("{c}:1")],
                    leader: None,
                },
            );
        }
        RangeTable {
            epoch: 1,
            ranges,
            clusters,
        }
    }

    #[test]
    fn split_halves() {
        assert_eq!(split_point(0, u32::MAX), Some(2_147_483_647));
        assert_eq!(split_point(1, 10), Some(5));
        assert_eq!(split_point(7, 8), Some(7));
        assert_eq!(split_point(5, 5), None);
    }

    #[test]
    fn tiling_is_checked_exactly() {
        let m = split_point(0, u32::MAX).unwrap();
        assert!(table(vec![r(m + 1, u32::MAX, "b"), r(0, m, "a")])
            .validate()
            .is_ok());
        assert_eq!(table(vec![]).validate(), Err(TableError::Empty));
        assert_eq!(
            table(vec![r(5, 4, "a")]).validate(),
            Err(TableError::Inverted(5, 4))
        );
        assert_eq!(
            table(vec![r(1, u32::MAX, "a")]).validate(),
            Err(TableError::Gap(0, 0))
        );
        assert_eq!(
            table(vec![r(0, 10, "a")]).validate(),
            Err(TableError::Gap(11, u32::MAX))
        );
        assert_eq!(
            table(vec![r(0, 10, "a"), r(12, u32::MAX, "b")]).validate(),
            Err(TableError::Gap(11, 11))
        );
        assert_eq!(
            table(vec![r(0, 10, "a"), r(10, u32::MAX, "b")]).validate(),
            Err(TableError::Overlap(0, 10, 10, u32::MAX))
        );
        assert!(matches!(
            table(vec![r(0, u32::MAX, "zzz")]).validate(),
            Err(TableError::UnknownCluster(..))
        ));
    }

    #[test]
    fn lookup_finds_the_owner_at_the_edges() {
        let mut t = table(vec![r(0, 99, "a"), r(100, 199, "b"), r(200, u32::MAX, "c")]);
        t.validate().unwrap();
        let owner = |h| t.lookup(h).unwrap().cluster.clone();
        assert_eq!(owner(0), "a");
        assert_eq!(owner(99), "a");
        assert_eq!(owner(100), "b");
        assert_eq!(owner(199), "b");
        assert_eq!(owner(200), "c");
        assert_eq!(owner(u32::MAX), "c");
    }
}
