//! The local platform: every FileCluster node is a `redis-server` and a `cleave-node` child
//! process, the routers are `cleave-router` children, the desired objects come from a folder of
//! YAML manifests and the state lives in a data folder (see [`state`] for the layout).

pub mod manifests;
pub mod run;
pub mod state;
pub mod supervisor;

use crate::crd::FileCluster;
use crate::error::{Error, Result};
use crate::reconcile::status::Report;
use crate::reconcile::{CoreState, Desired, Endpoint, Platform};
use cleave_proto::range::RangeTable;
use manifests::ManifestDir;
use state::{
    pick_port, read_json, redis_conf, write_atomic, write_json, Layout, LocalState, NodePorts,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use supervisor::{wait_listening, ChildSpec, Supervised};

/// Settings of the local platform.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The manifests folder.
    pub manifests: PathBuf,
    /// The data folder (absolute).
    pub data: PathBuf,
    /// Where `cleave-node` and `cleave-router` are.
    pub bin_dir: PathBuf,
    /// The `redis-server` program.
    pub redis_server: PathBuf,
    /// Number of routers.
    pub routers: usize,
    /// Port of the first router.
    pub router_port: u16,
    /// Other ports are picked from here upwards.
    pub port_base: u16,
    /// The admin secret file nodes and routers check (`--auth-file`); `None`: none.
    pub auth_file: Option<PathBuf>,
}

/// One node's two children.
#[derive(Debug)]
struct NodeChildren {
    cluster: String,
    ports: NodePorts,
    redis: Supervised,
    node: Supervised,
}

/// The local platform.
#[derive(Debug)]
pub struct LocalPlatform {
    cfg: LocalConfig,
    layout: Layout,
    manifests: ManifestDir,
    state: LocalState,
    desired: Option<Desired>,
    nodes: BTreeMap<String, NodeChildren>,
    routers: Vec<(String, u16, Supervised)>,
    /// The operator's own admin address, if it serves one.
    operator_admin: Option<String>,
}

impl LocalPlatform {
    /// Open the data folder (state from an earlier run included) and check the ports.
    pub fn open(cfg: LocalConfig) -> Result<LocalPlatform> {
        let layout = Layout {
            root: cfg.data.clone(),
        };
        std::fs::create_dir_all(&layout.root).map_err(Error::io(&layout.root))?;
        let state: LocalState = read_json(&layout.state())?;
        if !state::port_free(cfg.router_port) {
            return Err(Error::PortInUse {
                port: cfg.router_port,
                what: "router-0".into(),
            });
        }
        for (i, p) in state.router_ports.iter().enumerate() {
            if !state::port_free(*p) {
                return Err(Error::PortInUse {
                    port: *p,
                    what: format!("router-{}", i + 1),
                });
            }
        }
        for (name, p) in &state.nodes {
            for (port, what) in [
                (p.port, name.clone()),
                (p.redis_port, format!("{name} redis")),
            ] {
                if !state::port_free(port) {
                    return Err(Error::PortInUse { port, what });
                }
            }
        }
        for (name, path) in [
            ("cleave-node", cfg.bin_dir.join("cleave-node")),
            ("cleave-router", cfg.bin_dir.join("cleave-router")),
        ] {
            if !path.is_file() {
                return Err(Error::MissingBinary {
                    name: name.into(),
                    dir: cfg.bin_dir.clone(),
                });
            }
        }
        Ok(LocalPlatform {
            manifests: ManifestDir::new(cfg.manifests.clone()),
            cfg,
            layout,
            state,
            desired: None,
            nodes: BTreeMap::new(),
            routers: Vec::new(),
            operator_admin: None,
        })
    }

    /// Serve the operator's own admin HTTP at `addr` (recorded in `status.json`).
    pub fn set_operator_admin(&mut self, addr: String) {
        self.operator_admin = Some(addr);
    }

