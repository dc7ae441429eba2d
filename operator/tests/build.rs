//! Pure tests of what the reconcile core decides (validate, build, status) from given specs,
//! recorded state and observations. No processes, no network.

use cleave_operator::crd::{FileCluster, HashRange};
use cleave_operator::reconcile::ownership;
use cleave_operator::reconcile::plan::{build, NodeAction};
use cleave_operator::reconcile::split::{Move, SplitState};
use cleave_operator::reconcile::status::{compute, Outcome, Report};
use cleave_operator::reconcile::validate::validate;
use cleave_operator::reconcile::{CoreState, Desired, NodeObs, Observed, RouterObs};
use cleave_proto::owned::Ownership;
use cleave_proto::status::{NodeStatus, Role};

fn fc(name: &str) -> FileCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
        "metadata": {"name": name, "generation": 1}, "spec": {}
    }))
    .unwrap()
}

fn hr(name: &str, start: i64, end: i64, cluster: &str) -> HashRange {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "HashRange",
        "metadata": {"name": name, "generation": 1},
        "spec": {"start": start, "end": end, "cluster": cluster}
    }))
    .unwrap()
}

fn samples() -> Desired {
    Desired {
        clusters: vec![fc("fc-a"), fc("fc-b")],
        ranges: vec![
            hr("low", 0, 2147483647, "fc-a"),
            hr("high", 2147483648, 4294967295, "fc-b"),
        ],
        errors: vec![],
    }
}

fn status(role: Role, epoch: u64, leader: Option<&str>, seq: u64) -> NodeStatus {
    NodeStatus {
        id: String::new(),
        role,
        epoch,
        applied_seq: seq,
        last_epoch: epoch,
        committed_seq: seq,
        leader: leader.map(str::to_owned),
        in_sync: role != Role::Idle,
        log_first_seq: 0,
        log_len: 0,
        full_resyncs: 0,
        followers: vec![],
        learner: false,
        learn_spans: String::new(),
        own_epoch: 0,
        owned_ranges: String::new(),
        own_cluster: String::new(),
        cleaned_epoch: 0,
    }
}

/// Three nodes per cluster at ports 100+, each reporting `st(cluster, index)`.
fn observed(
    st: impl Fn(&str, usize) -> Option<NodeStatus>,
    router_epochs: &[Option<u64>],
) -> Observed {
    let mut o = Observed::default();
    for (ci, c) in ["fc-a", "fc-b"].iter().enumerate() {
        let nodes = (0..3)
            .map(|i| NodeObs {
                name: format!("{c}-{i}"),
                address: format!("127.0.0.1:{}", 100 + ci * 10 + i),
                redis: format!("127.0.0.1:{}", 200 + ci * 10 + i),
                pid: Some(1000 + i as u32),
                status: st(c, i),
            })
            .collect();
        o.clusters.insert(c.to_string(), nodes);
    }
    o.routers = router_epochs
        .iter()
        .enumerate()
        .map(|(i, e)| RouterObs {
            name: format!("router-{i}"),
            address: format!("127.0.0.1:{}", 7000 + i),
            pid: None,
            epoch: *e,
        })
        .collect();
    o
}

fn leader_addr(c: &str) -> &'static str {
    if c == "fc-a" {
        "127.0.0.1:100"
    } else {
        "127.0.0.1:110"
    }
}

/// Every node already where the plan wants it: leader 0 at epoch 1, the others following it.
fn settled(c: &str, i: usize) -> Option<NodeStatus> {
    Some(if i == 0 {
        status(Role::Leader, 1, Some(leader_addr(c)), 5)
    } else {
        status(Role::Follower, 1, Some(leader_addr(c)), 5)
    })
}

/// The state after a first pass whose table every router acknowledged.
fn committed(v: &cleave_operator::reconcile::validate::Valid) -> CoreState {
    let mut state = build(v, &CoreState::default(), &observed(settled, &[None])).state;
    state.committed_epoch = 1;
    state
}

#[test]
fn a_table_never_reuses_an_epoch_a_router_already_has() {
    let v = validate(&samples()).unwrap();
    let plan = build(
        &v,
        &CoreState::default(),
        &observed(settled, &[Some(1), Some(1)]),
    );
    assert_eq!(plan.table.unwrap().epoch, 2);
}

#[test]
fn the_samples_are_valid() {
    let v = validate(&samples()).unwrap();
    assert_eq!(v.ranges[0].metadata.name.as_deref(), Some("low"));
    assert_eq!(v.clusters.len(), 2);
}

