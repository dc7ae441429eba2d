//! The TCP server: accept connections and answer pipelined requests in order.
//!
//! Each connection reads requests as they arrive and starts handling them at once (a router
//! multiplexes many clients over one connection, so handling them one by one would serialise
//! unrelated clients); replies are written strictly in request order, and flushed together
//! when no further reply is ready.

use crate::handler::{dispatch, Ctx};
use cleave_proto::connection::ConnectionError;
use cleave_proto::{Connection, Frame};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use tokio::net::{TcpListener, TcpStream};

/// Requests handled at once per connection before reading pauses.
const MAX_IN_FLIGHT: usize = 1024;

/// Accept connections until `shutdown` completes.
pub async fn serve(listener: TcpListener, ctx: Ctx, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move { connection(ctx, socket).await });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
}

async fn connection(ctx: Ctx, socket: TcpStream) {
    let mut conn = Connection::new(socket);
    let peer = conn.peer();
    let mut pending = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            reply = pending.next(), if !pending.is_empty() => {
                let Some(reply) = reply else { continue };
                if write_ready(&mut conn, reply, &mut pending).await.is_err() {
                    return;
                }
            }
            frame = conn.read_frame(), if reading && pending.len() < MAX_IN_FLIGHT => match frame {
                Ok(Some(frame)) => pending.push_back(dispatch(&ctx, frame)),
                Ok(None) => reading = false,
                Err(ConnectionError::Frame(e)) => {
                    tracing::debug!("{peer}: {e}");
                    let _ = conn.send(&Frame::Error(format!("ERR Protocol error: {e}"))).await;
                    reading = false;
                    pending.clear();
                }
                Err(e) => {
                    tracing::debug!("{peer}: {e}");
                    return;
                }
            },
            else => return,
        }
        if !reading && pending.is_empty() {
            return;
        }
    }
}

/// Write a reply and every reply already complete behind it, then flush once.
async fn write_ready(
    conn: &mut Connection,
    first: Frame,
    pending: &mut FuturesOrdered<futures::future::BoxFuture<'static, Frame>>,
) -> std::io::Result<()> {
    conn.write_frame(&first).await?;
    while let Some(Some(next)) = pending.next().now_or_never() {
        conn.write_frame(&next).await?;
    }
    conn.flush().await
}
