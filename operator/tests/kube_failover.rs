//! Failover on Kubernetes, against a scripted API server (see `kube_api`) and stand-in nodes and
//! routers on loopback that speak the real protocol and log what they are told.
//!
//! What is pinned:
//! - the call sequence of a failover: the new leader and epoch are recorded in the state
//!   ConfigMap (a `PUT` conditional on the `resourceVersion` read) before any node hears of
//!   them; the other followers move to the new epoch before the new leader is told to lead; the
//!   routers get the new table after that, and the state is saved again conditionally;
//! - the epoch compare-and-set: when that conditional write is refused with 409 (another
//!   operator wrote first), the pass stops with an error and no node is told anything;
//! - the renew deadline: an operator whose Lease authority has lapsed stops before recording
//!   or telling anything;
//! - observed-time expiry of the leader Lease: a Lease whose `renewTime` is an hour old is not
//!   taken at first sight (the holder's clock may differ from ours).

mod kube_api;

use cleave_operator::platform::kubernetes::controller::{reconcile, REQUEUE_SILENT_LEADER};
use cleave_operator::platform::kubernetes::leader_election::{Authority, LeaseLock};
use cleave_operator::reconcile::{ClusterState, CoreState};
use cleave_proto::command::Command;
use cleave_proto::connection::Connection;
use cleave_proto::frame::Frame;
use cleave_proto::range::{ClusterMembers, HashRange, RangeTable};
use cleave_proto::status::{NodeStatus, Role};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::controller::Action;
use kube::Api;
use kube_api::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What a stand-in answers and remembers.
#[derive(Debug)]
enum Stub {
    /// A node: its status changes as it is told to lead or follow.
    Node(NodeStatus),
    /// A router serving a table.
    Router(RangeTable),
    /// A node that answers its status but refuses to follow (a transient failure).
    Refusing(NodeStatus),
}

