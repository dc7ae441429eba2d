//! `cleave-operator kube`: the controller.
//!
//! One reconcile of a FileCluster runs one pass of the core for its whole namespace (the range
//! table is namespace-wide), serialised per namespace. Watches: FileClusters; the objects they
//! own (StatefulSets, Services, ConfigMaps but the range table, PDBs); HashRanges and node and
//! router pods, so a changed range, a dying node or a new router starts a pass at once — but
//! never the status a pass publishes itself (see [`triggers`](super::triggers)).
//!
//! - finalizer `cleave.dev/range-table`: the one external effect of a FileCluster is that
//!   routers (outside the API) route to it. Deletion waits until no HashRange names it and the
//!   committed table no longer contains it; owned objects go by garbage collection;
//! - an invalid set waits for a change; a failure is retried with exponential backoff; a
//!   cluster with a silent leader is looked at again in 300 ms (failover detection), one still
//!   coming up in 5 s, a settled one every 30 s;
//! - Events with reasons on transitions (ready, leader, served, refused).

use super::build::{BuildConfig, FIELD_MANAGER, LABEL_MANAGED_BY};
use super::build::{STATE_KEY, TABLE_CONFIGMAP};
use super::leader_election::{keep_lease, Authority, LeaseLock, LeaseTiming};
use super::liveness::Liveness;
use super::metrics::{self, Metrics};
use super::{triggers, KubePlatform, PodAddresses};
use crate::crd::{FileCluster, HashRange};
use crate::reconcile::status::Report;
use crate::reconcile::{self, validate, CoreState};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The finalizer on every FileCluster.
pub const FINALIZER: &str = "cleave.dev/range-table";
/// Requeue of a namespace still coming up.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(5);
/// Requeue of a settled namespace (health watch, failover detection).
pub const REQUEUE_SETTLED: Duration = Duration::from_secs(30);
/// Requeue while a leader is silent: the failover decision waits for `failoverTimeoutMs`
/// (default 1.5 s) counted from the first silent pass, and must not wait for a 5 s requeue.
pub const REQUEUE_SILENT_LEADER: Duration = Duration::from_millis(300);
/// First retry delay after a failure; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The longest one pass may take: every node and router call inside is bounded, but a pass
/// is many calls, and a pass that never ends would hold its namespace's lock for good.
pub const PASS_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The core failed (API call, state, node or router).
    #[error(transparent)]
    Core(#[from] crate::Error),
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A FileCluster being deleted is still in use.
    #[error("FileCluster {name} is still in use: {why}")]
    StillServing {
        /// The FileCluster.
        name: String,
        /// What still uses it.
        why: String,
    },
    /// The finalizer helper failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// A pass did not end within [`PASS_TIMEOUT`].
    #[error("the pass over namespace {namespace} did not end within {} s; cancelled", PASS_TIMEOUT.as_secs())]
    PassTimeout {
        /// The namespace.
        namespace: String,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    cfg: BuildConfig,
    recorder: Recorder,
    /// Metrics and health flags.
    pub metrics: Arc<Metrics>,
    /// The loops' heartbeats (for `/healthz`).
    pub liveness: Arc<Liveness>,
    /// Per namespace: the lock that serialises passes, guarding the last report.
    namespaces: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Report>>>>,
    /// Consecutive failures per object (`ns/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The leader Lease's promise, checked before every role change (`None`: no election).
    authority: Option<Authority>,
    /// Where pods are reached, when not at their usual addresses.
    addresses: Option<PodAddresses>,
    /// The installation's admin secret, copied into each namespace for its pods.
    admin_secret: Option<Arc<cleave_proto::auth::Secret>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// How one pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassResult {
    /// The desired set was refused (waits for a change).
    pub invalid: bool,
    /// Nothing is in progress and nothing failed.
    pub settled: bool,
    /// A leader is silent: look again within [`REQUEUE_SILENT_LEADER`].
    pub silent_leader: bool,
}

fn key(fc: &FileCluster) -> String {
    format!("{}/{}", fc.namespace().unwrap_or_default(), fc.name_any())
}

impl Context {
    /// A context on `client`.
    pub fn new(
        client: Client,
        cfg: BuildConfig,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            cfg,
            recorder,
            metrics,
            liveness: Arc::new(Liveness::new(Duration::from_secs(15), 2 * PASS_TIMEOUT)),
            namespaces: Mutex::default(),
            failures: Mutex::default(),
            authority: None,
            addresses: None,
            admin_secret: None,
        }
    }

    /// Copy the installation's admin secret into every namespace (Secret `cleave-admin`).
    pub fn with_admin_secret(mut self, secret: cleave_proto::auth::Secret) -> Context {
        self.admin_secret = Some(Arc::new(secret));
        self
    }

    /// Reach pods where `addresses` says (see [`PodAddresses`]).
    pub fn with_addresses(mut self, addresses: PodAddresses) -> Context {
        self.addresses = Some(addresses);
        self
    }

    /// Beat `liveness` (shared with the Lease loop and `/healthz`) on every pass.
    pub fn with_liveness(mut self, liveness: Arc<Liveness>) -> Context {
        self.liveness = liveness;
        self
    }

    /// Act only while `authority` says this replica holds the leader Lease.
    pub fn with_authority(mut self, authority: Authority) -> Context {
        self.authority = Some(authority);
        self
    }

    fn ns_lock(&self, ns: &str) -> Arc<tokio::sync::Mutex<Report>> {
        let mut m = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(ns.into()).or_default().clone()
    }

    /// One pass of the core over namespace `ns`, cancelled after [`PASS_TIMEOUT`] (every
    /// decision is recorded before it is acted on, so the next pass resumes).
    pub async fn pass(&self, ns: &str) -> Result<PassResult, ReconcileError> {
        let _running = self.liveness.pass_started();
        tokio::time::timeout(PASS_TIMEOUT, self.pass_unbounded(ns))
            .await
            .unwrap_or_else(|_| {
                self.metrics.reconciled(ns, "error", PASS_TIMEOUT);
                Err(ReconcileError::PassTimeout {
                    namespace: ns.into(),
                })
            })
    }

    async fn pass_unbounded(&self, ns: &str) -> Result<PassResult, ReconcileError> {
        tracing::debug!("pass starts");
        let lock = self.ns_lock(ns);
        let mut previous = lock.lock().await;
        let mut platform = KubePlatform::new(self.client.clone(), ns, self.cfg.clone());
        if let Some(a) = &self.authority {
            platform = platform.with_authority(a.clone());
        }
        if let Some(f) = &self.addresses {
            platform = platform.with_addresses(f.clone());
        }
        if let Some(s) = &self.admin_secret {
            platform = platform.with_admin_secret(s.clone());
        }
        let started = Instant::now();
        let _running = self.metrics.pass();
        let now = Timestamp::now().to_string();
        let span = tracing::info_span!("pass", namespace = %ns);
        let pass = reconcile::reconcile(&mut platform, &previous, &now);
        let report = match tracing::Instrument::instrument(pass, span).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reconciled(ns, "error", started.elapsed());
                return Err(e.into());
            }
        };
        let invalid = validate::validate(platform.desired()).is_err();
        self.metrics.reconciled(
            ns,
            if invalid { "invalid" } else { "ok" },
            started.elapsed(),
        );
        self.metrics.observed(ns, &report);
        self.events(&previous, &report, platform.desired(), invalid)
            .await;
        let progressing = |cs: &[crate::crd::Condition]| {
            cs.iter().any(|c| c.type_ == "Progressing" && c.is_true())
        };
        let settled = report.errors.is_empty()
            && !report
                .clusters
                .iter()
                .any(|c| progressing(&c.status.conditions))
            && !report
                .ranges
                .iter()
                .any(|r| progressing(&r.status.conditions));
        let silent_leader = !report.silent_leaders.is_empty();
        *previous = report;
        Ok(PassResult {
            invalid,
            settled,
            silent_leader,
        })
    }

    async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        // The API server refuses notes over 1 kB.
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish an event");
        }
    }

    /// Events for what changed between two reports.
    async fn events(
        &self,
        before: &Report,
        after: &Report,
        desired: &reconcile::Desired,
        invalid: bool,
    ) {
        let cond =
            |cs: &[crate::crd::Condition], t: &str| cs.iter().find(|c| c.type_ == t).cloned();
        if after.errors != before.errors && !after.errors.is_empty() {
            // A refused set, or steps that failed or were held back this pass (a node that
            // did not answer an admin command, a leader not yet safe to appoint).
            let reason = if invalid {
                "InvalidSpec"
            } else {
                "ActionFailed"
            };
            let note = after.errors.join("; ");
            for fc in &desired.clusters {
                let r = fc.object_ref(&());
                self.event(&r, EventType::Warning, reason, note.clone())
                    .await;
            }
        }
        for fc in &desired.clusters {
            let name = fc.name_any();
            let Some(now) = after.clusters.iter().find(|c| c.name == name) else {
                continue;
            };
            let old = before.clusters.iter().find(|c| c.name == name);
            let r = fc.object_ref(&());
            if now.status.leader.is_some()
                && old.map(|o| (&o.status.leader, o.status.epoch))
                    != Some((&now.status.leader, now.status.epoch))
            {
                let note = format!(
                    "{} leads at epoch {}",
                    now.status.leader.as_deref().unwrap_or("?"),
                    now.status.epoch
                );
                self.event(&r, EventType::Normal, "LeaderElected", note)
                    .await;
            }
            if let Some(note) = failover_note(old.map(|o| &o.status), &now.status) {
                self.event(&r, EventType::Warning, "FailedOver", note).await;
            }
            let ready = cond(&now.status.conditions, "Ready");
            let was = old.and_then(|o| cond(&o.status.conditions, "Ready"));
            if let Some(c) = ready {
                if was.as_ref().map(|w| &w.status) != Some(&c.status)
                    && (was.is_some() || c.is_true())
                {
                    let t = if c.is_true() {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    };
                    self.event(&r, t, &c.reason, c.message.clone()).await;
                }
            }
        }
        for hr in &desired.ranges {
            let name = hr.name_any();
            let Some(now) = after.ranges.iter().find(|x| x.name == name) else {
                continue;
            };
            let old = before.ranges.iter().find(|x| x.name == name);
            let r = hr.object_ref(&());
            if let Some(c) = cond(&now.status.conditions, "Valid") {
                let was = old.and_then(|o| cond(&o.status.conditions, "Valid"));
                if !c.is_true() && was.as_ref().map(|w| &w.message) != Some(&c.message) {
                    self.event(&r, EventType::Warning, &c.reason, c.message.clone())
                        .await;
                }
            }
            if now.status.served_by.is_some()
                && old.map(|o| (&o.status.served_by, o.status.epoch))
                    != Some((&now.status.served_by, now.status.epoch))
            {
                let note = format!(
                    "served by {} at table epoch {}",
                    now.status.served_by.as_deref().unwrap_or("?"),
                    now.status.epoch.unwrap_or(0)
                );
                self.event(&r, EventType::Normal, "Served", note).await;
            }
        }
    }

    /// A FileCluster is being deleted: let it go once no HashRange names it and the committed
    /// table does not route to it (or there are no HashRanges left at all).
    async fn cleanup(&self, fc: &FileCluster) -> Result<Action, ReconcileError> {
        let ns = fc.namespace().unwrap_or_default();
        let name = fc.name_any();
        let ranges = Api::<HashRange>::namespaced(self.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items;
        let users: Vec<String> = ranges
            .iter()
            .filter(|r| r.spec.cluster == name && r.metadata.deletion_timestamp.is_none())
            .map(|r| r.name_any())
            .collect();
        if !users.is_empty() {
            let why = format!("HashRange(s) {} still name it", users.join(", "));
            self.event(
                &fc.object_ref(&()),
                EventType::Warning,
                "DeletionBlocked",
                why.clone(),
            )
            .await;
            return Err(ReconcileError::StillServing { name, why });
        }
        if ranges.is_empty() {
            return Ok(Action::await_change());
        }
        self.pass(&ns).await?;
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), &ns)
            .get_opt(TABLE_CONFIGMAP)
            .await?;
        let state: CoreState = cm
            .and_then(|c| c.data)
            .and_then(|d| d.get(STATE_KEY).cloned())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let routed = state
            .table
            .as_ref()
            .filter(|t| t.epoch == state.committed_epoch)
            .is_some_and(|t| t.clusters.contains_key(&name));
        if routed {
            return Err(ReconcileError::StillServing {
                name,
                why: "the routers' table still routes to it".into(),
            });
        }
        self.event(
            &fc.object_ref(&()),
            EventType::Normal,
            "Released",
            "no router routes to it any more".into(),
        )
        .await;
        Ok(Action::await_change())
    }

    /// The delay before retrying `fc` after one more failure.
    pub fn backoff(&self, fc: &FileCluster) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key(fc)).or_insert(0);
        let delay = BACKOFF_MIN
            .saturating_mul(2u32.saturating_pow(*n))
            .min(BACKOFF_MAX);
        *n = n.saturating_add(1);
        delay
    }

    fn succeeded(&self, fc: &FileCluster) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(&key(fc));
    }
}

