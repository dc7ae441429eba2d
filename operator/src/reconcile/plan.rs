//! Build: what to do, decided from the desired set, the recorded state and what was observed.
//! Pure: no I/O, so every decision is unit-tested.

use super::split::{find_move, SplitState};
use super::validate::Valid;
use super::{ClusterState, CoreState, FailoverState, Observed};
use crate::crd::Failover;
use crate::crd::FileCluster;
use cleave_proto::range::{ClusterMembers, HashRange, RangeTable};
use cleave_proto::status::Role;
use std::collections::BTreeMap;

/// A change to one node's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// `NODE.LEAD epoch`.
    Lead {
        /// Cluster name.
        cluster: String,
        /// Node name.
        node: String,
        /// Node client address.
        address: String,
        /// Epoch.
        epoch: u64,
    },
    /// `NODE.FOLLOW epoch leader`.
    Follow {
        /// Cluster name.
        cluster: String,
        /// Node name.
        node: String,
        /// Node client address.
        address: String,
        /// Epoch.
        epoch: u64,
        /// The leader's client address.
        leader: String,
    },
    /// `NODE.FOLLOW epoch leader LEARNER spans`: a split's target node copying the source's
    /// moving range.
    Learn {
        /// The target cluster's name.
        cluster: String,
        /// Node name.
        node: String,
        /// Node client address.
        address: String,
        /// The source's epoch.
        epoch: u64,
        /// The source leader's client address.
        leader: String,
        /// The moving range: the only hashes whose data the learner's snapshot copies.
        spans: Vec<(u32, u32)>,
    },
}

/// A planned change of leader (`spec.leader`), carried out by the apply step: freeze the
/// leader, wait until the target holds everything it has, then move every node to `epoch`
/// under the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switchover {
    /// Cluster name.
    pub cluster: String,
    /// The leader now, and the epoch it leads.
    pub from: (String, String, u64),
    /// The node to lead: name and address.
    pub to: (String, String),
    /// The new epoch (recorded before acting).
    pub epoch: u64,
    /// Every other node's address (the old leader included): they follow the target.
    pub others: Vec<String>,
}

/// What one reconcile pass will do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The state to record before acting (leaders and epochs chosen, table epoch assigned).
    pub state: CoreState,
    /// Role changes, in order (followers first).
    pub actions: Vec<NodeAction>,
    /// Planned switchovers.
    pub switchovers: Vec<Switchover>,
    /// The table every router must serve, when it can be built (every cluster has a leader).
    pub table: Option<RangeTable>,
    /// Routers (by address) whose table is older than `table`.
    pub push_to: Vec<String>,
    /// Clusters still coming up, with why.
    pub waiting: BTreeMap<String, String>,
    /// A split to abort (the desired set no longer asks for it) whose fence was sent: the
    /// source must own its ranges again before the split is forgotten.
    pub abort: Option<SplitState>,
}

fn name(fc: &FileCluster) -> String {
    fc.metadata.name.clone().unwrap_or_default()
}

