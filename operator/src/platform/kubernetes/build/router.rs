//! The router Deployment of a namespace: `cleave-router` replicas that start from the committed
//! range table in the `cleave-range-table` ConfigMap and then take the operator's pushes.

use super::{admin_listen_args, admin_port, readyz_probe, secret, ROUTER_ADMIN_PORT};
use super::{restricted, router_selector, with_common, BuildConfig, CLEAVE_UID};
use super::{ROUTER_NAME, ROUTER_PORT, TABLE_CONFIGMAP, TABLE_KEY};
use k8s_openapi::api::apps::v1::RollingUpdateDeployment;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, KeyToPath,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, TCPSocketAction, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Where the router keeps its (writable) copy of the table.
pub const TABLE_PATH: &str = "/var/lib/cleave/table.yaml";

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The router Deployment. The router writes every accepted push back to its `--table` file,
/// so the ConfigMap (read-only) is copied by an init container to a writable `emptyDir` first.
pub fn deployment(ns: &str, cfg: &BuildConfig, owners: Vec<OwnerReference>) -> Deployment {
    let selector = router_selector();
    let seed = Container {
        name: "seed-table".into(),
        image: Some(cfg.router_image.clone()),
        image_pull_policy: Some(cfg.pull_policy.clone()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(vec![format!(
            "if [ -f /etc/cleave/{TABLE_KEY} ]; then cp /etc/cleave/{TABLE_KEY} {TABLE_PATH}; fi"
        )]),
        security_context: Some(restricted(CLEAVE_UID)),
        volume_mounts: Some(vec![
            mount("table", "/etc/cleave", true),
            mount("state", "/var/lib/cleave", false),
        ]),
        ..Container::default()
    };
    let alive = |initial: i32, failures: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("cleave".into()),
            host: None,
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let router = Container {
        name: "router".into(),
        image: Some(cfg.router_image.clone()),
        image_pull_policy: Some(cfg.pull_policy.clone()),
        command: Some(vec!["cleave-router".into()]),
        args: Some(
            [
                "--listen".into(),
                format!("0.0.0.0:{ROUTER_PORT}"),
                "--table".into(),
                TABLE_PATH.into(),
            ]
            .into_iter()
            .chain(admin_listen_args(ROUTER_ADMIN_PORT))
            .chain(cfg.auth.then(secret::auth_args).into_iter().flatten())
            .collect(),
        ),
        ports: Some(vec![
            ContainerPort {
                name: Some("cleave".into()),
                container_port: ROUTER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            admin_port(ROUTER_ADMIN_PORT),
        ]),
        // Ready = serving the committed table (`Tables::serves_committed` behind `/readyz`).
        readiness_probe: Some(readyz_probe()),
        liveness_probe: Some(alive(10, 6)),
        security_context: Some(restricted(CLEAVE_UID)),
        volume_mounts: Some(
            [mount("state", "/var/lib/cleave", false)]
                .into_iter()
                .chain(cfg.auth.then(secret::mount))
                .collect(),
        ),
        ..Container::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(ROUTER_NAME.into()),
            namespace: Some(ns.into()),
            labels: Some(with_common(selector.clone())),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(cfg.router_replicas.max(2)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(with_common(selector.clone())),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![seed]),
                    containers: vec![router],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        topology_key: "kubernetes.io/hostname".into(),
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(selector),
                                            match_expressions: None,
                                        }),
                                        ..PodAffinityTerm::default()
                                    },
                                },
                            ]),
                            required_during_scheduling_ignored_during_execution: None,
                        }),
                        ..Affinity::default()
                    }),
                    volumes: Some(
                        vec![
                            Volume {
                                name: "table".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: TABLE_CONFIGMAP.into(),
                                    items: Some(vec![KeyToPath {
                                        key: TABLE_KEY.into(),
                                        path: TABLE_KEY.into(),
                                        mode: None,
                                    }]),
                                    optional: Some(true),
                                    ..ConfigMapVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "state".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Volume::default()
                            },
                        ]
                        .into_iter()
                        .chain(cfg.auth.then(secret::volume))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_deployment_has_at_least_two_replicas_and_selects_routers() {
        let mut cfg = BuildConfig {
            router_replicas: 1,
            ..BuildConfig::default()
        };
        let d = deployment("store", &cfg, vec![]);
        assert_eq!(d.metadata.name.as_deref(), Some("cleave-router"));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.selector.match_labels, Some(router_selector()));
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in router_selector() {
            assert_eq!(labels.get(&k), Some(&v));
        }
        cfg.router_replicas = 3;
        assert_eq!(
            deployment("store", &cfg, vec![]).spec.unwrap().replicas,
            Some(3)
        );
    }

    #[test]
    fn router_starts_from_a_writable_copy_of_the_table_configmap() {
        let d = deployment("store", &BuildConfig::default(), vec![]);
        let pod = d.spec.unwrap().template.spec.unwrap();
        let router = &pod.containers[0];
        assert_eq!(router.command, Some(vec!["cleave-router".to_string()]));
        assert_eq!(
            router.args.clone().unwrap(),
            [
                "--listen",
                "0.0.0.0:7000",
                "--table",
                TABLE_PATH,
                "--admin-listen",
                "0.0.0.0:9122",
                "--auth-file",
                "/etc/cleave-auth/secret"
            ]
        );
        // TABLE.PUSH needs the installation's credential: the Secret is mounted read-only.
        let m = router.volume_mounts.as_ref().unwrap();
        assert!(m
            .iter()
            .any(|m| m.mount_path == "/etc/cleave-auth" && m.read_only == Some(true)));
        let ports = router.ports.as_ref().unwrap();
        assert_eq!(ports[0].container_port, 7000);
        assert_eq!(
            (ports[1].name.as_deref(), ports[1].container_port),
            (Some("admin"), 9122)
        );
        // Ready means serving the committed table, which only the router knows: a TCP check
        // would pass as soon as it listens, stale table or not.
        let ready = router.readiness_probe.as_ref().unwrap();
        assert!(ready.tcp_socket.is_none());
        let get = ready.http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some("/readyz"));
        assert_eq!(get.port, IntOrString::String("admin".into()));
        assert!(router.liveness_probe.is_some());
        let seed = &pod.init_containers.unwrap()[0];
        assert!(seed.args.as_ref().unwrap()[0]
            .contains("cp /etc/cleave/table.yaml /var/lib/cleave/table.yaml"));
        let volumes = pod.volumes.unwrap();
        let table = volumes.iter().find(|v| v.name == "table").unwrap();
        let cm = table.config_map.as_ref().unwrap();
        assert_eq!(cm.name, TABLE_CONFIGMAP);
        assert_eq!(cm.items.as_ref().unwrap()[0].key, TABLE_KEY);
        assert_eq!(cm.optional, Some(true));
        assert!(volumes
            .iter()
            .any(|v| v.name == "state" && v.empty_dir.is_some()));
    }

    #[test]
    fn router_pods_are_restricted() {
        let d = deployment("store", &BuildConfig::default(), vec![]);
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.as_ref().unwrap())
        {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.run_as_user, Some(CLEAVE_UID));
        }
    }
}