/// A stand-in pod on a loopback port. A `None` stub accepts connections and never answers
/// (a hung node).
async fn stand_in(name: &str, stub: Option<Stub>, log: Log) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let name = name.to_string();
    let me = addr.clone();
    let state = Arc::new(Mutex::new(stub));
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            if state.lock().unwrap().is_none() {
                held.push(socket);
                continue;
            }
            let (state, log, name, me) = (state.clone(), log.clone(), name.clone(), me.clone());
            tokio::spawn(async move {
                let mut conn = Connection::new(socket);
                while let Ok(Some(frame)) = conn.read_frame().await {
                    let reply = match Command::from_frame(frame) {
                        Ok(cmd) => answer(&name, &me, &cmd, &state, &log),
                        Err(e) => Frame::Error(format!("ERR {e:?}")),
                    };
                    if conn.send(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn answer(name: &str, me: &str, cmd: &Command, state: &Mutex<Option<Stub>>, log: &Log) -> Frame {
    let mut state = state.lock().unwrap();
    match (cmd, state.as_mut()) {
        (Command::NodeStatus, Some(Stub::Node(s) | Stub::Refusing(s))) => bulk(s),
        (Command::NodeFollow { epoch, .. }, Some(Stub::Refusing(_))) => {
            log.lock()
                .unwrap()
                .push(format!("{name} REFUSED FOLLOW {epoch}"));
            Frame::Error("ERR refusing, for the test".into())
        }
        (Command::NodeFollow { epoch, leader, .. }, Some(Stub::Node(s))) => {
            log.lock()
                .unwrap()
                .push(format!("{name} FOLLOW {epoch} {leader}"));
            s.role = Role::Follower;
            s.epoch = *epoch;
            s.leader = Some(leader.clone());
            Frame::Simple("OK".into())
        }
        (Command::NodeLead { epoch }, Some(Stub::Node(s))) => {
            log.lock().unwrap().push(format!("{name} LEAD {epoch}"));
            s.role = Role::Leader;
            s.epoch = *epoch;
            s.leader = Some(me.to_string());
            Frame::Simple("OK".into())
        }
        (Command::TableGet, Some(Stub::Router(t))) => bulk(t),
        (Command::TablePush(bytes), Some(Stub::Router(t))) => {
            *t = serde_json::from_slice(bytes).unwrap();
            log.lock().unwrap().push(format!(
                "{name} PUSH {} leader {:?}",
                t.epoch, t.clusters["fc-a"].leader
            ));
            Frame::Simple("OK".into())
        }
        (other, _) => Frame::Error(format!("ERR the stand-in {name} does not expect {other:?}")),
    }
}

fn bulk(v: &impl serde::Serialize) -> Frame {
    Frame::Bulk(serde_json::to_vec(v).unwrap().into())
}

fn follower(id: &str, leader: &str, seq: u64) -> NodeStatus {
    NodeStatus {
        id: id.into(),
        role: Role::Follower,
        epoch: 3,
        applied_seq: seq,
        last_epoch: 3,
        committed_seq: seq,
        leader: Some(leader.into()),
        in_sync: true,
        log_first_seq: 1,
        log_len: seq,
        full_resyncs: 0,
        followers: Vec::new(),
        learner: false,
        learn_spans: String::new(),
        own_epoch: 0,
        owned_ranges: String::new(),
        own_cluster: String::new(),
        cleaned_epoch: 0,
    }
}

fn pod(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}")},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// A running pod whose readiness probe fails (a crash-looping router, one not yet brought up
/// to date).
fn pod_not_ready(name: &str, ip: &str) -> Value {
    let mut p = pod(name, ip);
    p["status"]["conditions"][0]["status"] = json!("False");
    p
}

/// Three nodes (`fc-a-0` leads at epoch 3 and hangs; `fc-a-2` holds the most), two routers
/// serving the table of epoch 5, and a state ConfigMap at resourceVersion 50 saying the leader
/// has been silent for a long time.
struct World {
    log: Log,
    addrs: BTreeMap<String, String>,
    state_cm: Value,
}

async fn world() -> World {
    world_silent_for(5000).await
}

/// [`world`], where `fc-a-1` refuses to follow.
async fn world_with_a_refusing_follower() -> World {
    world_with(5000, true).await
}

/// [`world`], with the leader silent for `ms` so far.
async fn world_silent_for(ms: u64) -> World {
    world_with(ms, false).await
}

async fn world_with(ms: u64, refusing: bool) -> World {
    let log = Log::default();
    let mut addrs = BTreeMap::new();
    let a0 = stand_in("fc-a-0", None, log.clone()).await;
    addrs.insert("fc-a-0".to_string(), a0.clone());
    for (name, seq) in [("fc-a-1", 10), ("fc-a-2", 12)] {
        let s = if refusing && name == "fc-a-1" {
            Stub::Refusing(follower(name, &a0, seq))
        } else {
            Stub::Node(follower(name, &a0, seq))
        };
        addrs.insert(name.into(), stand_in(name, Some(s), log.clone()).await);
    }
    let table = RangeTable {
        epoch: 5,
        ranges: vec![HashRange {
            start: 0,
            end: u32::MAX,
            cluster: "fc-a".into(),
        }],
        clusters: BTreeMap::from([(
            "fc-a".to_string(),
            ClusterMembers {
                nodes: ["fc-a-0", "fc-a-1", "fc-a-2"]
                    .map(|n| addrs[n].clone())
                    .to_vec(),
                leader: Some(a0.clone()),
            },
        )]),
    };
    for r in ["cleave-router-a", "cleave-router-b"] {
        let s = Stub::Router(table.clone());
        addrs.insert(r.into(), stand_in(r, Some(s), log.clone()).await);
    }
    let state = CoreState {
        clusters: BTreeMap::from([(
            "fc-a".to_string(),
            ClusterState {
                leader: Some("fc-a-0".into()),
                epoch: 3,
                silent_since_ms: Some(cleave_operator::reconcile::now_ms() - ms),
                ..ClusterState::default()
            },
        )]),
        table: Some(table.clone()),
        committed_epoch: 5,
        ..CoreState::default()
    };
    let state_cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cleave-range-table", "namespace": NS, "resourceVersion": "50"},
        "data": {"state.json": serde_json::to_string(&state).unwrap(),
                 "table.yaml": serde_yaml::to_string(&table).unwrap()}});
    World {
        log,
        addrs,
        state_cm,
    }
}

impl World {
    /// The controller's context, reaching each pod at its stand-in.
    fn context(
        &self,
    ) -> (
        Arc<cleave_operator::platform::kubernetes::controller::Context>,
        tower_test::mock::Handle<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >,
    ) {
        let (ctx, handle) = context();
        let addrs = self.addrs.clone();
        let ctx = Arc::into_inner(ctx)
            .unwrap()
            .with_addresses(Arc::new(move |p| {
                addrs.get(p.metadata.name.as_deref()?).cloned()
            }));
        (Arc::new(ctx), handle)
    }

    /// The requests of a pass up to its first recorded decision.
    fn until_the_decision(&self) -> Vec<Step> {
        let nodes = ["fc-a-0", "fc-a-1", "fc-a-2"]
            .iter()
            .enumerate()
            .map(|(i, n)| pod(n, &format!("10.0.0.{}", 10 + i)))
            .collect();
        let routers = vec![
            pod("cleave-router-a", "10.0.1.1"),
            pod("cleave-router-b", "10.0.1.2"),
        ];
        vec![
            step("GET", &format!("{CRD}/fileclusters")).answer(
                200,
                list(
                    "FileClusterList",
                    vec![serde_json::to_value(fc(true, false)).unwrap()],
                ),
            ),
            step("GET", &format!("{CRD}/hashranges")).answer(
                200,
                list(
                    "HashRangeList",
                    vec![serde_json::to_value(hr("fc-a")).unwrap()],
                ),
            ),
            step(
                "GET",
                "/api/v1/namespaces/store/configmaps/cleave-range-table",
            )
            .answer(200, self.state_cm.clone()),
            step("PATCH", "/api/v1/namespaces/store/configmaps/fc-a-config").query(APPLY),
            step("PATCH", "/api/v1/namespaces/store/services/fc-a").query(APPLY),
            step("PATCH", "/apis/apps/v1/namespaces/store/statefulsets/fc-a").query(APPLY),
            step(
                "PATCH",
                "/apis/policy/v1/namespaces/store/poddisruptionbudgets/fc-a",
            )
            .query(APPLY),
            step("GET", "/api/v1/namespaces/store/pods")
                .query(NODE_PODS)
                .answer(200, list("PodList", nodes)),
            step("GET", "/api/v1/namespaces/store/pods")
                .query(ROUTER_PODS)
                .answer(200, list("PodList", routers)),
        ]
    }
}

/// The same read again, with the same answer (a pass observes twice).
fn again(s: &Step) -> Step {
    step(s.method, &s.path)
        .query(s.query)
        .answer(200, s.answer.clone().unwrap().1)
}

/// The state a conditional write carries, after checking it is conditional on `rv`.
fn written_state(body: &Value, rv: &str) -> CoreState {
    assert_eq!(
        body["metadata"]["resourceVersion"], rv,
        "the state write must be conditional on the resourceVersion read: {body}"
    );
    serde_json::from_str(body["data"]["state.json"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_failover_is_recorded_before_any_node_hears_of_it_then_followers_lead_and_routers() {
    let w = world().await;
    let (ctx, handle) = w.context();
    let mut script = w.until_the_decision();
    let cm = "/api/v1/namespaces/store/configmaps/cleave-range-table";
    script.push(step("PUT", cm).query(MANAGED).check(|b| {
        let st = written_state(b, "50");
        let cs = &st.clusters["fc-a"];
        assert_eq!(
            (cs.leader.as_deref(), cs.epoch),
            (Some("fc-a-2"), 4),
            "{st:?}"
        );
        assert_eq!(cs.failovers, 1);
    }));
    let routers = w.until_the_decision().pop().unwrap().answer.unwrap();
    let nodes = w.until_the_decision().swap_remove(7).answer.unwrap();
    script.extend([
        step(
            "PATCH",
            "/apis/apps/v1/namespaces/store/deployments/cleave-router",
        )
        .query(APPLY),
        step("PATCH", "/api/v1/namespaces/store/services/cleave-router").query(APPLY),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, routers.1.clone()),
        // Every router acknowledged the new table: committed, saved conditionally on the
        // resourceVersion the first write returned.
        step("PUT", cm).query(MANAGED).check(|b| {
            let st = written_state(b, "105");
            assert_eq!(st.committed_epoch, 6, "{st:?}");
        }),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(NODE_PODS)
            .answer(200, nodes.1),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, routers.1),
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .check(|b| {
                let st = &b["status"];
                assert_eq!(
                    (&st["leader"], &st["epoch"]),
                    (&json!("fc-a-2"), &json!(4)),
                    "{b}"
                );
                assert_eq!(st["failovers"], 1);
                let f = &st["lastFailover"];
                assert_eq!(
                    (&f["from"], &f["to"], &f["epoch"]),
                    (&json!("fc-a-0"), &json!("fc-a-2"), &json!(4)),
                    "{b}"
                );
            })
            .answer(200, serde_json::to_value(fc(true, false)).unwrap()),
        step("PATCH", &format!("{CRD}/hashranges/all/status"))
            .query(APPLY)
            .answer(200, serde_json::to_value(hr("fc-a")).unwrap()),
    ]);
    let events = "/apis/events.k8s.io/v1/namespaces/store/events";
    for (reason, says) in [
        ("LeaderElected", "fc-a-2 leads at epoch 4"),
        (
            "FailedOver",
            "fc-a-0 -> fc-a-2 at epoch 4: leader fc-a-0 did not answer",
        ),
        ("Serving", "leader fc-a-2 at epoch 4"),
        ("Served", "served by fc-a at table epoch 6"),
    ] {
        script.push(step("POST", events).check(move |b| {
            assert_eq!(b["reason"], reason, "{b}");
            let note = b["note"].as_str().unwrap();
            assert!(note.contains(says), "{reason}: {note}");
        }));
    }
    let server = tokio::spawn(verify_logged(handle, script, w.log.clone()));
    reconcile(Arc::new(fc(true, false)), ctx).await.unwrap();
    server.await.unwrap();
    // The order across the API and the pods: recorded, followers, leader, routers, committed.
    // (The hung fc-a-0 is not waited on: it learns the new epoch when it answers again.)
    let log = w.log.lock().unwrap().clone();
    let a2 = &w.addrs["fc-a-2"];
    let order: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("API") || l.starts_with("API PUT"))
        .collect();
    let cm_put = "API PUT /api/v1/namespaces/store/configmaps/cleave-range-table";
    let expected = [
        cm_put.to_string(),
        format!("fc-a-1 FOLLOW 4 {a2}"),
        "fc-a-2 LEAD 4".into(),
        format!("cleave-router-a PUSH 6 leader Some(\"{a2}\")"),
        format!("cleave-router-b PUSH 6 leader Some(\"{a2}\")"),
        cm_put.into(),
    ];
    assert_eq!(order, expected, "whole log: {log:#?}");
}

#[tokio::test]
async fn a_router_that_is_not_ready_does_not_hold_back_the_commit() {
    let mut w = world().await;
    // cleave-router-b crash-loops: its pod runs but is not ready, and nothing listens where it
    // is reached. Before, every table commit waited for it.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    w.addrs.insert("cleave-router-b".into(), closed_addr);
    let (ctx, handle) = w.context();
    let mut script = w.until_the_decision();
    script.pop();
    let routers = list(
        "PodList",
        vec![
            pod("cleave-router-a", "10.0.1.1"),
            pod_not_ready("cleave-router-b", "10.0.1.2"),
        ],
    );
    let router_pods = || {
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, routers.clone())
    };
    script.push(router_pods());
    let nodes = w.until_the_decision().swap_remove(7).answer.unwrap();
    let cm = "/api/v1/namespaces/store/configmaps/cleave-range-table";
    script.extend([
        step("PUT", cm).query(MANAGED),
        step(
            "PATCH",
            "/apis/apps/v1/namespaces/store/deployments/cleave-router",
        )
        .query(APPLY),
        step("PATCH", "/api/v1/namespaces/store/services/cleave-router").query(APPLY),
        router_pods(),
        // Committed on the acknowledgement of the one ready router.
        step("PUT", cm).query(MANAGED).check(|b| {
            let st = written_state(b, "105");
            assert_eq!(st.committed_epoch, 6, "{st:?}");
        }),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(NODE_PODS)
            .answer(200, nodes.1),
        router_pods(),
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .answer(200, serde_json::to_value(fc(true, false)).unwrap()),
        step("PATCH", &format!("{CRD}/hashranges/all/status"))
            .query(APPLY)
            .check(|b| assert_eq!(b["status"]["epoch"], 6, "{b}"))
            .answer(200, serde_json::to_value(hr("fc-a")).unwrap()),
    ]);
    for reason in ["LeaderElected", "FailedOver", "Serving", "Served"] {
        script.push(
            step("POST", "/apis/events.k8s.io/v1/namespaces/store/events")
                .check(move |b| assert_eq!(b["reason"], reason, "{b}")),
        );
    }
    let server = tokio::spawn(verify_logged(handle, script, w.log.clone()));
    reconcile(Arc::new(fc(true, false)), ctx).await.unwrap();
    server.await.unwrap();
    let a2 = &w.addrs["fc-a-2"];
    let pushes: Vec<String> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(" PUSH "))
        .cloned()
        .collect();
    assert_eq!(
        pushes,
        [format!("cleave-router-a PUSH 6 leader Some(\"{a2}\")")]
    );
}

