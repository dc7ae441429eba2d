//! `cleave status --kube`: read one namespace from the Kubernetes API.
//!
//! Four read-only calls, in this order: list FileClusters, list HashRanges, get the
//! `cleave-range-table` ConfigMap (absent before the first table), list the router pods by
//! label. [`super::from_kube::report`] turns them into the report. The CLI usually runs outside
//! the cluster, so it never connects to a pod. RBAC needed: `list` on `fileclusters`,
//! `hashranges` (`cleave.dev`) and `pods`, `get` on `configmaps`.
//!
//! Configuration: the current kubeconfig context (`KUBECONFIG`, else `~/.kube/config`), else the
//! in-cluster service account, as `kubectl` does. Every failure is one line, with the CLI's exit
//! statuses: 5 when the API server cannot be reached, 1 otherwise.

use super::{from_kube, KubeOrigin, Origin, Status};
use crate::error::{Error, Result};
use cleave_operator::crd::{FileCluster, HashRange};
use cleave_operator::platform::kubernetes::build::{
    router_selector, selector_string, TABLE_CONFIGMAP,
};
use cleave_operator::reconcile::status::Report;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use std::path::Path;
use std::time::Duration;

/// Whether a Kubernetes configuration looks available: `KUBECONFIG` set, `~/.kube/config`
/// present, or running in a pod (`KUBERNETES_SERVICE_HOST`). Only decides the default source;
/// the configuration is read (and its errors reported) by [`load`].
pub fn config_available() -> bool {
    available(
        std::env::var_os("KUBECONFIG").as_deref().map(Path::new),
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        std::env::var_os("HOME").as_deref().map(Path::new),
    )
}

fn available(kubeconfig: Option<&Path>, in_cluster: bool, home: Option<&Path>) -> bool {
    kubeconfig.is_some_and(|k| !k.as_os_str().is_empty())
        || in_cluster
        || home.is_some_and(|h| h.join(".kube").join("config").is_file())
}

/// An error and its causes on one line (`a: b: c`, repeats dropped).
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Read the configuration, connect, and build the status of `namespace` (default: the
/// context's namespace, else `default`).
pub async fn load(namespace: Option<&str>) -> Result<Status> {
    let (client, namespace, server) = connect(namespace).await?;
    let report = fetch(client, &namespace, &server).await?;
    Ok(Status {
        report,
        origin: Origin::Kubernetes {
            kubernetes: KubeOrigin { namespace, server },
        },
    })
}

/// Read the configuration and set up a client: the client, the namespace (`namespace`, else
/// the context's, else `default`) and the API server's URL.
pub async fn connect(namespace: Option<&str>) -> Result<(Client, String, String)> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        let why = std::error::Error::source(&e)
            .map(one_line)
            .unwrap_or_else(|| e.to_string());
        Error::Other(format!(
            "no Kubernetes configuration: kubeconfig: {why}; and not inside a cluster \
             (set KUBECONFIG or create ~/.kube/config)"
        ))
    })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    let server = config.cluster_url.to_string();
    let namespace = namespace
        .map(String::from)
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| {
        Error::Other(format!(
            "cannot set up a Kubernetes client for {server}: {}",
            one_line(&e)
        ))
    })?;
    Ok((client, namespace, server))
}

/// Set `spec.leader` of FileCluster `name` by a JSON merge patch (`cleave switchover`).
pub async fn patch_leader(
    client: Client,
    ns: &str,
    server: &str,
    name: &str,
    leader: &str,
) -> Result<()> {
    let patch = serde_json::json!({"spec": {"leader": leader}});
    Api::<FileCluster>::namespaced(client, ns)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(api_error(server, ns, "fileclusters.cleave.dev", true))
}

/// The four reads and the report. `server` only names the API server in errors.
pub async fn fetch(client: Client, ns: &str, server: &str) -> Result<Report> {
    let all = ListParams::default();
    let clusters = Api::<FileCluster>::namespaced(client.clone(), ns)
        .list(&all)
        .await
        .map_err(api_error(server, ns, "fileclusters.cleave.dev", true))?
        .items;
    let ranges = Api::<HashRange>::namespaced(client.clone(), ns)
        .list(&all)
        .await
        .map_err(api_error(server, ns, "hashranges.cleave.dev", true))?
        .items;
    let table = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(TABLE_CONFIGMAP)
        .await
        .map_err(api_error(server, ns, "configmaps", false))?;
    let routers = ListParams::default().labels(&selector_string(&router_selector()));
    let pods = Api::<Pod>::namespaced(client, ns)
        .list(&routers)
        .await
        .map_err(api_error(server, ns, "pods", false))?
        .items;
    Ok(from_kube::report(&clusters, &ranges, table.as_ref(), &pods))
}

