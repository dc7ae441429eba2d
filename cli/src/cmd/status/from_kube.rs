//! Kubernetes objects → [`Report`]: pure, so every rule is unit-tested from fixture objects.
//!
//! The operator already publishes what `cleave status` shows, so nothing here asks a node or a
//! router:
//!
//! - `epoch`: `committedEpoch` of `state.json` in the `cleave-range-table` ConfigMap (the table
//!   every router acknowledged); when that is missing or unreadable, the `epoch` of its
//!   `table.yaml`; else 0;
//! - `ranges[]`: every HashRange (by `start`, then name) with its spec and `.status`;
//! - `clusters[]`: every FileCluster (by name) with `spec.replicas` and `.status` — leader,
//!   epoch, conditions and `nodes[]` as the operator recorded them (`pid` is `null`);
//! - `routers[]`: the router pods the operator would push to (running, with an IP, not being
//!   deleted; the operator's own [`router_endpoints`]) at `podIP:7000`, each with the committed
//!   epoch (`null` before the first table is committed): a router starts from the committed
//!   table and the operator only commits a table every router acknowledged;
//! - `errors[]`: the distinct messages of HashRanges' `Valid=False` conditions (why the operator
//!   refuses the set), in range order.

use cleave_operator::crd::{FileCluster, HashRange};
use cleave_operator::platform::kubernetes::build::{STATE_KEY, TABLE_KEY};
use cleave_operator::platform::kubernetes::router_endpoints;
use cleave_operator::reconcile::status::{ClusterReport, RangeReport, Report, RouterReport};
use cleave_operator::reconcile::CoreState;
use cleave_proto::RangeTable;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;

/// The committed table epoch recorded in the range-table ConfigMap (see the module docs).
pub fn committed_epoch(table_config: Option<&ConfigMap>) -> u64 {
    let Some(data) = table_config.and_then(|c| c.data.as_ref()) else {
        return 0;
    };
    if let Some(state) = data
        .get(STATE_KEY)
        .and_then(|s| serde_json::from_str::<CoreState>(s).ok())
    {
        return state.committed_epoch;
    }
    data.get(TABLE_KEY)
        .and_then(|t| serde_yaml::from_str::<RangeTable>(t).ok())
        .map_or(0, |t| t.epoch)
}

/// Build the report of one namespace from its objects.
pub fn report(
    clusters: &[FileCluster],
    ranges: &[HashRange],
    table_config: Option<&ConfigMap>,
    router_pods: &[Pod],
) -> Report {
    let epoch = committed_epoch(table_config);

    let mut ranges: Vec<RangeReport> = ranges
        .iter()
        .map(|r| RangeReport {
            name: r.name_any(),
            start: r.spec.start,
            end: r.spec.end,
            cluster: r.spec.cluster.clone(),
            status: r.status.clone().unwrap_or_default(),
        })
        .collect();
    ranges.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));

    let mut errors: Vec<String> = Vec::new();
    for r in &ranges {
        for c in &r.status.conditions {
            if c.type_ == "Valid" && c.status == "False" && !errors.contains(&c.message) {
                errors.push(c.message.clone());
            }
        }
    }

    let mut clusters: Vec<ClusterReport> = clusters
        .iter()
        .map(|fc| ClusterReport {
            name: fc.name_any(),
            replicas: fc.spec.replicas,
            status: fc.status.clone().unwrap_or_default(),
        })
        .collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));

    let routers = router_endpoints(router_pods)
        .into_iter()
        .map(|e| RouterReport {
            name: e.name,
            address: e.address,
            epoch: (epoch > 0).then_some(epoch),
            pid: None,
        })
        .collect();

    Report {
        split: None,
        epoch,
        ranges,
        routers,
        clusters,
        errors,
        silent_leaders: Vec::new(),
    }
}

