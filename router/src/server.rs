//! The TCP server: accept clients, answer pipelined requests in order.
//!
//! Each connection reads requests as they arrive and starts each as soon as the order of its
//! requests allows ([`Order`]: writes to one cluster are pipelined, reads run together, and a
//! read waits for earlier writes and a write for earlier reads, as with Redis); replies are
//! written strictly in request order and flushed together once no further reply is ready. Buffered requests are read before
//! ready replies are written, so a pipeline is dispatched as a whole and answered in few writes.
//! Reading pauses while too many requests, or too many bytes, are in flight: a connection never
//! holds more than one large request beyond [`MAX_IN_FLIGHT_BYTES`].
//!
//! Housekeeping (`HELLO`, `CLIENT`, `INFO`, ...) is answered here from the connection's
//! [`ConnState`]; Redis verbs are translated by [`crate::redis`] into native requests that take
//! the same paths as the client's own.

use crate::forward::{no_table, payload_bytes, Forwarder, PER_MIB};
use crate::info::{server_info, Stats};
use crate::metrics::command_of;
use crate::redis::{self, Post};
use crate::session::{self, Kind, Order, Writes};
use crate::table::{Pushed, Tables};
use cleave_proto::connection::ConnectionError;
use cleave_proto::handshake::{self, ConnState, Effect};
use cleave_proto::{Command, Connection, ErrorCode, Frame, Reply};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

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
    /// Random, made at start: the first part of every session id (unique across restarts).
    pub router_id: u64,
    /// Connections accepted so far: the second part of every session id.
    pub connections: AtomicU64,
    /// Counters for `INFO`.
    pub stats: Stats,
    /// The admin secret `TABLE.PUSH` needs (`None`: no authentication).
    pub admin_secret: Option<Arc<cleave_proto::auth::Secret>>,
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
                        shared.stats.open.fetch_add(1, Ordering::Relaxed);
                        connection(shared.clone(), socket, stop).await;
                        shared.stats.open.fetch_sub(1, Ordering::Relaxed);
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
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!("shutdown: requests still in flight after {grace:?}, leaving them");
    }
}

/// A reply to come, and what to do when it is written.
struct Answer {
    frame: Frame,
    /// The request bytes it frees.
    size: usize,
    /// Whether it was a read or write counted by [`Order`].
    counted: bool,
    /// How the reply is reshaped (Redis verbs).
    post: Post,
    /// Protocol switch or close (housekeeping).
    effect: Effect,
}

type Pending = FuturesOrdered<BoxFuture<'static, Answer>>;

/// A request read but not started yet (it waits for earlier requests, see [`Order`]).
struct Waiting {
    frame: Frame,
    cmd: Result<Command, Frame>,
    size: usize,
    post: Post,
}

/// One client connection: its requests in order, its write pipeline, its session prefix.
struct Client {
    shared: Arc<Shared>,
    waiting: VecDeque<Waiting>,
    pending: Pending,
    order: Order,
    writes: Writes,
    bytes_in_flight: usize,
    /// Protocol, name and library the client told us.
    state: ConnState,
    /// The `DEL` whose per-key replies are being summed.
    count: Option<redis::Count>,
}

async fn connection(shared: Arc<Shared>, socket: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut conn = Connection::new(socket);
    let peer = conn.peer();
    let number = shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut c = Client {
        writes: Writes::new(session::prefix(shared.router_id, number)),
        shared,
        waiting: VecDeque::new(),
        pending: FuturesOrdered::new(),
        order: Order::default(),
        bytes_in_flight: 0,
        state: ConnState {
            id: number + 1,
            addr: peer.clone(),
            ..ConnState::default()
        },
        count: None,
    };
    let mut reading = !*stop.borrow();
    while reading || !c.pending.is_empty() || !c.waiting.is_empty() {
        c.start_ready();
        let queued = c.pending.len() + c.waiting.len();
        let can_read = reading && queued < MAX_IN_FLIGHT && c.bytes_in_flight < MAX_IN_FLIGHT_BYTES;
        let forwarder = &c.shared.forwarder;
        tokio::select! {
            biased;
            frame = conn.read_frame(), if can_read => match frame {
                Ok(Some(frame)) => {
                    let size = frame_bytes(&frame);
                    c.bytes_in_flight += size;
                    c.shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                    c.shared.forwarder.metrics().bytes(true, size);
                    c.queue(frame, size);
                }
                Ok(None) => reading = false,
                Err(ConnectionError::Frame(e)) => {
                    tracing::debug!("{peer}: {e}");
                    let reply = Frame::Error(format!("ERR Protocol error: {e}"));
                    c.waiting.push_back(Waiting {
                        frame: Frame::Null,
                        cmd: Err(reply),
                        size: 0,
                        post: Post::Plain,
                    });
                    reading = false;
                }
                Err(e) => {
                    tracing::debug!("{peer}: {e}");
                    return;
                }
            },
            Some(first) = c.pending.next(), if !c.pending.is_empty() => {
                if c.write_ready(&mut conn, first).await.is_err() {
                    return;
                }
            }
            _ = c.writes.step(forwarder), if c.writes.busy() => {}
            _ = stop.changed(), if reading => reading = false,
        }
    }
}

