//! The controller's call sequence against a mocked API server (kube-rs's tower-test
//! "ApiServerVerifier" pattern): every request the reconcile makes is checked, in order, and
//! answered by a script. No API server runs; nothing here touches a network.

use cleave_operator::crd::{FileCluster, HashRange};
use cleave_operator::platform::kubernetes::build::BuildConfig;
use cleave_operator::platform::kubernetes::controller::{
    error_policy, reconcile, Context, ReconcileError, FINALIZER, REQUEUE_BUSY,
};
use cleave_operator::platform::kubernetes::metrics::Metrics;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

/// One expected request and how to answer it.
struct Step {
    method: &'static str,
    /// The request path must be exactly this.
    path: String,
    /// The query must be exactly this.
    query: &'static str,
    /// Checks on the request body (JSON, `Null` when empty).
    check: Box<dyn Fn(&Value) + Send>,
    /// Status code and body of the answer; `None`: answer as an API server answers an apply
    /// or a create (see [`stored`]). Reads and JSON patches must be given an answer.
    answer: Option<(u16, Value)>,
}

fn step(method: &'static str, path: &str) -> Step {
    Step {
        method,
        path: path.into(),
        query: "",
        check: Box::new(|_| {}),
        answer: None,
    }
}

impl Step {
    fn query(mut self, q: &'static str) -> Step {
        self.query = q;
        self
    }
    fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Step {
        self.check = Box::new(f);
        self
    }
    fn answer(mut self, code: u16, body: Value) -> Step {
        self.answer = Some((code, body));
        self
    }
}

const NS: &str = "store";
/// The query of every server-side apply.
const APPLY: &str = "&force=true&fieldManager=cleave-operator";
/// Label selectors kube-rs sends (URL-encoded, after a leading `&`).
const NODE_PODS: &str = "&labelSelector=app.kubernetes.io%2Fcomponent%3Dnode%2Capp.kubernetes.io%2Finstance%3Dfc-a%2Capp.kubernetes.io%2Fname%3Dcleave";
const ROUTER_PODS: &str = "&labelSelector=app.kubernetes.io%2Fcomponent%3Drouter%2Capp.kubernetes.io%2Finstance%3Dcleave-router%2Capp.kubernetes.io%2Fname%3Dcleave";
const CRD: &str = "/apis/cleave.dev/v1alpha1/namespaces/store";

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A `Status` failure as the API server sends it.
fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": message})
}

fn not_found() -> Value {
    failure(404, "NotFound", "not found")
}

/// What the API server returns for an object it has just stored from an apply or a create:
/// the object with server-set metadata — a fresh `resourceVersion` (`rv`), a uid, generation 1
/// and a creation time when they were not there — never simply the request echoed back.
fn stored(body: &Value, rv: u64) -> Value {
    let mut obj = body.clone();
    assert!(
        obj["metadata"]["name"].is_string() || obj["metadata"]["generateName"].is_string(),
        "an object without a name: {body}"
    );
    let meta = obj["metadata"].as_object_mut().unwrap();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("generated")
        .to_string();
    meta.entry("uid")
        .or_insert_with(|| json!(format!("uid-{name}")));
    meta.entry("generation").or_insert(json!(1));
    meta.entry("creationTimestamp")
        .or_insert(json!("2027-01-15T08:00:00Z"));
    obj
}

fn fc(finalizer: bool, deleting: bool) -> FileCluster {
    let mut fc: FileCluster = serde_json::from_value(json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
        "metadata": {"name": "fc-a", "namespace": NS, "uid": "uid-a", "generation": 2,
                     "resourceVersion": "7"},
        "spec": {"replicas": 3}
    }))
    .unwrap();
    if finalizer {
        fc.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    if deleting {
        fc.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            ));
    }
    fc
}

fn hr(cluster: &str) -> HashRange {
    serde_json::from_value(json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "HashRange",
        "metadata": {"name": "all", "namespace": NS, "uid": "uid-r", "generation": 1},
        "spec": {"start": 0, "end": 4294967295_u64, "cluster": cluster}
    }))
    .unwrap()
}

/// Serve `script` in order, then fail on any request after it: the code under test must make
/// exactly the scripted requests. Returns once every client of the mock is dropped, so a test
/// drops its `Context` (which `reconcile` takes by value) before awaiting this.
async fn verify(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Step>) {
    let mut seen = Vec::new();
    let mut resource_version = 100;
    for (i, s) in script.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "step {i}: no request came (wanted {} {}); seen: {seen:#?}",
                    s.method, s.path
                )
            })
            .expect("the service is alive");
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        seen.push(format!("{method} {path}?{query}"));
        assert_eq!(
            (method.as_str(), path.as_str()),
            (s.method, s.path.as_str()),
            "step {i}; seen: {seen:#?}"
        );
        assert_eq!(query, s.query, "step {i}: the query of {method} {path}");
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (s.check)(&body);
        let (code, answer) = s.answer.unwrap_or_else(|| {
            assert!(
                (method == "PATCH" || method == "POST") && body.is_object(),
                "step {i}: {method} {path} needs a scripted answer"
            );
            resource_version += 1;
            let code = if method == "POST" { 201 } else { 200 };
            (code, stored(&body, resource_version))
        });
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    let after = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the mock's client is still alive after the script: drop the Context first");
    if let Some((req, _)) = after {
        panic!(
            "unexpected request after the script: {} {}; seen: {seen:#?}",
            req.method(),
            req.uri()
        );
    }
}

fn context() -> (Arc<Context>, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(
        client,
        BuildConfig::default(),
        Metrics::new(),
        Some("test".into()),
    );
    (Arc::new(ctx), handle)
}

fn applied_by_us(body: &Value) {
    assert!(
        body["apiVersion"].is_string() && body["kind"].is_string(),
        "SSA bodies carry apiVersion and kind: {body}"
    );
}

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
