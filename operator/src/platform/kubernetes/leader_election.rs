//! Leader election with a `coordination.k8s.io/v1` Lease: one operator replica acts, the
//! others wait. (kube-leader-election does not support kube 5; this is the same algorithm as
//! client-go's: hold the Lease by renewing it, take it over when it expired.)
//!
//! Conflicts are settled by the API server: every write carries the `resourceVersion` that was
//! read, so of two replicas racing for an expired Lease only one succeeds.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use std::time::Duration;

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

/// Decide, from the Lease's spec as read, what `me` should do at `now`. Pure.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == me => Decision::Renew,
        Some(h) => {
            let duration = spec.lease_duration_seconds.unwrap_or(15).max(1) as i64;
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(t) if t + SignedDuration::from_secs(duration) > now => Decision::Wait {
                    holder: h.to_string(),
                },
                _ => Decision::Acquire,
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

/// One Lease and who we are.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
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
        }
    }

    /// Who we are.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Try once to acquire or renew. `Ok(true)`: we hold the Lease now.
    pub async fn try_acquire_or_renew(&self) -> kube::Result<bool> {
        let now = Timestamp::now();
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next_spec(None, &self.identity, self.duration, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => match decide(lease.spec.as_ref(), &self.identity, now) {
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
                    match self
                        .api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            },
        }
    }

    /// Give the Lease up (on a clean shutdown), so a standby takes over at once.
    pub async fn release(&self) -> kube::Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await? {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(())
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

    #[test]
    fn free_or_missing_leases_are_acquired() {
        assert_eq!(decide(None, "me", at(0)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "me", at(0)),
            Decision::Acquire
        );
    }

    #[test]
    fn our_lease_is_renewed_and_a_live_one_is_respected() {
        assert_eq!(
            decide(Some(&held("me", 0, 15)), "me", at(100)),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&held("other", 0, 15)), "me", at(14)),
            Decision::Wait {
                holder: "other".into()
            }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        assert_eq!(
            decide(Some(&held("other", 0, 15)), "me", at(15)),
            Decision::Acquire
        );
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