impl Client {
    /// Queue a request read from the client: a Redis write verb becomes the native writes it
    /// stands for (its bytes counted once, on the first), anything else is queued as it is.
    fn queue(&mut self, frame: Frame, size: usize) {
        let cmd = Command::from_frame(frame.clone()).map_err(|r| r.to_frame());
        if let Some(natives) = cmd.as_ref().ok().and_then(redis::translate_write) {
            for (i, n) in natives.into_iter().enumerate() {
                self.waiting.push_back(Waiting {
                    frame: n.frame,
                    cmd: Ok(n.cmd),
                    size: if i == 0 { size } else { 0 },
                    post: n.post,
                });
            }
            return;
        }
        let post = match &cmd {
            Ok(Command::Stat(_)) => Post::Stat,
            _ => Post::Plain,
        };
        self.waiting.push_back(Waiting {
            frame,
            cmd,
            size,
            post,
        });
    }

    /// Start every waiting request that [`Order`] admits, oldest first; stop at the first that
    /// must wait (nothing overtakes it).
    fn start_ready(&mut self) {
        while let Some(w) = self.waiting.front() {
            let cmd = match &w.cmd {
                Err(reply) => {
                    let reply = reply.clone();
                    self.start_local(reply);
                    continue;
                }
                Ok(cmd) => cmd,
            };
            let name = w.frame.command_name().unwrap_or_default();
            let secret = self.shared.admin_secret.as_deref();
            if !handshake::allowed(name.as_bytes(), &self.state, secret) {
                self.start_local(cleave_proto::auth::refusal(name.as_bytes()));
                continue;
            }
            if let Some((reply, effect)) =
                handshake::answer(cmd, &mut self.state, &server_info(&self.shared))
            {
                let w = self.waiting.pop_front().expect("front");
                self.push_answer(reply, w.size, effect);
                continue;
            }
            if redis::is_alias_read(cmd) {
                if !self.order.admits(Kind::Read) {
                    return;
                }
                self.order.start(Kind::Read);
                let w = self.waiting.pop_front().expect("front");
                let shared = self.shared.clone();
                let cmd = w.cmd.expect("parsed");
                let m = shared.forwarder.metrics().clone();
                let reply = m.timed(command_of(&w.frame), async move {
                    redis::read(&shared.forwarder, cmd).await
                });
                self.push(reply, w.size, true, w.post);
                continue;
            }
            let path = match cmd.path() {
                Some(_) if matches!(cmd, Command::Req { .. }) => {
                    // Sessions are the router's own: a client's tag would nest.
                    let e = Reply::new(ErrorCode::Err, "REQ is not a router command");
                    self.start_local(e.to_frame());
                    continue;
                }
                Some(p) => p,
                None => {
                    let w = self.waiting.pop_front().expect("front");
                    let reply = local(&self.shared, w.cmd.expect("parsed"), &w.frame);
                    self.push(futures::future::ready(reply), w.size, false, w.post);
                    continue;
                }
            };
            if !cmd.is_write() {
                if !self.order.admits(Kind::Read) {
                    return;
                }
                self.order.start(Kind::Read);
                let w = self.waiting.pop_front().expect("front");
                let shared = self.shared.clone();
                let cmd = w.cmd.expect("parsed");
                let m = shared.forwarder.metrics().clone();
                let reply = m.timed(command_of(&w.frame), async move {
                    shared.forwarder.forward(&cmd, w.frame).await
                });
                self.push(reply, w.size, true, w.post);
                continue;
            }
            let fwd = &self.shared.forwarder;
            let Some(table) = fwd.tables().current() else {
                self.start_local(no_table());
                continue;
            };
            let hash = path.hash();
            let Some((range, _)) = table.route(hash) else {
                let e = Reply::new(ErrorCode::Err, "range table has no owner for this path");
                self.start_local(e.to_frame());
                continue;
            };
            let kind = Kind::Write(&range.cluster);
            if !self.order.admits(kind) {
                return;
            }
            let mib = payload_bytes(cmd, &w.frame).div_ceil(1 << 20) as u32;
            self.order.start(kind);
            let w = self.waiting.pop_front().expect("front");
            let (m, command) = (fwd.metrics().clone(), command_of(&w.frame));
            let rx = self
                .writes
                .push(&range.cluster, hash, w.frame, fwd.retry(), PER_MIB * mib);
            let reply = m.timed(command, async move {
                rx.await.unwrap_or_else(|_| {
                    Reply::new(ErrorCode::TryAgain, "write abandoned").to_frame()
                })
            });
            self.push(reply, w.size, true, w.post);
        }
    }