#[test]
fn overlaps_gaps_and_unknown_clusters_are_named() {
    let mut d = samples();
    d.ranges[1].spec.start = 2147483000;
    let p = validate(&d).unwrap_err();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].reason, "RangesOverlap");
    assert!(
        p[0].message.contains("low") && p[0].message.contains("high"),
        "{}",
        p[0].message
    );

    let mut d = samples();
    d.ranges[1].spec.start = 2147483650;
    let p = validate(&d).unwrap_err();
    assert_eq!(p[0].reason, "RangesGap");
    assert!(
        p[0].message.contains("[2147483648, 2147483649]"),
        "{}",
        p[0].message
    );

    let mut d = samples();
    d.ranges[1].spec.end = 4294967000;
    assert!(validate(&d).unwrap_err()[0]
        .message
        .contains("[4294967001, 4294967295]"));

    let mut d = samples();
    d.clusters.pop();
    let p = validate(&d).unwrap_err();
    assert_eq!(p[0].reason, "UnknownCluster");
    assert!(p[0].message.contains("fc-b"));

    let mut d = samples();
    d.ranges.clear();
    assert_eq!(validate(&d).unwrap_err()[0].reason, "NoRanges");

    let mut d = samples();
    d.errors.push("x.yaml: not valid YAML".into());
    assert_eq!(validate(&d).unwrap_err()[0].reason, "InvalidManifest");
}

#[test]
fn a_filecluster_name_that_would_break_its_objects_refuses_the_set() {
    // Objects the API server accepted before the CEL rules existed, or a local manifest.
    for bad in ["cleave-router", "fc.a", "9fc"] {
        let mut d = samples();
        d.clusters[1] = fc(bad);
        d.ranges[1].spec.cluster = bad.into();
        let p = validate(&d).unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].reason, "InvalidName");
        assert!(p[0].message.contains(bad), "{}", p[0].message);
    }
}

#[test]
fn first_pass_makes_node_zero_leader_at_epoch_one() {
    let v = validate(&samples()).unwrap();
    let obs = observed(|_, _| Some(status(Role::Idle, 0, None, 0)), &[None, None]);
    let plan = build(&v, &CoreState::default(), &obs);
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-0".into()), 1)
    );
    // Followers first (once they are at the epoch an old leader gets no acknowledgements),
    // then the leader.
    assert_eq!(
        plan.actions[2],
        NodeAction::Lead {
            cluster: "fc-a".into(),
            node: "fc-a-0".into(),
            address: "127.0.0.1:100".into(),
            epoch: 1
        }
    );
    assert_eq!(
        plan.actions[0],
        NodeAction::Follow {
            cluster: "fc-a".into(),
            node: "fc-a-1".into(),
            address: "127.0.0.1:101".into(),
            epoch: 1,
            leader: "127.0.0.1:100".into()
        }
    );
    assert_eq!(plan.actions.len(), 6);
    assert!(plan.table.is_none(), "no table before the leaders lead");
    assert!(plan.waiting.contains_key("fc-a"));
}

#[test]
fn the_table_is_built_once_leaders_lead_and_pushed_to_stale_routers() {
    let v = validate(&samples()).unwrap();
    let obs = observed(settled, &[None, Some(0)]);
    let plan = build(&v, &CoreState::default(), &obs);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let t = plan.table.unwrap();
    assert_eq!(t.epoch, 1);
    assert_eq!(t.ranges.len(), 2);
    assert_eq!(t.clusters["fc-a"].leader.as_deref(), Some("127.0.0.1:100"));
    assert_eq!(
        t.clusters["fc-a"].nodes,
        ["127.0.0.1:100", "127.0.0.1:101", "127.0.0.1:102"]
    );
    assert_eq!(plan.push_to, ["127.0.0.1:7000", "127.0.0.1:7001"]);
}

#[test]
fn an_unchanged_table_keeps_its_epoch_and_a_change_bumps_it() {
    let v = validate(&samples()).unwrap();
    let first = build(&v, &CoreState::default(), &observed(settled, &[None, None]));
    assert_eq!(first.table.as_ref().unwrap().epoch, 1);
    let mut state = first.state.clone();
    state.committed_epoch = 1;
    let again = build(&v, &state, &observed(settled, &[Some(1), Some(1)]));
    assert_eq!(again.table.as_ref().unwrap().epoch, 1);
    assert!(again.push_to.is_empty());
    assert_eq!(again.state, state, "nothing to record");

    // A re-cut that keeps every hash with its owner: a new table epoch.
    let mut d = samples();
    d.ranges[0].spec.end = 1073741823;
    d.ranges.push(hr("low2", 1073741824, 2147483647, "fc-a"));
    let v = validate(&d).unwrap();
    let recut = build(&v, &state, &observed(settled, &[Some(1), Some(1)]));
    assert_eq!(recut.table.as_ref().unwrap().epoch, 2);
    assert_eq!(recut.push_to.len(), 2);
    assert_eq!(recut.state.split, None);

    // Moving a range to a cluster that already owns one would move no data: refused, the
    // served table stays, and the reason is given.
    let mut d = samples();
    d.ranges[0].spec.end = 1073741823;
    d.ranges.push(hr("mid", 1073741824, 2147483647, "fc-b"));
    let v = validate(&d).unwrap();
    let refused = build(&v, &state, &observed(settled, &[Some(1), Some(1)]));
    assert_eq!(refused.table.as_ref().unwrap().epoch, 1);
    assert!(refused.push_to.is_empty());
    assert_eq!(refused.state.split, None);
    assert!(
        refused.waiting["(ranges)"].contains("already owns"),
        "{:?}",
        refused.waiting
    );
}

