//! Leader election with a `coordination.k8s.io/v1` Lease: one operator replica acts, the
//! others wait. No Lease crate supports kube 5, so this follows client-go's rules:
//!
//! - **Observed-time expiry.** A candidate never compares the holder's `renewTime` with its own
//!   clock (clocks differ between machines). It notes *when it first saw* the current record
//!   and takes the Lease only once that same record has stayed unchanged for the whole lease
//!   duration on its own clock.
//! - **Renew deadline.** The holder may act only while its last successful renewal is younger
//!   than the renew deadline, counted from when that renewal was *sent*; the deadline is
//!   shorter than the lease duration. [`Authority`] carries that promise into the reconcile
//!   core, which checks it before every recorded decision and every role change, so the holder
//!   stops acting before any candidate can consider the Lease expired.
//! - **Compare-and-set.** Every write carries the `resourceVersion` that was read, so of two
//!   replicas racing for an expired Lease only one succeeds.
//! - **A deadline on every call.** kube's client has no read timeout by default (watches are
//!   long polls), so a Lease call to a hung API server could wait forever; each one here is
//!   bounded, and [`keep_lease`] revokes the [`Authority`] as soon as the Lease is seen taken or
//!   the renew deadline passes without a successful renewal.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a Lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The API server answered with an error, or could not be reached.
    #[error("Lease {what}: {source}")]
    Kube {
        /// The call.
        what: &'static str,
        /// The failure.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("Lease {what}: no answer within {ms} ms")]
    Timeout {
        /// The call.
        what: &'static str,
        /// The bound.
        ms: u64,
    },
}

/// The Lease's three durations, as client-go names them, checked
/// `1 s <= retry < renew deadline < lease duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a Lease lasts without renewal.
    pub lease: Duration,
    /// How long after a renewal was sent the holder may act.
    pub renew_deadline: Duration,
    /// Time between attempts; also the bound on each Lease call.
    pub retry: Duration,
}

impl LeaseTiming {
    /// Check client-go's ordering of the three durations.
    pub fn new(lease: Duration, renew_deadline: Duration, retry: Duration) -> Result<Self, String> {
        if retry >= Duration::from_secs(1) && retry < renew_deadline && renew_deadline < lease {
            Ok(LeaseTiming {
                lease,
                renew_deadline,
                retry,
            })
        } else {
            Err(format!(
                "Lease timing must satisfy 1 s <= retry ({retry:?}) < renew deadline \
                 ({renew_deadline:?}) < lease duration ({lease:?})"
            ))
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder let it expire): take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and it has not expired.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decide, from the Lease's spec as read, what `me` should do, when this exact record has been
/// seen unchanged for `unchanged_for` on our own clock. Pure.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == me => Decision::Renew,
        Some(h) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Wait {
                    holder: h.to_string(),
                }
            }
        }
    }
}

/// The spec to write after `decision` (`Acquire` or `Renew`).
pub fn next_spec(
    old: Option<&LeaseSpec>,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let old = old.cloned().unwrap_or_default();
    let taking = old.holder_identity.as_deref() != Some(me);
    LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: if taking {
            Some(MicroTime(now))
        } else {
            old.acquire_time.clone()
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            old.lease_transitions.unwrap_or(0) + i32::from(taking && old.holder_identity.is_some()),
        ),
        ..old
    }
}

/// Whether this replica may act now: true until the renew deadline after the last renewal
/// that succeeded, counted from when that renewal was sent. Cloned into every pass.
#[derive(Debug, Clone)]
pub struct Authority {
    valid_until: Arc<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
}

impl Authority {
    /// No authority yet; each renewal grants `renew_deadline` more.
    pub fn new(renew_deadline: Duration) -> Authority {
        Authority {
            valid_until: Arc::default(),
            renew_deadline,
        }
    }

    /// A renewal sent at `sent_at` succeeded.
    pub fn renewed(&self, sent_at: Instant) {
        let mut v = self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = sent_at + self.renew_deadline;
        *v = Some(v.map_or(until, |old| old.max(until)));
    }