/// The note of a `FailedOver` Event when the leader changed between two statuses: from, to,
/// epoch, why, and how long it took once that is known. `None` when nothing changed. Before
/// the first pass of this process (`before` unknown) only a change still in progress is
/// reported, so a restarted operator does not repeat old news.
pub fn failover_note(
    before: Option<&crate::crd::FileClusterStatus>,
    after: &crate::crd::FileClusterStatus,
) -> Option<String> {
    let f = after.last_failover.as_ref()?;
    let news = match before {
        Some(b) => b.last_failover.as_ref() != Some(f),
        None => f.duration_ms.is_none(),
    };
    if !news {
        return None;
    }
    let took = match f.duration_ms {
        Some(ms) => format!(", done in {ms} ms"),
        None => ", in progress".into(),
    };
    Some(format!(
        "{} -> {} at epoch {}: {}{took}",
        f.from, f.to, f.epoch, f.reason
    ))
}

/// Reconcile one FileCluster (a pass over its namespace), behind the finalizer.
pub async fn reconcile(fc: Arc<FileCluster>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = fc.namespace().unwrap_or_default();
    let api: Api<FileCluster> = Api::namespaced(ctx.client.clone(), &ns);
    // Every line logged while this reconcile runs (across its awaits) names the object.
    let span = tracing::info_span!("reconcile", namespace = %ns, filecluster = %fc.name_any());
    let c = ctx.clone();
    let action = finalizer(&api, FINALIZER, fc.clone(), |event| async move {
        match event {
            Finalizer::Apply(_) => {
                let r = c.pass(&ns).await?;
                Ok(if r.invalid {
                    Action::await_change()
                } else if r.silent_leader {
                    Action::requeue(REQUEUE_SILENT_LEADER)
                } else if r.settled {
                    Action::requeue(REQUEUE_SETTLED)
                } else {
                    Action::requeue(REQUEUE_BUSY)
                })
            }
            Finalizer::Cleanup(fc) => c.cleanup(&fc).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))?;
    ctx.succeeded(&fc);
    Ok(action)
}

/// A failed reconcile is retried with exponential backoff (1 s, 2 s, 4 s, ... 5 min).
pub fn error_policy(fc: Arc<FileCluster>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&fc);
    tracing::warn!(filecluster = %key(&fc), %error, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
    Action::requeue(delay)
}

/// Flags of `cleave-operator kube`.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "CLEAVE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Seconds one reconcile pass may run before the loop counts as stuck (`/healthz` fails
    /// and the kubelet restarts the operator).
    #[arg(long, env = "CLEAVE_LOOP_STUCK_SECONDS", default_value_t = 120)]
    pub loop_stuck_seconds: u64,
    /// Default image of `cleave-node` (a FileCluster's `spec.image.node` wins).
    #[arg(
        long,
        env = "CLEAVE_NODE_IMAGE",
        default_value = "ghcr.io/cleave-dev/cleave-node:dev"
    )]
    pub node_image: String,
    /// Default image of Redis (a FileCluster's `spec.image.redis` wins).
    #[arg(long, env = "CLEAVE_REDIS_IMAGE", default_value = "redis:7.4-alpine")]
    pub redis_image: String,
    /// Image of `cleave-router`.
    #[arg(
        long,
        env = "CLEAVE_ROUTER_IMAGE",
        default_value = "ghcr.io/cleave-dev/cleave-router:dev"
    )]
    pub router_image: String,
    /// Router replicas per namespace (at least 2).
    #[arg(long, env = "CLEAVE_ROUTER_REPLICAS", default_value_t = 2)]
    pub router_replicas: i32,
    /// Image pull policy of the pods the operator creates.
    #[arg(long, env = "CLEAVE_PULL_POLICY", default_value = "IfNotPresent")]
    pub pull_policy: String,
    /// Namespace of the leader-election Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cleave-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "cleave-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease is valid without renewal: a standby takes it over once it has seen the
    /// same record for this long on its own clock.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Seconds after a renewal was sent during which the holder may act; shorter than
    /// `--lease-seconds`, so the holder stops before a standby can take over.
    #[arg(long, default_value_t = 10)]
    pub lease_renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew the Lease.
    #[arg(long, default_value_t = 2)]
    pub lease_retry_seconds: u64,
    /// Run without leader election (a single replica, or development).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Run nodes and routers without the admin credential (development only: any pod that
    /// reaches them may then change roles, replicate or push tables).
    #[arg(long, env = "CLEAVE_NO_AUTH")]
    pub no_auth: bool,
}

