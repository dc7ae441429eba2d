//! Decode a request into a [`Command`] and dispatch it to a `handle_*` function.
//!
//! Dispatch happens in two steps so a connection can pipeline: [`dispatch`] runs synchronously
//! in arrival order (writes are queued for group commit right there, which fixes their order),
//! and returns a future that completes with the reply.
//!
//! Every reply reflects only committed state: a write is answered once its entry is committed;
//! a read first proves the node is current (the leader confirms its leadership with a quorum, a
//! follower asks the leader for that confirmed commit index and waits to apply it), then runs
//! atomically with the store's applied seq, and is answered once that seq is committed and the
//! node's role did not change meanwhile.

use crate::follower::read_index::ReadIndex;
use crate::leader::{commit, serve};
use crate::node::Node;
use crate::op::Op;
use crate::role;
use crate::store::{FileRead, Led};
use cleave_proto::command::read::MAX_LIST_LIMIT;
use cleave_proto::command::{List, Read};
use cleave_proto::status::Role;
use cleave_proto::{Command, ErrorCode, FilePath, Frame, Reply};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// The largest file `SELECT` returns whole; larger ones are read with `READ`.
pub const MAX_SELECT: u64 = 64 * 1024 * 1024;
pub use cleave_proto::command::write::MAX_WRITE;

/// What every connection shares.
#[derive(Clone)]
pub struct Ctx {
    /// The node.
    pub node: Arc<Node>,
    /// The follower read barrier.
    pub read_index: ReadIndex,
}

/// Decode and start handling one request. `room` is the write queue's room the server reserved
/// for it (writes only).
pub fn dispatch(
    ctx: &Ctx,
    frame: Frame,
    room: Option<OwnedSemaphorePermit>,
) -> BoxFuture<'static, Frame> {
    let command = command_of(&frame);
    let answer = match Command::from_frame(frame) {
        Ok(cmd) => dispatch_command(ctx, cmd, room),
        Err(reply) => ready(reply.to_frame()),
    };
    let (node, started) = (ctx.node.clone(), std::time::Instant::now());
    answer
        .map(move |reply| {
            let error = match &reply {
                Frame::Error(line) => Some(line.as_str()),
                _ => None,
            };
            let outcome = cleave_admin::outcome_label(error);
            node.metrics.request(&command, &outcome, started.elapsed());
            reply
        })
        .boxed()
}

/// The command label of a request: its verb, or for `REQ session seq <write>` the write's.
fn command_of(frame: &Frame) -> String {
    let name = match frame {
        Frame::Array(items) => {
            let verb = |i: usize| items.get(i).and_then(Frame::as_bytes);
            match verb(0) {
                Some(v) if v.eq_ignore_ascii_case(b"REQ") => verb(3).or(Some(v)),
                v => v,
            }
        }
        _ => None,
    };
    cleave_admin::command_label(name.unwrap_or_default())
}

