//! The leader Lease against a mocked API server: every Lease call is bounded, a Lease seen taken
//! revokes the authority at once, a hung API server revokes it at the renew deadline, and a pass
//! that never ends is cancelled. Time is paused, so the waits cost nothing.

use cleave_operator::platform::kubernetes::controller::{ReconcileError, PASS_TIMEOUT};
use cleave_operator::platform::kubernetes::leader_election::{
    keep_lease, Authority, LeaseError, LeaseLock, LeaseTiming,
};
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use kube::Api;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_test::mock::Handle;

mod kube_api;
use kube_api::*;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/cleave-system/leases/cleave-operator";
const S: fn(u64) -> Duration = Duration::from_secs;

fn timing() -> LeaseTiming {
    LeaseTiming::new(S(15), S(10), S(2)).unwrap()
}

fn lock() -> (LeaseLock, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair();
    let client = kube::Client::new(service, "default");
    let lock = LeaseLock::new(
        Api::<Lease>::namespaced(client, "cleave-system"),
        "cleave-operator",
        "me",
        S(15),
    );
    (lock, handle)
}

fn lease(holder: &str, rv: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "cleave-operator", "namespace": "cleave-system", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": "2027-01-15T08:00:00.000000Z"}})
}

/// Take requests and never answer them (an API server that hangs), counting them.
async fn hang(mut handle: Handle<Request<Body>, Response<Body>>, seen: Arc<AtomicU32>) {
    let mut held = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        seen.fetch_add(1, Ordering::Relaxed);
        assert_eq!(req.method(), "GET", "only reads were sent: {}", req.uri());
        held.push(send);
    }
}

#[test]
fn lease_timing_follows_client_go_ordering() {
    assert!(LeaseTiming::new(S(15), S(10), S(2)).is_ok());
    for (l, d, r) in [(15, 15, 2), (15, 10, 10), (10, 15, 2), (15, 10, 0)] {
        assert!(LeaseTiming::new(S(l), S(d), S(r)).is_err(), "{l} {d} {r}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_lease_call_fails_within_its_timeout() {
    let (lock, handle) = lock();
    let seen = Arc::new(AtomicU32::new(0));
    tokio::spawn(hang(handle, seen.clone()));
    let lock = lock.with_call_timeout(S(2));
    let t0 = tokio::time::Instant::now();
    let err = lock.try_acquire_or_renew().await.unwrap_err();
    assert!(
        matches!(
            err,
            LeaseError::Timeout {
                what: "get",
                ms: 2000
            }
        ),
        "{err}"
    );
    assert_eq!(t0.elapsed(), S(2));
    let err = lock.release().await.unwrap_err();
    assert!(matches!(err, LeaseError::Timeout { .. }), "{err}");
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lease_seen_taken_revokes_the_authority_at_once() {
    let (lock, handle) = lock();
    let authority = Authority::new(S(10));
    authority.renewed(Instant::now());
    let script = vec![
        // A renewal: ours, replaced.
        step("GET", LEASE).answer(200, lease("me", "10")),
        step("PUT", LEASE).check(|b| {
            assert_eq!(b["spec"]["holderIdentity"], "me");
            assert_eq!(b["metadata"]["resourceVersion"], "10", "compare-and-set");
        }),
        // Another replica wrote it since (it took it over, or raced us): the PUT conflicts.
        step("GET", LEASE).answer(200, lease("me", "12")),
        step("PUT", LEASE).answer(
            409,
            failure(409, "Conflict", "the object has been modified"),
        ),
    ];
    let server = tokio::spawn(verify(handle, script));
    let beats = AtomicU32::new(0);
    let renewals = AtomicU32::new(0);
    let why = keep_lease(
        lock,
        authority.clone(),
        timing(),
        || {
            beats.fetch_add(1, Ordering::Relaxed);
        },
        |ok| {
            renewals.fetch_add(ok as u32, Ordering::Relaxed);
        },
    )
    .await;
    assert!(why.contains("lost the leader Lease"), "{why}");
    // Well inside the renew deadline of the last renewal, yet no longer allowed to act.
    let err = authority.check().unwrap_err();
    assert!(err.contains("does not hold"), "{err}");
    assert_eq!(beats.load(Ordering::Relaxed), 2);
    assert_eq!(
        renewals.load(Ordering::Relaxed),
        1,
        "one renewal, then the Lease was taken"
    );
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hung_api_server_revokes_the_authority_at_the_renew_deadline() {
    let (lock, handle) = lock();
    let seen = Arc::new(AtomicU32::new(0));
    tokio::spawn(hang(handle, seen.clone()));
    let authority = Authority::new(S(10));
    // Paused tokio time moves; std's clock does not: grant the authority on tokio's clock.
    let t0 = tokio::time::Instant::now();
    authority.renewed(t0.into_std());
    let a = authority.clone();
    let keeper = tokio::spawn(async move { keep_lease(lock, a, timing(), || {}, |_| {}).await });
    // Each attempt: 2 s of sleep, then a GET that hangs for its 2 s timeout.
    let why = keeper.await.unwrap();
    assert!(why.contains("no answer within 2000 ms"), "{why}");
    let elapsed = t0.elapsed();
    assert!(elapsed >= S(10) && elapsed <= S(12), "{elapsed:?}");
    assert!(authority.check_at(t0.into_std() + elapsed).is_err());
    assert!(seen.load(Ordering::Relaxed) >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_never_ends_is_cancelled() {
    let (ctx, handle) = context();
    let seen = Arc::new(AtomicU32::new(0));
    tokio::spawn(hang(handle, seen.clone()));
    let t0 = tokio::time::Instant::now();
    let err = ctx.pass(NS).await.unwrap_err();
    assert!(matches!(err, ReconcileError::PassTimeout { .. }), "{err}");
    assert_eq!(t0.elapsed(), PASS_TIMEOUT);
    assert!(
        ctx.liveness.check().is_ok(),
        "an ended pass is not running any more"
    );
    assert_eq!(
        seen.load(Ordering::Relaxed),
        1,
        "the pass hung on its first list"
    );
}
