//! The TCP server: accept clients, answer pipelined requests in order.
//!
//! Each connection reads requests as they arrive and starts them at once (one client's
//! pipelined requests may go to different clusters); replies are written strictly in request
//! order and flushed together once no further reply is ready. Buffered requests are read before
//! ready replies are written, so a pipeline is dispatched as a whole and answered in few writes.
//! Reading pauses while too many requests, or too many bytes, are in flight: a connection never
//! holds more than one large request beyond [`MAX_IN_FLIGHT_BYTES`].

use crate::forward::Forwarder;
use crate::table::{Pushed, Tables};
use cleave_proto::connection::ConnectionError;
use cleave_proto::{Command, Connection, ErrorCode, Frame, Reply};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Requests in flight per connection before reading pauses.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Request bytes in flight per connection before reading pauses.
pub const MAX_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The served range table.
    pub tables: Arc<Tables>,
    /// Routing, pooling and retries.
    pub forwarder: Forwarder,
    /// This router's id (its bound address), reported by `HELLO`.
    pub id: String,
}

/// Accept connections until `shutdown` completes; then stop reading new requests, let the
/// requests in flight finish (at most `grace`), and return.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let (shared, stop, alive) = (shared.clone(), stop_rx.clone(), alive_tx.clone());
                    tokio::spawn(async move {
                        connection(shared, socket, stop).await;
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
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!("shutdown: requests still in flight after {grace:?}, leaving them");
    }
}

type Pending = FuturesOrdered<BoxFuture<'static, (Frame, usize)>>;

async fn connection(shared: Arc<Shared>, socket: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut conn = Connection::new(socket);
    let peer = conn.peer();
    let mut pending: Pending = FuturesOrdered::new();
    let mut bytes_in_flight = 0usize;
    let mut reading = !*stop.borrow();
    while reading || !pending.is_empty() {
        let can_read =
            reading && pending.len() < MAX_IN_FLIGHT && bytes_in_flight < MAX_IN_FLIGHT_BYTES;
        tokio::select! {
            biased;
            frame = conn.read_frame(), if can_read => match frame {
                Ok(Some(frame)) => {
                    let size = frame_bytes(&frame);
                    bytes_in_flight += size;
                    let reply = handle(shared.clone(), frame);
                    pending.push_back(reply.map(move |f| (f, size)).boxed());
                }
                Ok(None) => reading = false,
                Err(ConnectionError::Frame(e)) => {
                    tracing::debug!("{peer}: {e}");
                    let reply = Frame::Error(format!("ERR Protocol error: {e}"));
                    pending.push_back(futures::future::ready((reply, 0)).boxed());
                    reading = false;
                }
                Err(e) => {
                    tracing::debug!("{peer}: {e}");
                    return;
                }
            },
            Some((reply, size)) = pending.next(), if !pending.is_empty() => {
                bytes_in_flight -= size;
                if write_ready(&mut conn, reply, &mut pending, &mut bytes_in_flight).await.is_err() {
                    return;
                }
            }
            _ = stop.changed(), if reading => reading = false,
        }
    }
}

/// Write a reply and every reply already complete behind it, then flush once.
async fn write_ready(
    conn: &mut Connection,
    first: Frame,
    pending: &mut Pending,
    bytes_in_flight: &mut usize,
) -> std::io::Result<()> {
    conn.write_frame(&first).await?;
    while let Some(Some((next, size))) = pending.next().now_or_never() {
        *bytes_in_flight -= size;
        conn.write_frame(&next).await?;
    }
    conn.flush().await
}

/// Bytes a request holds (its bulk payloads), for the in-flight bound.
fn frame_bytes(frame: &Frame) -> usize {
    match frame {
        Frame::Bulk(b) => b.len(),
        Frame::Array(items) => items.iter().map(frame_bytes).sum(),
        _ => 0,
    }
}

fn ready(frame: Frame) -> BoxFuture<'static, Frame> {
    futures::future::ready(frame).boxed()
}

/// Answer one request: locally (handshake, table admin) or by forwarding it to a node.
fn handle(shared: Arc<Shared>, frame: Frame) -> BoxFuture<'static, Frame> {
    let original = frame.clone();
    let cmd = match Command::from_frame(frame) {
        Ok(cmd) => cmd,
        Err(reply) => return ready(reply.to_frame()),
    };
    match cmd {
        Command::Ping(None) => ready(Frame::Simple("PONG".into())),
        Command::Ping(Some(msg)) => ready(Frame::Bulk(msg)),
        Command::Hello(v) => ready(cleave_proto::runtime::hello_reply(
            v,
            "cleave-router",
            &shared.id,
        )),
        Command::CommandInfo | Command::ConfigGet(_) => ready(Frame::Array(vec![])),
        Command::TableGet => ready(match shared.tables.current() {
            Some(t) => Frame::Bulk(serde_json::to_vec(&*t).unwrap_or_default().into()),
            None => Frame::Null,
        }),
        Command::TablePush(json) => ready(match shared.tables.push_json(&json) {
            Ok(pushed) => {
                if pushed == Pushed::Accepted {
                    let epoch = shared.tables.current().map_or(0, |t| t.epoch);
                    tracing::info!("serving range table epoch {epoch}");
                }
                Frame::ok()
            }
            Err(e) => {
                tracing::warn!("refused range table: {e}");
                e.to_reply().to_frame()
            }
        }),
        cmd if cmd.path().is_some() => {
            async move { shared.forwarder.forward(&cmd, original).await }.boxed()
        }
        _ => {
            let name = match &original {
                Frame::Array(items) => items
                    .first()
                    .and_then(Frame::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).to_ascii_uppercase())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            ready(Reply::new(ErrorCode::Err, format!("{name} is not a router command")).to_frame())
        }
    }
}
