//! What a cluster owns: its hash ranges under one table epoch, as the nodes store and check it.
//!
//! A node refuses (`-MOVED`) any request for a key outside what its cluster owns, so a router
//! with a stale table can never write to, or read from, a cluster that gave a range away. The
//! ownership is replicated through the cluster's log (`NODE.OWN`), so every replica and every
//! future leader agrees on the point in the log where it changed (a split's fence). Pure data
//! here; the node keeps the record in its store (see `docs/split.md`).

use std::fmt;

/// The most ranges one cluster may own (a split leaves each side with one; merges are rare).
pub const MAX_OWNED_RANGES: usize = 64;

/// The hash ranges a cluster owns, under the range-table epoch that gave them.
///
/// The record names its cluster: a split's new cluster copies its source's log, records
/// included, and a node must never act (serve, or delete keys) on a record of another cluster.
/// A node whose cluster differs from the record's owns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The FileCluster this record is about (empty: a cluster whose nodes were started without
    /// a name, as in tests).
    pub cluster: String,
    /// The range-table epoch this ownership belongs to: a request routed with an older table is
    /// answered `-MOVED <epoch> <hash>` so the router knows to wait for this one.
    pub epoch: u64,
    /// Inclusive `(start, end)` spans, sorted, disjoint, non-empty.
    pub ranges: Vec<(u32, u32)>,
    /// A split's fence, before its commit point: hashes outside `ranges` are refused, but their
    /// keys are kept, because the split may still be aborted and the range given back. Only a
    /// record that is not fenced lets a replica delete the keys it does not own.
    pub fenced: bool,
}

/// Why an ownership record does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// A span is not `start-end` in decimal.
    #[error("range {0:?} is not START-END (decimal u32 hash keys)")]
    Syntax(String),
    /// A span with start > end.
    #[error("range {0}-{1} has start greater than end")]
    Inverted(u32, u32),
    /// Spans out of order or overlapping.
    #[error("ranges must be sorted and disjoint: {0}-{1} overlaps or precedes {2}-{3}")]
    Overlap(u32, u32, u32, u32),
    /// No span at all.
    #[error("at least one range is needed")]
    Empty,
    /// More spans than [`MAX_OWNED_RANGES`].
    #[error("at most {MAX_OWNED_RANGES} ranges")]
    TooMany,
}

impl Ownership {
    /// Whether `hash` falls in an owned range.
    pub fn contains(&self, hash: u32) -> bool {
        spans_contain(&self.ranges, hash)
    }

    /// Parse the spans of `NODE.OWN` / the store record: `start-end` items, comma separated.
    pub fn parse_ranges(text: &str) -> Result<Vec<(u32, u32)>, OwnershipError> {
        let spans: Vec<&str> = text.split(',').filter(|s| !s.is_empty()).collect();
        if spans.is_empty() {
            return Err(OwnershipError::Empty);
        }
        if spans.len() > MAX_OWNED_RANGES {
            return Err(OwnershipError::TooMany);
        }
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
        for span in spans {
            let (s, e) = span
                .split_once('-')
                .and_then(|(s, e)| Some((s.parse::<u32>().ok()?, e.parse::<u32>().ok()?)))
                .ok_or_else(|| OwnershipError::Syntax(span.to_string()))?;
            if s > e {
                return Err(OwnershipError::Inverted(s, e));
            }
            if let Some(&(ps, pe)) = out.last() {
                if s <= pe {
                    return Err(OwnershipError::Overlap(ps, pe, s, e));
                }
            }
            out.push((s, e));
        }
        Ok(out)
    }

    /// The spans as `NODE.OWN` and the store write them.
    pub fn ranges_text(&self) -> String {
        spans_text(&self.ranges)
    }
}

/// Whether `hash` falls in one of the inclusive `spans`.
pub fn spans_contain(spans: &[(u32, u32)], hash: u32) -> bool {
    spans.iter().any(|&(s, e)| s <= hash && hash <= e)
}

