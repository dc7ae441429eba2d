//! The controller's call sequence against a mocked API server (kube-rs's tower-test
//! "ApiServerVerifier" pattern): every request the reconcile makes is checked, in order, and
//! answered by a script. No API server runs; nothing here touches a network.

use cleave_operator::platform::kubernetes::controller::{
    error_policy, reconcile, ReconcileError, FINALIZER, REQUEUE_BUSY,
};
use kube::runtime::controller::Action;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

mod kube_api;
use kube_api::*;

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_waits() {
    let (ctx, handle) = context();
    let script = vec![step("PATCH", &format!("{CRD}/fileclusters/fc-a"))
        .check(|b| {
            let ops = b.as_array().expect("a JSON patch");
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "add" && op["value"] == json!([FINALIZER])),
                "{b}"
            );
        })
        .answer(200, serde_json::to_value(fc(true, false)).unwrap())];
    let server = tokio::spawn(verify(handle, script));
    let action = reconcile(Arc::new(fc(false, false)), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_new_cluster_is_applied_then_its_status_published() {
    let (ctx, handle) = context();
    let f = serde_json::to_value(fc(true, false)).unwrap();
    let r = serde_json::to_value(hr("fc-a")).unwrap();
    let script = vec![
        step("GET", &format!("{CRD}/fileclusters"))
            .answer(200, list("FileClusterList", vec![f.clone()])),
        step("GET", &format!("{CRD}/hashranges"))
            .answer(200, list("HashRangeList", vec![r.clone()])),
        step(
            "GET",
            "/api/v1/namespaces/store/configmaps/cleave-range-table",
        )
        .answer(404, not_found()),
        step("PATCH", "/api/v1/namespaces/store/configmaps/fc-a-config")
            .query(APPLY)
            .check(|b| {
                applied_by_us(b);
                assert!(b["data"]["node.yaml"]
                    .as_str()
                    .unwrap()
                    .contains("min-in-sync: 1"));
                assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "uid-a");
            }),
        step("PATCH", "/api/v1/namespaces/store/services/fc-a")
            .query(APPLY)
            .check(|b| {
                applied_by_us(b);
                assert_eq!(b["spec"]["clusterIP"], "None");
            }),
        step("PATCH", "/apis/apps/v1/namespaces/store/statefulsets/fc-a")
            .query(APPLY)
            .check(|b| {
                applied_by_us(b);
                assert_eq!(b["spec"]["replicas"], 3);
                assert_eq!(b["spec"]["serviceName"], "fc-a");
            }),
        step(
            "PATCH",
            "/apis/policy/v1/namespaces/store/poddisruptionbudgets/fc-a",
        )
        .query(APPLY)
        .check(applied_by_us),
        // Observe: no pods yet, no routers.
        step("GET", "/api/v1/namespaces/store/pods")
            .query(NODE_PODS)
            .answer(200, list("PodList", vec![])),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, list("PodList", vec![])),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(NODE_PODS)
            .answer(200, list("PodList", vec![])),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, list("PodList", vec![])),
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .check(|b| {
                assert_eq!(b["kind"], "FileCluster");
                let conds = b["status"]["conditions"].as_array().unwrap();
                let get = |t: &str| conds.iter().find(|c| c["type"] == t).unwrap().clone();
                assert_eq!(get("Ready")["status"], "False");
                assert_eq!(get("Progressing")["status"], "True");
                assert_eq!(get("Progressing")["message"], "no nodes yet");
                assert_eq!(get("Ready")["observedGeneration"], 2);
                assert_eq!(b["status"]["observedGeneration"], 2);
            })
            .answer(200, f.clone()),
        step("PATCH", &format!("{CRD}/hashranges/all/status"))
            .query(APPLY)
            .check(|b| {
                assert_eq!(b["kind"], "HashRange");
                assert_eq!(b["status"]["observedGeneration"], 1);
                // spec.cluster is fc-a, but no router table is committed yet: nothing serves
                // the range, and the status must not claim otherwise.
                assert!(b["status"].get("servedBy").is_none(), "{b}");
                let conds = b["status"]["conditions"].as_array().unwrap();
                let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
                assert_eq!(
                    (&ready["status"], &ready["reason"]),
                    (&json!("False"), &json!("NotServed"))
                );
            })
            .answer(200, r.clone()),
    ];
    let server = tokio::spawn(verify(handle, script));
    let action = reconcile(Arc::new(fc(true, false)), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_BUSY));
    server.await.unwrap();
}