/// Decide leaders, epochs, role changes and the range table.
pub fn build(valid: &Valid, state: &CoreState, observed: &Observed) -> Plan {
    let mut next = state.clone();
    let mut actions = Vec::new();
    let mut switchovers = Vec::new();
    let mut waiting = BTreeMap::new();
    let mut members = BTreeMap::new();
    let desired: Vec<HashRange> = valid
        .ranges
        .iter()
        .filter_map(|r| r.spec.to_range())
        .collect();
    let (table_ranges, abort) = plan_split(&mut next, &desired, observed, &mut waiting);
    // Only the clusters the table to serve names get leaders; a new cluster waits idle until a
    // split gives it a range (and learns from its source meanwhile).
    let serving: Vec<&str> = table_ranges.iter().map(|r| r.cluster.as_str()).collect();
    let learning = next.split.clone().filter(|s| !s.committed());

    for fc in &valid.clusters {
        let cname = name(fc);
        let nodes = observed.clusters.get(&cname).cloned().unwrap_or_default();
        if nodes.is_empty() {
            waiting.insert(cname.clone(), "no nodes yet".into());
            continue;
        }
        if let Some(sp) = learning.as_ref().filter(|s| s.target == cname) {
            learn_from_source(sp, &next, observed, &nodes, &mut actions, &mut waiting);
            continue;
        }
        if !serving.contains(&cname.as_str()) {
            waiting.insert(
                cname.clone(),
                "owns no range yet: idle until a split gives it one".into(),
            );
            continue;
        }
        let cs = next.clusters.entry(cname.clone()).or_default();
        if cs.leader.is_none() {
            adopt_or_choose(cs, &nodes);
        }
        let k = min_in_sync(fc);
        if let Some((reason, began_ms)) = trouble(cs, &nodes, fc, observed.now_ms) {
            match elect(cs, &nodes, k) {
                Ok((leader, epoch)) => {
                    tracing::info!(
                        cluster = %cname,
                        leader = %leader.name,
                        epoch,
                        %reason,
                        "electing the most up-to-date node"
                    );
                    let from = cs.leader.clone().unwrap_or_default();
                    cs.last_failover = Some(FailoverState {
                        record: Failover {
                            at: observed.now.clone(),
                            from,
                            to: leader.name.clone(),
                            epoch,
                            reason,
                            duration_ms: None,
                        },
                        began_ms,
                    });
                    cs.failovers += 1;
                    cs.silent_since_ms = None;
                    cs.leader = Some(leader.name.clone());
                    cs.epoch = epoch;
                }
                Err(why) => {
                    waiting.insert(cname.clone(), format!("{reason}; {why}"));
                    continue;
                }
            }
        }
        let leader_name = cs.leader.clone().expect("a leader was chosen");
        let Some(leader) = nodes.iter().find(|n| n.name == leader_name) else {
            waiting.insert(
                cname.clone(),
                format!("leader {leader_name} is not running"),
            );
            continue;
        };
        let epoch = cs.epoch;
        let mut leading = false;
        // Followers first: once a quorum of them is at the new epoch, an old leader can no
        // longer collect acknowledgements; then the leader.
        for n in nodes.iter().filter(|n| n.name != leader_name) {
            let Some(st) = &n.status else { continue };
            let ok = matches!(st.role, Role::Follower | Role::Resyncing)
                && st.epoch == epoch
                && st.leader.as_deref() == Some(leader.address.as_str());
            if !ok && st.epoch <= epoch {
                actions.push(NodeAction::Follow {
                    cluster: cname.clone(),
                    node: n.name.clone(),
                    address: n.address.clone(),
                    epoch,
                    leader: leader.address.clone(),
                });
            }
        }
        match &leader.status {
            None => {
                waiting.insert(
                    cname.clone(),
                    format!("leader {leader_name} does not answer"),
                );
            }
            Some(st) if st.role == Role::Leader && st.epoch == epoch => {
                leading = true;
                if let Some(f) = cs.last_failover.as_mut() {
                    if f.record.duration_ms.is_none() && f.record.epoch == epoch {
                        f.record.duration_ms = Some(observed.now_ms.saturating_sub(f.began_ms));
                    }
                }
            }
            Some(st) if st.epoch > epoch => {
                waiting.insert(
                    cname.clone(),
                    format!("leader {leader_name} has seen epoch {} > {epoch}", st.epoch),
                );
            }
            Some(_) => actions.push(NodeAction::Lead {
                cluster: cname.clone(),
                node: leader.name.clone(),
                address: leader.address.clone(),
                epoch,
            }),
        }
        if let Some(target) = fc.spec.leader.as_ref().filter(|t| **t != leader_name) {
            match nodes.iter().find(|n| &n.name == target) {
                None => {
                    waiting.insert(
                        cname.clone(),
                        format!("spec.leader names {target}, which is not a node of {cname}"),
                    );
                }
                Some(t) if leading && actions.is_empty() => {
                    let ready = t.status.as_ref().is_some_and(|st| {
                        st.role == Role::Follower && st.epoch == epoch && st.in_sync
                    });
                    if ready {
                        let seen = nodes
                            .iter()
                            .filter_map(|n| n.status.as_ref().map(|s| s.epoch))
                            .max()
                            .unwrap_or(0);
                        let new_epoch = seen.max(epoch) + 1;
                        cs.epoch = new_epoch;
                        switchovers.push(Switchover {
                            cluster: cname.clone(),
                            from: (leader_name.clone(), leader.address.clone(), epoch),
                            to: (t.name.clone(), t.address.clone()),
                            epoch: new_epoch,
                            others: nodes
                                .iter()
                                .filter(|n| n.name != t.name)
                                .map(|n| n.address.clone())
                                .collect(),
                        });
                        waiting.insert(
                            cname.clone(),
                            format!("switching over from {leader_name} to {target}"),
                        );
                    } else {
                        waiting.insert(
                            cname.clone(),
                            format!("switchover to {target} waits until it is an in-sync follower"),
                        );
                    }
                }
                Some(_) => {}
            }
        }
        // Right after an election the new leader is told to lead in this very pass: publish it
        // to the routers now rather than a pass later (the table is a hint — nodes enforce
        // leadership — so a lead that fails costs only redirects until the next pass).
        let just_elected = cs.last_failover.as_ref().is_some_and(|f| {
            f.record.epoch == epoch && f.record.duration_ms.is_none() && f.record.to == leader_name
        }) && actions.iter().any(|a| {
            matches!(a, NodeAction::Lead { cluster, epoch: e, .. } if *cluster == cname && *e == epoch)
        });
        if !leading && !just_elected && !waiting.contains_key(&cname) {
            waiting.insert(cname.clone(), format!("{leader_name} is becoming leader"));
        }
        let mut addrs = vec![leader.address.clone()];
        addrs.extend(
            nodes
                .iter()
                .filter(|n| n.name != leader_name)
                .map(|n| n.address.clone()),
        );
        members.insert(
            cname,
            ClusterMembers {
                nodes: addrs,
                leader: Some(leader.address.clone()),
            },
        );
    }

    let mut table = None;
    let mut push_to = Vec::new();
    let referenced: Vec<&String> = table_ranges.iter().map(|r| &r.cluster).collect();
    if referenced
        .iter()
        .all(|c| members.contains_key(*c) && !waiting.contains_key(*c))
    {
        members.retain(|c, _| referenced.contains(&c));
        let mut t = RangeTable {
            epoch: 0,
            ranges: table_ranges.clone(),
            clusters: members,
        };
        t.epoch = match &next.table {
            Some(old) if same_content(old, &t) => old.epoch,
            _ => epochs_used(&next, observed) + 1,
        };
        push_to = observed
            .routers
            .iter()
            .filter(|r| r.epoch.is_none_or(|e| e < t.epoch))
            .map(|r| r.address.clone())
            .collect();
        next.table = Some(t.clone());
        table = Some(t);
    }
    Plan {
        state: next,
        actions,
        switchovers,
        table,
        push_to,
        waiting,
        abort,
    }
}

