//! Routing decisions, as pure functions: which cluster owns a path, which node of it gets a
//! request, and what a node's reply means for the next attempt.
//!
//! - A path's root is hashed (`cleave_proto::hash`), the hash picks a range, the range a cluster.
//! - Writes go to the cluster's leader: the leader learned from a `-NOTLEADER addr` reply (for the
//!   current table epoch), else the table's `leader` hint, else the first node.
//! - Reads are spread round-robin over all the cluster's nodes, skipping nodes that recently
//!   refused connections while others remain.

use cleave_proto::range::ClusterMembers;
use cleave_proto::{ErrorCode, FilePath, Frame, RangeTable, Reply};
use std::collections::HashMap;
use std::sync::Mutex;

/// What a node's reply means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Relay the reply to the client (success, or an error the client must see).
    Done,
    /// `-NOTLEADER addr` (`Some`) or `-NOTLEADER ?` (`None`).
    NotLeader(Option<String>),
    /// `-TRYAGAIN`: this node cannot serve now; another node (reads) or later (writes) may.
    TryAgain,
    /// `-STALE` or `-READONLY`: the table is stale or a cutover is under way; wait a little and
    /// route again with the table served then.
    Backoff,
    /// `-MOVED`: the cluster does not own the hash (a split moved it). As [`Outcome::Backoff`],
    /// and the write was provably not applied (see `session.rs`).
    Moved,
    /// The node could not be reached or did not answer.
    Unreachable,
}

/// Classify a node's reply. `versioned_read` marks `READ ... VERSION v`, whose `-STALE` means
/// "the file changed", which no retry can fix: it goes back to the client.
pub fn classify(reply: &Frame, versioned_read: bool) -> Outcome {
    let Frame::Error(line) = reply else {
        return Outcome::Done;
    };
    let r = Reply::parse(line);
    match r.code {
        ErrorCode::NotLeader => {
            let addr = r.message.split_whitespace().next().unwrap_or("?");
            Outcome::NotLeader((addr != "?").then(|| addr.to_string()))
        }
        ErrorCode::TryAgain => Outcome::TryAgain,
        ErrorCode::Stale if versioned_read => Outcome::Done,
        ErrorCode::Moved => Outcome::Moved,
        ErrorCode::Stale | ErrorCode::ReadOnly => Outcome::Backoff,
        _ => Outcome::Done,
    }
}

/// The cluster owning `path` and its members.
pub fn owner<'a>(table: &'a RangeTable, path: &FilePath) -> Option<(&'a str, &'a ClusterMembers)> {
    let (range, members) = table.route(path.hash())?;
    Some((range.cluster.as_str(), members))
}

/// Where a write goes: the learned leader, else the table's hint, else the first node.
pub fn leader<'a>(members: &'a ClusterMembers, learned: Option<&'a str>) -> &'a str {
    learned
        .or(members.leader.as_deref())
        .or(members.nodes.first().map(String::as_str))
        .unwrap_or("?")
}

/// Where a read goes: round-robin by `counter`, skipping nodes for which `is_down` holds unless
/// all are down.
pub fn spread(members: &ClusterMembers, counter: usize, is_down: impl Fn(&str) -> bool) -> &str {
    let nodes = &members.nodes;
    if nodes.is_empty() {
        return "?";
    }
    let start = counter % nodes.len();
    (0..nodes.len())
        .map(|i| nodes[(start + i) % nodes.len()].as_str())
        .find(|n| !is_down(n))
        .unwrap_or(&nodes[start])
}

/// The node after `current` in the cluster's list (wrapping); the first if `current` is not a
/// member.
pub fn next_node<'a>(nodes: &'a [String], current: &str) -> &'a str {
    match nodes.iter().position(|n| n == current) {
        Some(i) => &nodes[(i + 1) % nodes.len()],
        None => nodes.first().map(String::as_str).unwrap_or("?"),
    }
}

/// Leaders learned from `-NOTLEADER` replies, per cluster, valid for one table epoch (a new
/// table carries the operator's newer view).
#[derive(Debug, Default)]
pub struct Leaders {
    map: Mutex<HashMap<String, (u64, String)>>,
}

