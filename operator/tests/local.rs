//! The local platform with real processes: the operator binary, redis-server, cleave-node and
//! cleave-router, driven by the sample manifests in a temporary folder.
//!
//! The node and router binaries are taken from the operator's own target folder, so run these
//! through `cargo test --workspace` (which builds every binary first), as `make test` does.
//! Until the router crate exists in the tree, the tests that need it print SKIPPED and pass.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::path::Path;

#[test]
fn a_port_in_use_is_a_clear_error_not_a_panic() {
    let mut sys = System::new();
    // Keep the router's port bound; free the rest.
    let _holder = sys.reserved.remove(0);
    sys.reserved.clear();
    let out = sys.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "port {} (router-0) is already in use",
            sys.router_port
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn from_manifests_to_a_working_system() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    assert_eq!(s["epoch"], 1);
    assert_eq!(s["routers"].as_array().unwrap().len(), 2);
    let ranges = s["ranges"].as_array().unwrap();
    assert_eq!(
        (
            ranges[0]["start"].as_u64(),
            ranges[0]["end"].as_u64(),
            ranges[0]["cluster"].as_str()
        ),
        (Some(0), Some(2147483647), Some("fc-a"))
    );
    assert_eq!(ranges[1]["servedBy"], "fc-b");
    for c in s["clusters"].as_array().unwrap() {
        assert_eq!(c["epoch"], 1);
        assert_eq!(c["leader"], format!("{}-0", c["name"].as_str().unwrap()));
        let nodes = c["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0]["role"], "leader");
        assert_eq!(nodes[1]["role"], "follower");
        for n in nodes {
            assert!(n["pid"].as_u64().is_some_and(|p| alive(p as u32)), "{n}");
            assert!(n["address"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert!(n["redis"].as_str().unwrap().starts_with("127.0.0.1:"));
        }
    }
    let files = write(&sys.router(), "tour", 40);
    read_back(&sys.router(), &files);
    read_back(
        &format!(
            "127.0.0.1:{}",
            s["routers"][1]["address"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
        ),
        &files,
    );
    let s = sys.wait_for(20, "leaders report applied writes", |s| {
        node(s, "fc-a-0")["appliedSeq"].as_u64() > Some(0)
            && node(s, "fc-b-0")["appliedSeq"].as_u64() > Some(0)
    });
    assert!(node(&s, "fc-a-1")["inSync"].as_bool().unwrap());

    // Every node and router serves /metrics where status.json says.
    let admin = &s["admin"];
    assert_eq!(admin["nodes"].as_object().unwrap().len(), 6, "{admin}");
    assert_eq!(admin["routers"].as_object().unwrap().len(), 2, "{admin}");
    let get_path = |addr: &str, path: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(cleave_admin::client::get(addr, path)).unwrap()
    };
    let get = |addr: &str| get_path(addr, "/metrics");
    let (code, text) = get(admin["nodes"]["fc-a-0"].as_str().unwrap());
    assert_eq!(code, 200);
    assert!(
        text.contains("cleave_node_role{role=\"leader\"} 1"),
        "{text}"
    );
    let (code, text) = get(admin["routers"]["router-0"].as_str().unwrap());
    assert_eq!(code, 200);
    assert!(text.contains("cleave_router_table_epoch 1"), "{text}");
    // The operator's own (--admin-listen 127.0.0.1:0): ready, counting its passes.
    let operator = admin["operator"]
        .as_str()
        .expect("the operator's admin address");
    assert_eq!(get_path(operator, "/readyz"), (200, "ok\n".to_string()));
    let (_, text) = get(operator);
    assert!(
        text.contains("cleave_table_epoch{namespace=\"local\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("cleave_operator_reconciles_total{namespace=\"local\",result=\"ok\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "cleave_filecluster_leader_missing{namespace=\"local\",filecluster=\"fc-a\"} 0\n"
        ),
        "{text}"
    );
}

#[test]
fn killed_nodes_and_redis_servers_are_restarted_and_catch_up() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    let mut files = write(&sys.router(), "before", 30);

    // kill -9 a follower's node process.
    let old = node(&s, "fc-a-1")["pid"].as_u64().unwrap() as u32;
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    files.extend(write(&sys.router(), "while-node-down", 30));
    sys.wait_for(60, "fc-a-1 restarted and caught up", |s| {
        let n = node(s, "fc-a-1");
        n["pid"].as_u64().is_some_and(|p| p as u32 != old)
            && n["inSync"] == true
            && n["appliedSeq"] == node(s, "fc-a-0")["appliedSeq"]
    });

    // kill -9 a leader's Redis server.
    let children: Value =
        serde_json::from_slice(&std::fs::read(sys.data.join("children.json")).unwrap()).unwrap();
    let redis = children["fc-b-0-redis"].as_u64().unwrap() as u32;
    kill(Pid::from_raw(redis as i32), Signal::SIGKILL).unwrap();
    files.extend(write(&sys.router(), "after-redis-kill", 30));
    sys.wait_for(60, "fc-b back to Ready with every node in sync", |s| {
        let c = s["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "fc-b")
            .unwrap();
        cond(c, "Ready") && !cond(c, "Degraded")
    });
    read_back(&sys.router(), &files);
}

#[test]
fn bad_edits_are_refused_and_the_system_keeps_serving() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "steady", 20);
    let high = sys.manifests.join("hashrange-high.yaml");
    let original = std::fs::read_to_string(&high).unwrap();

    let refused = |sys: &System, text: &str, file: &Path, expect: &str| {
        std::fs::write(file, text).unwrap();
        let s = sys.wait_for(30, expect, |s| {
            s["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e.as_str().unwrap_or("").contains(expect)))
        });
        assert_eq!(s["epoch"], 1, "nothing moved");
        read_back(&sys.router(), &files);
        s
    };
    // Overlap.
    let s = refused(
        &sys,
        &original.replace("2147483648", "2147483000"),
        &high,
        "overlap",
    );
    let hr = s["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "high")
        .unwrap();
    assert!(!cond(hr, "Valid") && cond(hr, "Degraded"), "{hr}");
    let low = s["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "low")
        .unwrap();
    assert_eq!(
        low["servedBy"], "fc-a",
        "the last valid table is still served"
    );
    // Gap.
    refused(
        &sys,
        &original.replace("2147483648", "2147483650"),
        &high,
        "not covered",
    );
    // Bad YAML.
    refused(&sys, "spec: [unclosed\n", &high, "not valid YAML");
    // Unknown field.
    refused(
        &sys,
        &original.replace("cluster: fc-b", "cluster: fc-b\n  color: blue"),
        &high,
        "spec.color: unknown field",
    );
    // A HashRange naming a FileCluster that does not exist.
    refused(
        &sys,
        &original
            .replace("fc-b", "fc-zzz")
            .replace("name: high", "name: extra"),
        &sys.manifests.join("hashrange-extra.yaml"),
        "does not exist",
    );
    std::fs::remove_file(sys.manifests.join("hashrange-extra.yaml")).unwrap();

    std::fs::write(&high, &original).unwrap();
    let s = sys.wait_for(30, "errors cleared", |s| {
        s["errors"].as_array().is_some_and(|e| e.is_empty()) && ready(s)
    });
    assert_eq!(s["epoch"], 1);
    let more = write(&sys.router(), "after", 10);
    read_back(&sys.router(), &more);
}

#[test]
fn ctrl_c_leaves_no_child_and_a_restart_resumes_every_write() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "durable", 50);
    let pids = sys.child_pids();
    assert_eq!(pids.len(), 6 * 2 + 2, "6 nodes, 6 redis servers, 2 routers");
    assert_eq!(sys.stop(Signal::SIGINT), Some(0));
    for p in &pids {
        assert!(!alive(*p), "child {p} outlived the operator");
    }
    assert!(!sys.data.join("children.json").exists());

    let before = std::fs::read_to_string(sys.data.join("state.json")).unwrap();
    sys.start();
    let s = sys.wait_ready();
    assert_eq!(s["epoch"], 1, "same table, same epoch");
    read_back(&sys.router(), &files);
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(sys.data.join("state.json")).unwrap())
            .unwrap();
    let before: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["nodes"], after["nodes"], "every node kept its ports");
}

#[test]
fn a_restart_after_the_operator_was_killed_reaps_its_orphans() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    sys.wait_ready();
    let files = write(&sys.router(), "orphans", 20);
    let orphans = sys.child_pids();
    sys.stop(Signal::SIGKILL);
    assert!(
        orphans.iter().any(|p| alive(*p)),
        "children outlive a SIGKILLed operator"
    );
    sys.start();
    sys.wait_ready();
    for p in &orphans {
        assert!(!alive(*p), "orphan {p} survived the restart");
    }
    read_back(&sys.router(), &files);
}

/// Continues a stopped process when dropped, so a failing test never leaves it stopped.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

/// Pins the operator's handling of a partial table push: with one router frozen (`SIGSTOP`)
/// when a new table is made (a switchover of fc-a), that router is not ready (its `/readyz`
/// does not answer), so, as on Kubernetes, it does not hold back the commit: the other router
/// takes the new table and the status commits its epoch while the frozen router has not. The
/// operator keeps pushing to it; once it runs again it serves the new table, is ready, and no
/// error remains. (A router on an old table can do no harm: nodes refuse
/// what their cluster does not own.)
#[test]
fn a_table_push_a_router_missed_is_retried_until_every_router_serves_it() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    let old_epoch = s["epoch"].as_u64().unwrap();
    let files = write(&sys.router(), "push", 10);
    let router2 = sys.router2();
    let pid = s["routers"][1]["pid"].as_u64().expect("router-1's pid") as u32;
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    let resume = Continue(pid);

    // A new table: fc-a's leader moves (the sample starts it at fc-a-0).
    sys.set_spec_leader("fc-a", "fc-a-1");
    let s = sys.wait_for(
        90,
        "router-0 on a newer table, committed without the frozen router-1",
        |s| {
            s["routers"][0]["epoch"].as_u64() > Some(old_epoch)
                && s["epoch"].as_u64() == s["routers"][0]["epoch"].as_u64()
                && s["routers"][1]["epoch"].as_u64() != s["epoch"].as_u64()
        },
    );
    let new_epoch = s["routers"][0]["epoch"].as_u64().unwrap();

    drop(resume);
    let s = sys.wait_for(
        90,
        "both routers on the new table, committed, no error",
        |s| {
            s["epoch"].as_u64() >= Some(new_epoch)
                && ready(s)
                && s["errors"].as_array().is_some_and(|es| es.is_empty())
        },
    );
    let committed = s["epoch"].as_u64().unwrap();
    let served = rt().block_on(async { client(&router2).await.table().await.unwrap().epoch });
    assert_eq!(served, committed, "router-1 serves the committed table");
    read_back(&router2, &files);
}
