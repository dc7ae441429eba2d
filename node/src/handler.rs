//! Decode a request into a [`Command`] and dispatch it to a `handle_*` function.
//!
//! Dispatch happens in two steps so a connection can pipeline: [`dispatch`] runs synchronously
//! in arrival order (writes are queued for group commit right there, which fixes their order),
//! and returns a future that completes with the reply.

use crate::follower::read_index::ReadIndex;
use crate::leader::{commit, serve};
use crate::node::{Node, RoleState};
use crate::op::Op;
use crate::store::FileRead;
use cleave_proto::command::read::MAX_LIST_LIMIT;
use cleave_proto::command::{List, Read};
use cleave_proto::status::Role;
use cleave_proto::{Command, ErrorCode, FilePath, Frame, Reply};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// The largest file `SELECT` returns whole; larger ones are read with `READ`.
pub const MAX_SELECT: u64 = 64 * 1024 * 1024;

/// What every connection shares.
#[derive(Clone)]
pub struct Ctx {
    /// The node.
    pub node: Arc<Node>,
    /// The follower read barrier.
    pub read_index: ReadIndex,
}

/// Decode and start handling one request.
pub fn dispatch(ctx: &Ctx, frame: Frame) -> BoxFuture<'static, Frame> {
    let cmd = match Command::from_frame(frame) {
        Ok(cmd) => cmd,
        Err(reply) => return ready(reply.to_frame()),
    };
    let ctx = ctx.clone();
    match cmd {
        Command::Put(put) => write(&ctx, Op::put(&put)),
        Command::Delete(path) => write(&ctx, Op::delete(&path)),
        Command::Part(part) => write(&ctx, Op::part(&part)),
        Command::Commit(c) => write(&ctx, Op::commit(&c)),
        Command::Abort(a) => write(&ctx, Op::abort(&a)),
        Command::Select(path) => async move { read(&ctx, handle_select(&ctx, path)).await }.boxed(),
        Command::List(list) => async move { read(&ctx, handle_list(&ctx, list)).await }.boxed(),
        Command::Stat(path) => async move { read(&ctx, handle_stat(&ctx, path)).await }.boxed(),
        Command::Read(r) => async move { read(&ctx, handle_read(&ctx, r)).await }.boxed(),
        Command::Ping(None) => ready(Frame::Simple("PONG".into())),
        Command::Ping(Some(msg)) => ready(Frame::Bulk(msg)),
        Command::Hello(v) => ready(cleave_proto::runtime::hello_reply(
            v,
            "cleave-node",
            &ctx.node.id,
        )),
        Command::CommandInfo | Command::ConfigGet(_) => ready(Frame::Array(vec![])),
        Command::NodeStatus => async move {
            let status = ctx.node.status().await;
            Frame::Bulk(serde_json::to_vec(&status).unwrap_or_default().into())
        }
        .boxed(),
        Command::NodeLead { epoch } => async move { lead(&ctx.node, epoch).await }.boxed(),
        Command::NodeFollow { epoch, leader } => {
            async move { follow(&ctx.node, epoch, leader).await }.boxed()
        }
        Command::ReplFetch {
            epoch,
            follower,
            from,
            max_bytes,
            ..
        } => {
            async move { serve::fetch(&ctx.node, epoch, &follower, from, max_bytes).await }.boxed()
        }
        Command::ReplIndex { epoch } => ready(serve::index(&ctx.node, epoch)),
        Command::SnapNext { epoch, cursor } => {
            async move { serve::snapshot(&ctx.node, epoch, &cursor).await }.boxed()
        }
        Command::Req { .. } | Command::Mux => {
            ready(Reply::new(ErrorCode::Err, "REQ and MUX are not supported yet").to_frame())
        }
        Command::TableGet | Command::TablePush(_) => ready(
            Reply::new(
                ErrorCode::Err,
                "this is a node; table commands go to a router",
            )
            .to_frame(),
        ),
    }
}

fn ready(frame: Frame) -> BoxFuture<'static, Frame> {
    futures::future::ready(frame).boxed()
}

/// Queue a write now (fixing its order), then wait for its seq and its acknowledgement.
fn write(ctx: &Ctx, op: Op) -> BoxFuture<'static, Frame> {
    if !ctx.node.is_leader() {
        let leader = ctx.node.role_state().leader.unwrap_or_else(|| "?".into());
        return ready(Reply::new(ErrorCode::NotLeader, leader).to_frame());
    }
    let seq = commit::submit(&ctx.node, op);
    let node = ctx.node.clone();
    async move {
        let result = match seq.await {
            Ok(Ok(seq)) => commit::wait_committed(&node, seq).await.map(|()| seq),
            Ok(Err(reply)) => Err(reply),
            Err(_) => Err(Reply::new(ErrorCode::TryAgain, "write dropped; retry")),
        };
        match result {
            Ok(seq) => Frame::Integer(seq as i64),
            Err(reply) => reply.to_frame(),
        }
    }
    .boxed()
}

/// Run a read after the read barrier.
async fn read(
    ctx: &Ctx,
    handler: impl std::future::Future<Output = Result<Frame, Reply>>,
) -> Frame {
    if let Err(reply) = read_barrier(ctx).await {
        return reply.to_frame();
    }
    handler.await.unwrap_or_else(|r| r.to_frame())
}

