//! Validate: is the whole desired set of one namespace acceptable? (Pure.)
//!
//! Object-level rules (schema, CEL) are checked when an object is read; what needs the whole
//! set is checked here: the HashRanges tile `[0, 4294967295]` exactly, every HashRange names a
//! FileCluster that exists, names are unique. FileCluster names are checked again here (the
//! CRD's CEL rules refuse them at the API server, but objects from before those rules, or
//! from an API server that does not evaluate CEL, would otherwise collide with other objects). When anything fails the reconcile changes nothing
//! and reports every problem.

use super::Desired;
use crate::crd::{FileCluster, HashRange};
use cleave_proto::range::{validate_tiling, TableError};
use std::collections::BTreeSet;

/// A desired set that passed validation: clusters by name, ranges sorted by start.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    /// The FileClusters, sorted by name.
    pub clusters: Vec<FileCluster>,
    /// The HashRanges, sorted by start.
    pub ranges: Vec<HashRange>,
}

/// One reason the set is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A CamelCase reason for conditions (`RangesOverlap`, `RangesGap`, `UnknownCluster`, ...).
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
    /// Names of the HashRanges involved (empty: the whole set).
    pub ranges: Vec<String>,
}

impl Problem {
    fn new(reason: &str, message: String, ranges: Vec<String>) -> Problem {
        Problem {
            reason: reason.into(),
            message,
            ranges,
        }
    }
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// Check the set as a whole. Returns every problem found, not just the first.
pub fn validate(desired: &Desired) -> Result<Valid, Vec<Problem>> {
    let mut problems: Vec<Problem> = desired
        .errors
        .iter()
        .map(|e| Problem::new("InvalidManifest", e.clone(), vec![]))
        .collect();

    let mut seen = BTreeSet::new();
    for c in &desired.clusters {
        if let Some(why) = crate::crd::filecluster::name_problem(&name_of(c)) {
            problems.push(Problem::new("InvalidName", why, vec![]));
        }
        if !seen.insert(name_of(c)) {
            problems.push(Problem::new(
                "DuplicateName",
                format!("two FileClusters are named {:?}", name_of(c)),
                vec![],
            ));
        }
    }
    let clusters: BTreeSet<String> = desired.clusters.iter().map(name_of).collect();

    let mut names = BTreeSet::new();
    let mut ranges = Vec::new();
    for r in &desired.ranges {
        let name = name_of(r);
        if !names.insert(name.clone()) {
            problems.push(Problem::new(
                "DuplicateName",
                format!("two HashRanges are named {name:?}"),
                vec![name.clone()],
            ));
        }
        if !clusters.contains(&r.spec.cluster) {
            problems.push(Problem::new(
                "UnknownCluster",
                format!(
                    "HashRange {name} names FileCluster {:?}, which does not exist",
                    r.spec.cluster
                ),
                vec![name.clone()],
            ));
        }
        match r.spec.to_range() {
            Some(pr) if pr.start <= pr.end => ranges.push((pr, name)),
            _ => problems.push(Problem::new(
                "InvalidRange",
                format!(
                    "HashRange {name} has [{}, {}]: need 0 <= start <= end <= 4294967295",
                    r.spec.start, r.spec.end
                ),
                vec![name.clone()],
            )),
        }
    }

    if problems.iter().all(|p| p.reason != "InvalidRange") {
        problems.extend(tiling_problems(&ranges));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut clusters = desired.clusters.clone();
    clusters.sort_by_key(name_of);
    let mut ranges = desired.ranges.clone();
    ranges.sort_by_key(|r| r.spec.start);
    Ok(Valid { clusters, ranges })
}

/// Every gap and overlap in the tiling, named by the HashRanges involved.
fn tiling_problems(ranges: &[(cleave_proto::HashRange, String)]) -> Vec<Problem> {
    let mut sorted: Vec<_> = ranges.to_vec();
    sorted.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::new();
    if sorted.is_empty() {
        let mut only: Vec<cleave_proto::HashRange> = vec![];
        if let Err(TableError::Empty) = validate_tiling(&mut only) {
            out.push(Problem::new(
                "NoRanges",
                "there are no HashRanges: they must tile [0, 4294967295]".into(),
                vec![],
            ));
        }
        return out;
    }
    let mut next: u64 = 0;
    let mut prev: Option<&(cleave_proto::HashRange, String)> = None;
    for item in &sorted {
        let (r, name) = item;
        let start = r.start as u64;
        if start > next {
            out.push(Problem::new(
                "RangesGap",
                format!(
                    "hash keys [{next}, {}] are not covered by any HashRange (before {name})",
                    start - 1
                ),
                vec![name.clone()],
            ));
        } else if start < next {
            let (p, pname) = prev.expect("an overlap has a previous range");
            out.push(Problem::new(
                "RangesOverlap",
                format!(
                    "HashRanges {pname} [{}, {}] and {name} [{}, {}] overlap",
                    p.start, p.end, r.start, r.end
                ),
                vec![pname.clone(), name.clone()],
            ));
        }
        if r.end as u64 + 1 > next {
            next = r.end as u64 + 1;
            prev = Some(item);
        }
    }
    if next <= u32::MAX as u64 {
        out.push(Problem::new(
            "RangesGap",
            format!("hash keys [{next}, 4294967295] are not covered by any HashRange"),
            vec![],
        ));
    }
    // Cross-check with the table's own rule, so the two can never disagree.
    let mut plain: Vec<_> = sorted.iter().map(|(r, _)| r.clone()).collect();
    debug_assert_eq!(out.is_empty(), validate_tiling(&mut plain).is_ok());
    out
}