/// Decide what the split in progress (or a new one) means for this pass: returns the ranges of
/// the table to serve, and a split to abort. Until a split's commit point the served table
/// stays as it is (the source keeps serving everything); a change that is not a supported
/// split leaves it as it is too, and says why.
fn plan_split(
    next: &mut CoreState,
    desired: &[HashRange],
    observed: &Observed,
    waiting: &mut BTreeMap<String, String>,
) -> (Vec<HashRange>, Option<SplitState>) {
    let Some(served) = next.table.clone() else {
        return (desired.to_vec(), None); // the first table: nothing to move
    };
    let wanted = find_move(&served, desired);
    match next.split.clone() {
        Some(sp) if sp.committed() => {
            if split_done(&sp, next, observed) {
                tracing::info!(source = %sp.source, target = %sp.target, "split complete");
                next.split = None;
            } else {
                // Not under the target's name: the target serves now, and a waiting cluster
                // would hold back the very table the split must push.
                waiting.insert("(split)".into(), progress(&sp, observed));
            }
            (desired.to_vec(), None)
        }
        Some(sp) if sp.phase == super::split::SplitPhase::Aborting => {
            // Finish the abort first, whatever the desired set asks now.
            waiting.insert(sp.target.clone(), progress(&sp, observed));
            (served.ranges, Some(sp))
        }
        Some(sp) => {
            if matches!(&wanted, Ok(Some(m)) if sp.is(m)) {
                waiting.insert(sp.target.clone(), progress(&sp, observed));
                return (served.ranges, None);
            }
            // The desired set no longer asks for this split: abort (before its commit point).
            tracing::warn!(source = %sp.source, target = %sp.target, "split no longer wanted: aborting");
            if sp.phase == super::split::SplitPhase::Cloning {
                next.split = None; // nothing was fenced: nothing to undo
                return (served.ranges, None);
            }
            (served.ranges, Some(sp))
        }
        None => match wanted {
            Ok(None) => (desired.to_vec(), None),
            Ok(Some(m)) => {
                let base = epochs_used(next, observed);
                if observed
                    .clusters
                    .get(&m.target)
                    .is_none_or(|n| n.is_empty())
                {
                    waiting.insert(m.target.clone(), "split waits for its nodes".into());
                } else {
                    tracing::info!(source = %m.source, target = %m.target, start = m.start, end = m.end, "split begins");
                    let sp = SplitState::begin(&m, base, observed.now_ms);
                    waiting.insert(sp.target.clone(), progress(&sp, observed));
                    next.split = Some(sp);
                }
                (served.ranges, None)
            }
            Err(why) => {
                waiting.insert("(ranges)".into(), format!("nothing moves: {why}"));
                (served.ranges, None)
            }
        },
    }
}

