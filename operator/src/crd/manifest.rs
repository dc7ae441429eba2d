//! Reading FileCluster / HashRange manifests the way `kubectl apply` and the API server would
//! judge them: YAML (several documents per file), `apiVersion` and `kind`, names, the CRD's
//! OpenAPI schema (unknown fields, types, minimum / maximum, enums) and its CEL rules (creation
//! rules, and transition rules against the previously accepted object).

use super::{FileCluster, HashRange, API_VERSION};
use crate::error::{Error, Result};
use kube::CustomResourceExt;
use serde_json::Value;

/// One accepted object. (A few per manifest folder: their size does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A FileCluster.
    FileCluster(FileCluster),
    /// A HashRange.
    HashRange(HashRange),
}

impl Object {
    /// `Kind/namespace/name`.
    pub fn key(&self) -> String {
        match self {
            Object::FileCluster(o) => key("FileCluster", &o.metadata),
            Object::HashRange(o) => key("HashRange", &o.metadata),
        }
    }
}

fn key(kind: &str, meta: &kube::core::ObjectMeta) -> String {
    format!(
        "{kind}/{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Parse every document of one file. `file` labels errors. Empty documents are skipped.
pub fn parse_file(file: &str, text: &str) -> Vec<Result<Object>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let label = format!("{file} (document {})", i + 1);
        let value = match serde_yaml::Value::deserialize_from(doc) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                out.push(Err(Error::Yaml {
                    file: label,
                    message: e.to_string(),
                }));
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        out.push(
            serde_json::to_value(value)
                .map_err(|e| Error::Yaml {
                    file: label.clone(),
                    message: e.to_string(),
                })
                .and_then(|v| parse_object(&label, v)),
        );
    }
    out
}

trait FromDoc: Sized {
    fn deserialize_from(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error>;
}

impl FromDoc for serde_yaml::Value {
    fn deserialize_from(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error> {
        serde::Deserialize::deserialize(doc)
    }
}

/// Check one object (as JSON) and turn it into a typed object.
pub fn parse_object(file: &str, mut value: Value) -> Result<Object> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let err = |message: String| Error::Manifest {
        file: file.into(),
        object: format!("{}/{}", if kind.is_empty() { "?" } else { &kind }, name),
        message,
    };
    let api = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api != API_VERSION {
        return Err(err(format!(
            "apiVersion must be {API_VERSION:?}, not {api:?}"
        )));
    }
    check_name(&name).map_err(&err)?;
    if let Some(ns) = value.pointer("/metadata/namespace").and_then(Value::as_str) {
        check_name(ns).map_err(|m| err(format!("namespace: {m}")))?;
    }
    // Status is the operator's to write; a manifest's status is ignored, as the API server does.
    if let Some(obj) = value.as_object_mut() {
        obj.remove("status");
    }
    match kind.as_str() {
        "FileCluster" => {
            check_schema(&FileCluster::crd(), &value).map_err(&err)?;
            let mut o: FileCluster =
                serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
            o.status = None;
            o.validate_cel().map_err(|e| err(cel_message(e)))?;
            Ok(Object::FileCluster(o))
        }
        "HashRange" => {
            check_schema(&HashRange::crd(), &value).map_err(&err)?;
            let mut o: HashRange = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
            o.status = None;
            o.validate_cel().map_err(|e| err(cel_message(e)))?;
            Ok(Object::HashRange(o))
        }
        other => Err(err(format!(
            "unknown kind {other:?}: expected FileCluster or HashRange"
        ))),
    }
}

/// Check an update of `old` into `new` against the CEL transition rules (immutable fields).
pub fn check_update(new: &Object, old: &Object) -> std::result::Result<(), String> {
    match (new, old) {
        (Object::FileCluster(n), Object::FileCluster(o)) => {
            n.validate_cel_update(o).map_err(cel_message)
        }
        (Object::HashRange(n), Object::HashRange(o)) => {
            n.validate_cel_update(o).map_err(cel_message)
        }
        _ => Ok(()),
    }
}

fn cel_message(errors: kube::core::cel::ValidationErrors) -> String {
    errors
        .as_slice()
        .iter()
        .map(|e| {
            let path = e.field_path.trim_start_matches('.');
            if path.is_empty() {
                e.message.clone()
            } else {
                format!("{path}: {}", e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A Kubernetes object name: a DNS label (lower-case letters, digits, `-`, at most 63).
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err("metadata.name is missing".into())
    } else {
        Err(format!(
            "name {name:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"
        ))
    }
}

fn check_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    value: &Value,
) -> std::result::Result<(), String> {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("a schema serializes"))
        .unwrap_or(Value::Null);
    let mut problems = Vec::new();
    walk(&schema, value, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Structural checks of `value` against an OpenAPI v3 schema node, in the API server's words.
fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && !path.is_empty() {
            out.push(format!("{here}: must not be null"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.push(format!("{here}: must be an integer or a string"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    match (ty, value) {
        (Some("object"), Value::Object(map)) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            for (k, v) in map {
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
                    continue; // checked by the caller, as the API server does
                }
                let sub = format!(
                    "{}{k}",
                    if path.is_empty() {
                        String::new()
                    } else {
                        format!("{path}.")
                    }
                );
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) => walk(s, v, &sub, out),
                    (None, Some(s)) if s.is_object() => walk(s, v, &sub, out),
                    (None, _) if preserve || (props.is_none() && extra.is_none()) => {}
                    (None, _) => out.push(format!("{sub}: unknown field")),
                }
            }
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        let sub = if path.is_empty() {
                            r.to_string()
                        } else {
                            format!("{path}.{r}")
                        };
                        out.push(format!("{sub}: required field is missing"));
                    }
                }
            }
        }
        (Some("array"), Value::Array(items)) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        (Some("integer"), v) if v.is_i64() || v.is_u64() => {
            let n = v.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    out.push(format!("{here}: {v} is less than the minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    out.push(format!("{here}: {v} is greater than the maximum {max}"));
                }
            }
        }
        (Some("number"), v) if v.is_number() => {}
        (Some("boolean"), Value::Bool(_)) => {}
        (Some("string"), Value::String(s)) => {
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                    let list: Vec<_> = allowed.iter().filter_map(Value::as_str).collect();
                    out.push(format!("{here}: {s:?} is not one of {}", list.join(", ")));
                }
            }
        }
        (None, _) => {}
        (Some(t), v) => out.push(format!("{here}: must be of type {t}, not {}", type_name(v))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
