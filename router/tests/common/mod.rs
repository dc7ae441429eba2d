//! Test helpers: a stub node built on cleave-proto, and a router on port 0.

#![allow(dead_code)]

use bytes::Bytes;
use cleave_proto::range::{ClusterMembers, HashRange};
use cleave_proto::{Client, Command, Connection, Frame, RangeTable};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
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

/// A stub that stores what `INSERT` sends and answers `SELECT` with it, byte for byte, so a
/// test can tell whether data crossed the router unchanged in both directions.
pub fn storing() -> impl Fn(&Command) -> Frame + Send + Sync + 'static {
    let files: Mutex<HashMap<String, Bytes>> = Mutex::default();
    move |cmd| match cmd {
        Command::Put(p) => {
            files
                .lock()
                .unwrap()
                .insert(p.path.to_string(), p.data.clone());
            Frame::Integer(p.data.len() as i64)
        }
        Command::Select(p) => match files.lock().unwrap().get(p.as_str()) {
            Some(data) => Frame::Bulk(data.clone()),
            None => Frame::Error(format!("NOTFOUND no such file {p}")),
        },
        _ => Frame::Error("ERR stub does not do that".into()),
    }
}

/// An address where nothing listens: the port is bound (so no other test can take it) but
/// never listened on, so connecting is refused. Keep it alive as long as the address is used.
pub struct DeadAddr {
    pub addr: String,
    _socket: TcpSocket,
}

pub fn dead_addr() -> DeadAddr {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    DeadAddr {
        addr,
        _socket: socket,
    }
}

/// How long any single request or wait in these tests may take: generous for a loaded 2-core
/// machine, but a hung router fails the test instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A client whose every request is bounded by [`TIMEOUT`].
pub async fn client(addr: &str) -> Client {
    Client::connect_timeout(addr, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Await `fut` for at most [`TIMEOUT`], failing the test with `what` it waited for.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("no answer after {TIMEOUT:?} waiting for {what}"))
}

/// Poll `cond` every 5 ms until it holds, failing the test after [`TIMEOUT`] with `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "waited {TIMEOUT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
            admin_secret: None,
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
