//! The operator's `/metrics`, `/healthz` and `/readyz`, on the shared admin server
//! (`cleave-admin`: prometheus-client and warp, as the node and the router).
//!
//! - `/healthz` fails when the reconcile loop is stuck: a pass running longer than the bound
//!   (the [`Heartbeat`]), so the kubelet restarts a hung operator;
//! - `/readyz` is "holds the Lease and the loop is not stuck": a standby replica is live but
//!   not ready.
//!
//! Per-cluster figures come from the status each pass publishes ([`Metrics::observed`]), so
//! counters kept in status (failovers) survive operator restarts.

use crate::reconcile::split::SplitPhase;
use cleave_admin::prometheus_client::metrics::counter::Counter;
use cleave_admin::prometheus_client::metrics::gauge::Gauge;
use cleave_admin::prometheus_client::registry::Unit;
use cleave_admin::{
    label, seconds_histograms, Admin, Counters, FloatGauges, Gauges, Heartbeat, Histograms, Labels,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default bound after which a running pass counts as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// The operator's metrics and health.
#[derive(Debug)]
pub struct Metrics {
    /// Whether this replica holds the Lease (or runs without election).
    pub leader: AtomicBool,
    /// The reconcile loop's heartbeat.
    pub heartbeat: Heartbeat,
    leader_gauge: Gauge,
    reconciles: Counters,
    durations: Histograms,
    table_epoch: Gauges,
    table_switches: Counters,
    routers_behind: Gauges,
    split_phase: Gauges,
    cluster_ready: Gauges,
    cluster_failovers: Counters,
    cluster_epoch: Gauges,
    last_failover: FloatGauges,
    role_changes: Counters,
    leaders_missing: Gauges,
    lease_renewals: Counters,
    /// `(namespace, node)` → role last seen, for counting role changes.
    roles: Mutex<BTreeMap<(String, String), String>>,
    /// The registry and checks, served by the admin server.
    admin: Mutex<Option<Admin>>,
}

fn cluster_labels(ns: &str, cluster: &str) -> Labels {
    vec![("namespace", ns.into()), ("filecluster", cluster.into())]
}

impl Metrics {
    /// Shared metrics with the default stuck bound.
    pub fn new() -> Arc<Metrics> {
        Metrics::with_bound(STUCK_AFTER)
    }

    /// Shared metrics; a pass running longer than `stuck_after` fails `/healthz`.
    pub fn with_bound(stuck_after: Duration) -> Arc<Metrics> {
        let m = Arc::new(Metrics {
            leader: AtomicBool::new(false),
            heartbeat: Heartbeat::on_demand(stuck_after),
            leader_gauge: Gauge::default(),
            reconciles: Counters::default(),
            durations: seconds_histograms(),
            table_epoch: Gauges::default(),
            table_switches: Counters::default(),
            routers_behind: Gauges::default(),
            split_phase: Gauges::default(),
            cluster_ready: Gauges::default(),
            cluster_failovers: Counters::default(),
            cluster_epoch: Gauges::default(),
            last_failover: FloatGauges::default(),
            role_changes: Counters::default(),
            leaders_missing: Gauges::default(),
            lease_renewals: Counters::default(),
            roles: Mutex::new(BTreeMap::new()),
            admin: Mutex::new(None),
        });
        let mut admin = Admin::new();
        let r = admin.registry();
        r.register(
            "cleave_operator_leader",
            "Whether this replica holds the leader Lease.",
            m.leader_gauge.clone(),
        );
        r.register(
            "cleave_operator_reconciles",
            "Reconcile passes per namespace and result (ok, invalid, error).",
            m.reconciles.clone(),
        );
        r.register_with_unit(
            "cleave_operator_reconcile_duration",
            "Time spent in reconcile passes.",
            Unit::Seconds,
            m.durations.clone(),
        );
        r.register(
            "cleave_table_epoch",
            "Epoch of the range table every router acknowledged.",
            m.table_epoch.clone(),
        );
        r.register(
            "cleave_operator_table_switches",
            "Times the committed range table moved to a new epoch (every router acknowledged it).",
            m.table_switches.clone(),
        );
        r.register(
            "cleave_operator_routers_behind",
            "Routers not serving the committed table's epoch.",
            m.routers_behind.clone(),
        );
        r.register(
            "cleave_operator_split_phase",
            "The split in progress: 0 none, 1 cloning, 2 fencing, 3 cutting over, 4 cleaning, 5 aborting.",
            m.split_phase.clone(),
        );
        r.register(
            "cleave_filecluster_ready",
            "Whether a FileCluster is Ready.",
            m.cluster_ready.clone(),
        );
        r.register(
            "cleave_filecluster_failovers",
            "Leader changes of a FileCluster (failovers and switchovers).",
            m.cluster_failovers.clone(),
        );
        r.register(
            "cleave_filecluster_epoch",
            "A FileCluster's leader epoch.",
            m.cluster_epoch.clone(),
        );
        r.register_with_unit(
            "cleave_filecluster_last_failover_duration",
            "How long the last leader change took, from the trouble to the new leader.",
            Unit::Seconds,
            m.last_failover.clone(),
        );
        r.register(
            "cleave_filecluster_role_changes",
            "Node role changes the operator observed, per FileCluster.",
            m.role_changes.clone(),
        );
        r.register(
            "cleave_filecluster_leader_missing",
            "1 while a FileCluster has no node leading.",
            m.leaders_missing.clone(),
        );
        for result in ["ok", "failed"] {
            let _ = m.lease_renewals.get_or_create(&label("result", result));
        }
        r.register(
            "cleave_operator_lease_renewals",
            "Attempts to renew the leader Lease, by result (ok, failed: lost, refused or late).",
            m.lease_renewals.clone(),
        );
        let heartbeat_age = cleave_admin::prometheus_client::metrics::gauge::Gauge::<
            f64,
            std::sync::atomic::AtomicU64,
        >::default();
        r.register_with_unit(
            "cleave_operator_heartbeat_age",
            "Seconds since the reconcile loop last started or ended a pass.",
            Unit::Seconds,
            heartbeat_age.clone(),
        );
        let weak = Arc::downgrade(&m);
        admin.before_scrape(move || {
            if let Some(m) = weak.upgrade() {
                m.leader_gauge
                    .set(i64::from(m.leader.load(Ordering::Relaxed)));
                heartbeat_age.set(m.heartbeat.age().as_secs_f64());
            }
        });
        let weak = Arc::downgrade(&m);
        admin.liveness(move || weak.upgrade().map_or(Ok(()), |m| m.heartbeat.check()));
        let weak = Arc::downgrade(&m);
        admin.readiness(move || match weak.upgrade() {
            Some(m) if !m.leader.load(Ordering::Relaxed) => {
                Err("standby: does not hold the leader Lease".into())
            }
            _ => Ok(()),
        });
        *m.admin.lock().expect("lock") = Some(admin);
        m
    }

    /// The admin registry and checks, to serve (taken once).
    pub fn take_admin(&self) -> Option<Admin> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Mark a pass as running until the returned guard is dropped (the heartbeat).
    pub fn pass(&self) -> PassGuard<'_> {
        self.heartbeat.busy();
        PassGuard(&self.heartbeat)
    }

    /// One attempt to renew the Lease ended.
    pub fn lease_renewal(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.lease_renewals
            .get_or_create(&label("result", result))
            .inc();
    }

    /// Count one pass of namespace `ns` (`result`: `ok`, `invalid` or `error`).
    pub fn reconciled(&self, ns: &str, result: &str, took: Duration) {
        let labels = vec![("namespace", ns.into()), ("result", result.into())];
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&label("namespace", ns))
            .observe(took.as_secs_f64());
    }

    /// Record what a pass reported.
    pub fn observed(&self, ns: &str, report: &crate::reconcile::status::Report) {
        let ns_label = label("namespace", ns);
        let before = self.table_epoch.get_or_create(&ns_label).get() as u64;
        if report.epoch > before && before > 0 {
            self.table_switches.get_or_create(&ns_label).inc();
        }
        self.table_epoch
            .get_or_create(&ns_label)
            .set(report.epoch as i64);
        let behind = report
            .routers
            .iter()
            .filter(|r| r.epoch != Some(report.epoch))
            .count();
        self.routers_behind
            .get_or_create(&ns_label)
            .set(behind as i64);
        let phase = report.split.as_ref().map_or(0, |s| match s.phase {
            SplitPhase::Cloning => 1,
            SplitPhase::Fencing => 2,
            SplitPhase::CuttingOver => 3,
            SplitPhase::Cleaning => 4,
            SplitPhase::Aborting => 5,
        });
        self.split_phase.get_or_create(&ns_label).set(phase);
        let mut roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        for c in &report.clusters {
            let l = cluster_labels(ns, &c.name);
            let ready = c
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.is_true());
            self.cluster_ready.get_or_create(&l).set(i64::from(ready));
            self.cluster_epoch
                .get_or_create(&l)
                .set(c.status.epoch as i64);
            let counted = self.cluster_failovers.get_or_create(&l).get();
            if c.status.failovers > counted {
                self.cluster_failovers
                    .get_or_create(&l)
                    .inc_by(c.status.failovers - counted);
            } else if c.status.failovers < counted {
                // The cluster was recreated: its count starts again.
                self.cluster_failovers.remove(&l);
                let fresh: Counter = self.cluster_failovers.get_or_create_owned(&l);
                fresh.inc_by(c.status.failovers);
            }
            match c.status.last_failover.as_ref().and_then(|f| f.duration_ms) {
                Some(ms) => {
                    self.last_failover.get_or_create(&l).set(ms as f64 / 1000.0);
                }
                None => {
                    self.last_failover.remove(&l);
                }
            }
            // From 0, so `increase()` sees the first change.
            let _ = self.role_changes.get_or_create(&l);
            let leading = c.status.nodes.iter().any(|n| n.role == "leader");
            self.leaders_missing
                .get_or_create(&l)
                .set(i64::from(!leading));
            for n in &c.status.nodes {
                let key = (ns.to_string(), n.name.clone());
                if let Some(old) = roles.insert(key, n.role.clone()) {
                    if old != n.role {
                        self.role_changes.get_or_create(&l).inc();
                    }
                }
            }
        }
    }
}

/// A running pass; its end is the next heartbeat.
#[derive(Debug)]
pub struct PassGuard<'a>(&'a Heartbeat);

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` of `metrics` on `listener` until `shutdown`;
/// `/healthz` also fails when `liveness` says a loop stopped beating (the Lease loop).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    liveness: Arc<super::liveness::Liveness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Some(mut admin) = metrics.take_admin() else {
        tracing::error!("the operator's admin server was started twice");
        return;
    };
    admin.liveness(move || liveness.check());
    cleave_admin::serve(listener, Arc::new(admin), shutdown).await;
}

#[cfg(test)]
mod tests;