#[tokio::test]
async fn a_silent_leader_within_its_timeout_is_looked_at_again_soon_and_nothing_changes() {
    let w = world_silent_for(0).await;
    let (ctx, handle) = w.context();
    let mut script = w.until_the_decision();
    let routers = script.pop().unwrap();
    let nodes = script.pop().unwrap();
    script.extend([
        again(&nodes),
        again(&routers),
        again(&nodes),
        again(&routers),
    ]);
    script.push(
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .check(|b| {
                let conds = b["status"]["conditions"].as_array().unwrap();
                let p = conds.iter().find(|c| c["type"] == "Progressing").unwrap();
                assert!(
                    p["message"].as_str().unwrap().contains("does not answer"),
                    "{b}"
                );
            })
            .answer(200, serde_json::to_value(fc(true, false)).unwrap()),
    );
    script.push(
        step("PATCH", &format!("{CRD}/hashranges/all/status"))
            .query(APPLY)
            .answer(200, serde_json::to_value(hr("fc-a")).unwrap()),
    );
    for reason in ["LeaderElected", "Served"] {
        script.push(
            step("POST", "/apis/events.k8s.io/v1/namespaces/store/events")
                .check(move |b| assert_eq!(b["reason"], reason, "{b}")),
        );
    }
    let server = tokio::spawn(verify_logged(handle, script, w.log.clone()));
    let action = reconcile(Arc::new(fc(true, false)), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_SILENT_LEADER));
    server.await.unwrap();
    let told: Vec<_> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("API "))
        .cloned()
        .collect();
    assert!(
        told.is_empty(),
        "nothing may change before the failover timeout: {told:?}"
    );
}