#[test]
fn a_restarted_operator_adopts_the_leader_its_nodes_report() {
    let v = validate(&samples()).unwrap();
    let obs = observed(
        |c, i| {
            let leader = if c == "fc-a" {
                "127.0.0.1:102"
            } else {
                leader_addr(c)
            };
            Some(match (c, i) {
                ("fc-a", 2) => status(Role::Leader, 4, Some(leader), 9),
                ("fc-b", 0) => status(Role::Leader, 1, Some(leader), 9),
                _ => status(
                    Role::Follower,
                    if c == "fc-a" { 4 } else { 1 },
                    Some(leader),
                    9,
                ),
            })
        },
        &[Some(3)],
    );
    let plan = build(&v, &CoreState::default(), &obs);
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-2".into()), 4)
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.table.unwrap().epoch, 4, "above what the routers serve");
}

#[test]
fn a_node_that_lost_its_data_is_told_to_follow_again() {
    let v = validate(&samples()).unwrap();
    let first = build(&v, &CoreState::default(), &observed(settled, &[Some(1)]));
    let obs = observed(
        |c, i| {
            if (c, i) == ("fc-a", 1) {
                Some(status(Role::Idle, 0, None, 0))
            } else {
                settled(c, i)
            }
        },
        &[Some(1)],
    );
    let plan = build(&v, &first.state, &obs);
    assert_eq!(plan.actions.len(), 1);
    assert!(
        matches!(&plan.actions[0], NodeAction::Follow { node, epoch: 1, .. } if node == "fc-a-1")
    );
}

#[test]
fn a_down_leader_holds_the_table_back() {
    let v = validate(&samples()).unwrap();
    let obs = observed(
        |c, i| {
            if (c, i) == ("fc-b", 0) {
                None
            } else {
                settled(c, i)
            }
        },
        &[None],
    );
    let plan = build(&v, &CoreState::default(), &obs);
    assert!(plan.table.is_none());
    assert!(plan.waiting["fc-b"].contains("does not answer"));
}

#[test]
fn status_reports_roles_sequences_and_conditions() {
    let d = samples();
    let v = validate(&d).unwrap();
    let obs = observed(
        |c, i| {
            if (c, i) == ("fc-a", 2) {
                None
            } else {
                settled(c, i)
            }
        },
        &[Some(1), Some(1)],
    );
    let state = committed(&v);
    let r = compute(
        &d,
        &state,
        &obs,
        &Outcome::default(),
        &Report::default(),
        "2026-01-01T00:00:00Z",
    );
    assert_eq!(r.epoch, 1);
    let a = &r.clusters[0];
    assert_eq!(
        (a.name.as_str(), a.status.leader.as_deref(), a.status.epoch),
        ("fc-a", Some("fc-a-0"), 1)
    );
    assert_eq!(a.status.nodes[0].role, "leader");
    assert_eq!(a.status.nodes[0].applied_seq, 5);
    assert_eq!(a.status.nodes[2].role, "down");
    assert!(!a.status.nodes[2].in_sync);
    let cond = |c: &str| {
        a.status
            .conditions
            .iter()
            .find(|k| k.type_ == c)
            .unwrap()
            .clone()
    };
    assert!(
        cond("Ready").is_true(),
        "one follower in sync is enough (minInSync 1)"
    );
    assert!(cond("Degraded").is_true());
    assert!(cond("Degraded").message.contains("fc-a-2"));
    assert_eq!(a.status.observed_generation, Some(1));
    assert_eq!(r.ranges[0].status.served_by.as_deref(), Some("fc-a"));
    assert_eq!(r.ranges[1].status.epoch, Some(1));

    // Transition times survive a pass in which nothing changed.
    let later = compute(
        &d,
        &state,
        &obs,
        &Outcome::default(),
        &r,
        "2026-01-01T00:05:00Z",
    );
    assert_eq!(
        later.clusters[0].status.conditions[0].last_transition_time,
        "2026-01-01T00:00:00Z"
    );
}

