//! A whole local Cleave system for tests and benchmarks: clusters plus a router in front.

use crate::cluster::{Cluster, ClusterOptions};
use crate::process::RouterProc;
use cleave_proto::range::{split_point, ClusterMembers, HashRange, RangeTable, HASH_MAX};
use std::collections::BTreeMap;
use std::path::Path;

/// Clusters splitting the hash space evenly, and one router.
pub struct System {
    /// The clusters, in range order.
    pub clusters: Vec<Cluster>,
    /// The router.
    pub router: RouterProc,
    /// Its table.
    pub table: RangeTable,
    /// More routers serving the same table file (see [`System::add_router`]).
    pub more_routers: Vec<RouterProc>,
    dir: std::path::PathBuf,
}

/// Two clusters owning the low and high halves of the hash space.
pub fn two_halves(a: &Cluster, b: &Cluster) -> RangeTable {
    let m = split_point(0, HASH_MAX).expect("splittable");
    let mut clusters = BTreeMap::new();
    for c in [a, b] {
        clusters.insert(
            c.name.clone(),
            ClusterMembers {
                nodes: c.addrs(),
                leader: Some(c.nodes[0].addr.clone()),
            },
        );
    }
    RangeTable {
        epoch: 1,
        ranges: vec![
            HashRange {
                start: 0,
                end: m,
                cluster: a.name.clone(),
            },
            HashRange {
                start: m + 1,
                end: HASH_MAX,
                cluster: b.name.clone(),
            },
        ],
        clusters,
    }
}

impl System {
    /// Start two clusters and a router in `dir`.
    pub async fn start(dir: &Path, opts: ClusterOptions) -> System {
        let a = Cluster::start_in("fc-a", dir, opts.clone()).await;
        let b = Cluster::start_in("fc-b", dir, opts).await;
        let table = two_halves(&a, &b);
        let table_path = dir.join("table.yaml");
        std::fs::write(&table_path, serde_yaml::to_string(&table).expect("yaml"))
            .expect("write table");
        let router = RouterProc::start(&table_path, &[], &dir.join("router.log"));
        System {
            clusters: vec![a, b],
            router,
            table,
            more_routers: vec![],
            dir: dir.to_path_buf(),
        }
    }

    /// Start one more router on the same table; returns its address.
    pub fn add_router(&mut self) -> String {
        let i = self.more_routers.len() + 1;
        let router = RouterProc::start(
            &self.dir.join("table.yaml"),
            &[],
            &self.dir.join(format!("router-{i}.log")),
        );
        let addr = router.addr.clone();
        self.more_routers.push(router);
        addr
    }

    /// The addresses of every router.
    pub fn router_addrs(&self) -> Vec<String> {
        std::iter::once(&self.router)
            .chain(&self.more_routers)
            .map(|r| r.addr.clone())
            .collect()
    }

    /// The name of the cluster owning `path` in the table.
    pub fn cluster_of(&self, path: &str) -> String {
        let root = path.trim_start_matches('/').split('/').next().unwrap_or("");
        self.table
            .lookup(cleave_proto::hash::hash_root(root))
            .map(|r| r.cluster.clone())
            .unwrap_or_default()
    }
}