    /// The Lease was lost or given up: stop acting at once.
    pub fn revoke(&self) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `Ok` while we may act at `now`; otherwise why not.
    pub fn check_at(&self, now: Instant) -> Result<(), String> {
        match *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Err("this replica does not hold the leader Lease".into()),
            Some(until) if now < until => Ok(()),
            Some(until) => Err(format!(
                "the leader Lease was last renewed more than its renew deadline ({} ms) ago, {} ms past it",
                self.renew_deadline.as_millis(),
                now.duration_since(until).as_millis()
            )),
        }
    }

    /// `Ok` while we may act now (on tokio's clock, which is the system's unless a test
    /// paused it).
    pub fn check(&self) -> Result<(), String> {
        self.check_at(tokio::time::Instant::now().into_std())
    }
}

/// The Lease record as last read, and when we first saw it (observed-time expiry).
#[derive(Debug, Default)]
pub struct Observer(Mutex<Option<(Option<LeaseSpec>, Instant)>>);

impl Observer {
    /// Note the record as read at `now`; how long it has been unchanged on our clock.
    pub fn observe(&self, spec: Option<&LeaseSpec>, now: Instant) -> Duration {
        let mut o = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match o.as_ref() {
            Some((seen, since)) if seen.as_ref() == spec => now.duration_since(*since),
            _ => {
                *o = Some((spec.cloned(), now));
                Duration::ZERO
            }
        }
    }
}

/// One Lease and who we are.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The bound on each API call.
    call_timeout: Duration,
    observed: Arc<Observer>,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaseLock {
    /// The Lease `name` in `api`'s namespace, held for `duration` per renewal.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            call_timeout: Duration::from_secs(2),
            observed: Arc::default(),
        }
    }

    /// Bound each API call by `limit` (default 2 s; [`keep_lease`] uses the retry period).
    pub fn with_call_timeout(mut self, limit: Duration) -> LeaseLock {
        self.call_timeout = limit;
        self
    }

    async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, LeaseError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(LeaseError::Timeout {
                what,
                ms: self.call_timeout.as_millis() as u64,
            }),
            Ok(r) => r.map_err(|source| LeaseError::Kube { what, source }),
        }
    }

    /// Who we are.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Try once to acquire or renew. `Ok(true)`: we hold the Lease now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let now = Timestamp::now();
        match self.call("get", self.api.get_opt(&self.name)).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next_spec(None, &self.identity, self.duration, now)),
                };
                let pp = PostParams::default();
                let created = self.api.create(&pp, &lease);
                match self.call("create", created).await {
                    Ok(_) => Ok(true),
                    Err(LeaseError::Kube {
                        source: kube::Error::Api(e),
                        ..
                    }) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let unchanged_for = self.observed.observe(lease.spec.as_ref(), Instant::now());
                match decide(lease.spec.as_ref(), &self.identity, unchanged_for) {
                    Decision::Wait { holder } => {
                        tracing::debug!(%holder, "the Lease is held by another replica");
                        Ok(false)
                    }
                    Decision::Acquire | Decision::Renew => {
                        lease.spec = Some(next_spec(
                            lease.spec.as_ref(),
                            &self.identity,
                            self.duration,
                            now,
                        ));
                        // `replace` sends the resourceVersion we read: a racing writer gets 409.
                        let pp = PostParams::default();
                        let replaced = self.api.replace(&self.name, &pp, &lease);
                        match self.call("replace", replaced).await {
                            Ok(_) => Ok(true),
                            Err(LeaseError::Kube {
                                source: kube::Error::Api(e),
                                ..
                            }) if e.code == 409 => Ok(false),
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        }
    }

    /// Give the Lease up (on a clean shutdown), so a standby takes over at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        if let Some(mut lease) = self.call("get", self.api.get_opt(&self.name)).await? {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let pp = PostParams::default();
                let replaced = self.api.replace(&self.name, &pp, &lease);
                self.call("replace", replaced).await?;
            }
        }
        Ok(())
    }
}

