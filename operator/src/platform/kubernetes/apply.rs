//! Server-side apply with the operator's field manager, for objects and for status.

use super::build::FIELD_MANAGER;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The patch parameters of every apply: our field manager, and `force` so that the operator
/// wins conflicts on the fields it manages (it is their only writer by design).
pub fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply `obj` (which carries its own name).
pub async fn apply<K>(api: &Api<K>, obj: &K) -> kube::Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(&name, &params(), &Patch::Apply(obj)).await
}

/// Server-side apply of the `status` subresource of a custom resource.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &params(), &Patch::Apply(&body))
        .await
}
