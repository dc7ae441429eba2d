//! The reconcile core, the same for every platform: fetch → validate → build → apply → status.
//!
//! - fetch: the platform hands over the desired objects of one namespace ([`Desired`]) and the
//!   running nodes and routers; the core asks every node `NODE.STATUS` and every router
//!   `TABLE.GET` ([`Observed`]);
//! - validate ([`validate`]): the set as a whole; on failure nothing changes and status says why;
//! - build ([`plan`]): pure decisions — leaders, epochs, role changes, the range table;
//! - apply: record the decisions ([`CoreState`]) *before* acting, then `NODE.LEAD` /
//!   `NODE.FOLLOW`, then `TABLE.PUSH` to every router, waiting for every ack;
//! - status ([`status`]): conditions and per-node state, published by the platform.

pub mod cutover;
pub mod ownership;
pub mod plan;
pub mod split;
pub mod status;
pub mod validate;

use crate::crd::{FileCluster, HashRange};
use crate::error::{Error, Result};
use cleave_proto::range::RangeTable;
use cleave_proto::status::NodeStatus;
use cleave_proto::Client;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use status::{Outcome, Report};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// How long one admin command (lead, follow, push) may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node may take to answer `NODE.STATUS` before it counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The desired objects of one namespace, as fetched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// FileClusters.
    pub clusters: Vec<FileCluster>,
    /// HashRanges.
    pub ranges: Vec<HashRange>,
    /// Objects that could not be read (bad YAML, unknown fields, failed CEL rules). Any error
    /// makes the whole set invalid, so a typo never deletes anything.
    pub errors: Vec<String>,
}

/// What the operator decided and must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreState {
    /// Per FileCluster: leader and epoch.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterState>,
    /// The newest table built (its epoch is never reused for other content).
    #[serde(default)]
    pub table: Option<RangeTable>,
    /// The epoch of the newest table every router acknowledged.
    #[serde(default)]
    pub committed_epoch: u64,
    /// The split in progress (one at a time), recorded before each of its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<split::SplitState>,
    /// The highest table epoch any node's ownership (`NODE.OWN`) was given: later tables and
    /// splits take epochs above it (a cluster refuses an ownership older than its own).
    #[serde(default)]
    pub owned_epoch: u64,
}

/// Leader and epoch of one cluster, and what the operator tracks to fail it over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Name of the leading node.
    pub leader: Option<String>,
    /// The cluster's epoch: the operator hands out each epoch once (it is recorded here before
    /// any node is told about it).
    pub epoch: u64,
    /// When (ms since the Unix epoch) the leader was first seen not answering, while it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_since_ms: Option<u64>,
    /// The last change of leader, and when its trouble began (for its duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverState>,
    /// Leader changes so far.
    #[serde(default)]
    pub failovers: u64,
}

/// A change of leader as the operator records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverState {
    /// What status reports.
    pub record: crate::crd::Failover,
    /// When the trouble began (ms since the Unix epoch).
    pub began_ms: u64,
}

/// A node as the platform runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Node or router name.
    pub name: String,
    /// Client address.
    pub address: String,
    /// Its Redis (nodes only).
    pub redis: String,
    /// Process id (local platform).
    pub pid: Option<u32>,
    /// Whether it serves clients (a router pod that passes its readiness probe; always true on
    /// the local platform). Only ready routers must acknowledge a table for it to count as
    /// committed; the others are pushed it too, so that one that started stale catches up and
    /// becomes ready, but cannot hold the commit back.
    pub ready: bool,
}

/// A node with what it said about itself (`None`: no answer).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObs {
    /// Node name.
    pub name: String,
    /// Client address.
    pub address: String,
    /// Its Redis.
    pub redis: String,
    /// Process id (local platform).
    pub pid: Option<u32>,
    /// `NODE.STATUS`.
    pub status: Option<NodeStatus>,
}

/// A router with the epoch of the table it serves (`None`: no answer or no table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterObs {
    /// Router name.
    pub name: String,
    /// Client address.
    pub address: String,
    /// Process id (local platform).
    pub pid: Option<u32>,
    /// Epoch of its table.
    pub epoch: Option<u64>,
}

