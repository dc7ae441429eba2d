//! The namespace's copy of the installation's admin secret (Secret `cleave-admin`, key
//! `secret`), mounted read-only into every node and router pod at `/etc/cleave-auth`, whose
//! `--auth-file` points at it. The value comes from the operator's own Secret (same name, in
//! its namespace), made on its first start; owned, like the router objects, by every
//! FileCluster of the namespace.

use super::{with_common, ADMIN_SECRET, ADMIN_SECRET_KEY, LABEL_NAME};
use k8s_openapi::api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

/// Where pods see the secret.
pub const ADMIN_SECRET_DIR: &str = "/etc/cleave-auth";
/// Name of the volume (and mount) that carries it.
pub const ADMIN_SECRET_VOLUME: &str = "admin-secret";

/// The namespace's `cleave-admin` Secret holding `value`.
pub fn admin_secret(ns: &str, value: &str, owners: Vec<OwnerReference>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(ADMIN_SECRET.into()),
            namespace: Some(ns.into()),
            labels: Some(with_common(BTreeMap::from([(
                LABEL_NAME.into(),
                "cleave".into(),
            )]))),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(ADMIN_SECRET_KEY.into(), value.into())])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The pod volume of the Secret. World-readable inside the volume (the containers run as
/// different non-root users without a shared group), but mounted only where needed: the
/// `node` and `router` containers, never Redis.
pub fn volume() -> Volume {
    Volume {
        name: ADMIN_SECRET_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ADMIN_SECRET.into()),
            default_mode: Some(0o444),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Its read-only mount in a container.
pub fn mount() -> VolumeMount {
    VolumeMount {
        name: ADMIN_SECRET_VOLUME.into(),
        mount_path: ADMIN_SECRET_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// `--auth-file <the mounted key>`.
pub fn auth_args() -> [String; 2] {
    [
        "--auth-file".into(),
        format!("{ADMIN_SECRET_DIR}/{ADMIN_SECRET_KEY}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_value_under_its_key() {
        let s = admin_secret("store", "0123456789abcdef0123", vec![]);
        assert_eq!(s.metadata.name.as_deref(), Some("cleave-admin"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("store"));
        assert_eq!(
            s.string_data.unwrap()["secret"],
            "0123456789abcdef0123".to_string()
        );
        assert_eq!(auth_args(), ["--auth-file", "/etc/cleave-auth/secret"]);
        assert_eq!(
            volume().secret.unwrap().secret_name.as_deref(),
            Some("cleave-admin")
        );
    }
}