/// The highest table or ownership epoch used so far: the recorded table's, any router's, any
/// ownership sent, and a split's fence once recorded (it may not have been sent yet). A new
/// table, a fence or an abort takes an epoch above it: two tables of one epoch that route
/// differently would leave the routers holding the first never pushed the second (a router
/// takes only newer epochs) — and a split's clone lasts long enough for failovers to publish
/// tables meanwhile.
pub fn epochs_used(state: &CoreState, observed: &Observed) -> u64 {
    let split = state.split.as_ref();
    let fence = split
        .filter(|sp| sp.phase != super::split::SplitPhase::Cloning)
        .map_or(0, |sp| sp.fence_epoch);
    // An abort's epoch, recorded before it is sent.
    let abort = split
        .filter(|sp| sp.phase == super::split::SplitPhase::Aborting)
        .map_or(0, |sp| sp.table_epoch);
    state
        .table
        .as_ref()
        .map_or(0, |t| t.epoch)
        .max(observed.max_router_epoch())
        .max(state.owned_epoch)
        .max(fence)
        .max(abort)
}

/// The leader of `cluster` as recorded, with its address as observed: name, address, epoch.
pub fn recorded_leader(
    state: &CoreState,
    observed: &Observed,
    cluster: &str,
) -> Option<(String, String, u64)> {
    let cs = state.clusters.get(cluster)?;
    let name = cs.leader.clone()?;
    let addr = observed
        .clusters
        .get(cluster)?
        .iter()
        .find(|n| n.name == name)?
        .address
        .clone();
    Some((name, addr, cs.epoch))
}

/// The target's nodes learn from the source's leader at its epoch.
fn learn_from_source(
    sp: &SplitState,
    state: &CoreState,
    observed: &Observed,
    nodes: &[super::NodeObs],
    actions: &mut Vec<NodeAction>,
    waiting: &mut BTreeMap<String, String>,
) {
    let Some((_, leader, epoch)) = recorded_leader(state, observed, &sp.source) else {
        waiting.insert(
            sp.target.clone(),
            format!("split waits for a leader of {}", sp.source),
        );
        return;
    };
    let spans = vec![(sp.start, sp.end)];
    let spans_text = cleave_proto::owned::spans_text(&spans);
    for n in nodes {
        let Some(st) = &n.status else { continue };
        let learning = st.learner
            && matches!(st.role, Role::Follower | Role::Resyncing)
            && st.epoch == epoch
            && st.leader.as_deref() == Some(leader.as_str())
            && st.learn_spans == spans_text;
        if !learning && st.role != Role::Leader {
            actions.push(NodeAction::Learn {
                cluster: sp.target.clone(),
                node: n.name.clone(),
                address: n.address.clone(),
                epoch,
                leader: leader.clone(),
                spans: spans.clone(),
            });
        }
    }
}

/// A committed split is done when every router serves its table, the target owns the moved
/// range, and every replica of both sides has deleted the other side's keys.
fn split_done(sp: &SplitState, state: &CoreState, observed: &Observed) -> bool {
    let cleaned = |cluster: &str, epoch: u64| {
        observed.clusters.get(cluster).is_some_and(|nodes| {
            nodes
                .iter()
                .all(|n| n.status.as_ref().is_some_and(|s| s.cleaned_epoch >= epoch))
        })
    };
    state.committed_epoch >= sp.table_epoch
        && cleaned(&sp.source, sp.table_epoch)
        && cleaned(&sp.target, sp.table_epoch)
}