#[tokio::test]
async fn a_follower_that_did_not_move_holds_back_the_new_leader_and_the_table() {
    // With minInSync 1, fc-a-1 still following the old leader could acknowledge its writes
    // alone: fc-a-2 must not lead (it would lack them), and no router may be sent to it.
    let w = world_with_a_refusing_follower().await;
    let (ctx, handle) = w.context();
    let mut script = w.until_the_decision();
    let routers = script.pop().unwrap();
    let nodes = script.pop().unwrap();
    script.extend([again(&nodes), again(&routers)]);
    script.push(
        step(
            "PUT",
            "/api/v1/namespaces/store/configmaps/cleave-range-table",
        )
        .query(MANAGED),
    );
    script.extend([again(&nodes), again(&routers)]);
    script.push(
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .answer(200, serde_json::to_value(fc(true, false)).unwrap()),
    );
    script.push(
        step("PATCH", &format!("{CRD}/hashranges/all/status"))
            .query(APPLY)
            .answer(200, serde_json::to_value(hr("fc-a")).unwrap()),
    );
    script.push(
        step("POST", "/apis/events.k8s.io/v1/namespaces/store/events").check(|b| {
            assert_eq!(b["reason"], "ActionFailed", "{b}");
            let note = b["note"].as_str().unwrap();
            assert!(
                note.contains("fc-a-2 to lead at epoch 4: not yet: 1 node(s) other than fc-a-2"),
                "{note}"
            );
        }),
    );
    for reason in ["LeaderElected", "FailedOver"] {
        script.push(
            step("POST", "/apis/events.k8s.io/v1/namespaces/store/events")
                .check(move |b| assert_eq!(b["reason"], reason, "{b}")),
        );
    }
    let server = tokio::spawn(verify_logged(handle, script, w.log.clone()));
    reconcile(Arc::new(fc(true, false)), ctx)
        .await
        .expect("the pass itself succeeds; the held-back step is reported");
    server.await.unwrap();
    let told: Vec<String> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("API "))
        .cloned()
        .collect();
    assert_eq!(
        told,
        ["fc-a-1 REFUSED FOLLOW 4"],
        "nothing but the refused follow"
    );
}

