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
use cleave_proto::{Connection, Frame};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

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

/// Accept connections until `shutdown` completes, then drain.
pub async fn serve(listener: TcpListener, ctx: Ctx, shutdown: impl Future<Output = ()>) {
    let room = commit::queue_room(ctx.node.config.write_queue_bytes);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let (ctx, room, stop, alive) =
                        (ctx.clone(), room.clone(), stop_rx.clone(), alive_tx.clone());
                    tokio::spawn(async move {
                        connection(ctx, room, socket, stop).await;
                        drop(alive);
                    });
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

type Pending = FuturesOrdered<BoxFuture<'static, Frame>>;

async fn connection(
    ctx: Ctx,
    room: Arc<Semaphore>,
    socket: TcpStream,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = Connection::new(socket);
    let peer = conn.peer();
    let mut pending: Pending = FuturesOrdered::new();
    let mut reading = !*stop.borrow();
    let mut mux = false;
    let mut last_class = Class::Read;
    // A request read but not yet dispatched: it waits for the ones before it to be answered.
    let mut held: Option<(Frame, Class)> = None;
    loop {
        if let Some((frame, class)) = held.take() {
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
                pending.push_back(dispatch(&ctx, frame, permit));
            } else {
                held = Some((frame, class));
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
                    if name == b"MUX" {
                        mux = true;
                    }
                    held = Some((frame, class_of(&name)));
                }
                Ok(None) => reading = false,
                Err(ConnectionError::Frame(e)) => {
                    tracing::debug!("{peer}: {e}");
                    let reply = Frame::Error(format!("ERR Protocol error: {e}"));
                    pending.push_back(futures::future::ready(reply).boxed());
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

/// Write a reply and every reply already complete behind it, then flush once.
async fn write_ready(
    conn: &mut Connection,
    first: Frame,
    pending: &mut Pending,
) -> std::io::Result<()> {
    conn.write_frame(&first).await?;
    while let Some(Some(next)) = pending.next().now_or_never() {
        conn.write_frame(&next).await?;
    }
    conn.flush().await
}
