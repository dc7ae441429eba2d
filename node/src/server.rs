//! The TCP server: accept connections and answer pipelined requests in order.
//!
//! Each connection reads requests as they arrive and starts handling them at once; replies are
//! written strictly in request order, and flushed together when no further reply is ready.
//!
//! Ordering: on a plain connection, requests take effect in the order they were sent, as with
//! Redis: consecutive writes are queued for group commit in arrival order, consecutive reads run
//! together, and a switch between reads and writes waits until every earlier request is
//! answered (so a read sees the writes sent before it, and a write never overtakes a read sent
//! before it). A router multiplexes many independent clients over one connection and orders
//! each client's requests itself; it says so with `MUX`, and such a connection is not ordered
//! across requests.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests per connection, and writes wait for room in the
//! node-wide write queue before the next request is read (back-pressure, not memory growth).
//! On shutdown the server stops reading, lets in-flight requests finish (at most
//! [`SHUTDOWN_GRACE`]) and returns.

use crate::handler::{dispatch, Ctx};
use crate::leader::commit;
use cleave_proto::connection::ConnectionError;
use cleave_proto::handshake::{self, ConnState, Effect, ServerInfo};
use cleave_proto::{Command, Connection, Frame};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

/// Requests handled at once per connection before reading pauses.
const MAX_IN_FLIGHT: usize = 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a request does to the connection's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Read,
    Write,
}

fn name_of(frame: &Frame) -> Option<Vec<u8>> {
    match frame {
        Frame::Array(items) => items.first()?.as_bytes().map(|b| b.to_ascii_uppercase()),
        _ => None,
    }
}

fn class_of(name: &[u8]) -> Class {
    match name {
        b"INSERT" | b"UPDATE" | b"DELETE" | b"PART" | b"COMMIT" | b"ABORT" | b"REQ" => Class::Write,
        _ => Class::Read,
    }
}

/// Bytes a request holds (its bulk payloads).
fn frame_bytes(frame: &Frame) -> usize {
    match frame {
        Frame::Bulk(b) => b.len(),
        Frame::Array(items) => items.iter().map(frame_bytes).sum(),
        _ => 0,
    }
}

/// Connection counters and the start time, for `CLIENT ID` and `INFO`.
#[derive(Debug)]
struct Clients {
    started: Instant,
    accepted: AtomicU64,
    open: AtomicU64,
}