#[test]
fn status_of_a_refused_set_says_why_and_keeps_serving() {
    let mut d = samples();
    d.ranges[1].spec.start = 2147483000;
    let problems = validate(&d).unwrap_err();
    let obs = observed(settled, &[Some(1)]);
    let state = committed(&validate(&samples()).unwrap());
    let outcome = Outcome {
        problems,
        ..Outcome::default()
    };
    let r = compute(&d, &state, &obs, &outcome, &Report::default(), "t");
    assert!(r.errors[0].contains("overlap"));
    let high = r.ranges.iter().find(|x| x.name == "high").unwrap();
    let valid = high
        .status
        .conditions
        .iter()
        .find(|k| k.type_ == "Valid")
        .unwrap();
    assert!(!valid.is_true());
    assert_eq!(valid.reason, "RangesOverlap");
    let low = r.ranges.iter().find(|x| x.name == "low").unwrap();
    assert_eq!(
        low.status.served_by.as_deref(),
        Some("fc-a"),
        "the last valid table is still served"
    );
    assert_eq!(r.epoch, 1);
}

/// The leader and epoch the plan recorded for a cluster.
fn leader_and_epoch(state: &CoreState, cluster: &str) -> (Option<String>, u64) {
    let cs = &state.clusters[cluster];
    (cs.leader.clone(), cs.epoch)
}

/// A status with its log position: `(last epoch, seq)`.
fn at(role: Role, epoch: u64, leader: Option<&str>, last: (u64, u64)) -> NodeStatus {
    let mut s = status(role, epoch, leader, last.1);
    s.last_epoch = last.0;
    s
}

#[test]
fn a_restarted_leader_is_replaced_by_the_most_up_to_date_node_at_a_newer_epoch() {
    let v = validate(&samples()).unwrap();
    let state = committed(&v);
    // fc-a-0 restarted (idle, and its Redis lost its tail: seq 90); fc-a-2 holds the most.
    let obs = observed(
        |c, i| match (c, i) {
            ("fc-a", 0) => Some(at(Role::Idle, 1, None, (1, 90))),
            ("fc-a", 1) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 99))),
            ("fc-a", 2) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 100))),
            _ => settled(c, i),
        },
        &[Some(1), Some(1)],
    );
    let plan = build(&v, &state, &obs);
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-2".into()), 2)
    );
    let lead_at = plan
        .actions
        .iter()
        .position(|a| matches!(a, NodeAction::Lead { node, epoch: 2, .. } if node == "fc-a-2"))
        .expect("fc-a-2 is told to lead epoch 2");
    for n in ["fc-a-0", "fc-a-1"] {
        let follow_at = plan
            .actions
            .iter()
            .position(|a| matches!(a, NodeAction::Follow { node, epoch: 2, leader, .. } if node == n && leader == "127.0.0.1:102"))
            .unwrap_or_else(|| panic!("{n} is told to follow fc-a-2 at epoch 2"));
        assert!(follow_at < lead_at, "followers move to the new epoch first");
    }
    assert_eq!(plan.state.clusters["fc-b"].epoch, 1, "fc-b is left alone");
}

#[test]
fn a_leader_that_restarts_with_an_empty_store_is_never_told_to_lead_again() {
    let v = validate(&samples()).unwrap();
    let state = committed(&v);
    // fc-a-0 led epoch 1; it was killed, its Redis data and AOF removed, and it restarted
    // empty: epoch 0, nothing applied. Its followers still follow it and hold seq 100.
    let wiped = |c: &str, i: usize| match (c, i) {
        ("fc-a", 0) => Some(at(Role::Idle, 0, None, (0, 0))),
        ("fc-a", 1) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 100))),
        ("fc-a", 2) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 99))),
        _ => settled(c, i),
    };
    let plan = build(&v, &state, &observed(wiped, &[Some(1)]));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, NodeAction::Lead { node, .. } if node == "fc-a-0")),
        "the emptied node must not lead (its followers would resync from it): {:?}",
        plan.actions
    );
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-1".into()), 2),
        "the node holding the most leads a newer epoch"
    );
    let f = plan.state.clusters["fc-a"].last_failover.as_ref().unwrap();
    assert!(
        f.record.reason.contains("behind fc-a-1"),
        "{}",
        f.record.reason
    );

    // A leader chosen but not told to lead yet, with nobody ahead of it, is simply told again.
    let mut chosen = state.clone();
    chosen.clusters.get_mut("fc-a").unwrap().epoch = 2;
    let pending = |c: &str, i: usize| match (c, i) {
        ("fc-a", 0) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 100))),
        ("fc-a", _) => Some(at(Role::Follower, 2, Some("127.0.0.1:100"), (1, 100))),
        _ => settled(c, i),
    };
    let plan = build(&v, &chosen, &observed(pending, &[Some(1)]));
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-0".into()), 2)
    );
    assert!(plan
        .actions
        .iter()
        .any(|a| matches!(a, NodeAction::Lead { node, epoch: 2, .. } if node == "fc-a-0")));
}

