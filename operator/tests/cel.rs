//! CEL and schema rules of the CRDs, evaluated locally (kube's `cel` feature) the way the API
//! server would, plus the manifest reader's checks (unknown fields, bounds, bad YAML).

use cleave_operator::crd::manifest::{check_update, parse_file, Object};
use cleave_operator::crd::{FileCluster, HashRange};

fn hr(start: i64, end: i64, cluster: &str) -> HashRange {
    let v = serde_json::json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "HashRange",
        "metadata": {"name": "r"},
        "spec": {"start": start, "end": end, "cluster": cluster}
    });
    serde_json::from_value(v).unwrap()
}

fn fc(spec: serde_json::Value) -> FileCluster {
    let v = serde_json::json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
        "metadata": {"name": "fc-a"}, "spec": spec
    });
    serde_json::from_value(v).unwrap()
}

fn one(text: &str) -> Result<Object, String> {
    let mut all = parse_file("t.yaml", text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0).map_err(|e| e.to_string())
}

#[test]
fn hashrange_start_must_not_exceed_end() {
    assert!(hr(0, 10, "a").validate_cel().is_ok());
    assert!(hr(10, 10, "a").validate_cel().is_ok());
    let err = hr(11, 10, "a").validate_cel().unwrap_err();
    assert!(
        format!("{err:?}").contains("start must not be greater than end"),
        "{err:?}"
    );
}

#[test]
fn hashrange_end_is_bounded_by_u32_max() {
    assert!(hr(0, 4_294_967_295, "a").validate_cel().is_ok());
    let err = hr(0, 4_294_967_296, "a").validate_cel().unwrap_err();
    assert!(
        format!("{err:?}").contains("end must be at most 4294967295"),
        "{err:?}"
    );
    assert!(hr(-1, 5, "a").validate_cel().is_err());
}

#[test]
fn hashrange_cluster_is_immutable() {
    let old = hr(0, 10, "a");
    assert!(
        hr(0, 5, "a").validate_cel_update(&old).is_ok(),
        "start/end may change (splits)"
    );
    let err = hr(0, 10, "b").validate_cel_update(&old).unwrap_err();
    assert!(
        format!("{err:?}").contains("cluster is immutable"),
        "{err:?}"
    );
}

#[test]
fn filecluster_min_in_sync_below_replicas() {
    assert!(
        fc(serde_json::json!({})).validate_cel().is_ok(),
        "defaults: 3 replicas, 1 in sync"
    );
    assert!(fc(serde_json::json!({"replicas": 1, "minInSync": 0}))
        .validate_cel()
        .is_ok());
    let err = fc(serde_json::json!({"replicas": 3, "minInSync": 3}))
        .validate_cel()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("minInSync must be smaller than replicas"),
        "{err:?}"
    );
}

#[test]
fn filecluster_storage_is_immutable() {
    let old = fc(serde_json::json!({"storage": {"size": "1Gi"}}));
    assert!(
        fc(serde_json::json!({"storage": {"size": "1Gi"}, "replicas": 5}))
            .validate_cel_update(&old)
            .is_ok()
    );
    let err = fc(serde_json::json!({"storage": {"size": "2Gi"}}))
        .validate_cel_update(&old)
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("storage is immutable"),
        "{err:?}"
    );
}

#[test]
fn manifests_apply_defaults_and_cel() {
    let text =
        "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: fc-a}\nspec: {}\n";
    let Ok(Object::FileCluster(o)) = one(text) else {
        panic!()
    };
    assert_eq!(
        (o.spec.replicas, o.spec.min_in_sync, o.spec.log_capacity),
        (3, 1, 10_000)
    );
    let bad = "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata: {name: r}\nspec: {start: 9, end: 3, cluster: a}\n";
    let err = one(bad).unwrap_err();
    assert!(
        err.contains("HashRange/r") && err.contains("start must not be greater than end"),
        "{err}"
    );
}

