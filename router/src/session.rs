//! Exactly-once, in-order writes: sessions, the per-connection order of requests, and the write
//! pipeline of one client connection.
//!
//! - Every client connection gets a prefix unique to this router process (a random router id
//!   made at start and a connection counter). Its writes to cluster `C` form the session
//!   `<prefix>.<C>`, numbered from 1: each write is wrapped as `REQ session seq <write>` when it
//!   is first routed and keeps that tag for every retry, wherever the retry goes. The leader
//!   applies `(session, seq)` only if `seq` follows the last one it applied, and answers a
//!   repeated one with its first outcome (see `docs/replication.md`), so a retry never applies a
//!   write twice and a later write never overtakes an earlier one.
//! - [`Order`] decides when a connection's next request may start (as with Redis, requests
//!   take effect in the order they were sent): consecutive writes to one cluster are pipelined,
//!   consecutive reads run concurrently, and anything else waits until what is in flight has
//!   been answered.
//! - [`Writes`] sends a connection's writes to one cluster in order over one pooled socket and
//!   retries in order: when the oldest unanswered write gets a retriable reply, it and every
//!   later one are sent again, oldest first, to wherever the oldest one must go next.

use crate::forward::{attempt_limit, no_table, Forwarder, MAX_BACKOFF, MIN_BACKOFF};
use crate::pool::Pooled;
use crate::route::{self, Outcome};
use bytes::Bytes;
use cleave_proto::{ErrorCode, Frame, RangeTable, Reply};
use futures::FutureExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Writes of one session in flight at most: the node keeps the outcomes of the last 256 seqs of
/// a session, so every write the router may still retry must be among them.
pub const MAX_SESSION_WRITES: usize = 256;

/// A router id for session prefixes: random, so that no two router processes (or restarts of
/// one) share session ids.
pub fn router_id() -> u64 {
    rand::random::<u64>()
}

/// The session prefix of connection number `conn` of router `router`.
pub fn prefix(router: u64, conn: u64) -> String {
    format!("{router:016x}-{conn:x}")
}

/// The session id of `prefix` for `cluster`, generation `gen` (a new generation starts when the
/// router gave up on a write whose outcome it does not know). Cluster names that would make an
/// invalid id are replaced by a hash of the name.
pub fn session_id(prefix: &str, gen: u64, cluster: &str) -> String {
    let mut id = if gen == 0 {
        format!("{prefix}.{cluster}")
    } else {
        format!("{prefix}-{gen:x}.{cluster}")
    };
    if !cleave_proto::command::repl::valid_session(&id) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cluster.hash(&mut h);
        id.truncate(id.len() - cluster.len());
        id.push_str(&format!("h{:016x}", h.finish()));
    }
    id
}

/// `REQ session seq <request...>`, built without touching the request's payload (the same frame
/// as `cleave_proto::command::repl::tag_frame`, without copying the session id).
pub fn tag(session: &Bytes, seq: u64, request: Frame) -> Frame {
    let mut items = match request {
        Frame::Array(items) => items,
        other => vec![other],
    };
    let mut tagged = Vec::with_capacity(items.len() + 3);
    tagged.push(Frame::Bulk(Bytes::from_static(b"REQ")));
    tagged.push(Frame::Bulk(session.clone()));
    tagged.push(Frame::Bulk(Bytes::from(seq.to_string())));
    tagged.append(&mut items);
    Frame::Array(tagged)
}

/// Give a tagged request (`REQ session seq ...`) another session and seq.
fn retag(frame: &mut Frame, session: &Bytes, seq: u64) {
    if let Frame::Array(items) = frame {
        if items.len() >= 3 {
            items[1] = Frame::Bulk(session.clone());
            items[2] = Frame::Bulk(Bytes::from(seq.to_string()));
        }
    }
}

/// What a request is, for ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Answered by the router itself (handshake, table admin, errors): never waits.
    Local,
    /// A read: runs alongside other reads.
    Read,
    /// A write to the named cluster: pipelined behind writes to the same cluster.
    Write(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    Reads,
    Writes,
}