#[tokio::test]
async fn an_invalid_set_changes_nothing_reports_and_waits_for_a_change() {
    let (ctx, handle) = context();
    let f = serde_json::to_value(fc(true, false)).unwrap();
    let script = vec![
        step("GET", &format!("{CRD}/fileclusters"))
            .answer(200, list("FileClusterList", vec![f.clone()])),
        // No HashRanges: they do not tile the key space, so nothing may be applied.
        step("GET", &format!("{CRD}/hashranges")).answer(200, list("HashRangeList", vec![])),
        step(
            "GET",
            "/api/v1/namespaces/store/configmaps/cleave-range-table",
        )
        .answer(404, not_found()),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(NODE_PODS)
            .answer(200, list("PodList", vec![])),
        step("GET", "/api/v1/namespaces/store/pods")
            .query(ROUTER_PODS)
            .answer(200, list("PodList", vec![])),
        step("PATCH", &format!("{CRD}/fileclusters/fc-a/status"))
            .query(APPLY)
            .check(|b| {
                let conds = b["status"]["conditions"].as_array().unwrap();
                assert!(conds
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "False"));
                // Not acted on: observedGeneration stays behind.
                assert!(b["status"].get("observedGeneration").is_none(), "{b}");
            })
            .answer(200, f.clone()),
        step("POST", "/apis/events.k8s.io/v1/namespaces/store/events").check(|b| {
            assert_eq!(b["reason"], "InvalidSpec");
            assert_eq!(b["type"], "Warning");
            assert_eq!(b["regarding"]["name"], "fc-a");
            assert!(b["note"].as_str().unwrap().contains("no HashRanges"));
        }),
    ];
    let server = tokio::spawn(verify(handle, script));
    let action = reconcile(Arc::new(fc(true, false)), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

/// Lines logged into a buffer (a test subscriber), to see which span they carry.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn what_a_reconcile_logs_names_its_object() {
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test's thread may have registered the reconcile span's callsite while no
    // subscriber wanted it, caching "never": recompute with this one in place.
    tracing::callsite::rebuild_interest_cache();
    let (ctx, handle) = context();
    let boom = failure(500, "InternalError", "etcd is sad");
    let script = vec![step("GET", &format!("{CRD}/fileclusters")).answer(500, boom)];
    let server = tokio::spawn(verify(handle, script));
    reconcile(Arc::new(fc(true, false)), ctx).await.unwrap_err();
    server.await.unwrap();
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let pass = text
        .lines()
        .find(|l| l.contains("pass starts"))
        .unwrap_or_else(|| panic!("no pass line in {text}"));
    assert!(
        pass.contains("reconcile{namespace=store filecluster=fc-a}"),
        "{pass}"
    );
}

#[tokio::test]
async fn failures_are_retried_with_exponential_backoff() {
    let (ctx, handle) = context();
    let boom = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": "InternalError", "code": 500, "message": "etcd is sad"});
    let script = vec![step("GET", &format!("{CRD}/fileclusters")).answer(500, boom)];
    let server = tokio::spawn(verify(handle, script));
    let obj = Arc::new(fc(true, false));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("etcd is sad"), "{err}");
    // The API's answer is kept, not flattened into a message: its code can be acted on.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut code = None;
    while let Some(e) = cause {
        let api = e
            .downcast_ref::<kube::Error>()
            .or_else(|| e.downcast_ref::<Box<kube::Error>>().map(|b| &**b));
        if let Some(kube::Error::Api(s)) = api {
            code = Some(s.code);
        }
        cause = e.source();
    }
    assert_eq!(code, Some(500), "no kube::Error in the chain of {err:?}");
    let delays: Vec<Action> = (0..4)
        .map(|_| error_policy(obj.clone(), &err, ctx.clone()))
        .collect();
    drop(ctx);
    server.await.unwrap();
    assert_eq!(
        delays,
        [1, 2, 4, 8].map(|s| Action::requeue(Duration::from_secs(s)))
    );
}

