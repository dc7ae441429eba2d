//! The StatefulSet of a FileCluster: one pod per node, each with a `node` container
//! (`cleave-node`) and a `redis` container (its own Redis, AOF on a volume claim).

use super::configmap::node_config_name;
use super::service::node_address;
use super::{admin_listen_args, admin_port, readyz_probe, secret, NODE_ADMIN_PORT};
use super::{name, namespace, node_selector, owner, restricted, with_common, BuildConfig};
use super::{CLEAVE_UID, NODE_CONFIG_KEY, NODE_PORT, REDIS_PORT, REDIS_UID};
use crate::crd::FileCluster;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Name of each pod's volume claim (and of the template).
pub const DATA_VOLUME: &str = "data";

fn tcp_probe(port: &str, initial: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            host: None,
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// `redis-cli` asking the pod's own Redis on loopback (where it listens; the kubelet's TCP
/// probes go to the pod IP, where it does not).
fn redis_cli(check: &str) -> Vec<String> {
    let ping = format!("redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping");
    vec![
        "sh".into(),
        "-c".into(),
        format!("{ping} | grep -Eq '{check}'"),
    ]
}

/// Alive while Redis answers at all: `PONG`, or `LOADING` while it replays a large AOF after a
/// restart (killing it then would only start the replay again).
fn redis_liveness() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(redis_cli("^(PONG|LOADING)")),
        }),
        initial_delay_seconds: Some(15),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        ..Probe::default()
    }
}

/// The arguments of `redis-server`: AOF on the volume, the spec's fsync policy, loopback only.
pub fn redis_args(fc: &FileCluster) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &REDIS_PORT.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        "/data",
        "--appendonly",
        "yes",
        "--appendfsync",
        fc.spec.redis.appendfsync.as_str(),
        // The AOF is the persistence; RDB snapshots would only fork and write the whole
        // dataset again every few minutes.
        "--save",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(m) = &fc.spec.redis.maxmemory {
        args.extend(["--maxmemory".into(), m.clone()]);
    }
    args
}

