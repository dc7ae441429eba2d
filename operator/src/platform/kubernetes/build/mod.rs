//! Build: the Kubernetes objects of a FileCluster and of a namespace's routers, from specs.
//! Pure functions (no I/O), so every field that matters is unit-tested.
//!
//! Names, per FileCluster `fc` in namespace `ns`:
//! - StatefulSet `fc` (pods `fc-0`, `fc-1`, ...; each pod's name is its node id),
//! - headless Service `fc` (so node `fc-0` is `fc-0.fc.ns.svc:7100`),
//! - ConfigMap `fc-config` (`node.yaml`),
//! - PodDisruptionBudget `fc`.
//!
//! Per namespace: Deployment and Service `cleave-router`, ConfigMap `cleave-range-table`.

pub mod configmap;
pub mod pdb;
pub mod router;
pub mod secret;
pub mod service;
pub mod statefulset;

use crate::crd::FileCluster;
use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, HTTPGetAction, Probe, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use std::collections::BTreeMap;

/// Port of `cleave-node` (clients, routers, peers, admin).
pub const NODE_PORT: i32 = 7100;
/// Port of each node's Redis (loopback only, inside the pod).
pub const REDIS_PORT: i32 = 6379;
/// Port of `cleave-router`.
pub const ROUTER_PORT: i32 = 7000;
/// Admin HTTP port of `cleave-node` (`--admin-listen`: `/readyz`, `/healthz`, `/metrics`).
pub const NODE_ADMIN_PORT: i32 = 9121;
/// Admin HTTP port of `cleave-router` (`--admin-listen`: `/readyz`, `/healthz`, `/metrics`).
pub const ROUTER_ADMIN_PORT: i32 = 9122;
/// Name of the admin HTTP port in node and router containers (what probes refer to).
pub const ADMIN_PORT_NAME: &str = "admin";
/// Name of the router Deployment and Service.
pub const ROUTER_NAME: &str = "cleave-router";
/// Name of the range-table ConfigMap (read by routers when they start).
pub const TABLE_CONFIGMAP: &str = "cleave-range-table";
/// Key of the committed range table in [`TABLE_CONFIGMAP`].
pub const TABLE_KEY: &str = "table.yaml";
/// Key of the operator's recorded state in [`TABLE_CONFIGMAP`].
pub const STATE_KEY: &str = "state.json";
/// Name of the admin-secret Secret (in the operator's namespace, and its copy in each namespace
/// with FileClusters).
pub const ADMIN_SECRET: &str = "cleave-admin";
/// Key of the admin secret in [`ADMIN_SECRET`].
pub const ADMIN_SECRET_KEY: &str = "secret";
/// Key of the node configuration in a FileCluster's ConfigMap.
pub const NODE_CONFIG_KEY: &str = "node.yaml";
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "cleave-operator";
/// Label: the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: the FileCluster (or `cleave-router`).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label: `node` or `router`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: who manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the system the object belongs to.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// UID of the `cleave-node` and `cleave-router` images' user.
pub const CLEAVE_UID: i64 = 10001;
/// UID of the `redis` user in the official Redis images.
pub const REDIS_UID: i64 = 999;

/// Settings of the Kubernetes platform that are not in any spec (operator flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// Default image of `cleave-node`.
    pub node_image: String,
    /// Default image of Redis.
    pub redis_image: String,
    /// Image of `cleave-router`.
    pub router_image: String,
    /// Router replicas (at least 2).
    pub router_replicas: i32,
    /// Image pull policy of every container.
    pub pull_policy: String,
    /// Volume size when a FileCluster does not say.
    pub default_storage: String,
    /// Nodes and routers require the admin credential (`--auth-file` from the mounted
    /// [`ADMIN_SECRET`]).
    pub auth: bool,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            node_image: "ghcr.io/cleave-dev/cleave-node:dev".into(),
            redis_image: "redis:7.4-alpine".into(),
            router_image: "ghcr.io/cleave-dev/cleave-router:dev".into(),
            router_replicas: 2,
            pull_policy: "IfNotPresent".into(),
            default_storage: "1Gi".into(),
            auth: true,
        }
    }
}

/// Name of a FileCluster.
pub fn name(fc: &FileCluster) -> String {
    fc.metadata.name.clone().unwrap_or_default()
}

/// Namespace of a FileCluster.
pub fn namespace(fc: &FileCluster) -> String {
    fc.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

/// The labels that select a FileCluster's node pods (the StatefulSet's immutable selector).
pub fn node_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.into(), "cleave".into()),
        (LABEL_COMPONENT.into(), "node".into()),
        (LABEL_INSTANCE.into(), cluster.into()),
    ])
}

/// The labels that select the router pods.
pub fn router_selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.into(), "cleave".into()),
        (LABEL_COMPONENT.into(), "router".into()),
        (LABEL_INSTANCE.into(), ROUTER_NAME.into()),
    ])
}

/// Selector labels plus the informational ones, for metadata.
pub fn with_common(mut selector: BTreeMap<String, String>) -> BTreeMap<String, String> {
    selector.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    selector.insert(LABEL_PART_OF.into(), "cleave".into());
    selector
}

/// A label selector string (`k=v,k=v`) for list calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The owner reference that makes Kubernetes delete an object with its FileCluster.
pub fn owner(fc: &FileCluster) -> Vec<OwnerReference> {
    fc.controller_owner_ref(&()).into_iter().collect()
}

/// The admin HTTP port of a container, named [`ADMIN_PORT_NAME`].
pub fn admin_port(port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(ADMIN_PORT_NAME.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// `--admin-listen 0.0.0.0:<port>`: where a node or router serves its admin HTTP endpoints.
pub fn admin_listen_args(port: i32) -> [String; 2] {
    ["--admin-listen".into(), format!("0.0.0.0:{port}")]
}

/// Readiness as the process itself judges it: `GET /readyz` on the admin port (a router is
/// ready when it serves the committed table; a TCP check would pass as soon as it listens).
pub fn readyz_probe() -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/readyz".into()),
            port: IntOrString::String(ADMIN_PORT_NAME.into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(1),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// A restricted container security context: non-root, read-only root, nothing extra.
pub fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::{FileCluster, FileClusterSpec};

    /// A FileCluster as the API server would hand it over (uid set, defaults filled).
    pub fn fc(name: &str, yaml_spec: &str) -> FileCluster {
        let spec: FileClusterSpec = serde_yaml::from_str(yaml_spec).expect("spec");
        let mut fc = FileCluster::new(name, spec);
        fc.metadata.namespace = Some("store".into());
        fc.metadata.uid = Some(format!("uid-{name}"));
        fc.metadata.generation = Some(1);
        fc
    }
}