#[test]
fn an_election_waits_while_too_few_nodes_answer_and_never_picks_a_resyncing_node() {
    let v = validate(&samples()).unwrap();
    let state = committed(&v);
    // minInSync 1 of 3: both followers must answer; fc-a-2 is down.
    let obs = observed(
        |c, i| match (c, i) {
            ("fc-a", 0) => Some(at(Role::Idle, 1, None, (1, 100))),
            ("fc-a", 1) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 100))),
            ("fc-a", 2) => None,
            _ => settled(c, i),
        },
        &[Some(1)],
    );
    let plan = build(&v, &state, &obs);
    assert_eq!(plan.state.clusters["fc-a"].epoch, 1, "no new epoch");
    assert!(
        plan.waiting["fc-a"].contains("1 of the 2 other node(s) answered, 2 needed"),
        "{:?}",
        plan.waiting
    );
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, NodeAction::Lead { cluster, .. } if cluster == "fc-a")));

    // Every node answers but the one with the highest seq is resyncing: it is not chosen.
    let obs = observed(
        |c, i| match (c, i) {
            ("fc-a", 0) => Some(at(Role::Idle, 1, None, (1, 50))),
            ("fc-a", 1) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 60))),
            ("fc-a", 2) => Some(at(Role::Resyncing, 1, Some("127.0.0.1:100"), (1, 900))),
            _ => settled(c, i),
        },
        &[Some(1)],
    );
    let plan = build(&v, &state, &obs);
    assert_eq!(
        plan.state.clusters["fc-a"].leader.as_deref(),
        Some("fc-a-1")
    );
    assert_eq!(plan.state.clusters["fc-a"].epoch, 2);
}

#[test]
fn a_silent_leader_is_replaced_only_after_the_failover_timeout_and_the_change_is_recorded() {
    let v = validate(&samples()).unwrap();
    let state = committed(&v);
    let silent = |c: &str, i: usize| match (c, i) {
        ("fc-a", 0) => None,
        ("fc-a", 1) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 40))),
        ("fc-a", 2) => Some(at(Role::Follower, 1, Some("127.0.0.1:100"), (1, 41))),
        _ => settled(c, i),
    };
    let mut obs = observed(silent, &[Some(1)]);
    obs.now_ms = 10_000;
    let first = build(&v, &state, &obs);
    assert_eq!(
        leader_and_epoch(&first.state, "fc-a"),
        (Some("fc-a-0".into()), 1)
    );
    assert_eq!(first.state.clusters["fc-a"].silent_since_ms, Some(10_000));
    assert!(first.waiting["fc-a"].contains("does not answer"));

    // 1 499 ms later: still within the default 1 500 ms.
    obs.now_ms = 11_499;
    let second = build(&v, &first.state, &obs);
    assert_eq!(
        leader_and_epoch(&second.state, "fc-a"),
        (Some("fc-a-0".into()), 1)
    );

    obs.now_ms = 11_500;
    let third = build(&v, &second.state, &obs);
    assert_eq!(
        leader_and_epoch(&third.state, "fc-a"),
        (Some("fc-a-2".into()), 2)
    );
    let cs = &third.state.clusters["fc-a"];
    let f = &cs.last_failover.as_ref().expect("recorded").record;
    assert_eq!(
        (f.from.as_str(), f.to.as_str(), f.epoch),
        ("fc-a-0", "fc-a-2", 2)
    );
    assert!(
        f.reason.contains("did not answer for 1500 ms"),
        "{}",
        f.reason
    );
    assert_eq!(cs.failovers, 1);
    assert_eq!(f.duration_ms, None, "not yet seen leading");

    // The new leader leads: the duration is measured from the first silence.
    let led = |c: &str, i: usize| match (c, i) {
        ("fc-a", 0) => None,
        ("fc-a", 2) => Some(at(Role::Leader, 2, Some("127.0.0.1:102"), (2, 42))),
        ("fc-a", 1) => Some(at(Role::Follower, 2, Some("127.0.0.1:102"), (2, 42))),
        _ => settled(c, i),
    };
    let mut obs = observed(led, &[Some(1)]);
    obs.now_ms = 11_800;
    let fourth = build(&v, &third.state, &obs);
    let f = &fourth.state.clusters["fc-a"]
        .last_failover
        .as_ref()
        .unwrap()
        .record;
    assert_eq!(f.duration_ms, Some(1_800));
    assert_eq!(
        fourth.table.unwrap().clusters["fc-a"].leader.as_deref(),
        Some("127.0.0.1:102"),
        "routers are told"
    );
}

