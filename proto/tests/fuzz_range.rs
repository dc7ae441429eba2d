//! Property tests of the range table: lookup and split arithmetic against a naive model, and
//! the tiling check against an independent description of what tiling means.

mod strategies;

use cleave_proto::range::{split_point, validate_tiling, HashRange, RangeTable, TableError};
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{members, range_table, tiling};

/// Linear scan: every range containing `h`.
fn owners(ranges: &[HashRange], h: u32) -> Vec<&HashRange> {
    ranges
        .iter()
        .filter(|r| r.start <= h && h <= r.end)
        .collect()
}

fn covered(ranges: &[HashRange], h: u32) -> bool {
    !owners(ranges, h).is_empty()
}

fn size(r: &HashRange) -> u64 {
    r.end as u64 - r.start as u64 + 1
}

/// Hashes worth probing in a table: every range's edges and their neighbours, plus randoms.
fn probes(ranges: &[HashRange], extra: &[u32]) -> Vec<u32> {
    let mut out = extra.to_vec();
    for r in ranges {
        for h in [r.start, r.end] {
            out.extend([h.wrapping_sub(1), h, h.wrapping_add(1)]);
        }
        out.push(r.start + (r.end - r.start) / 2);
    }
    out.extend([0, 1, u32::MAX - 1, u32::MAX]);
    out
}

/// Ranges close to a tiling, so that both valid and invalid tables are common: a tiling with a
/// few edits (drop a range, move an edge, invert, duplicate, add an arbitrary range).
fn near_tiling() -> impl Strategy<Value = Vec<HashRange>> {
    (
        tiling(),
        vec((0u8..6, any::<prop::sample::Index>(), any::<u32>()), 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut ranges, edits, shuffle)| {
            for (kind, at, v) in edits {
                if ranges.is_empty() {
                    break;
                }
                let i = at.index(ranges.len());
                match kind {
                    0 => {
                        ranges.remove(i);
                    }
                    1 => ranges[i].start = ranges[i].start.wrapping_add(v % 3).wrapping_sub(1),
                    2 => ranges[i].end = ranges[i].end.wrapping_add(v % 3).wrapping_sub(1),
                    3 => {
                        let r = &mut ranges[i];
                        (r.start, r.end) = (r.end, r.start);
                    }
                    4 => ranges.push(ranges[i].clone()),
                    _ => ranges.push(HashRange {
                        start: v.min(v.wrapping_mul(7)),
                        end: v.max(v.wrapping_mul(7)),
                        cluster: "c0".into(),
                    }),
                }
            }
            let n = ranges.len();
            if n > 1 {
                ranges.rotate_left(shuffle.index(n));
            }
            ranges
        })
}