/// The ordering rule of one connection. Requests start in the order they arrived; what is in
/// flight is always all reads or all writes to one cluster, so a request that is of another
/// kind waits until everything in flight has been answered:
///
/// - a read starts if no write is in flight (it sees every earlier write);
/// - a write starts if no read is in flight, the writes in flight (if any) go to the same
///   cluster, and fewer than [`MAX_SESSION_WRITES`] are in flight.
#[derive(Debug)]
pub struct Order {
    active: usize,
    kind: Active,
    cluster: String,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            active: 0,
            kind: Active::Reads,
            cluster: String::new(),
        }
    }
}

impl Order {
    /// Whether a request of `kind` may start now.
    pub fn admits(&self, kind: Kind<'_>) -> bool {
        match kind {
            Kind::Local => true,
            _ if self.active == 0 => true,
            Kind::Read => self.kind == Active::Reads,
            Kind::Write(c) => {
                self.kind == Active::Writes && self.cluster == c && self.active < MAX_SESSION_WRITES
            }
        }
    }

    /// A request of `kind` started (it must have been admitted).
    pub fn start(&mut self, kind: Kind<'_>) {
        match kind {
            Kind::Local => return,
            Kind::Read => self.kind = Active::Reads,
            Kind::Write(c) => {
                if self.active == 0 || self.kind != Active::Writes {
                    self.cluster.clear();
                    self.cluster.push_str(c);
                }
                self.kind = Active::Writes;
            }
        }
        self.active += 1;
    }

    /// A read or write that started has been answered.
    pub fn finish(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Reads or writes in flight.
    pub fn active(&self) -> usize {
        self.active
    }
}

#[derive(Debug)]
struct Session {
    id: Bytes,
    gen: u64,
    next: u64,
}

#[derive(Debug)]
struct Write {
    /// The tagged request, kept for retries.
    frame: Frame,
    /// Its seq in the pipeline's session (the tag's seq).
    seq: u64,
    /// The hash of its path, to route it afresh.
    hash: u32,
    /// Where the client's reply goes.
    reply: oneshot::Sender<Frame>,
    /// The end of its retry budget.
    deadline: Instant,
    /// Extra time per attempt for its size.
    extra: Duration,
    /// The reply to its attempt on the current upstream, once sent there.
    rx: Option<oneshot::Receiver<cleave_proto::Result<Frame>>>,
    /// How long to wait for that reply.
    attempt_deadline: Instant,
}

/// Where an attempt went: a node of a cluster, under a table.
#[derive(Debug)]
struct Target {
    addr: String,
    table: Arc<RangeTable>,
    cluster: String,
}

/// The node the writes in flight were sent to, and the socket.
#[derive(Debug)]
struct Upstream {
    target: Target,
    pooled: Pooled,
}

/// The write pipeline of one client connection. Its writes in flight all belong to one session
/// ([`Order`] sees to that); they are sent in order over one upstream socket, and answered (to
/// the connection's reply queue) as the oldest one's reply comes back.
#[derive(Debug)]
pub struct Writes {
    prefix: String,
    /// Per cluster written to (few: a linear scan beats hashing the name per write).
    sessions: Vec<(String, Session)>,
    /// The cluster whose session the writes in flight belong to.
    lane: String,
    inflight: VecDeque<Write>,
    /// How many of `inflight` (from the front) were sent to `up`.
    sent: usize,
    up: Option<Upstream>,
    /// Where the oldest write must go next (a redirect, or the next node after a failure).
    next: Option<String>,
    /// No attempt before this (backoff).
    wait_until: Option<Instant>,
    backoff: Duration,
    tried: usize,
    /// The oldest write was answered `-MOVED`: re-tag the pipeline when it is next routed.
    moved: bool,
}

impl Writes {
    /// The pipeline of the connection with session prefix `prefix`.
    pub fn new(prefix: String) -> Writes {
        Writes {
            prefix,
            sessions: Vec::new(),
            lane: String::new(),
            inflight: VecDeque::new(),
            sent: 0,
            up: None,
            next: None,
            wait_until: None,
            backoff: MIN_BACKOFF,
            tried: 0,
            moved: false,
        }
    }