    /// Where every process serves `/metrics`, for `status.json`.
    pub fn admin_addresses(&self) -> run::AdminAddresses {
        let at = |p: u16| format!("127.0.0.1:{p}");
        run::AdminAddresses {
            operator: self.operator_admin.clone(),
            nodes: self
                .nodes
                .iter()
                .filter_map(|(name, n)| Some((name.clone(), at(n.ports.admin_port?))))
                .collect(),
            routers: self
                .routers
                .iter()
                .enumerate()
                .filter_map(|(i, (name, _, _))| {
                    Some((name.clone(), at(*self.state.router_admin_ports.get(i)?)))
                })
                .collect(),
        }
    }

    /// The data folder layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the manifests changed since they were last read.
    pub fn manifests_changed(&self) -> bool {
        self.manifests.changed()
    }

    fn save(&self) -> Result<()> {
        write_json(&self.layout.state(), &self.state)
    }

    fn taken(&self) -> std::collections::BTreeSet<u16> {
        let mut t = self.state.ports();
        t.insert(self.cfg.router_port);
        t
    }

    /// Pids of every child, by name (written to `children.json`).
    pub fn children(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for (name, n) in &self.nodes {
            out.extend(n.node.pid().map(|p| (name.clone(), p)));
            out.extend(n.redis.pid().map(|p| (format!("{name}-redis"), p)));
        }
        for (name, _, s) in &self.routers {
            out.extend(s.pid().map(|p| (name.clone(), p)));
        }
        out
    }

