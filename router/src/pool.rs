//! Pooled, multiplexed connections to nodes.
//!
//! Per node address the pool keeps a few [`MuxClient`]s (each one socket shared by many
//! requests with pipelining, announced to the node with `MUX`) and hands them out round-robin.
//! A client connection's writes stay on the socket they got (see [`crate::session`]), so
//! round-robin only spreads connections and reads. A connection that failed
//! (`is_closed()`) or timed out is replaced on next use; only one task reconnects a slot at a
//! time. A node that refused a connection is remembered as *down* for a short while, so reads
//! prefer the other nodes of its cluster instead of paying a failed connect each time.

use cleave_proto::{Frame, MuxClient};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Connections kept per node.
pub const CONNECTIONS_PER_NODE: usize = 2;
/// How long a node that refused a connection counts as down.
pub const DOWN_FOR: Duration = Duration::from_millis(1000);

/// A connection borrowed from the pool (a cheap clone of the shared handle).
#[derive(Debug, Clone)]
pub struct Pooled {
    /// The connection.
    pub client: MuxClient,
    slot: usize,
    id: u64,
}

#[derive(Debug, Default)]
struct Slot {
    conn: RwLock<Option<(u64, MuxClient)>>,
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct NodeConns {
    slots: Vec<Slot>,
    next: AtomicUsize,
    down_until: Mutex<Option<Instant>>,
}

/// Connections to every node the router has talked to.
#[derive(Debug, Default)]
pub struct Pool {
    nodes: Mutex<HashMap<String, Arc<NodeConns>>>,
    ids: AtomicU64,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    fn node(&self, addr: &str) -> Arc<NodeConns> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.get(addr) {
            return n.clone();
        }
        let n = Arc::new(NodeConns {
            slots: (0..CONNECTIONS_PER_NODE).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            down_until: Mutex::new(None),
        });
        nodes.insert(addr.to_string(), n.clone());
        n
    }

    /// A live connection to `addr`, connecting (within `timeout`) if its slot has none.
    pub async fn get(&self, addr: &str, timeout: Duration) -> cleave_proto::Result<Pooled> {
        let node = self.node(addr);
        let i = node.next.fetch_add(1, Ordering::Relaxed) % node.slots.len();
        let slot = &node.slots[i];
        if let Some(p) = live(slot, i) {
            return Ok(p);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(p) = live(slot, i) {
            return Ok(p);
        }
        let connected = match tokio::time::timeout(timeout, connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(cleave_proto::Error::Connect {
                addr: addr.into(),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        };
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                *node.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + DOWN_FOR);
                return Err(e);
            }
        };
        *node.down_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        *slot.conn.write().unwrap_or_else(|e| e.into_inner()) = Some((id, client.clone()));
        Ok(Pooled {
            client,
            slot: i,
            id,
        })
    }

    /// Drop a connection that misbehaved (timed out), so the next request reconnects.
    pub fn discard(&self, addr: &str, pooled: &Pooled) {
        let node = self.node(addr);
        let mut conn = node.slots[pooled.slot]
            .conn
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if conn.as_ref().is_some_and(|(id, _)| *id == pooled.id) {
            *conn = None;
        }
    }

    /// Open connections to nodes (for `/metrics`).
    pub fn connections(&self) -> usize {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .values()
            .flat_map(|n| n.slots.iter())
            .filter(|s| {
                let conn = s.conn.read().unwrap_or_else(|e| e.into_inner());
                conn.as_ref().is_some_and(|(_, c)| !c.is_closed())
            })
            .count()
    }

    /// Whether `addr` recently refused a connection.
    pub fn is_down(&self, addr: &str) -> bool {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(addr).is_some_and(|n| {
            n.down_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| Instant::now() < t)
        })
    }
}

/// Connect and announce `MUX`: this socket carries many clients' requests, which the router
/// orders itself (per client connection and session), so the node must not order them by
/// arrival. A node that does not answer `+OK` is not used.
async fn connect(addr: &str) -> cleave_proto::Result<MuxClient> {
    let client = MuxClient::connect(addr).await?;
    match client.request(Frame::command(["MUX"])).await? {
        Frame::Simple(ok) if ok == "OK" => Ok(client),
        Frame::Error(e) => Err(cleave_proto::Error::Reply(cleave_proto::Reply::parse(&e))),
        other => Err(cleave_proto::Error::Unexpected(format!(
            "MUX answered {other:?}"
        ))),
    }
}

fn live(slot: &Slot, i: usize) -> Option<Pooled> {
    let conn = slot.conn.read().unwrap_or_else(|e| e.into_inner());
    match conn.as_ref() {
        Some((id, c)) if !c.is_closed() => Some(Pooled {
            client: c.clone(),
            slot: i,
            id: *id,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_proto::{Command, Connection};
    use tokio::net::TcpListener;

    /// A node that answers `MUX` with `+OK` (and checks that it came first), every other
    /// request with `:1`, and counts its connections.
    async fn echo_node() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut c = Connection::new(s);
                    let mut first = true;
                    while let Ok(Some(f)) = c.read_frame().await {
                        let mux = Command::from_frame(f).is_ok_and(|c| c == Command::Mux);
                        let reply = match (first, mux) {
                            (true, true) => Frame::ok(),
                            (false, false) => Frame::Integer(1),
                            _ => Frame::Error("ERR MUX must come first, once".into()),
                        };
                        first = false;
                        if c.send(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn connections_are_reused_and_replaced_when_discarded() {
        let (addr, accepted) = echo_node().await;
        let pool = Pool::new();
        let t = Duration::from_secs(1);
        for _ in 0..10 {
            let p = pool.get(&addr, t).await.unwrap();
            let reply = p.client.request(Frame::command(["PING"])).await.unwrap();
            assert_eq!(reply, Frame::Integer(1));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), CONNECTIONS_PER_NODE);
        let p = pool.get(&addr, t).await.unwrap();
        pool.discard(&addr, &p);
        for _ in 0..CONNECTIONS_PER_NODE {
            let p = pool.get(&addr, t).await.unwrap();
            p.client.request(Frame::command(["PING"])).await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), CONNECTIONS_PER_NODE + 1);
    }

    #[tokio::test]
    async fn a_node_that_refuses_mux_is_not_used() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut c = Connection::new(s);
                    while let Ok(Some(_)) = c.read_frame().await {
                        let no = Frame::Error("ERR MUX not supported yet".into());
                        if c.send(&no).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let err = Pool::new()
            .get(&addr, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[tokio::test]
    async fn a_refusing_node_is_marked_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Pool::new();
        assert!(!pool.is_down(&addr));
        assert!(pool.get(&addr, Duration::from_secs(1)).await.is_err());
        assert!(pool.is_down(&addr));
    }
}