    /// Answer the oldest waiting request with `reply` at once.
    fn start_local(&mut self, reply: Frame) {
        let w = self.waiting.pop_front().expect("front");
        self.push(futures::future::ready(reply), w.size, false, w.post);
    }

    fn push(
        &mut self,
        reply: impl Future<Output = Frame> + Send + 'static,
        size: usize,
        counted: bool,
        post: Post,
    ) {
        let answer = reply.map(move |frame| Answer {
            frame,
            size,
            counted,
            post,
            effect: Effect::default(),
        });
        self.pending.push_back(answer.boxed());
    }

    /// Queue a housekeeping reply with its effect on the connection.
    fn push_answer(&mut self, frame: Frame, size: usize, effect: Effect) {
        let answer = Answer {
            frame,
            size,
            counted: false,
            post: Post::Plain,
            effect,
        };
        self.pending
            .push_back(futures::future::ready(answer).boxed());
    }

    /// Write a reply and every reply already complete behind it, then flush once. After a
    /// reply that closes the connection (`QUIT`), flush and fail so the caller drops it.
    async fn write_ready(&mut self, conn: &mut Connection, first: Answer) -> std::io::Result<()> {
        let mut next = Some(first);
        while let Some(a) = next {
            self.bytes_in_flight -= a.size;
            if a.counted {
                self.order.finish();
            }
            if let Some(p) = a.effect.protocol {
                conn.set_protocol(p);
            }
            let reply = match a.post {
                Post::Plain => Some(a.frame),
                Post::Stat => Some(handshake::stat_map(a.frame)),
                Post::Ok => Some(redis::ok_reply(a.frame)),
                Post::Count { total } => {
                    let count = self.count.get_or_insert_with(|| redis::Count {
                        left: total,
                        ..Default::default()
                    });
                    count.add(a.frame);
                    if count.left == 0 {
                        self.count.take().map(|mut c| c.reply())
                    } else {
                        None
                    }
                }
            };
            if let Some(reply) = reply {
                let m = self.shared.forwarder.metrics();
                m.bytes(false, frame_bytes(&reply));
                conn.write_frame(&reply).await?;
            }
            if a.effect.close {
                conn.flush().await?;
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            next = self.pending.next().now_or_never().flatten();
        }
        conn.flush().await
    }
}

/// Bytes a request holds (its bulk payloads), for the in-flight bound.
fn frame_bytes(frame: &Frame) -> usize {
    match frame {
        Frame::Bulk(b) => b.len(),
        Frame::Array(items) => items.iter().map(frame_bytes).sum(),
        _ => 0,
    }
}

/// Answer a request that has no path: handshake and table admin, or an error.
fn local(shared: &Shared, cmd: Command, original: &Frame) -> Frame {
    match cmd {
        Command::TableGet => match shared.tables.current() {
            Some(t) => Frame::Bulk(serde_json::to_vec(&*t).unwrap_or_default().into()),
            None => Frame::Null,
        },
        Command::TablePush(json) => match shared.tables.push_json(&json) {
            Ok(pushed) => {
                let m = shared.forwarder.metrics();
                m.table_push(if pushed == Pushed::Accepted {
                    "accepted"
                } else {
                    "unchanged"
                });
                if pushed == Pushed::Accepted {
                    let epoch = shared.tables.current().map_or(0, |t| t.epoch);
                    tracing::Span::current().record("epoch", epoch);
                    tracing::info!("serving range table epoch {epoch}");
                }
                Frame::ok()
            }
            Err(e) => {
                shared.forwarder.metrics().table_push("refused");
                tracing::warn!("refused range table: {e}");
                e.to_reply().to_frame()
            }
        },
        _ => {
            let name = original.command_name().unwrap_or_default();
            Reply::new(ErrorCode::Err, format!("{name} is not a router command")).to_frame()
        }
    }
}