#[test]
fn manifests_refuse_unknown_fields_bad_types_and_bounds() {
    let unknown = "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: fc-a}\nspec: {replicas: 3, replicaz: 4}\n";
    let err = one(unknown).unwrap_err();
    assert!(err.contains("spec.replicaz: unknown field"), "{err}");
    let nested = "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: fc-a}\nspec: {redis: {appendfsync: sometimes}}\n";
    let err = one(nested).unwrap_err();
    assert!(
        err.contains("spec.redis.appendfsync") && err.contains("everysec"),
        "{err}"
    );
    let big = "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata: {name: r}\nspec: {start: 0, end: 4294967296, cluster: a}\n";
    let err = one(big).unwrap_err();
    assert!(err.contains("spec.end") && err.contains("maximum"), "{err}");
    let ty = "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata: {name: r}\nspec: {start: zero, end: 1, cluster: a}\n";
    assert!(one(ty)
        .unwrap_err()
        .contains("spec.start: must be of type integer"));
    let missing = "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata: {name: r}\nspec: {start: 0, end: 1}\n";
    assert!(one(missing)
        .unwrap_err()
        .contains("spec.cluster: required field is missing"));
    let kind =
        "apiVersion: cleave.dev/v1alpha1\nkind: FileClustre\nmetadata: {name: r}\nspec: {}\n";
    assert!(one(kind).unwrap_err().contains("unknown kind"));
    let name = "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: Big_Name}\nspec: {}\n";
    assert!(one(name).unwrap_err().contains("not a DNS label"));
}

#[test]
fn manifests_report_bad_yaml_with_the_file() {
    let all = parse_file("broken.yaml", "kind: [unclosed\n");
    let err = all[0].as_ref().unwrap_err().to_string();
    assert!(
        err.starts_with("broken.yaml (document 1): not valid YAML"),
        "{err}"
    );
}

#[test]
fn manifests_hold_several_documents() {
    let text = "---\napiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: a}\nspec: {}\n---\n---\napiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata: {name: r}\nspec: {start: 0, end: 4294967295, cluster: a}\n";
    let all = parse_file("m.yaml", text);
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|o| o.is_ok()));
}

#[test]
fn transition_rules_through_the_manifest_reader() {
    let a = Object::HashRange(hr(0, 10, "a"));
    let b = Object::HashRange(hr(0, 10, "b"));
    assert!(check_update(&b, &a)
        .unwrap_err()
        .contains("cluster is immutable"));
    assert!(check_update(&a, &a).is_ok());
}

#[test]
fn crds_on_disk_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (name, yaml) in cleave_operator::crd::crd_files() {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "crds/{name} differs from the Rust types: run `make crds`"
        );
    }
}

fn fc_named(name: &str) -> FileCluster {
    let v = serde_json::json!({
        "apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster",
        "metadata": {"name": name}, "spec": {}
    });
    serde_json::from_value(v).unwrap()
}

#[test]
fn filecluster_names_must_make_valid_object_names() {
    for ok in ["fc-a", "a", "store1", &"a".repeat(52)] {
        assert!(fc_named(ok).validate_cel().is_ok(), "{ok} was refused");
        assert_eq!(cleave_operator::crd::filecluster::name_problem(ok), None);
    }
    let cases = [
        ("cleave-router", "taken by the routers' Service"),
        ("1fc", "DNS-1035"),
        ("fc.a", "DNS-1035"),
        ("Fc", "DNS-1035"),
        ("fc-", "DNS-1035"),
        (&"a".repeat(53), "at most 52"),
    ];
    for (bad, why) in cases {
        let err = format!("{:?}", fc_named(bad).validate_cel().unwrap_err());
        assert!(err.contains(why), "{bad}: {err}");
        let problem = cleave_operator::crd::filecluster::name_problem(bad).unwrap();
        assert!(problem.contains(why), "{bad}: {problem}");
    }
}

#[test]
fn the_crd_carries_the_name_rules_at_its_root() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(FileCluster::crd()).unwrap();
    let rules =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"];
    let text = rules.to_string();
    for rule in [
        "self.metadata.name.size() <= 52",
        "self.metadata.name != 'cleave-router'",
    ] {
        assert!(text.contains(rule), "{rule} missing from {text}");
    }
}