/// Everything observed in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// When it was observed (ms since the Unix epoch): the plan's only clock.
    pub now_ms: u64,
    /// The same instant, RFC 3339 (for records).
    pub now: String,
    /// Nodes per cluster, in index order.
    pub clusters: BTreeMap<String, Vec<NodeObs>>,
    /// Routers.
    pub routers: Vec<RouterObs>,
}

impl Observed {
    /// The highest table epoch any router serves.
    pub fn max_router_epoch(&self) -> u64 {
        self.routers
            .iter()
            .filter_map(|r| r.epoch)
            .max()
            .unwrap_or(0)
    }
}

/// What a platform provides: objects, workloads, persistence. Everything else is the core's.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// The desired objects.
    fn fetch(&mut self) -> impl Future<Output = Result<Desired>>;
    /// The state recorded by earlier passes.
    fn load_state(&mut self) -> impl Future<Output = Result<CoreState>>;
    /// Record the state (before acting on it).
    fn save_state(&mut self, state: &CoreState) -> impl Future<Output = Result<()>>;
    /// Make the workloads of exactly these clusters exist (never deleting data).
    fn ensure_clusters(&mut self, clusters: &[FileCluster]) -> impl Future<Output = Result<()>>;
    /// The nodes that exist now, per cluster.
    fn nodes(&mut self) -> impl Future<Output = Result<BTreeMap<String, Vec<Endpoint>>>>;
    /// Make the routers exist, seeding new ones with `table`; returns them.
    fn ensure_routers(&mut self, table: &RangeTable)
        -> impl Future<Output = Result<Vec<Endpoint>>>;
    /// The routers that exist now.
    fn routers(&mut self) -> impl Future<Output = Result<Vec<Endpoint>>>;
    /// Publish the statuses.
    fn publish(&mut self, report: &Report) -> impl Future<Output = Result<()>>;
    /// Whether this operator may still act: checked before every recorded decision and every
    /// role change, so an operator that may have lost its authority (a Lease past its renew
    /// deadline) stops before another one can start. The local platform holds an `flock` for
    /// its whole life, so it always may.
    fn may_act(&self) -> Result<()> {
        Ok(())
    }
}

async fn admin<T>(
    addr: &str,
    f: impl AsyncFnOnce(&mut Client) -> cleave_proto::Result<T>,
) -> Result<T> {
    admin_within(addr, ADMIN_TIMEOUT, f).await
}

/// One admin exchange with `addr` (connect included), bounded by `limit`.
async fn admin_within<T>(
    addr: &str,
    limit: Duration,
    f: impl AsyncFnOnce(&mut Client) -> cleave_proto::Result<T>,
) -> Result<T> {
    let work = async {
        let mut c = Client::connect(addr).await?;
        f(&mut c).await
    };
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(Error::Timeout {
            addr: addr.into(),
            ms: limit.as_millis() as u64,
        }),
        Ok(r) => r.map_err(|source| Error::Admin {
            addr: addr.into(),
            source,
        }),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `NODE.STATUS` within [`PROBE_TIMEOUT`]: a node that cannot answer that fast counts as not
/// answering (a hung leader must not hold a whole pass for the admin timeout).
async fn probe(addr: &str) -> Result<NodeStatus> {
    admin_within(addr, PROBE_TIMEOUT, async |c| c.node_status().await).await
}

/// Ask every node and router how it is.
pub async fn observe<P: Platform>(platform: &mut P) -> Result<Observed> {
    let nodes = platform.nodes().await?;
    let routers = platform.routers().await?;
    let mut observed = Observed {
        now_ms: now_ms(),
        now: k8s_openapi::jiff::Timestamp::now().to_string(),
        ..Observed::default()
    };
    for (cluster, eps) in nodes {
        let statuses = join_all(eps.iter().map(|e| probe(&e.address))).await;
        let obs = eps
            .into_iter()
            .zip(statuses)
            .map(|(e, s)| NodeObs {
                name: e.name,
                address: e.address,
                redis: e.redis,
                pid: e.pid,
                status: s.ok(),
            })
            .collect();
        observed.clusters.insert(cluster, obs);
    }
    let epochs = join_all(
        routers
            .iter()
            .map(|e| admin(&e.address, async |c| c.table().await)),
    )
    .await;
    observed.routers = routers
        .into_iter()
        .zip(epochs)
        .map(|(e, t)| RouterObs {
            name: e.name,
            address: e.address,
            pid: e.pid,
            epoch: t.ok().map(|t| t.epoch),
        })
        .collect();
    Ok(observed)
}

/// Which routers to push `table` to: every ready one not known to serve its epoch, and every
/// one that is not ready (a router becomes ready only once a push confirmed its table, since
/// the one it started from may be older than the last commit). Pure.
pub fn routers_to_push<'a>(
    routers: &'a [Endpoint],
    table: &RangeTable,
    observed: &Observed,
) -> Vec<&'a Endpoint> {
    let current = |addr: &str| {
        observed
            .routers
            .iter()
            .any(|r| r.address == addr && r.epoch == Some(table.epoch))
    };
    routers
        .iter()
        .filter(|r| !r.ready || !current(&r.address))
        .collect()
}