fn dispatch_command(
    ctx: &Ctx,
    cmd: Command,
    room: Option<OwnedSemaphorePermit>,
) -> BoxFuture<'static, Frame> {
    let ctx = ctx.clone();
    match cmd {
        Command::Req { session, seq, cmd } => match write_op(&cmd) {
            Ok(op) => write(&ctx, op, Some((session, seq)), room),
            Err(r) => ready(r.to_frame()),
        },
        cmd if cmd.is_write() => match write_op(&cmd) {
            Ok(op) => write(&ctx, op, None, room),
            Err(r) => ready(r.to_frame()),
        },
        Command::Select(path) => async move { read(&ctx, Query::Select(path)).await }.boxed(),
        Command::List(list) => async move { read(&ctx, Query::List(list)).await }.boxed(),
        Command::Stat(path) => async move { read(&ctx, Query::Stat(path)).await }.boxed(),
        Command::Read(r) => async move { read(&ctx, Query::Read(r)).await }.boxed(),
        Command::Ping(None) => ready(Frame::Simple("PONG".into())),
        Command::Ping(Some(msg)) => ready(Frame::Bulk(msg)),
        Command::Mux => ready(Frame::ok()),
        Command::NodeStatus => async move {
            let status = ctx.node.status().await;
            Frame::Bulk(serde_json::to_vec(&status).unwrap_or_default().into())
        }
        .boxed(),
        Command::NodeLead { epoch } => async move { role::lead(&ctx.node, epoch).await }.boxed(),
        Command::NodeFollow {
            epoch,
            leader,
            learner,
            spans,
        } => async move { role::follow(&ctx.node, epoch, leader, learner, spans).await }.boxed(),
        Command::NodeFreeze { epoch, ms } => {
            async move { role::freeze(&ctx.node, epoch, ms).await }.boxed()
        }
        // Replicated like a write, so every replica and every later leader agrees on the seq
        // from which the cluster owns exactly these ranges (a split's fence).
        Command::NodeOwn(own) => write(&ctx, Op::own(&own), None, None),
        Command::ReplFetch {
            epoch,
            follower,
            from,
            from_epoch,
            round,
            max_bytes,
            learner,
        } => async move {
            let from = (from, from_epoch);
            serve::fetch(&ctx.node, epoch, &follower, from, round, max_bytes, learner).await
        }
        .boxed(),
        Command::ReplIndex { epoch } => async move { serve::index(&ctx.node, epoch).await }.boxed(),
        Command::SnapNext {
            epoch,
            cursor,
            spans,
        } => async move { serve::snapshot(&ctx.node, epoch, &cursor, &spans).await }.boxed(),
        Command::TableGet | Command::TablePush(_) => ready(
            Reply::new(
                ErrorCode::Err,
                "this is a node; table commands go to a router",
            )
            .to_frame(),
        ),
        other => {
            // Redis verbs (GET, SET, DEL, ...) are translated by routers; a node speaks the
            // file commands they stand for.
            let name = other
                .to_frame()
                .command_name()
                .unwrap_or_else(|| "this command".into());
            let msg = format!(
                "{name} is not a node command (routers answer it; nodes speak SELECT, INSERT, \
                 DELETE, STAT, READ)"
            );
            ready(Reply::new(ErrorCode::Err, msg).to_frame())
        }
    }
}

fn ready(frame: Frame) -> BoxFuture<'static, Frame> {
    futures::future::ready(frame).boxed()
}

fn too_large(what: &str, len: usize) -> Reply {
    Reply::new(
        ErrorCode::TooLarge,
        format!("{what} of {len} bytes exceeds {MAX_WRITE}; upload it in parts (PART/COMMIT)"),
    )
}

/// The op a write command becomes.
fn write_op(cmd: &Command) -> Result<Op, Reply> {
    Ok(match cmd {
        Command::Put(put) if put.data.len() > MAX_WRITE => {
            return Err(too_large("a file", put.data.len()))
        }
        Command::Part(part) if part.data.len() > MAX_WRITE => {
            return Err(too_large("a part", part.data.len()))
        }
        Command::Put(put) => Op::put(put),
        Command::Delete(path) => Op::delete(path),
        Command::Part(part) => Op::part(part),
        Command::Commit(c) => Op::commit(c),
        Command::Abort(a) => Op::abort(a),
        other => {
            return Err(Reply::new(
                ErrorCode::Err,
                format!("{other:?} is not a write"),
            ))
        }
    })
}