    /// Whether writes wait for an answer (then [`Writes::step`] must be driven).
    pub fn busy(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// Tag `frame` (a write to `cluster`, whose path hashes to `hash`) with the next seq of the
    /// connection's session for `cluster` and queue it. The returned receiver gets the reply.
    pub fn push(
        &mut self,
        cluster: &str,
        hash: u32,
        frame: Frame,
        budget: Duration,
        extra: Duration,
    ) -> oneshot::Receiver<Frame> {
        // Every write in flight belongs to the pipeline's session: after a `-MOVED` the lane
        // may already be the cluster the oldest write moved to while [`Order`] still admits
        // writes routed to the old one; they join the lane (its leader refuses what it does not
        // own, and they are re-tagged in turn).
        if self.inflight.is_empty() {
            self.lane.clear();
            self.lane.push_str(cluster);
        }
        let lane = std::mem::take(&mut self.lane);
        let i = self.session_index(&lane);
        self.lane = lane;
        let session = &mut self.sessions[i].1;
        let seq = session.next;
        session.next += 1;
        let frame = tag(&session.id, seq, frame);
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        self.inflight.push_back(Write {
            frame,
            seq,
            hash,
            reply,
            deadline: now + budget,
            extra,
            rx: None,
            attempt_deadline: now,
        });
        rx
    }

    /// The index of this connection's session for `cluster`, made on first use.
    fn session_index(&mut self, cluster: &str) -> usize {
        match self.sessions.iter().position(|(c, _)| c == cluster) {
            Some(i) => i,
            None => {
                let s = Session {
                    id: Bytes::from(session_id(&self.prefix, 0, cluster)),
                    gen: 0,
                    next: 1,
                };
                self.sessions.push((cluster.to_string(), s));
                self.sessions.len() - 1
            }
        }
    }

    /// The oldest write was answered `-MOVED`: none of the writes in flight was applied, or
    /// ever will be, where they were sent. (The leader checks a write's session before its
    /// hash: a write applied earlier would have been answered with its first outcome; a
    /// refused one is not logged, and every later write of the session waits behind it; a
    /// cluster never takes back a range after the table that moved it is committed, and the
    /// router only ever serves committed tables.) So their seqs are handed back to the lane's
    /// session, and the whole pipeline is tagged afresh for the cluster that owns the oldest
    /// write under the table served now, oldest first: each write still applies at most once,
    /// and in order.
    ///
    /// Done when the pipeline is routed again (`owner` is the oldest write's cluster under the
    /// table used for that attempt), so tags and destination always agree.
    fn retag_after_moved(&mut self, owner: &str) {
        self.moved = false;
        let Some(oldest) = self.inflight.front().map(|w| w.seq) else {
            return;
        };
        let lane = self.session_index(&self.lane.clone());
        self.sessions[lane].1.next = oldest;
        let i = self.session_index(owner);
        let session = &mut self.sessions[i].1;
        for w in &mut self.inflight {
            w.seq = session.next;
            session.next += 1;
            retag(&mut w.frame, &session.id, w.seq);
        }
        self.lane = owner.to_string();
    }

    /// Make progress: route and send what is unsent, then wait for the oldest write's reply and
    /// answer it (and every later one already back), or arrange its retry. Cancel-safe: the
    /// state is updated after every completed await, so a cancelled step loses nothing.
    pub async fn step(&mut self, fwd: &Forwarder) {
        if self.inflight.is_empty() {
            return std::future::pending().await;
        }
        if let Some(t) = self.wait_until {
            tokio::time::sleep_until(t.into()).await;
            self.wait_until = None;
        }
        if self.sent == 0 && !self.reuse_upstream(fwd) {
            let Some(table) = fwd.tables().current() else {
                return self.give_up(no_table());
            };
            let Some((range, members)) = table.route(self.inflight[0].hash) else {
                let e = Reply::new(ErrorCode::Err, "range table has no owner for this path");
                return self.give_up(e.to_frame());
            };
            let cluster = range.cluster.clone();
            if self.moved {
                self.retag_after_moved(&cluster);
            }
            let addr = match &self.next {
                Some(a) => a.clone(),
                None => {
                    let learned = fwd.leaders().get(&cluster, table.epoch);
                    route::leader(members, learned.as_deref()).to_string()
                }
            };
            let front = &self.inflight[0];
            let remaining = front.deadline.saturating_duration_since(Instant::now());
            let limit = attempt_limit(true, remaining, fwd.retry()) + front.extra;
            let connect = limit.min(cleave_proto::client::CONNECT_TIMEOUT);
            // A node that is stopped accepts the TCP connection but never answers the
            // handshake: a newer table naming another leader ends the wait here too.
            let moved = leader_moved(fwd, cluster.clone(), addr.clone(), table.epoch);
            let got = tokio::select! {
                got = fwd.pool().get(&addr, connect) => got,
                leader = moved => {
                    let last = Reply::new(ErrorCode::NotLeader, leader.clone()).to_frame();
                    let target = Target { addr, table, cluster };
                    return self.failed(fwd, target, Outcome::NotLeader(Some(leader)), last);
                }
            };
            match got {
                Ok(pooled) => {
                    self.next = None;
                    self.up = Some(Upstream {
                        target: Target {
                            addr,
                            table,
                            cluster,
                        },
                        pooled,
                    });
                }
                Err(e) => {
                    let last = unreachable(&addr, &e);
                    let target = Target {
                        addr,
                        table,
                        cluster,
                    };
                    return self.failed(fwd, target, Outcome::Unreachable, last);
                }
            }
        }
        let Some(up) = self.up.as_ref() else {
            return;
        };
        while self.sent < self.inflight.len() {
            let w = &mut self.inflight[self.sent];
            match up.pooled.client.send(w.frame.clone()).await {
                Ok(rx) => {
                    let now = Instant::now();
                    let remaining = w.deadline.saturating_duration_since(now);
                    w.attempt_deadline =
                        now + attempt_limit(true, remaining, fwd.retry()) + w.extra;
                    w.rx = Some(rx);
                    self.sent += 1;
                }
                Err(e) => {
                    let up = self.up.take().expect("upstream");
                    let last = unreachable(&up.target.addr, &e);
                    return self.failed(fwd, up.target, Outcome::Unreachable, last);
                }
            }
        }
        let moved = leader_moved(
            fwd,
            up.target.cluster.clone(),
            up.target.addr.clone(),
            up.target.table.epoch,
        );
        let front = &mut self.inflight[0];
        let deadline = front.attempt_deadline;
        let rx = front.rx.as_mut().expect("sent");
        let first = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), rx) => r,
            leader = moved => {
                let up = self.up.take().expect("upstream");
                let last = Reply::new(
                    ErrorCode::NotLeader,
                    format!("{leader} (the table moved the leadership)"),
                )
                .to_frame();
                return self.failed(fwd, up.target, Outcome::NotLeader(Some(leader)), last);
            }
        };
        let mut reply = match first {
            Ok(r) => r,
            Err(_) => {
                // A node that does not answer in time is likely stopped: reconnect next time.
                let up = self.up.take().expect("upstream");
                fwd.pool().discard(&up.target.addr, &up.pooled);
                let last = unreachable(&up.target.addr, &cleave_proto::Error::Timeout);
                return self.failed(fwd, up.target, Outcome::Unreachable, last);
            }
        };
        // Answer the oldest write, then every later one whose reply is already here.
        loop {
            let (frame, outcome) = match reply {
                Ok(Ok(frame)) => {
                    let outcome = route::classify(&frame, false);
                    (frame, outcome)
                }
                Ok(Err(e)) => (unreachable(self.up_addr(), &e), Outcome::Unreachable),
                Err(_) => (
                    unreachable(self.up_addr(), &cleave_proto::Error::Closed),
                    Outcome::Unreachable,
                ),
            };
            if outcome != Outcome::Done {
                let up = self.up.take().expect("upstream");
                return self.failed(fwd, up.target, outcome, frame);
            }
            let w = self.inflight.pop_front().expect("front");
            self.sent -= 1;
            let _ = w.reply.send(frame);
            self.backoff = MIN_BACKOFF;
            self.tried = 0;
            let Some(next) = self.inflight.front_mut().filter(|_| self.sent > 0) else {
                return;
            };
            match next.rx.as_mut().expect("sent").now_or_never() {
                Some(r) => reply = r,
                None => return,
            }
        }
    }

    fn up_addr(&self) -> &str {
        self.up.as_ref().map_or("?", |u| u.target.addr.as_str())
    }

    /// Keep the upstream of the last writes if nothing changed since: same table, same
    /// cluster, no redirect pending, socket alive.
    fn reuse_upstream(&mut self, fwd: &Forwarder) -> bool {
        let Some(up) = &self.up else {
            return false;
        };
        let keep = self.next.is_none()
            && !up.pooled.client.is_closed()
            && fwd.tables().current().is_some_and(|t| {
                Arc::ptr_eq(&t, &up.target.table)
                    && t.route(self.inflight[0].hash)
                        .is_some_and(|(r, _)| r.cluster == up.target.cluster)
            });
        if !keep {
            self.up = None;
        }
        keep
    }

    /// The oldest write failed at `up` with a retriable `outcome`: send it and every later one
    /// again (each keeps its tag), after a backoff if needed, or give up when its budget is
    /// spent.
    fn failed(&mut self, fwd: &Forwarder, up: Target, outcome: Outcome, last: Frame) {
        let retry_reason = crate::metrics::retry_reason(&outcome, &last);
        self.sent = 0;
        for w in &mut self.inflight {
            w.rx = None;
        }
        let nodes = up
            .table
            .clusters
            .get(&up.cluster)
            .map(|m| m.nodes.as_slice())
            .unwrap_or_default();
        let must_wait = match outcome {
            Outcome::NotLeader(Some(leader)) if leader != up.addr => {
                fwd.leaders().set(&up.cluster, up.table.epoch, &leader);
                self.next = Some(leader);
                false
            }
            Outcome::NotLeader(_) | Outcome::Unreachable => {
                fwd.leaders().forget(&up.cluster, &up.addr);
                self.next = Some(route::next_node(nodes, &up.addr).to_string());
                false
            }
            Outcome::Moved => {
                self.moved = true;
                self.next = None;
                true
            }
            Outcome::TryAgain | Outcome::Backoff | Outcome::Done => {
                self.next = None;
                true
            }
        };
        self.tried += 1;
        let round_done = self.tried >= nodes.len().max(1);
        let now = Instant::now();
        if now + self.backoff >= self.inflight[0].deadline {
            return self.give_up(last);
        }
        fwd.metrics().retry(retry_reason);
        if must_wait || round_done {
            self.wait_until = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            self.tried = 0;
        }
    }

    /// The oldest write's budget is spent: answer it with `last`, and every later write of its
    /// session too (the node refuses them until the oldest is applied, which the router no
    /// longer knows). Later writes to that cluster start a new session.
    fn give_up(&mut self, last: Frame) {
        for w in self.inflight.drain(..) {
            let _ = w.reply.send(last.clone());
        }
        self.sent = 0;
        self.up = None;
        self.next = None;
        self.wait_until = None;
        self.backoff = MIN_BACKOFF;
        self.tried = 0;
        if let Some((_, s)) = self.sessions.iter_mut().find(|(c, _)| *c == self.lane) {
            s.gen += 1;
            s.id = Bytes::from(session_id(&self.prefix, s.gen, &self.lane));
            s.next = 1;
        }
    }

    /// The session id and the next seq of this connection's writes to `cluster` (for tests).
    pub fn session(&self, cluster: &str) -> Option<(String, u64)> {
        self.sessions
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, s)| (String::from_utf8_lossy(&s.id).into_owned(), s.next))
    }
}

