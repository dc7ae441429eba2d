//! Read leases: a leader that proved its leadership with a confirmation round at time `t`
//! serves reads without another round until `t + lease`, and the followers whose fetches made
//! that proof promise not to help any newer epoch commit until the lease has surely run out.
//!
//! The argument (also in `docs/replication.md`, "Read leases"):
//! - A round `r` starts at leader time `t`. A follower can only carry `r` in a fetch it sends
//!   after hearing of `r`, so after `t`. Right before sending any fetch, a voting follower
//!   promises its epoch until `send + hold`, with `hold = lease × (1 + CLOCK_DRIFT_BOUND)`.
//! - A node bound by a promise of epoch `e` takes no part in committing for a newer epoch until
//!   the promise ends: as a follower it does not fetch from a newer leader ([`held_until`] in
//!   the follower loop), as a newer leader it does not count acknowledgements
//!   ([`crate::node::Node::record_ack`]). A restarted process cannot know what it promised,
//!   so it starts bound for `hold` in every epoch.
//! - A lease needs the round confirmed by [`quorum`] followers: enough that every commit quorum
//!   of a newer epoch (a leader and `min_in_sync` followers, among the other `replicas − 1`
//!   nodes) includes one of them. That node is the same process, bound by its promise, or a
//!   restarted one, bound from its start. (The old leader may also be in it, but then it knows
//!   of the newer epoch and serves no lease read.)
//! - So no write of a newer epoch is acknowledged before `t + lease` in real time, as long as
//!   no two clocks' rates differ by more than [`CLOCK_DRIFT_BOUND`]. A lease read checks the
//!   lease after the read began and before it reads the commit index: every write it could
//!   miss was acknowledged after the read began, so the read is linearizable.
//!
//! The monotonic clock (`Instant`) keeps counting while a process is stopped (`SIGSTOP`), so a
//! leader frozen past its lease wakes up with the lease gone.

use crate::node::Node;
use std::time::{Duration, Instant};

/// How much faster one node's clock may run than another's: a follower's promise lasts this
/// fraction longer than the lease it backs.
pub const CLOCK_DRIFT_BOUND: f64 = 0.1;

/// An epoch that stands for "every epoch": what a freshly started process is bound to.
const EVERY_EPOCH: u64 = u64::MAX;

/// A leader's lease and the renewal in flight.
#[derive(Debug, Default)]
pub struct LeaseState {
    /// The epoch the lease belongs to.
    epoch: u64,
    /// Reads may skip the confirmation round until then.
    until: Option<Instant>,
    /// A renewal round started at that time, not yet confirmed.
    renewal: Option<(u64, Instant)>,
}

impl LeaseState {
    /// The state for `epoch`: a lease or renewal of another epoch is dropped.
    fn of_epoch(&mut self, epoch: u64) -> &mut LeaseState {
        if self.epoch != epoch {
            *self = LeaseState {
                epoch,
                ..LeaseState::default()
            };
        }
        self
    }
}

/// A node's promise not to help a newer epoch commit before `until`.
#[derive(Debug, Clone, Copy)]
pub struct Promise {
    epoch: u64,
    until: Instant,
}

impl Promise {
    /// The promise of a process that just started: bound in every epoch for `hold`.
    pub fn at_start(hold: Duration) -> Promise {
        Promise {
            epoch: EVERY_EPOCH,
            until: Instant::now() + hold,
        }
    }
}

/// Followers that must confirm a round for it to back a lease, with `k = min_in_sync` and `n`
/// replicas: at least `k` (what any read needs) and at least `n − 1 − k`, so that no `k + 1`
/// of the other `n − 1` nodes (a newer epoch's leader and quorum) miss all of them. `None`: no
/// lease (the size is unknown, or nothing is acknowledged by followers at all).
pub fn quorum(min_in_sync: usize, replicas: usize) -> Option<usize> {
    if replicas == 0 || min_in_sync == 0 {
        return None;
    }
    Some(min_in_sync.max(replicas.saturating_sub(1 + min_in_sync)))
}

/// The lease quorum of this node, or `None` when it takes no lease.
fn lease_quorum(node: &Node) -> Option<usize> {
    if node.config.read_lease.is_zero() {
        return None;
    }
    quorum(node.config.min_in_sync, node.config.replicas)
}

/// How long a follower's promise lasts past its fetch.
pub fn hold(lease: Duration) -> Duration {
    lease.mul_f64(1.0 + CLOCK_DRIFT_BOUND)
}

