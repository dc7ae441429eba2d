//! Forwarding one client request to the right node, with transparent, bounded retries.
//!
//! The request frame goes to the node exactly as the client sent it and the node's reply frame
//! comes back unchanged. Between the two, [`Forwarder::forward`] absorbs what a client should
//! not have to handle — a leader change (`-NOTLEADER`), a follower catching up (`-TRYAGAIN`),
//! a stale table or a cutover (`-MOVED`, `-STALE`, `-READONLY`), a node that is down — by trying
//! again, on another node or after a short backoff, until the `--retry-ms` budget is spent. Then
//! the last error goes to the client.

use crate::metrics::RouterMetrics;
use crate::pool::Pool;
use crate::route::{self, Leaders, Outcome};
use crate::table::Tables;
use cleave_proto::{Command, ErrorCode, Frame, Reply};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First backoff between rounds of attempts; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest backoff between rounds.
pub const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// The least time one attempt gets, however little of the budget is left.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(500);
/// Extra time an attempt gets per MiB it carries (large parts on slow links).
pub const PER_MIB: Duration = Duration::from_secs(1);
/// A read that has not been answered after this long (plus [`HEDGE_PER_MIB`] per MiB) is also
/// sent to the next node, and the first final answer wins. Reads change nothing and every node
/// proves it is current before answering, so either answer is correct; a stopped or
/// partitioned node then costs a read this delay instead of the attempt timeout.
pub const HEDGE_AFTER: Duration = Duration::from_millis(250);
/// Extra hedge delay per MiB a read returns.
pub const HEDGE_PER_MIB: Duration = Duration::from_millis(100);

/// Routes and forwards requests; shared by all connections.
#[derive(Debug)]
pub struct Forwarder {
    tables: Arc<Tables>,
    pool: Pool,
    leaders: Leaders,
    reads: AtomicUsize,
    hedges: AtomicUsize,
    retry: Duration,
    metrics: Arc<RouterMetrics>,
}

/// The reply when the router has no table.
pub fn no_table() -> Frame {
    Reply::new(ErrorCode::TryAgain, "no range table yet").to_frame()
}

impl Forwarder {
    /// A forwarder over `tables` with a retry budget of `retry` per request.
    pub fn new(tables: Arc<Tables>, retry: Duration) -> Forwarder {
        Forwarder {
            tables,
            pool: Pool::new(),
            leaders: Leaders::default(),
            reads: AtomicUsize::new(0),
            hedges: AtomicUsize::new(0),
            retry,
            metrics: Arc::default(),
        }
    }

    /// The served range table.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Leaders learned from `-NOTLEADER` replies.
    pub fn leaders(&self) -> &Leaders {
        &self.leaders
    }

    /// What the router counts.
    pub fn metrics(&self) -> &Arc<RouterMetrics> {
        &self.metrics
    }

    /// The retry budget of one request.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// Forward `frame` (the client's request, decoded as `cmd`) and return the reply to relay.
    /// Used for reads, which need no session; writes go through [`crate::session::Writes`].
    pub async fn forward(&self, cmd: &Command, frame: Frame) -> Frame {
        let Some(path) = cmd.path() else {
            return Reply::new(ErrorCode::Err, "not a routable command").to_frame();
        };
        let write = cmd.is_write();
        let versioned = matches!(cmd, Command::Read(r) if r.version.is_some());
        let mib = payload_bytes(cmd, &frame).div_ceil(1 << 20) as u32;
        let deadline = Instant::now() + self.retry;
        let mut backoff = MIN_BACKOFF;
        let mut next: Option<String> = None;
        let mut tried = 0usize;
        loop {
            let Some(table) = self.tables.current() else {
                return no_table();
            };
            let Some((cluster, members)) = route::owner(&table, path) else {
                return Reply::new(ErrorCode::Err, "range table has no owner for this path")
                    .to_frame();
            };
            let mut addr = match next.take() {
                Some(a) => a,
                None if write => {
                    let learned = self.leaders.get(cluster, table.epoch);
                    route::leader(members, learned.as_deref()).to_string()
                }
                None => {
                    let n = self.reads.fetch_add(1, Ordering::Relaxed);
                    route::spread(members, n, |a| self.pool.is_down(a)).to_string()
                }
            };
            tried += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let limit = attempt_limit(write, remaining, self.retry) + PER_MIB * mib;
            let answer = if write {
                self.attempt(&addr, frame.clone(), limit).await
            } else {
                let other = route::next_node(&members.nodes, &addr).to_string();
                let hedge = HEDGE_AFTER + HEDGE_PER_MIB * mib;
                let (by, answer) = self
                    .hedged_read(&addr, &other, &frame, limit, hedge, versioned)
                    .await;
                addr = by;
                answer
            };
            let (last, outcome) = match answer {
                Ok(reply) => {
                    let outcome = route::classify(&reply, versioned);
                    (reply, outcome)
                }
                Err(e) => {
                    tracing::debug!("{addr}: {e}");
                    let msg = format!("node {addr} unreachable: {e}");
                    (
                        Reply::new(ErrorCode::TryAgain, msg).to_frame(),
                        Outcome::Unreachable,
                    )
                }
            };
            let retry_reason = crate::metrics::retry_reason(&outcome, &last);
            let must_wait = match outcome {
                Outcome::Done => return last,
                Outcome::NotLeader(Some(leader)) if leader != addr => {
                    self.leaders.set(cluster, table.epoch, &leader);
                    next = Some(leader);
                    false
                }
                Outcome::NotLeader(_) | Outcome::Unreachable => {
                    self.leaders.forget(cluster, &addr);
                    next = Some(route::next_node(&members.nodes, &addr).to_string());
                    false
                }
                Outcome::TryAgain if !write => {
                    next = Some(route::next_node(&members.nodes, &addr).to_string());
                    false
                }
                Outcome::TryAgain | Outcome::Backoff | Outcome::Moved => true,
            };
            let round_done = tried >= members.nodes.len().max(1);
            if Instant::now() + backoff >= deadline {
                return last;
            }
            self.metrics.retry(retry_reason);
            if must_wait || round_done {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tried = 0;
            }
        }
    }