/// What `cleave status` says about a split: its phase and how far the target is.
fn progress(sp: &SplitState, observed: &Observed) -> String {
    let applied = |c: &str| {
        observed
            .clusters
            .get(c)
            .into_iter()
            .flatten()
            .filter_map(|n| n.status.as_ref().map(|s| s.applied_seq))
            .max()
            .unwrap_or(0)
    };
    let what = match sp.phase {
        super::split::SplitPhase::Cloning => format!(
            "cloning from {}: lag {} entries",
            sp.source,
            applied(&sp.source).saturating_sub(applied(&sp.target))
        ),
        super::split::SplitPhase::Fencing => "fencing the moving range".into(),
        super::split::SplitPhase::CuttingOver => {
            format!("cutting over at seq {}", sp.fence_seq.unwrap_or_default())
        }
        super::split::SplitPhase::Cleaning => "cleaning moved keys".into(),
        super::split::SplitPhase::Aborting => {
            format!("aborting: {} takes back the range", sp.source)
        }
    };
    format!(
        "splitting [{}, {}] from {} (table epoch {}): {what}",
        sp.start, sp.end, sp.source, sp.table_epoch
    )
}

/// Whether the cluster needs a new leader, why, and since when (ms). Also keeps track of how
/// long the leader has been silent. A leader that answers but does not lead its epoch needs
/// replacing at once; one that does not answer, once it has been silent for the cluster's
/// failover timeout (it may be hung — `SIGSTOP` — or cut off, which no restart fixes).
fn trouble(
    cs: &mut ClusterState,
    nodes: &[super::NodeObs],
    fc: &FileCluster,
    now_ms: u64,
) -> Option<(String, u64)> {
    let name = cs.leader.clone()?;
    let leader = nodes.iter().find(|n| n.name == name);
    match leader.and_then(|n| n.status.as_ref()) {
        Some(_) => {
            cs.silent_since_ms = None;
            needs_election(cs, nodes).map(|why| (why, now_ms))
        }
        None if cs.epoch == 0 => None,
        None => {
            let since = *cs.silent_since_ms.get_or_insert(now_ms);
            let silent = now_ms.saturating_sub(since);
            (silent >= fc.spec.failover_timeout_ms()).then(|| {
                (
                    format!("leader {name} did not answer for {silent} ms"),
                    since,
                )
            })
        }
    }
}

/// Why the recorded leader, which answers, must be replaced, if it must:
/// - it is at the recorded epoch (or past it) but does not lead it: it restarted — a restarted
///   leader never resumes an epoch — or stepped down because its store lost data;
/// - it is below the recorded epoch (it was chosen but not told to lead yet, or it lost its
///   store and restarted empty, at epoch 0) and another node that answers holds a log entry it
///   lacks. Telling it to lead would make that node resync from it and lose the entry, which
///   may be an acknowledged write; the most up-to-date node must lead a newer epoch instead.
fn needs_election(cs: &ClusterState, nodes: &[super::NodeObs]) -> Option<String> {
    let name = cs.leader.as_ref()?;
    let st = nodes
        .iter()
        .find(|n| &n.name == name)
        .and_then(|n| n.status.as_ref())?;
    if cs.epoch == 0 {
        return None;
    }
    if st.epoch >= cs.epoch {
        let leads = st.role == Role::Leader && st.epoch == cs.epoch;
        return (!leads).then(|| {
            format!(
                "leader {name} is {:?} at epoch {} (it restarted or stepped down)",
                st.role, st.epoch
            )
            .to_lowercase()
        });
    }
    let mine = (st.last_epoch, st.applied_seq);
    let ahead = nodes
        .iter()
        .filter(|n| &n.name != name)
        .filter_map(|n| n.status.as_ref().map(|s| (n, s)))
        .filter(|(_, s)| s.role != Role::Resyncing)
        .find(|(_, s)| (s.last_epoch, s.applied_seq) > mine)?;
    Some(format!(
        "leader {name} (epoch {}, seq {}) is behind {} (epoch {}, seq {}): it lost data or missed \
         writes before leading epoch {}",
        mine.0, mine.1, ahead.0.name, ahead.1.last_epoch, ahead.1.applied_seq, cs.epoch
    ))
}

