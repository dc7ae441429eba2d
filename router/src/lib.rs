//! `cleave-router`: holds the range table and forwards every client request to the node that
//! should serve it.
//!
//! Where things happen:
//! - [`config`]: flags, env and the YAML config file;
//! - [`table`]: the served range table and the rules for pushes (epoch, tiling, persistence);
//! - [`route`]: pure routing decisions (hash → cluster → node, what a reply means);
//! - [`pool`]: pooled, multiplexed connections to nodes;
//! - [`forward`]: one request's journey, with transparent bounded retries;
//! - [`info`]: the router's counters for `INFO`;
//! - [`redis`]: Redis verbs (`GET`, `SET`, `DEL`, ...) as aliases of the file commands;
//! - [`session`]: sessions, the order of one connection's requests, its write pipeline;
//! - [`server`]: the accept loop and pipelined connections.

pub mod config;
pub mod error;
pub mod forward;
pub mod info;
pub mod metrics;
pub mod pool;
pub mod redis;
pub mod route;
pub mod server;
pub mod session;
pub mod table;

pub use config::Config;
pub use error::{Error, Result};

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

/// Extra time, beyond the retry budget, that requests in flight get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Run a router on `listener` until `shutdown` completes, then drain requests in flight.
/// Everything it logs is in a `router` span with its address and served table epoch.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let span = tracing::info_span!(
        "router",
        router = %listener.local_addr()?,
        epoch = tracing::field::Empty
    );
    run_router(listener, config, shutdown)
        .instrument(span)
        .await
}

async fn run_router(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tables = Arc::new(table::Tables::load(config.table.clone())?);
    let addr = listener.local_addr()?.to_string();
    match tables.current() {
        Some(t) => {
            tracing::Span::current().record("epoch", t.epoch);
            tracing::info!("starting with range table epoch {}", t.epoch)
        }
        None => tracing::info!("starting without a range table; waiting for TABLE.PUSH"),
    }
    let shared = Arc::new(server::Shared {
        forwarder: forward::Forwarder::new(tables.clone(), config.retry),
        tables,
        id: addr.clone(),
        router_id: session::router_id(),
        connections: Default::default(),
        stats: Default::default(),
        admin_secret: config.admin_secret.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let admin_listener = match &config.admin_listen {
        Some(a) => Some(cleave_admin::bind(a).await?),
        None => None,
    };
    println!("cleave-router listening on {addr}");
    if let Some(listener) = admin_listener {
        let mut admin = cleave_admin::Admin::new();
        metrics::register(&mut admin, &shared);
        cleave_admin::spawn("cleave-router", listener, Arc::new(admin), stopped())?;
    }
    let _ = std::io::stdout().flush();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    server::serve(listener, shared, shutdown, config.retry + SHUTDOWN_GRACE).await;
    Ok(())
}
