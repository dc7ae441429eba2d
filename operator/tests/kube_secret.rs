//! The installation's admin secret on Kubernetes, against a mocked API server: made once in the
//! operator's namespace and then read (also when another replica made it first), and copied
//! into a namespace's `cleave-admin` Secret before the StatefulSet that mounts it is applied.

mod kube_api;

use cleave_operator::platform::kubernetes::build::BuildConfig;
use cleave_operator::platform::kubernetes::credential::installation_secret;
use cleave_operator::platform::kubernetes::KubePlatform;
use cleave_operator::reconcile::Platform;
use cleave_proto::auth::Secret as AdminSecret;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube_api::*;
use serde_json::json;
use std::sync::Arc;

const OPERATOR_SECRET: &str = "/api/v1/namespaces/cleave-system/secrets/cleave-admin";
const VALUE: &str = "0123456789abcdef0123456789abcdef";

fn secrets_api() -> (
    Api<Secret>,
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>,
) {
    let (service, handle) = tower_test::mock::pair();
    let client = kube::Client::new(service, "default");
    (Api::namespaced(client, "cleave-system"), handle)
}

/// Standard base64, as the API server sends `data` (32 ASCII bytes need no extra crate).
fn base64(bytes: &[u8]) -> String {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                table[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn stored_secret(value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "cleave-admin", "namespace": "cleave-system", "resourceVersion": "3"},
           "data": {"secret": base64(value.as_bytes())}})
}

#[tokio::test]
async fn the_first_operator_makes_the_secret_and_the_next_reads_it() {
    let (api, handle) = secrets_api();
    let script = vec![
        step("GET", OPERATOR_SECRET).answer(404, not_found()),
        step("POST", "/api/v1/namespaces/cleave-system/secrets")
            .query(MANAGED)
            .check(|b| {
                let v = b["stringData"]["secret"].as_str().unwrap();
                assert_eq!(v.len(), 64, "{b}");
                assert!(v.bytes().all(|c| c.is_ascii_hexdigit()));
            }),
    ];
    let server = tokio::spawn(verify(handle, script));
    let made = installation_secret(&api, "cleave-system").await.unwrap();
    assert_eq!(made.expose().len(), 64);
    drop(api);
    server.await.unwrap();

    let (api, handle) = secrets_api();
    let script = vec![step("GET", OPERATOR_SECRET).answer(200, stored_secret(VALUE))];
    let server = tokio::spawn(verify(handle, script));
    let read = installation_secret(&api, "cleave-system").await.unwrap();
    assert_eq!(read.expose(), VALUE);
    drop(api);
    server.await.unwrap();
}

#[tokio::test]
async fn a_replica_that_loses_the_race_to_make_it_uses_the_winners() {
    let (api, handle) = secrets_api();
    let script = vec![
        step("GET", OPERATOR_SECRET).answer(404, not_found()),
        step("POST", "/api/v1/namespaces/cleave-system/secrets")
            .query(MANAGED)
            .answer(
                409,
                failure(
                    409,
                    "AlreadyExists",
                    "secrets \"cleave-admin\" already exists",
                ),
            ),
        step("GET", OPERATOR_SECRET).answer(200, stored_secret(VALUE)),
    ];
    let server = tokio::spawn(verify(handle, script));
    let s = installation_secret(&api, "cleave-system").await.unwrap();
    assert_eq!(s.expose(), VALUE);
    drop(api);
    server.await.unwrap();
}

#[tokio::test]
async fn the_namespace_gets_the_secret_before_the_pods_that_mount_it() {
    let (service, handle) = tower_test::mock::pair();
    let client = kube::Client::new(service, "default");
    let secret = Arc::new(AdminSecret::new(VALUE).unwrap());
    let mut platform =
        KubePlatform::new(client, NS, BuildConfig::default()).with_admin_secret(secret);
    let script = vec![
        step("PATCH", "/api/v1/namespaces/store/secrets/cleave-admin")
            .query(APPLY)
            .check(|b| {
                applied_by_us(b);
                assert_eq!(b["stringData"]["secret"], VALUE, "{b}");
            }),
        step("PATCH", "/api/v1/namespaces/store/configmaps/fc-a-config").query(APPLY),
        step("PATCH", "/api/v1/namespaces/store/services/fc-a").query(APPLY),
        step("PATCH", "/apis/apps/v1/namespaces/store/statefulsets/fc-a")
            .query(APPLY)
            .check(|b| {
                let pod = &b["spec"]["template"]["spec"];
                let vols = pod["volumes"].as_array().unwrap();
                assert!(
                    vols.iter()
                        .any(|v| v["secret"]["secretName"] == "cleave-admin"),
                    "{pod}"
                );
                let args = pod["containers"][0]["args"].to_string();
                assert!(args.contains("/etc/cleave-auth/secret"), "{args}");
            }),
        step(
            "PATCH",
            "/apis/policy/v1/namespaces/store/poddisruptionbudgets/fc-a",
        )
        .query(APPLY),
    ];
    let server = tokio::spawn(verify(handle, script));
    platform.ensure_clusters(&[fc(true, false)]).await.unwrap();
    drop(platform);
    server.await.unwrap();
}