/// A leader reads its own store; a follower first confirms it has applied everything the leader
/// had acknowledged when the read began.
async fn read_barrier(ctx: &Ctx) -> Result<(), Reply> {
    let node = &ctx.node;
    match node.role_state().role {
        Role::Leader => Ok(()),
        Role::Follower if node.follower_in_sync() => {
            let index = ctx.read_index.get().await?;
            let mut applied = node.applied.subscribe();
            let caught_up = async move { applied.wait_for(|a| *a >= index).await.is_ok() };
            match tokio::time::timeout(node.config.sync_timeout, caught_up).await {
                Ok(true) => Ok(()),
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

async fn handle_select(ctx: &Ctx, path: FilePath) -> Result<Frame, Reply> {
    let mut store = ctx.node.store.clone();
    match store
        .read(&path, 0, MAX_SELECT, None)
        .await
        .map_err(|e| e.to_reply())?
    {
        FileRead::File { size, .. } if size > MAX_SELECT => Err(Reply::new(
            ErrorCode::TooLarge,
            format!("{path} is {size} bytes; read it in ranges with READ"),
        )),
        FileRead::File { data, .. } => Ok(Frame::Bulk(data)),
        FileRead::Stale(_) | FileRead::None => {
            let names = store
                .list(&path, None, MAX_LIST_LIMIT)
                .await
                .map_err(|e| e.to_reply())?;
            if names.is_empty() {
                return Err(not_found(&path));
            }
            Ok(Frame::Array(names.into_iter().map(Frame::bulk).collect()))
        }
    }
}

async fn handle_list(ctx: &Ctx, list: List) -> Result<Frame, Reply> {
    let mut store = ctx.node.store.clone();
    let names = store
        .list(&list.path, list.after.as_deref(), list.limit)
        .await
        .map_err(|e| e.to_reply())?;
    if names.is_empty()
        && list.after.is_none()
        && store
            .stat(&list.path)
            .await
            .map_err(|e| e.to_reply())?
            .is_none()
    {
        return Err(not_found(&list.path));
    }
    Ok(Frame::Array(names.into_iter().map(Frame::bulk).collect()))
}

async fn handle_stat(ctx: &Ctx, path: FilePath) -> Result<Frame, Reply> {
    match ctx
        .node
        .store
        .clone()
        .stat(&path)
        .await
        .map_err(|e| e.to_reply())?
    {
        Some(stat) => Ok(stat.to_frame()),
        None => Err(not_found(&path)),
    }
}

async fn handle_read(ctx: &Ctx, r: Read) -> Result<Frame, Reply> {
    match ctx
        .node
        .store
        .clone()
        .read(&r.path, r.offset, r.length, r.version)
        .await
        .map_err(|e| e.to_reply())?
    {
        FileRead::File { data, .. } => Ok(Frame::Bulk(data)),
        FileRead::Stale(now) => Err(Reply::new(
            ErrorCode::Stale,
            format!(
                "{} is now at version {now}, not {}",
                r.path,
                r.version.unwrap_or(0)
            ),
        )),
        FileRead::None => Err(not_found(&r.path)),
    }
}

fn not_found(path: &FilePath) -> Reply {
    Reply::new(
        ErrorCode::NotFound,
        format!("no such file or directory {path}"),
    )
}

/// `NODE.LEAD epoch`: become leader at a newer epoch (idempotent for the current one).
pub async fn lead(node: &Node, epoch: u64) -> Frame {
    let st = node.role_state();
    if epoch == st.epoch && st.role == Role::Leader {
        return Frame::ok();
    }
    if epoch <= st.epoch && st.epoch > 0 {
        return Reply::new(
            ErrorCode::Stale,
            format!("epoch {epoch} is not newer than {}", st.epoch),
        )
        .to_frame();
    }
    let next = RoleState {
        role: Role::Leader,
        epoch,
        leader: Some(node.address.clone()),
        needs_resync: false,
    };
    match node.set_role(next).await {
        Ok(()) => {
            tracing::info!("{}: leader at epoch {epoch}", node.id);
            Frame::ok()
        }
        Err(r) => r.to_frame(),
    }
}

/// `NODE.FOLLOW epoch leader`: follow `leader` at a newer epoch (idempotent for the current one).
pub async fn follow(node: &Node, epoch: u64, leader: String) -> Frame {
    let st = node.role_state();
    if leader == node.address {
        return Reply::new(ErrorCode::Err, "a node cannot follow itself").to_frame();
    }
    if epoch == st.epoch && st.leader.as_deref() == Some(leader.as_str()) && st.role != Role::Leader
    {
        return Frame::ok();
    }
    if epoch < st.epoch || (epoch == st.epoch && st.epoch > 0) {
        return Reply::new(
            ErrorCode::Stale,
            format!("epoch {epoch} is not newer than {}", st.epoch),
        )
        .to_frame();
    }
    // A deposed leader may hold writes nobody acknowledged: it must discard its data.
    let needs_resync = st.role == Role::Leader || st.needs_resync;
    if needs_resync {
        if let Err(e) = node.store.clone().mark_resync_needed().await {
            return e.to_reply().to_frame();
        }
    }
    let next = RoleState {
        role: Role::Follower,
        epoch,
        leader: Some(leader.clone()),
        needs_resync,
    };
    match node.set_role(next).await {
        Ok(()) => {
            tracing::info!("{}: following {leader} at epoch {epoch}", node.id);
            Frame::ok()
        }
        Err(r) => r.to_frame(),
    }
}