/// Fixture objects, shaped as the API server returns them (shared with the mock-API tests).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use serde_json::json;

    /// A FileCluster the operator has published the status of.
    pub(crate) fn fc_a() -> FileCluster {
        serde_json::from_value(json!({
            "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
            "metadata": {"name": "fc-a", "namespace": "store", "generation": 2},
            "spec": {"replicas": 2},
            "status": {
                "leader": "fc-a-0", "epoch": 3, "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Serving", "message": "leader fc-a-0",
                     "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}
                ],
                "nodes": [
                    {"name": "fc-a-0", "role": "leader", "address": "fc-a-0.fc-a.store.svc:7100",
                     "redis": "127.0.0.1:6379 (pod fc-a-0)", "pid": null, "appliedSeq": 41, "inSync": true},
                    {"name": "fc-a-1", "role": "follower", "address": "fc-a-1.fc-a.store.svc:7100",
                     "redis": "127.0.0.1:6379 (pod fc-a-1)", "pid": null, "appliedSeq": 40, "inSync": false}
                ]
            }
        }))
        .unwrap()
    }

    /// A FileCluster the operator has not looked at yet (no status).
    pub(crate) fn fc_b() -> FileCluster {
        serde_json::from_value(json!({
            "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
            "metadata": {"name": "fc-b", "namespace": "store"},
            "spec": {}
        }))
        .unwrap()
    }

    /// A HashRange assigned to `cluster` (`spec.cluster`), refused with `valid` when given.
    /// Its status says it is served at epoch 5 by `cluster`, except that a range assigned to
    /// `fc-b` is still served by `fc-a` (a move in progress), so that tests can tell whether the
    /// spec or the status was read.
    pub(crate) fn hr(
        name: &str,
        start: i64,
        end: i64,
        cluster: &str,
        valid: Option<&str>,
    ) -> HashRange {
        let served_by = if cluster == "fc-b" { "fc-a" } else { cluster };
        let mut v = json!({
            "apiVersion": "cleave.dev/v1alpha1", "kind": "HashRange",
            "metadata": {"name": name, "namespace": "store"},
            "spec": {"start": start, "end": end, "cluster": cluster},
            "status": {"servedBy": served_by, "epoch": 5, "conditions": []}
        });
        if let Some(msg) = valid {
            v["status"]["conditions"] = json!([
                {"type": "Valid", "status": "False", "reason": "RangesGap", "message": msg,
                 "lastTransitionTime": "2025-01-01T00:00:00Z"}
            ]);
        }
        serde_json::from_value(v).unwrap()
    }

    /// The `cleave-range-table` ConfigMap with these keys.
    pub(crate) fn table_config(state: Option<&str>, table: Option<&str>) -> ConfigMap {
        let mut data = serde_json::Map::new();
        if let Some(s) = state {
            data.insert(STATE_KEY.into(), s.into());
        }
        if let Some(t) = table {
            data.insert(TABLE_KEY.into(), t.into());
        }
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cleave-range-table", "namespace": "store"},
            "data": data
        }))
        .unwrap()
    }

    /// A router pod.
    pub(crate) fn router_pod(name: &str, phase: &str, ip: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "store",
                         "labels": {"app.kubernetes.io/component": "router"}},
            "status": {"phase": phase, "podIP": ip}
        }))
        .unwrap()
    }

    /// `state.json` with committed epoch 5.
    pub(crate) const STATE: &str =
        r#"{"clusters": {"fc-a": {"leader": "fc-a-0", "epoch": 3}}, "committedEpoch": 5}"#;
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_comes_from_the_objects_status() {
        let ranges = [
            hr("high", 2147483648, 4294967295, "fc-b", None),
            hr("low", 0, 2147483647, "fc-a", None),
        ];
        let cm = table_config(Some(STATE), None);
        let pods = [
            router_pod("cleave-router-y", "Running", Some("10.1.0.8")),
            router_pod("cleave-router-x", "Running", Some("10.1.0.7")),
            router_pod("cleave-router-z", "Pending", None),
        ];
        let r = report(&[fc_b(), fc_a()], &ranges, Some(&cm), &pods);
        assert_eq!(r.epoch, 5);

        let names: Vec<_> = r.ranges.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["low", "high"], "ranges by start");
        assert_eq!(
            (
                r.ranges[0].start,
                r.ranges[0].end,
                r.ranges[0].cluster.as_str()
            ),
            (0, 2147483647, "fc-a")
        );
        assert_eq!(r.ranges[1].cluster, "fc-b", "the spec's assignment");
        assert_eq!(
            r.ranges[1].status.served_by.as_deref(),
            Some("fc-a"),
            "the status's current owner"
        );

        let names: Vec<_> = r.clusters.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["fc-a", "fc-b"], "clusters by name");
        let a = &r.clusters[0];
        assert_eq!((a.replicas, a.status.epoch), (2, 3));
        assert_eq!(a.status.leader.as_deref(), Some("fc-a-0"));
        assert_eq!(a.status.nodes.len(), 2);
        assert_eq!(a.status.nodes[1].role, "follower");
        assert_eq!(a.status.nodes[1].applied_seq, 40);
        assert!(!a.status.nodes[1].in_sync);
        assert_eq!(a.status.nodes[0].pid, None);
        let b = &r.clusters[1];
        assert_eq!(b.replicas, 3, "the spec default");
        assert!(b.status.leader.is_none() && b.status.nodes.is_empty());

        let routers: Vec<_> = r
            .routers
            .iter()
            .map(|x| (x.name.as_str(), x.address.as_str(), x.epoch, x.pid))
            .collect();
        assert_eq!(
            routers,
            [
                ("cleave-router-x", "10.1.0.7:7000", Some(5), None),
                ("cleave-router-y", "10.1.0.8:7000", Some(5), None),
            ],
            "running pods with an IP, with the committed epoch"
        );
        assert!(r.errors.is_empty());
    }

    #[test]
    fn the_json_has_the_shape_of_the_local_platform() {
        let r = report(
            &[fc_a()],
            &[hr("all", 0, 4294967295, "fc-b", None)],
            Some(&table_config(Some(STATE), Some("epoch: 6\nranges: []\n"))),
            &[router_pod("cleave-router-x", "Running", Some("10.1.0.7"))],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["epoch"], 5);
        assert_eq!(v["ranges"][0]["start"], 0);
        assert_eq!(v["ranges"][0]["end"], 4294967295_u64);
        assert_eq!(v["ranges"][0]["cluster"], "fc-b");
        assert_eq!(v["ranges"][0]["servedBy"], "fc-a");
        assert_eq!(v["routers"][0]["address"], "10.1.0.7:7000");
        assert_eq!(v["routers"][0]["epoch"], 5);
        assert!(v["routers"][0]["pid"].is_null());
        let c = &v["clusters"][0];
        assert_eq!(
            (c["name"].clone(), c["epoch"].clone()),
            (json!("fc-a"), json!(3))
        );
        assert_eq!(c["leader"], "fc-a-0");
        assert_eq!(c["conditions"][0]["type"], "Ready");
        let n = &c["nodes"][0];
        for key in ["name", "role", "address", "redis", "appliedSeq", "inSync"] {
            assert!(!n[key].is_null(), "{key} in {n}");
        }
        assert!(n.as_object().unwrap().contains_key("pid") && n["pid"].is_null());
        assert!(v["errors"].as_array().unwrap().is_empty());
    }

    #[test]
    fn the_epoch_falls_back_to_the_table_then_to_zero() {
        let table = "epoch: 7\nranges: []\n";
        assert_eq!(committed_epoch(Some(&table_config(None, Some(table)))), 7);
        assert_eq!(
            committed_epoch(Some(&table_config(Some("not json"), Some(table)))),
            7,
            "an unreadable state.json"
        );
        assert_eq!(
            committed_epoch(Some(&table_config(Some(STATE), Some(table)))),
            5,
            "state.json wins: the table can be newer than what was committed"
        );
        assert_eq!(committed_epoch(Some(&table_config(None, None))), 0);
        assert_eq!(committed_epoch(None), 0);
    }

    #[test]
    fn before_the_first_commit_routers_have_no_epoch() {
        let r = report(
            &[fc_b()],
            &[],
            None,
            &[router_pod("cleave-router-x", "Running", Some("10.1.0.7"))],
        );
        assert_eq!(r.epoch, 0);
        assert_eq!(r.routers[0].epoch, None);
    }

    #[test]
    fn refused_ranges_become_errors_once_each() {
        let gap = "HashRanges do not cover 100..=4294967295";
        let r = report(
            &[fc_a()],
            &[
                hr("b", 50, 99, "fc-a", Some(gap)),
                hr("a", 0, 49, "fc-a", Some(gap)),
            ],
            None,
            &[],
        );
        assert_eq!(r.errors, [gap]);
    }
}
