//! `cleave-node`: one storage node of a FileCluster.
//!
//! Where things happen:
//! - [`server`] accepts connections; [`handler`] decodes each request and dispatches it;
//! - [`leader`] assigns seqs (group commit), serves followers and the commit index;
//! - [`follower`] pulls and applies the leader's log, resyncs fully when needed, and guards
//!   follower reads with a read barrier;
//! - [`store`] is everything in Redis: the atomic apply scripts, the log, snapshots;
//! - [`op`] is the encoding of a replicated change; [`node`] the shared state;
//! - [`ownership`] deletes the keys of hash ranges the cluster gave away (after a split).

pub mod config;
pub mod error;
pub mod follower;
pub mod handler;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod op;
pub mod ownership;
pub mod role;
pub mod server;
pub mod store;
pub mod store_view;

use crate::config::{Config, StartRole};
use crate::error::Result;
use crate::node::Node;
use cleave_proto::status::Role;
use std::future::Future;
use std::sync::Arc;
use store::Store;
use tokio::net::TcpListener;
use tracing::Instrument;

/// The shutdown signal, shared by the client server and the admin server.
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn new(signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Run a node on `listener` until `shutdown` completes. Everything it logs is in a `node` span
/// with the node's id, its cluster and its epoch (JSON logs carry them in every line).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let bound = listener.local_addr()?.to_string();
    let id = config
        .id
        .clone()
        .or(config.advertise.clone())
        .unwrap_or(bound);
    let cluster = match config.cluster.as_str() {
        "" => cluster_of(&id).to_string(),
        named => named.to_string(),
    };
    let span = tracing::info_span!(
        "node",
        node = %id,
        cluster = %cluster,
        epoch = tracing::field::Empty
    );
    run_node(listener, config, shutdown).instrument(span).await
}

/// The FileCluster of a node named `<cluster>-<index>` (both platforms name nodes so); empty
/// for other ids. Used for logs when `--cluster` is not given.
pub fn cluster_of(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((cluster, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => cluster,
        _ => "",
    }
}

async fn run_node(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let bound = listener.local_addr()?.to_string();
    let address = config.advertise.clone().unwrap_or(bound);
    let id = config.id.clone().unwrap_or_else(|| address.clone());
    let mut store =
        Store::connect(&config.redis, config.log_capacity, config.log_max_bytes).await?;
    store.set_cluster(&config.cluster).await?;
    let saved = store.load_role().await?;
    let at = store.positions().await?;
    let role = role::resume(&saved);
    let (writes, queue) = tokio::sync::mpsc::unbounded_channel();
    let start_role = config.start_role.clone();
    let start_epoch = config.epoch;
    let node = Arc::new(Node::new(
        config,
        id,
        address.clone(),
        store,
        role,
        (at.applied, at.applied_epoch),
        writes,
    ));
    apply_start_role(&node, start_role, start_epoch).await;
    let epoch = node.role_state().epoch;
    tracing::Span::current().record("epoch", epoch);

    let shutdown = Shutdown::new(shutdown);
    tokio::spawn(leader::commit::run(node.clone(), queue).in_current_span());
    tokio::spawn(supervise_role(node.clone(), epoch).in_current_span());
    tokio::spawn(ownership::clean_foreign_keys(node.clone()).in_current_span());
    tokio::spawn(store_view::refresh(node.clone()).in_current_span());
    let ctx = handler::Ctx {
        node: node.clone(),
        read_index: follower::read_index::ReadIndex::start(node.clone()),
    };
    tracing::info!(
        "{}: listening on {address}, role {:?} at epoch {}",
        node.id,
        node.role_state().role,
        node.role_state().epoch
    );
    let admin_listener = match &node.config.admin_listen {
        Some(addr) => Some(cleave_admin::bind(addr).await?),
        None => None,
    };
    println!("cleave-node listening on {address}");
    // After the "listening" line: whoever started the node reads that line first.
    if let Some(listener) = admin_listener {
        let mut admin = cleave_admin::Admin::new();
        metrics::register(&mut admin, &node);
        cleave_admin::spawn("cleave-node", listener, Arc::new(admin), shutdown.wait())?;
    }
    server::serve(listener, ctx, shutdown.wait()).await;
    Ok(())
}

async fn apply_start_role(node: &Node, start: StartRole, epoch: u64) {
    let frame = match start {
        StartRole::Resume => return,
        StartRole::Lead => role::lead(node, epoch).await,
        StartRole::Follow(leader) => role::follow(node, epoch, leader, false, Vec::new()).await,
    };
    if let cleave_proto::Frame::Error(e) = frame {
        tracing::warn!("{}: start role not applied: {e}", node.id);
    }
}

/// Start and stop the follower loop as the role changes.
async fn supervise_role(node: Arc<Node>, recorded_epoch: u64) {
    let mut role = node.role.subscribe();
    // The loop follows one (leader, epoch, learner spans): other spans mean copying again.
    type Following = (String, u64, Vec<(u32, u32)>);
    let mut current: Option<(Following, tokio::task::JoinHandle<()>)> = None;
    // Recorded only when it changes: the text log format appends each recorded value to the
    // span's fields (JSON replaces it), so recording at every role change made every later
    // line longer.
    let mut logged_epoch = recorded_epoch;
    loop {
        let st = role.borrow_and_update().clone();
        if logged_epoch != st.epoch {
            tracing::Span::current().record("epoch", st.epoch);
            logged_epoch = st.epoch;
        }
        let want: Option<Following> = match (st.role, st.leader) {
            (Role::Follower | Role::Resyncing, Some(leader)) => Some((leader, st.epoch, st.spans)),
            _ => None,
        };
        if current.as_ref().map(|(f, _)| f) != want.as_ref() {
            if let Some((_, task)) = current.take() {
                task.abort();
            }
            if let Some(following) = want {
                let (leader, epoch) = (following.0.clone(), following.1);
                let task =
                    tokio::spawn(follower::run(node.clone(), leader, epoch).in_current_span());
                current = Some((following, task));
            }
        }
        if role.changed().await.is_err() {
            return;
        }
    }
}