/// One clear line per failure of reading `what` (a resource name; `crd`: one of Cleave's).
fn api_error<'a>(
    server: &'a str,
    ns: &'a str,
    what: &'static str,
    crd: bool,
) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |e| match e {
        kube::Error::Api(s) if crd && s.code == 404 => Error::Other(format!(
            "Cleave's CRDs are not installed on {server}: {what} is unknown \
             (install: kubectl apply --server-side -k config/default, see docs/kubernetes.md)"
        )),
        kube::Error::Api(s) if s.code == 401 => Error::Other(format!(
            "{server} refused the credentials of the current kubeconfig context: {}",
            s.message
        )),
        kube::Error::Api(s) if s.is_forbidden() => Error::Other(format!(
            "not allowed to read {what} in namespace {ns} on {server}: {}",
            s.message
        )),
        kube::Error::Api(s) => Error::Other(format!(
            "reading {what} in namespace {ns} on {server}: {} (HTTP {})",
            s.message.trim(),
            s.code
        )),
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => Error::ApiUnreachable {
            server: server.to_string(),
            // The causes, without kube's `ServiceError:` / `HyperError:` prefix.
            reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), one_line),
        },
        e => Error::Other(format!(
            "reading {what} in namespace {ns} on {server}: {}",
            one_line(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    //! The reads against a mocked API server (kube-rs's tower-test pattern, as in
    //! `operator/tests/kube_mock.rs`): every request is checked, in order, and answered by a
    //! script. No API server runs; only the "unreachable" test opens a (refused) loopback
    //! connection.

    use super::super::from_kube::fixtures::*;
    use super::*;
    use crate::error::{EXIT_OTHER, EXIT_UNREACHABLE};
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{json, Value};
    use tower_test::mock::{self, Handle};

    const CRD: &str = "/apis/cleave.dev/v1alpha1/namespaces/store";
    const SERVER: &str = "https://api.test:6443/";

    /// One expected request (`METHOD path`, its exact query) and its answer.
    type Step = (&'static str, String, &'static str, u16, Value);

    fn list(kind: &str, items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
    }

    fn failure(code: u16, reason: &str, message: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": reason, "code": code, "message": message})
    }

    /// Serve `script` in order, then fail on any request after it: the client under test must
    /// make exactly these requests. Returns once the client is dropped (which `fetch`, taking
    /// the client by value, does when it returns).
    async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Step>) {
        let mut seen = Vec::new();
        for (i, (method, path, query, code, answer)) in script.into_iter().enumerate() {
            let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("step {i}: no request came; seen: {seen:#?}"))
                .expect("the service is alive");
            let q = req.uri().query().unwrap_or("").to_string();
            seen.push(format!("{} {}?{q}", req.method(), req.uri().path()));
            assert_eq!(
                (req.method().as_str(), req.uri().path()),
                (method, path.as_str()),
                "step {i}; seen: {seen:#?}"
            );
            assert_eq!(q, query, "step {i}: the query");
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
        let after = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("the client under test was not dropped after the script");
        if let Some((req, _)) = after {
            panic!(
                "unexpected request after the script: {} {}; seen: {seen:#?}",
                req.method(),
                req.uri()
            );
        }
    }

    fn v(x: &impl serde::Serialize) -> Value {
        serde_json::to_value(x).unwrap()
    }

    fn client() -> (Client, Handle<Request<Body>, Response<Body>>) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "store"), handle)
    }

    fn router_query() -> &'static str {
        // The router pods' labels, URL-encoded (kube-rs starts the query with `&`).
        "&labelSelector=app.kubernetes.io%2Fcomponent%3Drouter%2Capp.kubernetes.io%2Finstance%3Dcleave-router%2Capp.kubernetes.io%2Fname%3Dcleave"
    }

    #[tokio::test]
    async fn the_report_is_built_from_four_reads() {
        let (client, handle) = client();
        let script: Vec<Step> = vec![
            (
                "GET",
                format!("{CRD}/fileclusters"),
                "",
                200,
                list("FileClusterList", vec![v(&fc_b()), v(&fc_a())]),
            ),
            (
                "GET",
                format!("{CRD}/hashranges"),
                "",
                200,
                list(
                    "HashRangeList",
                    vec![
                        v(&hr("high", 2147483648, 4294967295, "fc-b", None)),
                        v(&hr("low", 0, 2147483647, "fc-a", None)),
                    ],
                ),
            ),
            (
                "GET",
                "/api/v1/namespaces/store/configmaps/cleave-range-table".into(),
                "",
                200,
                // The table is newer (6) than what every router acknowledged (5): the
                // report must take the committed epoch from state.json.
                v(&table_config(Some(STATE), Some("epoch: 6\nranges: []\n"))),
            ),
            (
                "GET",
                "/api/v1/namespaces/store/pods".into(),
                router_query(),
                200,
                list(
                    "PodList",
                    vec![
                        v(&router_pod("cleave-router-x", "Running", Some("10.1.0.7"))),
                        v(&router_pod("cleave-router-z", "Pending", None)),
                    ],
                ),
            ),
        ];
        let server = tokio::spawn(serve(handle, script));
        let report = fetch(client, "store", SERVER).await.unwrap();
        server.await.unwrap();

        assert_eq!(report.epoch, 5);
        let ranges: Vec<_> = report
            .ranges
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.cluster.as_str(),
                    r.status.served_by.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            ranges,
            [
                ("low", "fc-a", Some("fc-a")),
                ("high", "fc-b", Some("fc-a"))
            ],
            "spec.cluster and status.servedBy each from their own field"
        );
        let clusters: Vec<_> = report.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters, ["fc-a", "fc-b"]);
        assert_eq!(report.clusters[0].status.leader.as_deref(), Some("fc-a-0"));
        assert_eq!(report.clusters[0].status.nodes[0].applied_seq, 41);
        assert_eq!(report.routers.len(), 1);
        assert_eq!(report.routers[0].address, "10.1.0.7:7000");
        assert_eq!(report.routers[0].epoch, Some(5));

        // The same document, and the same human view, as the local platform's.
        let status = Status {
            report,
            origin: Origin::Kubernetes {
                kubernetes: KubeOrigin {
                    namespace: "store".into(),
                    server: SERVER.into(),
                },
            },
        };
        let doc: Value = serde_json::from_str(&super::super::json(&status)).unwrap();
        assert_eq!(doc["kubernetes"]["namespace"], "store");
        assert_eq!(doc["clusters"][0]["nodes"][1]["inSync"], false);
        assert!(doc["clusters"][0]["nodes"][1]["pid"].is_null());
        let text = super::super::render(&doc);
        assert!(
            text.starts_with("Cleave (kubernetes, namespace store, server https://api.test:6443/)\nrange table epoch 5\n"),
            "{text}"
        );
        assert!(
            text.contains("cleave-router-x  10.1.0.7:7000  5      -"),
            "{text}"
        );
        assert!(
            text.contains("fc-a-1  follower  fc-a-1.fc-a.store.svc:7100  127.0.0.1:6379 (pod fc-a-1)  -    40       no"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_empty_namespace_without_a_table_is_not_an_error() {
        let (client, handle) = client();
        let script: Vec<Step> = vec![
            (
                "GET",
                format!("{CRD}/fileclusters"),
                "",
                200,
                list("FileClusterList", vec![]),
            ),
            (
                "GET",
                format!("{CRD}/hashranges"),
                "",
                200,
                list("HashRangeList", vec![]),
            ),
            (
                "GET",
                "/api/v1/namespaces/store/configmaps/cleave-range-table".into(),
                "",
                404,
                failure(
                    404,
                    "NotFound",
                    "configmaps \"cleave-range-table\" not found",
                ),
            ),
            (
                "GET",
                "/api/v1/namespaces/store/pods".into(),
                router_query(),
                200,
                list("PodList", vec![]),
            ),
        ];
        let server = tokio::spawn(serve(handle, script));
        let report = fetch(client, "store", SERVER).await.unwrap();
        server.await.unwrap();
        assert_eq!(report, Report::default());
    }

    #[tokio::test]
    async fn missing_crds_are_one_clear_line() {
        let (client, handle) = client();
        let script: Vec<Step> = vec![(
            "GET",
            format!("{CRD}/fileclusters"),
            "",
            404,
            failure(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        )];
        let server = tokio::spawn(serve(handle, script));
        let e = fetch(client, "store", SERVER).await.unwrap_err();
        server.await.unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("CRDs are not installed on https://api.test:6443/"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(e.exit_code(), EXIT_OTHER);
    }

    #[tokio::test]
    async fn forbidden_names_what_and_where() {
        let (client, handle) = client();
        let script: Vec<Step> = vec![
            (
                "GET",
                format!("{CRD}/fileclusters"),
                "",
                200,
                list("FileClusterList", vec![]),
            ),
            (
                "GET",
                format!("{CRD}/hashranges"),
                "",
                403,
                failure(
                    403,
                    "Forbidden",
                    "hashranges.cleave.dev is forbidden: User \"me\" cannot list",
                ),
            ),
        ];
        let server = tokio::spawn(serve(handle, script));
        let e = fetch(client, "store", SERVER).await.unwrap_err();
        server.await.unwrap();
        let msg = e.to_string();
        assert!(
            msg.starts_with("not allowed to read hashranges.cleave.dev in namespace store on https://api.test:6443/"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), EXIT_OTHER);
    }

    #[tokio::test]
    async fn an_unreachable_api_server_exits_with_5() {
        // A real client to a port that is bound (so no other test takes it) but not listened
        // on: the connection is refused at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let mut config = kube::Config::new(url.parse().unwrap());
        config.connect_timeout = Some(Duration::from_secs(2));
        let client = Client::try_from(config).unwrap();
        let e = fetch(client, "store", &url).await.unwrap_err();
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE, "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot reach the Kubernetes API server at {url}: "
            )),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn a_kubeconfig_or_a_pod_makes_kubernetes_available() {
        let home = tempfile::tempdir().unwrap();
        assert!(!available(None, false, Some(home.path())));
        assert!(
            !available(Some(Path::new("")), false, None),
            "empty KUBECONFIG"
        );
        assert!(available(Some(Path::new("/k/config")), false, None));
        assert!(available(None, true, None));
        std::fs::create_dir(home.path().join(".kube")).unwrap();
        std::fs::write(home.path().join(".kube/config"), "").unwrap();
        assert!(available(None, false, Some(home.path())));
    }
}
