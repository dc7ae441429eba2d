//! A multiplexed, pipelined connection: many tasks share one socket.
//!
//! RESP replies come back in request order, so the multiplexer only has to remember the order
//! of the callers: a writer task drains the request queue, writing every request that is waiting
//! before one flush (that is the pipelining), and hands each caller's reply slot to a reader task
//! that fills the slots in order as replies arrive.

use crate::error::{Error, Result};
use crate::frame::{Frame, Limits};
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Requests queued per connection before callers wait.
const QUEUE: usize = 4096;
/// Flush the write buffer once it holds this much, even if more requests wait.
const FLUSH_AT: usize = 256 * 1024;

type Slot = oneshot::Sender<Result<Frame>>;

/// A cloneable handle to one multiplexed connection.
#[derive(Debug, Clone)]
pub struct MuxClient {
    requests: mpsc::Sender<(Frame, Slot)>,
    closed: Arc<AtomicBool>,
    addr: Arc<str>,
}

impl MuxClient {
    /// Connect and start the writer and reader tasks.
    pub async fn connect(addr: &str) -> Result<MuxClient> {
        let stream = super::connect_tcp(addr).await?;
        let (read, write) = stream.into_split();
        let (requests, request_rx) = mpsc::channel(QUEUE);
        let (slots, slot_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(write, request_rx, slots, closed.clone()));
        tokio::spawn(read_loop(read, slot_rx, closed.clone()));
        Ok(MuxClient {
            requests,
            closed,
            addr: addr.into(),
        })
    }

    /// Send a request and wait for its reply frame (error replies are returned as frames).
    pub async fn request(&self, frame: Frame) -> Result<Frame> {
        let reply = self.send(frame).await?;
        reply.await.map_err(|_| Error::Closed)?
    }

    /// Queue a request and return at once with its reply to come. Requests queued one after
    /// the other by one task are written in that order (a caller that must keep its requests
    /// in order awaits each `send` before the next). Cancel-safe: if the returned future is
    /// dropped before it resolves, nothing was queued. The receiver fails if the connection
    /// closed before the reply came; dropping it discards the reply.
    pub async fn send(&self, frame: Frame) -> Result<oneshot::Receiver<Result<Frame>>> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((frame, tx))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// Whether the connection has failed (the pool should replace it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.requests.is_closed()
    }

    /// The peer address.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut requests: mpsc::Receiver<(Frame, Slot)>,
    slots: mpsc::UnboundedSender<Slot>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::with_capacity(FLUSH_AT);
    while let Some((frame, slot)) = requests.recv().await {
        frame.encode(&mut buf);
        if slots.send(slot).is_err() {
            break;
        }
        while buf.len() < FLUSH_AT {
            let Ok((frame, slot)) = requests.try_recv() else {
                break;
            };
            frame.encode(&mut buf);
            if slots.send(slot).is_err() {
                break;
            }
        }
        if write.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    closed.store(true, Ordering::Relaxed);
    // Callers still queued learn that the connection is gone.
    requests.close();
    while let Ok((_, slot)) = requests.try_recv() {
        let _ = slot.send(Err(Error::Closed));
    }
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    closed: Arc<AtomicBool>,
) {
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'outer: loop {
        loop {
            match Frame::decode(&mut buf, &limits) {
                Ok(Some(frame)) => match slots.recv().await {
                    Some(slot) => {
                        let _ = slot.send(Ok(frame));
                    }
                    None => break 'outer,
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("bad frame from peer: {e}");
                    break 'outer;
                }
            }
        }
        if let Some(need) = Frame::expected_len(&buf, &limits) {
            buf.reserve(need.saturating_sub(buf.len()));
        } else if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    closed.store(true, Ordering::Relaxed);
    slots.close();
    while let Some(slot) = slots.recv().await {
        let _ = slot.send(Err(Error::Closed));
    }
}