#[tokio::test]
async fn deletion_waits_while_a_hashrange_names_the_cluster() {
    let (ctx, handle) = context();
    let r = serde_json::to_value(hr("fc-a")).unwrap();
    let script = vec![
        step("GET", &format!("{CRD}/hashranges")).answer(200, list("HashRangeList", vec![r])),
        step("POST", "/apis/events.k8s.io/v1/namespaces/store/events").check(|b| {
            assert_eq!(b["reason"], "DeletionBlocked");
            assert!(b["note"].as_str().unwrap().contains("all"));
        }),
    ];
    let server = tokio::spawn(verify(handle, script));
    let err = reconcile(Arc::new(fc(true, true)), ctx).await.unwrap_err();
    match err {
        ReconcileError::Finalizer(e) => assert!(e.to_string().contains("still in use"), "{e}"),
        other => panic!("unexpected error {other}"),
    }
    // No PATCH came (verify fails on any request after its two): the finalizer stays.
    server.await.unwrap();
}

#[tokio::test]
async fn deletion_completes_when_nothing_routes_to_the_cluster() {
    let (ctx, handle) = context();
    let script = vec![
        step("GET", &format!("{CRD}/hashranges")).answer(200, list("HashRangeList", vec![])),
        step("PATCH", &format!("{CRD}/fileclusters/fc-a"))
            .check(|b| {
                let ops = b.as_array().expect("a JSON patch");
                assert!(
                    ops.iter()
                        .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
                    "{b}"
                );
            })
            .answer(200, serde_json::to_value(fc(false, true)).unwrap()),
    ];
    let server = tokio::spawn(verify(handle, script));
    let action = reconcile(Arc::new(fc(true, true)), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_conflict_on_the_finalizer_is_an_error_and_nothing_follows() {
    let (ctx, handle) = context();
    let script = vec![step("PATCH", &format!("{CRD}/fileclusters/fc-a")).answer(
        409,
        failure(
            409,
            "Conflict",
            "Operation cannot be fulfilled on fileclusters.cleave.dev \"fc-a\": \
                 the object has been modified; please apply your changes to the latest version",
        ),
    )];
    let server = tokio::spawn(verify(handle, script));
    let err = reconcile(Arc::new(fc(false, false)), ctx)
        .await
        .expect_err("a refused finalizer patch must fail the reconcile");
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );
    // verify fails on any request after the refused PATCH: nothing was applied regardless.
    server.await.unwrap();
}

#[tokio::test]
async fn an_invalid_object_stops_the_pass_with_an_error_naming_it() {
    let (ctx, handle) = context();
    let f = serde_json::to_value(fc(true, false)).unwrap();
    let r = serde_json::to_value(hr("fc-a")).unwrap();
    let invalid = failure(
        422,
        "Invalid",
        "StatefulSet.apps \"fc-a\" is invalid: spec.template.spec.containers[0].image: \
         Required value",
    );
    let script = vec![
        step("GET", &format!("{CRD}/fileclusters")).answer(200, list("FileClusterList", vec![f])),
        step("GET", &format!("{CRD}/hashranges")).answer(200, list("HashRangeList", vec![r])),
        step(
            "GET",
            "/api/v1/namespaces/store/configmaps/cleave-range-table",
        )
        .answer(404, not_found()),
        step("PATCH", "/api/v1/namespaces/store/configmaps/fc-a-config").query(APPLY),
        step("PATCH", "/api/v1/namespaces/store/services/fc-a").query(APPLY),
        step("PATCH", "/apis/apps/v1/namespaces/store/statefulsets/fc-a")
            .query(APPLY)
            .answer(422, invalid),
    ];
    let server = tokio::spawn(verify(handle, script));
    let err = reconcile(Arc::new(fc(true, false)), ctx)
        .await
        .expect_err("an invalid StatefulSet must fail the reconcile");
    let msg = err.to_string();
    assert!(
        msg.contains("StatefulSet") && msg.contains("store/fc-a"),
        "{msg}"
    );
    assert!(msg.contains("Required value"), "{msg}");
    // No PodDisruptionBudget, no status: verify fails on any request after the 422.
    server.await.unwrap();
}