#[test]
fn a_switchover_waits_for_an_in_sync_target_and_reserves_a_new_epoch() {
    let state = committed(&validate(&samples()).unwrap());
    let mut d = samples();
    d.clusters[0].spec.leader = Some("fc-a-1".into());
    let v = validate(&d).unwrap();
    let plan = build(&v, &state, &observed(settled, &[Some(1)]));
    assert_eq!(plan.switchovers.len(), 1, "{:?}", plan.waiting);
    let sw = &plan.switchovers[0];
    assert_eq!(sw.from, ("fc-a-0".into(), "127.0.0.1:100".into(), 1));
    assert_eq!(sw.to, ("fc-a-1".into(), "127.0.0.1:101".into()));
    assert_eq!(sw.epoch, 2);
    assert_eq!(sw.others, ["127.0.0.1:100", "127.0.0.1:102"]);
    // The epoch is reserved before acting; the leader changes only once the switch is done.
    assert_eq!(
        leader_and_epoch(&plan.state, "fc-a"),
        (Some("fc-a-0".into()), 2)
    );

    // A target that is not an in-sync follower: wait.
    let lagging = |c: &str, i: usize| match (c, i) {
        ("fc-a", 1) => Some(status(Role::Resyncing, 1, Some("127.0.0.1:100"), 0)),
        _ => settled(c, i),
    };
    let plan = build(&v, &state, &observed(lagging, &[Some(1)]));
    assert!(plan.switchovers.is_empty());
    assert!(plan.waiting["fc-a"].contains("in-sync follower"));

    let mut d = samples();
    d.clusters[0].spec.leader = Some("fc-z-9".into());
    let v = validate(&d).unwrap();
    let plan = build(&v, &state, &observed(settled, &[Some(1)]));
    assert!(plan.waiting["fc-a"].contains("not a node of fc-a"));
}

#[test]
fn a_candidate_leads_only_once_the_followers_moved_and_hold_nothing_it_lacks() {
    use cleave_operator::reconcile::plan::may_lead;
    let cand = at(Role::Follower, 4, Some("a0"), (3, 12));
    let moved = |seq| Some(at(Role::Follower, 4, Some("a2"), (3, seq)));
    // Everyone moved and is behind or level: lead.
    assert_eq!(
        may_lead("fc-a-2", &cand, &[("fc-a-1".into(), moved(10))], 0, 1),
        Ok(())
    );
    assert_eq!(
        may_lead("fc-a-2", &cand, &[("fc-a-1".into(), moved(12))], 0, 1),
        Ok(())
    );
    // A moved follower got a write from the old leader that the candidate lacks.
    let err = may_lead("fc-a-2", &cand, &[("fc-a-1".into(), moved(13))], 0, 1).unwrap_err();
    assert!(
        err.contains("fc-a-1 holds (epoch 3, seq 13) beyond fc-a-2's"),
        "{err}"
    );
    // A newer epoch beats a higher seq.
    let newer = Some(at(Role::Follower, 4, Some("a2"), (4, 1)));
    assert!(may_lead("fc-a-2", &cand, &[("fc-a-1".into(), newer)], 0, 1).is_err());
    // A follower that could not be moved could still acknowledge the old leader (k = 1).
    let err = may_lead("fc-a-2", &cand, &[("fc-a-1".into(), None)], 0, 1).unwrap_err();
    assert!(
        err.contains("1 node(s) other than fc-a-2 have not moved"),
        "{err}"
    );
    // With k = 2 one unmoved node (or one not answering) is not enough for the old leader.
    let told = [("fc-a-1".into(), None), ("fc-a-3".into(), moved(5))];
    assert_eq!(may_lead("fc-a-2", &cand, &told, 0, 2), Ok(()));
    assert!(may_lead("fc-a-2", &cand, &told, 1, 2).is_err());
}

#[test]
fn stale_routers_and_routers_not_ready_are_pushed_the_table() {
    use cleave_operator::reconcile::{routers_to_push, Endpoint};
    let o = observed(settled, &[Some(7), Some(6), Some(7), None]);
    let table = cleave_proto::range::RangeTable {
        epoch: 7,
        ranges: vec![],
        clusters: Default::default(),
    };
    let ep = |i: usize, ready: bool| Endpoint {
        name: format!("router-{i}"),
        address: format!("127.0.0.1:{}", 7000 + i),
        redis: String::new(),
        pid: None,
        ready,
    };
    // 0: ready, current: left alone. 1: ready, stale: pushed. 2: current but not ready (it
    // started from a table file that may be older than the last commit, and only a push makes
    // it ready): pushed. 3: not answering, not ready: pushed.
    let routers = [ep(0, true), ep(1, true), ep(2, false), ep(3, false)];
    let pushed: Vec<&str> = routers_to_push(&routers, &table, &o)
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(pushed, ["router-1", "router-2", "router-3"]);
}

