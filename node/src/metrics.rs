//! What a node counts, for `/metrics` on its admin port (`--admin-listen`).
//!
//! Instrumentation is one struct, [`NodeMetrics`], held by [`Node`] and touched by one-line
//! calls where things happen (dispatch, group commit, follower apply, resync). Figures that
//! are already state — applied and committed seq, role, epoch, each follower's acknowledged
//! seq — are not counted twice: [`register`] reads them from the node at scrape time. The
//! replication log's length and a Redis round trip come from the store view's refresh
//! ([`crate::store_view`], every 100 ms), since reading them needs Redis and a scrape must not
//! wait on it.
//!
//! Readiness (`/readyz`): a leader that is not handing over, or a follower that hears from its
//! leader and is not resyncing ([`ready`]).

use crate::node::Node;
use cleave_admin::prometheus_client::metrics::counter::Counter;
use cleave_admin::prometheus_client::metrics::gauge::Gauge;
use cleave_admin::prometheus_client::metrics::histogram::Histogram;
use cleave_admin::prometheus_client::registry::Unit;
use cleave_admin::{
    count_histogram, label, seconds_histogram, seconds_histograms, Admin, Counters, FloatGauges,
    Gauges, Histograms,
};
use cleave_proto::status::Role;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Applied positions remembered for the lag in seconds (older ones count from the oldest).
const APPLIED_TIMES: usize = 4096;

/// Counters and histograms of one node.
#[derive(Debug)]
pub struct NodeMetrics {
    requests: Counters,
    request_seconds: Histograms,
    batch_writes: Histogram,
    batch_seconds: Histogram,
    redis_seconds: Histograms,
    catchups: Counter,
    catchup_seconds: Histogram,
    resyncs: Counters,
    resync_seconds: Histogram,
    snapshot_bytes: Counters,
    read_confirmations: Counters,
    log_entries: Gauge,
    /// Leader: when recent seqs were applied, oldest first, for lag in seconds.
    applied_at: Mutex<VecDeque<(u64, Instant)>>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            requests: Counters::default(),
            request_seconds: seconds_histograms(),
            batch_writes: count_histogram(),
            batch_seconds: seconds_histogram(),
            redis_seconds: seconds_histograms(),
            catchups: Counter::default(),
            catchup_seconds: seconds_histogram(),
            resyncs: Counters::default(),
            resync_seconds: seconds_histogram(),
            snapshot_bytes: Counters::default(),
            read_confirmations: Counters::default(),
            log_entries: Gauge::default(),
            applied_at: Mutex::new(VecDeque::new()),
        }
    }
}

impl NodeMetrics {
    /// One request answered: its command, outcome (`ok` or an error code) and time taken.
    pub fn request(&self, command: &str, outcome: &str, took: Duration) {
        let labels = vec![("command", command.into()), ("outcome", outcome.into())];
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&label("command", command))
            .observe(took.as_secs_f64());
    }

    /// One group-commit batch of `writes` applied on the leader in `took`, up to `last_seq`.
    pub fn batch(&self, writes: usize, took: Duration, last_seq: Option<u64>) {
        self.batch_writes.observe(writes as f64);
        self.batch_seconds.observe(took.as_secs_f64());
        if let Some(seq) = last_seq {
            let mut at = self.applied_at.lock().unwrap_or_else(|e| e.into_inner());
            at.push_back((seq, Instant::now()));
            if at.len() > APPLIED_TIMES {
                at.pop_front();
            }
        }
    }

    /// One Redis round trip of kind `op`.
    pub fn redis(&self, op: &'static str, took: Duration) {
        self.redis_seconds
            .get_or_create(&label("op", op))
            .observe(took.as_secs_f64());
    }

    /// A follower caught up from the log in `took` (from connecting to reaching the commit
    /// index it was told).
    pub fn caught_up(&self, took: Duration) {
        self.catchups.inc();
        self.catchup_seconds.observe(took.as_secs_f64());
    }

    /// A full resync ended (`ok`: completed; else it failed and will start over).
    pub fn resync(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.resyncs.get_or_create(&label("result", result)).inc();
        self.resync_seconds.observe(took.as_secs_f64());
    }

    /// Snapshot bytes `sent` (as a source) or received (resyncing).
    pub fn snapshot(&self, sent: bool, bytes: u64) {
        let dir = if sent { "sent" } else { "received" };
        self.snapshot_bytes
            .get_or_create(&label("direction", dir))
            .inc_by(bytes);
    }

    /// The replication log's length, as the store view last read it.
    pub fn log_entries(&self, entries: u64) {
        self.log_entries.set(entries as i64);
    }

    /// Leader: a read proved leadership, by its lease (`lease`) or by a confirmation round.
    pub fn read_confirmed(&self, by_lease: bool) {
        let how = if by_lease { "lease" } else { "round" };
        self.read_confirmations
            .get_or_create(&label("by", how))
            .inc();
    }

    /// Seconds since the first entry after `acked` was applied here (0 when none is missing).
    fn lag_seconds(&self, acked: u64, applied: u64) -> f64 {
        if acked >= applied {
            return 0.0;
        }
        let at = self.applied_at.lock().unwrap_or_else(|e| e.into_inner());
        at.iter()
            .find(|(seq, _)| *seq > acked)
            .map_or(0.0, |(_, t)| t.elapsed().as_secs_f64())
    }
}