    fn node_spec(
        &self,
        fc: &FileCluster,
        name: &str,
        ports: NodePorts,
    ) -> Result<(ChildSpec, ChildSpec)> {
        let dir = self
            .layout
            .node(&fc.metadata.name.clone().unwrap_or_default(), name);
        let redis_dir = dir.join("redis");
        std::fs::create_dir_all(&redis_dir).map_err(Error::io(&redis_dir))?;
        let conf = redis_dir.join("redis.conf");
        let text = redis_conf(&fc.spec, ports.redis_port, &redis_dir);
        if std::fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
            write_atomic(&conf, text.as_bytes())?;
        }
        let redis = ChildSpec {
            name: format!("{name}-redis"),
            program: self.cfg.redis_server.clone(),
            args: vec![conf.display().to_string()],
            log: dir.join("redis.log"),
            config_hash: hash(&text),
        };
        let mut args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{}", ports.port),
            "--redis".into(),
            format!("redis://127.0.0.1:{}", ports.redis_port),
            "--id".into(),
            name.to_string(),
            "--cluster".into(),
            fc.metadata.name.clone().unwrap_or_default(),
            "--min-in-sync".into(),
            fc.spec.min_in_sync.to_string(),
            "--replicas".into(),
            fc.spec.replicas.to_string(),
            "--log-capacity".into(),
            fc.spec.log_capacity.to_string(),
        ];
        if let Some(ms) = fc.spec.sync_timeout_ms {
            args.extend(["--sync-timeout-ms".into(), ms.to_string()]);
        }
        if let Some(port) = ports.admin_port {
            args.extend(["--admin-listen".into(), format!("127.0.0.1:{port}")]);
        }
        if let Some(f) = &self.cfg.auth_file {
            args.extend(["--auth-file".into(), f.display().to_string()]);
        }
        let node = ChildSpec {
            name: name.to_string(),
            program: self.cfg.bin_dir.join("cleave-node"),
            args,
            log: dir.join("node.log"),
            config_hash: 0,
        };
        Ok((redis, node))
    }

    /// Stop every child: routers first, then nodes, then their Redis servers.
    pub async fn shutdown(&mut self) {
        let routers: Vec<_> = self.routers.drain(..).map(|(_, _, s)| s.stop()).collect();
        futures::future::join_all(routers).await;
        let nodes: Vec<NodeChildren> = std::mem::take(&mut self.nodes).into_values().collect();
        let mut redis = Vec::new();
        let mut stops = Vec::new();
        for n in nodes {
            stops.push(n.node.stop());
            redis.push(n.redis);
        }
        futures::future::join_all(stops).await;
        futures::future::join_all(redis.into_iter().map(Supervised::stop)).await;
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Platform for LocalPlatform {
    async fn fetch(&mut self) -> Result<Desired> {
        if self.desired.is_none() || self.manifests.changed() {
            let before = self.state.objects.clone();
            let d = self.manifests.read(&mut self.state.objects);
            if self.desired.is_some() {
                tracing::info!(dir = %self.manifests.dir().display(), "manifests changed; re-read");
            }
            for e in &d.errors {
                tracing::error!("{e}");
            }
            if before != self.state.objects {
                self.save()?;
            }
            self.desired = Some(d);
        }
        Ok(self.desired.clone().unwrap_or_default())
    }

    async fn load_state(&mut self) -> Result<CoreState> {
        Ok(self.state.core.clone())
    }

    async fn save_state(&mut self, state: &CoreState) -> Result<()> {
        self.state.core = state.clone();
        self.save()
    }

    async fn ensure_clusters(&mut self, clusters: &[FileCluster]) -> Result<()> {
        let mut wanted = BTreeMap::new();
        for fc in clusters {
            let cname = fc.metadata.name.clone().unwrap_or_default();
            for i in 0..fc.spec.replicas.max(0) {
                wanted.insert(format!("{cname}-{i}"), fc);
            }
        }
        // Nodes no longer wanted stop; their data stays in the data folder.
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(n) = self.nodes.remove(&name) {
                tracing::info!(node = %name, "stopping (no longer desired; data kept)");
                n.node.stop().await;
                n.redis.stop().await;
            }
        }
        for (name, fc) in wanted {
            let ports = match self.state.nodes.get(&name) {
                Some(p) => *p,
                None => {
                    let mut taken = self.taken();
                    let port = pick_port(self.cfg.port_base, &taken).ok_or(Error::PortInUse {
                        port: 0,
                        what: "no free port".into(),
                    })?;
                    taken.insert(port);
                    let redis_port =
                        pick_port(self.cfg.port_base, &taken).ok_or(Error::PortInUse {
                            port: 0,
                            what: "no free port".into(),
                        })?;
                    taken.insert(redis_port);
                    let admin_port = pick_port(self.cfg.port_base, &taken);
                    let p = NodePorts {
                        port,
                        redis_port,
                        admin_port,
                    };
                    self.state.nodes.insert(name.clone(), p);
                    self.save()?;
                    p
                }
            };
            let (redis_spec, node_spec) = self.node_spec(fc, &name, ports)?;
            let current = self
                .nodes
                .get(&name)
                .map(|n| (n.redis.spec == redis_spec, n.node.spec == node_spec));
            if current == Some((true, true)) {
                continue;
            }
            if let Some(old) = self.nodes.remove(&name) {
                tracing::info!(node = %name, "settings changed; restarting");
                old.node.stop().await;
                old.redis.stop().await;
            }
            let redis = Supervised::start(redis_spec);
            let redis_addr = format!("127.0.0.1:{}", ports.redis_port);
            if !wait_listening(&redis_addr, Duration::from_secs(10)).await {
                tracing::warn!(node = %name, "redis at {redis_addr} is not listening yet");
            }
            let node = Supervised::start(node_spec);
            tracing::info!(node = %name, port = ports.port, redis = ports.redis_port, "started");
            self.nodes.insert(
                name,
                NodeChildren {
                    cluster: fc.metadata.name.clone().unwrap_or_default(),
                    ports,
                    redis,
                    node,
                },
            );
        }
        Ok(())
    }

    async fn nodes(&mut self) -> Result<BTreeMap<String, Vec<Endpoint>>> {
        let mut out: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        let mut names: Vec<&String> = self.nodes.keys().collect();
        names.sort_by_key(|n| {
            let (c, i) = n.rsplit_once('-').unwrap_or((n, "0"));
            (c.to_string(), i.parse::<u32>().unwrap_or(0))
        });
        for name in names {
            let n = &self.nodes[name];
            out.entry(n.cluster.clone()).or_default().push(Endpoint {
                name: name.clone(),
                address: format!("127.0.0.1:{}", n.ports.port),
                redis: format!("127.0.0.1:{}", n.ports.redis_port),
                pid: n.node.pid(),
                ready: true,
            });
        }
        Ok(out)
    }

    async fn ensure_routers(&mut self, table: &RangeTable) -> Result<Vec<Endpoint>> {
        while self.state.router_ports.len() + 1 < self.cfg.routers {
            let port = pick_port(self.cfg.port_base, &self.taken()).ok_or(Error::PortInUse {
                port: 0,
                what: "no free port".into(),
            })?;
            self.state.router_ports.push(port);
            self.save()?;
        }
        while self.state.router_admin_ports.len() < self.cfg.routers {
            let mut taken = self.taken();
            taken.insert(self.cfg.router_port);
            let Some(port) = pick_port(self.cfg.port_base, &taken) else {
                break;
            };
            self.state.router_admin_ports.push(port);
            self.save()?;
        }
        let mut started = Vec::new();
        for i in self.routers.len()..self.cfg.routers {
            let port = if i == 0 {
                self.cfg.router_port
            } else {
                self.state.router_ports[i - 1]
            };
            let dir = self.layout.router(i);
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            let file = dir.join("table.yaml");
            if !file.exists() {
                let yaml = serde_yaml::to_string(table).expect("a table serializes");
                write_atomic(&file, yaml.as_bytes())?;
            }
            let mut args = vec![
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--table".into(),
                file.display().to_string(),
            ];
            if let Some(admin) = self.state.router_admin_ports.get(i) {
                args.extend(["--admin-listen".into(), format!("127.0.0.1:{admin}")]);
            }
            if let Some(f) = &self.cfg.auth_file {
                args.extend(["--auth-file".into(), f.display().to_string()]);
            }
            let spec = ChildSpec {
                name: format!("router-{i}"),
                program: self.cfg.bin_dir.join("cleave-router"),
                args,
                log: dir.join("router.log"),
                config_hash: 0,
            };
            self.routers
                .push((format!("router-{i}"), port, Supervised::start(spec)));
            started.push(format!("127.0.0.1:{port}"));
        }
        for addr in started {
            if !wait_listening(&addr, Duration::from_secs(10)).await {
                tracing::warn!("router at {addr} is not listening yet");
            }
        }
        self.routers().await
    }

    async fn routers(&mut self) -> Result<Vec<Endpoint>> {
        let mut out = Vec::with_capacity(self.routers.len());
        for (i, (name, port, s)) in self.routers.iter().enumerate() {
            // Ready as the kubelet would see it: the router's `/readyz` ("serving the committed
            // table"). A router restarted from its table file is not, until it is pushed to.
            let ready = match self.state.router_admin_ports.get(i) {
                Some(admin) => readyz(*admin).await,
                None => true,
            };
            out.push(Endpoint {
                name: name.clone(),
                address: format!("127.0.0.1:{port}"),
                redis: String::new(),
                pid: s.pid(),
                ready,
            });
        }
        Ok(out)
    }

    async fn publish(&mut self, report: &Report) -> Result<()> {
        let file = run::StatusFile {
            operator_pid: std::process::id(),
            updated_at: k8s_openapi::jiff::Timestamp::now().to_string(),
            data: self.layout.root.display().to_string(),
            admin: self.admin_addresses(),
            report: report.clone(),
        };
        write_json(&self.layout.status(), &file)?;
        write_json(&self.layout.children(), &self.children())
    }
}

/// How long the local platform waits for a child's `/readyz`.
const READYZ_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether `GET /readyz` on `127.0.0.1:port` answers 200 (a minimal HTTP/1.0 exchange: the
/// admin server answers it and closes).
async fn readyz(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 16];
        let n = s.read(&mut head).await?;
        std::io::Result::Ok(
            head[..n].starts_with(b"HTTP/1.0 200") || head[..n].starts_with(b"HTTP/1.1 200"),
        )
    };
    matches!(
        tokio::time::timeout(READYZ_TIMEOUT, exchange).await,
        Ok(Ok(true))
    )
}