#[tokio::test]
async fn a_refused_state_write_stops_the_pass_before_any_node_hears_of_it() {
    let w = world().await;
    let (ctx, handle) = w.context();
    let mut script = w.until_the_decision();
    script.push(
        step(
            "PUT",
            "/api/v1/namespaces/store/configmaps/cleave-range-table",
        )
        .query(MANAGED)
        .check(|b| {
            written_state(b, "50");
        })
        .answer(
            409,
            failure(
                409,
                "Conflict",
                "Operation cannot be fulfilled on configmaps \"cleave-range-table\": the \
                     object has been modified; please apply your changes to the latest version",
            ),
        ),
    );
    let server = tokio::spawn(verify_logged(handle, script, w.log.clone()));
    let err = reconcile(Arc::new(fc(true, false)), ctx)
        .await
        .expect_err("a refused state write must fail the pass");
    assert!(err.to_string().contains("written by someone else"), "{err}");
    // verify fails on any request after the 409 (no status, no second write).
    server.await.unwrap();
    let log = w.log.lock().unwrap().clone();
    let told: Vec<_> = log.iter().filter(|l| !l.starts_with("API ")).collect();
    assert!(
        told.is_empty(),
        "nodes or routers were told something: {told:?}"
    );
}

#[tokio::test]
async fn an_operator_past_its_lease_renew_deadline_records_nothing_and_tells_no_node() {
    let w = world().await;
    let (ctx, handle) = w.context();
    // The Lease was renewed once, long enough ago that the renew deadline has passed.
    let authority = Authority::new(Duration::from_millis(1));
    authority.renewed(Instant::now() - Duration::from_secs(1));
    let ctx = Arc::into_inner(ctx).unwrap().with_authority(authority);
    let server = tokio::spawn(verify_logged(handle, w.until_the_decision(), w.log.clone()));
    let err = reconcile(Arc::new(fc(true, false)), Arc::new(ctx))
        .await
        .expect_err("an operator past its renew deadline must not act");
    assert!(err.to_string().contains("renew deadline"), "{err}");
    // verify fails on any request after the observation: no state write, no status.
    server.await.unwrap();
    let told: Vec<_> = w
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("API "))
        .cloned()
        .collect();
    assert!(
        told.is_empty(),
        "nodes or routers were told something: {told:?}"
    );
}

#[tokio::test]
async fn a_lease_with_an_old_renew_time_is_not_taken_at_first_sight() {
    let (service, handle) = tower_test::mock::pair();
    let client = kube::Client::new(service, "default");
    let lock = LeaseLock::new(
        Api::<Lease>::namespaced(client, "cleave-system"),
        "cleave-operator",
        "me",
        Duration::from_secs(15),
    );
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "cleave-operator", "namespace": "cleave-system", "resourceVersion": "9"},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15,
                 "renewTime": "2020-01-01T00:00:00.000000Z"}});
    let script = vec![step(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/cleave-system/leases/cleave-operator",
    )
    .answer(200, lease)];
    let server = tokio::spawn(verify(handle, script));
    assert!(
        !lock.try_acquire_or_renew().await.unwrap(),
        "a Lease seen for the first time was taken: expiry must count from when we saw it"
    );
    drop(lock);
    // verify fails on any request after the GET: no takeover write was attempted.
    server.await.unwrap();
}