    /// A read on `addr`, also sent to `other` if `addr` has not answered after `hedge`; the
    /// first final answer wins (a failure waits for the other attempt). Returns who answered.
    async fn hedged_read(
        &self,
        addr: &str,
        other: &str,
        frame: &Frame,
        limit: Duration,
        hedge: Duration,
        versioned: bool,
    ) -> (String, cleave_proto::Result<Frame>) {
        let first = self.attempt(addr, frame.clone(), limit);
        tokio::pin!(first);
        tokio::select! {
            r = &mut first => return (addr.to_string(), r),
            _ = tokio::time::sleep(hedge) => {}
        }
        if other == addr {
            return (addr.to_string(), first.await);
        }
        self.hedges.fetch_add(1, Ordering::Relaxed);
        let second = self.attempt(other, frame.clone(), limit);
        tokio::pin!(second);
        let last = |r: &cleave_proto::Result<Frame>| matches!(r, Ok(reply) if route::classify(reply, versioned) == Outcome::Done);
        tokio::select! {
            r = &mut first => {
                if last(&r) { (addr.to_string(), r) } else { (other.to_string(), second.await) }
            }
            r = &mut second => {
                if last(&r) { (other.to_string(), r) } else { (addr.to_string(), first.await) }
            }
        }
    }

    /// Reads sent to a second node because the first was slow.
    pub fn hedges(&self) -> usize {
        self.hedges.load(Ordering::Relaxed)
    }

    /// One try on one node: borrow a pooled connection and wait for the reply within `limit`.
    async fn attempt(
        &self,
        addr: &str,
        frame: Frame,
        limit: Duration,
    ) -> cleave_proto::Result<Frame> {
        let pooled = self
            .pool
            .get(addr, limit.min(cleave_proto::client::CONNECT_TIMEOUT))
            .await?;
        match tokio::time::timeout(limit, pooled.client.request(frame)).await {
            Ok(reply) => reply,
            Err(_) => {
                // A node that does not answer in time is likely stopped: reconnect next time.
                self.pool.discard(addr, &pooled);
                Err(cleave_proto::Error::Timeout)
            }
        }
    }
}

/// How long one attempt may take: writes may use what is left of the budget; reads half the
/// budget at most, so a stuck node leaves time to ask another. Never less than [`MIN_ATTEMPT`].
pub fn attempt_limit(write: bool, remaining: Duration, budget: Duration) -> Duration {
    let limit = if write {
        remaining
    } else {
        remaining.min(budget / 2)
    };
    limit.max(MIN_ATTEMPT)
}

/// Bytes an attempt moves: the request's bulk payloads, plus the range a `READ` asks for.
pub fn payload_bytes(cmd: &Command, frame: &Frame) -> u64 {
    let sent: u64 = match frame {
        Frame::Array(items) => items
            .iter()
            .map(|f| f.as_bytes().map_or(0, |b| b.len() as u64))
            .sum(),
        _ => 0,
    };
    let received = match cmd {
        Command::Read(r) => r.length,
        _ => 0,
    };
    sent + received
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_leave_time_for_another_node() {
        let budget = Duration::from_secs(4);
        assert_eq!(attempt_limit(true, budget, budget), budget);
        assert_eq!(attempt_limit(false, budget, budget), budget / 2);
        assert_eq!(
            attempt_limit(false, Duration::from_millis(10), budget),
            MIN_ATTEMPT
        );
    }

    #[test]
    fn payload_counts_sent_and_requested_bytes() {
        let cmd = Command::from_frame(Frame::command(["READ", "/a/b", "0", "100"])).unwrap();
        let frame = cmd.to_frame();
        assert_eq!(payload_bytes(&cmd, &frame), 100 + 4 + 4 + 1 + 3);
    }
}