/// Completes with the new leader once a table newer than `epoch` names another leader than
/// `addr` for `cluster` (a failover while a write waits on, or connects to, the old one).
async fn leader_moved(fwd: &Forwarder, cluster: String, addr: String, epoch: u64) -> String {
    let mut tables = fwd.tables().subscribe();
    loop {
        if let Some(leader) = new_leader(fwd, &cluster, &addr, epoch) {
            return leader;
        }
        if tables.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The leader a table newer than `epoch` names for `cluster`, when it is not `addr`.
fn new_leader(fwd: &Forwarder, cluster: &str, addr: &str, epoch: u64) -> Option<String> {
    let table = fwd.tables().current().filter(|t| t.epoch > epoch)?;
    let leader = table.clusters.get(cluster)?.leader.clone()?;
    (leader != addr).then_some(leader)
}

fn unreachable(addr: &str, e: &cleave_proto::Error) -> Frame {
    tracing::debug!("{addr}: {e}");
    Reply::new(ErrorCode::TryAgain, format!("node {addr} unreachable: {e}")).to_frame()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_proto::command::repl::{tag_frame, valid_session, MAX_SESSION_LEN};

    #[test]
    fn tags_match_the_protocol() {
        let req = Frame::command(["INSERT", "/a/b", "data"]);
        assert_eq!(
            tag(&Bytes::from("s.c"), 42, req.clone()),
            tag_frame("s.c", 42, req)
        );
    }

    #[test]
    fn session_ids_are_valid_unique_and_bounded() {
        let a = prefix(u64::MAX, u64::MAX);
        let b = prefix(u64::MAX, 1);
        assert_ne!(a, b);
        let id = session_id(&a, 0, "fc-1");
        assert!(valid_session(&id), "{id}");
        assert!(id.ends_with(".fc-1"));
        assert_ne!(
            session_id(&a, 1, "fc-1"),
            id,
            "a new generation is a new session"
        );
        assert_ne!(session_id(&a, 0, "fc-2"), id);
        let long = "c".repeat(MAX_SESSION_LEN);
        for cluster in [long.as_str(), "bad name/é"] {
            let id = session_id(&a, u64::MAX, cluster);
            assert!(valid_session(&id), "{id}");
        }
        assert_ne!(router_id(), router_id(), "router ids are random");
    }

    #[test]
    fn reads_run_together_and_writes_wait_for_them() {
        let mut o = Order::default();
        assert!(o.admits(Kind::Read));
        o.start(Kind::Read);
        o.start(Kind::Read);
        assert!(o.admits(Kind::Read));
        assert!(!o.admits(Kind::Write("a")));
        assert!(o.admits(Kind::Local));
        o.finish();
        assert!(!o.admits(Kind::Write("a")), "one read still in flight");
        o.finish();
        assert!(o.admits(Kind::Write("a")));
    }

    #[test]
    fn writes_pipeline_per_cluster_and_reads_wait_for_them() {
        let mut o = Order::default();
        o.start(Kind::Write("a"));
        assert!(o.admits(Kind::Write("a")));
        assert!(!o.admits(Kind::Write("b")), "another cluster waits");
        assert!(!o.admits(Kind::Read), "a read waits for earlier writes");
        o.start(Kind::Write("a"));
        o.finish();
        assert!(!o.admits(Kind::Read));
        o.finish();
        assert!(o.admits(Kind::Read));
        assert!(o.admits(Kind::Write("b")));
        o.start(Kind::Write("b"));
        assert!(!o.admits(Kind::Write("a")));
    }

    #[test]
    fn at_most_a_session_window_of_writes_in_flight() {
        let mut o = Order::default();
        for _ in 0..MAX_SESSION_WRITES {
            assert!(o.admits(Kind::Write("a")));
            o.start(Kind::Write("a"));
        }
        assert!(!o.admits(Kind::Write("a")));
        o.finish();
        assert!(o.admits(Kind::Write("a")));
        assert_eq!(o.active(), MAX_SESSION_WRITES - 1);
    }
}
