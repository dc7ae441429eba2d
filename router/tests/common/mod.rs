//! Test helpers: a stub node built on cleave-proto, and a router on port 0.

#![allow(dead_code)]

use cleave_proto::range::{ClusterMembers, HashRange};
use cleave_proto::{Command, Connection, Frame, RangeTable};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Behaviour = Arc<dyn Fn(&Command) -> Frame + Send + Sync>;

/// A TCP server speaking RESP that answers each request with `behaviour(command)`, after
/// `delay`, and counts the requests it got. Not a storage node: just enough to drive the router.
/// `MUX` is acknowledged (not counted); a `REQ`-tagged write is answered as the write itself.
pub struct Stub {
    pub addr: String,
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Stub {
    pub async fn start(f: impl Fn(&Command) -> Frame + Send + Sync + 'static) -> Stub {
        Stub::start_with_delay(Duration::ZERO, f).await
    }

    pub async fn start_with_delay(
        delay: Duration,
        f: impl Fn(&Command) -> Frame + Send + Sync + 'static,
    ) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let behaviour: Behaviour = Arc::new(f);
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (behaviour, counter) = (behaviour.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut conn = Connection::new(socket);
                    while let Ok(Some(frame)) = conn.read_frame().await {
                        let reply = match Command::from_frame(frame) {
                            // The router announces its pooled connections; not a request.
                            Ok(Command::Mux) => Frame::ok(),
                            // Writes come tagged with their session: answer the write.
                            Ok(Command::Req { cmd, .. }) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                behaviour(&cmd)
                            }
                            Ok(cmd) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                behaviour(&cmd)
                            }
                            Err(r) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                r.to_frame()
                            }
                        };
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if conn.send(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Stub { addr, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The usual behaviour of a healthy leader: writes get a seq, reads get data.
pub fn leader_like(cmd: &Command) -> Frame {
    match cmd {
        Command::Put(p) => Frame::Integer(p.data.len() as i64),
        Command::Delete(_) | Command::Part(_) | Command::Commit(_) | Command::Abort(_) => {
            Frame::Integer(7)
        }
        Command::Select(p) => Frame::bulk(format!("contents of {p}")),
        _ => Frame::Error("ERR stub does not do that".into()),
    }
}

/// An address where nothing listens.
pub async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

/// A table where one cluster `fc` owns every hash.
pub fn single_cluster(epoch: u64, nodes: &[&str], leader: Option<&str>) -> RangeTable {
    let mut t = RangeTable {
        epoch,
        ranges: vec![HashRange {
            start: 0,
            end: u32::MAX,
            cluster: "fc".into(),
        }],
        clusters: Default::default(),
    };
    t.clusters.insert(
        "fc".into(),
        ClusterMembers {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            leader: leader.map(str::to_owned),
        },
    );
    t
}

/// A router on port 0, stopped when dropped (or through `stop`).
pub struct Router {
    pub addr: String,
    pub table_file: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<cleave_router::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Router {
    pub async fn start(table: Option<&RangeTable>, retry_ms: u64) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let table_file = dir.path().join("table.yaml");
        if let Some(t) = table {
            std::fs::write(&table_file, serde_yaml::to_string(t).unwrap()).unwrap();
        }
        let config = cleave_router::Config {
            listen: "127.0.0.1:0".into(),
            table: Some(table_file.clone()),
            retry: Duration::from_millis(retry_ms),
        };
        let listener = TcpListener::bind(&config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(cleave_router::run(listener, config, async move {
            let _ = rx.await;
        }));
        Router {
            addr,
            table_file,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Ask the router to shut down (as SIGTERM would).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop();
    }
}