/// `/readyz` of a node: `Ok` when it is in sync and serving.
pub fn ready(node: &Node) -> Result<(), String> {
    let st = node.role_state();
    match st.role {
        Role::Leader if node.is_frozen() => Err("leader handing over (switchover)".into()),
        Role::Leader => Ok(()),
        Role::Follower if node.follower_in_sync() => Ok(()),
        Role::Follower => Err(format!(
            "follower out of sync with its leader {}",
            st.leader.unwrap_or_else(|| "?".into())
        )),
        other => Err(format!("not serving: role {other:?}")),
    }
}

/// Register `node`'s metrics and readiness in `admin` (names prefixed `cleave_node_`).
pub fn register(admin: &mut Admin, node: &Arc<Node>) {
    let m = &node.metrics;
    // Series with known label values exist from the start at 0, so `increase()` and alerts
    // see their first step.
    for result in ["ok", "failed"] {
        let _ = m.resyncs.get_or_create(&label("result", result));
    }
    for dir in ["sent", "received"] {
        let _ = m.snapshot_bytes.get_or_create(&label("direction", dir));
    }
    for how in ["lease", "round"] {
        let _ = m.read_confirmations.get_or_create(&label("by", how));
    }
    let r = admin.registry().sub_registry_with_prefix("cleave_node");
    r.register(
        "requests",
        "Requests answered, by command and outcome (ok or the error code).",
        m.requests.clone(),
    );
    r.register_with_unit(
        "request_duration",
        "Time from a request's dispatch to its reply, by command.",
        Unit::Seconds,
        m.request_seconds.clone(),
    );
    r.register(
        "group_commit_batch_writes",
        "Writes per group-commit batch on the leader.",
        m.batch_writes.clone(),
    );
    r.register_with_unit(
        "group_commit_duration",
        "Time to apply one group-commit batch in Redis on the leader.",
        Unit::Seconds,
        m.batch_seconds.clone(),
    );
    r.register_with_unit(
        "redis_duration",
        "Redis round trips, by operation (apply_batch, apply_replay, positions).",
        Unit::Seconds,
        m.redis_seconds.clone(),
    );
    r.register(
        "catchups",
        "Times a follower caught up from the leader's log after (re)connecting.",
        m.catchups.clone(),
    );
    r.register_with_unit(
        "catchup_duration",
        "Time from a follower's (re)connection to reaching the commit index it was told.",
        Unit::Seconds,
        m.catchup_seconds.clone(),
    );
    r.register(
        "full_resyncs",
        "Full resyncs (snapshot copies) that ended, by result (ok, failed).",
        m.resyncs.clone(),
    );
    r.register_with_unit(
        "full_resync_duration",
        "Duration of full resyncs, successful or not.",
        Unit::Seconds,
        m.resync_seconds.clone(),
    );
    r.register(
        "read_confirmations",
        "Leader: reads (and follower read barriers) that proved leadership, by how (lease: \
         within a read lease; round: a confirmation round with the followers)",
        m.read_confirmations.clone(),
    );
    r.register_with_unit(
        "snapshot",
        "Snapshot payload bytes, by direction (sent as a source, received while resyncing).",
        Unit::Bytes,
        m.snapshot_bytes.clone(),
    );
    r.register(
        "log_entries",
        "Entries in the replication log (sampled every 2 s).",
        m.log_entries.clone(),
    );
    let applied: Gauge = Gauge::default();
    let committed: Gauge = Gauge::default();
    let epoch: Gauge = Gauge::default();
    let in_sync: Gauge = Gauge::default();
    let role = Gauges::default();
    let lag = Gauges::default();
    let lag_seconds = FloatGauges::default();
    let fetch_age = FloatGauges::default();
    r.register(
        "applied_seq",
        "Seq of the last change applied to this node's store.",
        applied.clone(),
    );
    r.register(
        "committed_seq",
        "The commit index: leader, acknowledged by a quorum; follower, last heard.",
        committed.clone(),
    );
    r.register(
        "epoch",
        "The highest epoch this node has seen.",
        epoch.clone(),
    );
    r.register(
        "in_sync",
        "1 when the node serves reads (leader, or follower in sync).",
        in_sync.clone(),
    );
    r.register(
        "role",
        "1 for the node's current role (leader, follower, resyncing, ...).",
        role.clone(),
    );
    r.register(
        "follower_lag_entries",
        "Leader: entries a follower has not acknowledged yet, by follower.",
        lag.clone(),
    );
    r.register(
        "follower_lag_seconds",
        "Leader: how long ago the oldest entry a follower lacks was applied here.",
        lag_seconds.clone(),
    );
    r.register(
        "follower_last_fetch_age_seconds",
        "Leader: seconds since a follower last fetched.",
        fetch_age.clone(),
    );
    let n = node.clone();
    admin.before_scrape(move || {
        let st = n.role_state();
        let at = *n.applied.borrow();
        applied.set(at as i64);
        committed.set(*n.committed.borrow() as i64);
        epoch.set(st.epoch as i64);
        in_sync.set(i64::from(ready(&n).is_ok()));
        role.clear();
        role.get_or_create(&label("role", format!("{:?}", st.role).to_lowercase()))
            .set(1);
        lag.clear();
        lag_seconds.clear();
        fetch_age.clear();
        if st.role == Role::Leader {
            let followers = n.followers.lock().expect("lock").clone();
            for (id, f) in followers {
                let l = label("follower", id);
                lag.get_or_create(&l).set(at.saturating_sub(f.acked) as i64);
                lag_seconds
                    .get_or_create(&l)
                    .set(n.metrics.lag_seconds(f.acked, at));
                fetch_age
                    .get_or_create(&l)
                    .set(f.last_seen.elapsed().as_secs_f64());
            }
        }
    });
    let n = node.clone();
    admin.readiness(move || ready(&n));
}