/// Make sure every router runs and serves `table`: push it where [`routers_to_push`] says, and
/// count it committed only when every *ready* router acknowledged (a crash-looping router,
/// not ready, does not block commits; at least one ready router must exist).
async fn publish_table<P: Platform>(
    platform: &mut P,
    table: &RangeTable,
    observed: &Observed,
    state: &mut CoreState,
    outcome: &mut Outcome,
) -> Result<()> {
    platform.may_act()?;
    let routers = platform.ensure_routers(table).await?;
    let stale = routers_to_push(&routers, table, observed);
    let pushes = join_all(
        stale
            .iter()
            .map(|r| admin(&r.address, async |c| c.push_table(table).await)),
    )
    .await;
    let mut failed = Vec::new();
    for (r, pushed) in stale.iter().zip(pushes) {
        match pushed {
            Err(e) if r.ready => failed.push(e.to_string()),
            Err(e) => {
                tracing::debug!(router = %r.name, error = %e, "a router not ready yet was not brought up to date")
            }
            Ok(()) => {}
        }
    }
    if failed.is_empty() && routers.iter().any(|r| r.ready) {
        if state.committed_epoch != table.epoch {
            tracing::info!(epoch = table.epoch, "every router acknowledged the table");
            state.committed_epoch = table.epoch;
            platform.save_state(state).await?;
        }
        outcome.table_committed = true;
    } else {
        outcome
            .waiting
            .entry("(routers)".into())
            .or_insert_with(|| "table push pending".into());
        outcome.apply_errors.extend(failed);
    }
    Ok(())
}

/// What the last check before `NODE.LEAD` needs (see [`plan::may_lead`]).
struct LeadCheck<'a> {
    valid: &'a validate::Valid,
    observed: &'a Observed,
    old_leader: Option<String>,
}

impl LeadCheck<'_> {
    /// Ask the candidate and the nodes just told to follow it how far they are now, and decide.
    async fn run(
        &self,
        cluster: &str,
        node: &str,
        address: &str,
        told: Vec<Told>,
    ) -> std::result::Result<(), String> {
        let k = min_in_sync(self.valid, cluster);
        let unanswered = self
            .observed
            .clusters
            .get(cluster)
            .into_iter()
            .flatten()
            .filter(|n| n.status.is_none())
            .filter(|n| n.name != node && Some(&n.name) != self.old_leader.as_ref())
            .filter(|n| !told.iter().any(|t| t.name == n.name))
            .count();
        let now = probe(address)
            .await
            .map_err(|e| format!("{node} does not answer: {e}"))?;
        plan::may_lead(node, &now, &fenced(&told).await, unanswered, k)
    }
}

/// A node told to follow a new leader, and whether it accepted.
struct Told {
    name: String,
    address: String,
    followed: bool,
}