fn lease_timing(args: &KubeArgs) -> anyhow::Result<LeaseTiming> {
    LeaseTiming::new(
        Duration::from_secs(args.lease_seconds),
        Duration::from_secs(args.lease_renew_deadline_seconds),
        Duration::from_secs(args.lease_retry_seconds),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e} (--lease-retry-seconds, --lease-renew-deadline-seconds, --lease-seconds)"
        )
    })
}

async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
pub async fn run(args: KubeArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Metrics::with_bound(Duration::from_secs(args.loop_stuck_seconds));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            signalled().await;
            tracing::info!("signal received: shutting down");
            let _ = tx.send(true);
        });
    }
    let timing = lease_timing(&args)?;
    let liveness = Arc::new(Liveness::new(timing.lease, 2 * PASS_TIMEOUT));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
        liveness.clone(),
        stopped(),
    ));

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("cleave-operator-{}", std::process::id()))
    });
    let lock = LeaseLock::new(
        Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        timing.lease,
    )
    .with_call_timeout(timing.retry);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let authority = Authority::new(timing.renew_deadline);
    if !args.no_leader_election {
        loop {
            if *stop_tx.borrow() {
                server.await.ok();
                return Ok(());
            }
            liveness.lease_beat();
            let sent = Instant::now();
            match lock.try_acquire_or_renew().await {
                Ok(true) => {
                    authority.renewed(sent);
                    break;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(timing.retry) => {},
                _ = stopped() => {},
            }
        }
        tracing::info!(identity = %identity, lease = %args.lease_name, "leading");
        let (lock, authority, stop, lost, beats) = (
            lock.clone(),
            authority.clone(),
            stop_tx.clone(),
            lost.clone(),
            liveness.clone(),
        );
        let renewals = metrics.clone();
        tokio::spawn(async move {
            let why = keep_lease(
                lock,
                authority,
                timing,
                || beats.lease_beat(),
                |ok| renewals.lease_renewal(ok),
            )
            .await;
            // keep_lease has revoked the authority: no pass acts from here on.
            tracing::error!("{why}: stopping");
            lost.store(true, Ordering::Relaxed);
            let _ = stop.send(true);
        });
    }
    metrics.leader.store(true, Ordering::Relaxed);

    let cfg = BuildConfig {
        node_image: args.node_image.clone(),
        redis_image: args.redis_image.clone(),
        router_image: args.router_image.clone(),
        router_replicas: args.router_replicas.max(2),
        pull_policy: args.pull_policy.clone(),
        auth: !args.no_auth,
        ..BuildConfig::default()
    };
    let mut ctx = Context::new(client.clone(), cfg, metrics.clone(), Some(identity))
        .with_liveness(liveness.clone());
    if !args.no_auth {
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
            client.clone(),
            &args.lease_namespace,
        );
        let secret =
            super::credential::installation_secret(&secrets, &args.lease_namespace).await?;
        cleave_proto::auth::use_credential(Some(secret.clone()));
        ctx = ctx.with_admin_secret(secret);
    }
    if !args.no_leader_election {
        ctx = ctx.with_authority(authority.clone());
    }
    let ctx = Arc::new(ctx);
    let ours = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    // Passes start on spec changes, never on the status they publish themselves (triggers.rs).
    let (reader, writer) = reflector::store();
    let fileclusters = triggers::changed_specs(
        watcher(
            Api::<FileCluster>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer),
    );
    let hashranges = triggers::changed_specs(
        watcher(
            Api::<HashRange>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let controller = Controller::for_stream(fileclusters, reader);
    let store = controller.store();
    let store2 = store.clone();
    controller
        .owns(Api::<StatefulSet>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client.clone()), ours.clone())
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            triggers::owned_config_maps(),
        )
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            ours.clone(),
        )
        .watches_stream(hashranges, move |hr| {
            triggers::representative(
                store.state().iter().map(|fc| &**fc),
                hr.namespace().as_deref(),
            )
        })
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}")),
            move |pod| {
                let clusters = store2.state();
                triggers::pod_owner(&pod, clusters.iter().map(|fc| &**fc))
            },
        )
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((o, _)) => tracing::debug!(object = %o, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    metrics.leader.store(false, Ordering::Relaxed);
    authority.revoke();
    if !args.no_leader_election {
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "cannot release the leader Lease");
        }
    }
    let _ = stop_tx.send(true);
    server.await.ok();
    if lost.load(Ordering::Relaxed) {
        // Exit non-zero: the pod restarts and competes for the Lease again.
        anyhow::bail!("lost the leader Lease");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::failover_note;
    use crate::crd::{Failover, FileClusterStatus};

    fn status(failover: Option<(u64, Option<u64>)>) -> FileClusterStatus {
        FileClusterStatus {
            last_failover: failover.map(|(epoch, duration_ms)| Failover {
                from: "fc-a-0".into(),
                to: "fc-a-1".into(),
                epoch,
                reason: "leader fc-a-0 did not answer for 1600 ms".into(),
                duration_ms,
                ..Failover::default()
            }),
            ..FileClusterStatus::default()
        }
    }

    #[test]
    fn a_failover_is_news_when_it_starts_and_when_it_ends() {
        let started = failover_note(Some(&status(None)), &status(Some((4, None)))).unwrap();
        assert_eq!(
            started,
            "fc-a-0 -> fc-a-1 at epoch 4: leader fc-a-0 did not answer for 1600 ms, in progress"
        );
        let done = failover_note(
            Some(&status(Some((4, None)))),
            &status(Some((4, Some(900)))),
        );
        assert!(done.unwrap().ends_with(", done in 900 ms"));
        assert_eq!(
            failover_note(
                Some(&status(Some((4, Some(900))))),
                &status(Some((4, Some(900))))
            ),
            None
        );
    }

    #[test]
    fn a_restarted_operator_reports_only_a_failover_still_in_progress() {
        assert!(failover_note(None, &status(Some((4, None)))).is_some());
        assert_eq!(failover_note(None, &status(Some((4, Some(900))))), None);
        assert_eq!(failover_note(None, &status(None)), None);
    }
}
