//! Services: each FileCluster's headless Service (stable node DNS names) and the router Service.

use super::{name, namespace, node_selector, owner, router_selector, with_common};
use super::{NODE_PORT, ROUTER_NAME, ROUTER_PORT};
use crate::crd::FileCluster;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The headless Service `<fc>`: gives node `<fc>-i` the name `<fc>-i.<fc>.<ns>.svc`. Not-ready
/// pods are published too, so a recovering node is reachable by its peers and the operator.
pub fn headless(fc: &FileCluster) -> Service {
    let cluster = name(fc);
    Service {
        metadata: ObjectMeta {
            name: Some(cluster.clone()),
            namespace: Some(namespace(fc)),
            labels: Some(with_common(node_selector(&cluster))),
            owner_references: Some(owner(fc)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(node_selector(&cluster)),
            ports: Some(vec![ServicePort {
                name: Some("cleave".into()),
                port: NODE_PORT,
                target_port: Some(IntOrString::String("cleave".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The address a node advertises and is known by: `<pod>.<fc>.<ns>.svc:7100`.
pub fn node_address(pod: &str, cluster: &str, ns: &str) -> String {
    format!("{pod}.{cluster}.{ns}.svc:{NODE_PORT}")
}

/// The router Service `cleave-router` (ClusterIP, port 7000): what clients connect to.
pub fn router(ns: &str, owners: Vec<OwnerReference>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(ROUTER_NAME.into()),
            namespace: Some(ns.into()),
            labels: Some(with_common(router_selector())),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(router_selector()),
            ports: Some(vec![ServicePort {
                name: Some("cleave".into()),
                port: ROUTER_PORT,
                target_port: Some(IntOrString::String("cleave".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::fc;
    use super::*;

    #[test]
    fn headless_service_selects_the_nodes_and_publishes_not_ready() {
        let s = headless(&fc("fc-a", "{}"));
        assert_eq!(s.metadata.name.as_deref(), Some("fc-a"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(node_selector("fc-a")));
        let p = &spec.ports.unwrap()[0];
        assert_eq!(p.port, 7100);
        assert_eq!(p.target_port, Some(IntOrString::String("cleave".into())));
        assert_eq!(s.metadata.owner_references.unwrap()[0].name, "fc-a");
    }

    #[test]
    fn router_service_is_cluster_ip_on_7000() {
        let s = router("store", vec![]);
        assert_eq!(s.metadata.name.as_deref(), Some("cleave-router"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("store"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(router_selector()));
        assert_eq!(spec.ports.unwrap()[0].port, 7000);
    }

    #[test]
    fn node_addresses_are_stable_dns_names() {
        assert_eq!(
            node_address("fc-a-1", "fc-a", "store"),
            "fc-a-1.fc-a.store.svc:7100"
        );
    }
}
