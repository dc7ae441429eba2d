//! What wakes the controller, and what must not.
//!
//! A pass is namespace-wide and publishes status (`appliedSeq` among it, which moves with every
//! write). If the controller reacted to its own status patches, every pass would trigger the
//! next, and a namespace under write load would be reconciled without pause. So:
//!
//! - FileClusters and HashRanges wake a pass only when they appear, their spec changes
//!   (`generation`), a finalizer is added or removed, deletion starts, or they are deleted —
//!   never on a status-only change ([`changed_specs`], keyed by [`spec_changes`]). Observation (leaders, lag, health) runs on the requeue timer and on
//!   node pod changes instead;
//! - a HashRange wakes **one** FileCluster of its namespace ([`representative`]), not all of
//!   them: any one pass covers the whole namespace;
//! - a node pod wakes its FileCluster, a router pod the namespace's representative (a router
//!   that comes up is brought up to date, and becomes ready, without waiting for a timer)
//!   ([`pod_owner`]);
//! - the range-table ConfigMap, which the operator writes itself on every decision, is left out
//!   of the owned-object watch ([`owned_config_maps`]).

use super::build::TABLE_CONFIGMAP;
use super::build::{FIELD_MANAGER, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::crd::FileCluster;
use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// A predicate for `predicate_filter`: changes when the spec (`generation`), the finalizers or
/// the deletion state change, and on nothing else (status, labels, resourceVersion).
pub fn spec_changes<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.finalizers.hash(&mut h);
    Some(h.finish())
}

/// The objects of a watch whose [`spec_changes`] key changed, and every deleted one (unlike a
/// plain predicate filter, which would swallow a deletion: the deleted object's last state has
/// the key already seen). Errors pass through for the controller's backoff.
pub fn changed_specs<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut seen: HashMap<ObjectRef<K>, u64> = HashMap::new();
    events.filter_map(move |event| {
        let out = match event {
            Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => {
                let key = spec_changes(&obj);
                let known = seen.insert(ObjectRef::from_obj(&obj), key.unwrap_or(0));
                (known != key).then_some(Ok(obj))
            }
            Ok(Event::Delete(obj)) => {
                seen.remove(&ObjectRef::from_obj(&obj));
                Some(Ok(obj))
            }
            Ok(Event::Init) | Ok(Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        future::ready(out)
    })
}

/// The one FileCluster of `ns` that a namespace-wide change wakes: the first by name that is
/// not being deleted (else the first at all). `None`: the namespace has no FileCluster.
pub fn representative<'a>(
    clusters: impl IntoIterator<Item = &'a FileCluster>,
    ns: Option<&str>,
) -> Option<ObjectRef<FileCluster>> {
    clusters
        .into_iter()
        .filter(|fc| fc.namespace().as_deref() == ns)
        .min_by_key(|fc| (fc.metadata.deletion_timestamp.is_some(), fc.name_any()))
        .map(ObjectRef::from_obj)
}

/// The FileCluster a node or router pod's change wakes.
pub fn pod_owner<'a>(
    pod: &Pod,
    clusters: impl IntoIterator<Item = &'a FileCluster>,
) -> Option<ObjectRef<FileCluster>> {
    let ns = pod.namespace();
    let labels = pod.labels();
    match labels.get(LABEL_COMPONENT).map(String::as_str) {
        Some("node") => {
            let cluster = labels.get(LABEL_INSTANCE)?;
            clusters
                .into_iter()
                .find(|fc| fc.namespace() == ns && &fc.name_any() == cluster)
                .map(ObjectRef::from_obj)
        }
        Some("router") => representative(clusters, ns.as_deref()),
        _ => None,
    }
}