/// Where the nodes told to follow stand now (asked together): `None` for one that refused or
/// does not answer.
async fn fenced(told: &[Told]) -> Vec<(String, plan::Fenced)> {
    let now = join_all(told.iter().map(|t| async move {
        match t.followed {
            true => probe(&t.address).await.ok(),
            false => None,
        }
    }))
    .await;
    told.iter().map(|t| t.name.clone()).zip(now).collect()
}

/// The `minInSync` of cluster `name` in the valid set.
fn min_in_sync(valid: &validate::Valid, name: &str) -> usize {
    valid
        .clusters
        .iter()
        .find(|fc| fc.metadata.name.as_deref() == Some(name))
        .map_or(1, plan::min_in_sync)
}

/// How long a switchover may pause writes on the old leader.
pub const SWITCHOVER_FREEZE: Duration = Duration::from_millis(3000);
/// How long the target may take to catch up with the frozen leader.
pub const SWITCHOVER_CATCH_UP: Duration = Duration::from_millis(2000);

/// Carry out a planned switchover: freeze the leader (it applies nothing more), wait until the
/// target has applied everything the leader holds, record the new leader, then move the
/// others to the new epoch under it, and tell it to lead. If the target does not catch up in
/// time, nothing is recorded: the freeze expires and the next pass re-leads the old leader at
/// the reserved epoch.
async fn switchover<P: Platform>(
    platform: &mut P,
    state: &mut CoreState,
    sw: &plan::Switchover,
    now: &str,
    k: usize,
) -> Result<()> {
    let began = now_ms();
    let (from_name, from_addr, from_epoch) = &sw.from;
    let (to_name, to_addr) = &sw.to;
    let ms = SWITCHOVER_FREEZE.as_millis() as u64;
    platform.may_act()?;
    let last = admin(from_addr, async |c| c.freeze(*from_epoch, ms).await).await?;
    let deadline = tokio::time::Instant::now() + SWITCHOVER_CATCH_UP;
    loop {
        if probe(to_addr).await.is_ok_and(|s| s.applied_seq >= last) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                addr: to_addr.clone(),
                ms: SWITCHOVER_CATCH_UP.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cs = state.clusters.entry(sw.cluster.clone()).or_default();
    cs.leader = Some(to_name.clone());
    cs.epoch = sw.epoch;
    cs.failovers += 1;
    cs.last_failover = Some(FailoverState {
        record: crate::crd::Failover {
            at: now.to_string(),
            from: from_name.clone(),
            to: to_name.clone(),
            epoch: sw.epoch,
            reason: format!("switchover to {to_name} (spec.leader)"),
            duration_ms: None,
        },
        began_ms: began,
    });
    platform.may_act()?;
    platform.save_state(state).await?;
    let mut told = Vec::new();
    for addr in &sw.others {
        let r = admin(addr, async |c| c.follow(sw.epoch, to_addr).await).await;
        if let Err(e) = &r {
            tracing::warn!("switchover: {addr} did not follow yet: {e}");
        }
        told.push(Told {
            name: addr.clone(),
            address: addr.clone(),
            followed: r.is_ok(),
        });
    }
    let now = probe(to_addr).await?;
    if let Err(why) = plan::may_lead(to_name, &now, &fenced(&told).await, 0, k) {
        return Err(Error::NotYet {
            what: format!("switchover of {} to {to_name}", sw.cluster),
            why,
        });
    }
    platform.may_act()?;
    admin(to_addr, async |c| c.lead(sw.epoch).await).await?;
    tracing::info!(cluster = %sw.cluster, from = %from_name, to = %to_name, epoch = sw.epoch, "switched over");
    Ok(())
}

/// One pass of the pipeline. `previous` is the last report (for transition times).
pub async fn reconcile<P: Platform>(
    platform: &mut P,
    previous: &Report,
    now: &str,
) -> Result<Report> {
    let desired = platform.fetch().await?;
    let mut state = platform.load_state().await?;
    let mut outcome = Outcome::default();
    match validate::validate(&desired) {
        Err(problems) => {
            let messages: Vec<&String> = problems.iter().map(|p| &p.message).collect();
            if messages != previous.errors.iter().collect::<Vec<_>>() {
                for m in messages {
                    tracing::warn!("refused, nothing changes: {m}");
                }
            }
            outcome.problems = problems;
        }
        Ok(valid) => {
            platform.ensure_clusters(&valid.clusters).await?;
            let observed = observe(platform).await?;
            let plan = plan::build(&valid, &state, &observed);
            let old_leaders: BTreeMap<String, Option<String>> = state
                .clusters
                .iter()
                .map(|(c, cs)| (c.clone(), cs.leader.clone()))
                .collect();
            outcome.waiting = plan.waiting.clone();
            if plan.state != state {
                platform.may_act()?;
                platform.save_state(&plan.state).await?;
                state = plan.state.clone();
            }
            let mut told: BTreeMap<(String, u64), Vec<Told>> = BTreeMap::new();
            // A leader held back this pass: the new table would name a node that does not lead.
            let mut held_back = false;
            for action in &plan.actions {
                tracing::info!(?action, "applying");
                platform.may_act()?;
                let r = match action {
                    plan::NodeAction::Lead {
                        cluster,
                        node,
                        address,
                        epoch,
                    } => {
                        let moved = told.remove(&(cluster.clone(), *epoch)).unwrap_or_default();
                        let check = LeadCheck {
                            valid: &valid,
                            observed: &observed,
                            old_leader: old_leaders.get(cluster).cloned().flatten(),
                        };
                        match check.run(cluster, node, address, moved).await {
                            Err(why) => {
                                held_back = true;
                                tracing::warn!(%cluster, %node, epoch, "not leading yet: {why}");
                                Err(Error::NotYet {
                                    what: format!("{cluster}: {node} to lead at epoch {epoch}"),
                                    why,
                                })
                            }
                            Ok(()) => admin(address, async |c| c.lead(*epoch).await).await,
                        }
                    }
                    plan::NodeAction::Follow {
                        cluster,
                        node,
                        address,
                        epoch,
                        leader,
                    } => {
                        let r = admin(address, async |c| c.follow(*epoch, leader).await).await;
                        told.entry((cluster.clone(), *epoch))
                            .or_default()
                            .push(Told {
                                name: node.clone(),
                                address: address.clone(),
                                followed: r.is_ok(),
                            });
                        r
                    }
                    plan::NodeAction::Learn {
                        address,
                        epoch,
                        leader,
                        spans,
                        ..
                    } => admin(address, async |c| c.learn(*epoch, leader, spans).await).await,
                };
                if let Err(e) = r {
                    outcome.apply_errors.push(e.to_string());
                }
            }
            for sw in &plan.switchovers {
                platform.may_act()?;
                let k = min_in_sync(&valid, &sw.cluster);
                if let Err(e) = switchover(platform, &mut state, sw, &observed.now, k).await {
                    tracing::warn!(cluster = %sw.cluster, "switchover abandoned: {e}");
                    outcome
                        .apply_errors
                        .push(format!("switchover of {}: {e}", sw.cluster));
                }
            }
            let mut table = plan.table.clone().filter(|_| !held_back);
            if let Some(sp) = &plan.abort {
                // An abort that failed is retried on the next pass; the split never advances
                // once asked to abort.
                if let Err(e) = cutover::abort(platform, &mut state, sp, &observed).await {
                    outcome.apply_errors.push(format!("split abort: {e}"));
                }
            } else {
                match cutover::advance(platform, &mut state, &observed).await {
                    Ok(Some(committed)) => table = Some(committed),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("split: {e}");
                        outcome.apply_errors.push(format!("split: {e}"));
                    }
                }
            }
            if let Some(table) = table.as_ref() {
                publish_table(platform, table, &observed, &mut state, &mut outcome).await?;
                if outcome.table_committed && plan.abort.is_none() {
                    let errors =
                        ownership::give_missing(platform, table, &mut state, &observed).await?;
                    outcome.apply_errors.extend(errors);
                }
            }
        }
    }
    let observed = observe(platform).await?;
    let report = status::compute(&desired, &state, &observed, &outcome, previous, now);
    platform.publish(&report).await?;
    Ok(report)
}