/// Inclusive spans as `start-end,...` (the text [`Ownership::parse_ranges`] reads).
pub fn spans_text(spans: &[(u32, u32)]) -> String {
    spans
        .iter()
        .map(|(s, e)| format!("{s}-{e}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} owns {} at table epoch {}",
            if self.cluster.is_empty() {
                "the cluster"
            } else {
                &self.cluster
            },
            self.ranges_text(),
            self.epoch
        )?;
        if self.fenced {
            write!(f, " (fenced: the keys outside are kept)")?;
        }
        Ok(())
    }
}

/// The hash as it appears in every Redis key of a file: 8 lowercase hex digits, so a key's
/// owner can be told from its name alone (clone, cutover check, cleanup).
pub fn key_hash(hash: u32) -> String {
    format!("{hash:08x}")
}

/// The hash named by a data key (`f:`, `c:`, `u:`, `up:`, `dir:` followed by 8 hex digits and
/// `:`), or `None` for keys that belong to the whole cluster (bookkeeping, sessions, log).
pub fn hash_of_key(key: &[u8]) -> Option<u32> {
    let rest = [b"f:".as_slice(), b"c:", b"u:", b"up:", b"dir:"]
        .iter()
        .find_map(|p| key.strip_prefix(*p))?;
    if rest.len() < 9 || rest[8] != b':' {
        return None;
    }
    let hex = std::str::from_utf8(&rest[..8]).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorted_disjoint_spans() {
        let r = Ownership::parse_ranges("0-10,11-4294967295").unwrap();
        assert_eq!(r, vec![(0, 10), (11, u32::MAX)]);
        let o = Ownership {
            cluster: "a".into(),
            epoch: 3,
            ranges: r,
            fenced: false,
        };
        assert!(o.contains(0) && o.contains(10) && o.contains(11) && o.contains(u32::MAX));
        assert_eq!(o.ranges_text(), "0-10,11-4294967295");
        let half = Ownership {
            cluster: String::new(),
            epoch: 3,
            ranges: vec![(0, 99)],
            fenced: false,
        };
        assert!(half.contains(99) && !half.contains(100));
    }

    #[test]
    fn refuses_bad_spans() {
        for (text, want) in [
            ("", OwnershipError::Empty),
            ("5", OwnershipError::Syntax("5".into())),
            ("a-b", OwnershipError::Syntax("a-b".into())),
            (
                "1-4294967296",
                OwnershipError::Syntax("1-4294967296".into()),
            ),
            ("-1-3", OwnershipError::Syntax("-1-3".into())),
            ("9-3", OwnershipError::Inverted(9, 3)),
            ("0-10,10-20", OwnershipError::Overlap(0, 10, 10, 20)),
            ("20-30,0-10", OwnershipError::Overlap(20, 30, 0, 10)),
        ] {
            assert_eq!(Ownership::parse_ranges(text), Err(want), "{text:?}");
        }
        let many = (0..=MAX_OWNED_RANGES as u32)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(Ownership::parse_ranges(&many), Err(OwnershipError::TooMany));
    }

    #[test]
    fn data_keys_name_their_hash() {
        let h = key_hash(0xdead_beef);
        assert_eq!(h, "deadbeef");
        for key in [
            format!("f:{h}:/a/b"),
            format!("c:{h}:3.17:0"),
            format!("u:{h}:/a\nup\n2"),
            format!("up:{h}:/a\nup"),
            format!("dir:{h}:/a"),
        ] {
            assert_eq!(hash_of_key(key.as_bytes()), Some(0xdead_beef), "{key:?}");
        }
        for key in [
            "meta",
            "log",
            "own",
            "sess",
            "sess:x",
            "rbuf",
            "f:/a/b",
            "f:deadbeef/a",
            "c:xyz",
            "f:deadbeeg:/a",
        ] {
            assert_eq!(hash_of_key(key.as_bytes()), None, "{key:?}");
        }
    }
}
