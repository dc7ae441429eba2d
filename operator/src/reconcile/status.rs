//! Status: what the objects say about themselves after a pass. Pure: computed from the desired
//! set, the recorded state, the observations and the pass's outcome.

use super::validate::Problem;
use super::{CoreState, Desired, Observed};
use crate::crd::{stamp_conditions, Condition, FileClusterStatus, HashRangeStatus, NodeState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a pass learned, in the shape `cleave status --json` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Epoch of the range table every router has acknowledged.
    pub epoch: u64,
    /// Every HashRange with its status.
    pub ranges: Vec<RangeReport>,
    /// Every router.
    pub routers: Vec<RouterReport>,
    /// Every FileCluster with its status.
    pub clusters: Vec<ClusterReport>,
    /// Why the desired set was refused (empty when it was accepted).
    pub errors: Vec<String>,
    /// Clusters whose leader is silent, with the failover clock running: the platform should
    /// look again soon (a pass decides the failover only once the timeout has passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent_leaders: Vec<String>,
    /// The split in progress, with its phase (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<super::split::SplitState>,
}

/// One HashRange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeReport {
    /// Object name.
    pub name: String,
    /// First key.
    pub start: i64,
    /// Last key.
    pub end: i64,
    /// Desired owner.
    pub cluster: String,
    /// Status as the object carries it.
    #[serde(flatten)]
    pub status: HashRangeStatus,
}

/// One router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterReport {
    /// Router name.
    pub name: String,
    /// Client address.
    pub address: String,
    /// Epoch of the table it serves (`null`: unreachable or no table).
    pub epoch: Option<u64>,
    /// Process id (local platform only).
    pub pid: Option<u32>,
}

/// One FileCluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// Object name.
    pub name: String,
    /// Desired number of nodes.
    pub replicas: i32,
    /// Status as the object carries it.
    #[serde(flatten)]
    pub status: FileClusterStatus,
}

/// How the pass went, as far as status is concerned.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Set-level problems (the set was refused).
    pub problems: Vec<Problem>,
    /// Clusters still coming up, with why.
    pub waiting: BTreeMap<String, String>,
    /// The table pushed this pass was acknowledged by every router.
    pub table_committed: bool,
    /// Errors met while acting (unreachable router, refused command).
    pub apply_errors: Vec<String>,
}

