//! What the local platform keeps in its data folder, and where.
//!
//! ```text
//! DIR/state.json                      ports, leaders, epochs, the range table, accepted objects
//! DIR/status.json                     the last report (what `cleave status` prints)
//! DIR/operator.pid                    the running operator (one per data folder)
//! DIR/children.json                   pids of the children (killed if an operator died)
//! DIR/clusters/<fc>/<node>/redis/     redis.conf and the node's AOF files
//! DIR/clusters/<fc>/<node>/node.log   the node's output; redis.log beside it
//! DIR/routers/router-<i>/table.yaml   the router's table (it writes accepted pushes back)
//! ```

use crate::crd::filecluster::FileClusterSpec;
use crate::error::{Error, Result};
use crate::reconcile::CoreState;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The persisted state of the local platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalState {
    /// The reconcile core's state.
    #[serde(default)]
    pub core: CoreState,
    /// Ports of the routers after the first (the first uses `--router-port`).
    #[serde(default)]
    pub router_ports: Vec<u16>,
    /// Admin HTTP ports of the routers, by index (the first router's too).
    #[serde(default)]
    pub router_admin_ports: Vec<u16>,
    /// Ports of every node ever created, by node name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodePorts>,
    /// The last accepted version of every object (key `Kind/ns/name`), for transition rules
    /// and generations.
    #[serde(default)]
    pub objects: BTreeMap<String, Accepted>,
}

/// A node's two ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePorts {
    /// Client port of `cleave-node`.
    pub port: u16,
    /// Port of its Redis.
    pub redis_port: u16,
    /// Port of its admin HTTP server (`/metrics`); absent for nodes created before there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
}

/// An accepted object and its generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Grows by one whenever the spec changes.
    pub generation: i64,
    /// The object as accepted (JSON).
    pub object: serde_json::Value,
    /// The manifest file it came from.
    #[serde(default)]
    pub file: String,
}

/// Paths under the data folder.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data folder (absolute).
    pub root: PathBuf,
}

impl Layout {
    /// `DIR/state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `DIR/status.json`.
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// `DIR/operator.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("operator.pid")
    }
    /// `DIR/admin.secret`: the installation's admin credential.
    pub fn admin_secret(&self) -> PathBuf {
        self.root.join("admin.secret")
    }
    /// `DIR/children.json`.
    pub fn children(&self) -> PathBuf {
        self.root.join("children.json")
    }
    /// `DIR/clusters/<fc>/<node>`.
    pub fn node(&self, cluster: &str, node: &str) -> PathBuf {
        self.root.join("clusters").join(cluster).join(node)
    }
    /// `DIR/routers/router-<i>`.
    pub fn router(&self, i: usize) -> PathBuf {
        self.root.join("routers").join(format!("router-{i}"))
    }
}

/// Read a JSON file, or the default when it does not exist.
pub fn read_json<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::io(path)(e)),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
            path: path.into(),
            message: e.to_string(),
        }),
    }
}

/// Write a file atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    f.write_all(bytes).map_err(Error::io(&tmp))?;
    f.sync_all().map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

/// Write a value as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serializes");
    write_atomic(path, &bytes)
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The first free port at or above `from` that is not in `taken`.
pub fn pick_port(from: u16, taken: &BTreeSet<u16>) -> Option<u16> {
    (from..=u16::MAX).find(|p| !taken.contains(p) && port_free(*p))
}

impl LocalState {
    /// Every port this state has assigned.
    pub fn ports(&self) -> BTreeSet<u16> {
        let mut s: BTreeSet<u16> = self.router_ports.iter().copied().collect();
        s.extend(self.router_admin_ports.iter().copied());
        for n in self.nodes.values() {
            s.insert(n.port);
            s.insert(n.redis_port);
            s.extend(n.admin_port);
        }
        s
    }
}

/// `redis.conf` for one node: AOF on, bound to loopback, no RDB snapshots, foreground.
pub fn redis_conf(spec: &FileClusterSpec, port: u16, dir: &Path) -> String {
    let mut s = format!(
        "# Written by cleave-operator (local platform); rewritten when the FileCluster changes.\n\
         port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\ndir {}\n\
         appendonly yes\nappendfsync {}\nsave \"\"\nlogfile \"\"\n",
        dir.display(),
        spec.redis.appendfsync.as_str()
    );
    if let Some(m) = &spec.redis.maxmemory {
        s.push_str(&format!("maxmemory {m}\n"));
    }
    s
}
