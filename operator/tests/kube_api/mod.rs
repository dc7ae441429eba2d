//! A scripted Kubernetes API server for the controller's tests (kube-rs's tower-test
//! "ApiServerVerifier" pattern): every request is checked, in order, against a script and
//! answered as an API server answers (fresh resourceVersions, uids, generations, 404s, 409s,
//! 422s); a request after the script fails the test. No API server runs.

#![allow(dead_code)]

use cleave_operator::crd::{FileCluster, HashRange};
use cleave_operator::platform::kubernetes::build::BuildConfig;
use cleave_operator::platform::kubernetes::controller::{Context, FINALIZER};
use cleave_operator::platform::kubernetes::metrics::Metrics;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_test::mock::{self, Handle};

/// One expected request and how to answer it.
pub struct Step {
    pub method: &'static str,
    /// The request path must be exactly this.
    pub path: String,
    /// The query must be exactly this.
    pub query: &'static str,
    /// Checks on the request body (JSON, `Null` when empty).
    pub check: Box<dyn Fn(&Value) + Send>,
    /// Status code and body of the answer; `None`: answer as an API server answers an apply
    /// or a create (see [`stored`]). Reads and JSON patches must be given an answer.
    pub answer: Option<(u16, Value)>,
}

pub fn step(method: &'static str, path: &str) -> Step {
    Step {
        method,
        path: path.into(),
        query: "",
        check: Box::new(|_| {}),
        answer: None,
    }
}

impl Step {
    pub fn query(mut self, q: &'static str) -> Step {
        self.query = q;
        self
    }
    pub fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Step {
        self.check = Box::new(f);
        self
    }
    pub fn answer(mut self, code: u16, body: Value) -> Step {
        self.answer = Some((code, body));
        self
    }
}

pub const NS: &str = "store";
/// The query of every server-side apply.
pub const APPLY: &str = "&force=true&fieldManager=cleave-operator";
/// The query of every create or replace by the operator.
pub const MANAGED: &str = "&fieldManager=cleave-operator";
/// Label selectors kube-rs sends (URL-encoded, after a leading `&`).
pub const NODE_PODS: &str = "&labelSelector=app.kubernetes.io%2Fcomponent%3Dnode%2Capp.kubernetes.io%2Finstance%3Dfc-a%2Capp.kubernetes.io%2Fname%3Dcleave";
pub const ROUTER_PODS: &str = "&labelSelector=app.kubernetes.io%2Fcomponent%3Drouter%2Capp.kubernetes.io%2Finstance%3Dcleave-router%2Capp.kubernetes.io%2Fname%3Dcleave";
pub const CRD: &str = "/apis/cleave.dev/v1alpha1/namespaces/store";

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A `Status` failure as the API server sends it.
pub fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": message})
}

pub fn not_found() -> Value {
    failure(404, "NotFound", "not found")
}

/// What the API server returns for an object it has just stored from an apply or a create:
/// the object with server-set metadata — a fresh `resourceVersion` (`rv`), a uid, generation 1
/// and a creation time when they were not there — never simply the request echoed back.
pub fn stored(body: &Value, rv: u64) -> Value {
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

pub fn fc(finalizer: bool, deleting: bool) -> FileCluster {
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

pub fn hr(cluster: &str) -> HashRange {
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
pub async fn verify(handle: Handle<Request<Body>, Response<Body>>, script: Vec<Step>) {
    verify_logged(handle, script, Log::default()).await
}

/// What happened, in order, across the API and the stand-ins for pods: `API PUT /path`, or
/// what a stand-in node or router was told.
pub type Log = Arc<Mutex<Vec<String>>>;

/// [`verify`], noting each request in `log` as it comes.
pub async fn verify_logged(
    mut handle: Handle<Request<Body>, Response<Body>>,
    script: Vec<Step>,
    log: Log,
) {
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
        log.lock().unwrap().push(format!("API {method} {path}"));
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
                matches!(method.as_str(), "PATCH" | "POST" | "PUT") && body.is_object(),
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

pub fn context() -> (Arc<Context>, Handle<Request<Body>, Response<Body>>) {
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

pub fn applied_by_us(body: &Value) {
    assert!(
        body["apiVersion"].is_string() && body["kind"].is_string(),
        "SSA bodies carry apiVersion and kind: {body}"
    );
}