impl Leaders {
    /// The learned leader of `cluster` under table epoch `epoch`.
    pub fn get(&self, cluster: &str, epoch: u64) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(cluster)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, a)| a.clone())
    }

    /// Remember `addr` as the leader of `cluster`.
    pub fn set(&self, cluster: &str, epoch: u64, addr: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(cluster.to_string(), (epoch, addr.to_string()));
    }

    /// Forget `addr` as the leader of `cluster` (it said it is not, or it is unreachable).
    pub fn forget(&self, cluster: &str, addr: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(cluster).is_some_and(|(_, a)| a == addr) {
            map.remove(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_proto::hash::hash_root;
    use cleave_proto::range::HashRange;

    fn members(nodes: &[&str], leader: Option<&str>) -> ClusterMembers {
        ClusterMembers {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            leader: leader.map(str::to_owned),
        }
    }

    fn table() -> RangeTable {
        let mut t = RangeTable {
            epoch: 1,
            ranges: vec![
                HashRange {
                    start: 0,
                    end: u32::MAX / 2,
                    cluster: "low".into(),
                },
                HashRange {
                    start: u32::MAX / 2 + 1,
                    end: u32::MAX,
                    cluster: "high".into(),
                },
            ],
            clusters: Default::default(),
        };
        t.clusters
            .insert("low".into(), members(&["l1", "l2"], None));
        t.clusters
            .insert("high".into(), members(&["h1", "h2"], Some("h2")));
        t.validate().unwrap();
        t
    }

    #[test]
    fn the_root_hash_picks_the_cluster() {
        let t = table();
        for root in ["photos", "videos", "a", "b", "c", "d", "e", "f"] {
            let path = FilePath::parse(&format!("/{root}/x/y")).unwrap();
            let want = if hash_root(root) <= u32::MAX / 2 {
                "low"
            } else {
                "high"
            };
            assert_eq!(owner(&t, &path).unwrap().0, want, "{root}");
            let top = FilePath::parse(&format!("/{root}")).unwrap();
            assert_eq!(owner(&t, &top).unwrap().0, want, "same root, same owner");
        }
    }

    #[test]
    fn writes_go_to_the_learned_then_hinted_then_first_node() {
        let m = members(&["a", "b", "c"], Some("b"));
        assert_eq!(leader(&m, Some("c")), "c");
        assert_eq!(leader(&m, None), "b");
        assert_eq!(leader(&members(&["a", "b"], None), None), "a");
    }

    #[test]
    fn reads_spread_round_robin_and_skip_down_nodes() {
        let m = members(&["a", "b", "c"], Some("a"));
        let picks: Vec<_> = (0..6).map(|i| spread(&m, i, |_| false)).collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
        let picks: Vec<_> = (0..3).map(|i| spread(&m, i, |n| n == "b")).collect();
        assert_eq!(picks, ["a", "c", "c"]);
        assert_eq!(spread(&m, 1, |_| true), "b", "all down: plain round-robin");
        assert_eq!(next_node(&m.nodes, "c"), "a");
        assert_eq!(next_node(&m.nodes, "a"), "b");
        assert_eq!(next_node(&m.nodes, "elsewhere"), "a");
    }

    #[test]
    fn replies_are_classified() {
        let err = |s: &str| Frame::Error(s.into());
        assert_eq!(classify(&Frame::Integer(3), false), Outcome::Done);
        assert_eq!(
            classify(&err("NOTFOUND no such file"), false),
            Outcome::Done
        );
        assert_eq!(
            classify(&err("NOTLEADER 10.0.0.1:7101"), false),
            Outcome::NotLeader(Some("10.0.0.1:7101".into()))
        );
        assert_eq!(
            classify(&err("NOTLEADER ?"), false),
            Outcome::NotLeader(None)
        );
        assert_eq!(classify(&err("NOTLEADER"), false), Outcome::NotLeader(None));
        assert_eq!(
            classify(&err("TRYAGAIN catching up"), false),
            Outcome::TryAgain
        );
        assert_eq!(classify(&err("MOVED 1 2"), false), Outcome::Moved);
        assert_eq!(classify(&err("READONLY cutover"), false), Outcome::Backoff);
        assert_eq!(classify(&err("STALE epoch"), false), Outcome::Backoff);
        assert_eq!(classify(&err("STALE version"), true), Outcome::Done);
    }

    #[test]
    fn learned_leaders_last_one_epoch() {
        let l = Leaders::default();
        l.set("c", 3, "x");
        assert_eq!(l.get("c", 3).as_deref(), Some("x"));
        assert_eq!(
            l.get("c", 4),
            None,
            "a newer table wins over what we learned"
        );
        l.forget("c", "y");
        assert_eq!(l.get("c", 3).as_deref(), Some("x"));
        l.forget("c", "x");
        assert_eq!(l.get("c", 3), None);
    }
}