/// The watch of owned ConfigMaps: ours (by label), except the range table.
pub fn owned_config_maps() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"))
        .fields(&format!("metadata.name!={TABLE_CONFIGMAP}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Condition, FileClusterStatus};
    use crate::platform::kubernetes::build::fixtures::fc;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn status_only_changes_do_not_trigger_and_spec_changes_do() {
        let before = fc("fc-a", "{replicas: 3}");
        let key = spec_changes(&before);
        // A status patch: appliedSeq, conditions, a new resourceVersion, managed fields.
        let mut status = before.clone();
        status.status = Some(FileClusterStatus {
            epoch: 9,
            conditions: vec![Condition::new("Ready", true, "Serving", "ok")],
            ..FileClusterStatus::default()
        });
        status.metadata.resource_version = Some("812".into());
        status.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        assert_eq!(spec_changes(&status), key);
        // A spec change bumps the generation.
        let mut spec = before.clone();
        spec.metadata.generation = Some(2);
        assert_ne!(spec_changes(&spec), key);
        // The finalizer added (no generation change) must wake the pass that follows.
        let mut fin = before.clone();
        fin.metadata.finalizers = Some(vec!["cleave.dev/range-table".into()]);
        assert_ne!(spec_changes(&fin), key);
        // Deletion starts.
        let mut del = fin.clone();
        del.metadata.deletion_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        assert_ne!(spec_changes(&del), spec_changes(&fin));
    }

    #[tokio::test]
    async fn a_watch_yields_new_objects_spec_changes_and_deletions_only() {
        let a = fc("fc-a", "{replicas: 3}");
        let mut a_status = a.clone();
        a_status.status = Some(FileClusterStatus {
            epoch: 3,
            ..FileClusterStatus::default()
        });
        a_status.metadata.resource_version = Some("9".into());
        let mut a_spec = a_status.clone();
        a_spec.metadata.generation = Some(2);
        let b = fc("fc-b", "{}");
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(a.clone())),
            Ok(Event::InitApply(b.clone())),
            Ok(Event::InitDone),
            Ok(Event::Apply(a_status.clone())),
            Ok(Event::Apply(a_status)),
            Ok(Event::Apply(a_spec)),
            Ok(Event::Delete(b.clone())),
            // Re-created with the same generation: new again.
            Ok(Event::Apply(b)),
        ];
        let out: Vec<(String, Option<i64>)> = changed_specs(futures::stream::iter(events))
            .map(|r| {
                let o = r.unwrap();
                (o.name_any(), o.metadata.generation)
            })
            .collect()
            .await;
        let want = [
            ("fc-a", 1),
            ("fc-b", 1),
            ("fc-a", 2),
            ("fc-b", 1),
            ("fc-b", 1),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(n, g)| (n.to_string(), Some(*g)))
            .collect();
        assert_eq!(out, want, "status-only updates of fc-a must not pass");
    }

    #[test]
    fn a_namespace_change_wakes_one_filecluster() {
        let mut b = fc("fc-b", "{}");
        let a = fc("fc-a", "{}");
        let mut other = fc("fc-0", "{}");
        other.metadata.namespace = Some("elsewhere".into());
        let all = [b.clone(), a.clone(), other];
        let r = representative(&all, Some("store")).unwrap();
        assert_eq!(r.name, "fc-a");
        assert_eq!(r.namespace.as_deref(), Some("store"));
        // One being deleted is passed over while another remains.
        let mut a_del = a;
        a_del.metadata.deletion_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        b.metadata.name = Some("fc-b".into());
        assert_eq!(
            representative(&[a_del.clone(), b], Some("store"))
                .unwrap()
                .name,
            "fc-b"
        );
        assert_eq!(
            representative(&[a_del], Some("store")).unwrap().name,
            "fc-a"
        );
        assert!(representative(&all, Some("empty")).is_none());
    }

    #[test]
    fn node_pods_wake_their_cluster_and_router_pods_one_cluster() {
        use crate::platform::kubernetes::build::{node_selector, router_selector, with_common};
        let all = [fc("fc-a", "{}"), fc("fc-b", "{}")];
        let pod = |labels| {
            let mut p = Pod::default();
            p.metadata.namespace = Some("store".into());
            p.metadata.labels = Some(with_common(labels));
            p
        };
        let node = pod(node_selector("fc-b"));
        assert_eq!(pod_owner(&node, &all).unwrap().name, "fc-b");
        let router = pod(router_selector());
        assert_eq!(pod_owner(&router, &all).unwrap().name, "fc-a");
        assert!(pod_owner(&pod(node_selector("gone")), &all).is_none());
    }

    #[test]
    fn the_range_table_is_not_watched() {
        let c = owned_config_maps();
        assert_eq!(
            c.field_selector.as_deref(),
            Some("metadata.name!=cleave-range-table")
        );
        assert_eq!(
            c.label_selector.as_deref(),
            Some("app.kubernetes.io/managed-by=cleave-operator")
        );
    }
}
