//! PodDisruptionBudget: voluntary disruptions (drains) take at most one node of a cluster.

use super::{name, namespace, node_selector, owner, with_common};
use crate::crd::FileCluster;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The PDB `<fc>`: `maxUnavailable: 1`, so a drain never takes two nodes of one cluster at
/// once (with `minInSync` followers required, two missing nodes could stop writes).
pub fn pdb(fc: &FileCluster) -> PodDisruptionBudget {
    let cluster = name(fc);
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(cluster.clone()),
            namespace: Some(namespace(fc)),
            labels: Some(with_common(node_selector(&cluster))),
            owner_references: Some(owner(fc)),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(node_selector(&cluster)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::fc;
    use super::*;

    #[test]
    fn pdb_allows_one_node_down_and_selects_the_cluster() {
        let p = pdb(&fc("fc-b", "{replicas: 5, minInSync: 2}"));
        assert_eq!(p.metadata.name.as_deref(), Some("fc-b"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert!(spec.min_available.is_none());
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(node_selector("fc-b"))
        );
        assert_eq!(p.metadata.owner_references.unwrap()[0].kind, "FileCluster");
    }
}