/// Queue a write now (fixing its order), then wait for its outcome to be committed.
fn write(
    ctx: &Ctx,
    op: Op,
    tag: Option<(String, u64)>,
    room: Option<OwnedSemaphorePermit>,
) -> BoxFuture<'static, Frame> {
    if !ctx.node.is_leader() {
        let leader = ctx.node.role_state().leader.unwrap_or_else(|| "?".into());
        return ready(Reply::new(ErrorCode::NotLeader, leader).to_frame());
    }
    if ctx.node.is_frozen() {
        return ready(commit::frozen().to_frame());
    }
    let outcome = commit::submit(&ctx.node, op, tag, room);
    let node = ctx.node.clone();
    async move {
        let Ok(led) = outcome.await else {
            return Reply::new(ErrorCode::TryAgain, "write dropped; retry").to_frame();
        };
        // Answer only once everything the outcome reflects is committed.
        let (wait_for, answer) = match led {
            Led::Applied(e) => (e.seq, Ok(e.seq)),
            Led::Refused { entry, reply } => (entry.seq, Err(reply)),
            Led::Rejected { reply, .. } if reply.code == ErrorCode::TryAgain => {
                return reply.to_frame()
            }
            Led::Rejected { reply, .. } if reply.code == ErrorCode::NotLeader => {
                return reply.to_frame()
            }
            Led::Rejected { reply, applied } => (applied, Err(reply)),
            Led::Again(Ok(seq)) => (seq, Ok(seq)),
            Led::Again(Err(reply)) => (*node.applied.borrow(), Err(reply)),
        };
        if let Err(r) = commit::wait_committed(&node, wait_for).await {
            return r.to_frame();
        }
        match answer {
            Ok(seq) => Frame::Integer(seq as i64),
            Err(reply) => reply.to_frame(),
        }
    }
    .boxed()
}

/// A read request.
enum Query {
    Select(FilePath),
    List(List),
    Stat(FilePath),
    Read(Read),
}

/// Run a read: prove the node is current, run it, hold the answer until what it reflects is
/// committed, and refuse it if the node's role changed meanwhile.
async fn read(ctx: &Ctx, query: Query) -> Frame {
    let node = &ctx.node;
    let before = node.role_state();
    let gen = node.resync_gen.load(Ordering::SeqCst);
    let index = match read_barrier(ctx).await {
        Ok(index) => index,
        Err(reply) => return reply.to_frame(),
    };
    let (answer, at) = match query {
        Query::Select(path) => handle_select(ctx, path).await,
        Query::List(list) => handle_list(ctx, list).await,
        Query::Stat(path) => handle_stat(ctx, path).await,
        Query::Read(r) => handle_read(ctx, r).await,
    }
    .unwrap_or_else(|r| (Err(r), 0));
    if let Err(reply) = answer.as_ref() {
        // Neither says anything about the data: no position to check (`at` is 0). MOVED is
        // judged after the read barrier, so a range given away before the read began is
        // never served here.
        if matches!(reply.code, ErrorCode::TryAgain | ErrorCode::Moved) {
            return reply.to_frame();
        }
    }
    if at < index {
        if before.role == Role::Leader {
            // The leader's own store is behind what it committed: its Redis lost data.
            role::step_down(node, &format!("its store is at seq {at}, behind {index}")).await;
        }
        return Reply::new(
            ErrorCode::TryAgain,
            format!("this node's store is at seq {at}, behind the read index {index}"),
        )
        .to_frame();
    }
    if let Err(reply) = wait_committed_read(node, at).await {
        return reply.to_frame();
    }
    let after = node.role_state();
    if after.epoch != before.epoch
        || after.role != before.role
        || node.resync_gen.load(Ordering::SeqCst) != gen
    {
        return Reply::new(
            ErrorCode::TryAgain,
            "this node's role changed during the read; retry",
        )
        .to_frame();
    }
    answer.unwrap_or_else(|r| r.to_frame())
}

/// Prove the node is current; returns the read index (every write acknowledged before the read
/// began is at or below it, and this node has applied it).
async fn read_barrier(ctx: &Ctx) -> Result<u64, Reply> {
    let node = &ctx.node;
    match node.role_state().role {
        Role::Leader => serve::confirm(node).await,
        Role::Follower if node.follower_in_sync() => {
            let index = ctx.read_index.get().await?;
            let mut applied = node.applied.subscribe();
            let caught_up = async move { applied.wait_for(|a| *a >= index).await.is_ok() };
            match tokio::time::timeout(node.config.sync_timeout, caught_up).await {
                Ok(true) => Ok(index),
                _ => Err(Reply::new(
                    ErrorCode::TryAgain,
                    format!("follower has not yet applied seq {index}"),
                )),
            }
        }
        role => Err(Reply::new(
            ErrorCode::TryAgain,
            format!("node is {role:?} and not in sync; read elsewhere"),
        )),
    }
}

