//! ConfigMaps: each FileCluster's node configuration, and the namespace's range table.

use super::{name, namespace, owner, with_common, NODE_CONFIG_KEY, REDIS_PORT, TABLE_CONFIGMAP};
use super::{node_selector, router_selector, NODE_PORT, STATE_KEY, TABLE_KEY};
use crate::crd::FileCluster;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

/// Name of a FileCluster's ConfigMap.
pub fn node_config_name(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The `cleave-node` configuration file shared by every node of the cluster (kebab-case keys,
/// see `docs/contracts.md`). Per-pod values (id, advertise address) come from the pod.
pub fn node_yaml(fc: &FileCluster) -> String {
    let mut s = format!(
        "listen: 0.0.0.0:{NODE_PORT}\nredis: redis://127.0.0.1:{REDIS_PORT}\ncluster: {}\nlog-capacity: {}\nmin-in-sync: {}\nreplicas: {}\n",
        name(fc),
        fc.spec.log_capacity,
        fc.spec.min_in_sync,
        fc.spec.replicas
    );
    if let Some(ms) = fc.spec.sync_timeout_ms {
        s.push_str(&format!("sync-timeout-ms: {ms}\n"));
    }
    s
}

/// The FileCluster's ConfigMap (`<fc>-config`, key `node.yaml`).
pub fn node_config(fc: &FileCluster) -> ConfigMap {
    let cluster = name(fc);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(node_config_name(&cluster)),
            namespace: Some(namespace(fc)),
            labels: Some(with_common(node_selector(&cluster))),
            owner_references: Some(owner(fc)),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(NODE_CONFIG_KEY.into(), node_yaml(fc))])),
        ..ConfigMap::default()
    }
}

/// The namespace's range-table ConfigMap: `table.yaml` is the committed table (what a router
/// starts from), `state.json` the operator's recorded decisions. Owned (not as controller) by
/// every FileCluster of the namespace, so it goes away with the last of them.
pub fn table_config(
    ns: &str,
    table_yaml: Option<&str>,
    state_json: &str,
    owners: Vec<OwnerReference>,
) -> ConfigMap {
    let mut data = BTreeMap::from([(STATE_KEY.to_string(), state_json.to_string())]);
    if let Some(t) = table_yaml {
        data.insert(TABLE_KEY.into(), t.to_string());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(TABLE_CONFIGMAP.into()),
            namespace: Some(ns.into()),
            labels: Some(with_common(router_selector())),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Owner references (not controller) to every FileCluster given.
pub fn shared_owners(clusters: &[FileCluster]) -> Vec<OwnerReference> {
    clusters
        .iter()
        .flat_map(owner)
        .map(|mut o| {
            o.controller = Some(false);
            o.block_owner_deletion = None;
            o
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::fc;
    use super::*;

    #[test]
    fn node_yaml_has_the_node_keys_in_kebab_case() {
        let f = fc(
            "fc-a",
            "{replicas: 3, minInSync: 2, logCapacity: 500, syncTimeoutMs: 900}",
        );
        let cm = node_config(&f);
        assert_eq!(cm.metadata.name.as_deref(), Some("fc-a-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("store"));
        let text = &cm.data.unwrap()[NODE_CONFIG_KEY];
        let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(v["listen"].as_str(), Some("0.0.0.0:7100"));
        assert_eq!(v["redis"].as_str(), Some("redis://127.0.0.1:6379"));
        assert_eq!(v["log-capacity"].as_i64(), Some(500));
        assert_eq!(v["min-in-sync"].as_i64(), Some(2));
        assert_eq!(v["sync-timeout-ms"].as_i64(), Some(900));
        // Keys that must never be in the shared file: they are per pod or decided by the operator.
        for k in ["id", "advertise", "lead", "follow", "epoch"] {
            assert!(v.get(k).is_none(), "{k} must not be in node.yaml");
        }
    }

    #[test]
    fn node_config_is_owned_by_its_filecluster() {
        let cm = node_config(&fc("fc-a", "{}"));
        let owners = cm.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "FileCluster");
        assert_eq!(owners[0].name, "fc-a");
        assert_eq!(owners[0].uid, "uid-fc-a");
        assert_eq!(owners[0].controller, Some(true));
    }

    #[test]
    fn table_config_keeps_table_and_state_and_is_shared() {
        let owners = shared_owners(&[fc("fc-a", "{}"), fc("fc-b", "{}")]);
        let cm = table_config("store", Some("epoch: 3\n"), "{}", owners);
        assert_eq!(cm.metadata.name.as_deref(), Some(TABLE_CONFIGMAP));
        let data = cm.data.unwrap();
        assert_eq!(data[TABLE_KEY], "epoch: 3\n");
        assert_eq!(data[STATE_KEY], "{}");
        let owners = cm.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 2);
        assert!(owners.iter().all(|o| o.controller == Some(false)));
        let cm = table_config("store", None, "{}", vec![]);
        assert!(!cm.data.unwrap().contains_key(TABLE_KEY));
        assert!(cm.metadata.owner_references.is_none());
    }
}