/// Accept connections until `shutdown` completes, then drain.
pub async fn serve(listener: TcpListener, ctx: Ctx, shutdown: impl Future<Output = ()>) {
    let room = commit::queue_room(ctx.node.config.write_queue_bytes);
    let clients = Arc::new(Clients {
        started: Instant::now(),
        accepted: AtomicU64::new(0),
        open: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let (ctx, room, stop, alive) =
                        (ctx.clone(), room.clone(), stop_rx.clone(), alive_tx.clone());
                    let clients = clients.clone();
                    tokio::spawn(async move {
                        clients.open.fetch_add(1, Ordering::Relaxed);
                        connection(ctx, room, socket, stop, &clients).await;
                        clients.open.fetch_sub(1, Ordering::Relaxed);
                        drop(alive);
                    }.in_current_span());
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after {SHUTDOWN_GRACE:?}, leaving them");
    }
}

/// Replies to come, each with what the connection does when writing it (switch protocol,
/// close).
type Pending = FuturesOrdered<BoxFuture<'static, (Frame, Effect)>>;

/// A reply with no effect on the connection.
fn plain(reply: BoxFuture<'static, Frame>) -> BoxFuture<'static, (Frame, Effect)> {
    reply.map(|f| (f, Effect::default())).boxed()
}

/// What `HELLO` and `INFO` say about this node now.
fn server_info(ctx: &Ctx, clients: &Clients) -> ServerInfo {
    ServerInfo {
        server: "cleave-node",
        role: if ctx.node.is_leader() {
            "master"
        } else {
            "slave"
        },
        addr: ctx.node.id.clone(),
        uptime_s: clients.started.elapsed().as_secs(),
        connected_clients: clients.open.load(Ordering::Relaxed),
        sections: vec![],
        secret: ctx.node.config.admin_secret.clone(),
    }
}

async fn connection(
    ctx: Ctx,
    room: Arc<Semaphore>,
    socket: TcpStream,
    mut stop: watch::Receiver<bool>,
    clients: &Clients,
) {
    let mut conn = Connection::new(socket);
    let peer = conn.peer();
    let mut state = ConnState {
        id: clients.accepted.fetch_add(1, Ordering::Relaxed) + 1,
        addr: peer.clone(),
        ..ConnState::default()
    };
    let mut pending: Pending = FuturesOrdered::new();
    let mut reading = !*stop.borrow();
    let mut mux = false;
    let mut last_class = Class::Read;
    // A request read but not yet dispatched: it waits for the ones before it to be answered.
    // `stat`: a STAT, whose reply becomes a map for RESP3 clients.
    let mut held: Option<(Frame, Class, bool)> = None;
    loop {
        if let Some((frame, class, stat)) = held.take() {
            if mux || class == last_class || pending.is_empty() {
                last_class = class;
                let permit = if class == Class::Write {
                    match room
                        .clone()
                        .acquire_many_owned(commit::room_for(
                            frame_bytes(&frame),
                            ctx.node.config.write_queue_bytes,
                        ))
                        .await
                    {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    }
                } else {
                    None
                };
                let reply = dispatch(&ctx, frame, permit);
                let reply = if stat {
                    reply.map(handshake::stat_map).boxed()
                } else {
                    reply
                };
                pending.push_back(plain(reply));
            } else {
                held = Some((frame, class, stat));
            }
        }
        let can_read = reading && held.is_none() && pending.len() < MAX_IN_FLIGHT;
        tokio::select! {
            biased;
            reply = pending.next(), if !pending.is_empty() => {
                let Some(reply) = reply else { continue };
                if write_ready(&mut conn, reply, &mut pending).await.is_err() {
                    return;
                }
            }
            frame = conn.read_frame(), if can_read => match frame {
                Ok(Some(frame)) => {
                    let name = name_of(&frame).unwrap_or_default();
                    let secret = ctx.node.config.admin_secret.as_deref();
                    if !handshake::allowed(&name, &state, secret) {
                        let refused = (cleave_proto::auth::refusal(&name), Effect::default());
                        pending.push_back(futures::future::ready(refused).boxed());
                        continue;
                    }
                    if name == b"MUX" {
                        mux = true;
                    }
                    if handshake::is_housekeeping(&name) {
                        // Answered in order with the rest, without touching data.
                        let reply = match Command::from_frame(frame) {
                            Ok(cmd) => handshake::answer(&cmd, &mut state, &server_info(&ctx, clients))
                                .unwrap_or_else(|| (Frame::Error("ERR not housekeeping".into()), Effect::default())),
                            Err(e) => (e.to_frame(), Effect::default()),
                        };
                        pending.push_back(futures::future::ready(reply).boxed());
                        continue;
                    }
                    held = Some((frame, class_of(&name), name == b"STAT"));
                }
                Ok(None) => reading = false,
                Err(ConnectionError::Frame(e)) => {
                    tracing::debug!("{peer}: {e}");
                    let reply = Frame::Error(format!("ERR Protocol error: {e}"));
                    pending.push_back(futures::future::ready((reply, Effect::default())).boxed());
                    reading = false;
                }
                Err(e) => {
                    tracing::debug!("{peer}: {e}");
                    return;
                }
            },
            _ = stop.changed(), if reading => reading = false,
        }
        if !reading && pending.is_empty() && held.is_none() {
            return;
        }
    }
}

/// Write a reply and every reply already complete behind it, then flush once. After a reply
/// that closes the connection (`QUIT`), flush and fail so the caller drops the socket.
async fn write_ready(
    conn: &mut Connection,
    first: (Frame, Effect),
    pending: &mut Pending,
) -> std::io::Result<()> {
    let mut next = Some(first);
    while let Some((reply, effect)) = next {
        if let Some(p) = effect.protocol {
            conn.set_protocol(p);
        }
        conn.write_frame(&reply).await?;
        if effect.close {
            conn.flush().await?;
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        next = pending.next().now_or_never().flatten();
    }
    conn.flush().await
}