/// Wait until `seq` is committed (as this node knows it), within the sync timeout.
async fn wait_committed_read(node: &Node, seq: u64) -> Result<(), Reply> {
    let mut committed = node.committed.subscribe();
    let wait = async move { committed.wait_for(|c| *c >= seq).await.is_ok() };
    match tokio::time::timeout(node.config.sync_timeout, wait).await {
        Ok(true) => Ok(()),
        _ => Err(Reply::new(
            ErrorCode::TryAgain,
            format!("seq {seq} is not yet committed; retry"),
        )),
    }
}

type Answer = Result<(Result<Frame, Reply>, u64), Reply>;

async fn handle_select(ctx: &Ctx, path: FilePath) -> Answer {
    let mut store = ctx.node.store.clone();
    let (read, at) = store
        .read(&path, 0, MAX_SELECT, None)
        .await
        .map_err(|e| e.to_reply())?;
    Ok(match read {
        FileRead::File { size, .. } if size > MAX_SELECT => (
            Err(Reply::new(
                ErrorCode::TooLarge,
                format!("{path} is {size} bytes; read it in ranges with READ"),
            )),
            at,
        ),
        FileRead::File { data, .. } => (Ok(Frame::Bulk(data)), at),
        FileRead::Stale(_) | FileRead::None => {
            let (names, at) = store
                .list(&path, None, MAX_LIST_LIMIT)
                .await
                .map_err(|e| e.to_reply())?;
            if names.is_empty() {
                (Err(not_found(&path)), at)
            } else {
                (
                    Ok(Frame::Array(names.into_iter().map(Frame::bulk).collect())),
                    at,
                )
            }
        }
    })
}

async fn handle_list(ctx: &Ctx, list: List) -> Answer {
    let mut store = ctx.node.store.clone();
    let (names, at) = store
        .list(&list.path, list.after.as_deref(), list.limit)
        .await
        .map_err(|e| e.to_reply())?;
    if names.is_empty() && list.after.is_none() {
        let (stat, at) = store.stat(&list.path).await.map_err(|e| e.to_reply())?;
        if stat.is_none() {
            return Ok((Err(not_found(&list.path)), at));
        }
    }
    Ok((
        Ok(Frame::Array(names.into_iter().map(Frame::bulk).collect())),
        at,
    ))
}

async fn handle_stat(ctx: &Ctx, path: FilePath) -> Answer {
    let (stat, at) = ctx
        .node
        .store
        .clone()
        .stat(&path)
        .await
        .map_err(|e| e.to_reply())?;
    Ok(match stat {
        Some(stat) => (Ok(stat.to_frame()), at),
        None => (Err(not_found(&path)), at),
    })
}

async fn handle_read(ctx: &Ctx, r: Read) -> Answer {
    let (read, at) = ctx
        .node
        .store
        .clone()
        .read(&r.path, r.offset, r.length, r.version)
        .await
        .map_err(|e| e.to_reply())?;
    Ok(match read {
        FileRead::File { data, .. } => (Ok(Frame::Bulk(data)), at),
        FileRead::Stale(now) => (
            Err(Reply::new(
                ErrorCode::Stale,
                format!(
                    "{} is now at version {now}, not {}",
                    r.path,
                    r.version.unwrap_or(0)
                ),
            )),
            at,
        ),
        FileRead::None => (Err(not_found(&r.path)), at),
    })
}

fn not_found(path: &FilePath) -> Reply {
    Reply::new(
        ErrorCode::NotFound,
        format!("no such file or directory {path}"),
    )
}