#[test]
fn a_failover_during_a_split_never_publishes_a_table_at_the_fence_epoch() {
    use cleave_operator::reconcile::split::{SplitPhase, SplitState};
    // fc-a halves into a new fc-c; the split recorded its fence (epoch 2) but perhaps did not
    // send it yet, when fc-a's leader restarts and a failover publishes a new table.
    let mut d = samples();
    d.clusters.push(fc("fc-c"));
    d.ranges[0] = hr("low", 0, 1073741823, "fc-a");
    d.ranges.push(hr("mid", 1073741824, 2147483647, "fc-c"));
    let v = validate(&d).unwrap();
    let mut state = committed(&validate(&samples()).unwrap());
    state.split = Some(SplitState {
        source: "fc-a".into(),
        target: "fc-c".into(),
        start: 1073741824,
        end: 2147483647,
        kept: vec![(0, 1073741823)],
        fence_epoch: 2,
        table_epoch: 3,
        phase: SplitPhase::Fencing,
        fence_seq: None,
        began_ms: 1,
    });
    let obs = observed(
        |c, i| match (c, i) {
            ("fc-a", 0) => Some(at(Role::Idle, 1, None, (1, 4))),
            _ => settled(c, i),
        },
        &[Some(1), Some(1)],
    );
    let plan = build(&v, &state, &obs);
    assert_eq!(plan.state.clusters["fc-a"].epoch, 2, "fc-a failed over");
    let t = plan.table.expect("the failover's table is published");
    assert!(
        t.epoch > 2,
        "table epoch {} collides with the split's fence epoch 2",
        t.epoch
    );
    assert!(
        t.ranges.iter().all(|r| r.cluster != "fc-c"),
        "before its commit point the split moves nothing"
    );
}

/// The split of the test above (fc-a's upper half into a new fc-c), recorded at `phase`.
fn split_at(
    phase: cleave_operator::reconcile::split::SplitPhase,
) -> cleave_operator::reconcile::split::SplitState {
    cleave_operator::reconcile::split::SplitState {
        source: "fc-a".into(),
        target: "fc-c".into(),
        start: 1073741824,
        end: 2147483647,
        kept: vec![(0, 1073741823)],
        fence_epoch: 2,
        table_epoch: 3,
        phase,
        fence_seq: Some(7),
        began_ms: 1,
    }
}

#[test]
fn a_fenced_split_no_longer_asked_for_is_aborted_and_moves_nothing() {
    use cleave_operator::reconcile::split::SplitPhase;
    for phase in [SplitPhase::Fencing, SplitPhase::CuttingOver] {
        let mut d = samples();
        d.clusters.push(fc("fc-c"));
        let v = validate(&d).unwrap();
        let mut state = committed(&validate(&samples()).unwrap());
        state.split = Some(split_at(phase));
        let plan = build(&v, &state, &observed(settled, &[Some(1), Some(1)]));
        let abort = plan.abort.expect("the fenced split is aborted");
        assert_eq!(
            abort.phase, phase,
            "the abort starts from the recorded phase"
        );
        assert!(
            plan.table
                .iter()
                .flat_map(|t| t.ranges.iter())
                .all(|r| r.cluster != "fc-c"),
            "an aborted split moves nothing"
        );
    }
}

#[test]
fn an_aborting_split_is_never_resumed_even_when_asked_for_again() {
    use cleave_operator::reconcile::split::SplitPhase;
    // The abort was recorded (and perhaps sent: fc-a may own everything again under epoch 3),
    // then the user puts the split back. Committing it now would let fc-a and fc-c both accept
    // writes for the moved range.
    let mut d = samples();
    d.clusters.push(fc("fc-c"));
    d.ranges[0] = hr("low", 0, 1073741823, "fc-a");
    d.ranges.push(hr("mid", 1073741824, 2147483647, "fc-c"));
    let v = validate(&d).unwrap();
    let mut state = committed(&validate(&samples()).unwrap());
    state.split = Some(split_at(SplitPhase::Aborting));
    let plan = build(&v, &state, &observed(settled, &[Some(1), Some(1)]));
    let abort = plan.abort.expect("the abort goes on");
    assert_eq!(abort.phase, SplitPhase::Aborting);
    assert_eq!(
        plan.state.split.as_ref().map(|s| s.phase),
        Some(SplitPhase::Aborting),
        "no new split begins before the abort is done"
    );
    assert!(
        plan.table
            .iter()
            .flat_map(|t| t.ranges.iter())
            .all(|r| r.cluster != "fc-c"),
        "nothing moves while the abort is in progress"
    );
}

#[test]
fn a_failover_during_an_abort_never_takes_the_aborts_epoch() {
    use cleave_operator::reconcile::split::SplitPhase;
    let mut d = samples();
    d.clusters.push(fc("fc-c"));
    let v = validate(&d).unwrap();
    let mut state = committed(&validate(&samples()).unwrap());
    let mut sp = split_at(SplitPhase::Aborting);
    sp.table_epoch = 5; // the abort's epoch, recorded before it was sent
    state.split = Some(sp);
    let obs = observed(
        |c, i| match (c, i) {
            ("fc-a", 0) => Some(at(Role::Idle, 1, None, (1, 4))),
            _ => settled(c, i),
        },
        &[Some(1), Some(1)],
    );
    let plan = build(&v, &state, &obs);
    let t = plan.table.expect("the failover's table is published");
    assert!(
        t.epoch > 5,
        "table epoch {} is not above the abort's epoch 5",
        t.epoch
    );
}