/// Choose the node to lead a new epoch: the one whose log is the most up to date by
/// `(last epoch, last seq)`, never a resyncing one, and only when enough nodes answered to be
/// sure it holds every acknowledged write. A write was acknowledged once `k` followers held
/// it, so any `n - k` of the previous leader's `n - 1` followers include one that holds it (the
/// previous leader itself may have lost its tail and does not count). Returns the node and the
/// epoch, newer than any seen.
pub fn elect<'a>(
    cs: &ClusterState,
    nodes: &'a [super::NodeObs],
    k: usize,
) -> Result<(&'a super::NodeObs, u64), String> {
    let previous = cs.leader.as_deref().unwrap_or_default();
    let answered: Vec<&super::NodeObs> = nodes.iter().filter(|n| n.status.is_some()).collect();
    let followers_answered = answered.iter().filter(|n| n.name != previous).count();
    let needed = nodes
        .len()
        .saturating_sub(k.max(1))
        .min(nodes.len().saturating_sub(1));
    if followers_answered < needed {
        return Err(format!(
            "waiting to elect a leader: {followers_answered} of the {} other node(s) answered, \
             {needed} needed to be sure no acknowledged write is missing",
            nodes.len().saturating_sub(1)
        ));
    }
    let best = answered
        .iter()
        .filter(|n| n.status.as_ref().is_some_and(|s| s.role != Role::Resyncing))
        .max_by_key(|n| {
            let s = n.status.as_ref().expect("answered");
            (s.last_epoch, s.applied_seq, n.name == previous)
        })
        .ok_or_else(|| {
            "waiting to elect a leader: every node that answered is resyncing".to_string()
        })?;
    let seen = answered
        .iter()
        .filter_map(|n| n.status.as_ref().map(|s| s.epoch))
        .max()
        .unwrap_or(0);
    Ok((best, seen.max(cs.epoch) + 1))
}

/// A cluster the state knows nothing about: adopt what its nodes report (the state was lost
/// but the data was not), or make the first node leader at epoch 1.
fn adopt_or_choose(cs: &mut ClusterState, nodes: &[super::NodeObs]) {
    let best = nodes
        .iter()
        .filter_map(|n| n.status.as_ref().map(|s| (n, s)))
        .filter(|(_, s)| s.role == Role::Leader)
        .max_by_key(|(_, s)| (s.epoch, s.applied_seq));
    match best {
        Some((n, s)) => {
            cs.leader = Some(n.name.clone());
            cs.epoch = s.epoch.max(cs.epoch).max(1);
        }
        None => {
            cs.leader = Some(nodes[0].name.clone());
            cs.epoch = cs.epoch.max(1);
        }
    }
}

/// Whether two tables route the same way (epochs aside).
pub fn same_content(a: &RangeTable, b: &RangeTable) -> bool {
    a.ranges == b.ranges && a.clusters == b.clusters
}

/// A cluster's acknowledgement quorum, `minInSync` (never negative).
pub fn min_in_sync(fc: &FileCluster) -> usize {
    fc.spec.min_in_sync.max(0) as usize
}

/// Whether a node told to follow a new leader is known to have moved: `Some(status)` as it
/// answered after being told, `None` when telling it failed or it did not answer since.
pub type Fenced = Option<cleave_proto::status::NodeStatus>;

/// Whether `candidate` may now be told to lead, after the other nodes were told to follow it.
///
/// The election compared logs *before* the followers were moved; until a follower moves, the
/// old leader — silent to the operator but perhaps not to its followers — can still commit
/// through it. So, just before `NODE.LEAD`:
/// - every follower that was told to move must be known to have moved, and none may hold an
///   entry the candidate lacks (`(last epoch, seq)` above the candidate's, as they answer now,
///   fenced): otherwise a write the old leader committed through it would be lost;
/// - fewer than `k` (`minInSync`) of the nodes other than the candidate and the old leader may
///   be unaccounted for (not answering, or not moved), or the old leader could still gather a
///   quorum without the candidate.
///
/// `Err` says why; the pass then does not send `NODE.LEAD`, and the next one elects again from
/// what the moved followers hold.
pub fn may_lead(
    candidate: &str,
    now: &cleave_proto::status::NodeStatus,
    fenced: &[(String, Fenced)],
    unanswered: usize,
    k: usize,
) -> Result<(), String> {
    let mine = (now.last_epoch, now.applied_seq);
    let mut unmoved = unanswered;
    for (name, st) in fenced {
        match st {
            None => unmoved += 1,
            Some(s) if (s.last_epoch, s.applied_seq) > mine => {
                return Err(format!(
                    "{name} holds (epoch {}, seq {}) beyond {candidate}'s (epoch {}, seq {})",
                    s.last_epoch, s.applied_seq, mine.0, mine.1
                ))
            }
            Some(_) => {}
        }
    }
    if k > 0 && unmoved >= k {
        return Err(format!(
            "{unmoved} node(s) other than {candidate} have not moved to the new epoch; with \
             minInSync {k} the old leader could still commit through them"
        ));
    }
    Ok(())
}