proptest! {
    /// On a valid table, `lookup` returns the one range a linear scan finds, for every edge and
    /// random hash; `route` returns that range's cluster members.
    #[test]
    fn lookup_matches_a_linear_scan(mut table in range_table(), extra in vec(any::<u32>(), 8), rot in any::<prop::sample::Index>()) {
        let n = table.ranges.len();
        table.ranges.rotate_left(rot.index(n)); // validate must sort
        table.validate().unwrap();
        for h in probes(&table.ranges, &extra) {
            let expected = owners(&table.ranges, h);
            prop_assert_eq!(expected.len(), 1, "a tiling has one owner for {}", h);
            prop_assert_eq!(table.lookup(h), Some(expected[0]), "hash {}", h);
            let (range, members) = table.route(h).unwrap();
            prop_assert_eq!(range, expected[0]);
            prop_assert_eq!(members, &table.clusters[&range.cluster]);
        }
    }

    /// Splitting any range at `split_point` gives two non-empty halves that tile it exactly and
    /// differ in size by at most one key; the table stays valid with the halves in place.
    #[test]
    fn split_arithmetic(mut table in range_table(), which in any::<prop::sample::Index>(), extra in vec(any::<u32>(), 4)) {
        table.validate().unwrap();
        let i = which.index(table.ranges.len());
        let r = table.ranges[i].clone();
        match split_point(r.start, r.end) {
            None => prop_assert_eq!(r.start, r.end, "only a single key cannot split"),
            Some(m) => {
                prop_assert!(r.start <= m && m < r.end);
                let low = HashRange { start: r.start, end: m, cluster: r.cluster.clone() };
                let high = HashRange { start: m + 1, end: r.end, cluster: "c3".into() };
                prop_assert_eq!(size(&low) + size(&high), size(&r));
                prop_assert!(size(&low) == size(&high) || size(&low) == size(&high) + 1, "the low half takes the odd key");
                table.ranges.splice(i..=i, [low.clone(), high.clone()]);
                prop_assert_eq!(table.validate(), Ok(()));
                for h in probes(std::slice::from_ref(&r), &extra) {
                    if r.contains(h) {
                        let owner = table.lookup(h).unwrap();
                        prop_assert_eq!(owner, if h <= m { &low } else { &high });
                    }
                }
            }
        }
    }

    /// `validate_tiling` accepts exactly the tilings, and each error it reports is true of the
    /// input: the gap is uncovered, the overlapping ranges exist and intersect, the inverted
    /// range exists.
    #[test]
    fn tiling_check_tells_the_truth(ranges in prop_oneof![near_tiling(), vec((any::<u32>(), any::<u32>()).prop_map(|(s, e)| HashRange { start: s, end: e, cluster: "c0".into() }), 0..4)]) {
        let original = ranges.clone();
        let mut sorted = ranges.clone();
        let result = validate_tiling(&mut sorted);
        let mut again = original.clone();
        again.sort_by_key(|r| (r.start, r.end));
        let inverted = original.iter().any(|r| r.start > r.end);
        let total: u64 = original.iter().filter(|r| r.start <= r.end).map(size).sum();
        let overlap = original.iter().enumerate().any(|(i, a)| {
            original[i + 1..].iter().any(|b| a.start <= b.end && b.start <= a.end)
        });
        let is_tiling = !original.is_empty() && !inverted && !overlap && total == 1u64 << 32;
        match result {
            Ok(()) => {
                prop_assert!(is_tiling, "accepted a non-tiling: {:?}", original);
                prop_assert_eq!(sorted, again, "validate sorts by start");
            }
            Err(TableError::Empty) => prop_assert!(original.is_empty()),
            Err(TableError::Inverted(s, e)) => {
                prop_assert!(s > e);
                prop_assert!(original.iter().any(|r| r.start == s && r.end == e));
            }
            Err(TableError::Gap(a, b)) => {
                prop_assert!(!is_tiling);
                prop_assert!(a <= b);
                prop_assert!(!covered(&original, a) && !covered(&original, b), "gap [{}, {}] is covered", a, b);
                prop_assert!(a == 0 || covered(&original, a - 1), "gap [{}, {}] starts too late", a, b);
                prop_assert!(b == u32::MAX || covered(&original, b + 1), "gap [{}, {}] ends too early", a, b);
            }
            Err(TableError::Overlap(s1, e1, s2, e2)) => {
                prop_assert!(!is_tiling);
                prop_assert!(original.iter().any(|r| r.start == s1 && r.end == e1));
                prop_assert!(original.iter().any(|r| r.start == s2 && r.end == e2));
                prop_assert!(s1 <= e2 && s2 <= e1, "[{}, {}] and [{}, {}] do not intersect", s1, e1, s2, e2);
            }
            Err(other) => prop_assert!(false, "validate_tiling cannot report {:?}", other),
        }
    }

    /// Whole tables: unknown clusters and clusters without nodes are refused.
    #[test]
    fn tables_name_only_known_clusters(ranges in tiling(), which in any::<prop::sample::Index>(), empty in any::<bool>()) {
        let mut clusters = members();
        let victim = ranges[which.index(ranges.len())].cluster.clone();
        if empty {
            clusters.get_mut(&victim).unwrap().nodes.clear();
        } else {
            clusters.remove(&victim);
        }
        let mut table = RangeTable { epoch: 1, ranges, clusters };
        match table.validate() {
            Err(TableError::NoNodes(c)) => prop_assert!(empty && c == victim),
            Err(TableError::UnknownCluster(_, _, c)) => prop_assert!(!empty && c == victim),
            other => prop_assert!(false, "expected the cluster {} to be refused, got {:?}", victim, other),
        }
    }

    /// A table survives the JSON of `TABLE.PUSH` / `TABLE.GET` unchanged.
    #[test]
    fn tables_round_trip_through_json(table in range_table()) {
        let json = serde_json::to_vec(&table).unwrap();
        let back: RangeTable = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(back, table);
    }
}