/// The committed table of the samples, with the state that committed it.
fn committed_table() -> (CoreState, cleave_proto::range::RangeTable) {
    let v = validate(&samples()).unwrap();
    let plan = build(&v, &CoreState::default(), &observed(settled, &[None]));
    let table = plan.table.expect("a first table");
    let mut state = plan.state;
    state.committed_epoch = table.epoch;
    (state, table)
}

#[test]
fn leaders_without_an_ownership_record_are_given_their_ranges_of_the_committed_table() {
    let (state, table) = committed_table();
    let got = ownership::missing(&table, &state, &observed(settled, &[None]));
    let own = |cluster: &str, ranges| Ownership {
        cluster: cluster.into(),
        epoch: table.epoch,
        ranges,
        fenced: false,
    };
    assert_eq!(
        got,
        vec![
            (
                leader_addr("fc-a").into(),
                own("fc-a", vec![(0, 2147483647)])
            ),
            (
                leader_addr("fc-b").into(),
                own("fc-b", vec![(2147483648, u32::MAX)])
            ),
        ]
    );
}

#[test]
fn no_ownership_is_given_twice_during_a_split_before_the_table_commits_or_to_a_non_leader() {
    let (state, table) = committed_table();
    let owning = |c: &str, i: usize| {
        settled(c, i).map(|mut s| {
            s.own_epoch = 1;
            s
        })
    };
    assert!(ownership::missing(&table, &state, &observed(owning, &[None])).is_empty());

    let mut uncommitted = state.clone();
    uncommitted.committed_epoch = table.epoch - 1;
    assert!(ownership::missing(&table, &uncommitted, &observed(settled, &[None])).is_empty());

    let mut splitting = state.clone();
    splitting.split = Some(SplitState::begin(
        &Move {
            source: "fc-a".into(),
            target: "fc-c".into(),
            start: 0,
            end: 10,
            kept: vec![(11, 2147483647)],
        },
        table.epoch,
        0,
    ));
    assert!(ownership::missing(&table, &splitting, &observed(settled, &[None])).is_empty());

    // A leader that answers at another epoch than recorded (a failover under way) waits.
    let older = |c: &str, i: usize| {
        settled(c, i).map(|mut s| {
            s.epoch = 0;
            s
        })
    };
    assert!(ownership::missing(&table, &state, &observed(older, &[None])).is_empty());
}

#[test]
fn a_splits_learners_are_told_to_copy_only_the_moving_range_and_told_again_if_theirs_differ() {
    use cleave_operator::reconcile::split::SplitPhase;
    let mut d = samples();
    d.clusters.push(fc("fc-c"));
    d.ranges[0] = hr("low", 0, 1073741823, "fc-a");
    d.ranges.push(hr("mid", 1073741824, 2147483647, "fc-c"));
    let v = validate(&d).unwrap();
    let mut state = committed(&validate(&samples()).unwrap());
    state.split = Some(split_at(SplitPhase::Cloning));
    let mut obs = observed(settled, &[Some(1), Some(1)]);
    let learning = |spans: &str| NodeStatus {
        learner: true,
        learn_spans: spans.into(),
        ..status(Role::Follower, 1, Some("127.0.0.1:100"), 5)
    };
    let moving = "1073741824-2147483647";
    let fc_c = [
        Some(learning(moving)),
        Some(learning("")),
        Some(learning("0-1073741823")),
        Some(status(Role::Idle, 0, None, 0)),
    ];
    let nodes = fc_c
        .into_iter()
        .enumerate()
        .map(|(i, status)| NodeObs {
            name: format!("fc-c-{i}"),
            address: format!("127.0.0.1:{}", 120 + i),
            redis: format!("127.0.0.1:{}", 220 + i),
            pid: Some(2000 + i as u32),
            status,
        })
        .collect();
    obs.clusters.insert("fc-c".into(), nodes);
    let plan = build(&v, &state, &obs);
    type Told<'a> = (&'a str, &'a str, u64, &'a [(u32, u32)]);
    let told: Vec<Told> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            NodeAction::Learn {
                node,
                leader,
                epoch,
                spans,
                ..
            } => Some((node.as_str(), leader.as_str(), *epoch, spans.as_slice())),
            _ => None,
        })
        .collect();
    let range: &[(u32, u32)] = &[(1073741824, 2147483647)];
    assert_eq!(
        told,
        [
            ("fc-c-1", "127.0.0.1:100", 1, range),
            ("fc-c-2", "127.0.0.1:100", 1, range),
            ("fc-c-3", "127.0.0.1:100", 1, range),
        ],
        "every target node not already copying the moving range learns it from fc-a's leader"
    );
}
