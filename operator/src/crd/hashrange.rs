//! `HashRange`: an inclusive range of root-hash keys and the FileCluster that owns it.

// `printcolumn(type_ = ..)` repeats by design; clippy mistakes it for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An inclusive range `[start, end]` of 32-bit root-hash keys owned by one FileCluster. The
/// HashRanges of a namespace must tile `[0, 4294967295]` exactly; the operator changes
/// nothing while they do not.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleave.dev",
    version = "v1alpha1",
    kind = "HashRange",
    doc = "An inclusive range of 32-bit root-hash keys owned by one FileCluster; the HashRanges of a namespace tile [0, 4294967295].",
    namespaced,
    status = "HashRangeStatus",
    shortname = "hr",
    category = "cleave",
    derive = "PartialEq",
    cel,
    printcolumn(name = "Start", type_ = "integer", json_path = ".spec.start"),
    printcolumn(name = "End", type_ = "integer", json_path = ".spec.end"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Served-By", type_ = "string", json_path = ".status.servedBy"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.start <= self.end").message("start must not be greater than end"))]
#[serde(rename_all = "camelCase")]
pub struct HashRangeSpec {
    /// First hash key of the range, inclusive (0 to 4294967295).
    #[schemars(range(min = 0, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self >= 0").message("start must be at least 0"))]
    pub start: i64,
    /// Last hash key of the range, inclusive (0 to 4294967295).
    #[schemars(range(min = 0, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self <= 4294967295").message("end must be at most 4294967295"))]
    pub end: i64,
    /// Name of the FileCluster (same namespace) that owns the range. Immutable: to move keys,
    /// split the range.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable: split the range to move keys"))]
    pub cluster: String,
}

/// What the operator observed about a HashRange.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashRangeStatus {
    /// The FileCluster that serves these keys in the table the routers use now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Epoch of the range table that serves the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// `Ready`, `Progressing`, `Degraded` and `Valid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl HashRangeSpec {
    /// The range as `cleave-proto` sees it, when both ends fit in a `u32`.
    pub fn to_range(&self) -> Option<cleave_proto::HashRange> {
        Some(cleave_proto::HashRange {
            start: u32::try_from(self.start).ok()?,
            end: u32::try_from(self.end).ok()?,
            cluster: self.cluster.clone(),
        })
    }
}