/// The FileCluster's StatefulSet.
pub fn statefulset(fc: &FileCluster, cfg: &BuildConfig) -> StatefulSet {
    let cluster = name(fc);
    let ns = namespace(fc);
    let selector = node_selector(&cluster);
    let image = fc.spec.image.clone().unwrap_or_default();
    let node_image = image.node.unwrap_or_else(|| cfg.node_image.clone());
    let redis_image = image.redis.unwrap_or_else(|| cfg.redis_image.clone());
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }),
        ..EnvVarSource::default()
    };
    let node = Container {
        name: "node".into(),
        image: Some(node_image),
        image_pull_policy: Some(cfg.pull_policy.clone()),
        command: Some(vec!["cleave-node".into()]),
        args: Some(
            [
                "--config".into(),
                format!("/etc/cleave/{NODE_CONFIG_KEY}"),
                "--advertise".into(),
                node_address("$(POD_NAME)", &cluster, &ns),
                "--redis".into(),
                format!("redis://127.0.0.1:{REDIS_PORT}"),
            ]
            .into_iter()
            .chain(admin_listen_args(NODE_ADMIN_PORT))
            .chain(cfg.auth.then(secret::auth_args).into_iter().flatten())
            .collect(),
        ),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(field("metadata.name")),
                value: None,
            },
            EnvVar {
                name: "CLEAVE_NODE_ID".into(),
                value_from: Some(field("metadata.name")),
                value: None,
            },
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("cleave".into()),
                container_port: NODE_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            admin_port(NODE_ADMIN_PORT),
        ]),
        readiness_probe: Some(readyz_probe()),
        liveness_probe: Some(tcp_probe("cleave", 15, 10, 6)),
        resources: fc.spec.resources.clone(),
        security_context: Some(restricted(CLEAVE_UID)),
        volume_mounts: Some(
            [mount("config", "/etc/cleave", true)]
                .into_iter()
                .chain(cfg.auth.then(secret::mount))
                .collect(),
        ),
        ..Container::default()
    };
    let redis = Container {
        name: "redis".into(),
        image: Some(redis_image),
        image_pull_policy: Some(cfg.pull_policy.clone()),
        command: Some(vec!["redis-server".into()]),
        args: Some(redis_args(fc)),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(redis_cli("^PONG$")),
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            ..Probe::default()
        }),
        liveness_probe: Some(redis_liveness()),
        // Its own figures: the node container's would count the pod's requests twice.
        resources: fc.spec.redis.resources.clone(),
        security_context: Some(restricted(REDIS_UID)),
        volume_mounts: Some(vec![mount(DATA_VOLUME, "/data", false)]),
        ..Container::default()
    };
    let storage = fc.spec.storage.clone().unwrap_or_default();
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(selector.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(storage.size.unwrap_or_else(|| cfg.default_storage.clone())),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let anti_affinity = Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            match_expressions: None,
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    };
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(cluster.clone()),
            namespace: Some(ns),
            labels: Some(with_common(selector.clone())),
            owner_references: Some(owner(fc)),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(fc.spec.replicas),
            service_name: Some(cluster.clone()),
            // The operator assigns roles; nodes need not start one by one.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(with_common(selector)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![node, redis],
                    affinity: Some(anti_affinity),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        fs_group: Some(REDIS_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(
                        [Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: node_config_name(&cluster),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        }]
                        .into_iter()
                        .chain(cfg.auth.then(secret::volume))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::fc;
    use super::*;

    fn container<'a>(s: &'a StatefulSet, name: &str) -> &'a Container {
        let pod = s.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.containers.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn statefulset_names_selector_and_replicas() {
        let s = statefulset(
            &fc("fc-a", "{replicas: 5, minInSync: 2}"),
            &BuildConfig::default(),
        );
        assert_eq!(s.metadata.name.as_deref(), Some("fc-a"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("store"));
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(spec.service_name.as_deref(), Some("fc-a"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        // The selector is immutable: exactly the three selector labels, matched by the pods.
        let sel = spec.selector.match_labels.clone().unwrap();
        assert_eq!(sel, node_selector("fc-a"));
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in &sel {
            assert_eq!(pod_labels.get(k), Some(v));
        }
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("FileCluster", Some(true))
        );
        let retention = spec
            .persistent_volume_claim_retention_policy
            .clone()
            .unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    }

    #[test]
    fn node_container_runs_cleave_node_with_pod_identity() {
        let s = statefulset(&fc("fc-a", "{}"), &BuildConfig::default());
        let node = container(&s, "node");
        assert_eq!(
            node.image.as_deref(),
            Some("ghcr.io/cleave-dev/cleave-node:dev")
        );
        assert_eq!(node.command, Some(vec!["cleave-node".to_string()]));
        assert_eq!(
            node.args.clone().unwrap(),
            [
                "--config",
                "/etc/cleave/node.yaml",
                "--advertise",
                "$(POD_NAME).fc-a.store.svc:7100",
                "--redis",
                "redis://127.0.0.1:6379",
                "--admin-listen",
                "0.0.0.0:9121",
                "--auth-file",
                "/etc/cleave-auth/secret"
            ]
        );
        // Role changes and replication need the credential: only the node container sees it.
        let secret_mounts = |c: &Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.mount_path == "/etc/cleave-auth")
                .count()
        };
        assert_eq!(secret_mounts(node), 1);
        assert_eq!(secret_mounts(container(&s, "redis")), 0);
        let pod = s.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let vol = pod.volumes.as_ref().unwrap().iter();
        assert!(vol.clone().any(|v| v
            .secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("cleave-admin"))));
        // Without authentication (development): no flag, no Secret.
        let open = statefulset(
            &fc("fc-a", "{}"),
            &BuildConfig {
                auth: false,
                ..BuildConfig::default()
            },
        );
        let args = container(&open, "node").args.clone().unwrap();
        assert!(!args.contains(&"--auth-file".to_string()));
        let env = node.env.clone().unwrap();
        // POD_NAME must come before its use in args; both come from the pod's name.
        assert_eq!(env[0].name, "POD_NAME");
        let id = env.iter().find(|e| e.name == "CLEAVE_NODE_ID").unwrap();
        let field = id.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, "metadata.name");
        let port = &node.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("cleave"), 7100)
        );
        let admin = &node.ports.as_ref().unwrap()[1];
        assert_eq!(
            (admin.name.as_deref(), admin.container_port),
            (Some("admin"), 9121)
        );
        let ready = node
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::String("admin".into()));
        assert!(node.liveness_probe.is_some());
        let m = &node.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (m.name.as_str(), m.mount_path.as_str(), m.read_only),
            ("config", "/etc/cleave", Some(true))
        );
    }

    #[test]
    fn redis_container_persists_with_aof_on_the_claim() {
        let s = statefulset(
            &fc("fc-a", "{redis: {appendfsync: always, maxmemory: 2gb}}"),
            &BuildConfig::default(),
        );
        let redis = container(&s, "redis");
        let args = redis.args.clone().unwrap();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(after("--appendonly"), "yes");
        assert_eq!(after("--appendfsync"), "always");
        assert_eq!(after("--dir"), "/data");
        assert_eq!(after("--bind"), "127.0.0.1");
        assert_eq!(after("--maxmemory"), "2gb");
        assert_eq!(after("--save"), "", "RDB snapshots are off");
        let m = &redis.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (m.name.as_str(), m.mount_path.as_str()),
            (DATA_VOLUME, "/data")
        );
        assert!(redis.readiness_probe.as_ref().unwrap().exec.is_some());
        // Redis listens on 127.0.0.1 only: a TCP probe (sent to the pod IP) could never pass,
        // and the kubelet would restart Redis every minute. Both probes ask it on loopback.
        for probe in [&redis.liveness_probe, &redis.readiness_probe] {
            let probe = probe.as_ref().unwrap();
            assert!(probe.tcp_socket.is_none() && probe.http_get.is_none());
            let cmd = probe
                .exec
                .as_ref()
                .unwrap()
                .command
                .clone()
                .unwrap()
                .join(" ");
            assert!(cmd.contains("redis-cli -h 127.0.0.1 -p 6379 ping"), "{cmd}");
        }
        let alive = redis.liveness_probe.as_ref().unwrap();
        let cmd = alive.exec.as_ref().unwrap().command.clone().unwrap();
        assert!(
            cmd[2].contains("LOADING"),
            "a Redis replaying its AOF is alive: {cmd:?}"
        );
        let claim = &s
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some(DATA_VOLUME));
        let cs = claim.spec.as_ref().unwrap();
        assert_eq!(cs.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        let req = cs.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["storage"], Quantity("1Gi".into()));
        assert!(cs.storage_class_name.is_none());
    }

    #[test]
    fn storage_resources_and_images_come_from_the_spec() {
        let f = fc(
            "fc-b",
            "{storage: {size: 20Gi, storageClassName: fast}, \
              resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}, \
              image: {node: 'reg/node:1', redis: 'valkey/valkey:8'}}",
        );
        let s = statefulset(&f, &BuildConfig::default());
        let cs = s
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0]
            .spec
            .clone()
            .unwrap();
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            cs.resources.unwrap().requests.unwrap()["storage"],
            Quantity("20Gi".into())
        );
        let r = container(&s, "node").resources.clone().unwrap();
        assert_eq!(r.requests.unwrap()["cpu"], Quantity("500m".into()));
        assert_eq!(r.limits.unwrap()["memory"], Quantity("2Gi".into()));
        // `resources` is the node container's alone (it used to be copied onto Redis too,
        // doubling the pod's requests); Redis gets `redis.resources`.
        assert!(container(&s, "redis").resources.is_none());
        let f2 = fc(
            "fc-b",
            "{resources: {requests: {cpu: 100m}}, redis: {resources: {requests: {memory: 4Gi}}}}",
        );
        let split = statefulset(&f2, &BuildConfig::default());
        let r = container(&split, "redis").resources.clone().unwrap();
        assert_eq!(r.requests.unwrap()["memory"], Quantity("4Gi".into()));
        let r = container(&split, "node").resources.clone().unwrap();
        assert_eq!(r.requests.unwrap()["cpu"], Quantity("100m".into()));
        assert_eq!(container(&s, "node").image.as_deref(), Some("reg/node:1"));
        assert_eq!(
            container(&s, "redis").image.as_deref(),
            Some("valkey/valkey:8")
        );
    }

    #[test]
    fn pods_are_restricted_and_spread() {
        let s = statefulset(&fc("fc-a", "{}"), &BuildConfig::default());
        let pod = s.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.fs_group, Some(REDIS_UID));
        assert_eq!(pod.automount_service_account_token, Some(false));
        for c in &pod.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".to_string()])
            );
            assert_ne!(sc.run_as_user, Some(0));
        }
        let terms = pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(
            terms[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        assert_eq!(
            terms[0]
                .pod_affinity_term
                .label_selector
                .as_ref()
                .unwrap()
                .match_labels,
            Some(node_selector("fc-a"))
        );
        let vol = &pod.volumes.unwrap()[0];
        assert_eq!(vol.config_map.as_ref().unwrap().name, "fc-a-config");
    }
}