/// Follower, right before sending a fetch that counts: promise `epoch` for a hold from now.
pub fn promise(node: &Node, epoch: u64) {
    if node.config.read_lease.is_zero() {
        return;
    }
    let until = Instant::now() + hold(node.config.read_lease);
    let mut p = node.promise.lock().expect("lock");
    if p.epoch == epoch || p.until <= Instant::now() {
        *p = Promise {
            epoch,
            until: p.until.max(until),
        };
    }
}

/// Until when this node must not help `epoch` commit (a promise to an older epoch, or the
/// start-up hold), if that is still in the future.
pub fn held_until(node: &Node, epoch: u64) -> Option<Instant> {
    let p = *node.promise.lock().expect("lock");
    let binds = p.epoch == EVERY_EPOCH || p.epoch < epoch;
    (binds && Instant::now() < p.until).then_some(p.until)
}

/// Leader: the commit index, if the lease of `epoch` covers now and the epoch's first entry is
/// committed. Starts a renewal round when less than half the lease is left.
pub fn read_index(node: &Node, epoch: u64, epoch_start: u64) -> Option<u64> {
    lease_quorum(node)?;
    let lease = node.config.read_lease;
    let now = Instant::now();
    {
        let mut guard = node.lease.lock().expect("lock");
        let s = guard.of_epoch(epoch);
        let until = s.until.filter(|u| now < *u)?;
        let stale_renewal = s.renewal.is_some_and(|(_, at)| now - at > lease);
        if until - now < lease / 2 && (s.renewal.is_none() || stale_renewal) {
            s.renewal = Some((node.start_round(), now));
        }
    }
    // Read after the lease check: it covers every write acknowledged before the check.
    let index = *node.committed.borrow();
    (index >= epoch_start).then_some(index)
}

/// Leader: round `round`, started at `started`, was confirmed by `min_in_sync` followers in
/// `epoch`. It backs the lease once [`quorum`] followers carried it (maybe later, on an ack).
pub fn round_confirmed(node: &Node, epoch: u64, round: u64, started: Instant) {
    let Some(q) = lease_quorum(node) else { return };
    let backed = node.confirmed(round) >= q;
    let mut guard = node.lease.lock().expect("lock");
    let s = guard.of_epoch(epoch);
    if backed {
        let until = started + node.config.read_lease;
        s.until = Some(s.until.map_or(until, |u| u.max(until)));
        if s.renewal.is_some_and(|(r, _)| r <= round) {
            s.renewal = None;
        }
    } else if s.renewal.is_none_or(|(r, _)| r < round) {
        s.renewal = Some((round, started));
    }
}

/// Leader, on every acknowledgement: a renewal round carried by enough followers backs the
/// lease.
pub fn on_ack(node: &Node, epoch: u64) {
    let Some(q) = lease_quorum(node) else { return };
    let renewal = node.lease.lock().expect("lock").renewal;
    if let Some((round, started)) = renewal {
        if node.confirmed(round) >= q {
            round_confirmed(node, epoch, round, started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_backed_by_enough_followers_to_meet_every_newer_quorum() {
        // (min_in_sync, replicas) -> followers that must back a lease.
        assert_eq!(quorum(1, 3), Some(1));
        assert_eq!(quorum(2, 3), Some(2));
        assert_eq!(quorum(2, 5), Some(2));
        assert_eq!(quorum(1, 5), Some(3));
        assert_eq!(quorum(1, 4), Some(2));
        assert_eq!(quorum(1, 2), Some(1));
        assert_eq!(quorum(0, 3), None, "no follower acknowledges: no lease");
        assert_eq!(quorum(1, 0), None, "size unknown: no lease");
        // Exhaustively: every (k + 1)-subset of the other n - 1 nodes meets every backing set.
        for n in 2..9usize {
            for k in 1..n {
                let q = quorum(k, n).unwrap();
                assert!(q >= k && q < n, "k={k} n={n} q={q}");
                assert!(
                    q + k + 1 > n - 1,
                    "k={k} n={n}: a newer quorum could miss the lease"
                );
            }
        }
    }

    #[test]
    fn a_promise_outlasts_its_lease_by_the_drift_bound() {
        assert_eq!(hold(Duration::from_secs(1)), Duration::from_millis(1100));
        assert_eq!(hold(Duration::ZERO), Duration::ZERO);
    }
}