/// Renew the Lease every retry period while we hold it; return why we stopped holding it.
///
/// Each success extends `authority` by the renew deadline from when it was *sent*. The Lease
/// seen held by another replica revokes `authority` at once; failed or hung renewals are
/// retried until the renew deadline has passed since the last success, then it is revoked.
/// Every attempt (each call bounded by the retry period) beats `beat`, so a stuck loop shows.
pub async fn keep_lease(
    lock: LeaseLock,
    authority: Authority,
    timing: LeaseTiming,
    beat: impl Fn(),
    renewed: impl Fn(bool),
) -> String {
    let lock = lock.with_call_timeout(timing.retry);
    loop {
        tokio::time::sleep(timing.retry).await;
        beat();
        let sent = tokio::time::Instant::now().into_std();
        let attempt = lock.try_acquire_or_renew().await;
        renewed(matches!(attempt, Ok(true)));
        let why = match attempt {
            Ok(true) => {
                authority.renewed(sent);
                continue;
            }
            Ok(false) => "lost the leader Lease to another replica".to_string(),
            Err(e) => match authority.check() {
                Ok(()) => {
                    tracing::warn!(error = %e, "Lease renewal failed; retrying");
                    continue;
                }
                Err(why) => format!("cannot renew the leader Lease ({e}): {why}"),
            },
        };
        authority.revoke();
        return why;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn held(by: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn free_or_missing_leases_are_acquired() {
        assert_eq!(decide(None, "me", S(0)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "me", S(0)),
            Decision::Acquire
        );
    }

    #[test]
    fn our_lease_is_renewed_and_a_live_one_is_respected() {
        assert_eq!(
            decide(Some(&held("me", 0, 15)), "me", S(100)),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&held("other", 0, 15)), "me", S(14)),
            Decision::Wait {
                holder: "other".into()
            }
        );
    }

    #[test]
    fn a_lease_unchanged_for_its_duration_is_taken_over() {
        assert_eq!(
            decide(Some(&held("other", 0, 15)), "me", S(15)),
            Decision::Acquire
        );
    }

    #[test]
    fn expiry_counts_from_when_we_saw_the_record_not_from_its_renew_time() {
        // A renewTime an hour old (the holder's clock is behind ours, or we just started):
        // still only taken after the record stayed the same for a lease duration here.
        let lock = Observer::default();
        let t0 = Instant::now();
        let old = held("other", -3600, 15);
        let seen = lock.observe(Some(&old), t0);
        assert_eq!(
            decide(Some(&old), "me", seen),
            Decision::Wait {
                holder: "other".into()
            }
        );
        let seen = lock.observe(Some(&old), t0 + S(14));
        assert!(matches!(
            decide(Some(&old), "me", seen),
            Decision::Wait { .. }
        ));
        // The holder renews at t0+14: the clock starts again.
        let renewed = held("other", -3590, 15);
        let seen = lock.observe(Some(&renewed), t0 + S(14));
        assert_eq!(seen, Duration::ZERO);
        let seen = lock.observe(Some(&renewed), t0 + S(28));
        assert!(matches!(
            decide(Some(&renewed), "me", seen),
            Decision::Wait { .. }
        ));
        let seen = lock.observe(Some(&renewed), t0 + S(29));
        assert_eq!(decide(Some(&renewed), "me", seen), Decision::Acquire);
    }

    #[test]
    fn authority_lasts_the_renew_deadline_from_when_the_renewal_was_sent() {
        let a = Authority::new(S(10));
        let t0 = Instant::now();
        assert!(a.check_at(t0).unwrap_err().contains("does not hold"));
        a.renewed(t0);
        assert!(a.check_at(t0 + S(9)).is_ok());
        let err = a.check_at(t0 + S(10)).unwrap_err();
        assert!(err.contains("renew deadline (10000 ms)"), "{err}");
        // A late answer to an older renewal never shortens what a newer one granted.
        a.renewed(t0 + S(5));
        a.renewed(t0 + S(1));
        assert!(a.check_at(t0 + S(14)).is_ok());
        assert!(a.check_at(t0 + S(15)).is_err());
        a.revoke();
        assert!(a.check_at(t0 + S(6)).is_err());
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let old = held("other", 0, 15);
        let taken = next_spec(Some(&old), "me", Duration::from_secs(15), at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        let renewed = next_spec(Some(&taken), "me", Duration::from_secs(15), at(25));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(25))));
    }
}
