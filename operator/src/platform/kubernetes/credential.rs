//! The installation's admin secret on Kubernetes: the Secret `cleave-admin` (key `secret`) in
//! the operator's namespace. The first operator to start makes it (random, see
//! [`crate::platform::secret::generate`]); every replica reads the same one, registers it as
//! the credential it presents to nodes and routers, and copies it into each namespace with
//! FileClusters for their pods ([`super::build::secret`]).

use super::build::{ADMIN_SECRET, ADMIN_SECRET_KEY, FIELD_MANAGER};
use cleave_proto::auth::Secret as AdminSecret;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::Api;
use std::collections::BTreeMap;

/// Why the installation's secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// An API call failed.
    #[error("Secret {ns}/{ADMIN_SECRET}: {source}")]
    Kube {
        /// The operator's namespace.
        ns: String,
        /// The failure.
        source: kube::Error,
    },
    /// The Secret exists but holds no usable value.
    #[error("Secret {ns}/{ADMIN_SECRET}: key {ADMIN_SECRET_KEY} must hold at least 16 printable characters without spaces")]
    Invalid {
        /// The operator's namespace.
        ns: String,
    },
    /// No random bytes.
    #[error("{0}")]
    Random(String),
}

fn value(secret: &Secret, ns: &str) -> Result<AdminSecret, CredentialError> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(ADMIN_SECRET_KEY))
        .and_then(|b| std::str::from_utf8(&b.0).ok())
        .and_then(|t| AdminSecret::new(t.trim()))
        .ok_or_else(|| CredentialError::Invalid { ns: ns.into() })
}

/// Read the installation's secret from `api`'s namespace `ns`, making it if there is none.
pub async fn installation_secret(
    api: &Api<Secret>,
    ns: &str,
) -> Result<AdminSecret, CredentialError> {
    let err = |source| CredentialError::Kube {
        ns: ns.into(),
        source,
    };
    if let Some(s) = api.get_opt(ADMIN_SECRET).await.map_err(err)? {
        return value(&s, ns);
    }
    let fresh =
        crate::platform::secret::generate().map_err(|e| CredentialError::Random(e.to_string()))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(ADMIN_SECRET.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(
            ADMIN_SECRET_KEY.into(),
            fresh.expose().into(),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&pp, &secret).await {
        Ok(_) => Ok(fresh),
        // Another replica made it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            value(&api.get(ADMIN_SECRET).await.map_err(err)?, ns)
        }
        Err(e) => Err(err(e)),
    }
}