/// Compute the report. `previous` carries transition times over; `now` is RFC 3339.
pub fn compute(
    desired: &Desired,
    state: &CoreState,
    observed: &Observed,
    outcome: &Outcome,
    previous: &Report,
    now: &str,
) -> Report {
    let committed = state
        .table
        .as_ref()
        .filter(|t| t.epoch == state.committed_epoch);
    let invalid = !outcome.problems.is_empty();
    let mut report = Report {
        epoch: state.committed_epoch,
        errors: outcome.problems.iter().map(|p| p.message.clone()).collect(),
        ..Report::default()
    };
    report.errors.extend(outcome.apply_errors.iter().cloned());
    report.split = state.split.clone();
    report.silent_leaders = state
        .clusters
        .iter()
        .filter(|(_, cs)| cs.silent_since_ms.is_some())
        .map(|(name, _)| name.clone())
        .collect();

    for r in &observed.routers {
        report.routers.push(RouterReport {
            name: r.name.clone(),
            address: r.address.clone(),
            epoch: r.epoch,
            pid: r.pid,
        });
    }

    for fc in &desired.clusters {
        let name = fc.metadata.name.clone().unwrap_or_default();
        let cs = state.clusters.get(&name).cloned().unwrap_or_default();
        let obs = observed.clusters.get(&name).cloned().unwrap_or_default();
        let nodes: Vec<NodeState> = obs
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                role: n
                    .status
                    .as_ref()
                    .map(|s| role_name(s.role))
                    .unwrap_or_else(|| "down".into()),
                address: n.address.clone(),
                redis: n.redis.clone(),
                pid: n.pid,
                applied_seq: n.status.as_ref().map_or(0, |s| s.applied_seq),
                in_sync: n.status.as_ref().is_some_and(|s| s.in_sync),
            })
            .collect();
        let leader_ok = nodes
            .iter()
            .any(|n| Some(&n.name) == cs.leader.as_ref() && n.role == "leader");
        let followers_in_sync = nodes
            .iter()
            .filter(|n| Some(&n.name) != cs.leader.as_ref() && n.in_sync)
            .count() as i32;
        let lagging: Vec<&str> = nodes
            .iter()
            .filter(|n| !n.in_sync)
            .map(|n| n.name.as_str())
            .collect();
        let missing = (fc.spec.replicas as usize).saturating_sub(nodes.len());
        let ready = leader_ok && followers_in_sync >= fc.spec.min_in_sync;
        let waiting = outcome.waiting.get(&name);
        let mut conditions = vec![
            if ready {
                Condition::new(
                    "Ready",
                    true,
                    "Serving",
                    format!(
                        "leader {} at epoch {}, {followers_in_sync} follower(s) in sync",
                        cs.leader.as_deref().unwrap_or("?"),
                        cs.epoch
                    ),
                )
            } else {
                Condition::new(
                    "Ready",
                    false,
                    "NotServing",
                    format!(
                        "leader up: {leader_ok}; followers in sync: {followers_in_sync} (need {})",
                        fc.spec.min_in_sync
                    ),
                )
            },
            match waiting {
                Some(why) => Condition::new("Progressing", true, "ComingUp", why.clone()),
                None => Condition::new("Progressing", false, "Stable", "nothing to do"),
            },
            if lagging.is_empty() && missing == 0 {
                Condition::new("Degraded", false, "AllInSync", "every node is in sync")
            } else {
                Condition::new(
                    "Degraded",
                    true,
                    "NodesOutOfSync",
                    format!(
                        "not in sync: {}{}",
                        lagging.join(", "),
                        if missing > 0 {
                            format!("; {missing} node(s) not created")
                        } else {
                            String::new()
                        }
                    ),
                )
            },
        ];
        if let Some(f) = cs.last_failover.as_ref().map(|f| &f.record) {
            let took = f
                .duration_ms
                .map_or_else(|| "in progress".to_string(), |ms| format!("took {ms} ms"));
            conditions.push(Condition::new(
                "FailedOver",
                true,
                if f.reason.starts_with("switchover") {
                    "Switchover"
                } else {
                    "LeaderLost"
                },
                format!(
                    "{} -> {} at epoch {} ({}); {took}",
                    f.from, f.to, f.epoch, f.reason
                ),
            ));
        }
        let old = previous.clusters.iter().find(|c| c.name == name);
        let generation = fc.metadata.generation;
        stamp_conditions(
            &mut conditions,
            old.map(|o| o.status.conditions.as_slice()).unwrap_or(&[]),
            now,
            generation,
        );
        let observed_generation = if invalid {
            old.and_then(|o| o.status.observed_generation)
        } else {
            generation
        };
        report.clusters.push(ClusterReport {
            name,
            replicas: fc.spec.replicas,
            status: FileClusterStatus {
                leader: cs.leader.clone(),
                epoch: cs.epoch,
                nodes,
                conditions,
                observed_generation,
                last_failover: cs.last_failover.as_ref().map(|f| f.record.clone()),
                failovers: cs.failovers,
            },
        });
    }

    for hr in &desired.ranges {
        let name = hr.metadata.name.clone().unwrap_or_default();
        let served = committed.and_then(|t| {
            t.ranges
                .iter()
                .find(|r| r.start as i64 == hr.spec.start && r.end as i64 == hr.spec.end)
        });
        let served_by = served.map(|r| r.cluster.clone());
        let mine: Vec<&Problem> = outcome
            .problems
            .iter()
            .filter(|p| p.ranges.is_empty() || p.ranges.contains(&name))
            .collect();
        let in_place = served_by.as_deref() == Some(hr.spec.cluster.as_str());
        let mut conditions = vec![
            if mine.is_empty() {
                Condition::new(
                    "Valid",
                    true,
                    "Tiles",
                    "the HashRanges tile [0, 4294967295]",
                )
            } else {
                Condition::new(
                    "Valid",
                    false,
                    &mine[0].reason,
                    mine.iter()
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            },
            if in_place {
                Condition::new(
                    "Ready",
                    true,
                    "Served",
                    format!(
                        "served by {} at table epoch {}",
                        hr.spec.cluster, state.committed_epoch
                    ),
                )
            } else {
                Condition::new(
                    "Ready",
                    false,
                    "NotServed",
                    "the routers do not serve this range yet",
                )
            },
            Condition::new(
                "Progressing",
                !in_place && !invalid,
                if in_place {
                    "Stable"
                } else if invalid {
                    "Refused"
                } else {
                    "Publishing"
                },
                if invalid {
                    "nothing moves until the HashRanges are valid"
                } else {
                    ""
                },
            ),
            Condition::new(
                "Degraded",
                invalid,
                if invalid { "InvalidSet" } else { "AsDesired" },
                if invalid {
                    "the desired HashRanges were refused; the last valid table is still served"
                } else {
                    ""
                },
            ),
        ];
        let old = previous.ranges.iter().find(|r| r.name == name);
        let generation = hr.metadata.generation;
        stamp_conditions(
            &mut conditions,
            old.map(|o| o.status.conditions.as_slice()).unwrap_or(&[]),
            now,
            generation,
        );
        report.ranges.push(RangeReport {
            name,
            start: hr.spec.start,
            end: hr.spec.end,
            cluster: hr.spec.cluster.clone(),
            status: HashRangeStatus {
                served_by,
                epoch: committed.map(|t| t.epoch),
                conditions,
                observed_generation: if invalid {
                    old.and_then(|o| o.status.observed_generation)
                } else {
                    generation
                },
            },
        });
    }
    report.ranges.sort_by_key(|r| r.start);
    report
}

fn role_name(role: cleave_proto::status::Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
