//! The Kubernetes platform: the reconcile core's [`Platform`] on a Kubernetes API server.
//!
//! - [`build`]: the objects (pure functions of the specs);
//! - [`apply`]: server-side apply with the `cleave-operator` field manager;
//! - [`KubePlatform`]: one namespace, for one pass of the core: desired objects from the API,
//!   state in the `cleave-range-table` ConfigMap, nodes and routers found by label;
//! - [`controller`]: `cleave-operator kube` — watches, finalizer, events, error policy;
//! - [`credential`]: the installation's admin secret;
//! - [`leader_election`]: one active operator per Lease;
//! - [`liveness`]: the loops' heartbeats, for `/healthz`;
//! - [`triggers`]: what wakes a pass (spec changes, not status patches);
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`.

pub mod apply;
pub mod build;
pub mod controller;
pub mod credential;
pub mod leader_election;
pub mod liveness;
pub mod metrics;
pub mod triggers;

use crate::crd::{FileCluster, HashRange};
use crate::error::{Error, Result};
use crate::reconcile::status::Report;
use crate::reconcile::{CoreState, Desired, Endpoint, Platform};
use build::configmap::{node_config, shared_owners, table_config};
use build::service::{headless, node_address};
use build::{BuildConfig, FIELD_MANAGER, STATE_KEY, TABLE_CONFIGMAP, TABLE_KEY};
use cleave_proto::range::RangeTable;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use leader_election::Authority;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A Kubernetes API failure, as the core's error type.
pub fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |e| Error::Kube {
        what,
        source: Box::new(e),
    }
}

/// Where the operator reaches a pod, when not at its usual address (the node's stable DNS name,
/// the router's pod IP): `None` keeps the usual one. For an operator that reaches pods some
/// other way, and for tests that stand in for pods with servers on loopback.
pub type PodAddresses = Arc<dyn Fn(&Pod) -> Option<String> + Send + Sync>;

/// The platform for one namespace.
#[derive(Clone)]
pub struct KubePlatform {
    client: Client,
    ns: String,
    cfg: BuildConfig,
    /// FileClusters of the last fetch (owners of the namespace-wide objects).
    clusters: Vec<FileCluster>,
    /// The desired set of the last fetch.
    desired: Desired,
    /// `table.yaml` as stored: the committed table routers start from.
    committed_table: Option<String>,
    /// The state as last loaded or saved (written together with the table).
    state: CoreState,
    /// The `resourceVersion` of the state ConfigMap as last read or written (`None`: it did not
    /// exist). Every write is conditional on it: the ConfigMap is the epoch authority, and two
    /// operators can never both record a decision made from the same state.
    state_version: Option<String>,
    /// The leader Lease's promise (`None`: no election, a single replica).
    authority: Option<Authority>,
    /// Address overrides.
    addresses: Option<PodAddresses>,
    /// The installation's admin secret, copied into the namespace's `cleave-admin` Secret for
    /// the pods (`None`: none is applied).
    admin_secret: Option<Arc<cleave_proto::auth::Secret>>,
}

impl std::fmt::Debug for KubePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePlatform")
            .field("ns", &self.ns)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The ordinal of a StatefulSet pod (`fc-a-12` → 12), for ordering.
fn ordinal(pod: &str) -> u64 {
    pod.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

impl KubePlatform {
    /// The platform for namespace `ns`.
    pub fn new(client: Client, ns: &str, cfg: BuildConfig) -> KubePlatform {
        KubePlatform {
            client,
            ns: ns.into(),
            cfg,
            clusters: Vec::new(),
            desired: Desired::default(),
            committed_table: None,
            state: CoreState::default(),
            state_version: None,
            authority: None,
            addresses: None,
            admin_secret: None,
        }
    }

    /// Copy `secret` into the namespace (Secret `cleave-admin`) before any pod needs it.
    pub fn with_admin_secret(mut self, secret: Arc<cleave_proto::auth::Secret>) -> KubePlatform {
        self.admin_secret = Some(secret);
        self
    }

    /// Reach pods where `addresses` says.
    pub fn with_addresses(mut self, addresses: PodAddresses) -> KubePlatform {
        self.addresses = Some(addresses);
        self
    }

    fn address_of(&self, pod: &Pod, usual: String) -> String {
        self.addresses
            .as_ref()
            .and_then(|f| f(pod))
            .unwrap_or(usual)
    }

    /// Act only while `authority` holds.
    pub fn with_authority(mut self, authority: Authority) -> KubePlatform {
        self.authority = Some(authority);
        self
    }

    /// The desired set of the last fetch.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn write_table_config(&mut self) -> Result<()> {
        let json = serde_json::to_string_pretty(&self.state).map_err(|e| Error::State {
            path: TABLE_CONFIGMAP.into(),
            message: e.to_string(),
        })?;
        let cm = table_config(
            &self.ns,
            self.committed_table.as_deref(),
            &json,
            shared_owners(&self.clusters),
        );
        let what = format!("ConfigMap {}/{TABLE_CONFIGMAP}", self.ns);
        let api = self.api::<ConfigMap>();
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let written = match &self.state_version {
            None => api.create(&pp, &cm).await,
            Some(rv) => {
                let mut cm = cm;
                cm.metadata.resource_version = Some(rv.clone());
                api.replace(TABLE_CONFIGMAP, &pp, &cm).await
            }
        };
        let written = written.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => Error::Conflict {
                what: what.clone(),
                message: s.message,
            },
            e => kube_error(format!("write {what}"))(e),
        })?;
        self.state_version = written.metadata.resource_version;
        Ok(())
    }
}

/// YAML of a range table, as routers read it.
pub fn table_yaml(t: &RangeTable) -> String {
    serde_yaml::to_string(t).expect("a range table serializes")
}

impl Platform for KubePlatform {
    async fn fetch(&mut self) -> Result<Desired> {
        let lp = ListParams::default();
        let clusters = self
            .api::<FileCluster>()
            .list(&lp)
            .await
            .map_err(kube_error(format!("list FileClusters in {}", self.ns)))?
            .items;
        let ranges: Vec<HashRange> = self
            .api::<HashRange>()
            .list(&lp)
            .await
            .map_err(kube_error(format!("list HashRanges in {}", self.ns)))?
            .items
            .into_iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        // A FileCluster being deleted stays in the set while a HashRange still names it (its
        // finalizer holds it until no router's table does).
        let clusters: Vec<FileCluster> = clusters
            .into_iter()
            .filter(|c| {
                c.metadata.deletion_timestamp.is_none()
                    || ranges.iter().any(|r| r.spec.cluster == c.name_any())
            })
            .collect();
        self.clusters = clusters.clone();
        self.desired = Desired {
            clusters,
            ranges,
            errors: Vec::new(),
        };
        Ok(self.desired.clone())
    }

    async fn load_state(&mut self) -> Result<CoreState> {
        let cm = self
            .api::<ConfigMap>()
            .get_opt(TABLE_CONFIGMAP)
            .await
            .map_err(kube_error(format!(
                "get ConfigMap {}/{TABLE_CONFIGMAP}",
                self.ns
            )))?;
        self.state_version = cm
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone());
        let data = cm.and_then(|c| c.data).unwrap_or_default();
        self.committed_table = data.get(TABLE_KEY).cloned();
        self.state = match data.get(STATE_KEY) {
            None => CoreState::default(),
            Some(s) => serde_json::from_str(s).map_err(|e| Error::State {
                path: format!("{}/{TABLE_CONFIGMAP}:{STATE_KEY}", self.ns).into(),
                message: e.to_string(),
            })?,
        };
        Ok(self.state.clone())
    }

    async fn save_state(&mut self, state: &CoreState) -> Result<()> {
        if let Some(t) = &state.table {
            if t.epoch == state.committed_epoch {
                self.committed_table = Some(table_yaml(t));
            }
        }
        self.state = state.clone();
        self.write_table_config().await
    }

    async fn ensure_clusters(&mut self, clusters: &[FileCluster]) -> Result<()> {
        if let Some(secret) = &self.admin_secret {
            let s = build::secret::admin_secret(
                &self.ns,
                secret.expose(),
                shared_owners(&self.clusters),
            );
            apply::apply(&self.api::<k8s_openapi::api::core::v1::Secret>(), &s)
                .await
                .map_err(kube_error(format!(
                    "apply Secret {}/{}",
                    self.ns,
                    build::ADMIN_SECRET
                )))?;
        }
        for fc in clusters {
            let what = |k: &str| format!("apply {k} {}/{}", self.ns, fc.name_any());
            apply::apply(&self.api::<ConfigMap>(), &node_config(fc))
                .await
                .map_err(kube_error(what("ConfigMap")))?;
            apply::apply(&self.api::<Service>(), &headless(fc))
                .await
                .map_err(kube_error(what("Service")))?;
            apply::apply(
                &self.api::<StatefulSet>(),
                &build::statefulset::statefulset(fc, &self.cfg),
            )
            .await
            .map_err(kube_error(what("StatefulSet")))?;
            apply::apply(&self.api::<PodDisruptionBudget>(), &build::pdb::pdb(fc))
                .await
                .map_err(kube_error(what("PodDisruptionBudget")))?;
        }
        Ok(())
    }

    async fn nodes(&mut self) -> Result<BTreeMap<String, Vec<Endpoint>>> {
        let mut out = BTreeMap::new();
        for fc in &self.clusters {
            let cluster = fc.name_any();
            let lp = ListParams::default()
                .labels(&build::selector_string(&build::node_selector(&cluster)));
            let mut pods = self
                .api::<Pod>()
                .list(&lp)
                .await
                .map_err(kube_error(format!("list pods of {}/{cluster}", self.ns)))?
                .items;
            pods.sort_by_key(|p| ordinal(&p.name_any()));
            let eps = pods
                .iter()
                .map(|p| Endpoint {
                    name: p.name_any(),
                    address: self.address_of(p, node_address(&p.name_any(), &cluster, &self.ns)),
                    redis: format!("127.0.0.1:{} (pod {})", build::REDIS_PORT, p.name_any()),
                    pid: None,
                    ready: pod_ready(p),
                })
                .collect();
            out.insert(cluster, eps);
        }
        Ok(out)
    }

    async fn ensure_routers(&mut self, table: &RangeTable) -> Result<Vec<Endpoint>> {
        let owners = shared_owners(&self.clusters);
        if self.committed_table.is_none() {
            // The very first table seeds the ConfigMap, so the first routers start with it.
            self.committed_table = Some(table_yaml(table));
            self.write_table_config().await?;
        }
        apply::apply(
            &self.api::<Deployment>(),
            &build::router::deployment(&self.ns, &self.cfg, owners.clone()),
        )
        .await
        .map_err(kube_error(format!(
            "apply Deployment {}/cleave-router",
            self.ns
        )))?;
        apply::apply(
            &self.api::<Service>(),
            &build::service::router(&self.ns, owners),
        )
        .await
        .map_err(kube_error(format!(
            "apply Service {}/cleave-router",
            self.ns
        )))?;
        self.routers().await
    }

    async fn routers(&mut self) -> Result<Vec<Endpoint>> {
        let lp = ListParams::default().labels(&build::selector_string(&build::router_selector()));
        let pods = self
            .api::<Pod>()
            .list(&lp)
            .await
            .map_err(kube_error(format!("list router pods in {}", self.ns)))?
            .items;
        let mut eps = router_endpoints(&pods);
        for (ep, pod) in eps.iter_mut().filter_map(|e| {
            let pod = pods.iter().find(|p| p.name_any() == e.name)?;
            Some((e, pod))
        }) {
            ep.address = self.address_of(pod, std::mem::take(&mut ep.address));
        }
        Ok(eps)
    }

    fn may_act(&self) -> Result<()> {
        match &self.authority {
            None => Ok(()),
            Some(a) => a.check().map_err(|why| Error::NoAuthority { why }),
        }
    }

    async fn publish(&mut self, report: &Report) -> Result<()> {
        let fcs = self.api::<FileCluster>();
        for c in &report.clusters {
            apply::apply_status(&fcs, &c.name, &c.status)
                .await
                .map_err(kube_error(format!(
                    "status of FileCluster {}/{}",
                    self.ns, c.name
                )))?;
        }
        let hrs = self.api::<HashRange>();
        for r in &report.ranges {
            apply::apply_status(&hrs, &r.name, &r.status)
                .await
                .map_err(kube_error(format!(
                    "status of HashRange {}/{}",
                    self.ns, r.name
                )))?;
        }
        Ok(())
    }
}

/// Whether a pod passes its readiness probe (condition `Ready` is `True`).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `ip:port`, with an IPv6 address in brackets.
pub fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The routers that can take a push: running pods with an IP, not being deleted, by pod IP;
/// `ready` from their readiness (only ready ones must acknowledge a table).
pub fn router_endpoints(pods: &[Pod]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let st = p.status.as_ref()?;
            if st.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip = st.pod_ip.as_ref()?;
            Some(Endpoint {
                name: p.name_any(),
                address: host_port(ip, build::ROUTER_PORT),
                redis: String::new(),
                pid: None,
                ready: pod_ready(p),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod(name: &str, phase: &str, ip: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: ip.map(Into::into),
            ..PodStatus::default()
        });
        p
    }

    fn ready(mut p: Pod, status: &str) -> Pod {
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: status.into(),
            ..PodCondition::default()
        }]);
        p
    }

    #[test]
    fn routers_are_running_pods_by_ip_with_their_readiness() {
        let pods = [
            ready(pod("cleave-router-b", "Running", Some("10.0.0.2")), "True"),
            ready(pod("cleave-router-a", "Running", Some("10.0.0.1")), "False"),
            pod("cleave-router-c", "Pending", None),
            pod("cleave-router-d", "Running", None),
            ready(pod("cleave-router-e", "Running", Some("fd00::5")), "True"),
        ];
        let eps = router_endpoints(&pods);
        let got: Vec<_> = eps.iter().map(|e| (e.address.as_str(), e.ready)).collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:7000", false),
                ("10.0.0.2:7000", true),
                ("[fd00::5]:7000", true)
            ]
        );
    }

    #[test]
    fn pods_sort_by_ordinal() {
        let mut names = vec!["fc-a-10", "fc-a-2", "fc-a-0"];
        names.sort_by_key(|n| ordinal(n));
        assert_eq!(names, ["fc-a-0", "fc-a-2", "fc-a-10"]);
    }
}
